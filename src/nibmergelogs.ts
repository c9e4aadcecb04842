#!/usr/bin/env -S node --max-semi-space-size=4
/**
 * The `nibmergelogs` executable, pen's `mergelogs`: `nibmergelogs -p penlog [-c] [-d] [-j jitter] [-t tzoffset]
 * server:logfile ...` merges the balancer's `-l` file (nib's or pen's: `<client> <unix_time> <server> <request>`)
 * with the web servers' own logs (Apache common or combined) into one log on stdout, oldest line first, each web line
 * with its client replaced by the real client (the server's own address when no record matches) and its time in UTC.
 * The rules are `domain/LogMerge.ts`; this file reads the files and writes the result.
 *
 * As mergelogs: exit 0 after the last line; a file that cannot be opened, one line on stderr and exit 1 before any
 * output; no argument prints the usage (exit 0). `-d` notes go to stderr (mergelogs sent them to syslog).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Data, Effect, Result } from "effect"
import * as Fs from "node:fs"
import * as CompanionArgs from "./domain/CompanionArgs.ts"
import * as LogMerge from "./domain/LogMerge.ts"
import * as StatusPage from "./domain/StatusPage.ts"

/** A bad argument or a file that cannot be read: `nibmergelogs: <message>`, exit code 1. */
class MergeError extends Data.TaggedError("MergeError")<{ readonly message: string }> {}

/** stdout is closed (`| head`): stop writing, exit 0, as a C program killed by SIGPIPE stops. */
class StdoutClosed extends Data.TaggedError("StdoutClosed")<{}> {}

const reason = (error: unknown): string => {
  const message = error instanceof Error ? error.message : String(error)
  return /^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? message
}

/** Opens `path` for reading for the scope. */
const openFile = (path: string, what: string) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => Fs.openSync(path, "r"),
      catch: (error) => new MergeError({ message: `can't open ${what} '${path}': ${reason(error)}` })
    }),
    (fd) => Effect.sync(() => Fs.closeSync(fd))
  )

/**
 * The lines of an open file (without their newlines), one byte per character, read in 64 KiB blocks as they are
 * asked for. A line is whole however long it is (mergelogs read 1023 bytes at a time and took the rest of a longer
 * line for a line of its own).
 */
const linesOf = function*(fd: number): Generator<string> {
  const block = Buffer.alloc(65536)
  let carry = ""
  for (;;) {
    const n = Fs.readSync(fd, block, 0, block.length, null)
    if (n === 0) break
    const text = carry + block.toString("latin1", 0, n)
    const lines = text.split("\n")
    carry = lines.pop()!
    yield* lines
  }
  if (carry !== "") yield carry
}

/** Writes `text` to stdout, waiting until it is taken. */
const write = (text: string) =>
  Effect.callback<void, MergeError | StdoutClosed>((resume) => {
    process.stdout.write(Buffer.from(text, "latin1"), (error) => {
      if (error === undefined || error === null) return resume(Effect.void)
      resume(
        (error as NodeJS.ErrnoException).code === "EPIPE"
          ? Effect.fail(new StdoutClosed())
          : Effect.fail(new MergeError({ message: `error writing to stdout: ${reason(error)}` }))
      )
    })
  })

const merge = (settings: CompanionArgs.MergeSettings) =>
  Effect.gen(function*() {
    const note = (level: number, message: string) => {
      if (level <= settings.debug) process.stderr.write(`${StatusPage.formatLocalTime(new Date())}: ${message}\n`)
    }
    const records = yield* openFile(settings.fileLog, "penlog")
    const logs: Array<LogMerge.ServerLog> = []
    for (const log of settings.logs) {
      const fd = yield* openFile(log.path, "logfile")
      logs.push({ server: log.server, lines: { [Symbol.iterator]: () => linesOf(fd) } })
    }
    yield* Effect.sync(() => process.stdout.on("error", () => {}))

    let batch = ""
    const events = LogMerge.merge({ [Symbol.iterator]: () => linesOf(records) }, logs, {
      jitter: settings.jitter,
      tzOffset: settings.tzOffset,
      cache: settings.cache
    })
    for (const event of events) {
      switch (event._tag) {
        case "Line":
          batch += event.text
          if (batch.length >= 65536) {
            yield* write(batch)
            batch = ""
          }
          break
        case "Skipped":
          note(1, `Read ${event.fields} fields from ${event.server}: ${event.line}`)
          break
        case "Uncached":
          note(1, `uncache ${event.count} lines`)
          break
        case "Matched":
          note(2, `\tclient = '${event.from}' => '${event.to}'`)
          note(2, `\turi = '${event.request}'`)
          break
      }
    }
    if (batch !== "") yield* write(batch)
  })

const main = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const command = CompanionArgs.parseMerge(args)
    if (Result.isFailure(command)) return yield* new MergeError({ message: command.failure })
    if (command.success._tag === "Help") return yield* Console.log(CompanionArgs.MERGE_USAGE.trimEnd())
    return yield* Effect.scoped(merge(command.success.settings))
  })

main(process.argv.slice(2)).pipe(
  Effect.catchTag("StdoutClosed", () => Effect.void),
  Effect.tapCause((cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.void
    const error = Cause.squash(cause)
    return Console.error(`nibmergelogs: ${error instanceof Error ? error.message : String(error)}`)
  }),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
