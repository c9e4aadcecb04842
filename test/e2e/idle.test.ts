/**
 * pen's `idle_timeout` for TCP connections through the real process: a connection that moves no byte either way for
 * N seconds is closed on both sides (each peer sees a FIN), within N to N + 1 s; bytes either way keep it open;
 * half-closed connections are left alone, as pen leaves them; a slowloris holding every `-x` slot is cleared; the
 * setting from `--idle-timeout`, `-O`, `-F` and the control port at run time, what `write` writes, the counter in
 * /metrics and the debug line, with `--workers 2` in every worker thread (also one started again after a crash), and
 * `--idle-timeout` in UDP mode.
 *
 * Time is asserted only with wide margins: not closed before N - 0.2 s of silence, closed within N + 3 s.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Path from "node:path"
import * as Admin from "../utils/Admin.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"
import * as Udp from "../utils/Udp.ts"

// The test hook `workers crash N` (nib started by this file's tests inherits the environment).
process.env["NIB_TEST_HOOKS"] = "1"

const isRoot = process.getuid?.() === 0
/** As root, nib opens the control port only with `-u` (pen's rule). */
const AS_USER: ReadonlyArray<string> = isRoot ? ["-u", "root"] : []

const sleep = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

/** How a backend's connection ended, as the backend saw it. */
type ServerEnding = "open" | "eof" | "reset" | "error"

/**
 * A backend that greets each connection with its name and a newline, then echoes; it records how each of its
 * connections ended (an orderly FIN from nib is "eof"), and answers a FIN with its own.
 */
const echoing = (name: string) =>
  Effect.gen(function*() {
    const endings: Array<ServerEnding> = []
    const backend = yield* Backend.custom(name, (socket) => {
      const i = endings.push("open") - 1
      socket.write(`${name}\n`)
      socket.on("data", (chunk: Buffer) => socket.write(chunk))
      socket.on("end", () => {
        if (endings[i] === "open") endings[i] = "eof"
        socket.end()
      })
      socket.on("error", (error: NodeJS.ErrnoException) => {
        endings[i] = error.code === "ECONNRESET" ? "reset" : "error"
      })
    }, { allowHalfOpen: true })
    return { backend, endings }
  })

/** Waits (at most 5 s) until `conn` has received `text`; fails the test if it does not. */
const received = (conn: Client.Conn, text: string) =>
  Effect.promise(async () => {
    assert.isTrue(await conn.until(() => conn.text().includes(text), 5_000), `never received ${JSON.stringify(text)}`)
  })

/** Scrapes /metrics until `ready` holds of it (at most 5 s); the last scrape. */
const scrapeUntil = (base: string, ready: (scrape: Admin.Scrape) => boolean) =>
  Effect.gen(function*() {
    let last = yield* Admin.scrape(base)
    const deadline = Date.now() + 5_000
    while (!ready(last) && Date.now() < deadline) {
      yield* sleep(50)
      last = yield* Admin.scrape(base)
    }
    return last
  })

/** Asks `line` until `done` holds of the reply (at most 10 s, every 100 ms); whether it did. */
const replyBecomes = (target: string, line: string, done: (reply: string) => boolean) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      if (done(await Nibctl.askPromise(target, line))) return true
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return false
  })

/** `workers` as [worker, conn] per worker (worker 0 is the main thread). */
const workers = (target: string) =>
  Effect.map(Nibctl.ask(target, "workers"), (text) =>
    text.trim().split("\n").map((line) => {
      const m = /^worker (\d+) thread -?\d+ conn (-?\d+) restarts (\d+)$/.exec(line)
      assert.isNotNull(m, `a workers line: ${JSON.stringify(line)}`)
      return { worker: Number(m![1]), conn: Number(m![2]), restarts: Number(m![3]) }
    }))

