// The load of the "bulk upload" scenario: opens CONNECTIONS connections to PORT and on each uploads BODY-byte bodies
// one after another for SECONDS. Every body is one write of the same preallocated buffer (Node writes it from there
// as the socket drains, without copying it), and the next body goes out only after the sink's one-byte
// acknowledgement of this one: one body in flight per connection, so back-pressure is honoured without extra
// buffering. A body under way at the deadline is finished, so every byte counted was received by a sink.
// Usage: node upload.ts PORT SECONDS CONNECTIONS BODY. Prints {"bytes","seconds","bodies","errors","cpuBusy"} as JSON,
// cpuBusy being each CPU's busy percentage over the same span (from /proc/stat; this process's start-up excluded).
import * as Fs from "node:fs"
import * as Net from "node:net"

const port = Number(process.argv[2])
const seconds = Number(process.argv[3])
const connections = Number(process.argv[4] ?? 4)
const size = Number(process.argv[5] ?? 64 * 1024 * 1024)
const BODY = Buffer.alloc(size, "u")

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

const upload = () =>
  new Promise<void>((resolve) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    const finish = () => {
      socket.destroy()
      resolve()
    }
    const send = () => {
      if (performance.now() >= deadline) return finish()
      socket.write(BODY)
    }
    socket.on("connect", send)
    socket.on("data", (ack: Buffer) => {
      bodies += ack.length
      send()
    })
    // Closed by the other side before the deadline: the balancer or a sink failed.
    const failed = () => {
      errors++
      finish()
    }
    socket.on("error", failed)
    socket.on("end", failed)
  })

await Promise.all(Array.from({ length: connections }, upload))
const elapsed = (performance.now() - started) / 1000
const cpuBusy = cpuTimes().map((b, i) => {
  const a = cpuBefore[i]!
  return 100 * (1 - (b.idle - a.idle) / Math.max(1, b.total - a.total))
})
process.stdout.write(JSON.stringify({ bytes: bodies * size, seconds: elapsed, bodies, errors, cpuBusy }) + "\n")
