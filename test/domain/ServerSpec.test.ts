import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import * as Address from "../../src/domain/Address.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"

const services = Address.parseServicesFile("http 80/tcp www\nnibtest 4242/tcp\n")

// `null` stands for a Unix listener (no listen port); a default parameter would swallow `undefined`.
const UNIX_LISTENER = null

const parse = (text: string, defaultPort: number | null = 8080) =>
  ServerSpec.parse(text, defaultPort ?? undefined, services)

const spec = (
  endpoint: Address.Endpoint,
  softLimit = 0,
  hardLimit = 0,
  weight = 0,
  prio = 0
): ServerSpec.ServerSpec => ({ endpoint, softLimit, hardLimit, weight, prio })

const assertParses = (text: string, expected: ServerSpec.ServerSpec, defaultPort: number | null = 8080) => {
  const result = parse(text, defaultPort)
  assert.isTrue(Result.isSuccess(result), `parse('${text}') failed: ${Result.isFailure(result) && result.failure}`)
  if (Result.isSuccess(result)) assert.deepStrictEqual(result.success, expected)
}

const assertFails = (text: string, defaultPort: number | null = 8080): string => {
  const result = parse(text, defaultPort)
  assert.isTrue(Result.isFailure(result), `parse('${text}') should fail, got ${JSON.stringify(result)}`)
  return Result.isFailure(result) ? result.failure : ""
}

const Small = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 100000 }))
const PortSchema = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65535 }))

describe("ServerSpec.parse", () => {
  it("a bare host takes the listen port", () => {
    assertParses("10.0.0.1", spec(Address.tcp("10.0.0.1", 8080)))
    assertParses("backend.example", spec(Address.tcp("backend.example", 443)), 443)
  })

  it("host:port", () => {
    assertParses("10.0.0.1:9001", spec(Address.tcp("10.0.0.1", 9001)))
  })

  it("an empty port field also means the listen port", () => {
    assertParses("10.0.0.1:", spec(Address.tcp("10.0.0.1", 8080)))
  })

  it("h:p:maxc:hard:weight:prio in that order", () => {
    assertParses("127.0.0.1:9002:10:20:3:1", spec(Address.tcp("127.0.0.1", 9002), 10, 20, 3, 1))
  })

  it("missing numeric fields are 0", () => {
    assertParses("127.0.0.1:9002:10", spec(Address.tcp("127.0.0.1", 9002), 10))
    assertParses("127.0.0.1:9002:10:20", spec(Address.tcp("127.0.0.1", 9002), 10, 20))
    assertParses("127.0.0.1:9002:10:20:3", spec(Address.tcp("127.0.0.1", 9002), 10, 20, 3))
  })

  it("IPv6 hosts in brackets", () => {
    assertParses("[::1]:8080:10:20:1:0", spec(Address.tcp("::1", 8080), 10, 20, 1, 0))
    assertParses("[fe80::1]:9000", spec(Address.tcp("fe80::1", 9000)))
    assertParses("[::1]", spec(Address.tcp("::1", 8080)))
  })

  it("a path containing / is a Unix socket backend", () => {
    assertParses("/tmp/backend.sock", spec(Address.unix("/tmp/backend.sock")))
    assertParses("/tmp/backend.sock", spec(Address.unix("/tmp/backend.sock")), UNIX_LISTENER)
  })

  it("a service name as port", () => {
    assertParses("10.0.0.1:http", spec(Address.tcp("10.0.0.1", 80)))
    assertParses("10.0.0.1:www:5", spec(Address.tcp("10.0.0.1", 80), 5))
    assertParses("[::1]:nibtest", spec(Address.tcp("::1", 4242)))
  })

  it("rejects a non-numeric limit field", () => {
    assert.include(assertFails("10.0.0.1:80:ten"), "maxc")
    assert.include(assertFails("10.0.0.1:80:1:x"), "hard")
    assert.include(assertFails("10.0.0.1:80:1:2:w"), "weight")
    assert.include(assertFails("10.0.0.1:80:1:2:3:p"), "prio")
  })

  it("rejects too many fields", () => {
    assertFails("10.0.0.1:80:1:2:3:4:5")
    assertFails("[::1]:80:1:2:3:4:5")
  })

  it("rejects an empty host", () => {
    assertFails(":8080")
    assertFails("")
    assertFails("[]:8080")
  })

  it("rejects a missing ]", () => {
    assert.include(assertFails("[::1:8080"), "]")
  })

  it("rejects junk after ]", () => {
    assertFails("[::1]8080")
  })

  it("rejects a bad port", () => {
    assert.include(assertFails("10.0.0.1:abc"), "abc")
    assertFails("10.0.0.1:70000")
    assertFails("10.0.0.1:0")
  })

  it("a TCP server needs a port when nib listens on a Unix socket", () => {
    assertFails("10.0.0.1", UNIX_LISTENER)
    assertFails("[::1]", UNIX_LISTENER)
    assertParses("10.0.0.1:80", spec(Address.tcp("10.0.0.1", 80)), UNIX_LISTENER)
  })

  it.prop(
    "all six fields round-trip",
    [PortSchema, Small, Small, Small, Small],
    ([port, maxc, hard, weight, prio]) => {
      assertParses(`10.1.2.3:${port}:${maxc}:${hard}:${weight}:${prio}`, {
        endpoint: Address.tcp("10.1.2.3", port),
        softLimit: maxc,
        hardLimit: hard,
        weight,
        prio
      })
      assertParses(`[2001:db8::7]:${port}:${maxc}:${hard}:${weight}:${prio}`, {
        endpoint: Address.tcp("2001:db8::7", port),
        softLimit: maxc,
        hardLimit: hard,
        weight,
        prio
      })
    }
  )

  it.prop("a missing port is the listen port, whatever it is", [PortSchema], ([listenPort]) => {
    assertParses("10.0.0.9", spec(Address.tcp("10.0.0.9", listenPort)), listenPort)
  })
})

describe("ServerSpec.make", () => {
  it("defaults every limit to 0 (unlimited, no weight, prio 0) and keeps the ones given", () => {
    const endpoint = Address.tcp("10.0.0.1", 80)
    assert.deepStrictEqual(ServerSpec.make(endpoint), { endpoint, softLimit: 0, hardLimit: 0, weight: 0, prio: 0 })
    assert.deepStrictEqual(ServerSpec.make(endpoint, { softLimit: 2, hardLimit: 4 }), {
      endpoint,
      softLimit: 2,
      hardLimit: 4,
      weight: 0,
      prio: 0
    })
    // The same value the command line's parser gives for the same text.
    assert.deepStrictEqual(
      Result.getOrThrow(ServerSpec.parse("10.0.0.1:80:2:4", 8080, Address.wellKnownServices)),
      ServerSpec.make(endpoint, { softLimit: 2, hardLimit: 4 })
    )
  })
})

describe("identity (how --peers names a server)", () => {
  it("a name and port for a server given by host name, its address otherwise", () => {
    assert.strictEqual(ServerSpec.identity(ServerSpec.make(Address.tcp("10.0.0.7", 80), { name: "web1" })), "web1:80")
    assert.strictEqual(ServerSpec.identity(ServerSpec.make(Address.tcp("10.0.0.7", 80))), "10.0.0.7:80")
    assert.strictEqual(ServerSpec.identity(ServerSpec.make(Address.tcp("::1", 8080))), "[::1]:8080")
    assert.strictEqual(ServerSpec.identity(ServerSpec.make(Address.unix("/run/app.sock"))), "/run/app.sock")
  })
})
