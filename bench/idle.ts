// Holds N idle keep-alive connections to a balancer, then checks each is still alive by sending one HTTP request on
// it. Runs as its own process (with a raised fd limit) so that the benchmark's own process stays small.
// Usage: node idle.ts PORT COUNT. Prints JSON lines: {"opened":N} once all are open, then waits for a line on stdin,
// then {"alive":N,"dead":M} and exits.
import * as Net from "node:net"
import * as Readline from "node:readline"

const port = Number(process.argv[2])
const count = Number(process.argv[3])
const REQUEST = "GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"
const sockets: Array<Net.Socket> = []
const dead = new Set<Net.Socket>()

const open = (): Promise<void> =>
  new Promise((resolve) => {
    const socket = Net.connect({ port, host: "127.0.0.1" }, () => resolve())
    socket.on("error", () => {
      dead.add(socket)
      resolve()
    })
    socket.on("close", () => dead.add(socket))
    sockets.push(socket)
  })

const check = (socket: Net.Socket): Promise<boolean> =>
  new Promise((resolve) => {
    if (dead.has(socket) || socket.destroyed) return resolve(false)
    const timer = setTimeout(() => resolve(false), 10_000)
    let reply = ""
    socket.on("data", (chunk) => {
      reply += chunk.toString("latin1")
      if (reply.includes("\r\n\r\n")) {
        clearTimeout(timer)
        resolve(reply.startsWith("HTTP/1.1 200"))
      }
    })
    socket.write(REQUEST)
  })

const main = async () => {
  for (let i = 0; i < count; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, count - i) }, open))
  }
  process.stdout.write(JSON.stringify({ opened: sockets.length - dead.size }) + "\n")
  const lines = Readline.createInterface({ input: process.stdin })
  await new Promise((resolve) => lines.once("line", resolve))
  let alive = 0
  for (let i = 0; i < sockets.length; i += 500) {
    const results = await Promise.all(sockets.slice(i, i + 500).map(check))
    alive += results.filter(Boolean).length
  }
  process.stdout.write(JSON.stringify({ alive, dead: sockets.length - alive }) + "\n")
  sockets.forEach((s) => s.destroy())
  process.exit(0)
}

void main()
