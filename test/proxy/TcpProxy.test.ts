import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, Option } from "effect"
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import * as TestLayers from "../../layers/Test.ts"
import * as Address from "../../src/domain/Address.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"
import { Listener } from "../../src/proxy/Listener.ts"
import { TcpProxy } from "../../src/proxy/TcpProxy.ts"
import { ClientTable } from "../../src/services/ClientTable.ts"
import { ServerPool } from "../../src/services/ServerPool.ts"
import { StatsReporter } from "../../src/services/StatsReporter.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Poll from "../utils/Poll.ts"
import * as Stats from "../utils/Stats.ts"

// Real sockets on 127.0.0.1, port 0 only; every wait is bounded and nothing asserts how long anything took.

/** An identity backend: says its name on a line of its own, then echoes. Closed with the test's scope. */
const backend = (name: string) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: Net.Server; readonly sockets: Set<Net.Socket> }>((resume) => {
      const sockets = new Set<Net.Socket>()
      const server = Net.createServer((socket) => {
        sockets.add(socket)
        socket.once("close", () => sockets.delete(socket))
        socket.on("error", () => {})
        socket.write(`${name}\n`)
        socket.pipe(socket)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets })))
    }),
    ({ server, sockets }) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        for (const socket of sockets) socket.destroy()
      })
  ).pipe(Effect.map(({ server }) => (server.address() as Net.AddressInfo).port))

/** A port on 127.0.0.1 where nothing listens (bound, then closed): connecting to it is refused. */
const refusedPort = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as Net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

const spec = (port: number) => ServerSpec.make(Address.tcp("127.0.0.1", port))

const listen = Address.tcp("127.0.0.1", 0)

// The apps of layers/Test.ts with logging off: HealthChecker's warnings would only clutter the test output.
const quiet = <A, E, R>(layer: Layer.Layer<A, E, R>) => Layer.provide(layer, Logger.layer([]))
const makeAppTest = (settings: Parameters<typeof TestLayers.makeAppTest>[0]) => quiet(TestLayers.makeAppTest(settings))
const makeAppNoHealth = (settings: Parameters<typeof TestLayers.makeAppNoHealth>[0]) =>
  quiet(TestLayers.makeAppNoHealth(settings))

/** What a client saw of one connection: everything it read, and the error that ended it, if any. */
interface Seen {
  readonly data: string
  readonly error: string | undefined
}

/**
 * Connects to nib, waits for the backend's name line, sends `payload` and half-closes, then reads until the
 * connection is closed. With no name line (nib closed the connection), it reports what it got.
 */
const exchange = (port: number, payload = "") =>
  Effect.callback<Seen>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    let data = ""
    let error: string | undefined
    let sent = false
    socket.on("data", (chunk) => {
      data += chunk.toString()
      if (!sent && data.includes("\n")) {
        sent = true
        socket.end(payload)
      }
    })
    socket.on("error", (e: NodeJS.ErrnoException) => (error = e.code ?? e.message))
    socket.on("close", () => resume(Effect.succeed({ data, error })))
    return Effect.sync(() => socket.destroy())
  })

/** The first line a new connection reads (the backend's name). */
const firstLine = (port: number) => Effect.map(exchange(port), (seen) => seen.data.split("\n")[0]!)

const listenerPort = Effect.map(Listener, (l) => (l.address as Address.TcpEndpoint).port)

/** Polls `read` until `done` holds, at most 500 times 10 ms apart; returns the last value read. */
const eventually = <A, E, R>(read: Effect.Effect<A, E, R>, done: (a: A) => boolean) =>
  Effect.gen(function*() {
    let value = yield* read
    for (let i = 0; i < 500 && !done(value); i++) {
      yield* Effect.sleep("10 millis")
      value = yield* read
    }
    return value
  })

const statsWhenIdle = Effect.gen(function*() {
  const stats = yield* StatsReporter
  return yield* eventually(stats.snapshot, (s) => s.active === 0 && s.servers.every((b) => b.connections === 0))
})

