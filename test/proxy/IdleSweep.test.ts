import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { SWEEP_MILLIS } from "../../src/domain/IdleClock.ts"
import { IdleSweep } from "../../src/proxy/IdleSweep.ts"

const sleep = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** A sweep for the length of the scope, with how many times it walked. */
const sweepOf = (seconds: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const walks = { count: 0 }
      return { sweep: new IdleSweep(() => walks.count++, seconds), walks }
    }),
    ({ sweep }) => Effect.sync(() => sweep.close())
  )

describe("IdleSweep", () => {
  it.live("off (0): no sweep runs and the clock stands still", () =>
    Effect.gen(function*() {
      const { sweep, walks } = yield* sweepOf(0)
      yield* sleep(3 * SWEEP_MILLIS)
      assert.strictEqual(sweep.clock.tick, 0)
      assert.strictEqual(walks.count, 0)
      assert.strictEqual(sweep.timeoutSeconds, 0)
    }))

  it.live("on: each sweep advances the clock and walks; a stamp left alone goes idle after the timeout, not before", () =>
    Effect.gen(function*() {
      const { sweep, walks } = yield* sweepOf(1)
      const stamp = sweep.clock.tick
      const start = performance.now()
      let idleAfter: number | undefined
      // Bounded: 40 polls of 100 ms.
      for (let i = 0; i < 40 && idleAfter === undefined; i++) {
        yield* sleep(100)
        if (sweep.isIdle(stamp)) idleAfter = performance.now() - start
      }
      assert.isDefined(idleAfter, "never idle")
      assert.isAtLeast(idleAfter!, 950)
      assert.isAbove(walks.count, 0)
      assert.strictEqual(walks.count, sweep.clock.tick)
      // A fresh stamp is not idle.
      assert.isFalse(sweep.isIdle(sweep.clock.tick))
    }))

  it.live("turned off, the clock stops; on again, older stamps count from then", () =>
    Effect.gen(function*() {
      const { sweep } = yield* sweepOf(1)
      const old = sweep.clock.tick
      yield* sleep(3 * SWEEP_MILLIS)
      sweep.set(0)
      const stopped = sweep.clock.tick
      assert.isAbove(stopped, old)
      yield* sleep(3 * SWEEP_MILLIS)
      assert.strictEqual(sweep.clock.tick, stopped)
      sweep.set(-5)
      assert.strictEqual(sweep.timeoutSeconds, 0)
      sweep.set(1)
      // Just turned on: even a stamp from before is not idle yet.
      yield* sleep(2 * SWEEP_MILLIS)
      assert.isFalse(sweep.isIdle(old))
      assert.strictEqual(sweep.timeoutSeconds, 1)
    }))
})
