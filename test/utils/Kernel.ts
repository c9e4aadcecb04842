/**
 * What the kernel knows about a balancer's sockets, read from outside the process as an operator would: the timers
 * of established TCP sockets (`ss -tno`: a socket with SO_KEEPALIVE shows `timer:(keepalive,...)` while idle), and
 * the socket options a process sets (`strace -f -e trace=setsockopt`, every thread). Both tools are iproute2's and
 * strace's own; {@link missing} says which is not installed, so a test can say why it is skipped.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Poll from "./Poll.ts"

/** The tools of this module that are not on $PATH. */
export const missing = (): ReadonlyArray<string> =>
  ["ss", "strace"].filter((tool) =>
    !(process.env["PATH"] ?? "").split(":").some((dir) => dir !== "" && Fs.existsSync(Path.join(dir, tool)))
  )

/** An established TCP socket, as `ss -tno` shows it. */
export interface Established {
  /** `ADDRESS:PORT` of this end. */
  readonly local: string
  /** `ADDRESS:PORT` of the other end. */
  readonly peer: string
  /** Its timer, `keepalive`, `on` (retransmission), `persist`..., or undefined when it has none. */
  readonly timer: string | undefined
}

/**
 * The established TCP sockets with local port `port` (`side: "local"`) or peer port `port` (`side: "peer"`); with
 * `state: "all"`, the sockets in any state (closing ones too).
 */
export const established = (
  side: "local" | "peer",
  port: number,
  state: "established" | "all" = "established"
): ReadonlyArray<Established> => {
  const filter = `( ${side === "local" ? "sport" : "dport"} = :${port} )`
  const out = ChildProcess.execFileSync("ss", ["-tnoH", "state", state, filter], { encoding: "utf8" })
  return out.split("\n").filter((line) => line.trim() !== "").map((line) => {
    // [State] Recv-Q Send-Q Local Peer [timer:(NAME,...)] (the state only with "all")
    const fields = line.trim().split(/\s+/).slice(state === "all" ? 1 : 0)
    const timer = /timer:\((\w+),/.exec(line)?.[1]
    return { local: fields[2]!, peer: fields[3]!, timer }
  })
}

/**
 * Polls (at most `timeoutMs`) until every one of the `n` established sockets at `port` (`side` as in
 * {@link established}) shows its timer settled (keepalive, or none): a socket with bytes in flight shows a
 * retransmission timer for a moment. Returns them as they are then.
 */
export const settled = async (
  side: "local" | "peer",
  port: number,
  n: number,
  timeoutMs = 5_000
): Promise<ReadonlyArray<Established>> => {
  let last: ReadonlyArray<Established> = []
  await Poll.until(
    () => {
      last = established(side, port)
      return last.length === n && last.every((s) => s.timer === undefined || s.timer === "keepalive")
    },
    timeoutMs,
    50
  )
  return last
}

/** A running `strace` attached to every thread of a process. */
export interface Trace {
  /** Stops tracing (the process runs on) and returns the calls seen, one line each: `TID call(...) = result`. */
  readonly stop: () => Promise<ReadonlyArray<string>>
}

/**
 * Attaches strace to every thread of process `pid` (`-f`), tracing `setsockopt` alone, and resolves once it has
 * attached (strace says so once it holds them all). Stop it with `stop`, by its own pid.
 */
export const traceSetsockopt = async (pid: number, dir: string, timeoutMs = 10_000): Promise<Trace> => {
  const out = Path.join(dir, `strace-${pid}-${Date.now()}.txt`)
  const child = ChildProcess.spawn("strace", ["-f", "-e", "trace=setsockopt", "-o", out, "-p", String(pid)], {
    stdio: ["ignore", "ignore", "pipe"]
  })
  let stderr = ""
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  // "strace: Process PID attached with N threads", once it has attached to them all.
  const attached = () => /Process \d+ attached/.test(stderr)
  if (!(await Poll.until(() => attached() || child.exitCode !== null, timeoutMs, 20))) {
    child.kill("SIGKILL")
    throw new Error(`strace did not attach to ${pid}:\n${stderr}`)
  }
  if (child.exitCode !== null) throw new Error(`strace exited at once:\n${stderr}`)
  return {
    stop: async () => {
      child.kill("SIGINT")
      const done = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 5_000))])
      if (!done) child.kill("SIGKILL")
      const text = Fs.existsSync(out) ? Fs.readFileSync(out, "utf8") : ""
      return text.split("\n").filter((line) => line.includes("setsockopt("))
    }
  }
}

/** The calls of a trace that turn TCP_NODELAY on, and the threads that made them. */
export const noDelayCalls = (calls: ReadonlyArray<string>) => {
  const on = calls.filter((line) => /TCP_NODELAY, \[1\]/.test(line))
  return { count: on.length, threads: new Set(on.map((line) => line.split(" ")[0]!)) }
}
