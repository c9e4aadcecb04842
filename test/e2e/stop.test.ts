/**
 * The graceful stop (SIGQUIT, `--grace`) through the real process: the listeners close at once, so a new client is
 * refused; a slow transfer goes on and arrives whole, and nib exits 0 as soon as it ends; with a short grace the
 * transfer is cut at the deadline; a client waiting for a slot under `-x` is served; the control port, the admin
 * endpoint (which says `draining`) and the health checks go on; UDP sessions go on until they go idle; a second SIGQUIT
 * does nothing more, and SIGTERM stops at once. The "workers" project runs all of it again with `--workers 2`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Admin from "../utils/Admin.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Udp from "../utils/Udp.ts"

const { ip } = Client
/** As root, nib opens the control port only with `-u` (pen's rule). */
const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

const MiB = 1024 * 1024
const sha256 = (data: Buffer): string => Crypto.createHash("sha256").update(data).digest("hex")

/** A server that sends `body` slowly, in `chunks` pieces one every `everyMs`, then its FIN. */
const slowSender = (body: Buffer, chunks: number, everyMs: number): Backend.Handler => (socket) => {
  const size = Math.ceil(body.length / chunks)
  let sent = 0
  const timer = setInterval(() => {
    socket.write(body.subarray(sent * size, (sent + 1) * size))
    if (++sent === chunks) {
      clearInterval(timer)
      socket.end()
    }
  }, everyMs)
  socket.once("close", () => clearInterval(timer))
}

/** How nib exited, or "running" if it had not within `timeoutMs`. */
const exitWithin = (lb: Nib.Proc, timeoutMs: number) =>
  Effect.promise(() =>
    Promise.race([
      lb.exited,
      new Promise<"running">((resolve) => setTimeout(() => resolve("running"), timeoutMs).unref())
    ])
  )

/** Occurrences of `text` in nib's stderr. */
const times = (lb: Nib.Proc, text: string) => lb.stderr().split(text).length - 1

/** A connection that must be refused (nothing listens any more on any thread). */
const refused = (port: number) =>
  Effect.gen(function*() {
    const late = yield* Client.opening(port)
    assert.strictEqual(yield* Effect.promise(() => late.ended(5_000)), "error")
    assert.strictEqual(late.error?.code, "ECONNREFUSED")
  })

