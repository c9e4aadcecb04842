/**
 * The process around the balancer: detaching like pen (without `-f` the parent returns once the child listens, or
 * fails with the child's error), the pid file, and the start-up line. A nib started by an upgrade (SIGUSR2,
 * `control/Upgrade.ts`) says it is ready, or why it could not start, to the nib it replaces in the same words.
 */
import { Console, Effect, Exit, Schema } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Address from "./domain/Address.ts"
import * as Handover from "./shared/Handover.ts"

const CHILD_ENV = "NIB_DAEMON_CHILD"

const decodeFromNew = Schema.decodeUnknownExit(Handover.FromNew)

/** A start-up failure in the detached child, reported by the parent. @category errors */
export class DaemonError extends Error {
  readonly _tag = "DaemonError"
}

/** Whether this process is the detached child of a `nib` started without `-f`. */
export const isDaemonChild = (): boolean => process.env[CHILD_ENV] === "1"

/** The pid of the nib this one replaces, when an upgrade started it (then it talks to it over IPC). */
export const upgradeOf = (): number | undefined => {
  const pid = Number(process.env[Handover.UPGRADE_ENV])
  return Number.isSafeInteger(pid) && pid > 0 && process.send !== undefined ? pid : undefined
}

/** Whether a nib waits on the IPC channel for this one to say it listens: a daemon's parent, an upgrading nib. */
const awaited = (): boolean =>
  (isDaemonChild() || upgradeOf() !== undefined) && process.send !== undefined && process.connected

/** Says something to the nib that waits for this one. */
const tell = (message: typeof Handover.FromNew.Type): void => {
  process.send!(message)
  process.disconnect()
}

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
  child.on("message", (message: unknown) => {
    const decoded = decodeFromNew(message)
    if (Exit.isFailure(decoded)) return
    if (decoded.value._tag === "Ready") settle(Effect.void)
    else if (decoded.value._tag === "Failed") settle(Effect.fail(new DaemonError(decoded.value.message)))
  })
  child.on("error", (error) => settle(Effect.fail(new DaemonError(`cannot start: ${error.message}`))))
  child.on("exit", (code) => settle(Effect.fail(new DaemonError(`exited with code ${code} before listening`))))
})

/**
 * Tells the waiting nib (a daemon's parent, or the nib this one replaces) that nib listens; in the foreground, prints
 * the start-up lines on stderr: the control port's address when there is one (`nib: control port on ADDR`), then
 * `nib: listening on ADDR (pid N)`, with `, N workers` when worker threads serve, and after an upgrade
 * `, taken over from pid N`.
 */
export const notifyReady = (
  address: Address.Endpoint,
  control?: Address.Endpoint,
  workers = 1
): Effect.Effect<void> =>
  Effect.suspend(() => {
    const replaced = upgradeOf()
    const printed = isDaemonChild() ? Effect.void : Effect.suspend(() => {
      const lines = control === undefined ? [] : [`nib: control port on ${Address.format(control)}`]
      const threads = workers > 1 ? `, ${workers} workers` : ""
      const from = replaced === undefined ? "" : `, taken over from pid ${replaced}`
      lines.push(`nib: listening on ${Address.format(address)} (pid ${process.pid}${threads})${from}`)
      return Console.error(lines.join("\n"))
    })
    return Effect.andThen(
      printed,
      Effect.sync(() => {
        if (awaited()) tell({ _tag: "Ready", address: Address.format(address), pid: process.pid })
      })
    )
  })

/** Reports a start-up failure to the waiting nib (a daemon's parent, or the nib this one replaces), if any. */
export const notifyFailure = (message: string): void => {
  if (awaited()) tell({ _tag: "Failed", message })
}

/**
 * Writes the pid (pen's format: digits, no newline) and removes the file when the scope closes, unless it names
 * another process by then (the nib that took over in an upgrade).
 */
export const pidFile = (path: string) =>
  Effect.acquireRelease(
    writePid(path),
    () =>
      Effect.sync(() => {
        try {
          if (Fs.readFileSync(path, "utf8") === String(process.pid)) Fs.rmSync(path, { force: true })
        } catch {
          // gone already
        }
      })
  )

/** Writes this process's pid to `path` (pen's format). */
export const writePid = (path: string): Effect.Effect<void, DaemonError> =>
  Effect.try({
    try: () => Fs.writeFileSync(path, String(process.pid)),
    catch: (cause) => new DaemonError(`cannot write pid file ${path}: ${(cause as Error).message}`)
  })

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
      // Already that user (a nib started by an upgrade, from one that switched): nothing to switch.
      if (process.getuid?.() === uid && process.getgid?.() === gid) return
      ;(process as { initgroups?: (user: string, gid: number) => void }).initgroups?.(user, gid)
      process.setgid?.(gid)
      process.setuid?.(uid)
    },
    catch: (error) =>
      error instanceof DaemonError
        ? error
        : new DaemonError(`-u: can't switch to user '${user}': ${error instanceof Error ? error.message : error}`)
  })
