#!/usr/bin/env -S node --max-semi-space-size=4
/**
 * The `niblogd` executable, pen's `penlogd`: `niblogd [-d] [-f] [-b] [-j dir] [-l file] [-n N] [-p pidfile]
 * [-u user] port`. It receives UDP datagrams on `port` (all IPv4 addresses): the balancer's records (`-l host:port`
 * of nib or pen) go into a ring of the last N; every other datagram is a web server's log line (from `niblog` or
 * `penlog`), written to the `-l` file or stdout with its first field replaced by the real client of the newest record
 * for the same server (the datagram's source address) and request. The rules are `domain/LogMerge.ts`.
 *
 * As penlogd: without `-f` it detaches (the parent returns once the child receives, or fails with the child's
 * error, where penlogd's parent always exited 0); `-u` switches user before the log and pid files are opened and the
 * port bound; SIGHUP reopens the log file; SIGTERM closes everything, removes the pid file and exits 0; `-d` notes go
 * to stderr with penlogd's timestamps in the foreground (in the background penlogd sent them to syslog; niblogd drops
 * them). Bad arguments: one line on stderr, exit code 1.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Data, Effect, Exit, Result, Runtime } from "effect"
import * as Fs from "node:fs"
import * as Daemon from "./Daemon.ts"
import * as Address from "./domain/Address.ts"
import * as CompanionArgs from "./domain/CompanionArgs.ts"
import * as LogMerge from "./domain/LogMerge.ts"
import * as StatusPage from "./domain/StatusPage.ts"
import * as Datagram from "./net/Datagram.ts"

/** A bad argument or a start-up failure: `niblogd: <message>`, exit code 1. */
class LogdError extends Data.TaggedError("LogdError")<{ readonly message: string }> {}

/** The reason in a Node error's message: "ENOENT: no such file or directory, open 'x'" gives its middle part. */
const reason = (error: unknown): string => {
  const message = error instanceof Error ? error.message : String(error)
  return /^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? message
}

/** Where rewritten lines go: the `-l` file (appended to, reopened on HUP) or stdout. */
interface Output {
  readonly write: (line: string) => void
  readonly reopen: () => void
}

const openAppend = (path: string) =>
  Effect.try({
    try: () => Fs.openSync(path, "a"),
    catch: (error) => new LogdError({ message: `-l: can't open logfile ${path}: ${reason(error)}` })
  })

/** The output for the scope. Each line is one write(2), at once (penlogd's stdio held lines without `-b`). */
const output = (path: string | undefined, note: (level: number, message: string) => void) =>
  path === undefined
    ? Effect.sync((): Output => {
      // A reader of stdout that goes away loses the lines from then on; it does not stop niblogd.
      process.stdout.on("error", () => {})
      return { write: (line) => void process.stdout.write(Buffer.from(line, "latin1")), reopen: () => {} }
    })
    : Effect.gen(function*() {
      const file = yield* Effect.acquireRelease(
        Effect.map(openAppend(path), (fd) => ({ fd })),
        (opened) => Effect.sync(() => Fs.closeSync(opened.fd))
      )
      return {
        write: (line) => {
          try {
            Fs.writeSync(file.fd, line, null, "latin1")
          } catch (error) {
            note(0, `Can't write to ${path}: ${reason(error)}`)
          }
        },
        // penlogd exited when it could not reopen the file; niblogd keeps writing to the one it has.
        reopen: () => {
          try {
            const next = Fs.openSync(path, "a")
            Fs.closeSync(file.fd)
            file.fd = next
          } catch (error) {
            note(0, `Can't reopen ${path}, still writing to the file it had: ${reason(error)}`)
          }
        }
      } satisfies Output
    })

/** Runs SIGHUP's `handler` for the scope. */
const onHangup = (handler: () => void) =>
  Effect.acquireRelease(
    Effect.sync(() => process.on("SIGHUP", handler)),
    () => Effect.sync(() => process.off("SIGHUP", handler))
  )

const serve = (settings: CompanionArgs.LogdSettings) =>
  Effect.gen(function*() {
    const foreground = !Daemon.isDaemonChild()
    // penlogd's debug(): in the foreground, stderr with a local timestamp; level 0 notes are printed without -d.
    const note = (level: number, message: string) => {
      if (foreground && level <= settings.debug) {
        process.stderr.write(`${StatusPage.formatLocalTime(new Date())}: ${message}\n`)
      }
    }

    if (settings.user !== undefined) {
      note(1, `Run as user ${settings.user}`)
      yield* Daemon.dropPrivileges(settings.user).pipe(Effect.mapError((e) => new LogdError({ message: e.message })))
    }
    note(1, settings.logFile === undefined ? "Logging to stdout" : `Logging to ${settings.logFile}`)
    const out = yield* output(settings.logFile, note)
    if (settings.pidFile !== undefined) {
      note(1, `Writing pid ${process.pid} to ${settings.pidFile}`)
      yield* Daemon.pidFile(settings.pidFile).pipe(Effect.mapError((e) => new LogdError({ message: e.message })))
    }
    const socket = yield* Datagram.receiver({ address: "0.0.0.0", port: settings.port }).pipe(
      Effect.mapError((e) => new LogdError({ message: e.message }))
    )
    yield* onHangup(() => {
      note(1, `Reopen log file ${settings.logFile ?? "(stdout)"}`)
      out.reopen()
    })
    // The detached child tells the waiting parent it is up (the address is only carried, not printed).
    if (!foreground) yield* Daemon.notifyReady(Address.tcp("0.0.0.0", socket.port))

    const ring = LogMerge.makeRing(settings.ringSize)
    const onDatagram = (payload: Buffer, source: string) => {
      const text = payload.toString("latin1")
      const outcome = LogMerge.receive(ring, text, source)
      switch (outcome._tag) {
        case "Stored": {
          const { client, request, server } = outcome.record
          note(2, `store_pen(${outcome.slot}: ${client}, ${server}, ${request})`)
          return
        }
        case "BogusRecord":
          return note(0, `discarding bogus pen line ${text}`)
        case "Line":
          note(2, `store_web(${text}, ${payload.length})`)
          if (!outcome.request) note(1, `no quoted request in web line, written as it is: ${text}`)
          return out.write(outcome.line)
        case "Empty":
          return note(1, `empty datagram from ${source}`)
      }
    }
    note(1, "Enter main loop\n")
    yield* Effect.addFinalizer(() => Effect.sync(() => note(1, "Exit main loop")))
    return yield* socket.run(onDatagram).pipe(Effect.mapError((e) => new LogdError({ message: e.message })))
  })

const main = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const command = CompanionArgs.parseLogd(args)
    if (Result.isFailure(command)) return yield* new LogdError({ message: command.failure })
    if (command.success._tag === "Help") return yield* Console.log(CompanionArgs.LOGD_USAGE.trimEnd())
    const settings = command.success.settings
    if (!settings.foreground && !Daemon.isDaemonChild()) {
      return yield* Daemon.detach.pipe(Effect.mapError((e) => new LogdError({ message: e.message })))
    }
    return yield* Effect.scoped(serve(settings))
  })

main(process.argv.slice(2)).pipe(
  Effect.tapCause((cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.void
    const error = Cause.squash(cause)
    const message = error instanceof Error ? error.message : String(error)
    Daemon.notifyFailure(message)
    return Console.error(`niblogd: ${message}`)
  }),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    // penlogd exits 0 on SIGTERM; runMain's default would be 130 for an interrupted program.
    teardown: (exit, onExit) =>
      Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)
  })
)
