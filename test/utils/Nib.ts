/**
 * Running the balancer as a real process: start the built `nib` in the foreground and wait for its listening line,
 * run it to completion (bad argv, daemon parent), stop it by pid. The process helpers take any command; Pen.ts starts
 * pen with them for the side-by-side suite.
 *
 * Promise functions do the work; the Effect wrappers tie a process to the test's scope so it is stopped even when the
 * test fails.
 */
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import * as Poll from "./Poll.ts"

/** The repository root. */
export const ROOT = fileURLToPath(new URL("../..", import.meta.url))
/** Node 24, from devDependencies (the machine's own `node` may be older). */
export const NODE = Path.join(ROOT, "node_modules", ".bin", "node")
/** The `nib` executable as installed: the bundle `npm run build` writes (rolldown.config.ts). */
export const NIB = Path.join(ROOT, "dist", "bundle", "nib.js")

/** How a process ended. */
export interface ExitStatus {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** A process that ran to completion (or was killed at its deadline: `timedOut`). */
export interface Completed extends ExitStatus {
  readonly stdout: string
  readonly stderr: string
  readonly timedOut: boolean
}

/** A running process with its output so far. */
export interface Proc {
  readonly pid: number
  readonly child: ChildProcess.ChildProcess
  /** Everything it printed on stderr so far. */
  readonly stderr: () => string
  /** Everything it printed on stdout so far. */
  readonly stdout: () => string
  /** Resolves when the process has exited. */
  readonly exited: Promise<ExitStatus>
}

/** A balancer process that listens on `host:port`. */
export interface Balancer extends Proc {
  readonly host: string
  readonly port: number
  /** The control port (`-C`), from nib's `nib: control port on HOST:PORT` line; `undefined` without one. */
  readonly control?: { readonly host: string; readonly port: number } | undefined
}

const env = (): NodeJS.ProcessEnv => {
  const copy = { ...process.env }
  // A nib started by a test is never the detached child of another nib.
  delete copy["NIB_DAEMON_CHILD"]
  return copy
}

/** Resolves when `child` has exited (at once if it already has). */
export const exitOf = (child: ChildProcess.ChildProcess): Promise<ExitStatus> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode })
      return
    }
    child.once("exit", (code, signal) => resolve({ code, signal }))
  })

/**
 * Spawns `command args` and waits (at most `timeoutMs`) until a line of its stderr or stdout matches `ready`. Fails
 * with the process's output if it exits first or the deadline passes (the process is then killed).
 */
export const spawnReady = (
  command: string,
  args: ReadonlyArray<string>,
  ready: RegExp,
  timeoutMs = 10_000
): Promise<{ readonly proc: Proc; readonly match: RegExpExecArray }> =>
  new Promise((resolve, reject) => {
    const child = ChildProcess.spawn(command, [...args], { stdio: ["ignore", "pipe", "pipe"], env: env() })
    const exited = exitOf(child)
    let stdout = ""
    let stderr = ""
    let done = false
    const describe = (why: string) =>
      new Error(`${why}: ${command} ${args.join(" ")}\n--- stderr:\n${stderr}\n--- stdout:\n${stdout}`)
    const finish = (error: Error | undefined, match?: RegExpExecArray) => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (error !== undefined) {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
        reject(error)
        return
      }
      const proc: Proc = { pid: child.pid!, child, stderr: () => stderr, stdout: () => stdout, exited }
      resolve({ proc, match: match! })
    }
    const check = () => {
      const match = ready.exec(stderr) ?? ready.exec(stdout)
      if (match !== null) finish(undefined, match)
    }
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
      check()
    })
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
      check()
    })
    child.once("error", (error) => finish(describe(`cannot start (${error.message})`)))
    child.once("exit", (code, signal) => {
      // Let the last output arrive before reporting.
      setImmediate(() => finish(describe(`exited (code ${code}, signal ${signal}) before it was ready`)))
    })
    const timer = setTimeout(() => finish(describe(`not ready within ${timeoutMs} ms`)), timeoutMs)
  })

