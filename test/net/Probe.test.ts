/**
 * The active checks' probes against real servers on 127.0.0.1: what passes, what fails and the reason it gives, the
 * timeout, and that every probe closes its socket however it ends (the server sees each connection end).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Result } from "effect"
import type * as Net from "node:net"
import * as Address from "../../src/domain/Address.ts"
import * as HealthCheck from "../../src/domain/HealthCheck.ts"
import * as Probe from "../../src/net/Probe.ts"
import * as Backend from "../utils/Backend.ts"
import * as Poll from "../utils/Poll.ts"
import * as Udp from "../utils/Udp.ts"

const at = (port: number) => Address.tcp("127.0.0.1", port)

const check = (text: string): HealthCheck.Check => {
  const parsed = HealthCheck.parse(text)
  if (typeof parsed === "string") throw new Error(parsed)
  return parsed
}

/** The probe's outcome: undefined when it passed, the failure's reason otherwise. */
const reason = (text: string, port: number, options: Partial<Probe.Options> = {}) =>
  Effect.map(
    Effect.result(Probe.probe(check(text), at(port), { timeoutMs: 2000, ...options })),
    (result) => Result.isSuccess(result) ? undefined : result.failure.reason
  )

/** An HTTP server that answers every request with `status`, recording the request heads it got. */
const http = (status: number, heads: Array<string> = []) =>
  Backend.custom(`http ${status}`, (socket) => {
    let head = ""
    socket.on("data", (chunk: Buffer) => {
      head += chunk.toString("latin1")
      if (!head.includes("\r\n\r\n")) return
      heads.push(head)
      socket.end(`HTTP/1.1 ${status} Whatever\r\nContent-Length: 0\r\n\r\n`)
    })
  })

/** A server that accepts, reads (so that it sees the probe's end) and never says a word. */
const silent = Backend.custom("silent", (socket) => socket.resume())

/** A server that speaks first (SMTP's banner) and reads what comes. */
const speaker = (banner: string) =>
  Backend.custom("speaker", (socket) => {
    socket.write(banner)
    socket.resume()
  })

/** A server speaking a line protocol: each CRLF-ended line gets `answer(line)`. */
const lines = (answer: (line: string) => string) =>
  Backend.custom("line", (socket: Net.Socket) => {
    let text = ""
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1")
      for (let end = text.indexOf("\r\n"); end >= 0; end = text.indexOf("\r\n")) {
        socket.write(answer(text.slice(0, end)))
        text = text.slice(end + 2)
      }
    })
  })

/** Waits (bounded) until `server` has no connection open, and asserts it. */
const allClosed = (server: Backend.Backend) =>
  Effect.gen(function*() {
    assert.isTrue(yield* Poll.waitUntil(() => server.open() === 0), `${server.name}: ${server.open()} still open`)
  })

