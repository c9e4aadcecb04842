/**
 * `-H` through the real process: X-Forwarded-Proto and X-Forwarded-For on every request of a keep-alive connection
 * (curl), an existing X-Forwarded-For appended to, a body passed byte for byte, pipelined requests in one write, a bad
 * head answered 400 and closed, and `http` / `no http` on the control port. The backend is a Node HTTP server that
 * answers with the headers it got. Side by side with pen: the -H scenarios of test/compat/scenarios.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as HttpServer from "../utils/HttpServer.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"

const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

/** What the backend saw of one request. */
interface Seen {
  readonly method: string
  readonly xff: string | null
  readonly proto: string | null
  readonly bodySha256: string
  readonly connection: number
}

/** A Node HTTP server answering each request with what it saw, as one JSON line; closed with the scope. */
const echoServer = Effect.suspend(() => {
  let connections = 0
  const ids = new WeakMap<Net.Socket, number>()
  return HttpServer.serve((request, response) => {
    const hash = Crypto.createHash("sha256")
    request.on("data", (chunk: Buffer) => hash.update(chunk))
    request.on("end", () => {
      const seen: Seen = {
        method: request.method ?? "",
        xff: request.headers["x-forwarded-for"] as string | undefined ?? null,
        proto: request.headers["x-forwarded-proto"] as string | undefined ?? null,
        bodySha256: hash.digest("hex"),
        connection: ids.get(request.socket) ?? -1
      }
      response.setHeader("content-type", "application/json")
      response.end(JSON.stringify(seen) + "\n")
    })
  }, (server) => server.on("connection", (socket: Net.Socket) => ids.set(socket, ++connections)))
})

/** curl from `from` with `args` (URLs included): every response body line, parsed. */
const curl = (from: string, args: ReadonlyArray<string>) =>
  Effect.promise(() =>
    new Promise<Array<Seen>>((resolve) => {
      ChildProcess.execFile(
        "curl",
        ["-s", "--max-time", "5", "--interface", from, ...args],
        { timeout: 10_000 },
        (_error, stdout) => resolve(stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Seen))
      )
    })
  )

/** A raw client: writes `bytes` at once, reads until the connection ends (at most 8 s). */
const raw = (port: number, bytes: string, from = "127.0.0.1") =>
  Effect.promise(() =>
    new Promise<{ readonly received: string; readonly ended: boolean }>((resolve) => {
      const socket = Net.connect({ port, host: "127.0.0.1", localAddress: from, allowHalfOpen: false })
      let received = ""
      const timer = setTimeout(() => {
        socket.destroy()
        resolve({ received, ended: false })
      }, 8_000)
      socket.on("connect", () => socket.write(bytes))
      socket.on("data", (chunk) => (received += chunk.toString("latin1")))
      socket.on("error", () => {})
      socket.on("close", () => {
        clearTimeout(timer)
        resolve({ received, ended: true })
      })
    })
  )

describe("-H: X-Forwarded-For and X-Forwarded-Proto", () => {
  it.live("every request of a curl keep-alive connection gets them; an existing X-Forwarded-For is appended to", () =>
    Effect.gen(function*() {
      const backend = yield* echoServer
      const lb = yield* Nib.start(["-H", "127.0.0.1:0", `127.0.0.1:${backend.port}`])
      const url = `http://127.0.0.1:${lb.port}/`
      const seen = yield* curl("127.0.0.21", [url, `${url}again`])
      assert.deepStrictEqual(seen.map((s) => [s.xff, s.proto]), [["127.0.0.21", "http"], ["127.0.0.21", "http"]])
      assert.strictEqual(seen[0]!.connection, seen[1]!.connection, "curl kept its connection")
      const spoofed = yield* curl("127.0.0.22", [
        "-H",
        "X-Forwarded-For: 10.0.0.1",
        "-H",
        "X-Forwarded-Proto: https",
        url
      ])
      assert.deepStrictEqual(spoofed.map((s) => [s.xff, s.proto]), [["10.0.0.1, 127.0.0.22", "http"]])
    }))

  it.live("a body (PUT, 1 MiB) arrives byte for byte; pipelined requests in one write each get the headers", () =>
    Effect.gen(function*() {
      const backend = yield* echoServer
      const lb = yield* Nib.start(["-H", "127.0.0.1:0", `127.0.0.1:${backend.port}`])
      const body = Crypto.randomBytes(1 << 20).toString("base64")
      const dir = yield* Nib.tempDir
      const file = `${dir}/body`
      yield* Effect.sync(() => Fs.writeFileSync(file, body))
      const put = yield* curl("127.0.0.23", [
        "-X",
        "PUT",
        "--data-binary",
        `@${file}`,
        `http://127.0.0.1:${lb.port}/up`
      ])
      assert.strictEqual(put[0]!.bodySha256, Crypto.createHash("sha256").update(body).digest("hex"))
      assert.strictEqual(put[0]!.xff, "127.0.0.23")
      const pipelined = yield* raw(
        lb.port,
        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
          "DELETE /b HTTP/1.1\r\nHost: x\r\n\r\n" +
          "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "127.0.0.24"
      )
      const answers = pipelined.received.split("\r\n\r\n").slice(1).map((part) => part.split("\n")[0]!).filter((l) =>
        l.startsWith("{")
      ).map((l) => JSON.parse(l) as Seen)
      assert.deepStrictEqual(answers.map((s) => [s.method, s.xff]), [
        ["POST", "127.0.0.24"],
        ["DELETE", "127.0.0.24"],
        ["GET", "127.0.0.24"]
      ])
    }))

  it.live("a bad head is answered 400 and closed, and nib goes on serving", () =>
    Effect.gen(function*() {
      const backend = yield* echoServer
      const lb = yield* Nib.start(["-H", "127.0.0.1:0", `127.0.0.1:${backend.port}`])
      const bad = yield* raw(lb.port, "HELLO THERE\r\n\r\n")
      assert.strictEqual(bad.received, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
      assert.isTrue(bad.ended)
      yield* Nib.logged(lb, "-H: 127.0.0.1: answered 400")
      const seen = yield* curl("127.0.0.25", [`http://127.0.0.1:${lb.port}/`])
      assert.strictEqual(seen[0]!.xff, "127.0.0.25")
    }))

  it.live("http and no http on the control port switch it for new connections", () =>
    Effect.gen(function*() {
      const backend = yield* echoServer
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", `127.0.0.1:${backend.port}`])
      const target = Nibctl.targetOf(lb)
      const url = `http://127.0.0.1:${lb.port}/`
      assert.strictEqual((yield* curl("127.0.0.26", [url]))[0]!.xff, null)
      assert.strictEqual(yield* Nibctl.ask(target, "http"), "")
      assert.strictEqual((yield* curl("127.0.0.26", [url]))[0]!.xff, "127.0.0.26")
      assert.strictEqual(yield* Nibctl.ask(target, "no http"), "")
      assert.strictEqual((yield* curl("127.0.0.26", [url]))[0]!.xff, null)
    }))
})
