/**
 * One thread's idle server connections (`proxy/Idlers.ts`) over a real ServerPool and real sockets: the share each
 * thread keeps, the spread over the servers, what a server sends before a client takes one, a server that says too
 * much, drained servers, a failed dial blamed as a client's, and `close`. The proxy's use of them (a client served
 * over one) is test/e2e/idlers.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Address from "../../src/domain/Address.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"
import * as Socket from "../../src/net/Socket.ts"
import * as Idlers from "../../src/proxy/Idlers.ts"
import type { HealthChecker } from "../../src/services/HealthChecker.ts"
import { ServerPool } from "../../src/services/ServerPool.ts"
import * as Backend from "../utils/Backend.ts"
import * as Poll from "../utils/Poll.ts"

/** A health checker that records what it is told. */
const recording = () => {
  const failed: Array<string> = []
  const health = {
    connectFailedUnsafe: (index: number, failure: Socket.DialFailure) => failed.push(`${index} ${failure}`),
    ownFailureUnsafe: (error: Error) => failed.push(`own ${error.message}`)
  } as unknown as HealthChecker["Service"]
  return { failed, health }
}

/** Idle connections over servers on `ports` (127.0.0.1), with their open count as reported. */
const idlersOver = (ports: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const pool = yield* ServerPool.make({
      servers: ports.map((port) => ServerSpec.make(Address.tcp("127.0.0.1", port)))
    })
    const { failed, health } = recording()
    const deadlines = new Socket.DeadlineQueue(3_000)
    let reported = 0
    const idlers = new Idlers.Idlers({
      pool,
      health,
      deadlines,
      now: () => Date.now(),
      report: (open) => (reported = open),
      worker: 0
    })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        idlers.close()
        deadlines.close()
      })
    )
    return { pool, idlers, failed, reported: () => reported }
  })

describe("Idlers", () => {
  it("share: the threads' shares add up to the total, and differ by one at most", () => {
    for (let workers = 1; workers <= 8; workers++) {
      for (let total = 0; total <= 20; total++) {
        const shares = Array.from({ length: workers }, (_, w) => Idlers.share(total, workers, w))
        assert.strictEqual(shares.reduce((a, b) => a + b, 0), total, `${total} over ${workers}`)
        assert.isAtMost(Math.max(...shares) - Math.min(...shares), 1)
      }
    }
  })

  it.live("spread over the servers; a taken one comes with what its server sent; it is replaced; close ends all", () =>
    Effect.gen(function*() {
      const a = yield* Backend.custom("a", (socket) => socket.write("banner a\n"))
      const b = yield* Backend.custom("b", (socket) => socket.write("banner b\n"))
      const { idlers, reported } = yield* idlersOver([a.port, b.port])
      idlers.setWanted(2)
      assert.isTrue(yield* Poll.waitUntil(() => idlers.count === 2 && a.open() === 1 && b.open() === 1))
      assert.strictEqual(reported(), 2)

      // The banner is read while the connection waits (so a close would be seen), and kept for the client.
      assert.isTrue(yield* Poll.waitUntil(() => a.open() === 1))
      yield* Effect.sleep("100 millis")
      const taken = idlers.take(0)
      assert.isDefined(taken)
      assert.strictEqual(Buffer.concat(taken!.early ?? []).toString(), "banner a\n")
      assert.isFalse(taken!.socket.destroyed)
      taken!.socket.destroy()
      assert.isUndefined(idlers.take(0), "server 0 had one")
      assert.strictEqual(idlers.count, 1)
      // Replaced, to the server that has fewest: server 0 again.
      assert.isTrue(yield* Poll.waitUntil(() => idlers.count === 2 && a.accepted() === 2), `a ${a.accepted()}`)

      idlers.close()
      assert.isTrue(yield* Poll.waitUntil(() => a.open() === 0 && b.open() === 0), `a ${a.open()}, b ${b.open()}`)
      assert.strictEqual(reported(), 0)
    }).pipe(Effect.scoped))

  it.live("none to a drained server; a server that says too much is dropped; a refused dial blames its server", () =>
    Effect.gen(function*() {
      const a = yield* Backend.custom("a", () => {})
      const chatty = yield* Backend.custom("chatty", (socket) => socket.write(Buffer.alloc(Idlers.EARLY_MAX + 1)))
      const refused = yield* Backend.freePort
      const { failed, idlers, pool } = yield* idlersOver([a.port, chatty.port, refused])
      yield* pool.setDraining(0, true)
      idlers.setWanted(3)
      // The chatty server's connection is dropped once it has said too much; the refused dial is blamed.
      assert.isTrue(yield* Poll.waitUntil(() => failed.length > 0 && chatty.accepted() > 0 && chatty.open() === 0))
      assert.strictEqual(failed[0], "2 error")
      assert.strictEqual(a.accepted(), 0, "a drained server gets none")
      assert.isUndefined(idlers.take(1))
      // The budget (3 a second) bounds the dials to a server that keeps dropping them.
      yield* Effect.sleep("1500 millis")
      assert.isAtMost(chatty.accepted(), 6, `chatty dialed ${chatty.accepted()} times in 1.5 s`)
      assert.strictEqual(a.accepted(), 0)
    }).pipe(Effect.scoped))
})
