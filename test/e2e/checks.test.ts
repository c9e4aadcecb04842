/**
 * Active health checks through the real CLI (`--check`, `--check-interval`, `--rise`, `--fall`, `--slow-start`,
 * `--on-down`, `server N check`): servers that answer 500, hang or refuse go down, new and sticky clients go
 * elsewhere, servers come back; `send:...,expect:` against a line-protocol peer, redis-server when installed, and UDP
 * servers. nib's log lines ("server 1 (...) is down: ...", "... is up again") say when a state changed; every wait is
 * bounded and no duration is asserted.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"
import * as Redis from "../utils/Redis.ts"
import * as Udp from "../utils/Udp.ts"

const { ip } = Client

/** As root, nib opens the control port only with `-u` (pen's rule); `-u root` keeps it. */
const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

/** Checks every 0.1 s; two results in a row change a state. */
const FAST = ["--check-interval", "0.1", "--rise", "2", "--fall", "2"]

/** How a {@link checked} server answers its health check: an HTTP status, or nothing at all. */
type Health = number | "hang"

/**
 * A server with a health endpoint: a connection that starts with `GET ` gets `health` (an HTTP status, or no answer);
 * any other is a client, which gets the server's name on a line, then an echo (an identity server that speaks second,
 * so that it can tell the two apart).
 */
