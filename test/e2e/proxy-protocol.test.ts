/**
 * The PROXY protocol through the real process, with real peers: nginx behind nib's `--send-proxy` (`listen ...
 * proxy_protocol`, answering and logging `$proxy_protocol_addr`), curl as the client from a chosen loopback address,
 * and `server N proxy v1|v2|none` on the control port.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Stream from "node:stream"
import * as Tls from "node:tls"
import { acceptQueue, listenFreePort } from "../utils/Backend.ts"
import { certificate, openssl } from "../utils/Certs.ts"
import * as Fd from "../utils/Fd.ts"
import * as HttpServer from "../utils/HttpServer.ts"
import * as Nginx from "../utils/Nginx.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"

const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

if (Nginx.path === undefined) console.warn("test/e2e/proxy-protocol.test.ts: nginx not found: its tests are SKIPPED")

/** `curl -s --interface FROM http://127.0.0.1:PORT/`: the body, or "" when the request failed. */
const curl = (port: number, from: string, extra: ReadonlyArray<string> = []) =>
  Effect.promise(() =>
    new Promise<string>((resolve) => {
      ChildProcess.execFile(
        "curl",
        ["-s", "--max-time", "5", "--interface", from, ...extra, `http://127.0.0.1:${port}/`],
        { timeout: 10_000 },
        (_error, stdout) => resolve(stdout)
      )
    })
  )

/** nginx taking the PROXY protocol on its listener: it answers with the client address the header gave. */
const NGINX = [
  "  log_format pp '$proxy_protocol_addr $remote_addr';",
  "  access_log DIR/access.log pp;",
  "  server {",
  "    listen 127.0.0.1:PORT proxy_protocol;",
  "    location / { return 200 \"$proxy_protocol_addr\\n\"; }",
  "  }"
].join("\n")

describe.skipIf(Nginx.path === undefined)("--send-proxy: nginx behind nib sees the real client", () => {
  for (const version of ["v1", "v2"] as const) {
    it.live(`--send-proxy ${version}: nginx's $proxy_protocol_addr is the client's address`, () =>
      Effect.gen(function*() {
        const nginx = yield* Nginx.start(NGINX)
        const lb = yield* Nib.start(["--send-proxy", version, "127.0.0.1:0", `127.0.0.1:${nginx.port}`])
        assert.strictEqual(yield* curl(lb.port, "127.0.0.7"), "127.0.0.7\n")
        assert.strictEqual(yield* curl(lb.port, "127.0.0.8"), "127.0.0.8\n")
        // nginx logged the header's address; the connection itself came from nib (127.0.0.1).
        assert.deepStrictEqual(nginx.accessLog(), ["127.0.0.7 127.0.0.1", "127.0.0.8 127.0.0.1"])
      }))
  }

  it.live("server N proxy: switched per server on the control port; without a header nginx refuses", () =>
    Effect.gen(function*() {
      const nginx = yield* Nginx.start(NGINX)
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", `127.0.0.1:${nginx.port}`])
      const target = Nibctl.targetOf(lb)
      // No header: nginx's proxy_protocol listener closes the connection (a broken header), curl gets nothing.
      assert.strictEqual(yield* curl(lb.port, "127.0.0.9"), "")
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 proxy v2"), "")
      assert.strictEqual(yield* curl(lb.port, "127.0.0.9"), "127.0.0.9\n")
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 proxy v1"), "")
      assert.strictEqual(yield* curl(lb.port, "127.0.0.10"), "127.0.0.10\n")
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 proxy none"), "")
      assert.strictEqual(yield* curl(lb.port, "127.0.0.11"), "")
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 proxy v3"), "server 0: proxy 'v3' is not v1, v2 or none\n")
    }))
})