describe("TcpProxy", () => {
  it.live("every connection gives back its place among the connects in progress (pending_max): failed over, refused, relayed, served over an idle connection", () =>
    Effect.gen(function*() {
      const a = yield* backend("a")
      const refused = yield* refusedPort
      yield* Effect.gen(function*() {
        const port = yield* listenerPort
        const proxy = yield* TcpProxy
        // Failed over from the refused server 1 to server 0, then straight to server 0 (pinned).
        assert.strictEqual(yield* firstLine(port), "a")
        assert.strictEqual(yield* firstLine(port), "a")
        yield* statsWhenIdle
        assert.strictEqual(proxy.dials.inProgress, 0)
        // With every server blacklisted or refused, a client is refused: its place goes back too.
        yield* (yield* ServerPool).blacklist(0, 60)
        assert.strictEqual((yield* exchange(port)).data, "")
        yield* (yield* ServerPool).blacklist(0, 0)
        yield* statsWhenIdle
        assert.strictEqual(proxy.dials.inProgress, 0)
        // Served over an idle connection: it makes no connect, and holds no place once served.
        yield* proxy.setIdlers(1)
        assert.strictEqual((yield* eventually(proxy.idlers, (i) => i.open === 1)).open, 1)
        assert.strictEqual(yield* firstLine(port), "a")
        yield* statsWhenIdle
        assert.strictEqual(proxy.dials.inProgress, 0)
        yield* proxy.setIdlers(0)
      }).pipe(Effect.provide(makeAppTest({ listen, servers: [spec(a), spec(refused)] })))
    }).pipe(Effect.scoped))

  it.live("fails over from a refused server to the next and blacklists the refused one", () =>
    Effect.gen(function*() {
      const a = yield* backend("a")
      const refused = yield* refusedPort
      // A new client goes roundrobin from server 1: the refused one.
      yield* Effect.gen(function*() {
        const port = yield* listenerPort
        assert.strictEqual(yield* firstLine(port), "a")
        const pool = yield* (yield* ServerPool).snapshot
        assert.isTrue(pool.servers[1]!.blacklisted, "the refused server is blacklisted")
        assert.isFalse(pool.servers[0]!.blacklisted)
        const stats = yield* statsWhenIdle
        assert.strictEqual(stats.accepted, 1)
        assert.strictEqual(stats.failovers, 1)
        assert.strictEqual(stats.refused, 0)
        assert.strictEqual(stats.blacklistings, 1)
        assert.strictEqual(stats.active, 0)
        // The failover re-pinned the client to server 0: the next connection goes straight there.
        const entry = yield* (yield* ClientTable).lookup("127.0.0.1")
        assert.strictEqual(Option.getOrThrow(entry).server, 0)
        assert.strictEqual(yield* firstLine(port), "a")
        const after = yield* statsWhenIdle
        assert.strictEqual(after.accepted, 2)
        assert.strictEqual(after.failovers, 1)
      }).pipe(Effect.provide(makeAppTest({ listen, servers: [spec(a), spec(refused)] })))
    }).pipe(Effect.scoped))

  it.live("a blacklisted server is skipped by roundrobin, so later clients need no failover", () =>
    Effect.gen(function*() {
      const a = yield* backend("a")
      const b = yield* backend("b")
      const refused = yield* refusedPort
      yield* Effect.gen(function*() {
        const port = yield* listenerPort
        // roundrobin: 1 (refused, fails over to 2), then 2, 0, 2, 0 with 1 blacklisted.
        const seen: Array<string> = []
        for (let i = 0; i < 5; i++) seen.push(yield* firstLine(port))
        assert.deepStrictEqual(seen, ["b", "b", "a", "b", "a"])
        const stats = yield* statsWhenIdle
        assert.strictEqual(stats.accepted, 5)
        assert.strictEqual(stats.failovers, 1)
        assert.strictEqual(stats.blacklistings, 1)
        assert.strictEqual(stats.refused, 0)
      }).pipe(Effect.provide(makeAppTest({ listen, servers: [spec(a), spec(refused), spec(b)], roundrobin: true })))
    }).pipe(Effect.scoped))

  it.live("makeAppNoHealth fails over too, but never blacklists, and its stats stay zero", () =>
    Effect.gen(function*() {
      const a = yield* backend("a")
      const refused = yield* refusedPort
      yield* Effect.gen(function*() {
        const port = yield* listenerPort
        // roundrobin: 1 (refused -> 0), 0, 1 again (still not blacklisted -> 0).
        const seen: Array<string> = []
        for (let i = 0; i < 3; i++) seen.push(yield* firstLine(port))
        assert.deepStrictEqual(seen, ["a", "a", "a"])
        const pool = yield* (yield* ServerPool).snapshot
        assert.isFalse(pool.servers[1]!.blacklisted, "the refused server is not blacklisted")
        assert.strictEqual(pool.servers[1]!.blacklistedUntil, 0)
        const stats = yield* (yield* StatsReporter).snapshot
        assert.deepStrictEqual(stats, {
          accepted: 0,
          active: 0,
          refused: 0,
          failovers: 0,
          blacklistings: 0,
          localFailures: 0,
          healthTransitions: 0,
          idleClosed: 0,
          controlRefused: 0,
          servers: [],
          emergency: undefined,
          buffers: { buffers: 0, inUse: 0, bytes: 0 },
          workers: []
        })
      }).pipe(Effect.provide(makeAppNoHealth({ listen, servers: [spec(a), spec(refused)], roundrobin: true })))
    }).pipe(Effect.scoped))

  it.live("the per-server byte counters equal the bytes moved, once the connection is closed", () =>
    Effect.gen(function*() {
      const a = yield* backend("a")
      const b = yield* backend("b")
      yield* Effect.gen(function*() {
        const port = yield* listenerPort
        const payload = "hello, nib\n".repeat(1000)
        const seen = yield* exchange(port, payload)
        assert.isUndefined(seen.error)
        // Server 1 (first of roundrobin) says "b\n" and echoes the payload.
        assert.strictEqual(seen.data, `b\n${payload}`)
        const stats = yield* statsWhenIdle
        assert.strictEqual(stats.servers[1]!.bytesSent, payload.length)
        assert.strictEqual(stats.servers[1]!.bytesReceived, 2 + payload.length)
        assert.strictEqual(stats.servers[0]!.bytesSent, 0)
        assert.strictEqual(stats.servers[0]!.bytesReceived, 0)
        assert.strictEqual(stats.servers[1]!.connections, 0)
        assert.strictEqual(stats.active, 0)
        // The pool and the client's sticky entry agree.
        const pool = yield* (yield* ServerPool).snapshot
        assert.deepStrictEqual(pool.servers, stats.servers)
        assert.strictEqual(pool.current, 1)
        const entry = Option.getOrThrow(yield* (yield* ClientTable).lookup("127.0.0.1"))
        assert.strictEqual(entry.bytesFromClient, payload.length)
        assert.strictEqual(entry.bytesToClient, 2 + payload.length)

        // A second connection (sticky to server 1) adds to the same counters.
        const again = yield* exchange(port, "xyz")
        assert.strictEqual(again.data, "b\nxyz")
        const later = yield* eventually(
          (yield* ServerPool).snapshot,
          (p) => p.servers[1]!.bytesSent === payload.length + 3
        )
        assert.strictEqual(later.servers[1]!.bytesSent, payload.length + 3)
        assert.strictEqual(later.servers[1]!.bytesReceived, 2 + payload.length + 2 + 3)
      }).pipe(Effect.provide(makeAppTest({ listen, servers: [spec(a), spec(b)] })))
    }).pipe(Effect.scoped))

  it.live("with every server refused, the connection is closed and counted as refused", () =>
    Effect.gen(function*() {
      const r0 = yield* refusedPort
      const r1 = yield* refusedPort
      yield* Effect.gen(function*() {
        const port = yield* listenerPort
        const seen = yield* exchange(port)
        // Closed without being read, as pen does (LIFECYCLE.md, close paths): this client sent nothing, so it sees
        // an EOF (a client with unread bytes would see a reset).
        assert.deepStrictEqual(seen, { data: "", error: undefined })
        const stats = yield* statsWhenIdle
        assert.strictEqual(stats.accepted, 1)
        assert.strictEqual(stats.refused, 1)
        assert.strictEqual(stats.active, 0)
        assert.strictEqual(stats.failovers, 1)
        assert.strictEqual(stats.blacklistings, 2)
        assert.isTrue(stats.servers.every((s) => s.blacklisted && s.connections === 0))
        // With both servers blacklisted, the next connection is refused without dialing anything.
        const next = yield* exchange(port)
        assert.deepStrictEqual(next, { data: "", error: undefined })
        const after = yield* statsWhenIdle
        assert.strictEqual(after.refused, 2)
        assert.strictEqual(after.blacklistings, 2)
      }).pipe(Effect.provide(makeAppTest({ listen, servers: [spec(r0), spec(r1)] })))
    }).pipe(Effect.scoped))

  it.live("with every server refused and -b 0, the connection is still closed and counted as refused", () =>
    Effect.gen(function*() {
      const r0 = yield* refusedPort
      const r1 = yield* refusedPort
      yield* Effect.gen(function*() {
        const port = yield* listenerPort
        // Guard: a failover that never gives up would keep this connection open forever.
        const seen = yield* exchange(port).pipe(Effect.timeoutOption("5 seconds"))
        assert.isTrue(Option.isSome(seen), "the client connection was never closed")
        const stats = yield* (yield* StatsReporter).snapshot
        assert.strictEqual(stats.refused, 1)
      }).pipe(Effect.provide(makeAppTest({ listen, servers: [spec(r0), spec(r1)], blacklistSeconds: 0 })))
    }).pipe(Effect.scoped))

  it.live("makeAppNoHealth: with every server refused, the connection is closed", () =>
    Effect.gen(function*() {
      const r0 = yield* refusedPort
      const r1 = yield* refusedPort
      yield* Effect.gen(function*() {
        const port = yield* listenerPort
        const seen = yield* exchange(port).pipe(Effect.timeoutOption("5 seconds"))
        assert.isTrue(Option.isSome(seen), "the client connection was never closed")
      }).pipe(Effect.provide(makeAppNoHealth({ listen, servers: [spec(r0), spec(r1)] })))
    }).pipe(Effect.scoped))

  it.live("falls over to the emergency server, which does not pin the client", () =>
    Effect.gen(function*() {
      const e = yield* backend("emergency")
      const refused = yield* refusedPort
      yield* Effect.gen(function*() {
        const port = yield* listenerPort
        assert.strictEqual(yield* firstLine(port), "emergency")
        const stats = yield* statsWhenIdle
        assert.strictEqual(stats.failovers, 1)
        assert.strictEqual(stats.refused, 0)
        const pool = yield* (yield* ServerPool).snapshot
        assert.isTrue(pool.servers[0]!.blacklisted)
        assert.strictEqual(pool.emergency!.bytesReceived, "emergency\n".length)
        const entry = Option.getOrThrow(yield* (yield* ClientTable).lookup("127.0.0.1"))
        assert.strictEqual(entry.server, -1)
      }).pipe(Effect.provide(makeAppTest({ listen, servers: [spec(refused)], emergency: spec(e) })))
    }).pipe(Effect.scoped))

  it.live("stubborn (-s): a refused first choice closes the connection, no failover", () =>
    Effect.gen(function*() {
      const a = yield* backend("a")
      const refused = yield* refusedPort
      yield* Effect.gen(function*() {
        const port = yield* listenerPort
        const seen = yield* exchange(port)
        assert.deepStrictEqual(seen, { data: "", error: undefined })
        const stats = yield* statsWhenIdle
        assert.strictEqual(stats.accepted, 1)
        assert.strictEqual(stats.refused, 1)
        assert.strictEqual(stats.failovers, 0)
        assert.strictEqual(stats.servers[0]!.bytesReceived, 0)
      }).pipe(Effect.provide(makeAppTest({ listen, servers: [spec(a), spec(refused)], stubborn: true })))
    }).pipe(Effect.scoped))
})

