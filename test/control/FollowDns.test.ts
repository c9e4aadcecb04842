/**
 * `--resolve-interval`'s fiber, on the TestClock with a resolver of the test's own: each interval the servers given a
 * name (the emergency server too) are resolved again, a new address goes to the pool (and so to new connections), a
 * name that stops resolving keeps its address and is logged once, and once again when it resolves again; a server
 * given an address is no longer resolved.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger } from "effect"
import { TestClock } from "effect/testing"
import type * as Net from "node:net"
import * as FollowDns from "../../src/control/FollowDns.ts"
import * as Address from "../../src/domain/Address.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"
import * as Resolve from "../../src/net/Resolve.ts"
import { EMERGENCY_SERVER, ServerPool } from "../../src/services/ServerPool.ts"

const INTERVAL = 1000

/** A DNS of the test's own: each name's addresses now (none: it does not resolve), and how often each was asked. */
const makeDns = (initial: Record<string, ReadonlyArray<string>>) => {
  const records = new Map(Object.entries(initial))
  const asked = new Map<string, number>()
  const lookup: Resolve.Lookup = (host) =>
    Effect.suspend(() => {
      asked.set(host, (asked.get(host) ?? 0) + 1)
      const found = records.get(host) ?? []
      return found.length > 0
        ? Effect.succeed(found)
        : Effect.fail(new Resolve.ResolveError({ host, cause: Object.assign(new Error("no"), { code: "ENOTFOUND" }) }))
    })
  return { records, asked, lookup }
}

const named = (name: string, address: string, port: number) => ({
  ...ServerSpec.make(Address.tcp(address, port)),
  name
})

/** The pool the fiber follows, and its log lines (`Warn: ...`). */
const setUp = (dns: ReturnType<typeof makeDns>, lines: Array<string>) => {
  const capture = Logger.make((o) => {
    lines.push(`${o.logLevel}: ${String(o.message)}`)
  })
  return Layer.merge(
    ServerPool.layerTest({
      servers: [named("web.test", "10.0.0.1", 8001), ServerSpec.make(Address.tcp("10.0.0.2", 8002))],
      emergency: named("sorry.test", "10.0.0.9", 80),
      lookup: dns.lookup
    }),
    Logger.layer([capture])
  )
}

const target = (pool: ServerPool["Service"], index: number) => {
  const t = pool.dialTarget(index) as Net.TcpNetConnectOpts
  return `${t.host}:${t.port}`
}

describe("FollowDns.follow", () => {
  it.effect("each interval: a new address is taken and logged on one line; the same one changes nothing", () => {
    const dns = makeDns({ "web.test": ["10.0.0.1"], "sorry.test": ["10.0.0.9"] })
    const lines: Array<string> = []
    return Effect.gen(function*() {
      const pool = yield* ServerPool
      yield* FollowDns.follow(dns.lookup, INTERVAL)
      // Start-up has just resolved them: nothing is asked before the first interval.
      yield* TestClock.adjust(INTERVAL - 1)
      assert.strictEqual(dns.asked.size, 0)
      yield* TestClock.adjust(1)
      assert.deepStrictEqual([...dns.asked.entries()], [["web.test", 1], ["sorry.test", 1]])
      assert.deepStrictEqual(lines, [])
      dns.records.set("web.test", ["10.0.0.3"])
      dns.records.set("sorry.test", ["10.0.0.8", "10.0.0.7"])
      yield* TestClock.adjust(INTERVAL)
      assert.strictEqual(target(pool, 0), "10.0.0.3:8001")
      assert.strictEqual(target(pool, 1), "10.0.0.2:8002")
      assert.strictEqual(target(pool, EMERGENCY_SERVER), "10.0.0.8:80")
      assert.deepStrictEqual(lines, [
        "Warn: server 0: web.test changed address: 10.0.0.1 -> 10.0.0.3",
        "Warn: emergency server: sorry.test changed address: 10.0.0.9 -> 10.0.0.8"
      ])
      // The DNS server rotates the emergency server's two addresses: the server stays where it is.
      dns.records.set("sorry.test", ["10.0.0.7", "10.0.0.8"])
      yield* TestClock.adjust(INTERVAL)
      assert.strictEqual(target(pool, EMERGENCY_SERVER), "10.0.0.8:80")
      assert.strictEqual(lines.length, 2)
      // The server given an address has no name: it is never asked about.
      assert.deepStrictEqual([...dns.asked.keys()], ["web.test", "sorry.test"])
    }).pipe(Effect.provide(setUp(dns, lines)))
  })

  it.effect("a name that stops resolving keeps its address: said once, and once again when it resolves again", () => {
    const dns = makeDns({ "web.test": ["10.0.0.1"], "sorry.test": ["10.0.0.9"] })
    const lines: Array<string> = []
    return Effect.gen(function*() {
      const pool = yield* ServerPool
      yield* FollowDns.follow(dns.lookup, INTERVAL)
      dns.records.delete("web.test")
      for (let i = 0; i < 3; i++) yield* TestClock.adjust(INTERVAL)
      assert.strictEqual(dns.asked.get("web.test"), 3)
      assert.strictEqual(target(pool, 0), "10.0.0.1:8001")
      assert.deepStrictEqual(lines, [
        "Warn: server 0: web.test no longer resolves (ENOTFOUND); keeping its last address 10.0.0.1"
      ])
      dns.records.set("web.test", ["10.0.0.4"])
      yield* TestClock.adjust(INTERVAL)
      yield* TestClock.adjust(INTERVAL)
      assert.strictEqual(target(pool, 0), "10.0.0.4:8001")
      assert.deepStrictEqual(lines.slice(1), [
        "Warn: server 0: web.test resolves again",
        "Warn: server 0: web.test changed address: 10.0.0.1 -> 10.0.0.4"
      ])
    }).pipe(Effect.provide(setUp(dns, lines)))
  })

  it.effect("a server given another address (server N address IP) is no longer resolved; one given a name is", () => {
    const dns = makeDns({ "web.test": ["10.0.0.1"], "sorry.test": ["10.0.0.9"], "api.test": ["10.0.0.5"] })
    const lines: Array<string> = []
    return Effect.gen(function*() {
      const pool = yield* ServerPool
      yield* FollowDns.follow(dns.lookup, INTERVAL)
      yield* pool.configure(0, [{ key: "address", value: "10.0.0.6" }])
      yield* pool.configure(1, [{ key: "address", value: "api.test" }])
      assert.strictEqual(dns.asked.get("api.test"), 1)
      dns.records.set("web.test", ["10.0.0.3"])
      dns.records.set("api.test", ["10.0.0.7"])
      yield* TestClock.adjust(INTERVAL)
      assert.isUndefined(dns.asked.get("web.test"))
      assert.strictEqual(target(pool, 0), "10.0.0.6:8001")
      assert.strictEqual(target(pool, 1), "10.0.0.7:8002")
      assert.deepStrictEqual(lines, ["Warn: server 1: api.test changed address: 10.0.0.5 -> 10.0.0.7"])
    }).pipe(Effect.provide(setUp(dns, lines)))
  })
})
