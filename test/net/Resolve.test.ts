/**
 * Start-up name resolution: IP literals and Unix paths pass through untouched, a host name becomes an IP address
 * (the port kept), and a name that does not resolve fails with pen's message.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Net from "node:net"
import * as Address from "../../src/domain/Address.ts"
import * as Resolve from "../../src/net/Resolve.ts"

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
