// The load of the "bulk download" scenario: opens CONNECTIONS connections to PORT and on each downloads BODY-byte
// bodies from bench/source.ts, one after another, for SECONDS. Each body is asked for with one byte, and the next only
// once the whole body has arrived: one body in flight per connection. Every connection reads into one reused 1 MiB
// buffer (`onread`), so the reader allocates nothing per read and is not what limits the balancer (wrk reads 8 KiB
// per system call, and saturated its core behind the faster balancers). A body under way at the deadline is finished.
// Usage: node download.ts PORT SECONDS CONNECTIONS BODY; prints bench/bulk.ts's JSON line.
import * as Net from "node:net"
import { main, type Run } from "./bulk.ts"

const BUFFER = Buffer.allocUnsafe(1 << 20)
const REQUEST = Buffer.from("g")

const download = (run: Run) =>
  new Promise<void>((resolve) => {
    let received = 0
    const finish = () => {
      socket.destroy()
      resolve()
    }
    const ask = () => (run.over() ? finish() : socket.write(REQUEST))
    const socket = Net.connect({
      port: run.port,
      host: "127.0.0.1",
      onread: {
        buffer: BUFFER,
        callback: (n) => {
          received += n
          if (received >= run.size) {
            received -= run.size
            run.bodies++
            ask()
          }
          return true
        }
      }
    })
    socket.on("connect", ask)
    // Closed by the other side before the deadline: the balancer or a source failed.
    const failed = () => {
      run.errors++
      finish()
    }
    socket.on("error", failed)
    socket.on("end", failed)
  })

await main(download)
