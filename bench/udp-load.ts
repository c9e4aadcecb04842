// The load of the "udp" scenario: SESSIONS client sockets (each one session on the balancer) send SIZE-byte requests
// to PORT for SECONDS, one in flight per socket: each reply (the echo server's copy of the request) sends the next.
// A reply that is not back within a second counts as lost (an error), and the request goes out again.
// Usage: node udp-load.ts PORT SECONDS SESSIONS SIZE; prints bench/bulk.ts's JSON line ("bodies" are requests).
import * as Dgram from "node:dgram"
import { main, type Run } from "./bulk.ts"

const PAYLOAD = Buffer.alloc(Number(process.argv[5] ?? 100), "q")

const session = (run: Run) =>
  new Promise<void>((resolve) => {
    const socket = Dgram.createSocket("udp4")
    let answered = true
    const watchdog = setInterval(() => {
      if (!answered) {
        run.errors++
        send()
      }
      answered = false
    }, 1000)
    const send = () => {
      if (run.over()) {
        clearInterval(watchdog)
        socket.close()
        resolve()
        return
      }
      socket.send(PAYLOAD)
    }
    socket.on("message", () => {
      answered = true
      run.bodies++
      send()
    })
    socket.connect(run.port, "127.0.0.1", send)
  })

await main(session)
