/**
 * pen's signals, for the layer's lifetime: SIGHUP reopens the request log file (rotation), re-reads the `-E`/`-K`
 * certificate and key (nib's addition: a renewed certificate without a restart) and re-reads the `-F` file;
 * SIGUSR1 writes the status page to the `-w` file, or, without one, the same figures as text on stderr (pen's
 * textstats, with its garbled client lines printed properly). SIGTERM and SIGINT are the runtime's: they interrupt
 * the program, which closes everything and exits 0, during a drain too. SIGQUIT is nib's (pen dies of it): a graceful
 * stop (`Drain.ts`); a second one does nothing more. SIGUSR2, where pen aborts, upgrades nib without dropping a client
 * (nginx's binary-upgrade signal, `Upgrade.ts`).
 *
 * A bad line in the `-F` file at HUP is logged with its file and line, and the running configuration is kept (the
 * file is decoded whole before any of it is applied).
 */
import { Effect, FiberSet, Layer } from "effect"
import { LbConfig } from "../Config.ts"
import * as StatusPage from "../domain/StatusPage.ts"
import { TcpProxy } from "../proxy/TcpProxy.ts"
import { RequestLog } from "../services/RequestLog.ts"
import { Control } from "./Control.ts"
import { Drain } from "./Drain.ts"
import { Status } from "./Status.ts"
import { Upgrade } from "./Upgrade.ts"

/** pen's debug line: `YYYY-MM-DD HH:MM:SS: message`. */
const debugLine = (message: string) => `${StatusPage.formatLocalTime(new Date())}: ${message}`

/** Installs the HUP, USR1, QUIT and USR2 handlers until the scope closes. @category layers */
export const layer: Layer.Layer<
  never,
  never,
  LbConfig | Control | Drain | RequestLog | Status | TcpProxy | Upgrade
> = Layer
  .effectDiscard(
    Effect.gen(function*() {
      const config = yield* LbConfig
      const control = yield* Control
      const log = yield* RequestLog
      const status = yield* Status
      const proxy = yield* TcpProxy
      const drain = yield* Drain
      const upgrade = yield* Upgrade
      // Each handler's fiber runs in the layer's scope: none outlives it.
      const run = yield* FiberSet.makeRuntime<never>()
      const annotate = Effect.annotateLogs({ service: "Signals" })

      const hangup = Effect.gen(function*() {
        yield* log.reopen.pipe(Effect.catch((error) => Effect.logError(error.message)))
        // -E: the certificate and key again (after a renewal); a bad pair is logged and the old one kept.
        yield* proxy.reloadTls.pipe(
          Effect.catch((error) => Effect.logError(`SIGHUP: ${error.message}; the certificate in use is kept`))
        )
        if (config.configFile !== undefined) {
          yield* control.loadFile(config.configFile).pipe(
            Effect.flatMap((
              replies
            ) => (replies === "" ? Effect.void : Effect.sync(() => process.stdout.write(replies)))),
            Effect.catch((error) => Effect.logError(`SIGHUP: ${error.message}; the running configuration is kept`))
          )
        }
      }).pipe(annotate)

      const usr1 = Effect.gen(function*() {
        if ((yield* status.webStats) !== undefined) {
          return yield* status.writeWebStats.pipe(
            Effect.asVoid,
            Effect.catch((error) => Effect.logError(error.message))
          )
        }
        const lines = StatusPage.renderText(yield* status.page)
        // pen's debug() adds a line end to each message, so a block that ends in one is followed by an empty line.
        const text = lines.map((l) => debugLine(l) + "\n").join("")
        yield* Effect.sync(() => process.stderr.write(text))
      }).pipe(annotate)

      const onHup = () => void run(hangup)
      const onUsr1 = () => void run(usr1)
      const onUsr2 = () => void run(upgrade.start)
      const onQuit = () => void run(drain.begin("SIGQUIT").pipe(annotate))
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          process.on("SIGHUP", onHup)
          process.on("SIGUSR1", onUsr1)
          process.on("SIGUSR2", onUsr2)
          process.on("SIGQUIT", onQuit)
        }),
        () =>
          Effect.sync(() => {
            process.off("SIGHUP", onHup)
            process.off("SIGUSR1", onUsr1)
            process.off("SIGUSR2", onUsr2)
            process.off("SIGQUIT", onQuit)
          })
      )
    })
  )
