import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as IdleClock from "../../src/domain/IdleClock.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

const R = IdleClock.SWEEP_MILLIS

/**
 * A connection under the sweep, simulated: the timeout (`seconds`) is turned on at time 0, when the clock stands at
 * tick `since`; sweep i comes `gaps[i]` ms after the one before and advances the tick, then closes the connection if
 * it is idle; a read at time t stamps the tick of the last sweep at or before t (timers run before reads in an event
 * loop turn). `stale` is the stamp of the last read before the timeout was on. Returns when the connection was closed
 * and its last read before that (0: none since the timeout was on), or undefined if it never was.
 */
const simulate = (
  seconds: number,
  gaps: ReadonlyArray<number>,
  reads: ReadonlyArray<number>,
  since = 0,
  stale = since
): { readonly closedAt: number; readonly lastRead: number } | undefined => {
  const limit = IdleClock.limitTicks(seconds)
  let tick = since
  let stamp = stale
  let lastRead = 0
  let time = 0
  let next = 0
  const sorted = reads.toSorted((a, b) => a - b)
  for (const gap of gaps) {
    time += gap
    // Reads before this sweep stamp the tick of the sweep before.
    while (next < sorted.length && sorted[next]! < time) {
      stamp = tick
      lastRead = sorted[next++]!
    }
    tick++
    if (IdleClock.isIdle(tick, stamp, since, limit)) return { closedAt: time, lastRead }
  }
  return undefined
}

describe("IdleClock", () => {
  it("limitTicks: one tick more than the timeout, in sweeps", () => {
    assert.strictEqual(IdleClock.limitTicks(1), 1000 / R + 1)
    assert.strictEqual(IdleClock.limitTicks(2, 500), 5)
    assert.strictEqual(IdleClock.limitTicks(0.3, 250), 3)
  })

  it("isIdle counts from the later of the stamp and the tick the timeout was turned on", () => {
    assert.isFalse(IdleClock.isIdle(10, 6, 0, 5))
    assert.isTrue(IdleClock.isIdle(11, 6, 0, 5))
    assert.isFalse(IdleClock.isIdle(11, 2, 8, 5))
    assert.isTrue(IdleClock.isIdle(13, 2, 8, 5))
  })

  it.prop(
    "never closes a connection before `seconds` of silence, however late the sweeps come",
    {
      seconds: int(1, 4),
      gaps: Schema.Array(int(R, 3 * R)).check(Schema.isMinLength(1), Schema.isMaxLength(80)),
      reads: Schema.Array(int(0, 20_000)).check(Schema.isMaxLength(20)),
      since: int(0, 50)
    },
    ({ gaps, reads, seconds, since }) => {
      const closed = simulate(seconds, gaps, reads, since)
      if (closed === undefined) return
      assert.isAtLeast(closed.closedAt - closed.lastRead, seconds * 1000)
    }
  )

  it.prop(
    "with sweeps on time, closes between `seconds` and `seconds` plus one sweep after the last read",
    {
      seconds: int(1, 4),
      reads: Schema.Array(int(0, 10_000)).check(Schema.isMaxLength(20)),
      since: int(0, 50),
      stale: int(0, 50)
    },
    ({ reads, seconds, since, stale }) => {
      const gaps = Array.from({ length: Math.ceil((10_000 + seconds * 1000) / R) + 2 }, () => R)
      const closed = simulate(seconds, gaps, reads, since, Math.min(stale, since))
      assert.isDefined(closed)
      const silence = closed!.closedAt - closed!.lastRead
      assert.isAtLeast(silence, seconds * 1000)
      assert.isAtMost(silence, seconds * 1000 + R)
    }
  )

  it("a read older than the timeout counts from when it was turned on", () => {
    // The clock stood at tick 40 (it does not advance while the timeout is off); the last read was at tick 3.
    const closed = simulate(1, Array.from({ length: 20 }, () => R), [], 40, 3)
    assert.deepStrictEqual(closed, { closedAt: 1000 + R, lastRead: 0 })
  })
})
