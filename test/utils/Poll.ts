/**
 * Bounded polling for state that changes on its own (a server's counters, a socket's end): wait until a condition
 * holds or a deadline passes, and report which. Never a timing assertion: the deadline only stops a test that would
 * otherwise hang.
 */
import { Effect } from "effect"

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `condition` every `everyMs` until it holds (true) or `timeoutMs` passes (false). */
export const until = async (condition: () => boolean, timeoutMs = 5_000, everyMs = 10): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) return false
    await sleep(everyMs)
  }
  return true
}

/** Effect version of {@link until}. */
export const waitUntil = (condition: () => boolean, timeoutMs?: number) =>
  Effect.promise(() => until(condition, timeoutMs))
