import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Worker } from "node:worker_threads"
import { Counters } from "../../src/shared/CounterMemory.ts"
import * as ServerMemory from "../../src/shared/ServerMemory.ts"
import * as SharedState from "../../src/shared/SharedState.ts"

const { ServerState, rowOf } = ServerMemory

describe("ServerMemory", () => {
  it("rows: the emergency server first, the abuse server second, then server N at N + 2", () => {
    assert.deepStrictEqual([rowOf(-2), rowOf(-3), rowOf(0), rowOf(5)], [0, 1, 2, 7])
  })

  it("tryAcquire takes connections up to the limit, and without a limit always", () => {
    const state = new ServerState(ServerMemory.allocate({ rows: 4, workers: 1, shared: false }), 0)
    assert.isTrue(state.tryAcquire(2, 2))
    assert.isTrue(state.tryAcquire(2, 2))
    assert.isFalse(state.tryAcquire(2, 2))
    state.release(2)
    assert.strictEqual(state.connections(2), 1)
    for (let i = 0; i < 10; i++) assert.isTrue(state.tryAcquire(3, 0))
    assert.strictEqual(state.connections(3), 10)
  })

  it("byte counters: one row per worker, summed; rows grow at the end without losing counts", () => {
    const memory = ServerMemory.allocate({ rows: 3, workers: 3, shared: true })
    const [a, b, c] = [0, 1, 2].map((w) => new ServerState(memory, w))
    a!.count(2, 10, 1)
    b!.count(2, 20, 2)
    c!.count(2, 30, 3)
    c!.setBlacklistedUntil(2, 1234.5)
    assert.isTrue(a!.ensure(40))
    assert.isTrue(b!.rows() >= 40)
    a!.count(39, 1, 1)
    assert.deepStrictEqual([b!.sent(2), b!.received(2), c!.blacklistedUntil(2)], [60, 6, 1234.5])
    assert.deepStrictEqual([c!.sent(39), c!.sent(38)], [1, 0])
    assert.isFalse(a!.ensure(ServerMemory.ROWS_MAX + 1))
  })

  it("flags, cursor and current are one word each, seen by every handle", () => {
    const memory = ServerMemory.allocate({ rows: 2, workers: 2, shared: true })
    const [a, b] = [new ServerState(memory, 0), new ServerState(memory, 1)]
    assert.strictEqual(a.current, -1)
    a.setFlag(ServerMemory.Flag.hash, true)
    a.setFlag(ServerMemory.Flag.prio, true)
    b.setFlag(ServerMemory.Flag.prio, false)
    a.cursor = 3
    b.current = 2
    assert.deepStrictEqual([b.flag(ServerMemory.Flag.hash), a.flag(ServerMemory.Flag.prio), b.cursor, a.current], [
      true,
      false,
      3,
      2
    ])
  })

  it.live("four threads racing for a server's last connections never take more than its limit", () =>
    Effect.promise(async () => {
      const memory = SharedState.allocate({
        workers: 4,
        servers: 2,
        connections: 10,
        clientsMax: 16,
        trackingSeconds: 0
      })
      const barrier = new Int32Array(new SharedArrayBuffer(8))
      const attempts = 20_000
      const limit = 5_000
      const workers = [0, 1, 2, 3].map((worker) =>
        new Worker(new URL("./server-memory-worker.ts", import.meta.url), {
          workerData: { memory, worker, barrier, attempts, limit }
        })
      )
      try {
        const taken = Promise.all(workers.map((w) =>
          new Promise<number>((resolve, reject) => {
            w.once("message", resolve)
            w.once("error", reject)
          })
        ))
        const deadline = Date.now() + 10_000
        while (Atomics.load(barrier, 0) < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
        Atomics.store(barrier, 1, 1)
        Atomics.notify(barrier, 1)
        const each = await taken
        const state = new ServerState(memory.servers, 0)
        // Exactly the limit, however the attempts interleaved; the taken-and-released server is back at 0.
        assert.strictEqual(each.reduce((a, b) => a + b, 0), limit)
        assert.strictEqual(state.connections(2), limit)
        assert.strictEqual(state.connections(3), 0)
        // Every worker's bytes and counts, none lost: each wrote its own row.
        assert.strictEqual(state.sent(2), 4 * attempts * 3)
        assert.strictEqual(state.received(2), 4 * attempts * 5)
        const counters = new Counters(memory.counters, 4)
        assert.strictEqual(counters.get("accepted"), 4 * attempts)
        assert.deepStrictEqual([0, 1, 2, 3].map((w) => counters.getRow("accepted", w)), [
          attempts,
          attempts,
          attempts,
          attempts
        ])
      } finally {
        await Promise.all(workers.map((w) => w.terminate()))
      }
    }))
})
