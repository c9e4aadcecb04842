import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Result } from "effect"
import * as Cli from "../src/Cli.ts"
import * as Address from "../src/domain/Address.ts"

const normalized = (args: ReadonlyArray<string>): Cli.Normalized => {
  const result = Cli.normalizeArgv(args)
  assert.isTrue(Result.isSuccess(result), `normalizeArgv(${JSON.stringify(args)}) failed: ${JSON.stringify(result)}`)
  return Result.isSuccess(result) ? result.success : { argv: [], notices: [] }
}

const argvOf = (...args: ReadonlyArray<string>) => normalized(args).argv

const refused = (...args: ReadonlyArray<string>): string => {
  const result = Cli.normalizeArgv(args)
  assert.isTrue(
    Result.isFailure(result),
    `normalizeArgv(${JSON.stringify(args)}) should fail: ${JSON.stringify(result)}`
  )
  return Result.isFailure(result) ? result.failure : ""
}

const NOTICE = {
  D: "Pen 0.26.0 removed the delayed forward feature,\nmaking the -D option obsolete",
  Q: "Since Pen 0.26.0, kqueue is already the default on supported systems,\nmaking the -Q option obsolete",
  S: "As of 0.28.1 the server table is expanded dynamically,\nmaking the -S option obsolete",
  n: "Pen 0.26.0 and up uses only nonblocking sockets,\nmaking the -n option obsolete"
}

describe("Cli.normalizeArgv", () => {
  it("passes positionals and long options through", () => {
    assert.deepStrictEqual(argvOf("8080", "10.0.0.1:80"), ["8080", "10.0.0.1:80"])
    assert.deepStrictEqual(argvOf("--demo"), ["--demo"])
    assert.deepStrictEqual(normalized([]), { argv: [], notices: [] })
  })

  it("splits clustered flags: -rh -> -r -h", () => {
    assert.deepStrictEqual(argvOf("-rh", "8080", "h1"), ["-r", "-h", "8080", "h1"])
    assert.deepStrictEqual(argvOf("-fdds"), ["-f", "-d", "-d", "-s"])
  })

  it("attaches values: -b30 and -b 30 both become -b=30", () => {
    assert.deepStrictEqual(argvOf("-b30"), ["-b=30"])
    assert.deepStrictEqual(argvOf("-b", "30"), ["-b=30"])
    assert.deepStrictEqual(argvOf("-t", "5", "-x", "100", "8080"), ["-t=5", "-x=100", "8080"])
    assert.deepStrictEqual(argvOf("-e", "10.0.0.9:80"), ["-e=10.0.0.9:80"])
  })

  it("a value ends a cluster: -rb30 -> -r -b=30, -rb 30 too", () => {
    assert.deepStrictEqual(argvOf("-rb30"), ["-r", "-b=30"])
    assert.deepStrictEqual(argvOf("-rb", "30", "8080"), ["-r", "-b=30", "8080"])
    // the rest of the cluster is the value, even if it looks like flags
    assert.deepStrictEqual(argvOf("-bhr"), ["-b=hr"])
  })

  it("a value beginning with - stays a value: -b -1 -> -b=-1", () => {
    assert.deepStrictEqual(argvOf("-b", "-1"), ["-b=-1"])
    assert.deepStrictEqual(argvOf("-p", "-"), ["-p=-"])
  })

  it("options after positionals are still options (glibc getopt permutes)", () => {
    assert.deepStrictEqual(argvOf("8080", "h1", "-r"), ["8080", "h1", "-r"])
  })

  it("-- passes the rest through untouched", () => {
    assert.deepStrictEqual(argvOf("-r", "--", "-U", "-rh", "8080"), ["-r", "--", "-U", "-rh", "8080"])
  })

  it("obsolete -D, -Q, -S N and -n are dropped with pen's notice", () => {
    const result = normalized(["-D", "-Q", "-S", "5", "-n", "-r", "8080"])
    assert.deepStrictEqual(result.argv, ["-r", "8080"])
    assert.deepStrictEqual(result.notices, [NOTICE.D, NOTICE.Q, NOTICE.S, NOTICE.n])
  })

  it("an obsolete flag inside a cluster, and -S with an attached value", () => {
    const result = normalized(["-rDh", "-S5", "8080"])
    assert.deepStrictEqual(result.argv, ["-r", "-h", "8080"])
    assert.deepStrictEqual(result.notices, [NOTICE.D, NOTICE.S])
  })

  it("harmless -P, -a and -m N are dropped silently", () => {
    const result = normalized(["-P", "-a", "-m", "10", "-r", "-m20", "8080"])
    assert.deepStrictEqual(result.argv, ["-r", "8080"])
    assert.deepStrictEqual(result.notices, [])
    assert.deepStrictEqual(normalized(["-Pam", "10", "8080"]), { argv: ["8080"], notices: [] })
  })

  it("flags nib does not implement yet are refused by name", () => {
    const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
      [["-H"], "-H"],
      [["-rH"], "-H"],
      [["-E", "cert.pem"], "-E"]
    ]
    for (const [args, flag] of cases) {
      const message = refused(...args, "8080", "h1")
      assert.include(message, "is not supported yet")
      assert.include(message, flag)
    }
  })

  it("an unknown flag is refused", () => {
    assert.include(refused("-Y", "8080"), "-Y")
    assert.include(refused("-rY"), "-Y")
  })

  it("a missing value is refused", () => {
    assert.include(refused("-b"), "-b")
    assert.include(refused("8080", "h1", "-t"), "-t")
  })

  it("-j (chroot) is refused: Node cannot chroot", () => {
    assert.include(refused("-j", "/var/empty", "8080", "h1"), "Node cannot chroot")
  })

  it("-C, -X, -O, -o and -u are taken", () => {
    assert.deepStrictEqual(
      normalized(["-X", "-C", "9000", "-O", "roundrobin", "-ohash", "-u", "nobody", "8080", "h"]),
      {
        argv: ["-X", "-C=9000", "-O=roundrobin", "-o=hash", "-u=nobody", "8080", "h"],
        notices: []
      }
    )
  })

  it("-N is refused", () => {
    assert.include(refused("-N", "8080", "h1"), "-N")
  })
})

