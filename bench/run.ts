// npm run bench: nib against pen, haproxy, a plain Node proxy (bench/plain-proxy.ts, on nib's Node) and that proxy
// with nib's modules loaded (plain+nib), all balancing roundrobin over two backends on 127.0.0.1: nginx, or for the
// bulk scenarios two Node peers (bench/source.ts read by bench/download.ts, bench/sink.ts fed by bench/upload.ts).
// Each balancer runs pinned to CPU 1; wrk, the bulk load, the idle-connection holder, nginx and the peers run on CPU
// 0. Repetitions are interleaved
// (A B C D A B C D ...), each balancer started fresh for every measurement, and the median of the repetitions is
// reported with its spread, as ratios to the plain Node proxy and to pen measured in the same run. See
// bench/README.md.
//
// Scenarios: "keep-alive", "keep-alive -H" (nib and pen adding X-Forwarded-For), "new connection", "bulk download",
// "single download" (the same over one connection: one stream's pace, with the balancer's CPU % and CPU 1's busy %),
// "bulk upload", "idle N", "udp" (-U: request/response
// datagrams of 100 bytes from 50 client sockets through the balancer to two UDP echo servers; the plain reference is
// then bench/plain-udp-proxy.ts, and only balancers with a UDP mode take part: plain, nib, pen), "tls new connection"
// and "tls download" (the balancer terminates TLS with a certificate made for the run, -E/-K, in front of the same
// plain backends; the load is bench/tls-connect.ts, one full handshake per connection, and bench/download.ts speaking
// TLS; the plain reference is bench/plain-tls-proxy.ts, and only balancers that terminate TLS take part: plain, nib,
// pen, haproxy).
// Environment: BENCH_REPS (3), BENCH_SECONDS (5, per wrk or upload run), BENCH_IDLE ("2000,10000"), BENCH_ONLY (a
// comma list of balancer names; default: all of them), BENCH_SCENARIOS (a comma list of scenario names),
// BENCH_NIB_BASE (another nib checkout, built: measured as "nib-base" beside this one, to compare two versions; a comma
// list adds "nib-base2", ... for more),
// BENCH_NODE_FLAGS (Node flags for the Node balancers, such as --cpu-prof), BENCH_OUT (a path prefix: each balancer's
// stdout goes to PREFIX.NAME.TIME, for --trace-gc), BENCH_TLS_GROUPS (the key exchange groups the TLS loads offer:
// "P-256" by default, the one group pen offers).
//
// --workers (issue #17): nib-w2 (nib --workers 2) and haproxy-t2 (haproxy, nbthread 2) run when BENCH_ONLY names
// them; nib-base is the checkout BENCH_NIB_BASE names (above), e.g. a build of main before issue #17. "keep-alive unpinned" and "new connection unpinned" run when BENCH_SCENARIOS names them:
// the balancer is not pinned (it may use both CPUs), the load stays on CPU 0, and the report ends with nib-w2's CPU
// per request against nib's, nib-w2's requests/s against pen's, and what more cores would give (a projection).
import * as ChildProcess from "node:child_process"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Url from "node:url"

const ROOT = Path.resolve(import.meta.dirname, "..")
const NODE = process.execPath
// Extra Node flags for the Node balancers (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile them under load).
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? "").split(" ").filter((flag) => flag !== "")
const REPS = Number(process.env.BENCH_REPS ?? 3)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
// A balancer holds two descriptors per idle connection: cap the count to what the hard fd limit allows.
const FD_LIMIT = Number(ChildProcess.spawnSync("bash", ["-c", "ulimit -Hn"]).stdout.toString().trim()) || 1024
// (keeping 100 connections' worth spare, so that each balancer can still take new ones while the idle ones are held)
const IDLE_MAX = Math.floor((FD_LIMIT - 400) / 200) * 100
const IDLE = (process.env.BENCH_IDLE ?? "2000,10000").split(",").map(Number).map((n) => {
  if (n <= IDLE_MAX) return n
  console.error(`idle ${n}: the hard fd limit (${FD_LIMIT}) allows a balancer ${IDLE_MAX} idle connections; using that`)
  return IDLE_MAX
})
const TICK_MICROS = 1e6 / 100 // USER_HZ

// ---------------------------------------------------------------------------------------------------------------------
// Processes: everything started here is stopped on success, failure, Ctrl-C or SIGTERM.

const children = new Set<ChildProcess.ChildProcess>()

const killAll = () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
}
process.on("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    killAll()
    process.exit(130)
  })
}

/** With BENCH_OUT=PREFIX, a balancer's stdout goes to PREFIX.NAME.TIME (for --trace-gc and the like). */
const balancerOutput = (name: string): ChildProcess.SpawnOptions => {
  const prefix = process.env.BENCH_OUT
  if (prefix === undefined) return {}
  return { stdio: ["ignore", Fs.openSync(`${prefix}.${name}.${Date.now()}`, "w"), "pipe"] }
}

/**
 * How `script` runs when executed as a user runs `nib`: the Node flags of its shebang line (`#!/usr/bin/env -S node
 * FLAGS`), given to this Node, then BENCH_NODE_FLAGS.
 */
const asItsShebangRuns = (script: string): Array<string> => {
  const first = Fs.readFileSync(script, "utf8").split("\n", 1)[0]!
  const flags = first.startsWith("#!") ? first.split(/\s+/).filter((word) => word.startsWith("--")) : []
  return [NODE, ...flags, ...NODE_FLAGS, script]
}

/** The `nib` executable of the checkout `root` (built): its bundle, or tsc's output in a checkout from before it. */
const nibBin = (root: string) =>
  Fs.existsSync(Path.join(root, "dist/bundle/nib.js"))
    ? Path.join(root, "dist/bundle/nib.js")
    : Path.join(root, "dist/src/bin.js")

/** nib of the checkout `root` (built), as the benchmark runs it: `nib -f -r -x 30000 127.0.0.1:PORT servers...`. */
const nibArgv = (root: string, ...flags: Array<string>) => (port: number, servers: Array<string>) => [
  ...asItsShebangRuns(nibBin(root)),
  "-f",
  ...flags,
  "-r",
  "-x",
  "30000",
  `127.0.0.1:${port}`,
  ...servers
]

/** nib keeping its sticky table (no -r): what `--peers` shares. */
const nibStickyArgv = (root: string, ...flags: Array<string>) => (port: number, servers: Array<string>) =>
  nibArgv(root, ...flags)(port, servers).filter((arg) => arg !== "-r")

/** The port of the redis-server that nib-sticky+peers shares its table through (started by main when it runs). */
const REDIS_PORT = 20000 + (process.pid % 20000)

const has = (tool: string) => ChildProcess.spawnSync("sh", ["-c", `command -v ${tool}`]).status === 0
const PINNING = has("taskset") && Os.cpus().length > 1

/**
 * Runs argv on `cpu` (a CPU, or a list such as "0-1") with its fd limit raised to the hard limit; the pid is the
 * program's own (bash and taskset exec into it).
 */
