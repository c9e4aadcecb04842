import * as NodeServices from "@effect/platform-node/NodeServices"
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
  return Result.isFailure(result) ? result.failure.message : ""
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

  it("a flag given again replaces the earlier one (getopt: the last wins); -d, -O and -o add up", () => {
    assert.deepStrictEqual(argvOf("-f", "-b", "5", "-rf", "-b10", "8080"), ["-r", "-f", "-b=10", "8080"])
    assert.deepStrictEqual(argvOf("-dd", "-O", "a", "-o", "b", "-O", "c"), ["-d", "-d", "-O=a", "-o=b", "-O=c"])
  })

  it("a negative number after a long option that takes a value is that value, not an option", () => {
    assert.deepStrictEqual(argvOf("--grace", "-1", "8080"), ["--grace=-1", "8080"])
    assert.deepStrictEqual(argvOf("--grace", "5", "-r", "8080"), ["--grace", "5", "-r", "8080"])
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

  it("an unknown flag is refused, with the synopsis", () => {
    assert.strictEqual(refused("-Y", "8080"), "unknown option -Y")
    assert.strictEqual(refused("-rY"), "unknown option -Y")
    const result = Cli.normalizeArgv(["-Y"])
    assert.isTrue(Result.isFailure(result) && result.failure.synopsis)
  })

  it("a missing value is refused, naming the flag as the help describes it", () => {
    assert.strictEqual(refused("-b"), "-b (seconds a failed server is blacklisted): needs a value")
    assert.strictEqual(refused("8080", "h1", "-t"), "-t (seconds to wait for a server to accept): needs a value")
    const result = Cli.normalizeArgv(["-b"])
    assert.isTrue(Result.isFailure(result) && !result.failure.synopsis)
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
  idleTimeout: Option.none(),
  sendProxy: Option.none(),
  acceptProxy: false,
  http: false,
  tlsCert: Option.none(),
  tlsKey: Option.none(),
  tlsCaFile: Option.none(),
  tlsCaDir: Option.none(),
  tlsRequire: false,
  tlsProtocol: Option.none(),
  tlsCompat: false,
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
  check: Option.none(),
  checkInterval: 2,
  rise: 2,
  fall: 3,
  slowStart: 0,
  onDown: "keep",
  hashMethod: "pen",
  admin: Option.none(),
  adminTokenFile: Option.none(),
  workers: Option.none(),
  grace: 30,
  peers: Option.none(),
  peersKey: "nib",
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
      // No --idle-timeout: pen's 0 in TCP mode, --udp-idle-timeout's with -U (the listener decides).
      assert.isUndefined(settings.idleTimeoutSeconds)
    }))

  it.effect("--idle-timeout SEC is carried over, 0 included", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        (yield* Cli.toSettings(parsed({ idleTimeout: Option.some(5) }), services)).idleTimeoutSeconds,
        5
      )
      assert.strictEqual(
        (yield* Cli.toSettings(parsed({ idleTimeout: Option.some(0) }), services)).idleTimeoutSeconds,
        0
      )
      assert.match(yield* usageError(parsed({ idleTimeout: Option.some(-1) })), /^--idle-timeout \(seconds without/)
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

  it.effect("--grace: 30 s unless given; 0 and fractions are taken", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* Cli.toSettings(parsed(), services)).graceSeconds, 30)
      assert.strictEqual((yield* Cli.toSettings(parsed({ grace: 0 }), services)).graceSeconds, 0)
      assert.strictEqual((yield* Cli.toSettings(parsed({ grace: 2.5 }), services)).graceSeconds, 2.5)
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

  it.effect("-L takes pen's values and nib's two floors, -Z is a switch; both need -E", () =>
    Effect.gen(function*() {
      const withCert = { tlsCert: Option.some("cert.pem") }
      assert.strictEqual((yield* Cli.toSettings(parsed(withCert), services)).tlsProtocol, "ssl23")
      for (const protocol of ["ssl23", "ssl2", "ssl3", "tls1", "tls1.2", "tls1.3"]) {
        const settings = yield* Cli.toSettings(parsed({ ...withCert, tlsProtocol: Option.some(protocol) }), services)
        assert.strictEqual(settings.tlsProtocol, protocol)
      }
      assert.isTrue((yield* Cli.toSettings(parsed({ ...withCert, tlsCompat: true }), services)).tlsCompat)
      assert.strictEqual(
        yield* usageError(parsed({ ...withCert, tlsProtocol: Option.some("tls1.1") })),
        "-L 'tls1.1': protocol version not known (ssl23, ssl2, ssl3, tls1, tls1.2, tls1.3)"
      )
      assert.strictEqual(yield* usageError(parsed({ tlsProtocol: Option.some("tls1") })), "-L needs -E")
      assert.strictEqual(yield* usageError(parsed({ tlsCompat: true })), "-Z needs -E")
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

const helpLines = Cli.helpText.split("\n")

describe("Cli.helpText", () => {
  it("shows pen's flags as pen's usage does, with their values", () => {
    for (const entry of ["-b sec", "-C [host:]port", "-e host:port", "-x N", "-B host:port", "-t sec", "-T sec"]) {
      assert.isTrue(helpLines.some((line) => line.startsWith(`  ${entry} `)), `no line for ${entry}`)
    }
    assert.isTrue(helpLines.some((line) => /^ {2}-U {2,}UDP mode/.test(line)), "-U is listed as a normal flag")
    assert.isTrue(helpLines.some((line) => /^ {2}-h {2,}choose new clients by address hash/.test(line)))
  })

  it("takes each description from Config.descriptions, with the default where pen's usage shows one", () => {
    assert.include(Cli.helpText, "  -b sec          seconds a failed server is blacklisted [30]\n")
    assert.include(Cli.helpText, "  -c N            slots of the sticky client table [2048]\n")
    assert.include(Cli.helpText, "  -x N            live connections before nib stops accepting [500]\n")
    assert.include(Cli.helpText, "  -t sec          seconds to wait for a server to accept [3]\n")
  })

  it("lists nib's long options in their own section", () => {
    const section = Cli.helpText.slice(Cli.helpText.indexOf("nib's options:"))
    for (const option of ["--demo", "--idle-timeout SEC", "--udp-idle-timeout SEC", "--help", "--version"]) {
      assert.include(section, `  ${option}`)
    }
    assert.include(
      section,
      "  --grace SEC     seconds open connections may take to finish after SIGQUIT (a\n" +
        "                  graceful stop) [30]\n"
    )
  })

  it("shows none of effect/cli's own rendering", () => {
    for (const text of ["--b ", "--wizard", "-h, --help", "--completions", "--log-level", "-v, --version", "integer"]) {
      assert.notInclude(Cli.helpText, text)
    }
  })

  it("marks the flags nib refuses; the TLS ones by their section", () => {
    assert.match(Cli.helpText, /\n {2}-H {2,}add X-Forwarded-For and X-Forwarded-Proto to each HTTP request\n/)
    assert.notMatch(Cli.helpText, /-H[^\n]*\n[^\n]*not supported yet/)
    assert.match(Cli.helpText, /\n {2}-j dir {2,}run in chroot \(not available: Node cannot chroot\)\n/)
    const tls = Cli.helpText.slice(Cli.helpText.indexOf("pen's TLS options:"))
    assert.match(tls, /\n {2}-E certfile {2,}terminate TLS with this certificate \(PEM\)\n/)
    assert.match(tls, /\n {2}-K keyfile {2,}the certificate's key/)
    assert.match(tls, /\n {2}-Z {2,}OpenSSL's workarounds for broken TLS clients/)
    assert.match(tls, /\n {2}-L protocol {2,}the lowest TLS version: ssl23, ssl2, ssl3 or tls1/)
    assert.notInclude(tls, "not supported yet")
  })

  it("lists every option of the table but the hidden ones, in 80 columns", () => {
    for (const section of Cli.sections) {
      for (const option of section.options) {
        const flag = option.name.length > 1 ? `--${option.name}` : `-${option.name}`
        const listed = helpLines.some((line) => line.startsWith(`  ${flag} `) || line === `  ${flag}`)
        assert.strictEqual(listed, option.hidden !== true, flag)
      }
    }
    for (const line of helpLines) assert.isAtMost(line.length, 80, line)
    assert.strictEqual(helpLines[0], Cli.SYNOPSIS)
  })
})

describe("Cli.errorLines", () => {
  it("a usage error: the message, the synopsis when asked, the pointer at --help", () => {
    assert.deepStrictEqual(Cli.errorLines(new Cli.UsageError("-b (x): needs a value")), [
      "nib: -b (x): needs a value",
      "Try 'nib --help' for more information."
    ])
    assert.deepStrictEqual(Cli.errorLines(new Cli.UsageError("unknown option -Y", { synopsis: true })), [
      "nib: unknown option -Y",
      Cli.SYNOPSIS,
      "Try 'nib --help' for more information."
    ])
  })

  it("any other error is its message alone", () => {
    assert.deepStrictEqual(Cli.errorLines(new Error("can't bind local address")), ["nib: can't bind local address"])
  })
})

/** What nib prints on stderr for `argv`, which must fail before nib listens. */
const reported = (...argv: ReadonlyArray<string>) =>
  Cli.run(argv, services).pipe(Effect.flip, Effect.map(Cli.errorLines), Effect.provide(NodeServices.layer))

const pointer = "Try 'nib --help' for more information."

describe("Cli.run: the command line's errors", () => {
  it.effect("nib alone: the synopsis and where to go next", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* reported(), [Cli.SYNOPSIS, Cli.BARE_HINT])
      assert.include(Cli.BARE_HINT, "nib --demo")
    }))

  it.effect("flags but no listen address (-f, pen's -h) are a usage error, not the demo or the help", () =>
    Effect.gen(function*() {
      for (const argv of [["-f"], ["-h"], ["-rh", "-b", "5"]]) {
        assert.deepStrictEqual(yield* reported(...argv), ["nib: no listen address given", Cli.SYNOPSIS, pointer])
      }
      assert.deepStrictEqual(yield* reported("8080"), ["nib: no server given", Cli.SYNOPSIS, pointer])
    }))

  it.effect("an unknown option: its name, the synopsis, the pointer", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* reported("-Y", "8080", "h1"), ["nib: unknown option -Y", Cli.SYNOPSIS, pointer])
      assert.deepStrictEqual(yield* reported("-v"), ["nib: unknown option -v", Cli.SYNOPSIS, pointer])
      assert.deepStrictEqual(yield* reported("--bogus", "8080", "h1"), [
        "nib: unknown option --bogus",
        Cli.SYNOPSIS,
        pointer
      ])
      assert.deepStrictEqual(yield* reported("--dem"), [
        "nib: unknown option --dem (did you mean --demo?)",
        Cli.SYNOPSIS,
        pointer
      ])
      // effect/cli's own global flags are gone
      for (const option of ["--wizard", "--completions=bash", "--log-level=debug"]) {
        const lines = yield* reported(option, "8080", "h1")
        assert.match(lines[0]!, /^nib: unknown option --(wizard|completions|log-level)/)
      }
    }))

  it.effect("a numeric flag given something else: the flag, its description, what was wrong", () =>
    Effect.gen(function*() {
      const numeric: ReadonlyArray<readonly [string, string]> = [
        ["-b", "-b (seconds a failed server is blacklisted)"],
        ["-c", "-c (slots of the sticky client table)"],
        ["-T", "-T (seconds a client is remembered (0 = forever))"],
        ["-t", "-t (seconds to wait for a server to accept)"],
        ["-x", "-x (live connections before nib stops accepting)"],
        ["-q", "-q (listen backlog (at least 50))"],
        ["--udp-idle-timeout", "--udp-idle-timeout (seconds an idle UDP session is kept (idle_timeout overrides))"],
        ["--grace", "--grace (seconds open connections may take to finish after SIGQUIT (a graceful stop))"]
      ]
      for (const [flag, label] of numeric) {
        assert.deepStrictEqual(yield* reported(flag, "abc", "8080", "h1"), [
          `nib: ${label}: 'abc' is not a number`,
          pointer
        ])
      }
      for (
        const [flag, label] of numeric.filter(([name]) => !["-t", "--udp-idle-timeout", "--grace"].includes(name))
      ) {
        assert.deepStrictEqual(yield* reported(`${flag}1.5`, "8080", "h1"), [
          `nib: ${label}: '1.5' is not a whole number`,
          pointer
        ])
      }
      assert.deepStrictEqual(yield* reported("8080", "h1", "--udp-idle-timeout"), [
        `nib: ${numeric[6]![1]}: needs a value`,
        pointer
      ])
      const idle = "--idle-timeout (seconds without a byte either way after which a connection is closed " +
        "(0 = never, the default; with -U, replaces --udp-idle-timeout))"
      assert.deepStrictEqual(yield* reported("--idle-timeout", "abc", "8080", "h1"), [
        `nib: ${idle}: 'abc' is not a number`,
        pointer
      ])
      assert.deepStrictEqual(yield* reported("--idle-timeout", "1.5", "8080", "h1"), [
        `nib: ${idle}: '1.5' is not a whole number`,
        pointer
      ])
    }))

  it.effect("a value out of range names the flag too", () =>
    Effect.gen(function*() {
      for (
        const [argv, label] of [
          [["-t", "0"], "-t ("],
          [["-c", "0"], "-c ("],
          [["-x0"], "-x ("],
          [["-b", "-1"], "-b ("],
          [
            ["-T", "-1"],
            "-T ("
          ],
          [["--udp-idle-timeout", "0"], "--udp-idle-timeout ("],
          [["--grace", "-1"], "--grace ("],
          [["--idle-timeout=-1"], "--idle-timeout ("],
          [["--idle-timeout", "-1"], "--idle-timeout ("]
        ] as const
      ) {
        const lines = yield* reported(...argv, "8080", "h1")
        assert.strictEqual(lines.length, 2, lines.join("\n"))
        assert.isTrue(lines[0]!.startsWith(`nib: ${label}`), lines[0])
        assert.strictEqual(lines[1], pointer)
      }
    }))

  it.effect("a bad address for -e, -B, -C or the listen address names the flag and the value", () =>
    Effect.gen(function*() {
      for (
        const [argv, start] of [
          [["-e", "10.0.0.9:nope"], "nib: -e '10.0.0.9:nope': "],
          [["-B", "10.0.0.9:nope"], "nib: -B '10.0.0.9:nope': "],
          [["-C", "127.0.0.1:99999"], "nib: -C '127.0.0.1:99999': "]
        ] as const
      ) {
        const lines = yield* reported(...argv, "8080", "h1")
        assert.strictEqual(lines.length, 2, lines.join("\n"))
        assert.isTrue(lines[0]!.startsWith(start), lines[0])
      }
      const lines = yield* reported("70000", "h1")
      assert.deepStrictEqual(lines.length, 2)
      assert.include(lines[0], "70000")
    }))

  it.effect("every value-taking flag without its value: the flag, its description, 'needs a value'", () =>
    Effect.gen(function*() {
      for (const section of Cli.sections) {
        for (const option of section.options) {
          if (option.value === undefined || option.refused !== undefined || option.name.length > 1) continue
          const lines = yield* reported("8080", "h1", `-${option.name}`)
          assert.strictEqual(lines.length, 2, lines.join("\n"))
          assert.match(lines[0]!, new RegExp(`^nib: -${option.name}( \\(.*\\))?: needs a value$`))
        }
      }
    }))

  const VALUES: Readonly<Record<string, string>> = {
    "send-proxy": "v1",
    "on-down": "close",
    "hash-method": "consistent",
    check: "tcp"
  }
  it.effect("every option the table passes on is one effect/cli parses (parsing gets as far as the listen address)", () =>
    Effect.gen(function*() {
      for (const section of Cli.sections) {
        for (const option of section.options) {
          if (option.refused !== undefined || option.notice !== undefined || option.ignored === true) continue
          if (["demo", "help", "version"].includes(option.name)) continue
          const flag = option.name.length > 1 ? `--${option.name}` : `-${option.name}`
          // A value the option takes: a number for most, a word for the others.
          const value = VALUES[option.name] ?? "1"
          const lines = yield* reported("-f", flag, ...(option.value === undefined ? [] : [value]))
          assert.deepStrictEqual(lines, ["nib: no listen address given", Cli.SYNOPSIS, pointer], flag)
        }
      }
    }))
})