const checked = (name: string, initial: Health = 200) =>
  Effect.gen(function*() {
    const state: { health: Health } = { health: initial }
    const backend = yield* Backend.custom(name, (socket: Net.Socket) => {
      socket.once("data", (first: Buffer) => {
        if (first.toString("latin1").startsWith("GET ")) {
          if (state.health === "hang") return socket.resume()
          return socket.end(`HTTP/1.1 ${state.health} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
        }
        socket.write(`${name}\n`)
        socket.write(first)
        socket.pipe(socket)
      })
    })
    return { ...backend, state }
  })

/** A client from `from` that says hello and reads the name of the server that answered (or CLOSED, SILENT). */
const whoami = (port: number, from: string) =>
  Effect.promise(async () => {
    const conn = Client.dial(port, { from })
    try {
      conn.socket.write("hello\n")
      return Client.nameOf(await conn.firstLine(5_000))
    } finally {
      conn.close()
    }
  })

const whoamiAll = (port: number, sources: ReadonlyArray<string>) =>
  Effect.forEach(sources, (from) => whoami(port, from))

/** Waits (bounded) for a line of nib's stderr that includes `text`, and asserts it came. */
const logged = (lb: Nib.Balancer, text: string, timeoutMs = 10_000) =>
  Effect.gen(function*() {
    const seen = yield* Poll.waitUntil(() => lb.stderr().includes(text), timeoutMs)
    assert.isTrue(seen, `no '${text}' in nib's stderr:\n${lb.stderr()}`)
  })

/** How many times nib's stderr says `text`. */
const times = (lb: Nib.Balancer, text: string) => lb.stderr().split(text).length - 1

describe("--check http: servers that answer 500, hang or refuse", () => {
  it.live("a server answering 500 goes down: its sticky clients and new ones go elsewhere; at 200 it comes back", () =>
    Effect.gen(function*() {
      const a = yield* checked("a")
      const b = yield* checked("b")
      const lb = yield* Nib.start(["--check", "http:/health", ...FAST, "127.0.0.1:0", a.spec(), b.spec()])
      const down = `server 1 (127.0.0.1:${b.port}) is down: http GET /health answered 500`
      const up = `server 1 (127.0.0.1:${b.port}) is up again`

      // The first new client goes to server 1 and is pinned there.
      assert.strictEqual(yield* whoami(lb.port, ip(2)), "b")
      assert.strictEqual(yield* whoami(lb.port, ip(2)), "b")

      b.state.health = 500
      yield* logged(lb, down)
      // Its sticky client fails over to server 0 and is pinned there; new clients skip server 1.
      assert.deepStrictEqual(yield* whoamiAll(lb.port, [ip(2), ip(3), ip(4), ip(5), ip(2)]), ["a", "a", "a", "a", "a"])

      b.state.health = 200
      yield* logged(lb, up)
      // The re-pinned client stays where it went; new clients reach server 1 again.
      assert.strictEqual(yield* whoami(lb.port, ip(2)), "a")
      const names = yield* whoamiAll(lb.port, [ip(6), ip(7), ip(8), ip(9)])
      assert.include(names, "b", names.join(" "))
      // Each change was said once; server 0 never changed.
      assert.strictEqual(times(lb, down), 1)
      assert.strictEqual(times(lb, up), 1)
      assert.notInclude(lb.stderr(), "server 0 (")
    }))

  it.live("a server that accepts and never answers goes down at the timeout, one that refuses too", () =>
    Effect.gen(function*() {
      const a = yield* checked("a")
      const hung = yield* checked("hung", "hang")
      const refusing = yield* Backend.freePort
      const lb = yield* Nib.start([
        "--check",
        "http",
        ...FAST,
        "127.0.0.1:0",
        a.spec(),
        hung.spec(),
        `127.0.0.1:${refusing}`
      ])
      yield* logged(lb, `server 1 (127.0.0.1:${hung.port}) is down: http GET /: no answer within 0.1 s`)
      yield* logged(lb, `server 2 (127.0.0.1:${refusing}) is down: http GET /: connect failed (ECONNREFUSED)`)
      assert.deepStrictEqual(yield* whoamiAll(lb.port, [ip(2), ip(3), ip(4), ip(5)]), ["a", "a", "a", "a"])
      // The hung server's check connections were each closed at their timeout.
      assert.isTrue(yield* Poll.waitUntil(() => hung.open() <= 1), `${hung.open()} check connections open`)
      // Passive health is untouched: a check's failure blacklists nothing.
      assert.notInclude(lb.stderr(), "blacklisting")
    }))

  it.live("a down server's clients are closed with --on-down close, kept by default", () =>
    Effect.gen(function*() {
      for (const onDown of ["close", "keep"] as const) {
        const a = yield* checked("a")
        const b = yield* checked("b")
        const args = onDown === "close" ? ["--on-down", "close"] : []
        const lb = yield* Nib.start(["--check", "http", ...FAST, ...args, "127.0.0.1:0", a.spec(), b.spec()])
        const conn = yield* Client.open(lb.port, { from: ip(2) })
        conn.socket.write("hello\n")
        assert.deepStrictEqual(yield* Effect.promise(() => conn.firstLine(5_000)), { _tag: "Line", line: "b" }, onDown)

        b.state.health = 500
        yield* logged(lb, `server 1 (127.0.0.1:${b.port}) is down`)
        if (onDown === "close") {
          assert.notStrictEqual(yield* Effect.promise(() => conn.ended(5_000)), "timeout")
          yield* logged(lb, "--on-down close: closed 1 connections to server 1")
        } else {
          // Still relayed: what the client sends comes back from server 1.
          conn.socket.write("still there\n")
          assert.isTrue(
            yield* Effect.promise(() => conn.until(() => conn.text().includes("still there\n"), 5_000)),
            conn.text()
          )
          assert.isUndefined(conn.ending)
        }
        // Either way new clients go to server 0.
        assert.strictEqual(yield* whoami(lb.port, ip(3)), "a")
      }
    }))
})

describe("server N check on the control port", () => {
  it.live("starts, changes and stops one server's check; write keeps it; a bad one is refused", () =>
    Effect.gen(function*() {
      const a = yield* checked("a")
      const b = yield* checked("b", 500)
      const dir = yield* Nib.tempDir
      const file = Path.join(dir, "nib.cfg")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", ...FAST, "127.0.0.1:0", a.spec(), b.spec()])
      const target = Nibctl.targetOf(lb)

      // Without --check nothing is checked: server 1 answers 500 to GETs, and still takes clients.
      assert.strictEqual(yield* whoami(lb.port, ip(2)), "b")
      assert.strictEqual(yield* Nibctl.ask(target, "server 1 check http:/health"), "")
      yield* logged(lb, `server 1 (127.0.0.1:${b.port}) is down: http GET /health answered 500`)
      assert.deepStrictEqual(yield* whoamiAll(lb.port, [ip(2), ip(3)]), ["a", "a"])

      assert.strictEqual(yield* Nibctl.ask(target, `write ${file}`), "")
      const servers = Fs.readFileSync(file, "latin1").split("\n").filter((l) => l.startsWith("server "))
      assert.notInclude(servers[0]!, " check ")
      assert.match(servers[1]!, / check http:\/health$/)

      // A check of its own replaces the one it had (and the server stays down: its answer never matches); `none`
      // stops it, and the server takes clients again.
      assert.strictEqual(yield* Nibctl.ask(target, "server 1 check send:hi\\r\\n,expect:^never"), "")
      assert.strictEqual(yield* Nibctl.ask(target, `write ${file}`), "")
      assert.match(Fs.readFileSync(file, "latin1"), /\nserver 1 .* check send:hi\\r\\n,expect:\^never\n/)
      assert.strictEqual(yield* Nibctl.ask(target, "server 1 check none"), "")
      yield* logged(lb, `server 1 (127.0.0.1:${b.port}) is no longer checked: taken as up`)
      assert.include(yield* whoamiAll(lb.port, [ip(4), ip(5), ip(6)]), "b")

      assert.strictEqual(
        yield* Nibctl.ask(target, "server 1 check udp"),
        "server 1: check 'udp' is not tcp, http[:/path] or send:TEXT,expect:REGEX, or none\n"
      )
    }))

  it.live("a server added at run time gets --check", () =>
    Effect.gen(function*() {
      const a = yield* checked("a")
      const added = yield* checked("added", 503)
      const lb = yield* Nib.start([
        ...AS_USER,
        "-C",
        "127.0.0.1:0",
        "--check",
        "http",
        ...FAST,
        "127.0.0.1:0",
        a.spec()
      ])
      const target = Nibctl.targetOf(lb)
      assert.strictEqual(yield* Nibctl.ask(target, `server 1 address 127.0.0.1 port ${added.port}`), "")
      yield* logged(lb, `server 1 (127.0.0.1:${added.port}) is down: http GET / answered 503`)
      assert.deepStrictEqual(yield* whoamiAll(lb.port, [ip(2), ip(3), ip(4)]), ["a", "a", "a"])
    }))
})

/** Takes server 1 down (500) and back up, then counts the servers of 100 new connections (-r: all new). */
const afterComeback = (slowStart: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const a = yield* checked("a")
    const b = yield* checked("b")
    const lb = yield* Nib.start(["-r", "--check", "http", ...FAST, ...slowStart, "127.0.0.1:0", a.spec(), b.spec()])
    b.state.health = 500
    yield* logged(lb, `server 1 (127.0.0.1:${b.port}) is down`)
    b.state.health = 200
    yield* logged(lb, `server 1 (127.0.0.1:${b.port}) is up again`)
    const names = yield* Effect.forEach(Array.from({ length: 100 }), () => whoami(lb.port, ip(2)))
    return { a: names.filter((n) => n === "a").length, b: names.filter((n) => n === "b").length }
  })

describe("--slow-start", () => {
  it.live("a server back up takes a small share of 100 new connections at first; without it, half", () =>
    Effect.gen(function*() {
      // An hour's slow start: seconds after coming back, server 1's share is a fraction of a percent.
      const slow = yield* afterComeback(["--slow-start", "3600"])
      assert.strictEqual(slow.a + slow.b, 100)
      assert.isAtMost(slow.b, 10, JSON.stringify(slow))
      // Roundrobin without a slow start: every other connection.
      const plain = yield* afterComeback([])
      assert.deepStrictEqual(plain, { a: 50, b: 50 })
    }))
})

/** A Redis-like peer: `PING` answers `+PONG` while `loading` is false, `-LOADING` while it is true. */
const redisLike = (name: string) =>
  Effect.gen(function*() {
    const state = { loading: false }
    const backend = yield* Backend.custom(name, (socket: Net.Socket) => {
      let text = ""
      socket.on("data", (chunk: Buffer) => {
        text += chunk.toString("latin1")
        for (let end = text.indexOf("\r\n"); end >= 0; end = text.indexOf("\r\n")) {
          const line = text.slice(0, end)
          text = text.slice(end + 2)
          socket.write(line !== "PING" ? `${name}\n` : state.loading ? "-LOADING loading\r\n" : "+PONG\r\n")
        }
      })
    })
    return { ...backend, state }
  })

describe("--check send:TEXT,expect:REGEX", () => {
  it.live("a line-protocol peer (Node, speaking Redis's PING): down while it answers otherwise, up again after", () =>
    Effect.gen(function*() {
      const a = yield* redisLike("a")
      const b = yield* redisLike("b")
      const lb = yield* Nib.start([
        "--check",
        "send:PING\\r\\n,expect:^\\+PONG",
        ...FAST,
        "127.0.0.1:0",
        a.spec(),
        b.spec()
      ])
      b.state.loading = true
      yield* logged(lb, `server 1 (127.0.0.1:${b.port}) is down: send: no answer matching /^\\+PONG/ within 0.1 s`)
      const conn = Client.dial(lb.port, { from: ip(2) })
      conn.socket.write("who\r\n")
      assert.deepStrictEqual(yield* Effect.promise(() => conn.firstLine(5_000)), { _tag: "Line", line: "a" })
      conn.close()
      b.state.loading = false
      yield* logged(lb, `server 1 (127.0.0.1:${b.port}) is up again`)
    }))

  Redis.warnIfMissing("test/e2e/checks.test.ts")

  it.live.skipIf(Redis.path === undefined)(
    "a real redis-server passes PING; stopped, it goes down",
    () =>
      Effect.gen(function*() {
        const port = yield* Backend.freePort
        const redis = yield* Redis.start(port)
        const dead = yield* Backend.freePort
        const lb = yield* Nib.start([
          "--check",
          "send:PING\\r\\n,expect:^\\+PONG\\r\\n",
          ...FAST,
          "127.0.0.1:0",
          `127.0.0.1:${port}`,
          `127.0.0.1:${dead}`
        ])
        yield* logged(lb, `server 1 (127.0.0.1:${dead}) is down: send: connect failed (ECONNREFUSED)`)
        // redis answers PING with +PONG: server 0 stays up, and a client gets redis's own answer through nib.
        const conn = yield* Client.open(lb.port, { from: ip(2) })
        conn.socket.write("PING\r\n")
        assert.isTrue(yield* Effect.promise(() => conn.until(() => conn.text() === "+PONG\r\n", 5_000)), conn.text())
        conn.close()
        assert.notInclude(lb.stderr(), `server 0 (127.0.0.1:${port}) is down`)

        yield* Effect.promise(() => Nib.stop(redis.proc))
        yield* logged(lb, `server 0 (127.0.0.1:${port}) is down: send: connect failed (ECONNREFUSED)`)
      })
  )
})

describe("-U: --check send: as a datagram", () => {
  it.live("a UDP server that answers passes; a closed port goes down as unreachable, and its clients go elsewhere", () =>
    Effect.gen(function*() {
      const a = yield* Udp.identity("a")
      const dead = yield* Udp.freePort
      const lb = yield* Nib.start([
        "-U",
        "--check",
        "send:ping,expect:^a:ping$",
        ...FAST,
        "127.0.0.1:0",
        a.spec(),
        `127.0.0.1:${dead}`
      ])
      yield* logged(lb, `server 1 (127.0.0.1:${dead}) is down: send: port unreachable`)
      assert.notInclude(lb.stderr(), "server 0 (")
      // New sessions go to server 0 from the start: no blacklisting, no datagram sent to the dead port.
      assert.deepStrictEqual(
        [yield* Udp.ask(lb.port, ip(2), "hello"), yield* Udp.ask(lb.port, ip(3), "hello")],
        ["a", "a"]
      )
      assert.notInclude(lb.stderr(), "blacklisting")
    }))
})
