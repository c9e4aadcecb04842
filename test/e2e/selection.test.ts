/**
 * Server selection through the real process: pen's sticky client table and roundrobin cursor, `-r`, soft and hard
 * limits, and admission control (`-x`). Backends answer each connection with their name (test/utils/Backend.ts);
 * distinct clients are distinct 127.0.0.N source addresses.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"

const { ip } = Client

describe("default mode (sticky by client address)", () => {
  it.live("new clients take servers 1, 2, 0 in turn, and each client stays on its server", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const c = yield* Backend.identity("c")
      const lb = yield* Nib.start(["127.0.0.1:0", a.spec(), b.spec(), c.spec()])

      // pen's cursor starts at 0 and pre-increments: the first new client gets server 1.
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2), ip(3), ip(4)]), ["b", "c", "a"])
      // Returning clients, in another order, each get their own server again.
      assert.deepStrictEqual(
        yield* Client.askAll(lb.port, [ip(4), ip(2), ip(3), ip(2), ip(4), ip(3)]),
        ["a", "b", "c", "b", "a", "c"]
      )
      // Sticky hits do not move the cursor: the next new client continues where the last new one left it.
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(5), ip(6)]), ["b", "c"])
    }))

  it.live("-r: the same client address alternates between the servers", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start(["-r", "127.0.0.1:0", a.spec(), b.spec()])

      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2), ip(2), ip(2), ip(2)]), ["b", "a", "b", "a"])
      // Another address continues the same cursor (testsuite.sh: IP2's first answer equals IP1's first).
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(3), ip(2)]), ["b", "a"])
    }))
})

describe("soft and hard limits (host:port:maxc:hard)", () => {
  it.live("a sticky client gets up to the hard limit, then fails over and is re-pinned to the next server", () =>
    Effect.gen(function*() {
      const b = yield* Backend.identity("b")
      const a = yield* Backend.identity("a")
      // Server 1 (a) has soft limit 2 and hard limit 4; the first new client is sent to server 1.
      const lb = yield* Nib.start(["127.0.0.1:0", b.spec(), a.spec(":2:4")])

      const held: Array<Client.Conn> = []
      const names: Array<string> = []
      for (let i = 0; i < 4; i++) {
        const { conn, name } = yield* Client.hold(lb.port, ip(2))
        held.push(conn)
        names.push(name)
      }
      assert.deepStrictEqual(names, ["a", "a", "a", "a"])
      assert.strictEqual(a.open(), 4)

      // The fifth is over the hard limit: it fails over to server 0, and the client is pinned there from now on.
      const fifth = yield* Client.hold(lb.port, ip(2))
      assert.strictEqual(fifth.name, "b")
      const sixth = yield* Client.hold(lb.port, ip(2))
      assert.strictEqual(sixth.name, "b")
      assert.strictEqual(a.accepted(), 4)

      // Even once server 1 has room again, the client stays on the server it failed over to.
      for (const conn of held) conn.close()
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "b")
    }))

  it.live("a server at its soft limit refuses new (non-sticky) clients but still takes its sticky ones", () =>
    Effect.gen(function*() {
      const b = yield* Backend.identity("b")
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["127.0.0.1:0", b.spec(), a.spec(":2:4")])

      // Client 2 puts server 1 (a) at its soft limit.
      const first = yield* Client.hold(lb.port, ip(2))
      const second = yield* Client.hold(lb.port, ip(2))
      assert.deepStrictEqual([first.name, second.name], ["a", "a"])

      // The cursor gives client 3 server 0 and client 4 server 1, which is full for a new client: it fails over to 0.
      const third = yield* Client.hold(lb.port, ip(3))
      const fourth = yield* Client.hold(lb.port, ip(4))
      assert.deepStrictEqual([third.name, fourth.name], ["b", "b"])
      assert.strictEqual(a.accepted(), 2)

      // Client 2 is sticky to server 1, so it may go past the soft limit (up to the hard one).
      const again = yield* Client.hold(lb.port, ip(2))
      assert.strictEqual(again.name, "a")
      // Client 4 was pinned to the server that took it.
      assert.strictEqual(yield* Client.ask(lb.port, ip(4)), "b")
    }))
})

describe("admission control (-x)", () => {
  it.live("-x 2: a third client is accepted but not served until one of two live connections ends", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["-x", "2", "127.0.0.1:0", a.spec()])

      const one = yield* Client.hold(lb.port, ip(2))
      const two = yield* Client.hold(lb.port, ip(3))
      assert.deepStrictEqual([one.name, two.name], ["a", "a"])

      // The TCP connect succeeds (the kernel or nib accepts it), but no server answers it.
      const third = yield* Client.open(lb.port, { from: ip(4) })
      const early = yield* Effect.promise(() => third.firstLine(500))
      assert.strictEqual(early._tag, "Timeout")
      assert.strictEqual(a.accepted(), 2)

      // One live connection ends: the waiting client is served.
      one.conn.close()
      const late = yield* Effect.promise(() => third.firstLine(5_000))
      assert.deepStrictEqual(late, { _tag: "Line", line: "a" })
      assert.strictEqual(a.accepted(), 3)
      // And it is a working connection.
      third.socket.write("ping\n")
      assert.isTrue(yield* Effect.promise(() => third.until(() => third.text() === "a\nping\n", 5_000)))
    }))

  it.live(
    "-h --hash-method consistent: a fifth server takes clients only for itself; pen's hash moves most of them",
    () =>
      Effect.gen(function*() {
        const servers = yield* Effect.forEach(["a", "b", "c", "d", "e"], (name) => Backend.identity(name))
        const clients = Array.from({ length: 40 }, (_, i) => `127.0.2.${i + 1}`)
        const names = (flags: ReadonlyArray<string>, n: number) =>
          Effect.scoped(
            Effect.gen(function*() {
              const lb = yield* Nib.start([...flags, "127.0.0.1:0", ...servers.slice(0, n).map((s) => s.spec())])
              return yield* Effect.promise(() => Client.askNames(lb.port, clients))
            })
          )
        const consistent = ["-h", "--hash-method", "consistent"]
        const four = yield* names(consistent, 4)
        const five = yield* names(consistent, 5)
        const moved = clients.filter((_, i) => four[i] !== five[i])
        assert.isTrue(moved.length > 0 && moved.length <= 16, `${moved.length} of 40 clients moved`)
        for (const [i, client] of clients.entries()) {
          if (four[i] !== five[i]) assert.strictEqual(five[i], "e", `${client} moved from ${four[i]} to ${five[i]}`)
        }
        const penFour = yield* names(["-h"], 4)
        const penFive = yield* names(["-h"], 5)
        const penMoved = clients.filter((_, i) => penFour[i] !== penFive[i]).length
        assert.isAbove(penMoved, 20, `pen's hash moved only ${penMoved} of 40`)
      }),
    60_000
  )
})