// The relay, through nib: a client connected to the Listener, one server (a custom backend that records what it gets
// and lets the test drive its side). What the old `Socket.relay` tests checked with `onDone` totals is checked here on
// the server's byte counters, once the connection is over.

/** Both test ends of one connection relayed by nib, and nib's client and server sockets' peers. */
interface Relayed {
  /** The test's client, connected to nib's listener. */
  readonly client: Client.Conn
  /** The server's side of nib's upstream connection. */
  readonly server: Client.Conn
}

/**
 * Runs `body` on one connection through a nib with a single server (`makeAppTest`, listening on 127.0.0.1:0). Both
 * ends allow half-open connections, so each direction ends on its own; the client is connected before `body` runs
 * and nib has dialed the server.
 */
const throughNib = <A, E, R>(body: (relayed: Relayed) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const served: Array<Client.Conn> = []
    const server = yield* Backend.custom("relayed", (socket) => served.push(new Client.Conn(socket)), {
      allowHalfOpen: true
    })
    return yield* Effect.gen(function*() {
      const client = yield* Client.open(yield* listenerPort)
      assert.isTrue(yield* Poll.waitUntil(() => served.length > 0), "nib never connected to the server")
      const stats = yield* (yield* StatsReporter).snapshot
      assert.strictEqual(stats.active, 1)
      assert.strictEqual(stats.servers[0]!.connections, 1)
      return yield* body({ client, server: served[0]! })
    }).pipe(Effect.provide(makeAppTest({ listen, servers: [spec(server.port)] })))
  }).pipe(Effect.scoped)

