/**
 * `explain IP` on the control port, through the real process: each reason a server is skipped, and, for a run of
 * states, the server explain names is the one a real connection from that address then reaches (identity backends
 * answer with their name; clients are distinct 127.0.0.N source addresses).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Admin from "../utils/Admin.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"

const { ip } = Client

const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

/** An explanation without the sticky entry's age, which moves between two readings. */
const ageless = (text: string) => text.replace(/last seen \d+ s ago/, "last seen N s ago")

/** The last line of an explanation: `=> server N (...)`, or the closing. */
const verdict = (text: string) => text.trimEnd().split("\n").at(-1)!

describe("explain IP", () => {
  it.live("-h --hash-method consistent: the mode says so, and the server named is the one the client reaches", () =>
    Effect.gen(function*() {
      const servers = yield* Effect.forEach(["a", "b", "c"], (name) => Backend.identity(name))
      const lb = yield* Nib.start([
        ...AS_USER,
        "-h",
        "--hash-method",
        "consistent",
        "-C",
        "127.0.0.1:0",
        "127.0.0.1:0",
        ...servers.map((s) => s.spec())
      ])
      const target = Nibctl.targetOf(lb)
      for (const n of [31, 32, 33, 34]) {
        const text = yield* Nibctl.ask(target, `explain ${ip(n)}`)
        assert.include(text, "mode: hash (consistent)\n")
        assert.include(text, "first choice by hash (-h) of the client's address")
        const index = Number(/=> server (\d+)/.exec(verdict(text))![1])
        assert.strictEqual(yield* Client.ask(lb.port, ip(n)), ["a", "b", "c"][index], text)
      }
    }))

  it.live("says the sticky entry, the rule, each server skipped and why, and the server that takes the client", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const c = yield* Backend.identity("c")
      const lb = yield* Nib.start([
        ...AS_USER,
        "-C",
        "127.0.0.1:0",
        "-e",
        c.spec(),
        "127.0.0.1:0",
        a.spec(),
        b.spec(":1")
      ])
      const target = Nibctl.targetOf(lb)
      const explain = (client: string) => Nibctl.ask(target, `explain ${client}`)

      // A new client: pen's roundrobin cursor gives server 1 first.
      assert.strictEqual(
        yield* explain(ip(20)),
        [
          `client ${ip(20)}`,
          "not in the sticky table",
          "mode: pen's default (sticky, then roundrobin)",
          `first choice by roundrobin: the next server in turn: server 1 (${b.spec()})`,
          `server 1 (${b.spec()}): takes it`,
          `=> server 1 (${b.spec()})`,
          ""
        ].join("\n")
      )
      // explain moved nothing: the real client gets that server, and is remembered.
      const held = yield* Client.hold(lb.port, ip(20))
      assert.strictEqual(held.name, "b")
      const sticky = yield* explain(ip(20))
      assert.match(sticky, /\nsticky to server 1, last seen \d+ s ago\n/)
      assert.include(sticky, `first choice by the sticky table: the server it used last: server 1 (${b.spec()})`)
      // Server 1 is at its limit (max 1, with the connection held above): skipped, and the scan goes to server 0.
      assert.include(sticky, `server 1 (${b.spec()}): skipped: is at its connection limit (conn 1, max 1, hard 0)\n`)
      assert.strictEqual(verdict(sticky), `=> server 0 (${a.spec()})`)
      // Blacklisted, with the time left.
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 blacklist 60"), "")
      const blacklisted = yield* explain(ip(22))
      assert.match(
        blacklisted,
        new RegExp(`server 0 \\(${a.spec()}\\): skipped: is blacklisted \\(for (59|60) s more\\)\\n`)
      )
      // Neither takes it: the emergency server does.
      assert.strictEqual(verdict(blacklisted), `=> emergency server ${c.spec()}`)
      // A server's ACL.
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 blacklist 0"), "")
      assert.strictEqual(yield* Nibctl.ask(target, `acl 3 deny ${ip(23)}`), "")
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 acl 3"), "")
      assert.include(
        yield* explain(ip(23)),
        `server 0 (${a.spec()}): skipped: its acl does not let the client in (acl 3)\n`
      )
      // A slot with no address.
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 acl 0"), "")
      assert.strictEqual(yield* Nibctl.ask(target, "server 3 max 0"), "")
      assert.strictEqual(yield* Nibctl.ask(target, "prio"), "")
      assert.strictEqual(yield* Nibctl.ask(target, "server 0 prio 5"), "")
      assert.strictEqual(yield* Nibctl.ask(target, "server 1 prio 5"), "")
      const empty = yield* explain(ip(24))
      assert.include(empty, "mode: prio\n")
      assert.include(
        empty,
        "first choice by prio: the lowest priority value not blacklisted, down or drained: server 2 ("
      )
      assert.include(empty, "server 2 (0.0.0.0:0): skipped: has no address\n")
      // client_acl: denied, and without -B closed.
      assert.strictEqual(yield* Nibctl.ask(target, `acl 4 deny ${ip(25)}`), "")
      yield* Nibctl.ask(target, "client_acl 4")
      assert.strictEqual(
        yield* explain(ip(25)),
        `client ${ip(25)}\nclient_acl denies it\n=> closed: no server takes it\n`
      )
      // Bad input is answered, naming it.
      assert.strictEqual(yield* explain("10.1.2"), "explain: '10.1.2' is not an IP address\n")
      assert.strictEqual(yield* Nibctl.ask(target, "explain"), "explain: the client's IP address is missing\n")
    }))

  it.live(
    "the server it names is the one a real connection from that address reaches, mode after mode",
    () =>
      Effect.gen(function*() {
        const servers = [yield* Backend.identity("a"), yield* Backend.identity("b"), yield* Backend.identity("c")]
        const lb = yield* Nib.start([
          ...AS_USER,
          "-C",
          "127.0.0.1:0",
          "127.0.0.1:0",
          ...servers.map((s) => s.spec(":2"))
        ])
        const target = Nibctl.targetOf(lb)
        const names = new Map(servers.map((s, i) => [`=> server ${i} (${s.spec()})`, s.name]))
        names.set("=> closed: no server takes it", Client.CLOSED)
        /** Waits (bounded) until the last client's connection is released, so that loads are all 0 again. */
        const settled = Effect.gen(function*() {
          for (let i = 0; i < 100; i++) {
            if (!/ conn [1-9]/.test(yield* Nibctl.ask(target, "servers"))) return
            yield* Effect.sleep("20 millis")
          }
        })
        const steps: ReadonlyArray<string> = [
          "",
          "server 1 blacklist 60",
          "hash",
          "server 2 blacklist 60",
          "no hash",
          "roundrobin",
          "server 1 blacklist 0",
          "weight",
          "server 0 weight 1",
          "server 1 weight 3",
          "no roundrobin",
          "prio",
          "server 2 blacklist 0",
          "server 2 prio 0",
          "server 0 prio 1",
          "server 1 prio 1"
        ]
        let n = 30
        for (const step of steps) {
          if (step !== "") assert.strictEqual(yield* Nibctl.ask(target, step), "", step)
          // Two clients per state: a new one, and one seen before (sticky, unless -r).
          for (const client of [ip(n++), ip(30)]) {
            yield* settled
            const predicted = verdict(yield* Nibctl.ask(target, `explain ${client}`))
            const reached = yield* Client.ask(lb.port, client)
            assert.strictEqual(names.get(predicted) ?? predicted, reached, `${step || "start"}: ${client}`)
          }
        }
      }),
    { timeout: 60_000 }
  )
})

