/**
 * Servers that are down, through the real process: failover and blacklisting (pen HEAD's behaviour on a refused
 * connect, section 4.14 of the reference), the connect timeout (`-t`), recovery after `-b`, the emergency server
 * (`-e`), stubborn mode (`-s`), and every server down. A "dead" server is a port where nothing listens.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import { CLOSED } from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"

const { ip } = Client

describe("failover and blacklisting", () => {
  it.live("a refused server is blacklisted, its client fails over and stays there, and -b lets the server back", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const deadPort = yield* Backend.freePort
      const c = yield* Backend.identity("c")
      const lb = yield* Nib.start(["-b", "2", "127.0.0.1:0", a.spec(), `127.0.0.1:${deadPort}`, c.spec()])

      // The first new client is sent to server 1, which refuses: it is served by the next server, 2.
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "c")

      // Server 1 comes back at once, but it is blacklisted for 2 s: the cursor (2, 0, then 1) skips it.
      const b = yield* Backend.identity("b", deadPort)
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(3), ip(4), ip(5)]), ["c", "a", "c"])
      // The client that failed over is pinned to the server that worked.
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "c")
      assert.strictEqual(b.accepted(), 0)

      // After the blacklist time, new clients reach server 1 again (the cursor is at 2: 0, then 1).
      yield* Effect.sleep("2500 millis")
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(6), ip(7)]), ["a", "b"])
      assert.strictEqual(b.accepted(), 1)
      // Failover pins for good: the first client stays on server 2, although its first server is back.
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2), ip(7)]), ["c", "b"])
    }))

  it.live("a sticky client whose server died fails over to the next server and is re-pinned there", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start(["127.0.0.1:0", a.spec(), b.spec()])

      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "b")
      yield* Effect.promise(b.close)
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2), ip(2)]), ["a", "a"])
    }))
})

describe("connect timeout (-t)", () => {
  it.live("a server that does not accept within -t is blacklisted, and the client is served by the next one", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const stuck = yield* Backend.unresponsive
      assert.isTrue(yield* stuck.fill(), "the unresponsive server's accept queue never filled")
      const lb = yield* Nib.start(["-t", "1", "127.0.0.1:0", a.spec(), stuck.spec()])

      // The first new client is sent to server 1, whose connect hangs: nib waits, then fails over to server 0.
      const conn = yield* Client.opening(lb.port, { from: ip(2) })
      assert.strictEqual((yield* Effect.promise(() => conn.firstLine(300)))._tag, "Timeout")
      assert.deepStrictEqual(yield* Effect.promise(() => conn.firstLine(10_000)), { _tag: "Line", line: "a" })
      // Server 1 is blacklisted (the cursor's turn for it goes to 0), and client 2 is pinned to server 0.
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(3), ip(4), ip(2)]), ["a", "a", "a"])
      assert.strictEqual(a.accepted(), 4)
    }))
})

describe("emergency server (-e)", () => {
  it.live("is used only when every server is down, and its clients are not pinned to it", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const deadPort = yield* Backend.freePort
      const e = yield* Backend.identity("e")
      const lb = yield* Nib.start(["-b", "1", "-e", e.spec(), "127.0.0.1:0", a.spec(), `127.0.0.1:${deadPort}`])

      // Server 1 refuses; server 0 is up, so the emergency server is not needed.
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
      assert.strictEqual(e.accepted(), 0)

      // Server 0 dies too: the sticky client and a new one both end up on the emergency server.
      yield* Effect.promise(a.close)
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2), ip(3)]), ["e", "e"])

      // Server 0 comes back; once the blacklist lapses the client goes to a regular server again, not to -e.
      const again = yield* Backend.identity("a", a.port)
      yield* Effect.sleep("1500 millis")
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
      assert.strictEqual(again.accepted(), 1)
    }))
})

describe("stubborn mode (-s)", () => {
  it.live("closes a sticky client whose server is down instead of failing over; new clients avoid that server", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start(["-s", "127.0.0.1:0", a.spec(), b.spec()])

      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "b")
      yield* Effect.promise(b.close)
      // The client stays pinned to server 1, which is down (then blacklisted): closed each time.
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2), ip(2)]), [CLOSED, CLOSED])
      // New clients: the cursor gives 0, then skips the blacklisted 1 for 0 again.
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(3), ip(4)]), ["a", "a"])
      assert.strictEqual(a.accepted(), 2)
    }))
})

describe("every server down, no emergency server", () => {
  it.live("the client is closed without data (EOF or reset)", () =>
    Effect.gen(function*() {
      const dead1 = yield* Backend.freePort
      const dead2 = yield* Backend.freePort
      const lb = yield* Nib.start(["127.0.0.1:0", `127.0.0.1:${dead1}`, `127.0.0.1:${dead2}`])

      // First by failing over from one refusal to the other, then with both blacklisted (no server at all).
      for (const from of [ip(2), ip(3), ip(2)]) {
        const conn = yield* Client.opening(lb.port, { from })
        const first = yield* Effect.promise(() => conn.firstLine(5_000))
        assert.strictEqual(first._tag, "Closed", `client ${from}: ${JSON.stringify(first)}`)
        assert.strictEqual(conn.received, 0)
      }
      // nib itself is still there.
      assert.strictEqual(lb.child.exitCode, null)
    }))
})
