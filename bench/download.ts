// The load of the "bulk download" scenario: opens CONNECTIONS connections to PORT and on each downloads BODY-byte
// bodies from bench/source.ts, one after another, for SECONDS. Each body is asked for with one byte, and the next only
// once the whole body has arrived: one body in flight per connection. Every connection reads into one reused 1 MiB
// buffer (`onread`), so the reader allocates nothing per read and is not what limits the balancer (wrk reads 8 KiB
// per system call, and saturated its core behind the faster balancers). A body under way at the deadline is finished.
// With a fifth argument, "tls", it speaks TLS to the balancer (the "tls download" scenario): one client context for
// every connection, the server's certificate not checked (it is the run's own self-signed one), and it reads the
// decrypted bytes into the same reused buffer (`tls.connect` takes `onread` too).
// Usage: node download.ts PORT SECONDS CONNECTIONS BODY [tls]; prints bench/bulk.ts's JSON line.
import * as Net from "node:net"
import * as Tls from "node:tls"
import { main, negotiated, type Run } from "./bulk.ts"

const BUFFER = Buffer.allocUnsafe(1 << 20)
const REQUEST = Buffer.from("g")
const TLS = process.argv[6] === "tls"
  ? Tls.createSecureContext({ ecdhCurve: process.env.BENCH_TLS_GROUPS ?? "P-256" })
  : undefined

const download = (run: Run) =>
  new Promise<void>((resolve) => {
    let received = 0
    const finish = () => {
      socket.destroy()
      resolve()
    }
    const ask = () => (run.over() ? finish() : socket.write(REQUEST))
    const options = {
      port: run.port,
      host: "127.0.0.1",
      onread: {
        buffer: BUFFER,
        callback: (n: number) => {
          received += n
          if (received >= run.size) {
            received -= run.size
            run.bodies++
            ask()
          }
          return true
        }
      }
    }
    const socket = TLS === undefined
      ? Net.connect(options)
      : Tls.connect({ ...options, secureContext: TLS, rejectUnauthorized: false }, () => {
        run.tls = negotiated(socket as Tls.TLSSocket)
      })
    socket.on(TLS === undefined ? "connect" : "secureConnect", ask)
    // Closed by the other side before the deadline: the balancer or a source failed.
    const failed = () => {
      run.errors++
      finish()
    }
    socket.on("error", failed)
    socket.on("end", failed)
  })

await main(download)