const spawnPinned = (cpu: number | string, argv: Array<string>, options: ChildProcess.SpawnOptions = {}) => {
  const pinned = PINNING ? ["taskset", "-c", String(cpu), ...argv] : argv
  const child = ChildProcess.spawn("bash", ["-c", "ulimit -n \"$(ulimit -Hn)\" && exec \"$@\"", "bash", ...pinned], {
    stdio: ["ignore", "ignore", "pipe"],
    ...options
  })
  children.add(child)
  child.once("exit", () => children.delete(child))
  return child
}

const stop = async (child: ChildProcess.ChildProcess) => {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once("exit", resolve))
  child.kill("SIGTERM")
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
  await exited
  clearTimeout(timer)
}

const run = (argv: Array<string>) =>
  new Promise<string>((resolve, reject) => {
    const child = spawnPinned(0, argv, { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    child.stdout!.on("data", (d) => (out += d))
    child.stderr!.on("data", (d) => (out += d))
    child.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv[0]} exited ${code}: ${out}`))))
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = Net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const waitForPort = async (port: number, child: ChildProcess.ChildProcess) => {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode} before listening`)
    const ok = await new Promise<boolean>((resolve) => {
      const socket = Net.connect({ port, host: "127.0.0.1" }, () => {
        socket.destroy()
        resolve(true)
      })
      socket.on("error", () => resolve(false))
    })
    if (ok) return
    await sleep(25)
  }
  throw new Error(`nothing listens on ${port}`)
}

const freeUdpPort = () =>
  new Promise<number>((resolve) => {
    const socket = Dgram.createSocket("udp4")
    socket.bind(0, "127.0.0.1", () => {
      const { port } = socket.address()
      socket.close(() => resolve(port))
    })
  })

/** Waits until a UDP socket is bound on 127.0.0.1:`port` (or on every address), from /proc/net/udp. */
const waitForUdpPort = async (port: number, child: ChildProcess.ChildProcess) => {
  const hex = port.toString(16).toUpperCase().padStart(4, "0")
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode} before listening`)
    const bound = Fs.readFileSync("/proc/net/udp", "utf8").split("\n").some((line) => {
      const local = line.trim().split(/\s+/)[1]
      return local === `0100007F:${hex}` || local === `00000000:${hex}`
    })
    if (bound) return
    await sleep(25)
  }
  throw new Error(`nothing listens on UDP port ${port}`)
}

// ---------------------------------------------------------------------------------------------------------------------
// /proc readings

const cpuTicks = (pid: number) => {
  const fields = Fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return Number(fields[11]) + Number(fields[12])
}

const memoryKiB = (pid: number, key: "VmRSS" | "VmHWM") => {
  const match = new RegExp(`${key}:\\s+(\\d+) kB`).exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))
  return match === null ? NaN : Number(match[1])
}

/** A CPU's idle and total time so far, from /proc/stat. */
const cpuTimes = (cpu: number) => {
  const line = Fs.readFileSync("/proc/stat", "utf8").split("\n").find((l) => l.startsWith(`cpu${cpu} `))!
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  return { idle: v[3]! + v[4]!, total: v.reduce((a, b) => a + b, 0) }
}

/** The fraction of the time between two readings that the CPU was busy. */
const busyBetween = (a: ReturnType<typeof cpuTimes>, b: ReturnType<typeof cpuTimes>) =>
  1 - (b.idle - a.idle) / Math.max(1, b.total - a.total)

const cpuBusy = async (cpu: number) => {
  const a = cpuTimes(cpu)
  await sleep(500)
  return busyBetween(a, cpuTimes(cpu))
}

/** Starts a reading of both CPUs' load; the function it returns gives each one's busy percentage since then. */
const cpuLoad = () => {
  const a = [cpuTimes(0), cpuTimes(1)]
  return () => {
    const b = [cpuTimes(0), cpuTimes(1)]
    return { cpu0Busy: 100 * busyBetween(a[0]!, b[0]!), cpu1Busy: 100 * busyBetween(a[1]!, b[1]!) }
  }
}

/**
 * Waits until the balancer's CPUs are quiet (CPU 1; both in the unpinned scenarios); the machine is shared. Returns
 * false if they never were.
 */
const waitQuiet = async (cpus: Array<number> = [1]) => {
  if (!PINNING) return true
  for (let i = 0; i < 30; i++) {
    if ((await Promise.all(cpus.map(cpuBusy))).every((busy) => busy < 0.15)) return true
    if (i === 0) process.stderr.write(`  (CPU ${cpus.join(" or ")} is busy with other work: waiting)\n`)
    await sleep(1000)
  }
  return false
}

// ---------------------------------------------------------------------------------------------------------------------
// Backends and balancers

const work = Fs.mkdtempSync(Path.join(Os.tmpdir(), "nib-bench-"))
process.on("exit", () => Fs.rmSync(work, { recursive: true, force: true }))

// The TLS scenarios' certificate and key, made in `work` when a TLS scenario runs (and removed with it): RSA 2048,
// self-signed, CN=localhost. haproxy takes both in one file.
const TLS_CERT = Path.join(work, "tls-cert.pem")
const TLS_KEY = Path.join(work, "tls-key.pem")
const TLS_PEM = Path.join(work, "tls-cert-key.pem")

const makeCertificate = () => {
  const argv = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
  const made = ChildProcess.spawnSync("openssl", [...argv, "-keyout", TLS_KEY, "-out", TLS_CERT])
  if (made.status !== 0) throw new Error(`openssl req failed: ${made.stderr.toString()}`)
  Fs.writeFileSync(TLS_PEM, Buffer.concat([Fs.readFileSync(TLS_CERT), Fs.readFileSync(TLS_KEY)]))
}

const startNginx = async (name: string, port: number) => {
  const dir = Path.join(work, `${name}-${port}`)
  Fs.mkdirSync(dir, { recursive: true })
  Fs.writeFileSync(
    Path.join(dir, "nginx.conf"),
    [
      "worker_processes 1;",
      "daemon off;",
      "master_process off;",
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log;`,
      "events { worker_connections 30000; }",
      "http {",
      "  access_log off;",
      "  keepalive_timeout 600s;",
      "  keepalive_requests 10000000;",
      `  server { listen 127.0.0.1:${port} backlog=4096; root ${work}/www; }`,
      "}"
    ].join("\n")
  )
  const child = spawnPinned(0, ["nginx", "-c", Path.join(dir, "nginx.conf"), "-p", dir])
  await waitForPort(port, child)
  return child
}

interface Balancer {
  readonly name: string
  readonly tool: string
  readonly argv: (port: number, servers: Array<string>) => Array<string>
  /** How it runs in UDP mode, if it has one. */
  readonly udp?: (port: number, servers: Array<string>) => Array<string>
  /** How it runs adding X-Forwarded-For (`-H`), if it can. */
  readonly http?: (port: number, servers: Array<string>) => Array<string>
  /** How it runs terminating TLS with TLS_CERT and TLS_KEY, if it can. */
  readonly tls?: (port: number, servers: Array<string>) => Array<string>
  /** Runs only when BENCH_ONLY names it. */
  readonly optIn?: true
  /** A line it prints on stderr once it serves (besides the port answering): nib's, once every worker listens. */
  readonly ready?: RegExp
}

