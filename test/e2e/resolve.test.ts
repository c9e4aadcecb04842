/**
 * Names that follow DNS (`--resolve-interval`, `--resolver`) with a real DNS server: dnsmasq (test/utils/Dnsmasq.ts)
 * answers `web.test` with 127.0.0.2, then 127.0.0.3, where two identity servers listen on one port. nib asks that
 * dnsmasq alone, every second: new connections follow the name, one opened before goes on with its server (bytes both
 * ways), a name that stops resolving keeps its last address and is logged once, and with worker threads the change
 * reaches every thread.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Dnsmasq from "../utils/Dnsmasq.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"

if (Dnsmasq.DNSMASQ === undefined) {
  console.warn("test/e2e/resolve.test.ts: SKIPPED, not installed: dnsmasq (.ci/run installs it)")
}

const NAME = "web.test"
const isRoot = process.getuid?.() === 0
// nib will not open a control port as root without -u.
const AS_USER: ReadonlyArray<string> = isRoot ? ["-u", "root"] : []

/**
 * Identity servers "two" on 127.0.0.2 and "three" on 127.0.0.3, on one port (the first's, found free; tried again, at
 * most 5 times, when the other address has it taken).
 */
const twoServers = Effect.gen(function*() {
  for (let attempt = 1; attempt <= 5; attempt++) {
    const two = yield* Backend.identity("two", 0, "127.0.0.2")
    const three = yield* Effect.promise(() =>
      Backend.listenIdentity("three", two.port, "127.0.0.3").then((b) => b, () => undefined)
    )
    if (three !== undefined) {
      yield* Effect.addFinalizer(() => Effect.promise(three.close))
      return { two, three, port: two.port }
    }
    yield* Effect.promise(two.close)
  }
  return yield* Effect.die(new Error("no port free on both 127.0.0.2 and 127.0.0.3"))
})

/** Asks through nib until the answer is `name` (at most 10 s): whether it came. */
const reaches = (port: number, name: string) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 10_000
    while ((await Client.askName(port)) !== name) {
      if (Date.now() > deadline) return false
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return true
  })

/** How many times `text` is on the balancer's stderr. */
const count = (lb: Nib.Balancer, text: string) => lb.stderr().split(text).length - 1

/** Writes `line` on a connection held through nib, and waits (at most 5 s) for its echo after what came before. */
const echoes = (conn: Client.Conn, before: string, line: string) =>
  Effect.promise(async () => {
    conn.socket.write(line)
    await conn.until(() => conn.text() === before + line, 5_000)
    return conn.text()
  })

const CHANGED = `server 0: ${NAME} changed address: 127.0.0.2 -> 127.0.0.3`

