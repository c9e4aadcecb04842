// The load of the "new connection, many clients" scenario, in place of wrk (which connects from one address): CLIENTS
// concurrent loops, each opening one plain TCP connection after another to PORT for SECONDS, each from the next of
// ADDRESSES distinct source addresses (127.0.0.2 on, through 127.x.y.z), sending `GET /small` with
// `Connection: close` and reading the response until the balancer closes. With more addresses than the balancer's
// sticky table has slots (-c, 2048 by default), every connection is a client the table does not know: a new pin each,
// which is what `--peers` sends (issue #19). A connection that takes longer than 10 s fails.
// Usage: node many-clients.ts PORT SECONDS CLIENTS ADDRESSES; prints one JSON line: {"connections" (completed, with a
// 200), "seconds" (until the last one), "errors", "p99Ms" (from the connect call to the server's close), "cpuBusy"
// (as bench/bulk.ts)}.
import * as Net from "node:net"
import { connectLoop } from "./bulk.ts"

const port = Number(process.argv[2])
const seconds = Number(process.argv[3])
const clients = Number(process.argv[4] ?? 50)
const addresses = Number(process.argv[5] ?? 10_000)
const REQUEST = Buffer.from("GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
const OK = "HTTP/1.1 200 "

/** The n-th source address: 127.0.0.2, 127.0.0.3, ... 127.0.1.0, ... (never .0.0.0 nor .0.0.1). */
const source = (n: number) => {
  const i = (n % addresses) + 2
  return `127.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
}

let next = 0

/** One connection: true if it got a 200 and was closed by the balancer. */
const connection = (latencies: Array<number>) =>
  new Promise<boolean>((resolve) => {
    const start = performance.now()
    let head = ""
    let ended = 0
    const socket = Net.connect({ port, host: "127.0.0.1", localAddress: source(next++) }, () => socket.write(REQUEST))
    socket.setTimeout(10_000, () => socket.destroy())
    socket.on("data", (chunk: Buffer) => {
      if (head.length < OK.length) head += chunk.toString("latin1", 0, OK.length)
    })
    socket.on("end", () => {
      ended = performance.now()
      socket.end()
    })
    socket.on("error", () => {})
    socket.on("close", () => {
      const ok = head.startsWith(OK) && ended > 0
      if (ok) latencies.push(ended - start)
      resolve(ok)
    })
  })

process.stdout.write(JSON.stringify(await connectLoop(clients, seconds, connection)) + "\n")