const haproxyConfig = (port: number, servers: Array<string>, tls = false, threads = 1) => {
  const file = Path.join(work, `haproxy-${port}.cfg`)
  Fs.writeFileSync(
    file,
    [
      "global",
      `  nbthread ${threads}`,
      `  maxconn ${Math.floor((FD_LIMIT - 200) / 2)}`,
      "defaults",
      "  mode tcp",
      "  timeout connect 5s",
      "  timeout client 10m",
      "  timeout server 10m",
      "frontend in",
      `  bind 127.0.0.1:${port}${tls ? ` ssl crt ${TLS_PEM}` : ""}`,
      `  maxconn ${Math.floor((FD_LIMIT - 200) / 2)}`,
      "  default_backend servers",
      "backend servers",
      "  balance roundrobin",
      ...servers.map((s, i) => `  server s${i} ${s}`)
    ].join("\n") + "\n"
  )
  return file
}

/** A script of bench/ run as a balancer on this Node: `node bench/SCRIPT ARGS... PORT SERVERS...`. */
const benchScript = (script: string, ...args: Array<string>) => (port: number, servers: Array<string>) => [
  NODE,
  ...NODE_FLAGS,
  Path.join(ROOT, "bench", script),
  ...args,
  String(port),
  ...servers
]

/** pen as the benchmark runs it: `pen -f FLAGS -r -x 30000 127.0.0.1:PORT servers...`. */
const penArgv = (...flags: Array<string>) => (port: number, servers: Array<string>) => [
  "pen",
  "-f",
  ...flags,
  "-r",
  "-x",
  "30000",
  `127.0.0.1:${port}`,
  ...servers
]

const BALANCERS: Array<Balancer> = [
  {
    name: "plain",
    tool: "node",
    argv: benchScript("plain-proxy.ts"),
    udp: benchScript("plain-udp-proxy.ts"),
    tls: benchScript("plain-tls-proxy.ts", TLS_CERT, TLS_KEY)
  },
  {
    // The plain proxy with every module nib loads imported (and not used): what the runtime alone costs.
    name: "plain+nib",
    tool: "node",
    argv: (port, servers) => [
      NODE,
      ...["src/Cli.js", "src/index.js"].flatMap((
        m
      ) => ["--import", Url.pathToFileURL(Path.join(ROOT, "dist", m)).href]),
      Path.join(ROOT, "bench/plain-proxy.ts"),
      String(port),
      ...servers
    ]
  },
  {
    name: "nib",
    tool: "node",
    argv: nibArgv(ROOT),
    udp: nibArgv(ROOT, "-U"),
    http: nibArgv(ROOT, "-H"),
    tls: nibArgv(ROOT, "-E", TLS_CERT, "-K", TLS_KEY)
  },
  {
    // nib with an active check of each server (every 2 s) and the admin endpoint open: what they cost (issue #12).
    name: "nib+checks",
    tool: "node",
    argv: nibArgv(ROOT, "--check", "tcp", "--admin", "127.0.0.1:0"),
    optIn: true
  },
  // Each of the two alone, to tell their costs apart.
  { name: "nib+check", tool: "node", argv: nibArgv(ROOT, "--check", "tcp"), optIn: true },
  { name: "nib+admin", tool: "node", argv: nibArgv(ROOT, "--admin", "127.0.0.1:0"), optIn: true },
  // BENCH_NIB_BASE=DIR[,DIR...]: "nib-base", then "nib-base2", ... (several versions, interleaved with this one)
  ...(process.env.BENCH_NIB_BASE ?? "").split(",").filter((dir) => dir !== "").map((dir, i): Balancer => {
    const root = Path.resolve(dir)
    return {
      name: i === 0 ? "nib-base" : `nib-base${i + 1}`,
      tool: "node",
      argv: nibArgv(root),
      // (a version older than UDP mode sits the UDP scenario out)
      ...(Fs.existsSync(Path.join(root, "dist/src/proxy/UdpProxy.js")) ? { udp: nibArgv(root, "-U") } : {}),
      // (and one older than TLS termination, -E, the TLS scenarios)
      ...(Fs.existsSync(Path.join(root, "dist/src/net/Tls.js"))
        ? { tls: nibArgv(root, "-E", TLS_CERT, "-K", TLS_KEY) }
        : {})
    }
  }),
  // --peers (issue #19): nib with its sticky table (no -r), without and with a Redis to share it through. Redis runs
  // on the load's CPU; nothing of it is on a connection's path, so the two should cost the same.
  { name: "nib-sticky", tool: "node", argv: nibStickyArgv(ROOT), optIn: true },
  {
    name: "nib-sticky+peers",
    tool: "redis-server",
    argv: nibStickyArgv(ROOT, "--peers", `redis://127.0.0.1:${REDIS_PORT}`),
    optIn: true
  },
  // --workers (issue #17): nib on two threads (the main thread and one worker thread). Its start-up line comes once
  // every worker listens: before that the kernel would give every connection to the main thread.
  {
    name: "nib-w2",
    tool: "node",
    argv: nibArgv(ROOT, "--workers", "2"),
    ready: /nib: listening on/,
    optIn: true
  },
  {
    name: "pen",
    tool: "pen",
    argv: penArgv(),
    udp: penArgv("-U"),
    http: penArgv("-H"),
    tls: penArgv("-E", TLS_CERT, "-K", TLS_KEY)
  },
  {
    name: "haproxy",
    tool: "haproxy",
    argv: (port, servers) => ["haproxy", "-db", "-f", haproxyConfig(port, servers)],
    tls: (port, servers) => ["haproxy", "-db", "-f", haproxyConfig(port, servers, true)]
  },
  // --workers (issue #17): haproxy on two threads, as nib-w2 is nib on two.
  {
    name: "haproxy-t2",
    tool: "haproxy",
    argv: (port, servers) => ["haproxy", "-db", "-f", haproxyConfig(port, servers, false, 2)],
    optIn: true
  }
]

// ---------------------------------------------------------------------------------------------------------------------
// Scenarios

type Figures = Record<string, number>

interface Backends {
  readonly servers: Array<string>
  readonly stop: () => Promise<unknown>
}

interface Scenario {
  readonly name: string
  /** A UDP scenario: balancers run in UDP mode (those without one sit it out). */
  readonly udp?: boolean
  /** Balancers run with `-H` (those without it sit it out). */
  readonly http?: boolean
  /** Balancers terminate TLS (those that cannot sit it out). */
  readonly tls?: boolean
  /** The backends the balancer is pointed at, started fresh for each measurement (default: two nginx). */
  readonly backends?: () => Promise<Backends>
  readonly measure: (port: number, pid: number, balancer: string) => Promise<Figures>
  /** Runs only when BENCH_SCENARIOS names it. */
  readonly optIn?: true
  /** The balancer is not pinned: it may run on every CPU (the load stays on CPU 0). */
  readonly unpinned?: true
  /** The balancers it runs when BENCH_ONLY is not set (default: every balancer that is not opt-in). */
  readonly balancers?: Array<string>
  /** A line printed under its table's heading. */
  readonly note?: string
}

