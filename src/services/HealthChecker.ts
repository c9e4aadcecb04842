/**
 * Are the servers up? In this version health is passive, as in pen: a refused or timed-out connect blacklists the
 * server for `-b` seconds and the connection fails over; the blacklist lapses by itself and the next client is the
 * probe. The service reports outcomes of real connections; an active checker will report its probes through the same
 * interface and write the same state into ServerPool.
 */
import { Context, Effect, Layer } from "effect"
import { LbConfig } from "../Config.ts"
import type { DialFailure } from "../net/Socket.ts"
import { EMERGENCY_SERVER, ServerPool } from "./ServerPool.ts"
import { StatsReporter } from "./StatsReporter.ts"

/** The health checker service. @category services */
export class HealthChecker extends Context.Service<HealthChecker, {
  /** A connection attempt to server `index` failed (per-connection path). */
  readonly connectFailedUnsafe: (index: number, failure: DialFailure, error: Error | undefined) => void
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
      let blacklistSeconds = config.blacklistSeconds
      return HealthChecker.of({
        blacklistSeconds: Effect.sync(() => blacklistSeconds),
        setBlacklistSeconds: (seconds) =>
          Effect.sync(() => {
            blacklistSeconds = seconds
          }),
        connectFailedUnsafe: (index, failure, error) => {
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
      blacklistSeconds: Effect.succeed(0),
      setBlacklistSeconds: () => Effect.void
    })
  )
}
