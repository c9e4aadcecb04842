/**
 * pen's `idle_timeout` for TCP connections, per thread: one interval timer, running only while the timeout is set
 * (and unref'd: it keeps no process alive), advances the clock the relays stamp their activity with
 * (`net/Relay.ts`) and walks the thread's connections every {@link IdleClock.SWEEP_MILLIS}, so that an idle connection
 * is closed within that much after its timeout (`domain/IdleClock.ts`). No timer per connection; with the timeout at
 * 0 there is no timer at all, and a read costs the relay one field write.
 */
import * as IdleClock from "../domain/IdleClock.ts"
import type { ActivityClock } from "../net/Relay.ts"

/** One thread's idle sweep. @category models */
export class IdleSweep {
  /** The clock this thread's relays stamp: one tick per sweep. */
  readonly clock: ActivityClock = { tick: 0 }
  private seconds = 0
  private limit = 0
  /** The tick at which the timeout was last turned on: older stamps count from it. */
  private since = 0
  private timer: ReturnType<typeof setInterval> | undefined

  /** `walk` visits every connection of the thread, each asking `isIdle`, once per sweep. */
  constructor(private readonly walk: () => void, seconds: number) {
    this.set(seconds)
  }

  /** The timeout, in seconds; 0: never. */
  get timeoutSeconds(): number {
    return this.seconds
  }

  /** Changes the timeout (0 or less: never), for live connections too; the sweep runs only while it is set. */
  set(seconds: number): void {
    this.seconds = Math.max(0, seconds)
    if (this.seconds === 0) return this.close()
    this.limit = IdleClock.limitTicks(this.seconds)
    if (this.timer !== undefined) return
    this.since = this.clock.tick
    this.timer = setInterval(this.sweep, IdleClock.SWEEP_MILLIS)
    this.timer.unref()
  }

  /** Whether a connection whose last byte moved at tick `lastActive` is idle now (only while a sweep walks). */
  isIdle(lastActive: number): boolean {
    return IdleClock.isIdle(this.clock.tick, lastActive, this.since, this.limit)
  }

  /** Stops the timer (the timeout is off, or the proxy is closing). */
  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  private readonly sweep = (): void => {
    this.clock.tick++
    this.walk()
  }
}
