/**
 * Reading nib's statistics from plain callbacks (bounded polling in Poll.ts): the StatsReporter snapshot as a
 * synchronous function, and a wait for a condition on it.
 */
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import { StatsReporter, type StatsSnapshot } from "../../src/services/StatsReporter.ts"
import * as Poll from "./Poll.ts"

/** A function that reads the current snapshot. */
export const reader = Effect.gen(function*() {
  const stats = yield* StatsReporter
  const run = Effect.runSyncWith(yield* Effect.context<never>())
  return (): StatsSnapshot => run(stats.snapshot)
})

/** Polls (bounded) until `condition` holds of the snapshot, asserts that it did (`what` names it), returns it. */
export const waitFor = (condition: (s: StatsSnapshot) => boolean, what: string, timeoutMs?: number) =>
  Effect.gen(function*() {
    const read = yield* reader
    const held = yield* Poll.waitUntil(() => condition(read()), timeoutMs)
    const s = read()
    assert.isTrue(held, `${what}: ${JSON.stringify(s)}`)
    return s
  })