/**
 * Polls (bounded) until nib has finished with every connection it accepted: none active, the server's count back to
 * 0. Returns the stats then, after checking that the pool's own snapshot agrees with them.
 */
const statsWhenOver = Effect.gen(function*() {
  const s = yield* Stats.waitFor(
    (s) => s.accepted > 0 && s.active === 0 && s.servers.every((b) => b.connections === 0),
    "the connection never ended in nib"
  )
  const pool = yield* (yield* ServerPool).snapshot
  assert.deepStrictEqual(pool.servers, s.servers)
  return s
})

/** Asserts that the server's counters are the bytes moved: `sent` from the client, `received` from the server. */
const bytesMoved = (sent: number, received: number) =>
  Effect.gen(function*() {
    const stats = yield* statsWhenOver
    assert.strictEqual(stats.accepted, 1)
    assert.strictEqual(stats.active, 0)
    assert.strictEqual(stats.servers[0]!.bytesSent, sent, "bytes sent to the server")
    assert.strictEqual(stats.servers[0]!.bytesReceived, received, "bytes received from the server")
    assert.strictEqual(stats.servers[0]!.connections, 0)
    const entry = Option.getOrThrow(yield* (yield* ClientTable).lookup("127.0.0.1"))
    assert.strictEqual(entry.bytesFromClient, sent)
    assert.strictEqual(entry.bytesToClient, received)
  })

