/**
 * The arithmetic of pen's `idle_timeout` for TCP connections: when a connection that has moved no byte is idle.
 *
 * Time is counted in sweeps, not read from a clock. One sweep per thread runs every {@link SWEEP_MILLIS} while the
 * timeout is set, and advances a tick; each read stamps its connection with the tick of the last sweep, so the relay
 * pays a field write per read and never a clock read. Sweeps never come closer together than {@link SWEEP_MILLIS}
 * (an interval timer that runs late starts its next wait from then), so ticks never run ahead of time, and a
 * connection is never closed before `seconds` of silence; with sweeps on time, it is closed within `seconds` and one
 * sweep. A busy event loop delays the sweeps, and the closes with them.
 *
 * Sans-IO: ticks are passed in; property-tested against sweeps at any spacing (test/domain/IdleClock.test.ts).
 */

/** Milliseconds between two sweeps: a connection is closed within this much after its timeout. @category constants */
export const SWEEP_MILLIS = 250

/**
 * Ticks of silence after which a connection is idle, for a timeout of `seconds` (> 0). A stamp is the tick of the
 * sweep before the read, up to a sweep's time before it: one tick more than the timeout covers that.
 * @category constructors
 */
export const limitTicks = (seconds: number, sweepMillis = SWEEP_MILLIS): number =>
  Math.ceil((seconds * 1000) / sweepMillis) + 1

/**
 * Whether a connection whose last byte moved at tick `stamp` is idle at tick `now`, for a timeout of `limit` ticks
 * turned on at tick `since` (ticks do not advance while the timeout is off, so an older stamp counts from `since`).
 * @category predicates
 */
export const isIdle = (now: number, stamp: number, since: number, limit: number): boolean =>
  now - (stamp > since ? stamp : since) >= limit
