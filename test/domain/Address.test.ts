import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import * as Address from "../../src/domain/Address.ts"

const SERVICES_TEXT = [
  "# Network services, Internet style",
  "tcpmux\t\t1/tcp\t\t\t\t# TCP port service multiplexer",
  "http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP",
  "nibtest\t\t4242/tcp\t\tnibalias\tnibother",
  "onlyudp\t\t5353/udp",
  "",
  "   # an indented comment",
  "smtp\t\t25/tcp\t\tmail"
].join("\n")

const services = Address.parseServicesFile(SERVICES_TEXT)

const listen = (text: string, lookup: Address.ServiceNames = services) => Address.parseListen(text, lookup)

const assertListen = (text: string, expected: Address.Endpoint, lookup: Address.ServiceNames = services) => {
  const result = listen(text, lookup)
  assert.isTrue(
    Result.isSuccess(result),
    `parseListen('${text}') failed: ${Result.isFailure(result) && result.failure}`
  )
  if (Result.isSuccess(result)) assert.deepStrictEqual(result.success, expected)
}

const failure = <A>(result: Result.Result<A, string>): string => {
  assert.isTrue(Result.isFailure(result), `expected a failure, got ${JSON.stringify(result)}`)
  return Result.isFailure(result) ? result.failure : ""
}

describe("Address.parseServicesFile", () => {
  it("maps tcp names and their aliases to ports", () => {
    assert.strictEqual(services("http"), 80)
    assert.strictEqual(services("www"), 80)
    assert.strictEqual(services("tcpmux"), 1)
    assert.strictEqual(services("nibtest"), 4242)
    assert.strictEqual(services("nibalias"), 4242)
    assert.strictEqual(services("nibother"), 4242)
    assert.strictEqual(services("mail"), 25)
  })

  it("ignores udp-only entries and comments", () => {
    assert.isUndefined(services("onlyudp"))
    assert.isUndefined(services("Network"))
    assert.isUndefined(services("#"))
  })

  it("falls back to the well-known services for names the file lacks", () => {
    assert.strictEqual(services("ssh"), 22)
    assert.isUndefined(services("no-such-service"))
  })

  it("prefers the file's port over the well-known table", () => {
    const custom = Address.parseServicesFile("http 8000/tcp\n")
    assert.strictEqual(custom("http"), 8000)
  })
})

describe("Address.wellKnownServices", () => {
  it("knows the common names", () => {
    assert.strictEqual(Address.wellKnownServices("http"), 80)
    assert.strictEqual(Address.wellKnownServices("smtp"), 25)
    assert.strictEqual(Address.wellKnownServices("https"), 443)
    assert.isUndefined(Address.wellKnownServices("abc"))
  })
})

describe("Address.parseListen", () => {
  it("a bare port listens on every IPv4 interface", () => {
    assertListen("8080", Address.tcp("0.0.0.0", 8080))
  })

  it("host:port", () => {
    assertListen("127.0.0.1:8080", Address.tcp("127.0.0.1", 8080))
    assertListen("localhost:9000", Address.tcp("localhost", 9000))
  })

  it("splits IPv6 without brackets at the last colon, as pen does", () => {
    assertListen("::1:8080", Address.tcp("::1", 8080))
    assertListen(":::8080", Address.tcp("::", 8080))
    assertListen("fe80::1:2:443", Address.tcp("fe80::1:2", 443))
  })

  it("accepts nib's bracketed [v6]:port", () => {
    assertListen("[::1]:8080", Address.tcp("::1", 8080))
    assertListen("[::]:80", Address.tcp("::", 80))
  })

  it("rejects malformed brackets", () => {
    failure(listen("[::1]8080"))
    failure(listen("[::1"))
    failure(listen("[]:8080"))
  })

  it("resolves service names through a parsed services file", () => {
    assertListen("http", Address.tcp("0.0.0.0", 80))
    assertListen("127.0.0.1:www", Address.tcp("127.0.0.1", 80))
    assertListen("::1:nibtest", Address.tcp("::1", 4242))
  })

  it("resolves service names through wellKnownServices", () => {
    assertListen("http", Address.tcp("0.0.0.0", 80), Address.wellKnownServices)
    assertListen("127.0.0.1:smtp", Address.tcp("127.0.0.1", 25), Address.wellKnownServices)
  })

  it("a path containing / is a Unix socket", () => {
    assertListen("/tmp/x.sock", Address.unix("/tmp/x.sock"))
    assertListen("./rel/x:1", Address.unix("./rel/x:1"))
  })

  it("accepts port 0 for a listener (any free port)", () => {
    assertListen("0", Address.tcp("0.0.0.0", 0))
    assertListen("127.0.0.1:0", Address.tcp("127.0.0.1", 0))
  })

  it("accepts the extreme ports", () => {
    assertListen("1", Address.tcp("0.0.0.0", 1))
    assertListen("65535", Address.tcp("0.0.0.0", 65535))
  })

  it("rejects ports out of range", () => {
    assert.include(failure(listen("70000")), "70000")
    assert.include(failure(listen("127.0.0.1:65536")), "65536")
  })

  it("rejects unknown service names", () => {
    assert.include(failure(listen("abc")), "abc")
    assert.include(failure(listen("127.0.0.1:abc")), "abc")
    failure(listen("onlyudp", services))
  })

  it("rejects an empty port", () => {
    failure(listen(""))
    failure(listen("127.0.0.1:"))
    failure(listen("[::1]:"))
  })

  it.prop(
    "every port 0..65535 round-trips with any IPv4 host",
    [
      Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 })),
      Schema.Int.check(
        Schema.isBetween({ minimum: 0, maximum: 255 })
      )
    ],
    ([port, octet]) => {
      assertListen(`${port}`, Address.tcp("0.0.0.0", port))
      assertListen(`10.0.0.${octet}:${port}`, Address.tcp(`10.0.0.${octet}`, port))
    }
  )
})

describe("Address.parsePort", () => {
  it("refuses 0 unless allowed", () => {
    failure(Address.parsePort("0", services))
    assert.deepStrictEqual(Address.parsePort("0", services, true), Result.succeed(0))
  })

  it("numbers and names", () => {
    assert.deepStrictEqual(Address.parsePort("8080", services), Result.succeed(8080))
    assert.deepStrictEqual(Address.parsePort("http", services), Result.succeed(80))
    assert.include(failure(Address.parsePort("", services)), "missing")
    failure(Address.parsePort("-1", services))
    failure(Address.parsePort("70000", services))
  })
})

describe("Address.format", () => {
  it("formats IPv4, IPv6 and Unix endpoints", () => {
    assert.strictEqual(Address.format(Address.tcp("127.0.0.1", 8080)), "127.0.0.1:8080")
    assert.strictEqual(Address.format(Address.tcp("0.0.0.0", 80)), "0.0.0.0:80")
    assert.strictEqual(Address.format(Address.tcp("::1", 8080)), "[::1]:8080")
    assert.strictEqual(Address.format(Address.tcp("localhost", 1)), "localhost:1")
    assert.strictEqual(Address.format(Address.unix("/tmp/x.sock")), "/tmp/x.sock")
  })

  it("what it prints parses back to the same endpoint", () => {
    for (const endpoint of [Address.tcp("127.0.0.1", 8080), Address.tcp("::1", 443), Address.unix("/tmp/x.sock")]) {
      assertListen(Address.format(endpoint), endpoint)
    }
  })
})
