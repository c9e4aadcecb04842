/**
 * Are the servers up? Two halves that write the same state into ServerPool.
 *
 * Passive, as in pen: a refused or timed-out connect blacklists the server for `-b` seconds and the connection fails
 * over; the blacklist lapses by itself and the next client is the probe.
 *
 * Active (`--check`, `server N check`): one fiber per checked server, in this layer's scope, probes it every
 * `--check-interval` seconds (jittered by a tenth either way, so that checks of many servers do not fall in step;
 * the first one at a random moment of the first interval), each probe bounded by the interval. `--fall` failures in a
 * row take the server down (`ServerPool.setDown`: selection passes it over and admission refuses it, so new clients
 * and its sticky clients fail over, as for a blacklisted server); `--rise` passes in a row bring it back, with
 * `--slow-start` if given. Each change is counted (`healthTransitions`) and logged on one line, and a server taken
 * down is published (`downs`) for `--on-down close`. The fibers follow `ServerPool.changes`: a server whose check or
 * address changes has its fiber restarted, one that is no longer checked (or has no address) has it stopped.
 *
 * A failure that is nib's own (out of file descriptors, buffers, memory or local ports: `Socket.isOwnFailure`) says
 * nothing about the server and blames none, whether a client's connect or a probe met it: it is counted and
 * reported, at most one warning line a second.
 */
import { Clock, Context, Effect, Fiber, FiberMap, Layer, PubSub, Random, Result } from "effect"
import type { Scope } from "effect"
import { LbConfig } from "../Config.ts"
import * as Address from "../domain/Address.ts"
import type { Backend } from "../domain/Backend.ts"
import * as HealthCheck from "../domain/HealthCheck.ts"
import * as Probe from "../net/Probe.ts"
import { type DialFailure, isOwnFailure } from "../net/Socket.ts"
import { Broadcast } from "../shared/Broadcast.ts"
import { EMERGENCY_SERVER, ServerPool } from "./ServerPool.ts"
import { StatsReporter } from "./StatsReporter.ts"

/** How servers are probed: one check of one server, settled within `options.timeoutMs`. @category models */
export interface ProberShape {
  readonly probe: (
    check: HealthCheck.Check,
    endpoint: Address.Endpoint,
    options: Probe.Options
  ) => Effect.Effect<void, Probe.ProbeFailure>
}

/**
 * The prober the active checks use: the real probes of `net/Probe.ts` unless a test provides its own (a Reference,
 * so the production graph need not wire it). @category services
 */
export const Prober = Context.Reference<ProberShape>("nib/services/Prober", {
  defaultValue: () => ({ probe: Probe.probe })
})

/** The health checker service. @category services */
export class HealthChecker extends Context.Service<HealthChecker, {
  /**
   * A connection attempt to server `index` failed (per-connection path). A failure that is nib's own
   * (`Socket.isOwnFailure`) goes to `ownFailureUnsafe` instead and blames no server.
   */
  readonly connectFailedUnsafe: (index: number, failure: DialFailure, error: Error | undefined) => void
  /**
   * A connection failed for want of nib's own resources (`Socket.isOwnFailure`): no server is blamed. Counted
   * (`localFailures`) and logged as a warning, at most one line per {@link OWN_FAILURE_REPORT_MS} with the number of
   * such failures since the last line.
   */
  readonly ownFailureUnsafe: (error: Error) => void
  /** Seconds a failed server stays blacklisted (`-b`, the `blacklist` command). */
  readonly blacklistSeconds: Effect.Effect<number>
  readonly setBlacklistSeconds: (seconds: number) => Effect.Effect<void>
  /** The servers (by index) an active check takes down from now on (`--on-down close`), until the scope closes. */
  readonly downs: Effect.Effect<PubSub.Subscription<number>, never, Scope.Scope>
  /** Announces on `downs` a server the main thread's check took down (a worker thread's `--on-down close`). */
  readonly announceDown: (index: number) => Effect.Effect<void>
}>()("nib/services/HealthChecker") {
  /**
   * Passive health (each failed connect blacklists its server for `-b` seconds) and the active checks of the servers
   * that have one, with the {@link Prober} of the context.
   */
  static readonly layer: Layer.Layer<HealthChecker, never, LbConfig | ServerPool | StatsReporter> = Layer.effect(
    HealthChecker,
    Effect.suspend(() => make(true))
  )

  /**
   * Passive health alone, for a worker thread: its failed connects blacklist servers in the shared memory, and the
   * main thread's active checks reach it through `announceDown`.
   */
  static readonly layerPassive: Layer.Layer<HealthChecker, never, LbConfig | ServerPool | StatsReporter> = Layer
    .effect(HealthChecker, Effect.suspend(() => make(false)))

  /** Ignores every failure: no server is ever blacklisted. */
  static readonly layerNoop: Layer.Layer<HealthChecker> = Layer.succeed(
    HealthChecker,
    HealthChecker.of({
      connectFailedUnsafe: () => {},
      ownFailureUnsafe: () => {},
      blacklistSeconds: Effect.succeed(0),
      setBlacklistSeconds: () => Effect.void,
      downs: Effect.flatMap(PubSub.unbounded<number>(), PubSub.subscribe),
      announceDown: () => Effect.void
    })
  )
}

