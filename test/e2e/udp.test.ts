/**
 * UDP mode (`-U`) through the real process: sessions per client address:port, pen's selection for their first
 * datagram, replies from the listen address, the idle timeout and `-x`, an ICMP port-unreachable as the server's
 * failure (blacklist, then failover with the unanswered datagrams sent again), counters both ways, IPv6, `-u`, the
 * control port's listings, `-B`, `-l`, and the bad inputs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Fd from "../utils/Fd.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"
import * as Udp from "../utils/Udp.ts"

const isRoot = process.getuid?.() === 0
/** As root, nib opens the control port only with `-u` (pen's rule). */
const AS_USER: ReadonlyArray<string> = isRoot ? ["-u", "root"] : []

const ip = (n: number) => `127.0.0.${n}`

/** The `servers` reply, as `{ conn, sx, rx }` per server. */
const servers = (target: string) =>
  Effect.map(Nibctl.ask(target, "servers"), (reply) =>
    reply.trim().split("\n").map((line) => {
      const field = (name: string) => Number(new RegExp(` ${name} (\\d+)`).exec(line)?.[1])
      return { conn: field("conn"), sx: field("sx"), rx: field("rx") }
    }))

/** Polls `servers` (at most 5 s) until server 0 has `n` live sessions; whether it did. */
const connectionsBecome = (target: string, n: number) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 5_000
    while (Date.now() < deadline) {
      const first = (await Nibctl.askPromise(target, "servers")).split("\n")[0]!
      if (first.includes(` conn ${n} `)) return true
      await new Promise((wake) => setTimeout(wake, 50))
    }
    return false
  })

