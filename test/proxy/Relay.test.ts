/**
 * The relay through nib's whole proxy (accept, dial, relay, close), with real sockets on 127.0.0.1:
 *
 * - a property test: random chunk sizes both ways at once, random pauses of either reader, each side half-closing
 *   when its own data is sent (so at a random point of the other direction); every byte arrives (sha256), the
 *   counters equal what was sent, and every buffer the relay borrowed is back in the pool once the connection ends;
 * - a slow reader: a 200 MiB download to a client that does not read for a while holds a bounded number of pooled
 *   buffers, then arrives whole;
 * - an idle connection holds no buffer;
 * - `tcp_fastclose`: a property test where the side the mode names closes while the other side is still sending; the
 *   whole connection ends without the other side closing, and nothing nib read before the close is lost.
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
import * as SocketOptions from "../../src/domain/SocketOptions.ts"
import { Listener } from "../../src/proxy/Listener.ts"
import { TcpProxy } from "../../src/proxy/TcpProxy.ts"
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

/**
 * The side that stays open under `tcp_fastclose`: it sends `sizes` random chunks (honouring back-pressure, `gapMs`
 * apart), stopping if the connection ends under it, and never ends its own side (without tcp_fastclose the connection
 * would stay half-open for ever). Keeps what it sent, in order, and what it received.
 */
class Stayer {
  private readonly sent: Array<Buffer> = []
  private readonly got: Array<Buffer> = []
  ended = false
  closed = false
  error: NodeJS.ErrnoException | undefined

  constructor(readonly socket: Net.Socket) {
    socket.on("data", (chunk: Buffer) => this.got.push(chunk))
    socket.on("end", () => (this.ended = true))
    socket.on("error", (error: NodeJS.ErrnoException) => (this.error = error))
    socket.on("close", () => (this.closed = true))
  }

  private get over(): boolean {
    return this.ended || this.closed || this.error !== undefined
  }

  async send(sizes: ReadonlyArray<number>, gapMs: number): Promise<void> {
    for (const size of sizes) {
      if (this.over) return
      const chunk = Crypto.randomBytes(size)
      this.sent.push(chunk)
      if (!this.socket.write(chunk)) await this.drainedOrOver()
      if (gapMs > 0) await sleep(gapMs)
    }
  }

  private drainedOrOver(): Promise<void> {
    if (this.over) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        for (const event of ["drain", "close", "end", "error"]) this.socket.off(event, done)
        resolve()
      }
      for (const event of ["drain", "close", "end", "error"]) this.socket.on(event, done)
    })
  }

  sentBytes(): Buffer {
    return Buffer.concat(this.sent)
  }

  receivedBytes(): Buffer {
    return Buffer.concat(this.got)
  }
}

