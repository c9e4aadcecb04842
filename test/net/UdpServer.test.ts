/**
 * The UDP listener's session table (`net/UdpServer.ts`) on real sockets: datagrams split into sessions by client
 * address:port, `maxSessions` never exceeded (the least recently active session makes room), nothing lost or
 * reordered across evictions, the idle sweep, a drain (no new session; the live ones until idle), and every session
 * ended with the scope.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import * as Address from "../../src/domain/Address.ts"
import * as UdpServer from "../../src/net/UdpServer.ts"
import * as Poll from "../utils/Poll.ts"
import * as Udp from "../utils/Udp.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

/** What a test handler saw: each session's client and datagrams, and the most sessions live at once. */
interface Seen {
  readonly sessions: Array<{ readonly client: string; readonly datagrams: Array<string> }>
  live: number
  maxLive: number
}

/** A handler that records each session's datagrams and echoes them back with the session's number. */
const recorder = (seen: Seen) => (peer: UdpServer.Peer) =>
  Effect.callback<void>((resume) => {
    const index = seen.sessions.push({ client: `${peer.address}:${peer.port}`, datagrams: [] }) - 1
    seen.maxLive = Math.max(seen.maxLive, ++seen.live)
    let over = false
    const end = () => {
      if (over) return
      over = true
      seen.live--
      peer.end()
      resume(Effect.void)
    }
    peer.attach({
      fromPeer: (datagram) => {
        seen.sessions[index]!.datagrams.push(datagram.toString())
        peer.reply(Buffer.from(`${index}:${datagram.toString()}`))
      },
      abort: end
    })
    return Effect.sync(end)
  })

const serve = (options: Omit<UdpServer.Options, "endpoint">) =>
  Effect.gen(function*() {
    const server = yield* UdpServer.make({ endpoint: Address.tcp("127.0.0.1", 0), ...options })
    const seen: Seen = { sessions: [], live: 0, maxLive: 0 }
    const fiber = yield* Effect.forkScoped(server.run(recorder(seen)))
    const port = (server.address() as Address.TcpEndpoint).port
    return { server, seen, fiber, port }
  })

describe("UdpServer", () => {
  it.live.prop(
    "random clients under a session limit: at most maxSessions live, every datagram delivered in order",
    {
      clients: int(1, 6),
      max: int(1, 6),
      sends: Schema.Array(int(0, 5)).check(Schema.isMinLength(1), Schema.isMaxLength(40))
    },
    ({ clients, max, sends }) =>
      Effect.gen(function*() {
        const { seen, server, port } = yield* serve({ maxSessions: max, idleSeconds: 0 })
        const sockets = yield* Effect.forEach(Array.from({ length: clients }), () => Udp.client(port))
        const sent = sockets.map((): Array<string> => [])
        for (const [i, pick] of sends.entries()) {
          const c = pick % clients
          sockets[c]!.send(`d${i}`)
          sent[c]!.push(`d${i}`)
          // One at a time, so that "least recently active" is well defined.
          const expected = sent[c]!.length
          assert.strictEqual((yield* Effect.promise(() => sockets[c]!.waitReplies(expected))).length, expected)
        }
        assert.isAtMost(seen.maxLive, max)
        assert.isAtMost(server.active(), max)
        // Per client, its sessions' datagrams, in order, are what it sent.
        for (const [c, socket] of sockets.entries()) {
          const client = `127.0.0.1:${socket.port}`
          const received = seen.sessions.filter((s) => s.client === client).flatMap((s) => s.datagrams)
          assert.deepStrictEqual(received, sent[c])
        }
      }),
    { timeout: 60_000, arbitrary: { runs: 30 } }
  )

  it.live("the least recently active session is the one that makes room", () =>
    Effect.gen(function*() {
      const { seen, port } = yield* serve({ maxSessions: 2, idleSeconds: 0 })
      const [a, b, c] = yield* Effect.forEach([0, 1, 2], () => Udp.client(port))
      for (const [socket, n] of [[a!, 1], [b!, 1], [a!, 2], [c!, 1]] as const) {
        socket.send("x")
        assert.strictEqual((yield* Effect.promise(() => socket.waitReplies(n))).length, n)
      }
      // b was the least recently active when c came: its session ended, a's did not.
      assert.strictEqual(seen.live, 2)
      assert.deepStrictEqual(seen.sessions.map((s) => s.datagrams.length), [2, 1, 1])
      b!.send("y")
      assert.strictEqual((yield* Effect.promise(() => b!.waitReplies(2))).length, 2)
      assert.strictEqual(seen.sessions.length, 4, "b came back as a new session")
      assert.strictEqual(seen.sessions[3]!.client, `127.0.0.1:${b!.port}`)
    }))

  it.live("an idle session ends after idleSeconds; an active one does not; the scope ends the rest", () =>
    Effect.gen(function*() {
      const { seen, port, fiber } = yield* serve({ maxSessions: 10, idleSeconds: 0.3 })
      const quiet = yield* Udp.client(port)
      const busy = yield* Udp.client(port)
      quiet.send("once")
      // busy keeps talking, a datagram every 100 ms (at most 20), until quiet's session has timed out.
      for (let i = 1; i <= 20; i++) {
        busy.send(`tick${i}`)
        yield* Effect.promise(() => busy.waitReplies(i))
        if (seen.live === 1) break
        yield* Effect.sleep("100 millis")
      }
      assert.isTrue(yield* Poll.waitUntil(() => seen.live === 1, 3_000), "the quiet session never ended")
      assert.strictEqual(seen.sessions[0]!.client, `127.0.0.1:${quiet.port}`)
      assert.strictEqual(seen.sessions.length, 2, "the busy session never ended")
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(seen.live, 0, "interrupting run ends every session")
    }))

  it.live("drain: a new client gets no session, a live one goes on until it goes idle, then idle completes", () =>
    Effect.gen(function*() {
      const { seen, port, server } = yield* serve({ maxSessions: 10, idleSeconds: 0.5 })
      const live = yield* Udp.client(port)
      live.send("before")
      assert.deepStrictEqual(yield* Effect.promise(() => live.waitReplies(1)), ["0:before"])
      const idle = yield* Effect.forkScoped(server.idle)

      server.drain()
      live.send("after")
      assert.deepStrictEqual(yield* Effect.promise(() => live.waitReplies(2)), ["0:before", "0:after"])
      const fresh = yield* Udp.client(port)
      fresh.send("new")
      assert.deepStrictEqual(yield* Effect.promise(() => fresh.waitReplies(1, 300)), [])
      assert.strictEqual(seen.sessions.length, 1, "no session for the new client")

      const done = yield* Fiber.await(idle).pipe(Effect.timeoutOption("5 seconds"))
      assert.isTrue(done._tag === "Some", "idle did not complete once the session went idle")
      assert.strictEqual(seen.live, 0)
      assert.strictEqual(server.active(), 0)
    }))
})