describe("idle_timeout (TCP)", () => {
  it.live("an idle connection is closed on both sides within N to N + 1 s; counted, logged, everything released", () =>
    Effect.gen(function*() {
      const { backend, endings } = yield* echoing("a")
      const lb = yield* Nib.start([
        "-d",
        "--idle-timeout",
        "1",
        "--admin",
        "127.0.0.1:0",
        "127.0.0.1:0",
        backend.spec()
      ])
      const conn = yield* Client.open(lb.port)
      conn.socket.write("ping")
      yield* received(conn, "a\nping")
      // The echo was the last byte either way.
      const silentSince = performance.now()
      assert.strictEqual(yield* Effect.promise(() => conn.ended(5_000)), "eof")
      const silence = performance.now() - silentSince
      assert.isAtLeast(silence, 800, "closed before the timeout")
      assert.isAtMost(silence, 4_000)
      // The server saw an orderly close too (a FIN, not a reset).
      assert.isTrue(yield* Poll.waitUntil(() => endings[0] !== "open"), "the server's side stayed open")
      assert.deepStrictEqual(endings, ["eof"])
      yield* Nib.logged(lb, "connection 0 idle for 1 seconds, closing (client 127.0.0.1, server 0)")
      const m = yield* scrapeUntil(
        Admin.baseUrl(lb),
        (s) => Admin.valueOf(s, "nib_idle_closed_total") === 1 && Admin.valueOf(s, "nib_connections_active") === 0
      )
      assert.strictEqual(Admin.valueOf(m, "nib_idle_closed_total"), 1)
      assert.strictEqual(Admin.valueOf(m, "nib_connections_active"), 0)
      assert.strictEqual(Admin.valueOf(m, "nib_server_connections", { index: "0" }), 0)
      assert.strictEqual(Admin.valueOf(m, "nib_relay_buffers_in_use"), 0)
      // The balancer serves on.
      assert.strictEqual(yield* Client.ask(lb.port), "a")
    }))

  it.live("bytes one way every N/2 s keep a connection open past 3N s; it closes once they stop", () =>
    Effect.gen(function*() {
      // A client that starts with "T" gets a tick from the server every 500 ms (the client says nothing more); one that
      // starts with "S" talks to a sink that never answers.
      const ticking = new Set<Net.Socket>()
      const backend = yield* Backend.custom("t", (socket) => {
        socket.once("data", (first: Buffer) => {
          if (first[0] !== "T".charCodeAt(0)) return
          ticking.add(socket)
          let ticks = 0
          const timer = setInterval(() => {
            if (++ticks > 7 || socket.destroyed) return clearInterval(timer)
            socket.write("t")
          }, 500)
          socket.once("close", () => clearInterval(timer))
        })
      })
      const lb = yield* Nib.start(["--idle-timeout", "1", "127.0.0.1:0", backend.spec()])
      const talker = yield* Client.open(lb.port)
      const listener = yield* Client.open(lb.port)
      listener.socket.write("T")
      talker.socket.write("S")
      for (let i = 0; i < 7; i++) {
        yield* sleep(500)
        talker.socket.write("s")
      }
      // 3.5 s later: both are open, and every tick came through.
      assert.isUndefined(talker.ending, "a connection the client kept talking on was closed")
      assert.isUndefined(listener.ending, "a connection the server kept talking on was closed")
      yield* received(listener, "ttttttt")
      // Silence from now on (the server has sent its 7 ticks): both are closed.
      assert.strictEqual(yield* Effect.promise(() => talker.ended(5_000)), "eof")
      assert.strictEqual(yield* Effect.promise(() => listener.ended(5_000)), "eof")
      assert.strictEqual(listener.text(), "ttttttt")
    }))

  it.live("a half-closed connection is left alone, as pen leaves it: the server's late reply arrives", () =>
    Effect.gen(function*() {
      // The server reads to the client's EOF, says nothing for 2.5 s (over N + 1), then replies and closes.
      const backend = yield* Backend.custom("late", (socket) => {
        socket.resume()
        socket.once("end", () => {
          const timer = setTimeout(() => socket.end("late reply\n"), 2_500)
          socket.once("close", () => clearTimeout(timer))
        })
      }, { allowHalfOpen: true })
      const lb = yield* Nib.start(["--idle-timeout", "1", "127.0.0.1:0", backend.spec()])
      const conn = yield* Client.open(lb.port)
      conn.socket.end("request\n")
      assert.strictEqual(yield* Effect.promise(() => conn.ended(8_000)), "eof")
      assert.strictEqual(conn.text(), "late reply\n")
    }))

  it.live("a slowloris holding every -x slot is cleared once idle_timeout is set at run time", () =>
    Effect.gen(function*() {
      const { backend, endings } = yield* echoing("a")
      const lb = yield* Nib.start([...AS_USER, "-x", "3", "-C", "127.0.0.1:0", "127.0.0.1:0", backend.spec()])
      const target = Nibctl.targetOf(lb)
      // Three clients take every slot and say nothing.
      const silent = yield* Effect.forEach([2, 3, 4], (n) => Client.hold(lb.port, Client.ip(n)))
      assert.deepStrictEqual(silent.map((s) => s.name), ["a", "a", "a"])
      // Without an idle timeout, a fourth client is not served.
      const fourth = yield* Client.opening(lb.port, { from: Client.ip(5) })
      assert.deepStrictEqual(yield* Effect.promise(() => fourth.firstLine(2_500)), { _tag: "Timeout", received: "" })
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout 1"), "Idle timeout: 1 seconds\n")
      // The silent three are closed; the fourth is served in their place.
      assert.deepStrictEqual(yield* Effect.promise(() => fourth.firstLine(4_000)), { _tag: "Line", line: "a" })
      for (const { conn } of silent) assert.strictEqual(yield* Effect.promise(() => conn.ended(1_000)), "eof")
      assert.isTrue(yield* Poll.waitUntil(() => endings.slice(0, 3).every((e) => e !== "open")))
      assert.deepStrictEqual(endings.slice(0, 3), ["eof", "eof", "eof"])
    }))
})

