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
import * as Path from "node:path"
import * as HttpServer from "../utils/HttpServer.ts"
import * as Nib from "../utils/Nib.ts"

const openssl = ["/usr/bin/openssl", "/bin/openssl"].find((path) => Fs.existsSync(path))
if (openssl === undefined) console.warn("test/e2e/tls.test.ts: openssl not found: the TLS tests are SKIPPED")

/** A self-signed certificate for 127.0.0.1 and `name`, and its key, in `dir`; also both in one file. */
const certificate = (dir: string, name = "localhost") =>
  Effect.sync(() => {
    const cert = Path.join(dir, "cert.pem")
    const key = Path.join(dir, "key.pem")
    ChildProcess.execFileSync(openssl!, [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      "-addext",
      `subjectAltName=DNS:${name},IP:127.0.0.1`
    ], { stdio: "ignore" })
    const both = Path.join(dir, "both.pem")
    Fs.writeFileSync(both, Fs.readFileSync(cert, "utf8") + Fs.readFileSync(key, "utf8"))
    return { cert, key, both }
  })

/** A plain HTTP server answering with the X-Forwarded-* headers it got; closed with the scope. */
const BIG = Buffer.alloc(4 << 20, "0123456789abcdef")
const backend = HttpServer.serve((request, response) => {
  if (request.url === "/big") return void response.end(BIG)
  response.end(`${request.headers["x-forwarded-proto"]} ${request.headers["x-forwarded-for"]}\n`)
})

const ssl = (...args: ReadonlyArray<string>) => ChildProcess.execFileSync(openssl!, args, { stdio: "ignore" })

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
      ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        file("ca.key"),
        "-out",
        file("ca.pem"),
        "-days",
        "1",
        "-subj",
        "/CN=nib test CA"
      )
      ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        file("client.key"),
        "-out",
        file("client.csr"),
        "-subj",
        "/CN=client"
      )
      ssl(
        "x509",
        "-req",
        "-in",
        file("client.csr"),
        "-CA",
        file("ca.pem"),
        "-CAkey",
        file("ca.key"),
        "-CAcreateserial",
        "-out",
        file("client.pem"),
        "-days",
        "1"
      )
      const rogueDir = file("rogue")
      Fs.mkdirSync(rogueDir)
      const rogue = yield* certificate(rogueDir, "rogue")
      const caDir = file("cas")
      Fs.mkdirSync(caDir)
      Fs.copyFileSync(file("ca.pem"), Path.join(caDir, "ca.pem"))
      const backendServer = yield* backend
      for (const ca of [["-G", file("ca.pem")], ["-A", caDir]]) {
        const lb = yield* Nib.start([
          "-E",
          server.cert,
          "-K",
          server.key,
          ...ca,
          "-R",
          "127.0.0.1:0",
          `127.0.0.1:${backendServer.port}`
        ])
        const url = `https://127.0.0.1:${lb.port}/`
        const curl = (...extra: ReadonlyArray<string>) =>
          run("curl", ["-s", "--max-time", "5", "--cacert", server.cert, ...extra, url])
        const accepted = yield* curl("--cert", file("client.pem"), "--key", file("client.key"))
        assert.deepStrictEqual(accepted, { stdout: "undefined undefined\n", code: 0 }, ca.join(" "))
        assert.notStrictEqual((yield* curl()).code, 0, `${ca.join(" ")}: no client certificate`)
        assert.notStrictEqual((yield* curl("--cert", rogue.cert, "--key", rogue.key)).code, 0, `${ca.join(" ")}: rogue`)
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
