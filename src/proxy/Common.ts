/**
 * What the TCP and UDP proxies share: the services a session works with, the connection table's two Effects, and a
 * session's lifetime as one `Effect.callback`.
 */
import { Effect, PubSub } from "effect"
import { LbConfig } from "../Config.ts"
import { Acls } from "../services/Acls.ts"
import { ClientTable } from "../services/ClientTable.ts"
import { HealthChecker } from "../services/HealthChecker.ts"
import { RequestLog } from "../services/RequestLog.ts"
import { ServerPool } from "../services/ServerPool.ts"
import { StatsReporter } from "../services/StatsReporter.ts"
import { SharedState } from "../shared/SharedState.ts"
import { type ConnectionInfo, Slots, type Slotted } from "./Slots.ts"

/** The services a session uses on its per-connection path, and the connection table of its sessions (`T`). */
export interface Services<T extends Slotted = Slotted> {
  readonly pool: ServerPool["Service"]
  readonly clients: ClientTable["Service"]
  readonly health: HealthChecker["Service"]
  readonly stats: StatsReporter["Service"]
  readonly log: RequestLog["Service"]
  readonly acls: Acls["Service"]
  readonly slots: Slots<T>
}

/**
 * The services, and a connection table numbered as pen numbers its connections: the first free slot after the last
 * one taken, wrapping at `-x`.
 */
export const services = <T extends Slotted>() =>
  Effect.gen(function*() {
    const shared = yield* SharedState
    const numbers = shared.memory.slots
    return {
      pool: yield* ServerPool,
      clients: yield* ClientTable,
      health: yield* HealthChecker,
      stats: yield* StatsReporter,
      log: yield* RequestLog,
      acls: yield* Acls,
      // With workers, pen's connection numbers are taken in one table for all of them.
      slots: new Slots<T>(
        (yield* LbConfig).connectionsMax,
        numbers === undefined ? undefined : { memory: numbers, worker: shared.worker }
      )
    } satisfies Services<T>
  })

/** The live connections of `slots` (pen's connection table), and `close N`. */
export const table = (slots: Slots): {
  readonly connections: Effect.Effect<ReadonlyArray<ConnectionInfo>>
  readonly close: (slot: number) => Effect.Effect<boolean>
} => ({
  connections: Effect.sync(() => slots.list()),
  close: (slot) => Effect.sync(() => slots.close(slot))
})

/**
 * `--on-down close`: for the scope's life, the connections (or sessions) of `slots` to a server an active check takes
 * down are ended at once (TCP: both sockets destroyed; UDP: the session ends). With `keep` (the default) nothing is
 * subscribed and they go on.
 */
export const closeOnDown = (slots: Slots, what: string) =>
  Effect.gen(function*() {
    if ((yield* LbConfig).onDown !== "close") return
    const downs = yield* (yield* HealthChecker).downs
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(PubSub.take(downs), (index) => {
      const closed = slots.closeServer(index)
      return closed === 0
        ? Effect.void
        : Effect.logWarning(`--on-down close: closed ${closed} ${what} to server ${index}`).pipe(
          Effect.annotateLogs({ server: index })
        )
    })))
  })

/** A session, started once and ended (idempotently) by `abort`. */
export interface Startable {
  readonly start: () => void
  readonly abort: () => void
}

/**
 * A session's lifetime: `make` builds it with the callback that ends the fiber, it starts at once, and interruption
 * (shutdown, the listener's scope closing) aborts it.
 */
export const run = (make: (resume: (effect: Effect.Effect<void>) => void) => Startable): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const session = make(resume)
    session.start()
    return Effect.sync(() => session.abort())
  })

/**
 * A warning for the per-connection path: at most one line a second; the ones in between are counted and said with
 * the next. `fork` runs the logging Effect (`Effect.runForkWith` of the layer's context).
 */
export const rateLimited = (
  fork: (effect: Effect.Effect<void>) => unknown,
  log: (message: string) => Effect.Effect<void>
): (message: string) => void => {
  let last = -Infinity
  let dropped = 0
  return (message) => {
    const now = performance.now()
    if (now - last < 1000) {
      dropped++
      return
    }
    last = now
    fork(log(dropped > 0 ? `${message} (and ${dropped} more since the last such warning)` : message))
    dropped = 0
  }
}