/** What each balancer's TLS clients negotiated, per scenario (protocol, cipher, key exchange): the report names it. */
const negotiated: Record<string, Record<string, Set<string>>> = {}
const noteTls = (scenario: string, balancer: string, tls: string | undefined) => {
  if (tls !== undefined) ((negotiated[scenario] ??= {})[balancer] ??= new Set()).add(tls)
}

const parseWrk = (out: string) => {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN)
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN)
  const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(out)
  const p99Ms = p99 === null ? NaN : Number(p99[1]) * (p99[2] === "us" ? 0.001 : p99[2] === "s" ? 1000 : 1)
  const transfer = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB)/.exec(out)
  const scale: Record<string, number> = { B: 1 / 1048576, KB: 1 / 1024, MB: 1, GB: 1024 }
  const mbps = transfer === null ? NaN : Number(transfer[1]) * scale[transfer[2]!]!
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
    + Number(/Socket errors: connect (\d+)/.exec(out)?.[1] ?? 0)
  return { requests, rps, p99Ms, mbps, errors }
}

const wrkScenario = (name: string, path: string, connections: number, extra: Array<string>): Scenario => ({
  name,
  measure: async (port, pid) => {
    const url = `http://127.0.0.1:${port}${path}`
    const before = cpuTicks(pid)
    const load = cpuLoad()
    const out = await run(["wrk", "-t1", `-c${connections}`, `-d${SECONDS}s`, "--latency", ...extra, url])
    const micros = (cpuTicks(pid) - before) * TICK_MICROS
    const busy = load()
    const w = parseWrk(out)
    return {
      rps: w.rps,
      p99Ms: w.p99Ms,
      mbps: w.mbps,
      cpuMicrosPerRequest: micros / w.requests,
      cpuMillisPerMB: micros / 1000 / (w.mbps * SECONDS),
      peakRssMiB: memoryKiB(pid, "VmHWM") / 1024,
      errors: w.errors,
      ...busy
    }
  }
})

const idleScenario = (count: number): Scenario => ({
  name: `idle ${count}`,
  measure: async (port, pid) => {
    const baseline = memoryKiB(pid, "VmRSS")
    const holder = spawnPinned(0, [NODE, Path.join(ROOT, "bench/idle.ts"), String(port), String(count)], {
      stdio: ["pipe", "pipe", "inherit"]
    })
    const lines: Array<Record<string, number>> = []
    let buffer = ""
    const next = () =>
      new Promise<Record<string, number>>((resolve, reject) => {
        const poll = setInterval(() => {
          if (lines.length > 0) {
            clearInterval(poll)
            resolve(lines.shift()!)
          } else if (holder.exitCode !== null) {
            clearInterval(poll)
            reject(new Error("idle holder exited"))
          }
        }, 20)
      })
    holder.stdout!.on("data", (d) => {
      buffer += d
      let i
      while ((i = buffer.indexOf("\n")) >= 0) {
        lines.push(JSON.parse(buffer.slice(0, i)))
        buffer = buffer.slice(i + 1)
      }
    })
    const opened = (await next()).opened!
    await sleep(2000)
    const held = memoryKiB(pid, "VmRSS")
    // Does it keep serving new connections while holding them all?
    const fresh = parseWrk(await run(["wrk", "-t1", "-c10", "-d1s", `http://127.0.0.1:${port}/small`]))
    await sleep(3000)
    holder.stdin!.write("check\n")
    const checked = await next()
    await stop(holder)
    return {
      opened,
      alive: checked.alive!,
      allAlive: checked.alive === count ? 1 : 0,
      kibPerConnection: (held - baseline) / count,
      peakRssMiB: memoryKiB(pid, "VmHWM") / 1024,
      servedWhileIdle: fresh.requests
    }
  }
})

// Bulk transfer, both ways, between Node peers on CPU 0 that allocate nothing per read: 64 MiB bodies over 4
// connections, one body in flight per connection. Upload: bench/upload.ts sends bodies, each acknowledged by a sink
// (bench/sink.ts) with one byte before the next goes out. Download: bench/download.ts asks a source (bench/source.ts)
// for a body with one byte and reads it into one reused buffer. Bytes and time are the load side's: only whole bodies
// count, and the time runs until the last one (a body under way at the deadline is finished).
const BULK_BODY = 64 * 1024 * 1024

const startPeer = async (script: string, port: number) => {
  const child = spawnPinned(0, [NODE, Path.join(ROOT, "bench", script), String(port), String(BULK_BODY)])
  await waitForPort(port, child)
  return child
}

const peers = (script: string) => async (): Promise<Backends> => {
  const ports = [await freePort(), await freePort()]
  const processes = [await startPeer(script, ports[0]!), await startPeer(script, ports[1]!)]
  return { servers: ports.map((p) => `127.0.0.1:${p}`), stop: () => Promise.all(processes.map(stop)) }
}

const bulkScenario = (
  name: string,
  backend: string,
  load: string,
  extra: Array<string> = [],
  connections = 4
): Scenario => ({
  name,
  backends: peers(backend),
  measure: async (port, pid, balancer) => {
    const argv = [
      NODE,
      Path.join(ROOT, "bench", load),
      String(port),
      String(SECONDS),
      String(connections),
      String(BULK_BODY),
      ...extra
    ]
    const before = cpuTicks(pid)
    const out = await run(argv)
    const micros = (cpuTicks(pid) - before) * TICK_MICROS
    const line = out.split("\n").find((l) => l.startsWith("{"))
    if (line === undefined) throw new Error(`bench/${load} printed no result: ${out}`)
    // (the CPUs' load is the load side's own reading: Node's start-up would take a tenth of a 2-second run)
    const u = JSON.parse(line) as {
      bytes: number
      seconds: number
      errors: number
      cpuBusy: Array<number>
      tls?: string
    }
    noteTls(name, balancer, u.tls)
    const mb = u.bytes / 1048576 // MiB, as wrk's "MB"
    return {
      mbps: mb / u.seconds,
      cpuMillisPerMB: micros / 1000 / mb,
      peakRssMiB: memoryKiB(pid, "VmHWM") / 1024,
      errors: u.errors,
      // The balancer's own CPU over the load's run, in % of one core (its start-up is not in `micros`, Node's
      // start-up of the load is not in `seconds`); cpu1Busy is the whole core's, kernel work for other processes
      // included.
      balancerBusy: micros / 1e4 / u.seconds,
      cpu0Busy: u.cpuBusy[0] ?? NaN,
      cpu1Busy: u.cpuBusy[1] ?? NaN
    }
  }
})

// UDP: request/response datagrams through the balancer's UDP mode to two echo servers (bench/udp-echo.ts), from
// bench/udp-load.ts's client sockets, one request in flight per socket. A request is two datagrams through the
// balancer (the request and its reply).
const UDP_SESSIONS = 50
const UDP_SIZE = 100