const textIs = (conn: Client.Conn, text: string) =>
  Effect.gen(function*() {
    const ok = yield* Effect.promise(() => conn.until(() => conn.text() === text, 5_000))
    assert.isTrue(ok, `expected ${JSON.stringify(text)}, got ${JSON.stringify(conn.text())}`)
  })
const ended = (conn: Client.Conn) => Effect.promise(() => conn.ended(5_000))

/**
 * While the connection is open: nib counts it as active, the server holds it, and the bytes moved so far are counted
 * already (live, as pen's are), on the server and on the client's entry.
 */
const stillRelaying = (sent: number, received: number) =>
  Effect.gen(function*() {
    const stats = yield* (yield* StatsReporter).snapshot
    assert.strictEqual(stats.active, 1)
    assert.strictEqual(stats.servers[0]!.connections, 1)
    assert.strictEqual(stats.servers[0]!.bytesSent, sent, "bytes sent to the server so far")
    assert.strictEqual(stats.servers[0]!.bytesReceived, received, "bytes received from the server so far")
    const entry = Option.getOrThrow(yield* (yield* ClientTable).lookup("127.0.0.1"))
    assert.strictEqual(entry.bytesFromClient, sent)
    assert.strictEqual(entry.bytesToClient, received)
  })

const sha256 = (data: Buffer) => Crypto.createHash("sha256").update(data).digest("hex")

