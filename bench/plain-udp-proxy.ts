// The UDP reference: a plain Node UDP proxy, a session (one connected upstream socket) per client address:port,
// new sessions roundrobin over the servers; replies leave from the listen socket. No idle timeout (a benchmark
// needs none), and a datagram that arrives while its session's socket connects is not held (the benchmark's load
// has one request in flight per client). Usage: node plain-udp-proxy.ts LISTEN_PORT HOST:PORT...
import * as Dgram from "node:dgram"

const [listenPort, ...servers] = process.argv.slice(2)
const targets = servers.map((s) => {
  const i = s.lastIndexOf(":")
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) }
})
let next = 0
const sessions = new Map<string, Dgram.Socket>()
const listener = Dgram.createSocket("udp4")

listener.on("message", (datagram, from) => {
  const key = `${from.address}:${from.port}`
  let upstream = sessions.get(key)
  if (upstream === undefined) {
    const target = targets[next++ % targets.length]!
    const socket = (upstream = Dgram.createSocket("udp4"))
    sessions.set(key, socket)
    socket.on("message", (reply) => listener.send(reply, from.port, from.address))
    socket.on("error", () => {})
    socket.connect(target.port, target.host, () => socket.send(datagram))
    return
  }
  upstream.send(datagram)
})
listener.bind(Number(listenPort ?? 0), "127.0.0.1")
process.on("SIGTERM", () => process.exit(0))
process.on("SIGINT", () => process.exit(0))
