/**
 * TLS termination (`-E certfile`, `-K keyfile`) through the real process, with a certificate made by `openssl` in the
 * test and real clients (`curl`, `openssl s_client`): the server behind nib speaks plain HTTP, `-H` says `https`, and
 * a certificate or key that cannot be used is a one-line error naming its file.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { authority, certificate, openssl } from "../utils/Certs.ts"
import * as Client from "../utils/Client.ts"
import * as Fd from "../utils/Fd.ts"
import * as HttpServer from "../utils/HttpServer.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"

/** A plain HTTP server answering with the X-Forwarded-* headers it got; closed with the scope. */
const BIG = Buffer.alloc(4 << 20, "0123456789abcdef")
const backend = HttpServer.serve((request, response) => {
  if (request.url === "/big") return void response.end(BIG)
  response.end(`${request.headers["x-forwarded-proto"]} ${request.headers["x-forwarded-for"]}\n`)
})

const run = (command: string, args: ReadonlyArray<string>, input?: string) =>
  Effect.promise(() =>
    new Promise<{ readonly stdout: string; readonly code: number | null }>((resolve) => {
      const child = ChildProcess.execFile(command, [...args], { timeout: 10_000 }, (error, stdout) =>
        resolve({ stdout, code: error === null ? 0 : typeof error.code === "number" ? error.code : null }))
      if (input !== undefined) {
        child.stdin?.end(input)
      }
    })
  )

if (openssl === undefined) console.warn("test/e2e/tls.test.ts: openssl not found: the TLS tests are SKIPPED")

