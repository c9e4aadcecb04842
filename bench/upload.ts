// The load of the "bulk upload" scenario: opens CONNECTIONS connections to PORT and on each uploads BODY-byte bodies
// one after another for SECONDS. Every body is one write of the same preallocated buffer (Node writes it from there
// as the socket drains, without copying it), and the next body goes out only after the sink's one-byte
// acknowledgement of this one: one body in flight per connection, so back-pressure is honoured without extra
// buffering. A body under way at the deadline is finished, so every byte counted was received by a sink.
// Usage: node upload.ts PORT SECONDS CONNECTIONS BODY; prints bench/bulk.ts's JSON line.
import * as Net from "node:net"
import { main, type Run } from "./bulk.ts"

// Made before the run starts (bulk.ts reads the same argument).
const BODY = Buffer.alloc(Number(process.argv[5] ?? 64 * 1024 * 1024), "u")

const upload = (run: Run) =>
  new Promise<void>((resolve) => {
    const socket = Net.connect({ port: run.port, host: "127.0.0.1" })
    const finish = () => {
      socket.destroy()
      resolve()
    }
    const send = () => (run.over() ? finish() : socket.write(BODY))
    socket.on("connect", send)
    socket.on("data", (ack: Buffer) => {
      run.bodies += ack.length
      send()
    })
    // Closed by the other side before the deadline: the balancer or a sink failed.
    const failed = () => {
      run.errors++
      finish()
    }
    socket.on("error", failed)
    socket.on("end", failed)
  })

await main(upload)
