/**
 * nib as a Unix process: SIGTERM and the pid file, and detaching without `-f` (pen's daemon mode).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"

const { ip } = Client

describe("signals and the pid file", () => {
  it.live("SIGTERM: exit 0, pid file (digits, no newline) removed, live connections closed, port free again", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const pidPath = Path.join(dir, "nib.pid")
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["-p", pidPath, "127.0.0.1:0", a.spec()])

      const text = Fs.readFileSync(pidPath, "utf8")
      assert.match(text, /^\d+$/)
      assert.strictEqual(Number(text), lb.pid)

      const held = yield* Client.hold(lb.port, ip(2))
      assert.strictEqual(held.name, "a")

      const status = yield* Effect.promise(() => Nib.stop(lb))
      assert.deepStrictEqual(status, { code: 0, signal: null }, lb.stderr())
      assert.isFalse(Fs.existsSync(pidPath))
      assert.notStrictEqual(yield* Effect.promise(() => held.conn.ended(5_000)), "timeout")

      // Nothing listens on the port any more: we can bind it ourselves.
      const again = yield* Backend.identity("again", lb.port)
      assert.strictEqual(again.port, lb.port)
    }))

  it.live("SIGTERM with a connection being dialed and another waiting for a slot (-x): exit 0, all clients closed", () =>
    Effect.gen(function*() {
      const stuck = yield* Backend.unresponsive
      assert.isTrue(yield* stuck.fill(), "the unresponsive server's accept queue never filled")
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["-x", "2", "-t", "10", "127.0.0.1:0", stuck.spec(), a.spec()])

      // Client 2 is relayed to server 1; client 3 is sent to server 0, whose connect hangs; client 4 waits for a slot.
      const relayed = yield* Client.hold(lb.port, ip(2))
      assert.strictEqual(relayed.name, "a")
      const dialing = yield* Client.open(lb.port, { from: ip(3) })
      const waiting = yield* Client.open(lb.port, { from: ip(4) })
      assert.strictEqual((yield* Effect.promise(() => waiting.firstLine(300)))._tag, "Timeout")

      const status = yield* Effect.promise(() => Nib.stop(lb))
      assert.deepStrictEqual(status, { code: 0, signal: null }, lb.stderr())
      for (const conn of [relayed.conn, dialing, waiting]) {
        assert.notStrictEqual(yield* Effect.promise(() => conn.ended(5_000)), "timeout")
      }
      assert.strictEqual(dialing.received, 0)
      assert.strictEqual(waiting.received, 0)
    }))
})

describe("without -f (daemon)", () => {
  it.live("returns 0 once the detached child listens; the child serves, writes its pid, and stops on SIGTERM", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const pidPath = Path.join(dir, "nib.pid")
      const a = yield* Backend.identity("a")
      const port = yield* Backend.freePort

      const parent = yield* Nib.run(["-p", pidPath, `127.0.0.1:${port}`, a.spec()])
      // Read the child's pid first, so the child is stopped even if an assertion below fails.
      const text = Fs.existsSync(pidPath) ? Fs.readFileSync(pidPath, "utf8") : ""
      if (/^\d+$/.test(text)) yield* Nib.killOnClose(Number(text))
      assert.deepStrictEqual(
        { code: parent.code, timedOut: parent.timedOut },
        { code: 0, timedOut: false },
        parent.stderr
      )
      assert.match(text, /^\d+$/)
      const pid = Number(text)
      assert.isTrue(Nib.isAlive(pid))

      assert.deepStrictEqual(yield* Client.askAll(port, [ip(2), ip(2)]), ["a", "a"])

      assert.isTrue(yield* Effect.promise(() => Nib.stopPid(pid)), "SIGTERM was not enough")
      assert.isFalse(Fs.existsSync(pidPath))
      const again = yield* Backend.identity("again", port)
      assert.strictEqual(again.port, port)
    }))

  it.live("exits non-zero with the child's error when the child cannot bind", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const pidPath = Path.join(dir, "nib.pid")
      const taken = yield* Backend.identity("taken")
      const parent = yield* Nib.run(["-p", pidPath, taken.spec(), `127.0.0.1:${yield* Backend.freePort}`])
      if (Fs.existsSync(pidPath)) yield* Nib.killOnClose(Number(Fs.readFileSync(pidPath, "utf8")))

      assert.isFalse(parent.timedOut)
      assert.notStrictEqual(parent.code, 0)
      assert.notStrictEqual(parent.code, null)
      assert.match(parent.stderr, /^nib: .*can't bind local address/m)
      assert.isFalse(Fs.existsSync(pidPath))
      // The port's owner is untouched.
      assert.strictEqual(yield* Client.ask(taken.port), "taken")
    }))
})
