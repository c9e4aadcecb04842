/**
 * pen's debug level (`-d`, repeatable, and the `debug N` control command), as the threshold of nib's logger: 0 shows
 * warnings and errors, 1 adds debug messages, 2 and more show everything.
 *
 * Effect reads its minimum log level from each fiber's context, fixed when the fiber starts, so a level changed at
 * run time would not reach the connection and service fibers already running. The CLI therefore lets every level
 * through and installs `logger`, which filters by the level held here, read at each message.
 */
import * as Context from "effect/Context"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"

/** The debug level now; mutable, read by the logger at each message. @category models */
export interface Level {
  debug: number
}

/** The running debug level. Without a CLI (nib as a library) it is a holder of its own that no logger reads. */
export const Verbosity = Context.Reference<Level>("nib/services/Verbosity", { defaultValue: () => ({ debug: 0 }) })

/** The minimum log level of pen's debug level `debug`. @category conversions */
export const minimumLevel = (debug: number): LogLevel.LogLevel => debug <= 0 ? "Warn" : debug === 1 ? "Debug" : "All"

/** `inner` (Effect's default logger unless given), showing only what the level held by `level` lets through. */
export const logger = (level: Level, inner: Logger.Logger<unknown, void> = Logger.defaultLogger) =>
  Logger.make<unknown, void>((options) => {
    if (LogLevel.isGreaterThanOrEqualTo(options.logLevel, minimumLevel(level.debug))) inner.log(options)
  })