describe.skipIf(openssl === undefined)("TLS termination (-E, -K)", () => {
  it.live("curl over https through nib -E -K -H: the plain HTTP server sees X-Forwarded-Proto https", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const { cert, key } = yield* certificate(dir)
      const server = yield* backend
      const lb = yield* Nib.start(["-E", cert, "-K", key, "-H", "127.0.0.1:0", `127.0.0.1:${server.port}`])
      const url = `https://127.0.0.1:${lb.port}/`
      const result = yield* run("curl", ["-s", "--max-time", "5", "--cacert", cert, "--interface", "127.0.0.41", url])
      assert.deepStrictEqual(result, { stdout: "https 127.0.0.41\n", code: 0 })
      // 4 MiB through the TLS relay, whole.
      const big = yield* run("sh", ["-c", `curl -s --max-time 10 --cacert ${cert} ${url}big | sha256sum`])
      const expected = Crypto.createHash("sha256").update(BIG).digest("hex")
      assert.strictEqual(big.stdout.split(" ")[0], expected)
      // Plain HTTP to the TLS port is not served.
      const plain = yield* run("curl", ["-s", "--max-time", "5", `http://127.0.0.1:${lb.port}/`])
      assert.notStrictEqual(plain.code, 0)
    }))

  it.live("openssl s_client, and a certificate file that holds the key too (no -K)", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const { both } = yield* certificate(dir)
      const server = yield* backend
      const lb = yield* Nib.start(["-E", both, "127.0.0.1:0", `127.0.0.1:${server.port}`])
      const result = yield* run(
        openssl!,
        ["s_client", "-connect", `127.0.0.1:${lb.port}`, "-quiet", "-verify_return_error", "-CAfile", both],
        "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"
      )
      assert.match(result.stdout, /^HTTP\/1\.1 200 OK\r\n/)
      assert.match(result.stdout, /\r\n\r\nundefined undefined\n$/)
    }))

  it.live("SIGHUP reads the certificate again: new clients get the new one; a broken file is logged and the old one kept", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const first = yield* certificate(Path.join(dir))
      const server = yield* backend
      const lb = yield* Nib.start(["-E", first.both, "127.0.0.1:0", `127.0.0.1:${server.port}`])
      /** The subject's CN of the certificate nib presents now. */
      const subject = Effect.map(
        run(openssl!, ["s_client", "-connect", `127.0.0.1:${lb.port}`, "-servername", "localhost"], ""),
        (result) => /subject=\/?CN ?= ?([\w.-]+)/.exec(result.stdout)?.[1]
      )
      assert.strictEqual(yield* subject, "localhost")
      // A renewed certificate (another CN) in the same file.
      const renewed = Path.join(dir, "renewed")
      Fs.mkdirSync(renewed)
      const next = yield* certificate(renewed, "renewed.test")
      Fs.copyFileSync(next.both, first.both)
      process.kill(lb.pid, "SIGHUP")
      let seen: string | undefined
      for (let i = 0; i < 50 && seen !== "renewed.test"; i++) seen = yield* subject
      assert.strictEqual(seen, "renewed.test")
      // A broken file at SIGHUP: logged, and the renewed certificate stays in use.
      Fs.writeFileSync(first.both, "not a certificate\n")
      process.kill(lb.pid, "SIGHUP")
      let logged = false
      for (let i = 0; i < 100 && !logged; i++) {
        logged = lb.stderr().includes("the certificate in use is kept")
        if (!logged) yield* Effect.sleep("50 millis")
      }
      assert.isTrue(logged, lb.stderr())
      assert.strictEqual(yield* subject, "renewed.test")
    }))

  it.live("-G/-A with -R: a client certificate from the CA is accepted, none or another one refused", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const server = yield* certificate(dir)
      const file = (name: string) => Path.join(dir, name)
      // A CA, a client certificate it signs, and a rogue self-signed one.
      const ca = yield* authority(dir)
      const client = ca.sign("client")
      const rogueDir = file("rogue")
      Fs.mkdirSync(rogueDir)
      const rogue = yield* certificate(rogueDir, "rogue")
      const caDir = file("cas")
      Fs.mkdirSync(caDir)
      Fs.copyFileSync(ca.ca, Path.join(caDir, "ca.pem"))
      const backendServer = yield* backend
      for (const trusted of [["-G", ca.ca], ["-A", caDir]]) {
        const lb = yield* Nib.start([
          "-E",
          server.cert,
          "-K",
          server.key,
          ...trusted,
          "-R",
          "127.0.0.1:0",
          `127.0.0.1:${backendServer.port}`
        ])
        const url = `https://127.0.0.1:${lb.port}/`
        const curl = (...extra: ReadonlyArray<string>) =>
          run("curl", ["-s", "--max-time", "5", "--cacert", server.cert, ...extra, url])
        const accepted = yield* curl("--cert", client.cert, "--key", client.key)
        assert.deepStrictEqual(accepted, { stdout: "undefined undefined\n", code: 0 }, trusted.join(" "))
        assert.notStrictEqual((yield* curl()).code, 0, `${trusted.join(" ")}: no client certificate`)
        assert.notStrictEqual(
          (yield* curl("--cert", rogue.cert, "--key", rogue.key)).code,
          0,
          `${trusted.join(" ")}: rogue`
        )
      }
      const noCa = yield* Nib.run(["-f", "-E", server.both, "-R", "127.0.0.1:0", "127.0.0.1:80"])
      assert.strictEqual(noCa.code, 1)
      assert.match(noCa.stderr, /^nib: -R needs -G or -A/)
    }))

  it.live("a certificate or key that cannot be used is a one-line error naming the file, exit 1", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const { cert } = yield* certificate(dir)
      const missing = yield* Nib.run(["-f", "-E", Path.join(dir, "nope.pem"), "127.0.0.1:0", "127.0.0.1:80"])
      assert.strictEqual(missing.code, 1)
      assert.match(missing.stderr, /^nib: -E .*nope\.pem: can't read it: no such file or directory\n$/)
      const noKey = yield* Nib.run(["-f", "-E", cert, "127.0.0.1:0", "127.0.0.1:80"])
      assert.strictEqual(noKey.code, 1)
      assert.match(noKey.stderr, /^nib: -E .*cert\.pem: not a usable certificate and key: /)
      const keyOnly = yield* Nib.run(["-f", "-K", cert, "127.0.0.1:0", "127.0.0.1:80"])
      assert.strictEqual(keyOnly.code, 1)
      assert.match(keyOnly.stderr, /^nib: -K needs -E/)
    }))
})

const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

/** nib with `args` and a control port (as root, `-u root`: nib opens none for root otherwise). */
const startControlled = (args: ReadonlyArray<string>) => Nib.start([...AS_USER, "-C", "127.0.0.1:0", ...args])

/** `openssl s_client` to nib (stdin: `input`, or nothing): its whole output. */
const sClient = (port: number, args: ReadonlyArray<string>, input = "") =>
  Effect.map(run(openssl!, ["s_client", "-connect", `127.0.0.1:${port}`, ...args], input), (result) => result.stdout)

const serialOf = (text: string) => /Serial Number: ([0-9A-F]+)/.exec(text)?.[1]

