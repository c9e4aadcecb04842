// A download backend for the "bulk download" scenario: for every byte a connection sends (a request for one body), it
// writes one BODY-byte body, all from the same preallocated buffer (Node writes it from there as the socket drains,
// without copying it). Usage: node source.ts PORT BODY
import * as Net from "node:net"

const port = Number(process.argv[2])
const body = Buffer.alloc(Number(process.argv[3]), "d")

const server = Net.createServer((socket) => {
  socket.on("data", (requests: Buffer) => {
    for (let i = 0; i < requests.length; i++) socket.write(body)
  })
  socket.on("error", () => socket.destroy())
  socket.on("end", () => socket.destroy())
})
server.listen(port, "127.0.0.1")
process.on("SIGTERM", () => process.exit(0))
process.on("SIGINT", () => process.exit(0))
