/**
 * `--peers`: nibs sharing the sticky table and the operator's actions through a real redis-server. Each test starts
 * its own Redis on a free port (no persistence) and its own nibs; a pin is looked at through `/api/explain`, which
 * reads the sticky table without touching it. The nibs list their servers in opposite orders: peers name servers by
 * address, not by index.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Admin from "../utils/Admin.ts"
import * as Backend from "../utils/Backend.ts"
import * as Certs from "../utils/Certs.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Redis from "../utils/Redis.ts"

const { ip } = Client

/** pen refuses a control port to root without -u: as root, the test names root itself. */
const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

Redis.warnIfMissing("test/e2e/peers.test.ts")

/** The server index the sticky table of the nib at `base` has for `client`, or undefined. */
const stickyOf = (base: string, client: string) =>
  Effect.map(
    Admin.call(base, "GET", `/api/explain?client=${client}`),
    (reply) => reply.json?.sticky?.server as number | undefined
  )

/** Polls until the nib at `base` has `client` pinned to `server` (bounded); whether it did. */
const pinnedWithin = (base: string, client: string, server: number, timeoutMs: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if ((yield* stickyOf(base, client)) === server) return true
      if (Date.now() > deadline) return false
      yield* Effect.sleep("20 millis")
    }
  })

/** Server `address` as the nib at `base` shows it (`/api/servers`). */
const serverOf = (base: string, address: string) =>
  Effect.map(
    Admin.call(base, "GET", "/api/servers"),
    (reply) => (reply.json.servers as ReadonlyArray<any>).find((s) => s.address === address)
  )

/** Polls `check` until it holds (bounded); whether it did. */
const until = (check: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 3_000
    while (!(yield* check)) {
      if (Date.now() > deadline) return false
      yield* Effect.sleep("20 millis")
    }
    return true
  })

const peersOf = (base: string) => Effect.map(Admin.call(base, "GET", "/api/peers"), (reply) => reply.json)

