/**
 * The relay's Node primitives on their own: the buffer pool, and switching an accepted socket to the shared read
 * buffer (`readShared`). The relay as a whole (both directions, half-close, back-pressure, buffers given back) is
 * tested through nib's proxy in test/proxy/Relay.test.ts.
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