describe("explain IP with an abuse server", () => {
  it.live("a client client_acl denies goes to the abuse server (-B), and the real connection does too", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const abuse = yield* Backend.identity("abuse")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "-B", abuse.spec(), "127.0.0.1:0", a.spec()])
      const target = Nibctl.targetOf(lb)
      assert.strictEqual(yield* Nibctl.ask(target, `acl 2 deny ${ip(60)}`), "")
      yield* Nibctl.ask(target, "client_acl 2")
      assert.strictEqual(
        yield* Nibctl.ask(target, `explain ${ip(60)}`),
        [
          `client ${ip(60)}`,
          "client_acl denies it",
          `abuse server ${abuse.spec()}: takes it`,
          `=> abuse server ${abuse.spec()}`,
          ""
        ].join("\n")
      )
      assert.strictEqual(yield* Client.ask(lb.port, ip(60)), "abuse")
      assert.strictEqual(verdict(yield* Nibctl.ask(target, `explain ${ip(61)}`)), `=> server 0 (${a.spec()})`)
    }))
})

describe("explain IP with active checks", () => {
  it.live("a sticky client's server down by its check is skipped, and said to be", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([
        ...AS_USER,
        "-C",
        "127.0.0.1:0",
        "--check-interval",
        "0.2",
        "--fall",
        "1",
        "127.0.0.1:0",
        a.spec(),
        b.spec()
      ])
      const target = Nibctl.targetOf(lb)
      // The client is pinned to server 1, then server 1 gets a check it fails (it does not speak HTTP).
      assert.strictEqual(yield* Client.ask(lb.port, ip(40)), "b")
      assert.strictEqual(yield* Nibctl.ask(target, "server 1 check http"), "")
      let text = ""
      for (let i = 0; i < 100 && !text.includes("is down"); i++) {
        text = yield* Nibctl.ask(target, `explain ${ip(40)}`)
        if (!text.includes("is down")) yield* Effect.sleep("50 millis")
      }
      assert.include(text, `server 1 (${b.spec()}): skipped: is down (its check failed)\n`)
      assert.strictEqual(verdict(text), `=> server 0 (${a.spec()})`)
      assert.strictEqual(yield* Client.ask(lb.port, ip(40)), "a")
    }))
})

