/**
 * The relay through nib's whole proxy (accept, dial, relay, close), with real sockets on 127.0.0.1:
 *
 * - a property test: random chunk sizes both ways at once, random pauses of either reader, each side half-closing
 *   when its own data is sent (so at a random point of the other direction); every byte arrives (sha256), the
 *   counters equal what was sent, and every buffer the relay borrowed is back in the pool once the connection ends;
 * - a slow reader: a 200 MiB download to a client that does not read for a while holds a bounded number of pooled
 *   buffers, then arrives whole;
 * - an idle connection holds no buffer.
 *
 * Timers here only pace the peers (pauses, gaps); nothing asserts how long anything took, and every wait is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, Schema } from "effect"
import * as Crypto from "node:crypto"
import * as Net from "node:net"
import * as TestLayers from "../../layers/Test.ts"
import * as Address from "../../src/domain/Address.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"
import { Listener } from "../../src/proxy/Listener.ts"
import * as Backend from "../utils/Backend.ts"
import * as Poll from "../utils/Poll.ts"
import * as Stats from "../utils/Stats.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const app = (serverPort: number) =>
  TestLayers.makeAppTest({
    listen: Address.tcp("127.0.0.1", 0),
    servers: [ServerSpec.make(Address.tcp("127.0.0.1", serverPort))]
  }).pipe(Layer.provide(Logger.layer([])))

const listenerPort = Effect.map(Listener, (l) => (l.address as Address.TcpEndpoint).port)

/** A reader pause: once `at` bytes have arrived, the reader stops reading for `ms` milliseconds. */
interface Pause {
  readonly at: number
  readonly ms: number
}

/** One end of a relayed connection (the client, or the server nib dialed): hashes what it receives. */
class Peer {
  private readonly hash = Crypto.createHash("sha256")
  private digest: string | undefined
  received = 0
  ended = false
  closed = false
  error: Error | undefined

  constructor(readonly socket: Net.Socket, pauses: ReadonlyArray<Pause> = []) {
    const pending = pauses.toSorted((a, b) => a.at - b.at)
    socket.on("data", (chunk: Buffer) => {
      this.hash.update(chunk)
      this.received += chunk.length
      if (pending.length > 0 && pending[0]!.at <= this.received) {
        const pause = pending.shift()!
        socket.pause()
        setTimeout(() => socket.resume(), pause.ms)
      }
    })
    socket.on("end", () => (this.ended = true))
    socket.on("error", (error) => (this.error = error))
    socket.on("close", () => (this.closed = true))
  }

  /** The sha256 of everything received; read once the peer has seen EOF. */
  receivedDigest(): string {
    return (this.digest ??= this.hash.digest("hex"))
  }

  /**
   * Writes chunks of `sizes` random bytes, honouring back-pressure, with a `gapMs` pause after each, then half-closes.
   * Resolves to the sha256 of what was sent.
   */
  async send(sizes: ReadonlyArray<number>, delayMs: number, gapMs: number): Promise<string> {
    const sent = Crypto.createHash("sha256")
    await sleep(delayMs)
    for (const size of sizes) {
      const chunk = Crypto.randomBytes(size)
      sent.update(chunk)
      if (!this.socket.write(chunk)) await this.drained()
      if (gapMs > 0) await sleep(gapMs)
    }
    this.socket.end()
    return sent.digest("hex")
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off("drain", done)
        this.socket.off("close", done)
        resolve()
      }
      this.socket.on("drain", done)
      this.socket.on("close", done)
    })
  }
}

const total = (sizes: ReadonlyArray<number>) => sizes.reduce((a, b) => a + b, 0)

/** A client connection to nib that stays open after the server's FIN (it half-closes when it is done sending). */
const connectClient = (port: number, pauses?: ReadonlyArray<Pause>) =>
  Effect.acquireRelease(
    Effect.callback<Peer>((resume) => {
      const socket = Net.connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => resume(Effect.succeed(peer)))
      const peer = new Peer(socket, pauses)
    }),
    (peer) => Effect.sync(() => peer.socket.destroy())
  )

/**
 * A server for one relayed connection: the peer is made (with `pauses` for its reader) when nib connects. Half-open,
 * so that it can go on sending after the client's FIN.
 */
const oneConnectionServer = (pauses?: ReadonlyArray<Pause>) =>
  Effect.gen(function*() {
    const peers: Array<Peer> = []
    const server = yield* Backend.custom("relayed", (socket) => peers.push(new Peer(socket, pauses)), {
      allowHalfOpen: true
    })
    const accepted = Effect.gen(function*() {
      assert.isTrue(yield* Poll.waitUntil(() => peers.length > 0, 10_000), "nib never connected to the server")
      return peers[0]!
    })
    return { port: server.port, accepted }
  })

/** Polls (bounded) until nib has finished with every connection and the relay has given back every buffer. */
const whenOver = Stats.waitFor(
  (s) => s.accepted > 0 && s.active === 0 && s.buffers.inUse === 0,
  "the connection never ended, or buffers are still lent out",
  10_000
)

const Sizes = Schema.Array(int(1, 200_000)).check(Schema.isMaxLength(10))
const Pauses = Schema.Array(Schema.Struct({ at: int(0, 1_200_000), ms: int(1, 30) })).check(Schema.isMaxLength(3))

