// npm run bench: nib against a plain Node proxy on loopback, on the same Node, each balancer pinned to CPU 1 and the
// load (this process and its backends) to CPU 0 when taskset exists. Interleaved repetitions, medians, ratios from
// the same run. Figures: the balancer's own CPU (from /proc/PID/stat) per new connection and per keep-alive request.
// pen, haproxy and nginx join in the full benchmark (issue #4).
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "..")
const node = process.execPath
const REPS = Number(process.env.BENCH_REPS ?? 3)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 4000)
const KEEPALIVE_REQUESTS = Number(process.env.BENCH_REQUESTS ?? 40000)
const CONCURRENCY = 50
const PAYLOAD = Buffer.alloc(100, 120)
const TICK_MICROS = 1e6 / 100 // USER_HZ is 100 on Linux

const hasTaskset = ChildProcess.spawnSync("taskset", ["-c", "0", "true"]).status === 0 && Os.cpus().length > 1
if (hasTaskset) ChildProcess.spawnSync("taskset", ["-pc", "0", String(process.pid)])

// Backend: answers every 100-byte request with 100 bytes; closes when the client half-closes.
const backend = () =>
  new Promise<Net.Server>((resolve) => {
    const server = Net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.on("data", (chunk) => {
        for (let n = Math.floor(chunk.length / PAYLOAD.length); n > 0; n--) socket.write(PAYLOAD)
      })
      socket.on("end", () => socket.end())
      socket.on("error", () => socket.destroy())
    })
    server.listen(0, "127.0.0.1", () => resolve(server))
  })

interface Balancer {
  readonly name: string
  readonly command: (servers: Array<string>) => Array<string>
}

const balancers: Array<Balancer> = [
  { name: "plain node", command: (s) => [node, Path.join(root, "bench/plain-proxy.ts"), "0", ...s] },
  { name: "nib", command: (s) => [node, Path.join(root, "dist/src/bin.js"), "-f", "-r", "127.0.0.1:0", ...s] }
]

const start = (b: Balancer, servers: Array<string>) =>
  new Promise<{ child: ChildProcess.ChildProcess; port: number }>((resolve, reject) => {
    const argv = b.command(servers)
    const child = hasTaskset
      ? ChildProcess.spawn("taskset", ["-c", "1", ...argv], { stdio: ["ignore", "ignore", "pipe"] })
      : ChildProcess.spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] })
    let err = ""
    child.stderr!.on("data", (d) => {
      err += d
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(err)
      if (m) resolve({ child, port: Number(m[1]) })
    })
    child.once("exit", (code) => reject(new Error(`${b.name} exited with ${code}: ${err}`)))
  })

const cpuTicks = (pid: number) => {
  const fields = Fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return Number(fields[11]) + Number(fields[12])
}

// One connection: send a request, read the reply, half-close, wait for the end.
const oneShot = (port: number) =>
  new Promise<void>((resolve, reject) => {
    const s = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => s.write(PAYLOAD))
    let got = 0
    s.on("data", (d) => {
      got += d.length
      if (got >= PAYLOAD.length) s.end()
    })
    s.on("end", () => (got >= PAYLOAD.length ? resolve() : reject(new Error("short reply"))))
    s.on("error", reject)
  })

const newConnections = async (port: number) => {
  let left = CONNECTIONS
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (left-- > 0) await oneShot(port)
  }))
  return CONNECTIONS
}

// Keep-alive: CONCURRENCY connections, each doing request/reply round trips.
const keepAlive = async (port: number) => {
  const per = Math.ceil(KEEPALIVE_REQUESTS / CONCURRENCY)
  await Promise.all(Array.from({ length: CONCURRENCY }, () =>
    new Promise<void>((resolve, reject) => {
      const s = Net.connect({ port, host: "127.0.0.1" }, () => s.write(PAYLOAD))
      let done = 0
      let got = 0
      s.on("data", (d) => {
        got += d.length
        while (got >= PAYLOAD.length) {
          got -= PAYLOAD.length
          if (++done === per) return void s.end(resolve)
          s.write(PAYLOAD)
        }
      })
      s.on("error", reject)
    })))
  return per * CONCURRENCY
}

const median = (xs: Array<number>) => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)]!

const spread = (xs: Array<number>) => `${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}`

const main = async () => {
  const backends = [await backend(), await backend()]
  const servers = backends.map((s) => `127.0.0.1:${(s.address() as Net.AddressInfo).port}`)
  const scenarios = [{ name: "new connection", run: newConnections }, { name: "keep-alive request", run: keepAlive }]
  const samples: Record<string, Record<string, Array<number>>> = {}
  for (let rep = 0; rep < REPS; rep++) {
    for (const scenario of scenarios) {
      for (const b of balancers) {
        const { child, port } = await start(b, servers)
        await oneShot(port) // warm the path
        const before = cpuTicks(child.pid!)
        const n = await scenario.run(port)
        const micros = ((cpuTicks(child.pid!) - before) * TICK_MICROS) / n
        child.kill("SIGTERM")
        await new Promise((r) => child.once("exit", r))
        ;((samples[scenario.name] ??= {})[b.name] ??= []).push(micros)
        process.stderr.write(`rep ${rep + 1} ${scenario.name} ${b.name}: ${micros.toFixed(1)} µs\n`)
      }
    }
  }
  backends.forEach((s) => s.close())
  const rows = scenarios.map((s) => {
    const plain = median(samples[s.name]!["plain node"]!)
    const nib = median(samples[s.name]!["nib"]!)
    return {
      scenario: s.name,
      plainMicros: plain,
      nibMicros: nib,
      ratio: nib / plain,
      plainSpread: spread(samples[s.name]!["plain node"]!),
      nibSpread: spread(samples[s.name]!["nib"]!)
    }
  })
  const table = [
    `CPU of the balancer (one core${
      hasTaskset ? ", pinned" : ", not pinned: no taskset"
    }), median of ${REPS}, ${process.version}`,
    "",
    "| figure | plain Node | nib | nib / plain |",
    "| --- | ---: | ---: | ---: |",
    ...rows.map((r) =>
      `| CPU per ${r.scenario} (µs) | ${r.plainMicros.toFixed(1)} (${r.plainSpread}) | ${
        r.nibMicros.toFixed(1)
      } (${r.nibSpread}) | ${r.ratio.toFixed(2)}x |`
    )
  ].join("\n")
  console.log(table)
  const stamp = new Date().toISOString().replace(/[:.]/g, "-")
  Fs.writeFileSync(Path.join(root, `bench/results/${stamp}.json`), JSON.stringify({ rows, samples }, null, 2))
  Fs.writeFileSync(Path.join(root, `bench/results/${stamp}.md`), table + "\n")
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