const subjectOf = (output: string) => /subject=\/?CN ?= ?([\w.-]+)/.exec(output)?.[1]

describe.skipIf(openssl === undefined)("TLS settings: -L, -Z and the ssl_* commands", () => {
  it.live("-L tls1.3 refuses TLS 1.2; ssl_option and ssl_ciphers choose what new clients get; bad ones change nothing", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const { both } = yield* certificate(dir)
      const server = yield* backend
      const floor = yield* Nib.start(["-E", both, "-L", "tls1.3", "-Z", "127.0.0.1:0", `127.0.0.1:${server.port}`])
      assert.match(yield* sClient(floor.port, ["-tls1_3"]), /New, TLSv1\.3, Cipher is/)
      assert.notMatch(yield* sClient(floor.port, ["-tls1_2"]), /New, TLSv1\.2, Cipher is/)

      const lb = yield* startControlled(["-E", both, "127.0.0.1:0", `127.0.0.1:${server.port}`])
      const target = Nibctl.targetOf(lb)
      assert.match(yield* sClient(lb.port, []), /New, TLSv1\.3, Cipher is/)
      assert.strictEqual(yield* Nibctl.ask(target, "ssl_option no_tlsv1.3"), "")
      assert.match(yield* sClient(lb.port, []), /New, TLSv1\.2, Cipher is/)
      assert.strictEqual(yield* Nibctl.ask(target, "ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256"), "")
      assert.match(yield* sClient(lb.port, []), /Cipher is ECDHE-RSA-AES128-GCM-SHA256/)
      assert.notMatch(yield* sClient(lb.port, ["-cipher", "ECDHE-RSA-AES256-GCM-SHA384"]), /Cipher is ECDHE/)
      // Refused, naming what was wrong; the settings in use stay.
      assert.strictEqual(yield* Nibctl.ask(target, "ssl_ciphers NOPE"), "ssl_ciphers 'NOPE': no cipher match\n")
      assert.strictEqual(
        yield* Nibctl.ask(target, "ssl_option no_tlsv1.2"),
        "ssl_option: no TLS version is left (TLS 1.2 and 1.3 are both off)\n"
      )
      assert.match(yield* Nibctl.ask(target, "ssl_option no_tlsv9"), /^ssl_option: 'no_tlsv9' is not one of no_sslv2, /)
      assert.match(yield* sClient(lb.port, []), /Cipher is ECDHE-RSA-AES128-GCM-SHA256/)
      assert.strictEqual(yield* Nibctl.ask(target, "ssl_option"), "no_tlsv1.3\n")
      assert.strictEqual(yield* Nibctl.ask(target, "ssl_ciphers"), "ECDHE-RSA-AES128-GCM-SHA256\n")
      assert.strictEqual(yield* Nibctl.ask(target, "ssl_client_renegotiation_interval"), "3600\n")
      // `write` keeps them (pen's leaves them out).
      const file = Path.join(dir, "written.cfg")
      assert.strictEqual(yield* Nibctl.ask(target, `write ${file}`), "")
      const written = Fs.readFileSync(file, "utf8")
      assert.include(written, "\nssl_ciphers ECDHE-RSA-AES128-GCM-SHA256\nssl_option no_tlsv1.3\n")
    }))

  it.live("ssl_sni_path: each of two names gets its own certificate (curl verifies it), any other the default", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const ca = yield* authority(dir)
      const main = ca.sign("localhost")
      const sni = Path.join(dir, "sni")
      Fs.mkdirSync(sni)
      for (const name of ["a.example", "b.example"]) {
        const { cert, key } = ca.sign(name)
        Fs.copyFileSync(cert, Path.join(sni, `${name}.crt`))
        Fs.copyFileSync(key, Path.join(sni, `${name}.key`))
      }
      const server = yield* backend
      const lb = yield* startControlled([
        "-E",
        main.cert,
        "-K",
        main.key,
        "-H",
        "127.0.0.1:0",
        `127.0.0.1:${server.port}`
      ])
      const target = Nibctl.targetOf(lb)
      const curlAs = (name: string) =>
        run("curl", [
          "-s",
          "--max-time",
          "5",
          "--cacert",
          ca.ca,
          "--resolve",
          `${name}:${lb.port}:127.0.0.1`,
          `https://${name}:${lb.port}/`
        ])
      // Before the command, a.example gets localhost's certificate, which curl refuses for that name.
      assert.notStrictEqual((yield* curlAs("a.example")).code, 0)
      assert.strictEqual(yield* Nibctl.ask(target, `ssl_sni_path ${sni}`), "")
      assert.deepStrictEqual(yield* curlAs("a.example"), { stdout: "https 127.0.0.1\n", code: 0 })
      assert.deepStrictEqual(yield* curlAs("b.example"), { stdout: "https 127.0.0.1\n", code: 0 })
      assert.strictEqual(subjectOf(yield* sClient(lb.port, ["-servername", "b.example"])), "b.example")
      assert.strictEqual(subjectOf(yield* sClient(lb.port, ["-servername", "c.example"])), "localhost")
      // A name that is not a host name never reaches the file system.
      assert.strictEqual(subjectOf(yield* sClient(lb.port, ["-servername", "../sni/a.example"])), "localhost")
      assert.strictEqual(
        yield* Nibctl.ask(target, `ssl_sni_path ${Path.join(dir, "nope")}`),
        `ssl_sni_path ${Path.join(dir, "nope")}: no such file or directory\n`
      )
      assert.deepStrictEqual(yield* curlAs("a.example"), { stdout: "https 127.0.0.1\n", code: 0 })
    }))

  it.live("ssl_ocsp_response and DIR/NAME.ocsp: the OCSP response is stapled for a client that asks", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const ca = yield* authority(dir)
      const main = ca.sign("localhost")
      const response = ca.ocsp("localhost")
      const sni = Path.join(dir, "sni")
      Fs.mkdirSync(sni)
      const other = ca.sign("a.example")
      Fs.copyFileSync(other.cert, Path.join(sni, "a.example.crt"))
      Fs.copyFileSync(other.key, Path.join(sni, "a.example.key"))
      Fs.copyFileSync(ca.ocsp("a.example"), Path.join(sni, "a.example.ocsp"))
      const server = yield* backend
      const lb = yield* startControlled([
        "-E",
        main.cert,
        "-K",
        main.key,
        "127.0.0.1:0",
        `127.0.0.1:${server.port}`
      ])
      const target = Nibctl.targetOf(lb)
      const status = (...args: ReadonlyArray<string>) => sClient(lb.port, ["-status", "-CAfile", ca.ca, ...args])
      assert.include(yield* status(), "OCSP response: no response sent")
      assert.strictEqual(yield* Nibctl.ask(target, `ssl_ocsp_response ${response}`), "")
      const stapled = yield* status()
      assert.include(stapled, "OCSP Response Status: successful")
      assert.include(stapled, "Cert Status: good")
      assert.strictEqual(yield* Nibctl.ask(target, `ssl_sni_path ${sni}`), "")
      const named = yield* status("-servername", "a.example")
      assert.strictEqual(subjectOf(named), "a.example")
      assert.include(named, "Cert Status: good")
      assert.match(named, /Serial Number: [0-9A-F]+/)
      // The response is a.example's, not localhost's.
      assert.notStrictEqual(serialOf(named), serialOf(stapled))
      const tooBig = Path.join(dir, "big.der")
      Fs.writeFileSync(tooBig, Buffer.alloc(10_001))
      assert.strictEqual(
        yield* Nibctl.ask(target, `ssl_ocsp_response ${tooBig}`),
        `ssl_ocsp_response ${tooBig}: 10001 bytes, over 10000\n`
      )
    }))

  it.live("a client renegotiation is served; with ssl_client_renegotiation_interval 0 it closes the connection", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const { both } = yield* certificate(dir)
      const server = yield* backend
      const lb = yield* startControlled(["-E", both, "127.0.0.1:0", `127.0.0.1:${server.port}`])
      const target = Nibctl.targetOf(lb)
      // s_client renegotiates on a line "R" (TLS 1.2: 1.3 has no renegotiation), then sends a request.
      const renegotiate = run("sh", [
        "-c",
        `(sleep 0.5; echo R; sleep 1; printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | ${openssl} s_client -connect 127.0.0.1:${lb.port} -tls1_2 2>&1`
      ])
      const served = (yield* renegotiate).stdout
      assert.include(served, "RENEGOTIATING")
      assert.include(served, "HTTP/1.1 200 OK")
      assert.strictEqual(yield* Nibctl.ask(target, "ssl_client_renegotiation_interval 0"), "")
      const refused = (yield* renegotiate).stdout
      assert.include(refused, "RENEGOTIATING")
      assert.notInclude(refused, "HTTP/1.1 200 OK")
      // Nothing is left open, and nib serves on.
      let servers = ""
      for (let i = 0; i < 100 && !/ conn 0 /.test(servers); i++) {
        servers = yield* Nibctl.ask(target, "servers")
        if (!/ conn 0 /.test(servers)) yield* Effect.sleep("50 millis")
      }
      assert.match(servers, / conn 0 /)
      assert.include(yield* sClient(lb.port, ["-quiet"], "GET / HTTP/1.0\r\n\r\n"), "HTTP/1.1 200 OK")
    }))

  it.live("bytes that are not TLS after the handshake close the connection; nothing is left open", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const { both } = yield* certificate(dir)
      // A server that answers and never closes: only nib can end the connection.
      const held: Array<Net.Socket> = []
      const server = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<Net.Server>((resolve) => {
            const s = Net.createServer((socket) => {
              held.push(socket)
              socket.on("error", () => {})
              socket.once("data", () => socket.write("hello\n"))
            })
            s.listen(0, "127.0.0.1", () => resolve(s))
          })
        ),
        (s) => Effect.sync(() => (held.forEach((socket) => socket.destroy()), s.close()))
      )
      const serverPort = (server.address() as Net.AddressInfo).port
      const lb = yield* startControlled([
        "-E",
        both,
        "127.0.0.1:0",
        `127.0.0.1:${serverPort}`
      ])
      const target = Nibctl.targetOf(lb)
      const ended = yield* Effect.promise(() =>
        new Promise<boolean>((resolve) => {
          const socket = Net.connect({ port: lb.port, host: "127.0.0.1" })
          const secure = Tls.connect({ socket, rejectUnauthorized: false })
          const timer = setTimeout(() => {
            socket.destroy()
            resolve(false)
          }, 8_000)
          secure.on("error", () => {})
          secure.on("secureConnect", () => {
            // Bytes, so that nib has chosen and dialed the server, then garbage under the TLS layer.
            secure.write("hi\n")
            secure.once("data", () => socket.write(Buffer.from("this is not a TLS record\r\n")))
          })
          socket.on("close", () => {
            clearTimeout(timer)
            resolve(true)
          })
        })
      )
      assert.isTrue(ended)
      let servers = ""
      for (let i = 0; i < 100 && !/ conn 0 /.test(servers); i++) {
        servers = yield* Nibctl.ask(target, "servers")
        if (!/ conn 0 /.test(servers)) yield* Effect.sleep("50 millis")
      }
      assert.match(servers, / conn 0 /)
    }))
})

