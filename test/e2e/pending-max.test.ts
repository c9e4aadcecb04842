/**
 * pen's `pending_max N` through the real process (pen-reference.md §4.16, §6.2): at most N connects to servers in
 * progress; beyond that a new client waits, unread, until one ends. A server whose connects hang is a listener whose
 * accept queue is full (test/utils/Backend.ts `unresponsive`: SYNs are dropped), with `-t 30` so that nothing times
 * out during a test; the connect in progress is ended by `close 0` instead. nib counts a connect on its server from
 * the moment it starts (`servers` shows `conn 1`), which is how the tests see that a second connect did (or did not)
 * start. Also `-O`, `-F`, at run time, `write`, and a client still greeting (`--accept-proxy`) holding no place. Every
 * wait is bounded; no assertion is about timing.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"

const { ip } = Client

/** As root, nib opens the control port only with `-u` (pen's rule). */
const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

/** Server 0's connections as `servers` shows them (its `conn N`). */
const connections = (target: string) =>
  Effect.map(Nibctl.ask(target, "servers"), (reply) => Number(/ conn (\d+) /.exec(reply)?.[1] ?? -1))

/** Polls the reply to `line` until `holds` (at most 5 s); whether it did. */
const replyUntil = (target: string, line: string, holds: (reply: string) => boolean) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 5_000
    for (;;) {
      if (holds(await Nibctl.askPromise(target, line))) return true
      if (Date.now() > deadline) return false
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })

/** Polls `servers` until server 0 shows `n` connections; whether it did. */
const connectionsReach = (target: string, n: number) =>
  replyUntil(target, "servers", (reply) => reply.includes(` conn ${n} `))

/**
 * nib with a control port over one server whose connects hang, `-t 30`, and an emergency server "e" that serves the
 * clients once that server is blacklisted.
 */
const hanging = (extra: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const e = yield* Backend.identity("e")
    const stuck = yield* Backend.unresponsive
    assert.isTrue(yield* stuck.fill(), "the unresponsive server's accept queue never filled")
    const lb = yield* Nib.start([
      ...AS_USER,
      "-C",
      "127.0.0.1:0",
      "-t",
      "30",
      ...extra,
      "-e",
      e.spec(),
      "127.0.0.1:0",
      stuck.spec()
    ])
    return { e, lb, target: Nibctl.targetOf(lb) }
  })

/** A client from 127.0.0.`n` that sends its line at once (nib must not read it while the client waits). */
const sending = (port: number, n: number, line: string) =>
  Effect.tap(Client.open(port, { from: ip(n) }), (conn) => Effect.sync(() => conn.socket.write(line)))

