/**
 * Are the servers up? In this version health is passive, as in pen: a refused or timed-out connect blacklists the
 * server for `-b` seconds and the connection fails over; the blacklist lapses by itself and the next client is the
 * probe. The service reports outcomes of real connections; an active checker will report its probes through the same
 * interface and write the same state into ServerPool.
 *
 * A failure that is nib's own (out of file descriptors, buffers, memory or local ports: `Socket.isOwnFailure`) says
 * nothing about the server and blames none: it is counted and reported, at most one warning line a second.
 */
import { Context, Effect, Fiber, Layer } from "effect"
import { LbConfig } from "../Config.ts"
import { type DialFailure, isOwnFailure } from "../net/Socket.ts"
import { EMERGENCY_SERVER, ServerPool } from "./ServerPool.ts"
import { StatsReporter } from "./StatsReporter.ts"

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
}>()("nib/services/HealthChecker") {
  /** Passive health: each failed connect blacklists its server for `-b` seconds. */
  static readonly layer: Layer.Layer<HealthChecker, never, LbConfig | ServerPool | StatsReporter> = Layer.effect(
    HealthChecker,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const pool = yield* ServerPool
      const stats = yield* StatsReporter
      const context = yield* Effect.context<never>()
      const log = Effect.runForkWith(context)
      const inScope = Fiber.runIn(yield* Effect.scope)
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
      return HealthChecker.of({
        blacklistSeconds: Effect.sync(() => blacklistSeconds),
        setBlacklistSeconds: (seconds) =>
          Effect.sync(() => {
            blacklistSeconds = seconds
          }),
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
        }
      })
    })
  )

  /** Ignores every failure: no server is ever blacklisted. */
  static readonly layerNoop: Layer.Layer<HealthChecker> = Layer.succeed(
    HealthChecker,
    HealthChecker.of({
      connectFailedUnsafe: () => {},
      ownFailureUnsafe: () => {},
      blacklistSeconds: Effect.succeed(0),
      setBlacklistSeconds: () => Effect.void
    })
  )
}

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