describe("idle_timeout: settings", () => {
  it.live("--idle-timeout, -O and the control port set it (< 0 is 0); write writes it only when it is not 0", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const dir = yield* Nib.tempDir
      const flag = yield* Nib.start([...AS_USER, "--idle-timeout", "3", "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      assert.strictEqual(yield* Nibctl.ask(Nibctl.targetOf(flag), "idle_timeout"), "Idle timeout: 3 seconds\n")

      const lb = yield* Nib.start([
        ...AS_USER,
        "-O",
        "idle_timeout 2",
        "-C",
        "127.0.0.1:0",
        "127.0.0.1:0",
        a.spec()
      ])
      const target = Nibctl.targetOf(lb)
      const file = Path.join(dir, "written.cfg")
      const written = (line: string) =>
        Effect.gen(function*() {
          assert.strictEqual(yield* Nibctl.ask(target, line), "")
          return Fs.readFileSync(file, "utf8").split("\n").filter((l) => l.startsWith("idle_timeout"))
        })
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout"), "Idle timeout: 2 seconds\n")
      assert.deepStrictEqual(yield* written(`write ${file}`), ["idle_timeout 2"])
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout 0"), "Idle timeout: 0 seconds\n")
      // pen's write has no idle_timeout line: a default configuration's write stays pen's.
      assert.deepStrictEqual(yield* written(`write ${file}`), [])
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout 7"), "Idle timeout: 7 seconds\n")
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout -3"), "Idle timeout: 0 seconds\n")
    }))

  it.live("-F sets it, and turning it off at run time keeps live connections; on again, they close", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const dir = yield* Nib.tempDir
      const file = Path.join(dir, "nib.cfg")
      Fs.writeFileSync(file, "idle_timeout 1\n")
      const lb = yield* Nib.start([...AS_USER, "-F", file, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      const target = Nibctl.targetOf(lb)
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout"), "Idle timeout: 1 seconds\n")
      const first = yield* Client.hold(lb.port)
      assert.strictEqual(yield* Effect.promise(() => first.conn.ended(4_000)), "eof")
      // Off: a silent connection stays.
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout 0"), "Idle timeout: 0 seconds\n")
      const second = yield* Client.hold(lb.port)
      yield* sleep(2_500)
      assert.isUndefined(second.conn.ending, "closed with the idle timeout off")
      // On again: its silence counts from then at the earliest.
      const on = performance.now()
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout 1"), "Idle timeout: 1 seconds\n")
      assert.strictEqual(yield* Effect.promise(() => second.conn.ended(4_000)), "eof")
      assert.isAtLeast(performance.now() - on, 800)
    }))

  it.live(
    "--workers 2: the command reaches every worker thread, and one started again after a crash",
    () =>
      Effect.gen(function*() {
        const a = yield* Backend.identity("a")
        // (the "workers" project gives every nib --workers 2 already)
        const two = Nib.WORKERS.length > 0 ? [] : ["--workers", "2"]
        const lb = yield* Nib.start([...AS_USER, ...two, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
        const target = Nibctl.targetOf(lb)
        // Connections held until both workers serve some (the kernel spreads them; at most 40).
        const held: Array<Client.Conn> = []
        while (held.length < 40) {
          held.push((yield* Client.hold(lb.port)).conn)
          const each = yield* workers(target)
          if (held.length >= 4 && each.every((w) => w.conn > 0)) break
        }
        assert.isTrue((yield* workers(target)).every((w) => w.conn > 0), "both workers serve")
        assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout 1"), "Idle timeout: 1 seconds\n")
        for (const conn of held) assert.strictEqual(yield* Effect.promise(() => conn.ended(5_000)), "eof")
        assert.deepStrictEqual((yield* workers(target)).map((w) => w.conn), [0, 0])

        // Worker 1 is started again: it must have the timeout too (it is in the settings it starts with).
        assert.strictEqual(yield* Nibctl.ask(target, "workers crash 1"), "")
        const restarted = yield* replyBecomes(target, "workers", (reply) => /^worker 1 .* restarts 1$/m.test(reply))
        assert.isTrue(restarted, "worker 1 was not started again")
        const later: Array<Client.Conn> = []
        while (later.length < 40) {
          later.push((yield* Client.hold(lb.port)).conn)
          if ((yield* workers(target))[1]!.conn > 0) break
        }
        assert.isAbove((yield* workers(target))[1]!.conn, 0, "worker 1 serves again")
        for (const conn of later) assert.strictEqual(yield* Effect.promise(() => conn.ended(5_000)), "eof")
      }),
    60_000
  )

  it.live("-U: --idle-timeout is the sessions' idle timeout; write writes it when it is not --udp-idle-timeout's", () =>
    Effect.gen(function*() {
      const a = yield* Udp.identity("a")
      const dir = yield* Nib.tempDir
      const file = Path.join(dir, "udp.cfg")
      const idleLines = () => Fs.readFileSync(file, "utf8").split("\n").filter((l) => l.startsWith("idle_timeout"))
      const lb = yield* Nib.start([
        ...AS_USER,
        "-U",
        "--idle-timeout",
        "1",
        "-C",
        "127.0.0.1:0",
        "127.0.0.1:0",
        a.spec()
      ])
      const target = Nibctl.targetOf(lb)
      assert.strictEqual(yield* Nibctl.ask(target, "idle_timeout"), "Idle timeout: 1 seconds\n")
      assert.strictEqual(yield* Nibctl.ask(target, `write ${file}`), "")
      assert.deepStrictEqual(idleLines(), ["idle_timeout 1"])
      const c = yield* Udp.client(lb.port, Client.ip(2))
      c.send("x")
      assert.deepStrictEqual(yield* Effect.promise(() => c.waitReplies(1)), ["a:x"])
      assert.isTrue(
        yield* replyBecomes(target, "servers", (reply) => reply.includes(" conn 0 ")),
        "the idle session never ended"
      )

      const plain = yield* Nib.start([...AS_USER, "-U", "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      const plainTarget = Nibctl.targetOf(plain)
      assert.strictEqual(yield* Nibctl.ask(plainTarget, "idle_timeout"), "Idle timeout: 60 seconds\n")
      assert.strictEqual(yield* Nibctl.ask(plainTarget, `write ${file}`), "")
      assert.deepStrictEqual(idleLines(), [])
      assert.strictEqual(yield* Nibctl.ask(plainTarget, "idle_timeout 0"), "Idle timeout: 0 seconds\n")
      assert.strictEqual(yield* Nibctl.ask(plainTarget, `write ${file}`), "")
      assert.deepStrictEqual(idleLines(), ["idle_timeout 0"])
    }))
})
