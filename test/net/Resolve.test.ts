/**
 * Name resolution: IP literals and Unix paths pass through untouched, a host name becomes an IP address (the port
 * kept), and a name that does not resolve fails with pen's message. With `--resolver`, names are asked of that DNS
 * server alone (a real dnsmasq here): A records, then AAAA when the name has none.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Net from "node:net"
import * as Address from "../../src/domain/Address.ts"
import * as Resolve from "../../src/net/Resolve.ts"
import * as Dnsmasq from "../utils/Dnsmasq.ts"
import * as Nib from "../utils/Nib.ts"

describe("Resolve.resolve", () => {
  for (const endpoint of [Address.tcp("127.0.0.1", 80), Address.tcp("::1", 8080), Address.unix("/tmp/nib-x/s.sock")]) {
    it.live(`${Address.format(endpoint)} passes through unchanged`, () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* Resolve.resolve(endpoint), endpoint)
      }))
  }

  it.live("localhost resolves to an IP address; the port is kept", () =>
    Effect.gen(function*() {
      const resolved = yield* Resolve.resolve(Address.tcp("localhost", 8080))
      assert.strictEqual(resolved._tag, "Tcp")
      const tcp = resolved as Address.TcpEndpoint
      assert.notStrictEqual(Net.isIP(tcp.host), 0, `not an IP address: ${tcp.host}`)
      assert.strictEqual(tcp.port, 8080)
    }))

  it.live("nonexistent.invalid fails with ResolveError: unknown or invalid address [nonexistent.invalid]", () =>
    Effect.gen(function*() {
      const error = yield* Resolve.resolve(Address.tcp("nonexistent.invalid", 80)).pipe(Effect.flip)
      assert.instanceOf(error, Resolve.ResolveError)
      assert.strictEqual(error._tag, "ResolveError")
      assert.strictEqual(error.host, "nonexistent.invalid")
      assert.strictEqual(error.message, "unknown or invalid address [nonexistent.invalid]")
    }))
})

describe("Resolve.system", () => {
  it.live("gives every address of a name, the first being the one resolve takes", () =>
    Effect.gen(function*() {
      const all = yield* Resolve.system("localhost")
      assert.isAbove(all.length, 0)
      for (const address of all) assert.notStrictEqual(Net.isIP(address), 0, address)
      const resolved = (yield* Resolve.resolve(Address.tcp("localhost", 80))) as Address.TcpEndpoint
      assert.strictEqual(resolved.host, all[0])
      assert.strictEqual(Resolve.lookupOf(undefined), Resolve.system)
    }))
})

describe.skipIf(Dnsmasq.DNSMASQ === undefined)("Resolve.fromServer (--resolver), with dnsmasq", () => {
  it.live("A records first, AAAA when a name has none; a name it does not know fails, saying why", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const dns = yield* Dnsmasq.start(dir, { "both.test": "127.0.0.7", "v6.test": "::1" })
      const lookup = Resolve.fromServer({ host: "127.0.0.1", port: dns.port })
      assert.deepStrictEqual(yield* lookup("both.test"), ["127.0.0.7"])
      assert.deepStrictEqual(yield* lookup("v6.test"), ["::1"])
      assert.deepStrictEqual(
        yield* Resolve.resolve(Address.tcp("both.test", 8080), lookup),
        Address.tcp("127.0.0.7", 8080)
      )
      const error = yield* Effect.flip(lookup("nope.test"))
      assert.strictEqual(error.host, "nope.test")
      assert.strictEqual(error.reason, "ENOTFOUND")
      assert.strictEqual(error.message, "unknown or invalid address [nope.test]")
    }))
})
