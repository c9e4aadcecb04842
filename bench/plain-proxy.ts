// The reference every nib figure is compared with: a plain Node TCP proxy, roundrobin over the servers given as
// arguments, bytes on pipe(), half-close honoured. Usage: node plain-proxy.ts LISTEN_PORT HOST:PORT...
import * as Net from "node:net"

const [listenPort, ...servers] = process.argv.slice(2)
const targets = servers.map((s) => {
  const i = s.lastIndexOf(":")
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)), allowHalfOpen: true }
})
let next = 0

const server = Net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
  const upstream = Net.connect(targets[next++ % targets.length]!)
  const close = () => {
    client.destroy()
    upstream.destroy()
  }
  client.on("error", close)
  upstream.on("error", close)
  upstream.once("connect", () => {
    client.pipe(upstream)
    upstream.pipe(client)
  })
})
server.listen(Number(listenPort ?? 0), "127.0.0.1", () => {
  process.stderr.write(`plain: listening on 127.0.0.1:${(server.address() as Net.AddressInfo).port}\n`)
})
process.on("SIGTERM", () => process.exit(0))
process.on("SIGINT", () => process.exit(0))