/** The checker: passive health, and with `active` the checks of the servers that have one. */
const make = (active: boolean) =>
  Effect.gen(function*() {
    const config = yield* LbConfig
    const pool = yield* ServerPool
    const stats = yield* StatsReporter
    const context = yield* Effect.context<never>()
    const log = Effect.runForkWith(context)
    const inScope = Fiber.runIn(yield* Effect.scope)
    const broadcast = yield* Broadcast
    let blacklistSeconds = config.blacklistSeconds

    // Own failures since the last warning, their codes, and whether a warning went out less than a period ago.
    let ownFailures = 0
    const ownCodes = new Set<string>()
    let quiet = false
    const reportOwnFailures = (): void => {
      if (ownFailures === 0) {
        quiet = false
        return
      }
      log(
        Effect.logWarning(ownFailureMessage(ownFailures, ownCodes)).pipe(
          Effect.annotateLogs({ service: "HealthChecker" })
        )
      )
      ownFailures = 0
      ownCodes.clear()
      quiet = true
      inScope(log(Effect.sleep(OWN_FAILURE_REPORT_MS).pipe(Effect.andThen(Effect.sync(reportOwnFailures)))))
    }
    const ownFailureUnsafe = (error: Error): void => {
      stats.addUnsafe("localFailures", 1)
      ownFailures++
      ownCodes.add(String((error as NodeJS.ErrnoException).code))
      if (!quiet) reportOwnFailures()
    }

    const downs = yield* PubSub.unbounded<number>()
    if (active) yield* startChecks(downs)

    return HealthChecker.of({
      blacklistSeconds: Effect.sync(() => blacklistSeconds),
      setBlacklistSeconds: (seconds) =>
        Effect.andThen(
          Effect.sync(() => {
            blacklistSeconds = seconds
          }),
          broadcast.send({ _tag: "Blacklist", seconds })
        ),
      ownFailureUnsafe,
      connectFailedUnsafe: (index, failure, error) => {
        if (error !== undefined && isOwnFailure(error)) return ownFailureUnsafe(error)
        const name = index === EMERGENCY_SERVER ? "emergency server" : `server ${index}`
        const why = failure === "timeout" ? "connect timeout" : `connect error (${error?.message ?? "unknown"})`
        const blacklisting = blacklistSeconds > 0
        if (blacklisting) {
          pool.blacklistUnsafe(index, blacklistSeconds)
          stats.addUnsafe("blacklistings", 1)
        }
        const message = blacklisting
          ? `blacklisting ${name} for ${blacklistSeconds} s because of ${why}`
          : `${name} failed (${why}); not blacklisted (-b 0)`
        log(Effect.logWarning(message).pipe(Effect.annotateLogs({ service: "HealthChecker", server: index })))
      },
      downs: PubSub.subscribe(downs),
      announceDown: (index) => Effect.asVoid(PubSub.publish(downs, index))
    })
  })

/** A server as the health lines name it: `server 1 (127.0.0.1:9002)`. */
const name = (b: Backend) => `server ${b.index} (${Address.format(b.spec.endpoint)})`

/** What a check fiber is checking: the check's text and the server's address; a change restarts it. */
interface Watched {
  readonly check: string
  readonly address: string
}

/**
 * The active half: a fiber per checked server in a FiberMap of the layer's scope, kept in line with the pool by
 * following `ServerPool.changes`. Nothing runs (and nothing is forked but the follower) while no server is checked.
 */