describe.skipIf(Dnsmasq.DNSMASQ === undefined)(
  "names that follow DNS (dnsmasq, --resolver, --resolve-interval)",
  () => {
    it.live("a changed address reaches new connections; a connection opened before goes on, both ways", () =>
      Effect.gen(function*() {
        const dir = yield* Nib.tempDir
        const dns = yield* Dnsmasq.start(dir, { [NAME]: "127.0.0.2" })
        const { port, three, two } = yield* twoServers
        const lb = yield* Nib.start([
          "--resolver",
          dns.address,
          "--resolve-interval",
          "1",
          "127.0.0.1:0",
          `${NAME}:${port}`
        ])
        assert.strictEqual(yield* Client.ask(lb.port), "two")
        const held = yield* Client.hold(lb.port)
        assert.strictEqual(held.name, "two")

        yield* dns.set(NAME, "127.0.0.3")
        assert.isTrue(yield* reaches(lb.port, "three"), `new connections never reached 127.0.0.3:\n${lb.stderr()}`)
        yield* Nib.logged(lb, CHANGED)
        assert.deepStrictEqual(yield* Client.askAll(lb.port, ["127.0.0.1", "127.0.0.4", "127.0.0.5"]), [
          "three",
          "three",
          "three"
        ])
        // The connection opened before the change is still with "two", and bytes flow both ways.
        assert.strictEqual(yield* echoes(held.conn, "two\n", "still here\n"), "two\nstill here\n")
        assert.strictEqual(two.open(), 1)
        assert.isAbove(three.accepted(), 0)
        assert.strictEqual(count(lb, CHANGED), 1)
      }))

    it.live("a name that stops resolving keeps its last address, said once; and once again when it resolves again", () =>
      Effect.gen(function*() {
        const dir = yield* Nib.tempDir
        const dns = yield* Dnsmasq.start(dir, { [NAME]: "127.0.0.2", "other.test": "127.0.0.9" })
        const { port } = yield* twoServers
        const lb = yield* Nib.start([
          "--resolver",
          dns.address,
          "--resolve-interval",
          "1",
          "127.0.0.1:0",
          `${NAME}:${port}`
        ])
        const held = yield* Client.hold(lb.port)
        assert.strictEqual(held.name, "two")

        yield* dns.set(NAME, undefined)
        const gone = `server 0: ${NAME} no longer resolves (ENOTFOUND); keeping its last address 127.0.0.2`
        yield* Nib.logged(lb, gone, 10_000)
        // Three more resolutions (queries dnsmasq got from nib), each failing: still one line, and still "two".
        yield* Dnsmasq.queried(dns, NAME, dns.queries(NAME) + 3)
        assert.strictEqual(count(lb, gone), 1)
        assert.strictEqual(yield* Client.ask(lb.port), "two")
        assert.strictEqual(yield* echoes(held.conn, "two\n", "ping\n"), "two\nping\n")

        yield* dns.set(NAME, "127.0.0.3")
        assert.isTrue(yield* reaches(lb.port, "three"), lb.stderr())
        yield* Nib.logged(lb, `server 0: ${NAME} resolves again`)
        yield* Nib.logged(lb, CHANGED)
        yield* Dnsmasq.queried(dns, NAME, dns.queries(NAME) + 2)
        assert.strictEqual(count(lb, `server 0: ${NAME} resolves again`), 1)
        assert.strictEqual(count(lb, gone), 1)
      }))

    it.live("with worker threads, the change reaches every thread: each one's new connections go to 127.0.0.3", () =>
      Effect.gen(function*() {
        const dir = yield* Nib.tempDir
        const dns = yield* Dnsmasq.start(dir, { [NAME]: "127.0.0.2" })
        const { port } = yield* twoServers
        // Two workers (the `workers` project gives every nib --workers 2 already).
        const workers = Nib.WORKERS.length > 0 ? [] : ["--workers", "2"]
        const lb = yield* Nib.start([
          ...workers,
          ...AS_USER,
          "-C",
          "127.0.0.1:0",
          "--resolver",
          dns.address,
          "--resolve-interval",
          "1",
          "127.0.0.1:0",
          `${NAME}:${port}`
        ])
        assert.match(lb.stderr(), /, 2 workers\)/)
        const before = yield* Effect.forEach(Array.from({ length: 8 }), () => Client.hold(lb.port))
        assert.isTrue(before.every((h) => h.name === "two"))

        yield* dns.set(NAME, "127.0.0.3")
        yield* Nib.logged(lb, CHANGED, 10_000)
        // 24 connections held from distinct source ports: the kernel spreads them over both threads' sockets.
        const after = yield* Effect.forEach(Array.from({ length: 24 }), () => Client.hold(lb.port))
        assert.deepStrictEqual(after.filter((h) => h.name !== "three").map((h) => h.name), [])
        const threads = (yield* Nibctl.ask(Nibctl.targetOf(lb), "workers")).trim().split("\n").map((line) => {
          const m = /^worker (\d+) thread -?\d+ conn (-?\d+) /.exec(line)
          assert.isNotNull(m, line)
          return Number(m![2])
        })
        assert.strictEqual(threads.length, 2)
        assert.isTrue(threads.every((n) => n > 0), `each thread serves some of the 32: ${threads.join(", ")}`)
        // The connections opened before the change go on with "two".
        for (const h of before) assert.strictEqual(yield* echoes(h.conn, "two\n", "x\n"), "two\nx\n")
        assert.strictEqual(count(lb, CHANGED), 1)
      }))
  }
)