const udpEchoes = async (): Promise<Backends> => {
  const ports = [await freeUdpPort(), await freeUdpPort()]
  const processes = ports.map((port) => spawnPinned(0, [NODE, Path.join(ROOT, "bench/udp-echo.ts"), String(port)]))
  await Promise.all(processes.map((child, i) => waitForUdpPort(ports[i]!, child)))
  return { servers: ports.map((p) => `127.0.0.1:${p}`), stop: () => Promise.all(processes.map(stop)) }
}

const udpScenario: Scenario = {
  name: "udp",
  udp: true,
  backends: udpEchoes,
  measure: async (port, pid) => {
    const argv = [NODE, Path.join(ROOT, "bench/udp-load.ts"), String(port), String(SECONDS), String(UDP_SESSIONS)]
    const before = cpuTicks(pid)
    const out = await run([...argv, String(UDP_SIZE)])
    const micros = (cpuTicks(pid) - before) * TICK_MICROS
    const line = out.split("\n").find((l) => l.startsWith("{"))
    if (line === undefined) throw new Error(`bench/udp-load.ts printed no result: ${out}`)
    const u = JSON.parse(line) as { bodies: number; seconds: number; errors: number; cpuBusy: Array<number> }
    const datagrams = 2 * u.bodies
    return {
      datagramsPerSecond: datagrams / u.seconds,
      cpuMicrosPerDatagram: micros / datagrams,
      peakRssMiB: memoryKiB(pid, "VmHWM") / 1024,
      lost: u.errors,
      cpu0Busy: u.cpuBusy[0] ?? NaN,
      cpu1Busy: u.cpuBusy[1] ?? NaN
    }
  }
}

// --peers (issue #19): new connections from 10,000 source addresses (bench/many-clients.ts, not wrk, which has one),
// more than the sticky table's 2048 slots: each connection is a new client, a pin that --peers sends to Redis.
const MANY_CLIENTS = 10_000

const manyClientsScenario: Scenario = {
  name: "many clients",
  optIn: true,
  balancers: ["nib-sticky", "nib-sticky+peers"],
  note: `one connection from each of ${MANY_CLIENTS} source addresses in turn (bench/many-clients.ts, 50 at once)`,
  measure: async (port, pid) => {
    const argv = [
      NODE,
      Path.join(ROOT, "bench/many-clients.ts"),
      String(port),
      String(SECONDS),
      "50",
      String(MANY_CLIENTS)
    ]
    const before = cpuTicks(pid)
    const out = await run(argv)
    const micros = (cpuTicks(pid) - before) * TICK_MICROS
    const line = out.split("\n").find((l) => l.startsWith("{"))
    if (line === undefined) throw new Error(`bench/many-clients.ts printed no result: ${out}`)
    const u = JSON.parse(line) as {
      connections: number
      seconds: number
      errors: number
      p99Ms: number
      cpuBusy: Array<number>
    }
    return {
      rps: u.connections / u.seconds,
      cpuMicrosPerRequest: micros / u.connections,
      p99Ms: u.p99Ms,
      peakRssMiB: memoryKiB(pid, "VmHWM") / 1024,
      errors: u.errors,
      cpu0Busy: u.cpuBusy[0] ?? NaN,
      cpu1Busy: u.cpuBusy[1] ?? NaN
    }
  }
}

// TLS handshakes: bench/tls-connect.ts (not wrk, which resumes its sessions) opens one connection after another from
// each of TLS_CLIENTS clients, each a full handshake, a `GET /small` with `Connection: close` and the response.
const TLS_CLIENTS = 50