describe("--send-proxy: bad input", () => {
  it.live("--send-proxy or --accept-proxy with -U is a one-line usage error", () =>
    Effect.gen(function*() {
      const result = yield* Nib.run(["-f", "-U", "--accept-proxy", "127.0.0.1:0", "127.0.0.1:53"])
      assert.strictEqual(result.code, 1)
      assert.match(result.stderr, /^nib: --accept-proxy is for TCP: not with -U\n/)
    }))

  it.live("--send-proxy v3 is a one-line usage error", () =>
    Effect.gen(function*() {
      const result = yield* Nib.run(["-f", "--send-proxy", "v3", "127.0.0.1:0", "127.0.0.1:80"])
      assert.strictEqual(result.code, 1)
      assert.match(result.stderr, /^nib: --send-proxy \(.*\): 'v3' is not one of v1, v2\n/)
    }))
})

const haproxyPath = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].find((candidate) => Fs.existsSync(candidate))
if (haproxyPath === undefined) console.warn("test/e2e/proxy-protocol.test.ts: haproxy not found: its test is SKIPPED")

/**
 * haproxy in TCP mode on a free port, forwarding to 127.0.0.1:`target` with `send-proxy-v2` (and `serverOptions` on
 * its server line); stopped by PID.
 */
const haproxy = (target: number, serverOptions = "") =>
  Effect.gen(function*() {
    const dir = yield* Nib.tempDir
    const port = yield* Effect.promise(listenFreePort)
    const config = Path.join(dir, "haproxy.cfg")
    Fs.writeFileSync(
      config,
      [
        "global",
        "  maxconn 100",
        "defaults",
        "  mode tcp",
        "  timeout connect 5s",
        "  timeout client 10s",
        "  timeout server 10s",
        "frontend in",
        `  bind 127.0.0.1:${port}`,
        "  default_backend out",
        "backend out",
        `  server nib 127.0.0.1:${target} send-proxy-v2${serverOptions}`,
        ""
      ].join("\n")
    )
    const proc = yield* Effect.acquireRelease(
      Effect.sync(() => ChildProcess.spawn(haproxyPath!, ["-db", "-f", config], { stdio: "ignore" })),
      (child) => Effect.promise(() => Nib.stopChild(child))
    )
    for (let i = 0; i < 500 && acceptQueue(port) === undefined; i++) {
      if (proc.exitCode !== null) break
      yield* Effect.sleep("20 millis")
    }
    assert.isDefined(acceptQueue(port), "haproxy never listened")
    return port
  })

/** A raw client: sends `bytes`, then reads until the connection ends (at most 8 s); what it got and how it ended. */
const raw = (port: number, bytes: string | Buffer) =>
  Effect.promise(() =>
    new Promise<{ readonly received: string; readonly ended: boolean }>((resolve) => {
      const socket = Net.connect({ port, host: "127.0.0.1" })
      let received = ""
      const timer = setTimeout(() => {
        socket.destroy()
        resolve({ received, ended: false })
      }, 8_000)
      socket.on("connect", () => {
        if (bytes.length > 0) socket.write(bytes)
      })
      socket.on("data", (chunk) => (received += chunk.toString("latin1")))
      socket.on("error", () => {})
      socket.on("close", () => {
        clearTimeout(timer)
        resolve({ received, ended: true })
      })
    })
  )