/** Clients of the burst that leave during their handshake. */
const LEAVERS = 300

/**
 * The first record of a real TLS ClientHello: what Node's TLS client sends to a listener that records it and never
 * answers. Its first half is a partial ClientHello.
 */
const clientHello = Effect.promise(() =>
  new Promise<Buffer>((resolve, reject) => {
    const chunks: Array<Buffer> = []
    const timer = setTimeout(() => done(new Error("no ClientHello within 5 s")), 5_000)
    const server = Net.createServer((socket) => {
      socket.on("data", (chunk: Buffer) => {
        chunks.push(chunk)
        const bytes = Buffer.concat(chunks)
        if (bytes.length >= 5 && bytes.length >= 5 + bytes.readUInt16BE(3)) {
          done(undefined, bytes.subarray(0, 5 + bytes.readUInt16BE(3)))
        }
      })
      socket.on("error", () => {})
    })
    let client: Tls.TLSSocket | undefined
    const done = (error: Error | undefined, hello?: Buffer) => {
      clearTimeout(timer)
      client?.destroy()
      server.close()
      if (error === undefined) resolve(hello!)
      else reject(error)
    }
    server.listen(0, "127.0.0.1", () => {
      client = Tls.connect({ port: (server.address() as Net.AddressInfo).port, host: "127.0.0.1" })
      client.on("error", () => {})
    })
  })
)