const tlsConnectScenario: Scenario = {
  name: "tls new connection",
  tls: true,
  measure: async (port, pid, balancer) => {
    const argv = [NODE, Path.join(ROOT, "bench/tls-connect.ts"), String(port), String(SECONDS), String(TLS_CLIENTS)]
    const before = cpuTicks(pid)
    const out = await run(argv)
    const micros = (cpuTicks(pid) - before) * TICK_MICROS
    const line = out.split("\n").find((l) => l.startsWith("{"))
    if (line === undefined) throw new Error(`bench/tls-connect.ts printed no result: ${out}`)
    const u = JSON.parse(line) as {
      connections: number
      seconds: number
      errors: number
      resumed: number
      p99Ms: number
      cpuBusy: Array<number>
      tls?: string
    }
    noteTls("tls new connection", balancer, u.tls)
    return {
      handshakesPerSecond: u.connections / u.seconds,
      cpuMicrosPerHandshake: micros / u.connections,
      p99Ms: u.p99Ms,
      peakRssMiB: memoryKiB(pid, "VmHWM") / 1024,
      errors: u.errors,
      resumed: u.resumed,
      cpu0Busy: u.cpuBusy[0] ?? NaN,
      cpu1Busy: u.cpuBusy[1] ?? NaN
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// --workers (issue #17): the keep-alive and new connection loads with the balancer unpinned, free to use both CPUs,
// while the load (wrk, nginx) stays on CPU 0. The balancer's CPU is still /proc/PID/stat's, which counts every thread
// of the process (and threads that ended); how it was spread over the threads is read from /proc/PID/task/*/stat.

const ALL_CPUS = `0-${Os.cpus().length - 1}`
const UNPINNED_BALANCERS = ["nib", "nib-w2", "pen", "haproxy", "haproxy-t2"]

/** Each thread's CPU ticks so far (user + system), from /proc/PID/task/TID/stat. */
const threadTicks = (pid: number) => {
  const ticks = new Map<string, number>()
  for (const tid of Fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = Fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(") ") + 2).split(" ")
      ticks.set(tid, Number(fields[11]) + Number(fields[12]))
    } catch {
      // (the thread ended between the listing and the reading)
    }
  }
  return ticks
}

/**
 * How the balancer's CPU between two readings was spread over its threads, in percent of the process's own figure
 * (`ticks`, from /proc/PID/stat): the busiest thread's share, the next one's, the other threads' (Node's: V8's GC
 * helpers), and all the threads alive at the end together (a check that /proc/PID/stat counts every thread: 100%,
 * less what threads that ended used).
 */
const threadSplit = (before: Map<string, number>, after: Map<string, number>, ticks: number) => {
  const used = [...after].map(([tid, t]) => t - (before.get(tid) ?? 0)).toSorted((a, b) => b - a)
  const share = (t: number) => (ticks === 0 ? NaN : (100 * t) / ticks)
  return {
    busiestThreadPct: share(used[0] ?? 0),
    secondThreadPct: share(used[1] ?? 0),
    otherThreadsPct: share(used.slice(2).reduce((a, b) => a + b, 0)),
    threadsCountedPct: share(used.reduce((a, b) => a + b, 0))
  }
}

const unpinnedScenario = (name: string, extra: Array<string>): Scenario => {
  const load = wrkScenario(name, "/small", 50, extra)
  return {
    name,
    optIn: true,
    unpinned: true,
    balancers: UNPINNED_BALANCERS,
    note: "The balancer is not pinned (it may use both CPUs); wrk and nginx stay on CPU 0. Its CPU per request sums " +
      "all its threads; the thread columns give the busiest thread's share of it, the next one's and the " +
      "other threads' together (for Node, V8's GC helpers).",
    measure: async (port, pid, balancer) => {
      const threads = threadTicks(pid)
      const ticks = cpuTicks(pid)
      const figures = await load.measure(port, pid, balancer)
      return { ...figures, ...threadSplit(threads, threadTicks(pid), cpuTicks(pid) - ticks) }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------

const ALL_SCENARIOS: Array<Scenario> = [
  wrkScenario("keep-alive", "/small", 50, []),
  { ...wrkScenario("keep-alive -H", "/small", 50, []), http: true },
  wrkScenario("new connection", "/small", 50, ["-H", "Connection: close"]),
  bulkScenario("bulk download", "source.ts", "download.ts"),
  // One stream on its own: whatever the relay waits for between a read and a write shows here, where the 4
  // connections of "bulk download" would fill each other's gaps (issue #17).
  bulkScenario("single download", "source.ts", "download.ts", [], 1),
  bulkScenario("bulk upload", "sink.ts", "upload.ts"),
  ...IDLE.map(idleScenario),
  udpScenario,
  tlsConnectScenario,
  manyClientsScenario,
  { ...bulkScenario("tls download", "source.ts", "download.ts", ["tls"]), tls: true },
  // --workers (issue #17)
  unpinnedScenario("keep-alive unpinned", []),
  unpinnedScenario("new connection unpinned", ["-H", "Connection: close"])
]

// ---------------------------------------------------------------------------------------------------------------------

// Fresh backends (on fresh ports) for every measurement: tens of thousands of connections leave as many sockets in
// TIME_WAIT towards the backends' ports, which slows the next balancer's connect() calls; without this the
// balancer measured later in a round pays for the earlier ones.
const backends = async (): Promise<Backends> => {
  const ports = [await freePort(), await freePort()]
  const processes = [await startNginx("a", ports[0]!), await startNginx("b", ports[1]!)]
  return { servers: ports.map((p) => `127.0.0.1:${p}`), stop: () => Promise.all(processes.map(stop)) }
}

/** Waits until `output()` (what a child printed so far) has a line matching `line`. */
const waitForLine = async (line: RegExp, output: () => string, child: ChildProcess.ChildProcess) => {
  for (let i = 0; i < 400; i++) {
    if (line.test(output())) return
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode} before saying it serves`)
    await sleep(25)
  }
  throw new Error(`no line matching ${line} within 10 s`)
}

/**
 * Starts a balancer on a free port, on `cpu` (CPU 1, or every CPU in the unpinned scenarios), and waits until it
 * listens (and, if it has a `ready` line, until it printed it). A port found free may be taken by the time the
 * balancer binds it (the machine is shared): then it is started again on another, at most three times; the last
 * failure names the balancer and gives what it printed.
 */
const startBalancer = async (
  name: string,
  udp: boolean,
  argv: (port: number) => Array<string>,
  cpu: number | string = 1,
  ready?: RegExp
) => {
  for (let attempt = 1;; attempt++) {
    const port = udp ? await freeUdpPort() : await freePort()
    const child = spawnPinned(cpu, argv(port), balancerOutput(name))
    let stderr = ""
    child.stderr?.on("data", (d) => (stderr += d))
    try {
      await (udp ? waitForUdpPort : waitForPort)(port, child)
      if (ready !== undefined) await waitForLine(ready, () => stderr, child)
      return { child, port }
    } catch (error) {
      await stop(child)
      if (attempt === 3) {
        throw new Error(`${name} did not start: ${(error as Error).message}\n${stderr}`, { cause: error })
      }
      process.stderr.write(
        `  (${name} did not start on port ${port}, trying another: ${stderr.trim().split("\n").at(-1)})\n`
      )
    }
  }
}

const median = (xs: Array<number>) => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** The figures shown for both bulk scenarios. */
const BULK: Array<[string, string, number, "low" | "high"]> = [
  ["mbps", "MB/s", 0, "high"],
  ["cpuMillisPerMB", "CPU ms/MB", 3, "low"],
  ["peakRssMiB", "peak RSS MiB", 1, "low"]
]
/** The figures shown per scenario: [key, label, digits, better ("low" | "high")]. */
const KEEP_ALIVE: Array<[string, string, number, "low" | "high"]> = [
  ["cpuMicrosPerRequest", "CPU µs/request", 2, "low"],
  ["rps", "requests/s", 0, "high"],
  ["p99Ms", "p99 ms", 2, "low"],
  ["peakRssMiB", "peak RSS MiB", 1, "low"]
]
/**
 * The unpinned scenarios' figures (issue #17): the thread shares and the CPUs' load describe a run rather than rank
 * the balancers ("none": no ratios to plain and pen).
 */
const UNPINNED = (cpuLabel: string, cpuDigits: number, rateLabel: string) =>
  [
    ["cpuMicrosPerRequest", cpuLabel, cpuDigits, "low"],
    ["rps", rateLabel, 0, "high"],
    ["p99Ms", "p99 ms", 2, "low"],
    ["busiestThreadPct", "busiest thread %", 0, "none"],
    ["secondThreadPct", "next thread %", 0, "none"],
    ["otherThreadsPct", "other threads %", 0, "none"],
    ["cpu0Busy", "CPU 0 busy %", 0, "none"],
    ["cpu1Busy", "CPU 1 busy %", 0, "none"]
  ] satisfies Array<[string, string, number, "low" | "high" | "none"]>
const SHOWN: Record<string, Array<[string, string, number, "low" | "high" | "none"]>> = {
  "keep-alive unpinned": UNPINNED("CPU µs/request", 2, "requests/s"),
  "new connection unpinned": UNPINNED("CPU µs/connection", 1, "connections/s"),
  "keep-alive": KEEP_ALIVE,
  "keep-alive -H": KEEP_ALIVE,
  "new connection": [["cpuMicrosPerRequest", "CPU µs/connection", 1, "low"], ["rps", "connections/s", 0, "high"], [
    "p99Ms",
    "p99 ms",
    2,
    "low"
  ]],
  "many clients": [
    ["cpuMicrosPerRequest", "CPU µs/connection", 1, "low"],
    ["rps", "connections/s", 0, "high"],
    ["p99Ms", "p99 ms", 2, "low"],
    ["peakRssMiB", "peak RSS MiB", 1, "low"]
  ],
  udp: [["cpuMicrosPerDatagram", "CPU µs/datagram", 2, "low"], ["datagramsPerSecond", "datagrams/s", 0, "high"], [
    "lost",
    "lost",
    0,
    "low"
  ], ["peakRssMiB", "peak RSS MiB", 1, "low"]],
  "bulk download": BULK,
  "bulk upload": BULK,
  "single download": [
    ...BULK.slice(0, 2),
    ["balancerBusy", "balancer CPU %", 1, "high"],
    ["cpu1Busy", "CPU 1 busy %", 1, "high"],
    BULK[2]!
  ],
  "tls new connection": [
    ["cpuMicrosPerHandshake", "CPU µs/handshake", 1, "low"],
    ["handshakesPerSecond", "handshakes/s", 0, "high"],
    ["p99Ms", "p99 ms", 2, "low"],
    ["errors", "failed", 0, "low"]
  ],
  "tls download": BULK,
  idle: [["kibPerConnection", "KiB/idle connection", 2, "low"], ["alive", "alive after idling", 0, "high"], [
    "peakRssMiB",
    "peak RSS MiB",
    1,
    "low"
  ], ["servedWhileIdle", "requests served meanwhile (1 s)", 0, "high"]]
}

// ---------------------------------------------------------------------------------------------------------------------
// --workers (issue #17): the ratios that must hold, and what more cores would give, from one run's medians.

const WORKERS_TARGET = 1.1
/** What a scenario's rate counts. */
const unit = (scenario: string) => (scenario.startsWith("new connection") ? "connection" : "request")

/** The report's --workers section (nothing if the run has none of its figures), and its figures for the JSON. */
const workersReport = (
  summary: Record<string, Record<string, Record<string, number>>>,
  samples: Record<string, Record<string, Record<string, Array<number>>>>
) => {
  const lines: Array<string> = []
  const figures: Record<string, Record<string, number | boolean>> = {}
  const ratio = (scenario: string, a: string, b: string, key: string) => {
    const x = summary[scenario]?.[a]?.[key]
    const y = summary[scenario]?.[b]?.[key]
    return x === undefined || y === undefined ? undefined : x / y
  }
  /** The ratio repetition by repetition (both ran in each, one after the other). */
  const perRepetition = (scenario: string, a: string, b: string, key: string) => {
    const xs = samples[scenario]?.[a]?.[key] ?? []
    const ys = samples[scenario]?.[b]?.[key] ?? []
    return xs.map((x, i) => `${(x / ys[i]!).toFixed(2)}x`).join(", ")
  }
  const unpinned = ["new connection unpinned", "keep-alive unpinned"]

  for (const scenario of unpinned) {
    const cpu = ratio(scenario, "nib-w2", "nib", "cpuMicrosPerRequest")
    if (cpu === undefined) continue
    if (lines.length === 0) {
      lines.push(
        `nib-w2's CPU per request or connection (all its threads) against nib's, one worker, in this run (target: ` +
          `within ${WORKERS_TARGET.toFixed(2)}x, the shared state costing little):`,
        ""
      )
    }
    const within = cpu <= WORKERS_TARGET
    // (haproxy's second thread, for comparison: what two threads cost on this machine without Node)
    const haproxy = ratio(scenario, "haproxy-t2", "haproxy", "cpuMicrosPerRequest")
    lines.push(
      `- ${scenario}: ${cpu.toFixed(3)}x (${summary[scenario]!["nib-w2"]!.cpuMicrosPerRequest!.toFixed(1)} µs ` +
        `against ${summary[scenario]!["nib"]!.cpuMicrosPerRequest!.toFixed(1)}; by repetition ` +
        `${perRepetition(scenario, "nib-w2", "nib", "cpuMicrosPerRequest")}): ` +
        `${within ? "within" : "NOT within"} ${WORKERS_TARGET.toFixed(2)}x` +
        (haproxy === undefined ? "" : `; haproxy-t2 against haproxy: ${haproxy.toFixed(3)}x`)
    )
    ;(figures[scenario] ??= {}).cpuNibW2OverNib = cpu
    figures[scenario]!.withinTarget = within
    if (haproxy !== undefined) figures[scenario]!.cpuHaproxyT2OverHaproxy = haproxy
  }
  const againstPen = unpinned.flatMap((scenario) => {
    const rps = ratio(scenario, "nib-w2", "pen", "rps")
    if (rps === undefined) return []
    ;(figures[scenario] ??= {}).rpsNibW2OverPen = rps
    return [
      `${scenario} ${rps.toFixed(2)}x (${summary[scenario]!["nib-w2"]!.rps!.toFixed(0)} against ` +
      `${summary[scenario]!["pen"]!.rps!.toFixed(0)}/s)`
    ]
  })
  if (againstPen.length > 0) {
    lines.push("", `nib-w2's requests (connections)/s against pen's: ${againstPen.join("; ")}.`)
  }
  const againstBase = Object.keys(summary).flatMap((scenario) => {
    const cpu = ratio(scenario, "nib", "nib-base", "cpuMicrosPerRequest")
    const rps = ratio(scenario, "nib", "nib-base", "rps")
    if (cpu === undefined || rps === undefined) return []
    ;(figures[scenario] ??= {}).cpuNibOverBase = cpu
    figures[scenario]!.rpsNibOverBase = rps
    return [
      `${scenario}: CPU per ${unit(scenario)} ${cpu.toFixed(2)}x (by repetition ` +
      `${perRepetition(scenario, "nib", "nib-base", "cpuMicrosPerRequest")}), ${unit(scenario)}s/s ${rps.toFixed(2)}x`
    ]
  })
  if (againstBase.length > 0) {
    lines.push("", `nib (one worker) against nib-base (BENCH_NIB_BASE), in this run: ${againstBase.join("; ")}.`)
  }
  const projected = unpinned.flatMap((scenario) => {
    const w2 = summary[scenario]?.["nib-w2"]?.cpuMicrosPerRequest
    if (w2 === undefined) return []
    const pen = summary[scenario]?.["pen"]?.cpuMicrosPerRequest
    const perCore = 1e6 / w2
    ;(figures[scenario] ??= {}).projected4 = 4 * perCore
    figures[scenario]!.projected8 = 8 * perCore
    figures[scenario]!.projected16 = 16 * perCore
    if (pen !== undefined) figures[scenario]!.penCeiling = 1e6 / pen
    return [
      `| ${scenario} | ${w2.toFixed(1)} | ${[4, 8, 16].map((n) => (n * perCore).toFixed(0)).join(" | ")} | ${
        pen === undefined ? "" : `${(1e6 / pen).toFixed(0)} (${pen.toFixed(1)} µs)`
      } |`
    ]
  })
  if (projected.length > 0) {
    lines.push(
      "",
      "A projection, not a measurement: the requests/s that N cores would give nib-w2's CPU per request, N / CPU " +
        "per request, beside pen's ceiling on its one core (1 / its CPU per request). It supposes that the load, the " +
        "backends and the kernel's work outside the balancer cost nothing, and that each added worker costs per " +
        "request what the second does. On this 2-core machine the load (wrk, nginx) takes one core, so the " +
        "requests/s measured here can gain little from a second thread.",
      "",
      "| scenario | nib-w2 CPU µs/request | 4 cores, req/s | 8 cores | 16 cores | pen's ceiling, one core |",
      "| --- | ---: | ---: | ---: | ---: | ---: |",
      ...projected
    )
  }
  // (each paragraph above begins with an empty line but the first)
  if (lines[0] === "") lines.shift()
  return { lines: lines.length === 0 ? [] : ["### --workers (issue #17)", "", ...lines, ""], figures }
}

const main = async () => {
  const missing = ["nginx", "wrk"].filter((t) => !has(t))
  if (missing.length > 0) {
    console.error(`bench needs ${missing.join(" and ")}: apt-get install -y ${missing.join(" ")}`)
    process.exit(1)
  }
  if (!Fs.existsSync(Path.join(ROOT, "dist/bundle/nib.js"))) throw new Error("build nib first: npm run build")
  const only = process.env.BENCH_ONLY?.split(",")
  /** The balancers `scenario` runs: those BENCH_ONLY names, else those it names, else every one not opt-in. */
  const balancersOf = (scenario: Scenario) =>
    BALANCERS.filter((b) =>
      (only !== undefined
        ? only.includes(b.name)
        : scenario.balancers !== undefined
        ? scenario.balancers.includes(b.name)
        : b.optIn !== true) && has(b.tool)
    )
  for (const b of BALANCERS) {
    if (!has(b.tool)) console.error(`${b.name} is not installed (apt-get install -y ${b.tool}): left out of this run`)
  }
  const scenarioNames = process.env.BENCH_SCENARIOS?.split(",")
  const canTls = has("openssl")
  if (!canTls) console.error("openssl is missing (apt-get install -y openssl): the TLS scenarios are left out")
  const scenarios = ALL_SCENARIOS.filter((s) =>
    (scenarioNames === undefined ? s.optIn !== true : scenarioNames.includes(s.name)) && (s.tls !== true || canTls)
  )
  if (scenarios.some((s) => s.tls === true)) makeCertificate()
  if (!PINNING) console.error("taskset is missing or the machine has one CPU: balancers are not pinned")

  Fs.mkdirSync(Path.join(work, "www"))
  Fs.writeFileSync(Path.join(work, "www/small"), Buffer.alloc(100, "x"))
  if (scenarios.some((scenario) => balancersOf(scenario).some((b) => b.name === "nib-sticky+peers"))) {
    const redis = spawnPinned(0, [
      "redis-server",
      "--port",
      String(REDIS_PORT),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no"
    ])
    await waitForPort(REDIS_PORT, redis)
  }

  // samples[scenario][balancer][figure] = values, one per repetition
  const samples: Record<string, Record<string, Record<string, Array<number>>>> = {}
  let disturbed = 0
  for (let rep = 1; rep <= REPS; rep++) {
    for (const scenario of scenarios) {
      // The order rotates with each repetition (A B C D, B C D A, ...), so no balancer always goes first.
      const balancers = balancersOf(scenario)
      const order = balancers.map((_, i) => balancers[(i + rep - 1) % balancers.length]!)
      for (const b of order) {
        const argv = scenario.udp ? b.udp : scenario.http ? b.http : scenario.tls ? b.tls : b.argv
        if (argv === undefined) continue
        if (!(await waitQuiet(scenario.unpinned ? [0, 1] : [1]))) disturbed++
        const backend = await (scenario.backends ?? backends)()
        const { child, port } = await startBalancer(
          b.name,
          scenario.udp === true,
          (p) => argv(p, backend.servers),
          scenario.unpinned ? ALL_CPUS : 1,
          b.ready
        )
        await sleep(200)
        const figures = await scenario.measure(port, child.pid!, b.name)
        await stop(child)
        await backend.stop()
        const slot = ((samples[scenario.name] ??= {})[b.name] ??= {})
        for (const [k, v] of Object.entries(figures)) (slot[k] ??= []).push(v)
        process.stderr.write(
          `rep ${rep}/${REPS} ${scenario.name.padEnd(14)} ${b.name.padEnd(9)} ${
            Object.entries(figures).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(2)}`).join(" ")
          }\n`
        )
      }
    }
  }

  const lines: Array<string> = [
    `nib benchmark, ${new Date().toISOString().slice(0, 10)}: ${Os.cpus().length} CPUs (${
      Os.cpus()[0]?.model.trim()
    }), Node ${process.version}; balancers ${PINNING ? "pinned to CPU 1, load on CPU 0" : "not pinned"}; ` +
    `median of ${REPS} interleaved repetitions (min-max), ${SECONDS} s per wrk or upload run.` +
    (disturbed > 0
      ? ` ${disturbed} measurement(s) ran while the balancer's CPU (CPU 1, or either CPU unpinned) was busy with other work.`
      : ""),
    ""
  ]
  const summary: Record<string, Record<string, Record<string, number>>> = {}
  for (const scenario of scenarios) {
    const shown = SHOWN[scenario.name.startsWith("idle") ? "idle" : scenario.name]!
    lines.push(`### ${scenario.name}`, "")
    if (scenario.note !== undefined) lines.push(scenario.note, "")
    lines.push(`| balancer | ${shown.map(([, label]) => label).join(" | ")} |`)
    lines.push(`| --- | ${shown.map(() => "---:").join(" | ")} |`)
    for (const b of balancersOf(scenario)) {
      const values = samples[scenario.name]?.[b.name]
      if (values === undefined) continue
      const cells = shown.map(([key, , digits, better]) => {
        const xs = values[key] ?? []
        const m = median(xs)
        ;((summary[scenario.name] ??= {})[b.name] ??= {})[key] = m
        const ratio = (base: string) => {
          const other = samples[scenario.name]?.[base]?.[key]
          const reference = other === undefined || base === b.name || better === "none" ? 0 : median(other)
          return reference === 0 ? "" : ` ${(m / reference).toFixed(2)}x ${base}`
        }
        return `${m.toFixed(digits)} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})${
          ratio("plain")
        }${ratio("pen")}`
      })
      lines.push(`| ${b.name} | ${cells.join(" | ")} |`)
    }
    const tls = Object.entries(negotiated[scenario.name] ?? {}).map(([b, seen]) => `${b}: ${[...seen].join(", ")}`)
    if (tls.length > 0) lines.push("", `Negotiated (protocol, cipher, key exchange): ${tls.join("; ")}.`)
    lines.push("")
  }
  const workers = workersReport(summary, samples)
  lines.push(...workers.lines)
  const markdown = lines.join("\n")
  console.log(markdown)
  const stamp = new Date().toISOString().replace(/[:.]/g, "-")
  Fs.mkdirSync(Path.join(ROOT, "bench/results"), { recursive: true })
  Fs.writeFileSync(Path.join(ROOT, `bench/results/${stamp}.md`), markdown + "\n")
  Fs.writeFileSync(
    Path.join(ROOT, `bench/results/${stamp}.json`),
    JSON.stringify(
      {
        node: process.version,
        reps: REPS,
        seconds: SECONDS,
        pinned: PINNING,
        summary,
        samples,
        workers: workers.figures
      },
      null,
      2
    )
  )
  console.error(`saved bench/results/${stamp}.md and .json`)
  // What is still running (the redis-server of nib-sticky+peers) would keep this process alive.
  killAll()
}

main().catch((error) => {
  console.error(error)
  killAll()
  process.exit(1)
})