describe("Relay with tcp_fastclose", () => {
  it.live.prop(
    "the side the mode names closes while the other sends: the connection ends under the other side, nothing read is lost, every buffer comes back",
    {
      mode: Schema.Literals(["up", "down", "both"]),
      clientCloses: Schema.Boolean,
      closing: Sizes,
      staying: Sizes,
      closerPauses: Pauses,
      stayerPauses: Pauses,
      closeDelay: int(0, 20),
      gap: int(0, 2)
    },
    ({ clientCloses: either, closeDelay, closerPauses, closing, gap, mode, stayerPauses, staying }) =>
      Effect.gen(function*() {
        // up: the server closes; down: the client; both: either.
        const clientCloses = mode === "both" ? either : mode === "down"
        const peers: Array<Net.Socket> = []
        const server = yield* Backend.custom("relayed", (socket) => peers.push(socket), { allowHalfOpen: true })
        yield* Effect.gen(function*() {
          const proxy = yield* TcpProxy
          yield* proxy.setSockets({ ...SocketOptions.defaults, fastclose: mode })
          const port = yield* listenerPort
          const socket: Net.Socket = yield* Effect.acquireRelease(
            Effect.callback<Net.Socket>((resume) => {
              const s = Net.connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => resume(Effect.succeed(s)))
            }),
            (s) => Effect.sync(() => s.destroy())
          )
          assert.isTrue(yield* Poll.waitUntil(() => peers.length > 0, 10_000), "nib never connected to the server")
          const [closerSocket, stayerSocket] = clientCloses ? [socket, peers[0]!] : [peers[0]!, socket]
          const closer = new Peer(closerSocket, closerPauses)
          const stayer = new Stayer(stayerSocket)
          if (stayerPauses.length > 0) {
            // The stayer's reader pauses too, once, at its first pause's byte count.
            const pause = stayerPauses[0]!
            let received = 0
            stayerSocket.on("data", (chunk: Buffer) => {
              if (received < pause.at && (received += chunk.length) >= pause.at) {
                stayerSocket.pause()
                setTimeout(() => stayerSocket.resume(), pause.ms)
              }
            })
          }
          const [closerDigest] = yield* Effect.promise(() =>
            Promise.all([closer.send(closing, closeDelay, gap), stayer.send(staying, gap)])
          )
          // nib ends the connection, though the other side never closes its own.
          const finished = yield* Poll.waitUntil(
            () => closer.closed && (stayer.ended || stayer.error !== undefined),
            20_000
          )
          assert.isTrue(
            finished,
            `not finished: closer got ${closer.received} (EOF ${closer.ended}, closed ${closer.closed}), the other got ${stayer.receivedBytes().length}/${
              total(closing)
            } (EOF ${stayer.ended}, error ${stayer.error?.code})`
          )
          const stats = yield* whenOver
          assert.isFalse(stayer.socket.writableEnded, "the other side did not close its side")
          assert.strictEqual(stats.buffers.inUse, 0, "every borrowed buffer is back in the pool")
          assert.strictEqual(stats.servers[0]!.connections, 0, "the server is released")
          // The closer gets what nib had read from the other side, in order, then an EOF.
          assert.isUndefined(closer.error)
          assert.isTrue(closer.ended, "the closer saw an EOF")
          const sent = stayer.sentBytes()
          assert.isAtMost(closer.received, sent.length)
          const expected = Crypto.createHash("sha256").update(sent.subarray(0, closer.received)).digest("hex")
          assert.strictEqual(closer.receivedDigest(), expected, "the closer got a prefix of what the other side sent")
          // The other side sees the end without having closed first: an EOF (then every byte the closer sent), or a
          // reset, when its own bytes arrived as nib closed (as they would at pen).
          const received = stayer.receivedBytes()
          assert.isTrue(stayer.ended || stayer.error !== undefined, "the other side saw the connection end")
          const all = Crypto.createHash("sha256").update(received).digest("hex")
          if (stayer.ended) {
            assert.strictEqual(received.length, total(closing), "after its EOF, the other side has every byte")
            assert.strictEqual(all, closerDigest, "the closer's bytes, whole")
          } else {
            assert.isAtMost(received.length, total(closing))
          }
          console.log(
            "FC",
            mode,
            clientCloses,
            total(closing),
            total(staying),
            closer.received,
            received.length,
            stayer.ended,
            stayer.error?.code
          )
          stayerSocket.destroy()
        }).pipe(Effect.provide(app(server.port)))
      }).pipe(Effect.scoped),
    { timeout: 180_000, arbitrary: { runs: 25 } }
  )

  for (const mode of ["down", "up"] as const) {
    const [closerName, otherName] = mode === "down" ? ["client", "server"] : ["server", "client"]
    it.live(
      `${mode}: the ${closerName} closes while nib holds the ${otherName}'s bytes for it: it gets every byte nib read, then the end`,
      () =>
        Effect.gen(function*() {
          const MiB = 1024 * 1024
          const block = Crypto.randomBytes(MiB)
          const peers: Array<Net.Socket> = []
          const server = yield* Backend.custom("relayed", (socket) => peers.push(socket), { allowHalfOpen: true })
          yield* Effect.gen(function*() {
            yield* (yield* TcpProxy).setSockets({ ...SocketOptions.defaults, fastclose: mode })
            const client = yield* connectClient(yield* listenerPort)
            assert.isTrue(yield* Poll.waitUntil(() => peers.length > 0, 10_000), "nib never connected to the server")
            const upstream = new Peer(peers[0]!)
            const [closer, other] = mode === "down" ? [client, upstream] : [upstream, client]
            // The closer does not read: the other side's bytes pile up in the kernel, then in nib's buffers.
            closer.socket.pause()
            // (an object: the loop reads what the test sets later)
            const sender = { stop: false }
            const send = async () => {
              for (let i = 0; i < 64 && !sender.stop && !other.socket.destroyed; i++) {
                if (!other.socket.write(block)) {
                  await new Promise<void>((resolve) => {
                    other.socket.once("drain", resolve)
                    other.socket.once("close", resolve)
                  })
                }
              }
            }
            const sending = send()
            const read = yield* Stats.reader
            const counted = () => mode === "down" ? read().servers[0]!.bytesReceived : read().servers[0]!.bytesSent
            let last = -1
            let quiet = 0
            const stalled = yield* Poll.waitUntil(() => {
              const now = counted()
              quiet = now === last && read().buffers.inUse > 0 ? quiet + 1 : 0
              last = now
              return quiet >= 20
            }, 20_000)
            assert.isTrue(stalled, "nib never stopped reading while it held bytes for the closer")
            // The close, with nib's buffers full of bytes for the closer; it reads them afterwards.
            closer.socket.end()
            const ended = yield* Poll.waitUntil(() => other.ended || other.error !== undefined, 10_000)
            assert.isTrue(ended, `the ${otherName} never saw the connection end`)
            sender.stop = true
            closer.socket.resume()
            assert.isTrue(yield* Poll.waitUntil(() => closer.ended, 20_000), `the ${closerName} never got its EOF`)
            yield* Effect.promise(() => sending)
            const over = yield* whenOver
            const relayed = mode === "down" ? over.servers[0]!.bytesReceived : over.servers[0]!.bytesSent
            assert.isAbove(relayed, 0)
            assert.strictEqual(closer.received, relayed, `the ${closerName} got every byte nib read for it`)
            const expected = Crypto.createHash("sha256")
            for (let n = relayed; n > 0; n -= MiB) expected.update(n >= MiB ? block : block.subarray(0, n))
            assert.strictEqual(closer.receivedDigest(), expected.digest("hex"), "in order")
            assert.isFalse(other.socket.writableEnded, `nib ended the connection; the ${otherName} did not close`)
            assert.strictEqual(over.buffers.inUse, 0)
          }).pipe(Effect.provide(app(server.port)))
        }).pipe(Effect.scoped),
      120_000
    )
  }
})