describe("UDP mode (-U)", () => {
  it.live("a client socket is one session: one server, one upstream socket, replies from the listen address", () =>
    Effect.gen(function*() {
      const a = yield* Udp.identity("a")
      const b = yield* Udp.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-U", "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const target = Nibctl.targetOf(lb)
      const c = yield* Udp.client(lb.port, ip(2))
      c.send("1", "22", "333")
      const replies = yield* Effect.promise(() => c.waitReplies(3))
      // pen's roundrobin cursor starts at server 1.
      assert.deepStrictEqual(replies.toSorted(), ["b:1", "b:22", "b:333"])
      assert.deepStrictEqual(new Set(c.sources), new Set([`127.0.0.1:${lb.port}`]))
      assert.strictEqual(new Set(b.received.map((r) => r.from)).size, 1, "one upstream socket for the session")
      assert.strictEqual(a.received.length, 0)
      // Counters both ways (pen counts no reply): 6 bytes to the server, 6 + 3 * 2 back.
      assert.deepStrictEqual(yield* servers(target), [{ conn: 0, sx: 0, rx: 0 }, { conn: 1, sx: 6, rx: 12 }])
      const recent = yield* Nibctl.ask(target, "recent")
      assert.match(recent, /^127\.0\.0\.2 connects 1 sx 12 rx 6\n$/)
      const connection = yield* Nibctl.ask(target, "connection 0")
      assert.match(connection, /^Connection 0:\nstate = 2\ndownfd = \d+, upfd = \d+\nclient = \d+, server = 1\n/)
      // The status page lists the session among pen's "Active connections".
      const page = yield* Nibctl.ask(target, "status")
      assert.include(page, "Number of connections: 500 max, 1 used")
    }))

  it.live("sticky by IP: a second socket from the same IP gets the same server through a new upstream socket", () =>
    Effect.gen(function*() {
      const a = yield* Udp.identity("a")
      const b = yield* Udp.identity("b")
      const lb = yield* Nib.start(["-U", "127.0.0.1:0", a.spec(), b.spec()])
      assert.deepStrictEqual(yield* Udp.askAll(lb.port, [ip(2), ip(3), ip(2), ip(4), ip(3)]), ["b", "a", "b", "b", "a"])
      const fromB = new Set(b.received.map((r) => r.from))
      assert.strictEqual(fromB.size, 3, "each client socket had its own upstream socket")
      const rr = yield* Nib.start(["-U", "-r", "127.0.0.1:0", a.spec(), b.spec()])
      assert.deepStrictEqual(yield* Udp.askAll(rr.port, [ip(2), ip(2), ip(2)]), ["b", "a", "b"])
    }))

  it.live("a session idle for --udp-idle-timeout ends; idle_timeout changes it; the next datagram opens a new one", () =>
    Effect.gen(function*() {
      const a = yield* Udp.identity("a")
      const lb = yield* Nib.start([
        ...AS_USER,
        "-U",
        "--udp-idle-timeout",
        "1",
        "-C",
        "127.0.0.1:0",
        "127.0.0.1:0",
        a.spec()
      ])
      const target = Nibctl.targetOf(lb)
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout"), "Idle timeout: 1 seconds\n")
      const c = yield* Udp.client(lb.port, ip(2))
      c.send("x")
      assert.deepStrictEqual(yield* Effect.promise(() => c.waitReplies(1)), ["a:x"])
      assert.strictEqual((yield* servers(target))[0]!.conn, 1)
      const ended = yield* connectionsBecome(target, 0)
      assert.isTrue(ended, "the idle session never ended")
      c.send("y")
      assert.deepStrictEqual(yield* Effect.promise(() => c.waitReplies(2)), ["a:x", "a:y"])
      assert.notStrictEqual(a.received[0]!.from, a.received[1]!.from, "a new session, a new upstream socket")
      // 0 (pen's "never") keeps sessions for good.
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout 0"), "Idle timeout: 0 seconds\n")
    }))

  it.live(
    "-x bounds the sessions: the least recently active one makes room for a new client",
    () =>
      Effect.gen(function*() {
        const a = yield* Udp.identity("a")
        const lb = yield* Nib.start([...AS_USER, "-U", "-x", "2", "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
        const target = Nibctl.targetOf(lb)
        const clients = [yield* Udp.client(lb.port, ip(2)), yield* Udp.client(lb.port, ip(3))]
        for (const [i, c] of clients.entries()) {
          c.send(`hello${i}`)
          assert.strictEqual((yield* Effect.promise(() => c.waitReplies(1))).length, 1)
        }
        // Client 2 (ip(2)) is now the more recently active one.
        clients[0]!.send("again")
        assert.strictEqual((yield* Effect.promise(() => clients[0]!.waitReplies(2))).length, 2)
        const third = yield* Udp.client(lb.port, ip(4))
        third.send("new")
        assert.deepStrictEqual(yield* Effect.promise(() => third.waitReplies(1)), ["a:new"])
        assert.strictEqual((yield* servers(target))[0]!.conn, 2)
        // ip(3)'s session was evicted: its next datagram opens a new session (a new upstream socket).
        const before = a.received.filter((r) => r.text === "hello1")[0]!.from
        clients[1]!.send("back")
        assert.strictEqual((yield* Effect.promise(() => clients[1]!.waitReplies(2))).length, 2)
        assert.notStrictEqual(a.received.find((r) => r.text === "back")!.from, before)
      })
  )

  it.live("listen moves the listener; a live session keeps the old address until it ends; close N ends a session", () =>
    Effect.gen(function*() {
      const a = yield* Udp.identity("a")
      const lb = yield* Nib.start([...AS_USER, "-U", "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      const target = Nibctl.targetOf(lb)
      const c = yield* Udp.client(lb.port, ip(2))
      c.send("old")
      assert.deepStrictEqual(yield* Effect.promise(() => c.waitReplies(1)), ["a:old"])
      const port = yield* Udp.freePort
      assert.strictEqual(yield* Nibctl.ask(target, `listen 127.0.0.1:${port}`), "")
      // The live session still talks through the old address; the same client socket to the new one is a new session,
      // answered from the new address.
      c.send("still")
      assert.strictEqual((yield* Effect.promise(() => c.waitReplies(2))).length, 2)
      const next = yield* Udp.client(port, ip(2))
      next.send("new")
      assert.deepStrictEqual(yield* Effect.promise(() => next.waitReplies(1)), ["a:new"])
      assert.deepStrictEqual(c.sources, [`127.0.0.1:${lb.port}`, `127.0.0.1:${lb.port}`])
      assert.deepStrictEqual(next.sources, [`127.0.0.1:${port}`])
      assert.strictEqual((yield* servers(target))[0]!.conn, 2)
      // close 0 ends the first session: the old socket, which had only that one, is closed, so nothing answers there.
      assert.strictEqual(yield* Nibctl.ask(target, "close 0"), "Forcibly closing connection 0\n")
      assert.isTrue(yield* connectionsBecome(target, 1))
      c.send("gone")
      assert.strictEqual((yield* Effect.promise(() => c.waitReplies(3, 500))).length, 2)
    }))

  it.live("an ICMP port-unreachable blacklists the server and the session fails over, unanswered datagrams resent", () =>
    Effect.gen(function*() {
      const deadPort = yield* Udp.freePort
      const b = yield* Udp.identity("b")
      const c = yield* Udp.identity("c")
      const lb = yield* Nib.start(["-U", "-b", "3", "127.0.0.1:0", b.spec(), `127.0.0.1:${deadPort}`, c.spec()])
      // The first new client goes to server 1, which is down: its datagrams reach server 2 without a retry.
      const client = yield* Udp.client(lb.port, ip(2))
      client.send("q1", "q2", "q3")
      const replies = yield* Effect.promise(() => client.waitReplies(3))
      assert.deepStrictEqual(replies.toSorted(), ["c:q1", "c:q2", "c:q3"])
      yield* Nib.logged(lb, "blacklisting server 1")
      // Server 1 is blacklisted: the cursor (at 1, as a failover does not move it: then 2, 0, 1) skips it.
      assert.deepStrictEqual(yield* Udp.askAll(lb.port, [ip(3), ip(4), ip(5)]), ["c", "b", "c"])
      // The client that failed over is pinned to server 2.
      assert.strictEqual(yield* Udp.ask(lb.port, ip(2)), "c")
    }))

  it.live("every server down: nothing answers, and nib keeps serving once one is back", () =>
    Effect.gen(function*() {
      const deadPort = yield* Udp.freePort
      const lb = yield* Nib.start(["-U", "-b", "1", "127.0.0.1:0", `127.0.0.1:${deadPort}`])
      assert.strictEqual(yield* Udp.ask(lb.port, ip(2), "ping", 500), "none")
      const a = yield* Udp.identity("a", deadPort)
      yield* Effect.sleep("1500 millis")
      assert.strictEqual(yield* Udp.ask(lb.port, ip(2)), "a")
      assert.isAbove(a.received.length, 0)
    }))

  it.live("the emergency server (-e) takes sessions when every server is down", () =>
    Effect.gen(function*() {
      const deadPort = yield* Udp.freePort
      const e = yield* Udp.identity("e")
      const lb = yield* Nib.start(["-U", "-e", e.spec(), "127.0.0.1:0", `127.0.0.1:${deadPort}`])
      assert.deepStrictEqual(yield* Udp.askAll(lb.port, [ip(2), ip(3)]), ["e", "e"])
    }))

  it.live("-B: a client that client_acl denies goes to the abuse server; without -B its datagrams are dropped", () =>
    Effect.gen(function*() {
      const a = yield* Udp.identity("a")
      const x = yield* Udp.identity("x")
      const acl = ["-O", "acl 1 permit 127.0.0.2", "-O", "client_acl 1"]
      const lb = yield* Nib.start(["-U", ...acl, "-B", x.spec(), "127.0.0.1:0", a.spec()])
      assert.deepStrictEqual(yield* Udp.askAll(lb.port, [ip(2), ip(3)]), ["a", "x"])
      const closed = yield* Nib.start(["-U", ...acl, "127.0.0.1:0", a.spec()])
      assert.deepStrictEqual(yield* Udp.askAll(closed.port, [ip(2)]), ["a"])
      assert.strictEqual(yield* Udp.ask(closed.port, ip(3), "ping", 500), "none")
    }))

  it.live.skipIf(Fd.prlimit === undefined)(
    "out of descriptors: sessions that do not fit are dropped, no server is blamed, and the next session is served",
    () =>
      Effect.gen(function*() {
        const a = yield* Udp.identity("a")
        const lb = yield* Nib.start(["-U", "--udp-idle-timeout", "0.5", "127.0.0.1:0", a.spec()])
        assert.strictEqual(yield* Udp.ask(lb.port, ip(2)), "a")
        // Once the first session has ended (idle), the descriptor count is nib's idle count.
        const idle = yield* Effect.promise(() => Fd.stable(lb.pid, 1_000))
        // Three descriptors left: three sessions get an upstream socket, the others fail with EMFILE (nib's own).
        Fd.setLimit(lb.pid, Fd.limitLeaving(Fd.numbers(lb.pid), 3))
        const clients = yield* Effect.forEach([3, 4, 5, 6, 7, 8], (n) => Udp.client(lb.port, ip(n)))
        for (const c of clients) c.send("burst")
        const answered = yield* Effect.forEach(clients, (c) => Effect.promise(() => c.waitReplies(1, 1_500)), {
          concurrency: "unbounded"
        })
        assert.strictEqual(answered.filter((r) => r.length === 1).length, 3, JSON.stringify(answered))
        assert.isTrue(yield* Poll.waitUntil(() => /nib's own resources/.test(lb.stderr()), 5_000), lb.stderr())
        // The sessions end when idle; their descriptors come back, and the next client is served.
        const after = yield* Effect.promise(() => Fd.settle(lb.pid, idle, 10_000))
        assert.isAtMost(after, idle, Fd.describe(lb.pid).join(", "))
        assert.strictEqual(yield* Udp.ask(lb.port, ip(9)), "a")
        assert.notMatch(lb.stderr(), /blacklisting/)
      })
  )

  it.live("IPv6: listen on [::1]:0, relay to a server on [::1]", () =>
    Effect.gen(function*() {
      const a = yield* Udp.identity("a6", 0, "::1")
      const lb = yield* Nib.start(["-U", "[::1]:0", a.spec()])
      const c = yield* Udp.client(lb.port, "::1", "::1")
      c.send("v6")
      assert.deepStrictEqual(yield* Effect.promise(() => c.waitReplies(1)), ["a6:v6"])
      assert.deepStrictEqual(c.sources, [`::1:${lb.port}`])
    }))

  it.live.skipIf(!isRoot)(
    "-u nobody: sessions work after privileges are dropped (pen's fail with EADDRINUSE)",
    () =>
      Effect.gen(function*() {
        const a = yield* Udp.identity("a")
        const lb = yield* Nib.start(["-U", "-u", "nobody", "127.0.0.1:0", a.spec()])
        assert.deepStrictEqual(yield* Udp.askAll(lb.port, [ip(2), ip(3)]), ["a", "a"])
      })
  )

  it.live("-l: a line per datagram from a client; an empty datagram is relayed too", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const log = Path.join(dir, "nib.log")
      const a = yield* Udp.identity("a")
      const lb = yield* Nib.start(["-U", "-l", log, "127.0.0.1:0", a.spec()])
      const c = yield* Udp.client(lb.port, ip(2))
      c.send("query one\nsecond line", "")
      const replies = yield* Effect.promise(() => c.waitReplies(2))
      assert.deepStrictEqual(replies.toSorted(), ["a:", "a:query one\nsecond line"])
      const lines = yield* Effect.promise(async () => {
        await Poll.until(() => Fs.existsSync(log) && Fs.readFileSync(log, "utf8").split("\n").length >= 3, 5_000)
        return Fs.readFileSync(log, "utf8").trimEnd().split("\n")
      })
      assert.strictEqual(lines.length, 2)
      assert.match(lines[0]!, /^127\.0\.0\.2 \d+ 127\.0\.0\.1 query one$/)
    }))

  it.live("bad input: a Unix listen address or server in UDP mode is a one-line usage error", () =>
    Effect.gen(function*() {
      const listen = yield* Nib.run(["-f", "-U", "/tmp/nib-udp.sock", "127.0.0.1:53"])
      assert.strictEqual(listen.code, 1)
      assert.match(
        listen.stderr,
        /^nib: listen address '\/tmp\/nib-udp.sock': UDP mode \(-U\) listens on a \[host:\]port\n/
      )
      const server = yield* Nib.run(["-f", "-U", "127.0.0.1:0", "/tmp/nib-udp-backend.sock"])
      assert.strictEqual(server.code, 1)
      assert.match(server.stderr, /UDP mode \(-U\) cannot send datagrams to a Unix socket/)
      const idle = yield* Nib.run(["-f", "-U", "--udp-idle-timeout", "0", "127.0.0.1:0", "127.0.0.1:53"])
      assert.strictEqual(idle.code, 1)
      assert.include(idle.stderr, "--udp-idle-timeout")
    }))
})
