/**
 * The byte path on its own: `dial` (connected, refused, timed out against a full accept queue) and `relay` between
 * two real socket pairs on 127.0.0.1 (bytes both ways, half-close each way, a reset on either side, `onDone` once
 * with the byte totals).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import * as Address from "../../src/domain/Address.ts"
import * as Socket from "../../src/net/Socket.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Poll from "../utils/Poll.ts"

const HOST = "127.0.0.1"

/** What `dial` called back with, how often it called back, and the socket it returned. */
interface Dialed {
  readonly socket: Socket.Socket | undefined
  readonly failure: Socket.DialFailure | undefined
  readonly error: Error | undefined
  readonly returned: Socket.Socket
  readonly calls: () => number
}

/** Dials `127.0.0.1:port` and waits for the first callback; a connected socket is destroyed when the scope closes. */
const dialPort = (port: number, timeoutMillis: number) =>
  Effect.acquireRelease(
    Effect.callback<Dialed>((resume) => {
      let calls = 0
      const holder: { returned?: Socket.Socket } = {}
      holder.returned = Socket.dial(
        Socket.dialTarget(Address.tcp(HOST, port)),
        timeoutMillis,
        (socket, failure, error) => {
          if (++calls > 1) return
          resume(Effect.succeed({ socket, failure, error, returned: holder.returned!, calls: () => calls }))
        }
      )
    }),
    (dialed) => Effect.sync(() => dialed.returned.destroy())
  )

/** Lets the event loop run for `ms` (to see that nothing more happens; never to assert a duration). */
const settle = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

describe("dial", () => {
  it.live("to a listening port: called back once with the connected socket", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const dialed = yield* dialPort(a.port, 2_000)
      assert.strictEqual(dialed.failure, undefined)
      assert.strictEqual(dialed.error, undefined)
      assert.isDefined(dialed.socket)
      assert.strictEqual(dialed.socket, dialed.returned)
      // It is really connected to the server: the identity server's greeting arrives on it.
      const conn = new Client.Conn(dialed.socket!)
      assert.deepStrictEqual(yield* Effect.promise(() => conn.firstLine()), { _tag: "Line", line: "a" })
      yield* settle(50)
      assert.strictEqual(dialed.calls(), 1)
    }))

  it.live("to a closed port: called back once with \"error\" (ECONNREFUSED), no socket", () =>
    Effect.gen(function*() {
      const port = yield* Backend.freePort
      const dialed = yield* dialPort(port, 2_000)
      assert.strictEqual(dialed.failure, "error")
      assert.strictEqual(dialed.socket, undefined)
      assert.strictEqual((dialed.error as NodeJS.ErrnoException | undefined)?.code, "ECONNREFUSED")
      yield* settle(50)
      assert.strictEqual(dialed.calls(), 1)
    }))

  it.live("to a server whose accept queue is full: called back once with \"timeout\", the socket destroyed", () =>
    Effect.gen(function*() {
      const stuck = yield* Backend.unresponsive
      assert.isTrue(yield* stuck.fill(), "the unresponsive server's accept queue never filled")
      const dialed = yield* dialPort(stuck.port, 300)
      assert.strictEqual(dialed.failure, "timeout")
      assert.strictEqual(dialed.socket, undefined)
      assert.strictEqual(dialed.error, undefined)
      assert.isTrue(dialed.returned.destroyed)
      // No late "error" or "connect" callback after the timeout.
      yield* settle(400)
      assert.strictEqual(dialed.calls(), 1)
    }))
})

/** A connected TCP pair on 127.0.0.1, both ends allowing half-open; destroyed (and its listener closed) at scope end. */
const pair = Effect.acquireRelease(
  Effect.callback<{ readonly server: Net.Server; readonly dialed: Net.Socket; readonly accepted: Net.Socket }>(
    (resume) => {
      const server = Net.createServer({ allowHalfOpen: true })
      server.listen({ host: HOST, port: 0 }, () => {
        const port = (server.address() as Net.AddressInfo).port
        const dialed = Net.connect({ host: HOST, port, allowHalfOpen: true })
        server.once("connection", (accepted: Net.Socket) => resume(Effect.succeed({ server, dialed, accepted })))
      })
    }
  ),
  ({ accepted, dialed, server }) =>
    Effect.callback<void>((resume) => {
      dialed.destroy()
      accepted.destroy()
      server.close(() => resume(Effect.void))
    })
)

/**
 * The relay's setting: the test's `client` talks to the relay's client socket (accepted, as from the listener); the
 * relay's server socket (dialed, as by `dial`) talks to the test's `server`. Both test ends record what they get.
 */
const relayed = Effect.gen(function*() {
  const front = yield* pair
  const back = yield* pair
  const client = new Client.Conn(front.dialed)
  const server = new Client.Conn(back.accepted)
  const done: Array<Socket.RelayTotals> = []
  Socket.relay(front.accepted, back.dialed, (totals) => done.push(totals))
  return { client, server, done, relayClient: front.accepted, relayServer: back.dialed }
})