const startChecks = Effect.fnUntraced(function*(downs: PubSub.PubSub<number>) {
  const config = yield* LbConfig
  const pool = yield* ServerPool
  const stats = yield* StatsReporter
  const prober = yield* Prober
  const broadcast = yield* Broadcast
  const fibers = yield* FiberMap.make<number>()
  const intervalMs = config.checkIntervalSeconds * 1000
  const options: Probe.Options = { timeoutMs: intervalMs, datagram: config.udp }
  const watched = new Map<number, Watched>()
  let lastOwnWarning = -Infinity

  const transition = (b: Backend, up: boolean, reason: string | undefined) =>
    Effect.gen(function*() {
      yield* pool.setDown(b.index, !up)
      stats.addUnsafe("healthTransitions", 1)
      if (up) return yield* Effect.logWarning(`${name(b)} is up again`)
      yield* Effect.logWarning(`${name(b)} is down: ${reason}`)
      yield* PubSub.publish(downs, b.index)
      // Worker threads end their own connections to it.
      if (config.onDown === "close") yield* broadcast.send({ _tag: "Down", index: b.index })
    })

  /**
   * A probe met nib's own failure: counted (`localFailures`), with a warning at most once a second; the server's
   * state stays.
   */
  const ownFailure = (b: Backend, failure: Probe.ProbeFailure) =>
    Effect.gen(function*() {
      stats.addUnsafe("localFailures", 1)
      const now = yield* Clock.currentTimeMillis
      if (now - lastOwnWarning < OWN_FAILURE_REPORT_MS) return
      lastOwnWarning = now
      const code = String((failure.cause as NodeJS.ErrnoException).code)
      yield* Effect.logWarning(
        `${name(b)}: its check failed on nib's own resources (${code}: ${
          OWN_FAILURE_HINTS[code] ?? "local failure"
        }); not held against the server`
      )
    })

  /** Probes `b` with `check` for as long as the fiber lives, moving its state by the rise/fall rule. */
  const watch = (b: Backend, check: HealthCheck.Check) =>
    Effect.gen(function*() {
      const endpoint = b.spec.endpoint
      let state: HealthCheck.State = { up: !b.down, streak: 0 }
      yield* Effect.sleep(Math.floor((yield* Random.next) * intervalMs))
      while (true) {
        const result = yield* Effect.result(prober.probe(check, endpoint, options))
        if (Result.isFailure(result) && isOwnFailure(result.failure.cause)) {
          yield* ownFailure(b, result.failure)
        } else {
          const passed = Result.isSuccess(result)
          const reason = Result.isFailure(result) ? result.failure.reason : undefined
          if (reason !== undefined) yield* Effect.logDebug(`${name(b)}: check failed: ${reason}`)
          const next = HealthCheck.next(state, passed, config.rise, config.fall)
          if (next.up !== state.up) yield* transition(b, next.up, reason)
          state = next
        }
        yield* Effect.sleep(HealthCheck.delay(intervalMs, yield* Random.next))
      }
    }).pipe(Effect.annotateLogs({ service: "HealthChecker", server: b.index }))

  /** Starts, restarts or stops the check of server `index` after a change, as its check and address now say. */
  const follow = (index: number) =>
    Effect.gen(function*() {
      const b = pool.backendUnsafe(index)
      if (b === undefined) return
      const was = watched.get(index)
      const now: Watched | undefined = b.configured && b.check !== undefined
        ? { check: HealthCheck.format(b.check), address: Address.format(b.spec.endpoint) }
        : undefined
      if (now?.check === was?.check && now?.address === was?.address) return
      // Another server at this slot, or one no longer checked: nothing nib knew about it holds, it is taken as up.
      if (b.down && (now === undefined || now.address !== was?.address)) {
        yield* pool.setDown(index, false)
        yield* Effect.logWarning(
          `${name(b)} is ${now === undefined ? "no longer checked" : "a new server"}: taken as up`
        )
      }
      if (now === undefined) {
        watched.delete(index)
        return yield* FiberMap.remove(fibers, index)
      }
      watched.set(index, now)
      yield* FiberMap.run(fibers, index, watch(b, b.check!))
    })

  // Subscribed before the first look at the servers, so that no change is missed in between.
  const changes = yield* pool.changes
  yield* Effect.forEach(pool.backends, (b) => follow(b.index), { discard: true })
  yield* Effect.forkScoped(Effect.forever(Effect.flatMap(PubSub.take(changes), follow)))
})

/** The shortest time between two warnings about nib's own failures. @category constants */
export const OWN_FAILURE_REPORT_MS = 1000

const OWN_FAILURE_HINTS: Record<string, string> = {
  EMFILE: "too many open files: raise the limit, ulimit -n",
  ENFILE: "the system's file table is full",
  ENOBUFS: "no buffer space",
  ENOMEM: "out of memory",
  EADDRNOTAVAIL: "no free local port"
}

/** The warning for `count` own failures with these error codes. */
const ownFailureMessage = (count: number, codes: ReadonlySet<string>): string => {
  const why = [...codes].map((code) => `${code}: ${OWN_FAILURE_HINTS[code] ?? "local failure"}`).join("; ")
  return `${count} connection${count === 1 ? "" : "s"} failed on nib's own resources since the last report (${why}); ` +
    `${count === 1 ? "its client was" : "their clients were"} closed, no server blamed`
}