/**
 * Connections that each send `bytes` (maybe none) and their FIN at once; resolves once every FIN is sent (or the
 * connection failed). They are destroyed when the scope closes.
 */
const leaveAll = (port: number, each: ReadonlyArray<Buffer>) =>
  Effect.gen(function*() {
    const sockets = each.map((bytes) => {
      const socket = Net.connect({ port, host: "127.0.0.1" })
      socket.on("error", () => {})
      socket.once("connect", () => socket.end(bytes))
      // What nib answers a whole ClientHello with is read and dropped, so that its EOF is seen.
      socket.resume()
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
  })

/** The CPU time process `pid` has used (user and system, all its threads), in seconds. */
const cpuSeconds = (pid: number): number => {
  const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  // utime and stime are fields 14 and 15; the fields after the command name start at field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}
const CLOCK_TICKS = Number(ChildProcess.execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100

/** `curl https://127.0.0.1:PORT/` trusting `cert`: what the server behind nib answered (it runs with -H). */
const curlTls = (port: number, cert: string) =>
  run("curl", ["-s", "--max-time", "5", "--cacert", cert, `https://127.0.0.1:${port}/`])

/**
 * A TLS client that sends its request and ends its side as soon as its handshake is done (its Finished, the request
 * and its close follow each other at once); what it received until nib's end (at most 8 s).
 */
const requestThenEnd = (port: number) =>
  Effect.promise(() =>
    new Promise<string>((resolve) => {
      const secure = Tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false })
      let received = ""
      const timer = setTimeout(() => secure.destroy(), 8_000)
      secure.on("error", () => {})
      secure.once("secureConnect", () => secure.end("GET / HTTP/1.0\r\n\r\n"))
      secure.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")))
      secure.once("close", () => {
        clearTimeout(timer)
        resolve(received)
      })
    })
  )

describe.skipIf(openssl === undefined)("clients that do not finish their handshake (-E)", () => {
  it.live(
    `${LEAVERS} clients that close during their handshake (no byte, part of a ClientHello, a whole one) are closed at once; nib rests; a TLS client is served`,
    () =>
      Effect.gen(function*() {
        const dir = yield* Nib.tempDir
        const { cert, key } = yield* certificate(dir)
        const server = yield* backend
        const lb = yield* Nib.start(["-E", cert, "-K", key, "-H", "127.0.0.1:0", `127.0.0.1:${server.port}`])
        const hello = yield* clientHello
        // Served once first: whatever nib opens on its first TLS client is open from then on.
        assert.deepStrictEqual(yield* curlTls(lb.port, cert), { stdout: "https 127.0.0.1\n", code: 0 })
        const idle = yield* Effect.promise(() => Fd.stable(lb.pid))

        const kinds = [Buffer.alloc(0), hello.subarray(0, hello.length >> 1), hello]
        yield* leaveAll(lb.port, Array.from({ length: LEAVERS }, (_, i) => kinds[i % kinds.length]!))
        // The bound: every one of their sockets is closed within a second of the last FIN.
        const after = yield* Effect.promise(() => Fd.settle(lb.pid, idle, 1_000))
        assert.isAtMost(after, idle, `descriptors a second after the last FIN (${idle} before the burst)`)

        // Nothing left to do: over an idle second nib uses next to no CPU (a spinning thread would use all of it).
        const before = cpuSeconds(lb.pid)
        yield* Effect.sleep("1 second")
        assert.isAtMost(cpuSeconds(lb.pid) - before, 0.3, "CPU seconds over an idle second")
        assert.deepStrictEqual(yield* curlTls(lb.port, cert), { stdout: "https 127.0.0.1\n", code: 0 })
        // A client whose request and FIN follow its last handshake message at once is served all the same.
        assert.match(yield* requestThenEnd(lb.port), /\r\n\r\nhttps 127\.0\.0\.1\n$/)
        assert.notInclude(lb.stderr(), "no TLS handshake within")
      })
  )

  it.live("a client that stays without finishing its handshake (silent, or part of a ClientHello) is closed after 10 s", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const { both } = yield* certificate(dir)
      const lb = yield* Nib.start(["-E", both, "127.0.0.1:0", "127.0.0.1:9"])
      const hello = yield* clientHello
      const silent = yield* Client.open(lb.port)
      const partial = yield* Client.open(lb.port)
      partial.socket.write(hello.subarray(0, hello.length >> 1))
      // Well before the handshake's 10 s: both still open.
      yield* Effect.sleep("2 seconds")
      assert.deepStrictEqual([silent.ending, partial.ending], [undefined, undefined])
      // Then closed by nib (an EOF), once their 10 s are over, and logged.
      yield* Effect.promise(() => silent.ended(15_000))
      yield* Effect.promise(() => partial.ended(5_000))
      assert.deepStrictEqual([silent.ending, partial.ending], ["eof", "eof"])
      yield* Nib.logged(lb, "no TLS handshake within 10 s")
    }))
})