describe("Relay", () => {
  it.live.prop(
    "both ways at once, random chunks, paused readers, half-close from either side: every byte arrives and every buffer comes back",
    {
      up: Sizes,
      down: Sizes,
      clientPauses: Pauses,
      serverPauses: Pauses,
      upDelay: int(0, 20),
      downDelay: int(0, 20),
      gap: int(0, 2)
    },
    ({ clientPauses, down, downDelay, gap, serverPauses, up, upDelay }) =>
      Effect.gen(function*() {
        const server = yield* oneConnectionServer(serverPauses)
        yield* Effect.gen(function*() {
          const client = yield* connectClient(yield* listenerPort, clientPauses)
          const upstream = yield* server.accepted
          const [sentUp, sentDown] = yield* Effect.promise(() =>
            Promise.all([client.send(up, upDelay, gap), upstream.send(down, downDelay, gap)])
          )
          const finished = yield* Poll.waitUntil(() => client.closed && upstream.closed, 20_000)
          assert.isTrue(
            finished,
            `not finished: client got ${client.received}/${
              total(down)
            } (EOF ${client.ended}), server got ${upstream.received}/${total(up)} (EOF ${upstream.ended})`
          )
          assert.isUndefined(client.error)
          assert.isUndefined(upstream.error)
          assert.isTrue(client.ended && upstream.ended, "each side saw the other's FIN")
          assert.strictEqual(upstream.received, total(up))
          assert.strictEqual(client.received, total(down))
          assert.strictEqual(upstream.receivedDigest(), sentUp, "client to server: same bytes")
          assert.strictEqual(client.receivedDigest(), sentDown, "server to client: same bytes")
          const stats = yield* whenOver
          assert.strictEqual(stats.servers[0]!.bytesSent, total(up))
          assert.strictEqual(stats.servers[0]!.bytesReceived, total(down))
          assert.strictEqual(stats.buffers.inUse, 0, "every borrowed buffer is back in the pool")
        }).pipe(Effect.provide(app(server.port)))
      }).pipe(Effect.scoped),
    { timeout: 180_000, arbitrary: { runs: 25 } }
  )

  it.live(
    "a 200 MiB download to a client that stops reading holds a few pooled buffers, then arrives whole",
    () =>
      Effect.gen(function*() {
        const MiB = 1024 * 1024
        const block = Crypto.randomBytes(MiB)
        const blocks = 200
        const server = yield* oneConnectionServer()
        yield* Effect.gen(function*() {
          const client = yield* connectClient(yield* listenerPort)
          client.socket.pause()
          const upstream = yield* server.accepted
          const send = async () => {
            for (let i = 0; i < blocks; i++) {
              if (!upstream.socket.write(block)) {
                await new Promise<void>((resolve) => upstream.socket.once("drain", resolve))
              }
            }
            upstream.socket.end()
          }
          const sending = send()
          // The server fills nib and the kernel's buffers, then stays blocked while the client does not read.
          const read = yield* Stats.reader
          let peak = 0
          let quiet = 0
          let lastReceived = -1
          const blocked = yield* Poll.waitUntil(() => {
            const s = read()
            peak = Math.max(peak, s.buffers.inUse)
            const moved = s.servers[0]!.bytesReceived
            quiet = moved === lastReceived ? quiet + 1 : 0
            lastReceived = moved
            return quiet >= 20
          }, 20_000)
          assert.isTrue(blocked, "the relay never stopped reading from the server while the client did not read")
          assert.isBelow(lastReceived, blocks * MiB, "nib did not read the whole download ahead of the client")
          // Back-pressure: a couple of buffers per direction, not the 200 MiB the server tried to send.
          assert.isAtMost(peak, 4, `pooled buffers lent out while the client did not read (peak ${peak})`)
          assert.isAtMost(read().buffers.buffers, 8, "buffers the pool owns")

          client.socket.resume()
          yield* Effect.promise(() => sending)
          const arrived = yield* Poll.waitUntil(() => client.ended, 60_000)
          assert.isTrue(arrived, `the download never ended: ${client.received} of ${blocks * MiB} bytes`)
          const expected = Crypto.createHash("sha256")
          for (let i = 0; i < blocks; i++) expected.update(block)
          assert.strictEqual(client.received, blocks * MiB)
          assert.strictEqual(client.receivedDigest(), expected.digest("hex"))
          client.socket.end()
          const over = yield* whenOver
          assert.strictEqual(over.servers[0]!.bytesReceived, blocks * MiB)
        }).pipe(Effect.provide(app(server.port)))
      }).pipe(Effect.scoped),
    120_000
  )

  it.live("an idle connection holds no buffer, and its bytes are counted while it is open", () =>
    Effect.gen(function*() {
      const server = yield* oneConnectionServer()
      yield* Effect.gen(function*() {
        const client = yield* connectClient(yield* listenerPort)
        const upstream = yield* server.accepted
        client.socket.write("GET / HTTP/1.1\r\n\r\n")
        assert.isTrue(yield* Poll.waitUntil(() => upstream.received === 18))
        upstream.socket.write("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        assert.isTrue(yield* Poll.waitUntil(() => client.received === 38))
        const s = yield* Stats.waitFor((s) => s.buffers.inUse === 0, "buffers held while idle")
        assert.strictEqual(s.active, 1, "the connection is still open")
        assert.strictEqual(s.servers[0]!.bytesSent, 18)
        assert.strictEqual(s.servers[0]!.bytesReceived, 38)
        assert.isAtLeast(s.buffers.buffers, 1, "the pool keeps the buffers it lent, for the next chunk")
      }).pipe(Effect.provide(app(server.port)))
    }).pipe(Effect.scoped))
})
