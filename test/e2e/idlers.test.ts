/**
 * `idlers N` through the real process: N connections to servers opened before any client and kept idle; a new client
 * whose server has one is served over it, and it is replaced. pen 0.34.1 segfaults on `idlers N` (pen-reference.md
 * §6.2), so there is no side-by-side test: these are nib's own rules (README, "Idle server connections").
 *
 * The servers here number their connections as they accept them and greet each with `hello K` (a banner, sent before
 * any client exists), then answer each chunk with `K:chunk`: a client's reply says which connection served it, so
 * "over an idle connection" is a count of accepts, not a timing. With `--workers 2` (the "workers" project) each
 * thread keeps its share, and a client takes one of its own thread's. Every wait is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Net from "node:net"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"

const { ip } = Client

/** As root, nib opens the control port only with `-u` (pen's rule). */
const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

/** A server that numbers its connections (from 1) and greets each with `hello K`; its sockets, to close them. */
const numbered = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ port: number; accepted: () => number; open: () => number; closeAll: () => void; close: () => void }>(
      (resolve) => {
        const sockets = new Set<Net.Socket>()
        let accepted = 0
        const server = Net.createServer((socket) => {
          const k = ++accepted
          sockets.add(socket)
          socket.on("error", () => {})
          socket.once("close", () => sockets.delete(socket))
          socket.write(`hello ${k}\n`)
          socket.on("data", (chunk) => socket.write(`${k}:${chunk}`))
        })
        server.listen({ host: "127.0.0.1", port: 0 }, () =>
          resolve({
            port: (server.address() as Net.AddressInfo).port,
            accepted: () => accepted,
            open: () => sockets.size,
            closeAll: () => sockets.forEach((socket) => socket.destroy()),
            close: () => {
              server.close()
              sockets.forEach((socket) => socket.destroy())
            }
          }))
      }
    )
  ),
  (server) => Effect.sync(server.close)
)

/** Polls the reply to `line` until it is `expected` (at most 5 s); whether it was. */
const replyBecomes = (target: string, line: string, expected: string) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 5_000
    for (;;) {
      if ((await Nibctl.askPromise(target, line)) === expected) return true
      if (Date.now() > deadline) return false
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })

/** One client from 127.0.0.`n`: sends `ping`, and returns which connection K answered (`hello K`, then `K:ping`). */
const served = (port: number, n: number) =>
  Effect.gen(function*() {
    const conn = yield* Client.open(port, { from: ip(n) })
    conn.socket.write("ping")
    const answered = yield* Effect.promise(() => conn.until(() => /^hello (\d+)\n\1:ping$/.test(conn.text()), 5_000))
    assert.isTrue(answered, `client ${n} got ${JSON.stringify(conn.text())}`)
    const k = Number(/^hello (\d+)/.exec(conn.text())![1])
    conn.close()
    return k
  }).pipe(Effect.scoped)

