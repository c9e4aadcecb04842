#!/usr/bin/env -S node --max-semi-space-size=4
/**
 * The `nib` executable: pen's command line in, the balancer running until SIGTERM or SIGINT (exit 0), or a one-line
 * error (with, for a usage error, the synopsis and a pointer at `--help`) and exit code 1.
 *
 * The shebang caps V8's young generation at 4 MiB semi-spaces. Loading the Effect runtime at start-up makes V8 grow
 * it to its maximum (16 MiB semi-spaces), and under a stream of short connections a young generation that large
 * promoted 2-6 MB of connection objects per scavenge, each scavenge taking 15-35 ms instead of about 1 ms
 * (bench/README.md, "The young generation"). A flag set at run time would come too late: V8 sizes the heap once.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Console, Effect, Exit, Logger, Runtime } from "effect"
import * as Fs from "node:fs"
import * as Cli from "./Cli.ts"
import * as Daemon from "./Daemon.ts"
import * as Address from "./domain/Address.ts"

const services = (() => {
  try {
    return Address.parseServicesFile(Fs.readFileSync("/etc/services", "utf8"))
  } catch {
    return Address.wellKnownServices
  }
})()

const report = (cause: Cause.Cause<unknown>) => {
  const lines = Cli.errorLines(Cause.squash(cause))
  if (lines.length === 0) return Effect.void
  Daemon.notifyFailure(lines.filter((line) => line.startsWith("nib: ")).map((line) => line.slice(5)).join("; "))
  return Console.error(lines.join("\n"))
}

Cli.run(process.argv.slice(2), services).pipe(
  Effect.tapCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : report(cause)),
  Effect.provideService(Logger.LogToStderr, true),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    // pen exits 0 on SIGTERM; runMain's default would be 130 for an interrupted program.
    teardown: (exit, onExit) =>
      Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)
  })
)