type Parsed = Parameters<typeof Cli.toSettings>[0]

const parsed = (overrides: Partial<Parsed> = {}): Parsed => ({
  blacklist: 30,
  clients: 2048,
  emergency: Option.none(),
  abuse: Option.none(),
  udp: false,
  udpIdle: 60,
  foreground: false,
  hash: false,
  roundrobin: false,
  stubborn: false,
  timeout: 3,
  tracking: 0,
  weight: false,
  connections: 500,
  backlog: 500,
  pidFile: Option.none(),
  debug: [],
  control: Option.none(),
  exitEnabled: false,
  commandsO: [],
  commandso: [],
  user: Option.none(),
  logTarget: Option.none(),
  webStats: Option.none(),
  configFile: Option.none(),
  demo: false,
  listen: Option.some("8080"),
  servers: ["10.0.0.1", "10.0.0.2:9002:10:20:3:1"],
  ...overrides
})

const services = Address.parseServicesFile("http 80/tcp www\n")

const usageError = (input: Parsed) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Cli.toSettings(input, services))
    assert.instanceOf(error, Cli.UsageError)
    return error.message
  })

describe("Cli.toSettings", () => {
  it.effect("parses servers, taking the listen port as their default port", () =>
    Effect.gen(function*() {
      const settings = yield* Cli.toSettings(parsed(), services)
      assert.deepStrictEqual(settings.listen, Address.tcp("0.0.0.0", 8080))
      assert.deepStrictEqual(settings.servers, [
        { endpoint: Address.tcp("10.0.0.1", 8080), softLimit: 0, hardLimit: 0, weight: 0, prio: 0 },
        { endpoint: Address.tcp("10.0.0.2", 9002), softLimit: 10, hardLimit: 20, weight: 3, prio: 1 }
      ])
      assert.isUndefined(settings.emergency)
      assert.strictEqual(settings.backlog, 500)
      assert.strictEqual(settings.blacklistSeconds, 30)
      assert.strictEqual(settings.debug, 0)
    }))

  it.effect("the listen port may be a service name, and servers inherit it", () =>
    Effect.gen(function*() {
      const settings = yield* Cli.toSettings(
        parsed({ listen: Option.some("127.0.0.1:http"), servers: ["h1"] }),
        services
      )
      assert.deepStrictEqual(settings.listen, Address.tcp("127.0.0.1", 80))
      assert.deepStrictEqual(settings.servers[0]!.endpoint, Address.tcp("h1", 80))
    }))

  it.effect("carries the flags over", () =>
    Effect.gen(function*() {
      const settings = yield* Cli.toSettings(
        parsed({
          blacklist: 5,
          clients: 10,
          timeout: 1,
          tracking: 60,
          connections: 20,
          roundrobin: true,
          hash: true,
          weight: true,
          stubborn: true,
          foreground: true,
          pidFile: Option.some("/tmp/nib.pid"),
          debug: [true, true]
        }),
        services
      )
      assert.strictEqual(settings.blacklistSeconds, 5)
      assert.strictEqual(settings.clientsMax, 10)
      assert.strictEqual(settings.connectTimeoutSeconds, 1)
      assert.strictEqual(settings.trackingSeconds, 60)
      assert.strictEqual(settings.connectionsMax, 20)
      assert.isTrue(settings.roundrobin && settings.hash && settings.weight && settings.stubborn && settings.foreground)
      assert.strictEqual(settings.pidFile, "/tmp/nib.pid")
      assert.strictEqual(settings.debug, 2)
    }))

  it.effect("parses the emergency server, defaulting its port to the listen port", () =>
    Effect.gen(function*() {
      const settings = yield* Cli.toSettings(parsed({ emergency: Option.some("10.0.0.9") }), services)
      assert.deepStrictEqual(settings.emergency, {
        endpoint: Address.tcp("10.0.0.9", 8080),
        softLimit: 0,
        hardLimit: 0,
        weight: 0,
        prio: 0
      })
      const withPort = yield* Cli.toSettings(parsed({ emergency: Option.some("[::1]:7000") }), services)
      assert.deepStrictEqual(withPort.emergency?.endpoint, Address.tcp("::1", 7000))
    }))

  it.effect("a bad emergency server is a UsageError naming -e", () =>
    Effect.gen(function*() {
      const message = yield* usageError(parsed({ emergency: Option.some("10.0.0.9:nope") }))
      assert.include(message, "-e")
      assert.include(message, "10.0.0.9:nope")
    }))

  it.effect("a backlog under 50 is raised to 50", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* Cli.toSettings(parsed({ backlog: 10 }), services)).backlog, 50)
      assert.strictEqual((yield* Cli.toSettings(parsed({ backlog: -3 }), services)).backlog, 50)
      assert.strictEqual((yield* Cli.toSettings(parsed({ backlog: 50 }), services)).backlog, 50)
      assert.strictEqual((yield* Cli.toSettings(parsed({ backlog: 51 }), services)).backlog, 51)
    }))

  it.effect("a bad server spec is a UsageError naming the spec", () =>
    Effect.gen(function*() {
      const message = yield* usageError(parsed({ servers: ["10.0.0.1", "10.0.0.2:80:ten"] }))
      assert.include(message, "10.0.0.2:80:ten")
      assert.notInclude(message, "'10.0.0.1'")
    }))

  it.effect("no server is a UsageError", () =>
    Effect.gen(function*() {
      assert.include(yield* usageError(parsed({ servers: [] })), "server")
    }))

  it.effect("no listen address is a UsageError", () =>
    Effect.gen(function*() {
      assert.include(yield* usageError(parsed({ listen: Option.none() })), "listen")
    }))

  it.effect("a bad listen address is a UsageError naming it", () =>
    Effect.gen(function*() {
      assert.include(yield* usageError(parsed({ listen: Option.some("70000") })), "70000")
    }))

  it.effect("a Unix listener requires TCP servers to name their port", () =>
    Effect.gen(function*() {
      const message = yield* usageError(parsed({ listen: Option.some("/tmp/nib.sock"), servers: ["10.0.0.1"] }))
      assert.include(message, "10.0.0.1")
      const settings = yield* Cli.toSettings(
        parsed({ listen: Option.some("/tmp/nib.sock"), servers: ["10.0.0.1:80", "/tmp/b.sock"] }),
        services
      )
      assert.deepStrictEqual(settings.listen, Address.unix("/tmp/nib.sock"))
      assert.deepStrictEqual(settings.servers.map((s) => s.endpoint), [
        Address.tcp("10.0.0.1", 80),
        Address.unix("/tmp/b.sock")
      ])
    }))

  it.effect("values the Config schema rejects become UsageErrors naming the flag", () =>
    Effect.gen(function*() {
      assert.include(yield* usageError(parsed({ timeout: 0 })), "-t")
      assert.include(yield* usageError(parsed({ connections: 0 })), "-x")
    }))
})