describe("SIGQUIT: a graceful stop", () => {
  it.live("a slow transfer finishes whole, a new client is refused, nib exits 0 as soon as it ends", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const pidPath = Path.join(dir, "nib.pid")
      const body = Crypto.randomBytes(4 * MiB)
      const slow = yield* Backend.custom("slow", slowSender(body, 40, 50))
      const lb = yield* Nib.start([
        "-p",
        pidPath,
        "--grace",
        "60",
        "--admin",
        "127.0.0.1:0",
        "127.0.0.1:0",
        slow.spec()
      ])
      const base = Admin.baseUrl(lb)
      const conn = yield* Client.open(lb.port)
      assert.isTrue(yield* Effect.promise(() => conn.until(() => conn.received > 0, 5_000)), "no byte came")
      assert.deepStrictEqual((yield* Admin.call(base, "GET", "/api/state")).json, { state: "serving", open: 1 })

      lb.child.kill("SIGQUIT")
      yield* Nib.logged(lb, "nib: SIGQUIT: listeners closed, 1 connection open, waiting up to 60 s\n")
      yield* refused(lb.port)
      assert.deepStrictEqual((yield* Admin.call(base, "GET", "/api/state")).json, { state: "draining", open: 1 })
      // A second SIGQUIT does nothing more.
      lb.child.kill("SIGQUIT")

      assert.strictEqual(yield* Effect.promise(() => conn.ended(30_000)), "eof")
      assert.strictEqual(conn.received, body.length)
      assert.strictEqual(sha256(conn.data()), sha256(body))
      // The client ends its side too (until then the connection is half open, and still open): nib is gone right
      // after, well before the grace.
      assert.strictEqual(yield* exitWithin(lb, 300), "running")
      conn.socket.end()
      assert.deepStrictEqual(yield* exitWithin(lb, 10_000), { code: 0, signal: null }, lb.stderr())
      assert.include(lb.stderr(), "nib: all connections done, exiting\n")
      assert.strictEqual(times(lb, "SIGQUIT"), 1, lb.stderr())
      assert.isFalse(Fs.existsSync(pidPath), "the pid file is still there")
      // Nothing listens on the port: we can bind it ourselves.
      const again = yield* Backend.identity("again", lb.port)
      assert.strictEqual(again.port, lb.port)
    }))

  it.live("--grace 1: the transfer still going at the deadline is cut, and nib exits 0", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const pidPath = Path.join(dir, "nib.pid")
      const body = Crypto.randomBytes(4 * MiB)
      // 40 chunks, one every 250 ms: 10 s, far longer than the grace.
      const slow = yield* Backend.custom("slow", slowSender(body, 40, 250))
      const lb = yield* Nib.start(["-p", pidPath, "--grace", "1", "127.0.0.1:0", slow.spec()])
      const conn = yield* Client.open(lb.port)
      assert.isTrue(yield* Effect.promise(() => conn.until(() => conn.received > 0, 5_000)), "no byte came")

      lb.child.kill("SIGQUIT")
      yield* Nib.logged(lb, "nib: SIGQUIT: listeners closed, 1 connection open, waiting up to 1 s\n")
      assert.notStrictEqual(yield* Effect.promise(() => conn.ended(8_000)), "timeout")
      assert.isBelow(conn.received, body.length)
      assert.deepStrictEqual(yield* exitWithin(lb, 5_000), { code: 0, signal: null }, lb.stderr())
      assert.include(lb.stderr(), "nib: grace over (1 s), closing 1 connection, exiting\n")
      assert.notInclude(lb.stderr(), "done")
      assert.isFalse(Fs.existsSync(pidPath), "the pid file is still there")
    }))

  it.live("SIGTERM during a drain stops at once: the transfer is cut, exit 0, the pid file removed", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const pidPath = Path.join(dir, "nib.pid")
      const body = Crypto.randomBytes(4 * MiB)
      const slow = yield* Backend.custom("slow", slowSender(body, 40, 250))
      const lb = yield* Nib.start(["-p", pidPath, "--grace", "60", "127.0.0.1:0", slow.spec()])
      const conn = yield* Client.open(lb.port)
      assert.isTrue(yield* Effect.promise(() => conn.until(() => conn.received > 0, 5_000)), "no byte came")

      lb.child.kill("SIGQUIT")
      yield* Nib.logged(lb, "nib: SIGQUIT: listeners closed, 1 connection open, waiting up to 60 s\n")
      lb.child.kill("SIGTERM")
      assert.deepStrictEqual(yield* exitWithin(lb, 5_000), { code: 0, signal: null }, lb.stderr())
      assert.notStrictEqual(yield* Effect.promise(() => conn.ended(5_000)), "timeout")
      assert.isBelow(conn.received, body.length)
      assert.notInclude(lb.stderr(), "done")
      assert.notInclude(lb.stderr(), "grace over")
      assert.isFalse(Fs.existsSync(pidPath), "the pid file is still there")
    }))

  it.live("-x 1: a client accepted but waiting for a slot is served once the live one ends, then nib exits", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["-x", "1", "127.0.0.1:0", a.spec()])
      const first = yield* Client.hold(lb.port, ip(2))
      assert.strictEqual(first.name, "a")
      const waiting = yield* Client.open(lb.port, { from: ip(3) })
      assert.strictEqual((yield* Effect.promise(() => waiting.firstLine(300)))._tag, "Timeout")

      lb.child.kill("SIGQUIT")
      yield* Nib.logged(lb, "nib: SIGQUIT: listeners closed, 2 connections open, waiting up to 30 s\n")
      yield* refused(lb.port)
      first.conn.close()
      assert.deepStrictEqual(yield* Effect.promise(() => waiting.firstLine()), { _tag: "Line", line: "a" })
      // The echo works: it is relayed as any connection.
      waiting.socket.write("still here\n")
      assert.isTrue(yield* Effect.promise(() => waiting.until(() => waiting.text() === "a\nstill here\n", 5_000)))
      assert.strictEqual(yield* exitWithin(lb, 300), "running")
      waiting.socket.end()
      assert.deepStrictEqual(yield* exitWithin(lb, 10_000), { code: 0, signal: null }, lb.stderr())
      assert.include(lb.stderr(), "nib: all connections done, exiting\n")
    }))

  it.live("the control port, the admin endpoint and the health checks go on while connections drain", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([
        ...AS_USER,
        "-C",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--check",
        "tcp",
        "--check-interval",
        "0.2",
        "--fall",
        "1",
        "127.0.0.1:0",
        a.spec(),
        b.spec()
      ])
      const base = Admin.baseUrl(lb)
      const target = Nibctl.targetOf(lb)
      const held = yield* Client.hold(lb.port, ip(2))
      assert.include(["a", "b"], held.name)

      lb.child.kill("SIGQUIT")
      yield* Nib.logged(lb, "nib: SIGQUIT: listeners closed, 1 connection open, waiting up to 30 s\n")
      // The server the client does not use goes down: a check sees it.
      const [other, index] = held.name === "a" ? [b, 1] : [a, 0]
      yield* Effect.promise(other.close)
      const stateOf = () =>
        Effect.map(Admin.call(base, "GET", `/api/servers/${index}`), (reply) => reply.json.state as string)
      let state = yield* stateOf()
      for (let i = 0; i < 50 && state !== "down"; i++) {
        yield* Effect.sleep("100 millis")
        state = yield* stateOf()
      }
      assert.strictEqual(state, "down", lb.stderr())
      // The control port answers (listen is refused: nib listens no more).
      assert.match(yield* Nibctl.ask(target, "servers"), /^0 addr 127\.0\.0\.1 /)
      assert.include(yield* Nibctl.ask(target, "listen 127.0.0.1:0"), "not listening any more")
      assert.strictEqual((yield* Admin.call(base, "GET", "/api/state")).json.state, "draining")

      held.conn.close()
      assert.deepStrictEqual(yield* exitWithin(lb, 10_000), { code: 0, signal: null }, lb.stderr())
    }))

  it.live("nothing open: nib exits at once", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["127.0.0.1:0", a.spec()])
      lb.child.kill("SIGQUIT")
      assert.deepStrictEqual(yield* exitWithin(lb, 10_000), { code: 0, signal: null }, lb.stderr())
      assert.include(lb.stderr(), "nib: SIGQUIT: listeners closed, 0 connections open, waiting up to 30 s\n")
      assert.include(lb.stderr(), "nib: all connections done, exiting\n")
    }))
})