describe("idlers: idle server connections", () => {
  it.live("idlers 2: two open before any client; a client is served over one, with its banner; it is replaced", () =>
    Effect.gen(function*() {
      const s = yield* numbered
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", `127.0.0.1:${s.port}`])
      const target = Nibctl.targetOf(lb)
      assert.strictEqual(yield* Nibctl.ask(target, "idlers"), "Idlers: 0/0\n")
      // pen's reply: the idle connections open now (none has connected yet, or some have), then how many are wanted.
      assert.match(yield* Nibctl.ask(target, "idlers 2"), /^Idlers: [0-2]\/2\n$/)
      assert.isTrue(yield* replyBecomes(target, "idlers", "Idlers: 2/2\n"), "the idle connections never opened")
      assert.strictEqual(s.accepted(), 2)
      // Idle connections are not clients: no connection counted on the server.
      assert.match(yield* Nibctl.ask(target, "servers"), / conn 0 /)

      // The client's server has idle connections: it takes one (the server accepted nothing new for it).
      const k = yield* served(lb.port, 2)
      assert.include([1, 2], k, `served by connection ${k}, not an idle one`)
      // It is replaced.
      assert.isTrue(yield* Poll.waitUntil(() => s.accepted() === 3 && s.open() === 2), `accepted ${s.accepted()}`)
      assert.isTrue(yield* replyBecomes(target, "idlers", "Idlers: 2/2\n"), "the taken connection was not replaced")
      // The next client too is served over an idle connection (one of the two open now, never the one just used).
      const next = yield* served(lb.port, 3)
      assert.include([1, 2, 3], next)
      assert.notStrictEqual(next, k)
    }))

  it.live("a server that closes its idle connections: they are dropped and replaced, and clients are served", () =>
    Effect.gen(function*() {
      const s = yield* numbered
      const lb = yield* Nib.start([
        ...AS_USER,
        "-C",
        "127.0.0.1:0",
        "-O",
        "idlers 2",
        "127.0.0.1:0",
        `127.0.0.1:${s.port}`
      ])
      const target = Nibctl.targetOf(lb)
      assert.isTrue(yield* replyBecomes(target, "idlers", "Idlers: 2/2\n"), "the idle connections never opened")
      assert.strictEqual(s.accepted(), 2)

      // The server closes both (a keep-alive timeout, a restart): nib sees it, drops them, opens two more.
      s.closeAll()
      assert.isTrue(
        yield* Poll.waitUntil(() => s.accepted() === 4 && s.open() === 2, 5_000),
        `accepted ${s.accepted()}, open ${s.open()}`
      )
      assert.isTrue(yield* replyBecomes(target, "idlers", "Idlers: 2/2\n"), "the dropped connections were not replaced")
      // A client gets one of the new ones, never a closed one.
      assert.include([3, 4], yield* served(lb.port, 2))
    }))

  it.live("spread over the servers; none to a blacklisted server (moved away); idlers 0 closes them all", () =>
    Effect.gen(function*() {
      const [a, b] = [yield* numbered, yield* numbered]
      const lb = yield* Nib.start([
        ...AS_USER,
        "-C",
        "127.0.0.1:0",
        "127.0.0.1:0",
        `127.0.0.1:${a.port}`,
        `127.0.0.1:${b.port}`
      ])
      const target = Nibctl.targetOf(lb)
      yield* Nibctl.ask(target, "idlers 2")
      assert.isTrue(yield* Poll.waitUntil(() => a.open() === 1 && b.open() === 1), `a ${a.open()}, b ${b.open()}`)

      // Server 0 blacklisted: its idle connection is closed, and one opened to server 1 instead.
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 blacklist 60"), "")
      assert.isTrue(
        yield* Poll.waitUntil(() => a.open() === 0 && b.open() === 2, 5_000),
        `a ${a.open()}, b ${b.open()}`
      )
      assert.isTrue(yield* replyBecomes(target, "idlers", "Idlers: 2/2\n"))

      assert.strictEqual(yield* Nibctl.ask(target, "idlers 0"), "Idlers: 0/0\n")
      assert.isTrue(yield* Poll.waitUntil(() => a.open() === 0 && b.open() === 0), `a ${a.open()}, b ${b.open()}`)
    }))

  it.live("bad values are refused and change nothing; UDP mode (-U) has no idle connections", () =>
    Effect.gen(function*() {
      const s = yield* numbered
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "-x", "10", "127.0.0.1:0", `127.0.0.1:${s.port}`])
      const target = Nibctl.targetOf(lb)
      assert.strictEqual(yield* Nibctl.ask(target, "idlers -1"), "idlers: the value '-1' must not be negative\n")
      assert.strictEqual(yield* Nibctl.ask(target, "idlers x"), "idlers: the value 'x' is not a whole number\n")
      assert.strictEqual(
        yield* Nibctl.ask(target, "idlers 11"),
        "idlers: at most conn_max (10) idle server connections\n"
      )
      assert.strictEqual(yield* Nibctl.ask(target, "idlers"), "Idlers: 0/0\n")
      assert.strictEqual(s.accepted(), 0)

      const udp = yield* Nib.start([...AS_USER, "-U", "-C", "127.0.0.1:0", "127.0.0.1:0", `127.0.0.1:${s.port}`])
      const udpTarget = Nibctl.targetOf(udp)
      assert.strictEqual(
        yield* Nibctl.ask(udpTarget, "idlers 1"),
        "idlers: idle server connections are for TCP, not UDP mode (-U)\n"
      )
      assert.strictEqual(yield* Nibctl.ask(udpTarget, "idlers"), "Idlers: 0/0\n")
    }))
})
