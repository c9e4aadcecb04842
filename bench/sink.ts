// An upload backend for the "bulk upload" scenario: reads and discards everything a connection sends, and answers
// one byte for every BODY bytes received on it (the acknowledgement of one upload). Usage: node sink.ts PORT BODY
// [MODE]; MODE "onread" (the default) reads every connection into one reused buffer, "data" uses 'data' events.
import * as Net from "node:net"

const port = Number(process.argv[2])
const body = Number(process.argv[3])
const mode = process.argv[4] ?? "onread"
const ACK = Buffer.from("k")
const BUFFER = Buffer.allocUnsafe(1 << 20)

// Counts a connection's bytes and acknowledges each complete body.
const counter = (socket: Net.Socket) => {
  let pending = 0
  return (n: number) => {
    pending += n
    while (pending >= body) {
      pending -= body
      socket.write(ACK)
    }
  }
}

const server = Net.createServer({ pauseOnConnect: mode === "onread" }, (accepted) => {
  if (mode === "data") {
    const count = counter(accepted)
    accepted.on("data", (chunk: Buffer) => count(chunk.length))
    accepted.on("error", () => accepted.destroy())
    return
  }
  // net.Server has no onread option: the accepted (paused) handle is moved into a socket that has one.
  const held = accepted as unknown as { _handle: Net.SocketConstructorOpts["handle"] | null }
  const handle = held._handle!
  held._handle = null
  const socket = new Net.Socket({
    handle,
    readable: true,
    writable: true,
    onread: {
      buffer: BUFFER,
      callback: (n) => {
        count(n)
        return true
      }
    }
  })
  const count = counter(socket)
  socket.on("error", () => socket.destroy())
  socket.on("end", () => socket.destroy())
})
server.listen(port, "127.0.0.1")
process.on("SIGTERM", () => process.exit(0))
process.on("SIGINT", () => process.exit(0))