describe.skipIf(Nginx.path === undefined)("--accept-proxy: nib behind another balancer keeps the real client", () => {
  it.live.skipIf(haproxyPath === undefined)(
    "curl -> haproxy (send-proxy-v2) -> nib --accept-proxy --send-proxy v1 -> nginx: nginx sees curl's address",
    () =>
      Effect.gen(function*() {
        const nginx = yield* Nginx.start(NGINX)
        const lb = yield* Nib.start([
          ...AS_USER,
          "-C",
          "127.0.0.1:0",
          "--accept-proxy",
          "--send-proxy",
          "v1",
          "127.0.0.1:0",
          `127.0.0.1:${nginx.port}`
        ])
        const front = yield* haproxy(lb.port)
        assert.strictEqual(yield* curl(front, "127.0.0.12"), "127.0.0.12\n")
        assert.strictEqual(yield* curl(front, "127.0.0.13"), "127.0.0.13\n")
        // nib's sticky table knows the real clients, not haproxy's address.
        const recent = yield* Nibctl.ask(Nibctl.targetOf(lb), "recent")
        assert.match(recent, /^127\.0\.0\.12 connects 1 /m)
        assert.match(recent, /^127\.0\.0\.13 connects 1 /m)
        assert.notMatch(recent, /^127\.0\.0\.1 /m)
      })
  )

  it.live("curl --haproxy-protocol (v1, the request in the same packet); a header-less or malformed client is closed", () =>
    Effect.gen(function*() {
      const nginx = yield* Nginx.start(NGINX)
      const lb = yield* Nib.start(["--accept-proxy", "--send-proxy", "v2", "127.0.0.1:0", `127.0.0.1:${nginx.port}`])
      assert.strictEqual(yield* curl(lb.port, "127.0.0.14", ["--haproxy-protocol"]), "127.0.0.14\n")
      // A v1 header naming another client: that client is the one nginx sees.
      const forged = yield* raw(
        lb.port,
        "PROXY TCP4 10.9.8.7 127.0.0.1 5555 80\r\nGET / HTTP/1.0\r\nHost: x\r\n\r\n"
      )
      assert.match(forged.received, /\r\n\r\n10\.9\.8\.7\n$/)
      // No header: a plain HTTP request is not a PROXY header, and is closed unanswered.
      assert.deepStrictEqual(yield* raw(lb.port, "GET / HTTP/1.0\r\n\r\n"), { received: "", ended: true })
      // A malformed v1 header.
      assert.deepStrictEqual(yield* raw(lb.port, "PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n"), { received: "", ended: true })
      yield* Nib.logged(lb, "--accept-proxy: closed")
    }))

  it.live("100 clients that close before their header is whole (no byte, part of one) are closed at once", () =>
    Effect.gen(function*() {
      const lb = yield* Nib.start(["--accept-proxy", "127.0.0.1:0", "127.0.0.1:9"])
      const idle = yield* Effect.promise(() => Fd.stable(lb.pid))
      const sockets = Array.from({ length: 100 }, (_, i) => {
        const socket = Net.connect({ port: lb.port, host: "127.0.0.1" })
        socket.on("error", () => {})
        socket.once("connect", () => socket.end(i % 2 === 0 ? "" : "PROXY TCP4 10.9.8.7 127.0."))
        return socket
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => sockets.forEach((socket) => socket.destroy())))
      yield* Effect.promise(() =>
        Promise.all(sockets.map((socket) =>
          new Promise<void>((resolve) => {
            socket.once("finish", resolve)
            socket.once("close", resolve)
          })
        ))
      )
      // Well within the header's 5 s, every one of their sockets is closed.
      const after = yield* Effect.promise(() => Fd.settle(lb.pid, idle, 1_000))
      assert.isAtMost(after, idle, `descriptors a second after the last FIN (${idle} before)`)
      assert.notInclude(lb.stderr(), "no PROXY header within")
    }))

  it.live("a client that sends no header is closed after 5 s", () =>
    Effect.gen(function*() {
      const lb = yield* Nib.start(["--accept-proxy", "127.0.0.1:0", "127.0.0.1:9"])
      assert.deepStrictEqual(yield* raw(lb.port, ""), { received: "", ended: true })
      yield* Nib.logged(lb, "no PROXY header within 5 s")
    }), { timeout: 20_000 })
})

/** A plain HTTP server answering with the X-Forwarded-* headers it got. */
const forwarded = HttpServer.serve((request, response) =>
  response.end(`${request.headers["x-forwarded-proto"]} ${request.headers["x-forwarded-for"]}\n`)
)

/**
 * An HTTPS request over a connection that starts with `header`: the header and the TLS ClientHello leave in one
 * write (one segment on loopback), as a balancer in front sends them. The response's body, or "" on failure.
 */