const textIs = (conn: Client.Conn, text: string) =>
  Effect.gen(function*() {
    const ok = yield* Effect.promise(() => conn.until(() => conn.text() === text, 5_000))
    assert.isTrue(ok, `expected ${JSON.stringify(text)}, got ${JSON.stringify(conn.text())}`)
  })
const ended = (conn: Client.Conn) => Effect.promise(() => conn.ended(5_000))
const doneOnce = (done: ReadonlyArray<Socket.RelayTotals>) =>
  Effect.gen(function*() {
    assert.isTrue(yield* Poll.waitUntil(() => done.length > 0), "onDone was never called")
    // A second call would come from the other socket's close, in the same or a later turn of the event loop.
    yield* settle(50)
    assert.strictEqual(done.length, 1)
    return done[0]!
  })

describe("relay", () => {
  it.live("moves bytes both ways; onDone once, after both ends closed, with the byte totals", () =>
    Effect.gen(function*() {
      const { client, done, server } = yield* relayed
      client.socket.write("ping from the client")
      yield* textIs(server, "ping from the client")
      server.socket.write("pong from the server")
      yield* textIs(client, "pong from the server")
      client.socket.write(", again")
      yield* textIs(server, "ping from the client, again")
      assert.strictEqual(done.length, 0)

      client.socket.end()
      server.socket.end()
      assert.strictEqual(yield* ended(client), "eof")
      assert.strictEqual(yield* ended(server), "eof")
      assert.deepStrictEqual(yield* doneOnce(done), {
        fromClient: "ping from the client, again".length,
        fromServer: "pong from the server".length
      })
    }))

  it.live("client half-close: the server sees EOF and can still send; the client gets everything after its FIN", () =>
    Effect.gen(function*() {
      const { client, done, server } = yield* relayed
      client.socket.end("request")
      assert.strictEqual(yield* ended(server), "eof")
      assert.strictEqual(server.text(), "request")
      assert.isUndefined(client.ending)
      assert.strictEqual(done.length, 0)

      const reply = ["first part of the reply, ", "second part, ", "and the end"]
      server.socket.write(reply[0]!)
      yield* textIs(client, reply[0]!)
      server.socket.write(reply[1]!)
      server.socket.end(reply[2]!)
      assert.strictEqual(yield* ended(client), "eof")
      assert.strictEqual(client.text(), reply.join(""))
      assert.deepStrictEqual(yield* doneOnce(done), { fromClient: "request".length, fromServer: reply.join("").length })
    }))

  it.live("server half-close: the client sees EOF and can still send; the server gets everything after its FIN", () =>
    Effect.gen(function*() {
      const { client, done, server } = yield* relayed
      server.socket.end("banner")
      assert.strictEqual(yield* ended(client), "eof")
      assert.strictEqual(client.text(), "banner")
      assert.isUndefined(server.ending)
      assert.strictEqual(done.length, 0)

      const request = ["first part of the request, ", "second part, ", "and the end"]
      client.socket.write(request[0]!)
      yield* textIs(server, request[0]!)
      client.socket.write(request[1]!)
      client.socket.end(request[2]!)
      assert.strictEqual(yield* ended(server), "eof")
      assert.strictEqual(server.text(), request.join(""))
      assert.deepStrictEqual(yield* doneOnce(done), {
        fromClient: request.join("").length,
        fromServer: "banner".length
      })
    }))

  for (const side of ["server", "client"] as const) {
    it.live(`a reset from the ${side} resets the other side; onDone once`, () =>
      Effect.gen(function*() {
        const { client, done, relayClient, relayServer, server } = yield* relayed
        client.socket.write("hello")
        yield* textIs(server, "hello")
        server.socket.write("hi")
        yield* textIs(client, "hi")

        const [resetter, other] = side === "server" ? [server, client] : [client, server]
        resetter.socket.resetAndDestroy()
        assert.strictEqual(yield* ended(other), "reset")
        yield* doneOnce(done)
        assert.isTrue(relayClient.destroyed)
        assert.isTrue(relayServer.destroyed)
      }))
  }

  it.live("bulk both ways at once, each side ending when done: every byte arrives, totals equal what was sent", () =>
    Effect.gen(function*() {
      const { client, done, server } = yield* relayed
      const up = Crypto.randomBytes(1024 * 1024 + 17)
      const down = Crypto.randomBytes(256 * 1024 + 5)
      client.socket.end(up)
      server.socket.end(down)
      assert.strictEqual(yield* ended(client), "eof")
      assert.strictEqual(yield* ended(server), "eof")
      assert.isTrue(client.data().equals(down), `client got ${client.received} of ${down.length} bytes`)
      assert.isTrue(server.data().equals(up), `server got ${server.received} of ${up.length} bytes`)
      assert.deepStrictEqual(yield* doneOnce(done), { fromClient: up.length, fromServer: down.length })
    }))
})