describe("pending_max: connects to servers in progress", () => {
  it.live("pending_max 1 (-O): a second client waits, unread, while the first connect hangs, and is served after it", () =>
    Effect.gen(function*() {
      const { e, lb, target } = yield* hanging(["-O", "pending_max 1"])
      const first = yield* sending(lb.port, 2, "one\n")
      assert.isTrue(yield* connectionsReach(target, 1), "the first client's connect never started")

      const second = yield* sending(lb.port, 3, "two\n")
      // Held: no connect starts for it, nothing reaches it (a generous while for nib to have taken it, had it).
      const early = yield* Effect.promise(() => second.firstLine(1_000))
      assert.strictEqual(early._tag, "Timeout")
      assert.strictEqual(yield* connections(target), 1)
      assert.strictEqual(e.accepted(), 0)

      // The first connect ends (its client closed), with server 0 blacklisted meanwhile: the second client is taken,
      // server 0 refuses it, and the emergency server gets it, with what it sent while it waited.
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 blacklist 60"), "")
      assert.strictEqual(yield* Nibctl.ask(target, "close 0"), "Forcibly closing connection 0\n")
      assert.isTrue(yield* Effect.promise(() => second.until(() => second.text() === "e\ntwo\n", 5_000)), second.text())
      assert.notStrictEqual(yield* Effect.promise(() => first.ended()), "timeout")
      assert.strictEqual(first.text(), "")
      assert.strictEqual(e.accepted(), 1)
    }))

  it.live("by default (pending_max 100) the second client's connect starts at once", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* hanging([])
      yield* sending(lb.port, 2, "one\n")
      assert.isTrue(yield* connectionsReach(target, 1), "the first client's connect never started")
      yield* sending(lb.port, 3, "two\n")
      assert.isTrue(yield* connectionsReach(target, 2), "the second client's connect never started")
    }))

  it.live("set at run time: pending_max 1 holds a second client, pending_max 2 lets it in at once", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* hanging([])
      // pen answers nothing to pending_max, set or not; below 1 is 1.
      assert.strictEqual(yield* Nibctl.ask(target, "pending_max 0"), "")
      assert.strictEqual(yield* Nibctl.ask(target, "pending_max"), "")
      yield* sending(lb.port, 2, "one\n")
      assert.isTrue(yield* connectionsReach(target, 1), "the first client's connect never started")
      const second = yield* sending(lb.port, 3, "two\n")
      assert.strictEqual((yield* Effect.promise(() => second.firstLine(1_000)))._tag, "Timeout")
      assert.strictEqual(yield* connections(target), 1)
      // Raised (with --workers, in the thread that holds the client too): its connect starts.
      assert.strictEqual(yield* Nibctl.ask(target, "pending_max 2"), "")
      assert.isTrue(yield* connectionsReach(target, 2), "the waiting client's connect never started")
    }))

  it.live("a client still greeting (--accept-proxy, its header not sent) holds no place: pending_max 1 serves the next", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["--accept-proxy", "-O", "pending_max 1", "127.0.0.1:0", a.spec()])
      // Sends nothing: nib waits for its PROXY header (5 s at most).
      const silent = yield* Client.open(lb.port, { from: ip(2) })
      const next = yield* sending(lb.port, 3, "PROXY TCP4 192.0.2.1 192.0.2.2 1111 80\r\n")
      assert.deepStrictEqual(yield* Effect.promise(() => next.firstLine(3_000)), { _tag: "Line", line: "a" })
      assert.strictEqual(silent.text(), "")
    }))

  it.live("-F sets pending_max and idlers; write writes them back when they are not pen's defaults, as commands", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const cfg = Path.join(dir, "pen.cfg")
      Fs.writeFileSync(cfg, "pending_max 7\nidlers 1\n")
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "-F", cfg, "127.0.0.1:0", a.spec()])
      const target = Nibctl.targetOf(lb)
      assert.isTrue(yield* replyUntil(target, "idlers", (reply) => reply === "Idlers: 1/1\n"), "no idle connection")
      assert.strictEqual(a.open(), 1)

      const written = Path.join(dir, "written.cfg")
      assert.strictEqual(yield* Nibctl.ask(target, `write ${written}`), "")
      const lines = Fs.readFileSync(written, "utf8").split("\n")
      // After pen's lines (which end with `no prio`), as the TLS settings are.
      assert.deepStrictEqual(lines.slice(lines.indexOf("no prio")), ["no prio", "pending_max 7", "idlers 1", ""])

      // Back at pen's defaults, the file is pen's.
      assert.strictEqual(yield* Nibctl.ask(target, "pending_max 100"), "")
      assert.strictEqual(yield* Nibctl.ask(target, "idlers 0"), "Idlers: 0/0\n")
      assert.strictEqual(yield* Nibctl.ask(target, `write ${written}`), "")
      const again = Fs.readFileSync(written, "utf8").split("\n")
      assert.deepStrictEqual(again.slice(again.indexOf("no prio")), ["no prio", ""])
      assert.isTrue(yield* Poll.waitUntil(() => a.open() === 0), `idlers 0 left ${a.open()} open`)
    }))
})