const httpsAfterHeader = (port: number, header: string) =>
  Effect.promise(() =>
    new Promise<string>((resolve) => {
      const socket = Net.connect({ port, host: "127.0.0.1" })
      let first = true
      // TLS writes through this stream; the first write (the ClientHello) goes out with the header in front of it.
      const carrier = new Stream.Duplex({
        write(chunk: Buffer, _encoding, done) {
          socket.write(first ? Buffer.concat([Buffer.from(header, "latin1"), chunk]) : chunk, done)
          first = false
        },
        read() {}
      })
      socket.on("data", (chunk) => carrier.push(chunk))
      socket.on("end", () => carrier.push(null))
      socket.on("error", () => carrier.destroy())
      let body = ""
      const timer = setTimeout(() => finish(""), 8_000)
      const finish = (result: string) => {
        clearTimeout(timer)
        socket.destroy()
        resolve(result)
      }
      socket.on("connect", () => {
        const secure = Tls.connect({ socket: carrier, rejectUnauthorized: false })
        secure.on("error", () => finish(""))
        secure.on("secureConnect", () => secure.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        secure.on("data", (chunk: Buffer) => (body += chunk.toString("latin1")))
        secure.on("end", () => finish(body.slice(body.indexOf("\r\n\r\n") + 4)))
      })
    })
  )

describe("--accept-proxy with -H and -E", () => {
  it.live("-H: the request in the same write as the header gets the header's client in X-Forwarded-For", () =>
    Effect.gen(function*() {
      const server = yield* forwarded
      const lb = yield* Nib.start(["--accept-proxy", "-H", "127.0.0.1:0", `127.0.0.1:${server.port}`])
      const result = yield* raw(
        lb.port,
        "PROXY TCP4 10.9.8.7 127.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
      )
      assert.match(result.received, /\r\n\r\nhttp 10\.9\.8\.7\n$/)
    }))

  it.live.skipIf(openssl === undefined)(
    "-E: the PROXY header comes in the clear, then the TLS handshake (in the same segment or not)",
    () =>
      Effect.gen(function*() {
        const dir = yield* Nib.tempDir
        const { both: cert } = yield* certificate(dir)
        const server = yield* forwarded
        const lb = yield* Nib.start([
          "--accept-proxy",
          "-E",
          cert,
          "-H",
          "127.0.0.1:0",
          `127.0.0.1:${server.port}`
        ])
        assert.strictEqual(
          yield* httpsAfterHeader(lb.port, "PROXY TCP4 10.1.2.3 127.0.0.1 4444 443\r\n"),
          "https 10.1.2.3\n"
        )
        // A header and nothing else, then TLS in a later segment: curl sends them apart.
        const curled = yield* Effect.promise(() =>
          new Promise<string>((resolve) => {
            ChildProcess.execFile(
              "curl",
              [
                "-sk",
                "--max-time",
                "5",
                "--haproxy-protocol",
                "--interface",
                "127.0.0.16",
                `https://127.0.0.1:${lb.port}/`
              ],
              { timeout: 10_000 },
              (_error, stdout) => resolve(stdout)
            )
          })
        )
        assert.strictEqual(curled, "https 127.0.0.16\n")
        // TLS without a header is not a PROXY header: closed unanswered.
        assert.strictEqual(yield* httpsAfterHeader(lb.port, ""), "")
      })
  )

  it.live.skipIf(openssl === undefined || haproxyPath === undefined)(
    "curl -> haproxy (send-proxy-v2, ssl to the server) -> nib --accept-proxy -E -H: the server sees curl's address",
    () =>
      Effect.gen(function*() {
        const dir = yield* Nib.tempDir
        const { both: cert } = yield* certificate(dir)
        const server = yield* forwarded
        const lb = yield* Nib.start(["--accept-proxy", "-E", cert, "-H", "127.0.0.1:0", `127.0.0.1:${server.port}`])
        const front = yield* haproxy(lb.port, " ssl verify none")
        assert.strictEqual(yield* curl(front, "127.0.0.17"), "https 127.0.0.17\n")
      })
  )
})
