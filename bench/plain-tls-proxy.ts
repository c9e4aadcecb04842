// The floor for TLS termination on Node, in the TLS scenarios: bench/plain-proxy.ts behind a `tls.Server` (the
// certificate and key given), roundrobin over the plain servers given as arguments, bytes on pipe().
// Usage: node plain-tls-proxy.ts CERT KEY LISTEN_PORT HOST:PORT...
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Tls from "node:tls"

const [cert, key, listenPort, ...servers] = process.argv.slice(2)
const targets = servers.map((s) => {
  const i = s.lastIndexOf(":")
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)), allowHalfOpen: true }
})
let next = 0

const options = { cert: Fs.readFileSync(cert!), key: Fs.readFileSync(key!), allowHalfOpen: true }
// (the TLS socket is not read from until it is piped: it holds what the client sends until the server is connected)
const server = Tls.createServer(options, (client) => {
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
  process.stderr.write(`plain-tls: listening on 127.0.0.1:${(server.address() as Net.AddressInfo).port}\n`)
})
process.on("SIGTERM", () => process.exit(0))
process.on("SIGINT", () => process.exit(0))
