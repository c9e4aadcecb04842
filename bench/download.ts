// The load of the "bulk download" scenario: opens CONNECTIONS connections to PORT and on each downloads BODY-byte
// bodies from bench/source.ts, one after another, for SECONDS. Each body is asked for with one byte, and the next only
// once the whole body has arrived: one body in flight per connection. Every connection reads into one reused 1 MiB
// buffer (`onread`), so the reader allocates nothing per read and is not what limits the balancer (wrk reads 8 KiB
// per system call, and saturated its core behind the faster balancers). A body under way at the deadline is finished.
// Usage: node download.ts PORT SECONDS CONNECTIONS BODY. Prints {"bytes","seconds","bodies","errors","cpuBusy"} as
// JSON, cpuBusy being each CPU's busy percentage over the same span (from /proc/stat; this process's start-up excluded).
import * as Fs from "node:fs"
import * as Net from "node:net"

const port = Number(process.argv[2])
const seconds = Number(process.argv[3])
const connections = Number(process.argv[4] ?? 4)
const size = Number(process.argv[5] ?? 64 * 1024 * 1024)
const BUFFER = Buffer.allocUnsafe(1 << 20)
const REQUEST = Buffer.from("g")

/** Each CPU's idle and total time so far. */
const cpuTimes = () =>
  Fs.readFileSync("/proc/stat", "utf8").split("\n").filter((l) => /^cpu\d+ /.test(l)).map((l) => {
    const v = l.trim().split(/\s+/).slice(1).map(Number)
    return { idle: v[3]! + v[4]!, total: v.reduce((a, b) => a + b, 0) }
  })

const cpuBefore = cpuTimes()
const started = performance.now()
const deadline = started + seconds * 1000

let bodies = 0
let errors = 0

const download = () =>
  new Promise<void>((resolve) => {
    let received = 0
    const finish = () => {
      socket.destroy()
      resolve()
    }
    const ask = () => {
      if (performance.now() >= deadline) return finish()
      socket.write(REQUEST)
    }
    const socket = Net.connect({
      port,
      host: "127.0.0.1",
      onread: {
        buffer: BUFFER,
        callback: (n) => {
          received += n
          if (received >= size) {
            received -= size
            bodies++
            ask()
          }
          return true
        }
      }
    })
    socket.on("connect", ask)
    // Closed by the other side before the deadline: the balancer or a source failed.
    const failed = () => {
      errors++
      finish()
    }
    socket.on("error", failed)
    socket.on("end", failed)
  })

await Promise.all(Array.from({ length: connections }, download))
const elapsed = (performance.now() - started) / 1000
const cpuBusy = cpuTimes().map((b, i) => {
  const a = cpuBefore[i]!
  return 100 * (1 - (b.idle - a.idle) / Math.max(1, b.total - a.total))
})
process.stdout.write(JSON.stringify({ bytes: bodies * size, seconds: elapsed, bodies, errors, cpuBusy }) + "\n")