describe("GET /api/explain on the admin endpoint", () => {
  it.live("answers the same decision as JSON (with its text); a drained server is skipped; a bad address is a 400", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const dir = yield* Nib.tempDir
      const tokenFile = Path.join(dir, "token")
      Fs.writeFileSync(tokenFile, "t0k3n\n")
      const lb = yield* Nib.start([
        ...AS_USER,
        "-C",
        "127.0.0.1:0",
        "--admin",
        "0",
        "--admin-token-file",
        tokenFile,
        "127.0.0.1:0",
        a.spec(),
        b.spec()
      ])
      const base = Admin.baseUrl(lb)
      const target = Nibctl.targetOf(lb)
      assert.strictEqual(yield* Client.ask(lb.port, ip(50)), "b")
      const drained = yield* Admin.call(base, "POST", "/api/servers/1/drain", { token: "t0k3n" })
      assert.strictEqual(drained.status, 200)
      const reply = yield* Admin.call(base, "GET", `/api/explain?client=${ip(50)}`)
      assert.strictEqual(reply.status, 200)
      assert.deepInclude(reply.json, {
        client: ip(50),
        denied: false,
        rule: "sticky",
        first: { index: 1, address: b.spec() },
        chosen: { index: 0, address: a.spec() }
      })
      assert.deepStrictEqual(reply.json.tries, [
        { server: { index: 1, address: b.spec() }, reason: "draining" },
        { server: { index: 0, address: a.spec() } }
      ])
      // The text is the control port's answer, and the real connection goes where both say.
      // (the age is read at two instants: a second may have passed between them)
      assert.strictEqual(ageless(reply.json.text), ageless(yield* Nibctl.ask(target, `explain ${ip(50)}`)))
      assert.include(reply.json.text, `server 1 (${b.spec()}): skipped: is drained (takes no new clients)\n`)
      assert.strictEqual(yield* Client.ask(lb.port, ip(50)), "a")
      const bad = yield* Admin.call(base, "GET", "/api/explain?client=10.1.2")
      assert.strictEqual(bad.status, 400)
      assert.strictEqual(bad.json.field, "client")
    }))
})