/** nib's start-up line in the foreground: `nib: listening on HOST:PORT (pid N)` (`, N workers` with --workers). */
export const LISTENING = /nib: listening on (.+):(\d+) \(pid (\d+)(?:, \d+ workers)?\)/

/**
 * `--workers N` when the suite runs with NIB_WORKERS=N (vitest.config.ts runs the end-to-end and side-by-side suites
 * that way too), so that every balancer a test starts serves on N worker threads.
 */
export const WORKERS: ReadonlyArray<string> = process.env["NIB_WORKERS"]
  ? ["--workers", process.env["NIB_WORKERS"]]
  : []

/** The line nib prints once it listens on `address`, as process `pid`, with the suite's `--workers` (if any). */
export const listeningLine = (address: string, pid: number): string =>
  `nib: listening on ${address} (pid ${pid}${WORKERS.length > 0 ? `, ${WORKERS[1]} workers` : ""})`

/**
 * Starts the built nib in the foreground (`-f` is added first) and waits for its listening line. Give it a listen
 * address with port 0 (`127.0.0.1:0`); the port it got is in the result.
 */
export const spawnNib = async (args: ReadonlyArray<string>, timeoutMs = 10_000): Promise<Balancer> => {
  const { match, proc } = await spawnReady(NODE, [NIB, "-f", ...WORKERS, ...args], LISTENING, timeoutMs)
  const host = match[1]!.replace(/^\[(.*)\]$/, "$1")
  const pid = Number(match[3])
  if (pid !== proc.pid) {
    await stop(proc)
    throw new Error(`nib says pid ${pid}, but its process is ${proc.pid}`)
  }
  const control = CONTROL.exec(proc.stderr())
  return {
    ...proc,
    host,
    port: Number(match[2]),
    control: control === null ? undefined : { host: control[1]!.replace(/^\[(.*)\]$/, "$1"), port: Number(control[2]) }
  }
}

/** nib's line for its control port, printed before the listening line. */
export const CONTROL = /nib: control port on (.+):(\d+)\n/

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Stops a child process: SIGTERM, wait up to `timeoutMs` for it to exit, then SIGKILL. Resolves with how it exited
 * (a SIGKILL shows as `signal: "SIGKILL"`, so a test can tell a clean exit from a forced one).
 */
export const stop = async (proc: Pick<Proc, "child" | "exited">, timeoutMs = 5_000): Promise<ExitStatus> => {
  const { child } = proc
  if (child.exitCode !== null || child.signalCode !== null) return proc.exited
  child.kill("SIGTERM")
  const timeout = sleep(timeoutMs).then(() => "timeout" as const)
  const first = await Promise.race([proc.exited, timeout])
  if (first !== "timeout") return first
  child.kill("SIGKILL")
  return proc.exited
}

/** {@link stop} for a child process spawned without {@link spawnReady}. */
export const stopChild = (child: ChildProcess.ChildProcess, timeoutMs?: number): Promise<ExitStatus> =>
  stop({ child, exited: exitOf(child) }, timeoutMs)

/** Whether process `pid` exists and is not a zombie. */
export const isAlive = (pid: number): boolean => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // The state follows the command name in parentheses, which may itself contain spaces or parentheses.
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return false
  }
}

/** Waits (polling, at most `timeoutMs`) until process `pid` is gone; returns whether it is. */
export const waitGone = async (pid: number, timeoutMs = 5_000): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false
    await sleep(20)
  }
  return true
}

/**
 * Stops a process that is not our child (a detached daemon) by its pid: SIGTERM, wait, SIGKILL as a last resort.
 * Resolves with whether SIGTERM alone was enough.
 */
export const stopPid = async (pid: number, timeoutMs = 5_000): Promise<boolean> => {
  if (!isAlive(pid)) return true
  try {
    process.kill(pid, "SIGTERM")
  } catch {
    return true
  }
  if (await waitGone(pid, timeoutMs)) return true
  try {
    process.kill(pid, "SIGKILL")
  } catch {
    // already gone
  }
  await waitGone(pid, timeoutMs)
  return false
}

