/**
 * Who waits for a draining listener (a graceful stop) to have nothing open any more: `TcpServer` and `UdpServer`
 * each keep one, and check it where a connection or session ends.
 */
import { Effect } from "effect"

/** The waiters of one listener's `idle`. @category models */
export class IdleWaiters {
  private waiters: Array<() => void> = []

  /** `isIdle`: whether nothing is open (served, waiting for a slot, or a live session). */
  constructor(private readonly isIdle: () => boolean) {}

  /** Wakes every waiter if nothing is open now. */
  check(): void {
    if (this.waiters.length > 0 && this.isIdle()) this.wakeAll()
  }

  /** Wakes every waiter, open or not (the listener closed: nothing is left open). */
  wakeAll(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const resolve of waiters) resolve()
  }

  /** Completes once woken; looks at once when `draining` says the drain has begun. Interruptible. */
  wait(draining: () => boolean): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      const resolve = () => resume(Effect.void)
      this.waiters.push(resolve)
      if (draining()) this.check()
      return Effect.sync(() => {
        const i = this.waiters.indexOf(resolve)
        if (i >= 0) this.waiters.splice(i, 1)
      })
    })
  }
}