describe("TcpProxy relay", () => {
  it.live("moves bytes both ways; the counters follow the bytes while open and hold the totals once closed", () =>
    throughNib(({ client, server }) =>
      Effect.gen(function*() {
        client.socket.write("ping from the client")
        yield* textIs(server, "ping from the client")
        server.socket.write("pong from the server")
        yield* textIs(client, "pong from the server")
        client.socket.write(", again")
        yield* textIs(server, "ping from the client, again")
        yield* stillRelaying("ping from the client, again".length, "pong from the server".length)

        client.socket.end()
        server.socket.end()
        assert.strictEqual(yield* ended(client), "eof")
        assert.strictEqual(yield* ended(server), "eof")
        yield* bytesMoved("ping from the client, again".length, "pong from the server".length)
      })
    ))

  it.live("client half-close: the server sees EOF and can still send; the client gets everything after its FIN", () =>
    throughNib(({ client, server }) =>
      Effect.gen(function*() {
        client.socket.end("request")
        assert.strictEqual(yield* ended(server), "eof")
        assert.strictEqual(server.text(), "request")
        assert.isUndefined(client.ending)
        yield* stillRelaying("request".length, 0)

        const reply = ["first part of the reply, ", "second part, ", "and the end"]
        server.socket.write(reply[0]!)
        yield* textIs(client, reply[0]!)
        server.socket.write(reply[1]!)
        server.socket.end(reply[2]!)
        assert.strictEqual(yield* ended(client), "eof")
        assert.strictEqual(client.text(), reply.join(""))
        assert.isUndefined(client.error)
        yield* bytesMoved("request".length, reply.join("").length)
      })
    ))

  it.live("server half-close: the client sees EOF and can still send; the server gets everything after its FIN", () =>
    throughNib(({ client, server }) =>
      Effect.gen(function*() {
        server.socket.end("banner")
        assert.strictEqual(yield* ended(client), "eof")
        assert.strictEqual(client.text(), "banner")
        assert.isUndefined(server.ending)
        yield* stillRelaying(0, "banner".length)

        const request = ["first part of the request, ", "second part, ", "and the end"]
        client.socket.write(request[0]!)
        yield* textIs(server, request[0]!)
        client.socket.write(request[1]!)
        client.socket.end(request[2]!)
        assert.strictEqual(yield* ended(server), "eof")
        assert.strictEqual(server.text(), request.join(""))
        assert.isUndefined(server.error)
        yield* bytesMoved(request.join("").length, "banner".length)
      })
    ))

  for (const side of ["server", "client"] as const) {
    it.live(`a reset from the ${side} resets the other side; the connection ends with its byte counts`, () =>
      throughNib(({ client, server }) =>
        Effect.gen(function*() {
          client.socket.write("hello")
          yield* textIs(server, "hello")
          server.socket.write("hi")
          yield* textIs(client, "hi")

          const [resetter, other] = side === "server" ? [server, client] : [client, server]
          resetter.socket.resetAndDestroy()
          assert.strictEqual(yield* ended(other), "reset")
          assert.strictEqual(other.error?.code, "ECONNRESET")
          yield* bytesMoved("hello".length, "hi".length)
        })
      ))
  }

  it.live("bulk both ways at once, each side ending when done: every byte arrives, the counters equal what was sent", () =>
    throughNib(({ client, server }) =>
      Effect.gen(function*() {
        const up = Crypto.randomBytes(1024 * 1024 + 17)
        const down = Crypto.randomBytes(256 * 1024 + 5)
        client.socket.end(up)
        server.socket.end(down)
        assert.strictEqual(yield* ended(client), "eof")
        assert.strictEqual(yield* ended(server), "eof")
        assert.strictEqual(client.received, down.length)
        assert.strictEqual(server.received, up.length)
        assert.strictEqual(sha256(client.data()), sha256(down))
        assert.strictEqual(sha256(server.data()), sha256(up))
        yield* bytesMoved(up.length, down.length)
      })
    ))
})
