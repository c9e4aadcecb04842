/**
 * Names that follow DNS, the pure rules: `--resolver`'s syntax, the address a server takes after its name resolved
 * again, and what is logged: a change on one line, a name that stops resolving once (its address kept), and once
 * again when it resolves again.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as Names from "../../src/domain/Names.ts"

const addresses = (...list: ReadonlyArray<string>): Names.Answer => ({ _tag: "Addresses", addresses: list })
const failed = (reason: string): Names.Answer => ({ _tag: "Failed", reason })

describe("Names.parseResolver", () => {
  it("IPv4 and IPv6 addresses, with a port or DNS's 53", () => {
    const cases: ReadonlyArray<readonly [string, Names.ResolverAddress]> = [
      ["127.0.0.1:5353", { host: "127.0.0.1", port: 5353 }],
      ["10.0.0.53", { host: "10.0.0.53", port: 53 }],
      ["[::1]:5353", { host: "::1", port: 5353 }],
      ["[2001:db8::53]", { host: "2001:db8::53", port: 53 }],
      ["2001:db8::53", { host: "2001:db8::53", port: 53 }],
      ["255.255.255.255:65535", { host: "255.255.255.255", port: 65535 }]
    ]
    for (const [text, expected] of cases) {
      assert.deepStrictEqual(Result.getOrThrow(Names.parseResolver(text)), expected, text)
    }
  })

  it("a host name, a bad address or a bad port is refused, saying which", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["nohost", "'nohost' is not an IP address"],
      ["dns.example:53", "'dns.example' is not an IP address"],
      ["", "'' is not an IP address"],
      ["256.0.0.1:53", "'256.0.0.1' is not an IP address"],
      ["127.0.0.1:", "port '' is not a port number (1-65535)"],
      ["127.0.0.1:0", "port '0' is not a port number (1-65535)"],
      ["127.0.0.1:65536", "port '65536' is not a port number (1-65535)"],
      ["127.0.0.1:dns", "port 'dns' is not a port number (1-65535)"],
      ["[::1", "missing ']' in '[::1'"],
      ["[::1]5353", "expected [address]:port in '[::1]5353'"],
      ["[nohost]:53", "'nohost' is not an IPv6 address"]
    ]
    for (const [text, start] of cases) {
      const result = Names.parseResolver(text)
      assert.isTrue(Result.isFailure(result), text)
      assert.isTrue((result as Result.Failure<unknown, string>).failure.startsWith(start), `${text}: ${String(result)}`)
    }
  })

  it("formats as node:dns setServers takes it", () => {
    assert.strictEqual(Names.formatResolver({ host: "127.0.0.1", port: 5353 }), "127.0.0.1:5353")
    assert.strictEqual(Names.formatResolver({ host: "::1", port: 53 }), "[::1]:53")
  })
})

describe("Names.pick", () => {
  it("keeps the address a server has while its name still gives it, else takes the first", () => {
    assert.strictEqual(Names.pick("10.0.0.2", ["10.0.0.1", "10.0.0.2"]), "10.0.0.2")
    assert.strictEqual(Names.pick("10.0.0.9", ["10.0.0.1", "10.0.0.2"]), "10.0.0.1")
    assert.isUndefined(Names.pick("10.0.0.9", []))
  })
})

describe("Names.step", () => {
  it("the same address: nothing to do, nothing said", () => {
    assert.deepStrictEqual(Names.step("server 0", "web", "10.0.0.1", false, addresses("10.0.0.1")), {
      address: undefined,
      failing: false,
      lines: []
    })
  })

  it("a new address: taken, and one line names the server, the name, old -> new", () => {
    assert.deepStrictEqual(Names.step("server 3", "web", "10.0.0.1", false, addresses("10.0.0.2", "10.0.0.3")), {
      address: "10.0.0.2",
      failing: false,
      lines: ["server 3: web changed address: 10.0.0.1 -> 10.0.0.2"]
    })
  })

  it("a name that stops resolving keeps its address; said once, and once again when it resolves again", () => {
    const first = Names.step("emergency server", "web", "10.0.0.1", false, failed("ENOTFOUND"))
    assert.deepStrictEqual(first, {
      address: undefined,
      failing: true,
      lines: ["emergency server: web no longer resolves (ENOTFOUND); keeping its last address 10.0.0.1"]
    })
    const again = Names.step("emergency server", "web", "10.0.0.1", first.failing, failed("ETIMEOUT"))
    assert.deepStrictEqual(again, { address: undefined, failing: true, lines: [] })
    // An answer with no address fails too.
    assert.deepStrictEqual(Names.step("server 0", "web", "10.0.0.1", false, addresses()).lines, [
      "server 0: web no longer resolves (no address); keeping its last address 10.0.0.1"
    ])
    assert.deepStrictEqual(Names.step("emergency server", "web", "10.0.0.1", again.failing, addresses("10.0.0.1")), {
      address: undefined,
      failing: false,
      lines: ["emergency server: web resolves again"]
    })
    assert.deepStrictEqual(Names.step("abuse server", "web", "10.0.0.1", true, addresses("10.0.0.5")), {
      address: "10.0.0.5",
      failing: false,
      lines: ["abuse server: web resolves again", "abuse server: web changed address: 10.0.0.1 -> 10.0.0.5"]
    })
  })
})