describe("Probe.probe", () => {
  it.live("tcp: a connect passes; a refused one fails, naming the error", () =>
    Effect.gen(function*() {
      const up = yield* Backend.custom("up", (socket) => socket.end())
      const dead = yield* Backend.freePort
      assert.isUndefined(yield* reason("tcp", up.port))
      assert.strictEqual(yield* reason("tcp", dead), "tcp connect failed (ECONNREFUSED)")
      assert.strictEqual(up.accepted(), 1)
      yield* allClosed(up)
    }))

  it.live("http: 2xx and 3xx pass, with a Host header; others fail with their status", () =>
    Effect.gen(function*() {
      const heads: Array<string> = []
      const ok = yield* http(204, heads)
      const moved = yield* http(302)
      const broken = yield* http(500)
      const missing = yield* http(404)
      assert.isUndefined(yield* reason("http:/health", ok.port))
      assert.match(heads[0]!, /^GET \/health HTTP\/1\.1\r\n/)
      assert.include(heads[0]!, `\r\nHost: 127.0.0.1:${ok.port}\r\n`)
      assert.isUndefined(yield* reason("http", moved.port))
      assert.strictEqual(yield* reason("http:/health", broken.port), "http GET /health answered 500")
      assert.strictEqual(yield* reason("http", missing.port), "http GET / answered 404")
      for (const server of [ok, moved, broken, missing]) yield* allClosed(server)
    }))

  it.live("http: a refused connect, an answer that is not HTTP, a close before any answer", () =>
    Effect.gen(function*() {
      const dead = yield* Backend.freePort
      const smtp = yield* speaker("220 mail ESMTP\r\n")
      const closer = yield* Backend.custom("closer", (socket) => socket.once("data", () => socket.end()))
      assert.strictEqual(yield* reason("http", dead), "http GET /: connect failed (ECONNREFUSED)")
      assert.include(yield* reason("http", smtp.port), "http GET /: not an HTTP answer")
      assert.strictEqual(yield* reason("http", closer.port), "http GET /: closed before an answer")
      yield* allClosed(smtp)
      yield* allClosed(closer)
    }))

  it.live("a server that accepts and never answers fails at the timeout, and its connection is closed", () =>
    Effect.gen(function*() {
      const server = yield* silent
      assert.strictEqual(
        yield* reason("http:/health", server.port, { timeoutMs: 200 }),
        "http GET /health: no answer within 0.2 s"
      )
      assert.strictEqual(
        yield* reason("send:PING\\r\\n,expect:^\\+PONG", server.port, { timeoutMs: 200 }),
        "send: no answer matching /^\\+PONG/ within 0.2 s"
      )
      assert.strictEqual(server.accepted(), 2)
      yield* allClosed(server)
    }))

  it.live("interrupted, a probe closes its connection", () =>
    Effect.gen(function*() {
      const server = yield* silent
      const fiber = yield* Effect.forkChild(Probe.probe(check("http"), at(server.port), { timeoutMs: 60_000 }))
      assert.isTrue(yield* Poll.waitUntil(() => server.open() === 1))
      yield* Fiber.interrupt(fiber)
      yield* allClosed(server)
    }))

  it.live("send: TEXT is sent, the answer must match REGEX; with no TEXT a server that speaks first is heard", () =>
    Effect.gen(function*() {
      const redisLike = yield* lines((line) => line === "PING" ? "+PONG\r\n" : "-ERR unknown command\r\n")
      const banner = yield* speaker("220 mail.example ESMTP\r\n")
      const bytes = yield* lines((line) => `${Buffer.from(line, "latin1").toString("hex")}\r\n`)
      assert.isUndefined(yield* reason("send:PING\\r\\n,expect:^\\+PONG", redisLike.port))
      assert.strictEqual(
        yield* reason("send:PONG\\r\\n,expect:^\\+PONG", redisLike.port, { timeoutMs: 300 }),
        "send: no answer matching /^\\+PONG/ within 0.3 s"
      )
      assert.isUndefined(yield* reason("send:,expect:^220\\x20", banner.port))
      // \xHH is a byte, sent as it is.
      assert.isUndefined(yield* reason("send:\\x00\\xff\\x20\\r\\n,expect:^00ff20\\r\\n", bytes.port))
      yield* allClosed(redisLike)
      yield* allClosed(banner)
    }))

  it.live("send: a server that closes before the answer matches fails at once", () =>
    Effect.gen(function*() {
      const server = yield* Backend.custom("bye", (socket) => socket.end("-ERR go away\r\n"))
      assert.strictEqual(
        yield* reason("send:PING\\r\\n,expect:^\\+PONG", server.port),
        "send: closed before an answer matching /^\\+PONG/"
      )
    }))

  it.live("send in UDP mode: a datagram, and a reply that matches; a closed port fails as unreachable", () =>
    Effect.gen(function*() {
      const server = yield* Udp.identity("dns")
      const dead = yield* Udp.freePort
      assert.isUndefined(yield* reason("send:hello,expect:^dns:hello$", server.port, { datagram: true }))
      assert.deepStrictEqual(server.received.map((r) => r.text), ["hello"])
      assert.strictEqual(
        yield* reason("send:hello,expect:^nope", server.port, { datagram: true, timeoutMs: 200 }),
        "send: no answer matching /^nope/ within 0.2 s"
      )
      assert.strictEqual(yield* reason("send:hello,expect:.", dead, { datagram: true }), "send: port unreachable")
    }))

  it("hostHeader: the port unless 80, IPv6 in brackets, localhost for a Unix socket", () => {
    assert.strictEqual(Probe.hostHeader(Address.tcp("10.0.0.1", 8080)), "10.0.0.1:8080")
    assert.strictEqual(Probe.hostHeader(Address.tcp("10.0.0.1", 80)), "10.0.0.1")
    assert.strictEqual(Probe.hostHeader(Address.tcp("::1", 8080)), "[::1]:8080")
    assert.strictEqual(Probe.hostHeader(Address.unix("/run/app.sock")), "localhost")
  })
})
