/**
 * The process around the balancer: detaching like pen (without `-f` the parent returns once the child listens, or
 * fails with the child's error), the pid file, and the start-up line.
 */
import { Console, Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Address from "./domain/Address.ts"

const CHILD_ENV = "NIB_DAEMON_CHILD"

type Message = { readonly ready: string } | { readonly error: string }

/** A start-up failure in the detached child, reported by the parent. @category errors */
export class DaemonError extends Error {
  readonly _tag = "DaemonError"
}

/** Whether this process is the detached child of a `nib` started without `-f`. */
export const isDaemonChild = (): boolean => process.env[CHILD_ENV] === "1"

/**
 * Starts this same command again as a detached child with its stdio closed, waits until it listens (or fails), and
 * returns: the parent's work is then done, as with pen's daemon(3).
 */
export const detach: Effect.Effect<void, DaemonError> = Effect.callback<void, DaemonError>((resume) => {
  const child = ChildProcess.spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    detached: true,
    stdio: ["ignore", "ignore", "ignore", "ipc"],
    env: { ...process.env, [CHILD_ENV]: "1" }
  })
  let settled = false
  const settle = (effect: Effect.Effect<void, DaemonError>) => {
    if (settled) return
    settled = true
    child.removeAllListeners()
    if (child.connected) child.disconnect()
    child.unref()
    resume(effect)
  }
  child.on(
    "message",
    (message: Message) => settle("ready" in message ? Effect.void : Effect.fail(new DaemonError(message.error)))
  )
  child.on("error", (error) => settle(Effect.fail(new DaemonError(`cannot start: ${error.message}`))))
  child.on("exit", (code) => settle(Effect.fail(new DaemonError(`exited with code ${code} before listening`))))
})

/**
 * Tells the waiting parent (if any) that nib listens; in the foreground, prints the start-up lines on stderr: the
 * control port's address when there is one (`nib: control port on ADDR`), then `nib: listening on ADDR (pid N)`, with
 * `, N workers` when worker threads serve.
 */
export const notifyReady = (
  address: Address.Endpoint,
  control?: Address.Endpoint,
  workers = 1
): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (isDaemonChild() && process.send !== undefined) {
      process.send({ ready: Address.format(address) } satisfies Message)
      process.disconnect()
      return Effect.void
    }
    const lines = control === undefined ? [] : [`nib: control port on ${Address.format(control)}`]
    const threads = workers > 1 ? `, ${workers} workers` : ""
    lines.push(`nib: listening on ${Address.format(address)} (pid ${process.pid}${threads})`)
    return Console.error(lines.join("\n"))
  })

/** Reports a start-up failure to the waiting parent, if this is the detached child. */
export const notifyFailure = (message: string): void => {
  if (isDaemonChild() && process.send !== undefined && process.connected) {
    process.send({ error: message } satisfies Message)
    process.disconnect()
  }
}

/** Writes the pid (pen's format: digits, no newline) and removes the file when the scope closes. */
export const pidFile = (path: string) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => Fs.writeFileSync(path, String(process.pid)),
      catch: (cause) => new DaemonError(`cannot write pid file ${path}: ${(cause as Error).message}`)
    }),
    () => Effect.sync(() => Fs.rmSync(path, { force: true }))
  )

/**
 * `-u USER`: after the sockets are bound, switch to the user's uid, primary gid and supplementary groups, as pen
 * does. `-u root` as root changes nothing (pen's documented way to keep a control port as root).
 */
export const dropPrivileges = (user: string): Effect.Effect<void, DaemonError> =>
  Effect.try({
    try: () => {
      const entry = Fs.readFileSync("/etc/passwd", "utf8").split("\n").map((l) => l.split(":")).find((f) =>
        f[0] === user
      )
      if (entry === undefined) throw new DaemonError(`-u: no such user '${user}'`)
      const uid = Number(entry[2])
      const gid = Number(entry[3])
      ;(process as { initgroups?: (user: string, gid: number) => void }).initgroups?.(user, gid)
      process.setgid?.(gid)
      process.setuid?.(uid)
    },
    catch: (error) =>
      error instanceof DaemonError
        ? error
        : new DaemonError(`-u: can't switch to user '${user}': ${error instanceof Error ? error.message : error}`)
  })
