/**
 * `--peers`'s pure rules: the Redis URL (its password never shown), the pins as Redis keeps them, the messages, what
 * a batch sends, and the first-writer-wins merge the Lua script applies in Redis.
 */
import { assert, describe, it } from "@effect/vitest"
import { Redacted, Result, Schema } from "effect"
import * as Peers from "../../src/domain/Peers.ts"

const parsed = (text: string): Peers.PeersUrl => {
  const url = Peers.parseUrl(text)
  if (Result.isFailure(url)) throw new Error(`${text}: ${url.failure}`)
  return url.success
}
const refused = (text: string): string => {
  const url = Peers.parseUrl(text)
  return Result.isFailure(url) ? url.failure : "taken"
}

describe("the --peers URL", () => {
  it("redis://HOST, with Redis's port and database 0 by default", () => {
    const url = parsed("redis://127.0.0.1")
    assert.deepStrictEqual({ ...url }, {
      tls: false,
      host: "127.0.0.1",
      port: 6379,
      db: 0,
      username: undefined,
      password: undefined
    })
    assert.strictEqual(Peers.display(url), "redis://127.0.0.1:6379")
  })

  it("rediss://, a user, a password, a port, a database, an IPv6 host", () => {
    const url = parsed("rediss://nib:p%40ss@[::1]:6380/3")
    assert.isTrue(url.tls)
    assert.strictEqual(url.host, "::1")
    assert.strictEqual(url.port, 6380)
    assert.strictEqual(url.db, 3)
    assert.strictEqual(url.username, "nib")
    assert.strictEqual(Redacted.value(url.password!), "p@ss")
    assert.strictEqual(Peers.display(url), "rediss://nib:***@[::1]:6380/3")
    assert.strictEqual(Peers.connectionUrl(url), "rediss://nib:p%40ss@[::1]:6380/3")
  })

  it("what is not a Redis URL is refused, saying what was wrong", () => {
    assert.include(refused("http://127.0.0.1"), "not a Redis URL")
    assert.include(refused("127.0.0.1:6379"), "not a Redis URL")
    assert.include(refused("redis://"), "no host")
    assert.include(refused("redis://:50%zz@127.0.0.1"), "not URL-encoded")
    assert.include(refused("redis://127.0.0.1/db"), "'/db' is not a database number")
    assert.include(refused("redis://127.0.0.1:6379?x=1"), "no query")
    assert.include(refused("redis://127.0.0.1:99999"), "not a Redis URL")
  })

  it.prop(
    "the password is never in what is shown, and the client gets it back whole",
    { given: Schema.String, db: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 15 })) },
    ({ db, given }) => {
      // A string a URL can carry (no lone surrogate).
      if (!given.isWellFormed()) return
      // "Z9" is in no URL nib shows, so neither is a password that holds it, unless the password leaks.
      const password = `Z9${given}`
      const url = parsed(`redis://:${encodeURIComponent(password)}@127.0.0.1:7000/${db}`)
      const shown = Peers.display(url)
      assert.strictEqual(shown, `redis://:***@127.0.0.1:7000${db === 0 ? "" : `/${db}`}`)
      assert.notInclude(`${String(url.password)} ${JSON.stringify(url)}`, password)
      const again = parsed(Peers.connectionUrl(url))
      assert.strictEqual(Redacted.value(again.password!), password)
      assert.strictEqual(again.db, db)
    }
  )
})

describe("pins, as Redis keeps them", () => {
  it.prop(
    "SEEN|SERVER decodes back to the pin",
    {
      seen: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 4_000_000_000_000 })),
      server: Schema.Literals(["127.0.0.1:80", "[::1]:8080", "10.0.0.7:65535", "/run/app.sock"])
    },
    ({ seen, server }) => {
      assert.deepStrictEqual(Peers.decodePin("10.1.1.1", Peers.encodePin(server, seen)), {
        client: "10.1.1.1",
        server,
        seen
      })
    }
  )

  it("a value nib did not write is no pin", () => {
    for (const value of ["", "|", "x|127.0.0.1:80", "123|", "127.0.0.1:80"]) {
      assert.isUndefined(Peers.decodePin("c", value), value)
    }
  })
})

describe("messages", () => {
  it("a peer's message decodes; garbage and other shapes are ignored", () => {
    const pins: Peers.Message = { _tag: "Pins", from: "a", at: 5, pins: [["10.0.0.1", "127.0.0.1:80", 4]] }
    assert.deepStrictEqual(Peers.decodeMessage(Peers.encodeMessage(pins)), pins)
    const server: Peers.Message = {
      _tag: "Server",
      from: "b",
      at: 6,
      server: "127.0.0.1:80",
      state: { draining: true }
    }
    assert.deepStrictEqual(Peers.decodeMessage(Peers.encodeMessage(server)), server)
    for (const text of ["", "{", "null", "[]", `{"_tag":"Pins"}`, `{"_tag":"Server","from":"b","at":1}`]) {
      assert.isUndefined(Peers.decodeMessage(text), text)
    }
  })
})

const pin = (server: string, seen: number): Peers.Pin => ({ client: "10.0.0.9", server, seen })

describe("a batch, and the merge in Redis", () => {
  it("a new pin, a move, a visit worth telling, and nothing", () => {
    assert.deepStrictEqual(Peers.changeOf(pin("a:1", 10), undefined, 5000), { ...pin("a:1", 10), previous: "" })
    assert.deepStrictEqual(Peers.changeOf(pin("b:1", 10), { server: "a:1", seen: 9 }, 5000), {
      ...pin("b:1", 10),
      previous: "a:1"
    })
    assert.isUndefined(Peers.changeOf(pin("a:1", 4000), { server: "a:1", seen: 0 }, 5000))
    assert.deepStrictEqual(Peers.changeOf(pin("a:1", 5000), { server: "a:1", seen: 0 }, 5000), {
      ...pin("a:1", 5000),
      previous: "a:1"
    })
  })

  it.prop(
    "two nibs pinning one new client: whichever writes first, every later answer is the first writer's",
    {
      first: Schema.Literals(["a:1", "b:1", "c:1"]),
      second: Schema.Literals(["a:1", "b:1", "c:1"]),
      seen: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 1000 }))
    },
    ({ first, second, seen }) => {
      const one = Peers.merge({ ...pin(first, seen), previous: "" }, undefined)
      assert.isTrue(one.won)
      const two = Peers.merge({ ...pin(second, seen + 1), previous: "" }, one.kept)
      assert.strictEqual(two.kept.server, first)
      assert.strictEqual(two.won, first === second)
      // The second nib takes the first's answer; its next visit, told as a visit of that server, is kept.
      const again = Peers.merge({ ...pin(first, seen + 2), previous: first }, two.kept)
      assert.isTrue(again.won)
      assert.strictEqual(again.kept.seen, seen + 2)
    }
  )

  it("a nib that moved the client off the server Redis has (a failover) replaces it; a stale move does not", () => {
    const current = pin("a:1", 10)
    assert.deepStrictEqual(Peers.merge({ ...pin("b:1", 20), previous: "a:1" }, current), {
      kept: pin("b:1", 20),
      won: true
    })
    // Another nib moved it to c meanwhile: a move from a no longer applies.
    assert.deepStrictEqual(Peers.merge({ ...pin("b:1", 20), previous: "a:1" }, pin("c:1", 15)), {
      kept: pin("c:1", 15),
      won: false
    })
    // A visit never moves the last visit back.
    assert.strictEqual(Peers.merge({ ...pin("a:1", 5), previous: "a:1" }, current).kept.seen, 10)
  })
})