describe.skipIf(Redis.path === undefined)("--peers: one sticky table for several nibs", () => {
  it.live("a pin made through one nib shows up in the other within 1 s; the other sends the client there too", () =>
    Effect.gen(function*() {
      const port = yield* Backend.freePort
      yield* Redis.start(port)
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const peers = ["--peers", `redis://127.0.0.1:${port}`, "--admin", "127.0.0.1:0"]
      const one = yield* Nib.start([...peers, "127.0.0.1:0", a.spec(), b.spec()])
      const two = yield* Nib.start([...peers, "127.0.0.1:0", b.spec(), a.spec()])
      const base1 = Admin.baseUrl(one)
      const base2 = Admin.baseUrl(two)

      // Through the first nib, new clients go to servers 1 (b), then 0 (a). A fresh nib would send its first new
      // client to its server 1, which is a for the second nib: so client ip(2) says whether the pin came across.
      assert.deepStrictEqual(yield* Client.askAll(one.port, [ip(3), ip(2)]), ["b", "a"])
      assert.isTrue(yield* pinnedWithin(base2, ip(2), 1, 1_000), "ip(2) pinned to a (the second nib's server 1)")
      assert.isTrue(yield* pinnedWithin(base2, ip(3), 0, 1_000), "ip(3) pinned to b (the second nib's server 0)")
      assert.deepStrictEqual(yield* Client.askAll(two.port, [ip(2), ip(3), ip(2)]), ["a", "b", "a"])

      // And back: a client first seen by the second nib is pinned in the first.
      const [name] = yield* Client.askAll(two.port, [ip(4)])
      assert.isTrue(yield* pinnedWithin(base1, ip(4), name === "a" ? 0 : 1, 1_000))
      assert.deepStrictEqual(yield* Client.askAll(one.port, [ip(4)]), [name])

      // Both nibs are live on the key, in each one's view (once a heartbeat of each was read).
      let view = yield* peersOf(base1)
      for (let i = 0; i < 100 && view.peers.length < 2; i++) {
        yield* Effect.sleep("50 millis")
        view = yield* peersOf(base1)
      }
      assert.isTrue(view.enabled)
      assert.isTrue(view.up)
      assert.strictEqual(view.key, "nib")
      assert.strictEqual(view.url, `redis://127.0.0.1:${port}`)
      const pids = (view.peers as ReadonlyArray<{ pid: number; self: boolean }>).map((p) => p.pid).toSorted()
      assert.deepStrictEqual(pids, [one.pid, two.pid].toSorted())

      // The second nib stops: it leaves the peers at once, not 10 s later when its heartbeat is stale.
      yield* Effect.promise(() => Nib.stop(two))
      const left = yield* until(Effect.map(peersOf(base1), (v) => v.peers.length === 1 && v.peers[0].pid === one.pid))
      assert.isTrue(left, JSON.stringify(yield* peersOf(base1)))
    }))

  it.live("a peer started late loads the table before it serves", () =>
    Effect.gen(function*() {
      const port = yield* Backend.freePort
      yield* Redis.start(port)
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const peers = ["--peers", `redis://127.0.0.1:${port}`, "--peers-key", "late", "--admin", "127.0.0.1:0"]
      const one = yield* Nib.start([...peers, "127.0.0.1:0", a.spec(), b.spec()])
      const names = yield* Client.askAll(one.port, [ip(2), ip(3), ip(4), ip(5)])
      assert.deepStrictEqual(names, ["b", "a", "b", "a"])
      // Sent to Redis (the first nib's own view cannot tell; the second's key can): wait until all four are there.
      yield* Effect.sleep("500 millis")

      const two = yield* Nib.start([...peers, "127.0.0.1:0", a.spec(), b.spec()])
      // Asked at once: the table was loaded before the listening line.
      const base2 = Admin.baseUrl(two)
      const pinned = yield* Effect.forEach([ip(2), ip(3), ip(4), ip(5)], (client) => stickyOf(base2, client))
      assert.deepStrictEqual(pinned, [1, 0, 1, 0])
      assert.deepStrictEqual(yield* Client.askAll(two.port, [ip(5), ip(4), ip(3), ip(2)]), ["a", "b", "a", "b"])
    }))

  it.live(
    "Redis killed for 5 s under load: no client connection fails, and sharing resumes",
    () =>
      Effect.gen(function*() {
        const port = yield* Backend.freePort
        const first = yield* Redis.start(port)
        const a = yield* Backend.identity("a")
        const b = yield* Backend.identity("b")
        const peers = ["--peers", `redis://127.0.0.1:${port}`, "--admin", "127.0.0.1:0"]
        const one = yield* Nib.start([...peers, "127.0.0.1:0", a.spec(), b.spec()])
        const two = yield* Nib.start([...peers, "127.0.0.1:0", a.spec(), b.spec()])
        const base1 = Admin.baseUrl(one)
        const base2 = Admin.baseUrl(two)

        // Clients keep connecting through both nibs, from 20 addresses, for the whole outage.
        const load = { stop: false }
        const answers: Array<string> = []
        const clients = Effect.promise(async () => {
          for (let i = 0; !load.stop && i < 100_000; i++) {
            const lb = i % 2 === 0 ? one : two
            answers.push(await Client.askName(lb.port, ip(10 + (i % 20)), 5_000))
          }
        })
        const fiber = yield* Effect.forkScoped(clients)
        yield* Effect.sleep("500 millis")

        first.proc.child.kill("SIGKILL")
        yield* Effect.promise(() => first.proc.exited)
        yield* Nib.logged(one, "unreachable", 5_000)
        yield* Effect.sleep("5 seconds")
        yield* Redis.start(port)
        load.stop = true
        yield* Fiber.join(fiber)

        const failed = answers.filter((name) => name !== "a" && name !== "b")
        assert.deepStrictEqual(failed, [], `of ${answers.length} connections`)
        assert.isAbove(answers.length, 20)
        // One line for the outage, not one per retry.
        assert.strictEqual(one.stderr().split("unreachable").length - 1, 1, one.stderr())

        // Redis came back empty: each nib synchronizes again (pushing its table), and new pins are shared again.
        yield* Nib.logged(one, "synchronized with", 20_000)
        yield* Nib.logged(two, "synchronized with", 20_000)
        const [name] = yield* Client.askAll(one.port, [ip(2)])
        assert.isTrue(yield* pinnedWithin(base2, ip(2), name === "a" ? 0 : 1, 1_000))
        const view = yield* peersOf(base1)
        assert.isTrue(view.up)
        assert.isAbove(view.syncErrors, 0)
        const metrics = yield* Admin.scrape(base1)
        assert.strictEqual(Admin.valueOf(metrics, "nib_peers_up"), 1)
        assert.isAbove(Admin.valueOf(metrics, "nib_peers_sync_errors_total"), 0)
        assert.strictEqual(Admin.valueOf(metrics, "nib_peers_lag_seconds") >= 0, true)
      }),
    60_000
  )

  it.live("the operator's drain, blacklist and weight reach the other nib; a failed connect's blacklist does not", () =>
    Effect.gen(function*() {
      const port = yield* Backend.freePort
      yield* Redis.start(port)
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const dir = yield* Nib.tempDir
      const token = Path.join(dir, "token")
      Fs.writeFileSync(token, "s3cret-token\n")
      const peers = ["--peers", `redis://127.0.0.1:${port}`, "--admin", "127.0.0.1:0", "--admin-token-file", token]
      const one = yield* Nib.start([...peers, ...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const two = yield* Nib.start([...peers, "127.0.0.1:0", b.spec(), a.spec()])
      const base1 = Admin.baseUrl(one)
      const base2 = Admin.baseUrl(two)
      const aAddress = `127.0.0.1:${a.port}`
      const bAddress = `127.0.0.1:${b.port}`

      // Server 0 of the first nib is a; the second has it as server 1.
      const drained = yield* Admin.call(base1, "POST", "/api/servers/0/drain", { token: "s3cret-token", body: {} })
      assert.strictEqual(drained.status, 200, drained.text)
      assert.isTrue(yield* until(Effect.map(serverOf(base2, aAddress), (s) => s.draining === true)))
      yield* Admin.call(base1, "POST", "/api/servers/0/drain", { token: "s3cret-token", body: { draining: false } })
      assert.isTrue(yield* until(Effect.map(serverOf(base2, aAddress), (s) => s.draining === false)))

      yield* Admin.call(base2, "POST", "/api/servers/0/blacklist", { token: "s3cret-token", body: { seconds: 30 } })
      assert.isTrue(yield* until(Effect.map(serverOf(base1, bAddress), (s) => s.blacklisted === true)))
      const until1 = (yield* serverOf(base1, bAddress)).blacklistedUntil
      const until2 = (yield* serverOf(base2, bAddress)).blacklistedUntil
      // The same deadline, not the same number of seconds from when each heard of it.
      assert.strictEqual(until1, until2)

      yield* Admin.call(base2, "PATCH", "/api/servers/1", { token: "s3cret-token", body: { weight: 7 } })
      assert.isTrue(yield* until(Effect.map(serverOf(base1, aAddress), (s) => s.weight === 7)))

      // pen's control port is the operator too: `server 1 weight 4` on the first nib (its b) reaches the second.
      assert.strictEqual(yield* Nibctl.ask(Nibctl.targetOf(one), "server 1 weight 4"), "")
      assert.isTrue(yield* until(Effect.map(serverOf(base2, bAddress), (s) => s.weight === 4)))
      // A nib that joins follows its peers: the shared weights win over its own configuration (-O, -F, the command
      // line), which is not shared either.
      const five = yield* Nib.start([...peers, "-O", "server 0 weight 9", "127.0.0.1:0", a.spec(), b.spec()])
      assert.strictEqual((yield* serverOf(Admin.baseUrl(five), aAddress)).weight, 7)
      assert.strictEqual((yield* serverOf(Admin.baseUrl(five), bAddress)).weight, 4)
      yield* Effect.sleep("600 millis")
      assert.strictEqual((yield* serverOf(base1, aAddress)).weight, 7)

      // A server that refuses a connection is blacklisted by the nib that saw it fail, not by its peers: each judges
      // servers by its own connects (a peer may reach the server by another path).
      const dead = yield* Backend.freePort
      const three = yield* Nib.start([...peers, "-b", "30", "127.0.0.1:0", `127.0.0.1:${dead}`, a.spec()])
      const four = yield* Nib.start([...peers, "-b", "30", "127.0.0.1:0", `127.0.0.1:${dead}`, a.spec()])
      for (let i = 0; i < 3; i++) yield* Client.askAll(three.port, [ip(20 + i)])
      assert.isTrue((yield* serverOf(Admin.baseUrl(three), `127.0.0.1:${dead}`)).blacklisted)
      yield* Effect.sleep("600 millis")
      assert.isFalse((yield* serverOf(Admin.baseUrl(four), `127.0.0.1:${dead}`)).blacklisted)
    }))

  it.live("a password in the URL is used, and never shown: not in the log, /api/settings, /api/peers, nor errors", () =>
    Effect.gen(function*() {
      const port = yield* Backend.freePort
      yield* Redis.start(port, ["--requirepass", "pa55-w0rd"])
      const a = yield* Backend.identity("a")
      const dir = yield* Nib.tempDir
      const web = Path.join(dir, "status.html")
      const written = Path.join(dir, "written.cfg")
      const good = yield* Nib.start([
        ...AS_USER,
        "-C",
        "127.0.0.1:0",
        "-w",
        web,
        "--peers",
        `redis://:pa55-w0rd@127.0.0.1:${port}/2`,
        "--admin",
        "127.0.0.1:0",
        "127.0.0.1:0",
        a.spec()
      ])
      const base = Admin.baseUrl(good)
      const view = yield* peersOf(base)
      assert.isTrue(view.up, JSON.stringify(view))
      assert.strictEqual(view.url, `redis://:***@127.0.0.1:${port}/2`)
      assert.deepStrictEqual(yield* Client.askAll(good.port, [ip(2)]), ["a"])
      const texts = [
        good.stderr(),
        good.stdout(),
        (yield* Admin.call(base, "GET", "/api/settings")).text,
        (yield* Admin.call(base, "GET", "/api/peers")).text,
        (yield* Admin.call(base, "GET", "/metrics")).text
      ]
      // pen's outputs too: `write` (the settings as commands) and the status page (-w, on SIGUSR1).
      assert.strictEqual(yield* Nibctl.ask(Nibctl.targetOf(good), `write ${written}`), "")
      process.kill(good.pid, "SIGUSR1")
      assert.isTrue(yield* until(Effect.sync(() => Fs.existsSync(web) && Fs.statSync(web).size > 0)))
      texts.push(Fs.readFileSync(written, "utf8"), Fs.readFileSync(web, "utf8"))
      assert.match(texts.at(-2)!, /^server 0 acl 0 address 127.0.0.1/m)
      for (const text of texts) assert.notInclude(text, "pa55-w0rd")

      // A wrong password: nib serves after the bounded wait, says why in one line, and shows no password either.
      const bad = yield* Nib.start(["--peers", `redis://:wrong-pw@127.0.0.1:${port}`, "127.0.0.1:0", a.spec()])
      assert.deepStrictEqual(yield* Client.askAll(bad.port, [ip(3)]), ["a"])
      assert.match(bad.stderr(), /did not answer within 3000 ms \(.*(WRONGPASS|invalid).*\)/)
      assert.notInclude(bad.stderr(), "wrong-pw")
      assert.include(bad.stderr(), `redis://:***@127.0.0.1:${port}`)
    }))

  it.live.skipIf(Certs.openssl === undefined)(
    "rediss://: TLS to Redis, the server's certificate checked (NODE_EXTRA_CA_CERTS trusts a private CA)",
    () =>
      Effect.gen(function*() {
        const dir = yield* Nib.tempDir
        const { cert, key } = yield* Certs.certificate(dir)
        const port = yield* Backend.freePort
        yield* Redis.start(0, [
          "--tls-port",
          String(port),
          "--tls-cert-file",
          cert,
          "--tls-key-file",
          key,
          "--tls-auth-clients",
          "no"
        ])
        const a = yield* Backend.identity("a")
        const args = ["--peers", `rediss://127.0.0.1:${port}`, "--admin", "127.0.0.1:0", "127.0.0.1:0", a.spec()]
        // Not trusted: nib serves without the table, and says why.
        const untrusted = yield* Nib.start(args)
        assert.match(untrusted.stderr(), /did not answer within 3000 ms \(.*certificate.*\)/)
        // Trusted: in sync.
        const saved = process.env["NODE_EXTRA_CA_CERTS"]
        process.env["NODE_EXTRA_CA_CERTS"] = cert
        const trusted = yield* Nib.start(args).pipe(
          Effect.ensuring(Effect.sync(() => {
            if (saved === undefined) delete process.env["NODE_EXTRA_CA_CERTS"]
            else process.env["NODE_EXTRA_CA_CERTS"] = saved
          }))
        )
        const view = yield* peersOf(Admin.baseUrl(trusted))
        assert.isTrue(view.up, trusted.stderr())
        assert.strictEqual(view.url, `rediss://127.0.0.1:${port}`)
      })
  )

  it.live(
    "Redis down at start: nib serves after a bounded wait, says so, and synchronizes once Redis is up",
    () =>
      Effect.gen(function*() {
        const port = yield* Backend.freePort
        const a = yield* Backend.identity("a")
        const lb = yield* Nib.start([
          "--peers",
          `redis://127.0.0.1:${port}`,
          "--admin",
          "127.0.0.1:0",
          "127.0.0.1:0",
          a.spec()
        ], 20_000)
        assert.include(lb.stderr(), "did not answer within")
        assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2)]), ["a"])
        yield* Redis.start(port)
        yield* Nib.logged(lb, "synchronized with", 20_000)
        // The pin made while Redis was down is in Redis now.
        const base = Admin.baseUrl(lb)
        assert.isTrue((yield* peersOf(base)).up)
      }),
    40_000
  )
})

describe("--peers: argument errors", () => {
  it.live("a bad URL or key is one line naming it, exit 1; the URL's password is not echoed", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["--peers", "http://127.0.0.1:6379"], "--peers: not a Redis URL"],
        [["--peers", "redis://:hunter2@127.0.0.1:6379/x"], "--peers: '/x' is not a database number"],
        [["--peers", "redis://127.0.0.1:6379", "--peers-key", "a b"], "--peers-key 'a b'"],
        [["--peers-key", "k"], "--peers-key needs --peers"]
      ]
      for (const [args, message] of cases) {
        const result = yield* Nib.run([...args, "127.0.0.1:0", "127.0.0.1:9"])
        assert.strictEqual(result.code, 1, result.stderr)
        assert.include(result.stderr, message)
        // The message, and pen's pointer to the help: never the help itself.
        const lines = result.stderr.trim().split("\n")
        assert.include(lines[0], message)
        assert.isAtMost(lines.length, 2, result.stderr)
        assert.notInclude(result.stderr, "hunter2")
      }
    }))
})
