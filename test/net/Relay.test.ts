/**
 * The relay's Node primitives on their own: the buffer pool, switching an accepted socket to the shared read buffer
 * (`readShared`), and the activity stamps the idle sweep reads. The relay as a whole (both directions, half-close,
 * back-pressure, buffers given back) is tested through nib's proxy in test/proxy/Relay.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Net from "node:net"
import { BUFFER_SIZE, BufferPool } from "../../src/net/BufferPool.ts"
import * as Relay from "../../src/net/Relay.ts"
import * as Poll from "../utils/Poll.ts"

describe("BufferPool", () => {
  it("lends buffers of BUFFER_SIZE, reuses what comes back, and keeps at most maxFree free ones", () => {
    const pool = new BufferPool(2)
    const a = pool.borrow()
    const b = pool.borrow()
    const c = pool.borrow()
    assert.strictEqual(a.length, BUFFER_SIZE)
    assert.deepStrictEqual(pool.stats(), { buffers: 3, inUse: 3, bytes: 3 * BUFFER_SIZE })
    pool.giveBack(a)
    pool.giveBack(b)
    pool.giveBack(c)
    // Only two are kept; the third is left to the GC.
    assert.deepStrictEqual(pool.stats(), { buffers: 2, inUse: 0, bytes: 2 * BUFFER_SIZE })
    const again = pool.borrow()
    assert.isTrue(again === b || again === c, "a buffer given back is lent again")
    assert.deepStrictEqual(pool.stats(), { buffers: 2, inUse: 1, bytes: 2 * BUFFER_SIZE })
  })
})

/** A server with `pauseOnConnect` (as nib's listener) and one client connected to it; the accepted socket. */
const accepted = Effect.acquireRelease(
  Effect.callback<{ server: Net.Server; client: Net.Socket; socket: Net.Socket }>((resume) => {
    const server = Net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
      resume(Effect.succeed({ server, client, socket }))
    })
    let client: Net.Socket
    server.listen(0, "127.0.0.1", () => {
      client = Net.connect({ host: "127.0.0.1", port: (server.address() as Net.AddressInfo).port })
      client.on("error", () => {})
    })
  }),
  ({ client, server, socket }) =>
    Effect.sync(() => {
      socket.destroy()
      client.destroy()
      server.close()
    })
)

describe("readShared", () => {
  it("is available on the Node nib runs on (else accepted sockets fall back to data events)", () => {
    assert.isTrue(Relay.sharedReadsAvailable())
  })

  it.live("switches an accepted socket that has not read yet; it then emits no data events", () =>
    Effect.gen(function*() {
      const { client, socket } = yield* accepted
      let dataEvents = 0
      socket.on("data", () => dataEvents++)
      assert.isTrue(Relay.readShared(socket))
      assert.isTrue(Relay.readShared(socket), "idempotent")
      let ended = false
      socket.on("end", () => (ended = true))
      socket.resume()
      client.end("bytes that go to the shared buffer")
      // With no relay attached to it, the read callback stops reading; EOF still arrives once reading resumes.
      assert.isTrue(yield* Poll.waitUntil(() => socket.bytesRead > 0), "the socket read the bytes")
      socket.resume()
      assert.isTrue(yield* Poll.waitUntil(() => ended), "EOF arrives as an end event")
      assert.strictEqual(dataEvents, 0, "bytes went to the shared buffer, not to data events")
    }).pipe(Effect.scoped))

  it.live("leaves a socket that reads already as it is (false)", () =>
    Effect.gen(function*() {
      const { socket } = yield* accepted
      socket.resume()
      assert.isTrue(
        yield* Poll.waitUntil(() => (socket as unknown as { _handle: { reading: boolean } })._handle.reading)
      )
      assert.isFalse(Relay.readShared(socket))
    }).pipe(Effect.scoped))
})

/** A server whose accepted sockets allow half-open connections, and a socket dialed to it as nib dials servers. */
const dialed = Effect.acquireRelease(
  Effect.callback<{ server: Net.Server; up: Net.Socket; far: Net.Socket }>((resume) => {
    let up: Net.Socket
    const server = Net.createServer({ allowHalfOpen: true }, (far) => resume(Effect.succeed({ server, up, far })))
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as Net.AddressInfo).port
      up = Net.connect({ host: "127.0.0.1", port, allowHalfOpen: true, onread: Relay.readOptions })
      up.on("error", () => {})
    })
  }),
  ({ far, server, up }) =>
    Effect.sync(() => {
      up.destroy()
      far.destroy()
      server.close()
    })
)

describe("Relay: activity", () => {
  it.live("stamps its clock's tick on each read either way, and is half-closed once either side has ended", () =>
    Effect.gen(function*() {
      const { client, socket } = yield* accepted
      const { far, up } = yield* dialed
      const clock: Relay.ActivityClock = { tick: 5 }
      const relay = new Relay.Relay(
        socket,
        up,
        new BufferPool(4),
        { fromClient: () => {}, fromServer: () => {}, closesAll: () => false },
        undefined,
        clock
      )
      relay.start()
      assert.strictEqual(relay.lastActive, 5, "relaying counts as activity")
      let atServer = ""
      far.on("data", (chunk: Buffer) => (atServer += chunk.toString()))
      let atClient = ""
      client.on("data", (chunk: Buffer) => (atClient += chunk.toString()))
      clock.tick = 9
      client.write("up")
      assert.isTrue(yield* Poll.waitUntil(() => atServer === "up"))
      assert.strictEqual(relay.lastActive, 9)
      clock.tick = 12
      far.write("down")
      assert.isTrue(yield* Poll.waitUntil(() => atClient === "down"))
      assert.strictEqual(relay.lastActive, 12)
      clock.tick = 20
      assert.strictEqual(relay.lastActive, 12, "no byte, no stamp")
      assert.isFalse(relay.halfClosed)
      let farEnded = false
      far.on("end", () => (farEnded = true))
      client.end()
      assert.isTrue(yield* Poll.waitUntil(() => farEnded), "the client's EOF reaches the server")
      assert.isTrue(relay.halfClosed)
      relay.dispose()
    }).pipe(Effect.scoped))
})
