// node bench/startup.ts: what nib costs before it does anything. For each variant it times `nib --version`, `nib
// --help`, a usage error (`nib -Y`), and a foreground start (`nib -f 127.0.0.1:0 127.0.0.1:9`) up to its `nib:
// listening on` line, where it reads the process's VmRSS from /proc (and again after STARTUP_IDLE_MS idle). Plain
// `node -e 0` is measured beside them as the floor. Runs are interleaved (every variant, then again), each a fresh
// process started as nib's shebang starts it (`node --max-semi-space-size=4 BIN`), and every run is printed, then the
// median and min-max of each figure. Beside each wall time is the CPU time (user + system, all threads, in 10 ms
// ticks) that the process used: on a machine where other work competes for the cores it moves far less than the wall
// time. For the commands that exit it comes from GNU time (/usr/bin/time; without it only wall times are shown), for
// the start from /proc/PID/stat at the listening line.
// Environment: STARTUP_RUNS (10), STARTUP_BINS (a comma list of NAME=PATH, to compare builds side by side; default
// nib=dist/bundle/nib.js,unbundled=dist/src/bin.js: the executable, and tsc's output it is bundled from),
// STARTUP_NODE_FLAGS (more Node flags, such as --cpu-prof), STARTUP_ENV (a comma list of NAME=VALUE added to each
// process's environment, such as NODE_COMPILE_CACHE=/tmp/cache), STARTUP_IDLE_MS (1000).
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

const ROOT = Path.resolve(import.meta.dirname, "..")
const NODE = process.execPath
const RUNS = Number(process.env.STARTUP_RUNS ?? 10)
const IDLE_MS = Number(process.env.STARTUP_IDLE_MS ?? 1000)
const FLAGS = ["--max-semi-space-size=4", ...(process.env.STARTUP_NODE_FLAGS ?? "").split(" ").filter((f) => f !== "")]
const BINS = (process.env.STARTUP_BINS ?? "nib=dist/bundle/nib.js,unbundled=dist/src/bin.js").split(",").map(
  (entry) => {
    const [name, path] = entry.split("=") as [string, string]
    return { name, path: Path.resolve(ROOT, path) }
  }
)
const ENV: NodeJS.ProcessEnv = { ...process.env }
delete ENV["NIB_DAEMON_CHILD"]
for (const pair of (process.env.STARTUP_ENV ?? "").split(",").filter((p) => p !== "")) {
  const at = pair.indexOf("=")
  ENV[pair.slice(0, at)] = pair.slice(at + 1)
}

const GNU_TIME = Fs.existsSync("/usr/bin/time") ? "/usr/bin/time" : undefined
const TICK_MS = 10 // USER_HZ

/** One run of a command that exits by itself: wall milliseconds, and CPU milliseconds when GNU time is there. */
const timeRun = (args: ReadonlyArray<string>): { ms: number; cpu: number | undefined } => {
  const [command, argv] = GNU_TIME === undefined
    ? [NODE, args]
    : [GNU_TIME, ["-f", "nib-startup-cpu %U %S", NODE, ...args]]
  const start = process.hrtime.bigint()
  const result = ChildProcess.spawnSync(command, argv, { env: ENV, stdio: ["ignore", "pipe", "pipe"] })
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (result.error !== undefined) throw result.error
  const times = /nib-startup-cpu ([\d.]+) ([\d.]+)/.exec(result.stderr.toString())
  return { ms, cpu: times === null ? undefined : (Number(times[1]) + Number(times[2])) * 1000 }
}

/** CPU milliseconds (user + system) that process `pid` has used so far. */
const cpuMs = (pid: number): number => {
  const fields = Fs.readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ")
  // utime and stime are fields 14 and 15 of stat(5); 12 and 13 once pid and comm are cut off
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS
}

const rssKiB = (pid: number): number => {
  const status = Fs.readFileSync(`/proc/${pid}/status`, "utf8")
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
}

/** Starts nib in the foreground: ms (wall and CPU) to its listening line, VmRSS then and after IDLE_MS, in MB. */
const timeListen = (bin: string): Promise<{ ms: number; cpu: number; rss: number; rssIdle: number }> =>
  new Promise((resolve, reject) => {
    const start = process.hrtime.bigint()
    const child = ChildProcess.spawn(NODE, [...FLAGS, bin, "-f", "127.0.0.1:0", "127.0.0.1:9"], {
      env: ENV,
      stdio: ["ignore", "ignore", "pipe"]
    })
    let stderr = ""
    let ms: number | undefined
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`no listening line in 10 s: ${stderr}`))
    }, 10_000)
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
      if (ms !== undefined || !stderr.includes("nib: listening on")) return
      const listening = (ms = Number(process.hrtime.bigint() - start) / 1e6)
      const cpu = cpuMs(child.pid!)
      const rss = rssKiB(child.pid!) / 1024
      setTimeout(() => {
        const rssIdle = rssKiB(child.pid!) / 1024
        clearTimeout(timer)
        child.once("exit", () => resolve({ ms: listening, cpu, rss, rssIdle }))
        child.kill("SIGTERM")
      }, IDLE_MS)
    })
    child.once("exit", (code) => {
      if (ms === undefined) {
        clearTimeout(timer)
        reject(new Error(`exited with ${code} before listening: ${stderr}`))
      }
    })
  })

type Command = "node -e 0" | "--version" | "--help" | "usage error" | "to listening"
type Figure = Command | `${Command} cpu` | "RSS listening" | "RSS idle"
const samples = new Map<string, Map<Figure, Array<number>>>()
const record = (variant: string, figure: Figure, value: number | undefined) => {
  if (value === undefined) return
  const figures = samples.get(variant) ?? new Map<Figure, Array<number>>()
  samples.set(variant, figures)
  figures.set(figure, [...(figures.get(figure) ?? []), value])
}
const recordRun = (variant: string, command: Command, args: ReadonlyArray<string>) => {
  const { cpu, ms } = timeRun(args)
  record(variant, command, ms)
  record(variant, `${command} cpu`, cpu)
}

for (let run = 1; run <= RUNS; run++) {
  recordRun("node", "node -e 0", [...FLAGS, "-e", "0"])
  for (const { name, path } of BINS) {
    recordRun(name, "--version", [...FLAGS, path, "--version"])
    recordRun(name, "--help", [...FLAGS, path, "--help"])
    recordRun(name, "usage error", [...FLAGS, path, "-Y"])
    const listen = await timeListen(path)
    record(name, "to listening", listen.ms)
    record(name, "to listening cpu", listen.cpu)
    record(name, "RSS listening", listen.rss)
    record(name, "RSS idle", listen.rssIdle)
  }
  console.error(`run ${run}/${RUNS} done`)
}

const median = (values: ReadonlyArray<number>) => {
  const sorted = values.toSorted((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
const unit = (figure: Figure) => figure.startsWith("RSS") ? "MB" : "ms"
console.log(`Node ${process.version}, flags ${FLAGS.join(" ")}, ${RUNS} runs, interleaved\n`)
console.log("| variant | figure | median | min-max | every run |")
console.log("| --- | --- | ---: | ---: | --- |")
for (const [variant, figures] of samples) {
  for (const [figure, values] of figures) {
    const f = (v: number) => v.toFixed(unit(figure) === "MB" ? 1 : 0)
    console.log(
      `| ${variant} | ${figure} (${unit(figure)}) | ${f(median(values))} | ${f(Math.min(...values))}-${
        f(Math.max(...values))
      } | ${values.map(f).join(" ")} |`
    )
  }
}