describe("SIGQUIT in UDP mode (-U)", () => {
  it.live("a live session goes on until it goes idle, a new client gets no answer, then nib exits 0", () =>
    Effect.gen(function*() {
      const a = yield* Udp.identity("a")
      const lb = yield* Nib.start(["-U", "--udp-idle-timeout", "3", "127.0.0.1:0", a.spec()])
      const live = yield* Udp.client(lb.port, ip(2))
      live.send("before")
      assert.deepStrictEqual(yield* Effect.promise(() => live.waitReplies(1)), ["a:before"])

      lb.child.kill("SIGQUIT")
      yield* Nib.logged(lb, "nib: SIGQUIT: listeners closed, 1 session open, waiting up to 30 s\n")
      live.send("after")
      assert.deepStrictEqual(yield* Effect.promise(() => live.waitReplies(2)), ["a:before", "a:after"])
      const fresh = yield* Udp.client(lb.port, ip(3))
      fresh.send("new")
      assert.deepStrictEqual(yield* Effect.promise(() => fresh.waitReplies(1, 500)), [])
      assert.deepStrictEqual(a.received.map((r) => r.text), ["before", "after"])

      // The session goes idle 3 s after its last datagram: then nib is done.
      assert.deepStrictEqual(yield* exitWithin(lb, 15_000), { code: 0, signal: null }, lb.stderr())
      assert.include(lb.stderr(), "nib: all sessions done, exiting\n")
    }))
})
