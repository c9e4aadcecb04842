// The load of the "tls new connection" scenario, in place of wrk: CONNECTIONS clients, each opening one TLS
// connection after another to PORT for SECONDS, sending `GET /small` with `Connection: close` and reading the response
// until the balancer closes. Every connection is a full handshake. wrk keeps each connection's TLS session and
// resumes it on the next (measured: haproxy counted 100% of its handshakes as resumed under wrk), so it cannot
// measure the cost of a handshake. Node's `tls.connect` resumes only a session it is given (`session`), and none is;
// `resumed` counts any connection resumed all the same (expected 0). One client context serves every connection,
// and the server's certificate is not checked (it is the run's own self-signed one). A connection under way at the
// deadline is finished; one that takes longer than 10 s fails.
// Usage: node tls-connect.ts PORT SECONDS CONNECTIONS; prints one JSON line: {"connections" (completed, with a 200),
// "seconds" (until the last one), "errors", "resumed", "p99Ms" (from the connect call to the server's close),
// "cpuBusy" (as bench/bulk.ts), "tls" (what the last one negotiated)}.
import * as Tls from "node:tls"
import { connectLoop, negotiated } from "./bulk.ts"

const port = Number(process.argv[2])
const seconds = Number(process.argv[3])
const clients = Number(process.argv[4] ?? 50)
const REQUEST = Buffer.from("GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
const OK = "HTTP/1.1 200 "
const context = Tls.createSecureContext({ ecdhCurve: process.env.BENCH_TLS_GROUPS ?? "P-256" })

let resumed = 0
let tls: string | undefined

/** One connection: true if it got a 200 and was closed by the balancer. */
const connection = (latencies: Array<number>) =>
  new Promise<boolean>((resolve) => {
    const start = performance.now()
    let head = ""
    let ended = 0
    const socket = Tls.connect({ port, host: "127.0.0.1", secureContext: context, rejectUnauthorized: false }, () => {
      if (socket.isSessionReused()) resumed++
      tls = negotiated(socket)
      socket.write(REQUEST)
    })
    socket.setTimeout(10_000, () => socket.destroy())
    socket.on("data", (chunk: Buffer) => {
      if (head.length < OK.length) head += chunk.toString("latin1", 0, OK.length)
    })
    socket.on("end", () => (ended = performance.now()))
    socket.on("error", () => {})
    socket.on("close", () => {
      const ok = head.startsWith(OK) && ended > 0
      if (ok) latencies.push(ended - start)
      resolve(ok)
    })
  })

const result = { ...(await connectLoop(clients, seconds, connection)), resumed, tls }
process.stdout.write(JSON.stringify(result) + "\n")