/** A process that ran to completion, with stdout's bytes as they came. */
export interface CompletedBytes extends ExitStatus {
  readonly stdout: Buffer
  readonly stderr: string
  readonly timedOut: boolean
}

/**
 * Runs `command args` to completion, killing it (SIGKILL) after `timeoutMs`; stdout is kept as bytes. `input` is
 * written to its stdin (none: stdin is closed), `extraEnv` added to its environment.
 */
export const runBytes = (
  command: string,
  args: ReadonlyArray<string>,
  timeoutMs = 15_000,
  { extraEnv = {}, input }: { readonly input?: Buffer; readonly extraEnv?: Readonly<Record<string, string>> } = {}
): Promise<CompletedBytes> =>
  new Promise((resolve, reject) => {
    const child = ChildProcess.spawn(command, [...args], {
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      env: { ...env(), ...extraEnv }
    })
    if (input !== undefined) {
      child.stdin!.on("error", () => {})
      child.stdin!.end(input)
    }
    const stdout: Array<Buffer> = []
    const stderr: Array<Buffer> = []
    let timedOut = false
    child.stdout!.on("data", (chunk: Buffer) => stdout.push(chunk))
    child.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill("SIGKILL")
    }, timeoutMs)
    child.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    // "close" waits for stdout and stderr to end as well as for the exit.
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString("utf8"), timedOut })
    })
  })

/** Runs `command args` to completion, killing it (SIGKILL) after `timeoutMs`. */
export const runToCompletion = async (
  command: string,
  args: ReadonlyArray<string>,
  timeoutMs = 15_000
): Promise<Completed> => {
  const done = await runBytes(command, args, timeoutMs)
  return { ...done, stdout: done.stdout.toString("utf8") }
}

/** Runs the built nib with `args` (no `-f` added) to completion. */
export const runNib = (args: ReadonlyArray<string>, timeoutMs = 15_000): Promise<Completed> =>
  runToCompletion(NODE, [NIB, ...args], timeoutMs)

/**
 * Polls (at most `timeoutMs`) until something accepts TCP connections on `host:port`. Each probe is a connection: to
 * wait for a balancer without changing its state (pen's cursor and sticky table), use `Pen.waitForListen`.
 */
export const waitForPort = async (host: string, port: number, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = Net.connect({ host, port })
      socket.once("connect", () => {
        socket.destroy()
        resolve(true)
      })
      socket.once("error", () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`)
    await sleep(50)
  }
}

/**
 * Asserts that `text` appears on the balancer's stderr within `timeoutMs`: a worker thread's log lines reach the
 * process's stderr a moment after what they report (`--workers`).
 */
export const logged = (balancer: Pick<Proc, "stderr">, text: string, timeoutMs = 3_000) =>
  Effect.promise(async () => {
    if (!(await Poll.until(() => balancer.stderr().includes(text), timeoutMs, 20))) {
      throw new Error(`expected stderr to include ${JSON.stringify(text)}:\n${balancer.stderr()}`)
    }
  })

/** A nib in the foreground for the length of the scope; stopped (SIGTERM, then SIGKILL) when the scope closes. */
export const start = (args: ReadonlyArray<string>, timeoutMs?: number) =>
  Effect.acquireRelease(
    Effect.promise(() => spawnNib(args, timeoutMs)),
    (balancer) => Effect.promise(() => stop(balancer))
  )

/** Runs nib to completion (for argv errors, `--help`, the daemon parent). */
export const run = (args: ReadonlyArray<string>, timeoutMs?: number) => Effect.promise(() => runNib(args, timeoutMs))

/** Makes sure process `pid` (a daemon started by the test) is gone when the scope closes. */
export const killOnClose = (pid: number) => Effect.addFinalizer(() => Effect.promise(() => stopPid(pid)))

/** A temporary directory, removed when the scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(process.env["TMPDIR"] ?? "/tmp", "nib-e2e-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** Reads a pid file written by the balancer, polling until it exists (at most `timeoutMs`). */
export const readPidFile = async (path: string, timeoutMs = 5_000): Promise<string> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return Fs.readFileSync(path, "utf8")
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || Date.now() > deadline) throw error
    }
    await sleep(20)
  }
}
