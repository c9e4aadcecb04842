import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import * as CompanionArgs from "../../src/domain/CompanionArgs.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

const settings = <A>(result: Result.Result<CompanionArgs.Command<A>, string>): A => {
  if (Result.isFailure(result)) throw new Error(result.failure)
  if (result.success._tag === "Help") throw new Error("help")
  return result.success.settings
}
const failure = <A>(result: Result.Result<A, string>): string => {
  if (Result.isSuccess(result)) throw new Error(`expected a failure, got ${JSON.stringify(result.success)}`)
  return result.failure
}

describe("CompanionArgs.getopt", () => {
  it("reads clustered flags, attached and separate values, operands anywhere, and --", () => {
    assert.deepStrictEqual(
      Result.getOrThrow(CompanionArgs.getopt(["-dfn5", "10000", "-l", "-x.log", "--", "-b"], {
        withValue: "ln",
        flags: "dfb"
      })),
      {
        options: [
          { flag: "d", value: undefined },
          { flag: "f", value: undefined },
          { flag: "n", value: "5" },
          { flag: "l", value: "-x.log" }
        ],
        operands: ["10000", "-b"]
      }
    )
    assert.strictEqual(failure(CompanionArgs.getopt(["-q"], { withValue: "", flags: "d" })), "unknown option -q")
    assert.strictEqual(failure(CompanionArgs.getopt(["-n"], { withValue: "n", flags: "" })), "option -n needs a value")
    assert.strictEqual(failure(CompanionArgs.getopt(["--foo"], { withValue: "", flags: "" })), "unknown option --foo")
  })
})

describe("CompanionArgs.parseLogd", () => {
  it("has penlogd's defaults", () => {
    assert.deepStrictEqual(settings(CompanionArgs.parseLogd(["10000"])), {
      debug: 0,
      foreground: false,
      lineBuffered: false,
      logFile: undefined,
      ringSize: 1000,
      pidFile: undefined,
      user: undefined,
      port: 10000
    })
  })

  it.prop(
    "however the flags are written (clustered, attached, before or after the port), they read the same",
    { debug: int(0, 3), foreground: Schema.Boolean, ring: int(1, 100_000), port: int(1, 65535), split: Schema.Boolean },
    ({ debug, foreground, port, ring, split }) => {
      const flags = "d".repeat(debug) + (foreground ? "f" : "") + "b"
      const expected = {
        debug,
        foreground,
        lineBuffered: true,
        logFile: "/var/log/x.log",
        ringSize: ring,
        pidFile: "/run/x.pid",
        user: "nobody",
        port
      }
      const forms = [
        [`-${flags}`, "-l", "/var/log/x.log", `-n${ring}`, "-p", "/run/x.pid", "-u", "nobody", String(port)],
        [
          String(port),
          ...flags.split("").map((f) => `-${f}`),
          "-n",
          String(ring),
          "-l/var/log/x.log",
          "-p/run/x.pid",
          "-unobody"
        ],
        split
          ? ["-p", "/run/x.pid", String(port), `-${flags}n`, String(ring), "-u", "nobody", "-l", "/var/log/x.log"]
          : [`-${flags}l/var/log/x.log`, "-n", String(ring), "-unobody", "-p", "/run/x.pid", "--", String(port)]
      ]
      for (const argv of forms) {
        assert.deepStrictEqual(settings(CompanionArgs.parseLogd(argv)), expected, argv.join(" "))
      }
    }
  )

  it("names the bad argument", () => {
    assert.strictEqual(failure(CompanionArgs.parseLogd(["0"])), "port '0': expected a port, 1..65535")
    assert.strictEqual(failure(CompanionArgs.parseLogd(["99999"])), "port '99999': expected a port, 1..65535")
    assert.strictEqual(failure(CompanionArgs.parseLogd(["17001x"])), "port '17001x': expected a whole number")
    assert.strictEqual(
      failure(CompanionArgs.parseLogd(["-n", "0", "1"])),
      "-n '0': expected a whole number of at least 1"
    )
    assert.strictEqual(failure(CompanionArgs.parseLogd(["-n", "abc", "1"])), "-n 'abc': expected a whole number")
    assert.strictEqual(failure(CompanionArgs.parseLogd(["-f"])), "no port given")
    assert.strictEqual(failure(CompanionArgs.parseLogd(["1", "2"])), "unexpected argument '2' after the port")
    assert.strictEqual(failure(CompanionArgs.parseLogd(["-x", "1"])), "unknown option -x")
    assert.strictEqual(failure(CompanionArgs.parseLogd(["-j", "/jail", "1"])), CompanionArgs.CHROOT_REFUSED)
    assert.strictEqual(failure(CompanionArgs.parseLogd(["-l", "", "1"])), "-l '': expected a file name")
  })

  it("prints its usage for no argument, -h or --help", () => {
    for (const argv of [[], ["-h"], ["--help"], ["-fh", "1"]]) {
      assert.deepStrictEqual(Result.getOrThrow(CompanionArgs.parseLogd(argv)), { _tag: "Help" })
    }
  })
})

describe("CompanionArgs.parseSend", () => {
  const services = CompanionArgs.udpServices("syslog\t514/udp\nhttp 80/tcp www\n# comment\ndomain 53/udp\n")

  it("reads host, port (a number or a UDP service name) and the optional local address", () => {
    assert.deepStrictEqual(settings(CompanionArgs.parseSend(["lb", "10000"], services)), {
      host: "lb",
      port: 10000,
      localAddress: undefined
    })
    assert.deepStrictEqual(settings(CompanionArgs.parseSend(["lb", "syslog", "10.0.0.2"], services)), {
      host: "lb",
      port: 514,
      localAddress: "10.0.0.2"
    })
  })

  it("fails as penlog does on too few arguments, and names any other bad one", () => {
    assert.strictEqual(failure(CompanionArgs.parseSend([], services)), CompanionArgs.SEND_USAGE)
    assert.strictEqual(failure(CompanionArgs.parseSend(["lb"], services)), CompanionArgs.SEND_USAGE)
    assert.strictEqual(
      failure(CompanionArgs.parseSend(["lb", "http"], services)),
      "server_port 'http': not a port number or a UDP service name"
    )
    assert.strictEqual(
      failure(CompanionArgs.parseSend(["lb", "0"], services)),
      "server_port '0': expected a port, 1..65535"
    )
    assert.strictEqual(
      failure(CompanionArgs.parseSend(["a", "1", "b", "c"], services)),
      "unexpected argument 'c' after my_ip"
    )
  })
})

describe("CompanionArgs.parseMerge", () => {
  it("has mergelogs' defaults and reads every server:logfile", () => {
    assert.deepStrictEqual(settings(CompanionArgs.parseMerge(["-p", "pen.log", "10.0.0.1:a.log", "[::1]:b.log"])), {
      fileLog: "pen.log",
      cache: true,
      debug: 0,
      jitter: 600,
      tzOffset: 0,
      logs: [{ server: "10.0.0.1", path: "a.log" }, { server: "::1", path: "b.log" }]
    })
    assert.deepStrictEqual(
      settings(CompanionArgs.parseMerge(["10.0.0.1:a.log", "-cdd", "-j30", "-t", "-3600", "-ppen.log"])),
      {
        fileLog: "pen.log",
        cache: false,
        debug: 2,
        jitter: 30,
        tzOffset: -3600,
        logs: [{ server: "10.0.0.1", path: "a.log" }]
      }
    )
  })

  it("names the bad argument", () => {
    assert.strictEqual(failure(CompanionArgs.parseMerge(["10.0.0.1:a.log"])), "no -p penlog given")
    assert.strictEqual(failure(CompanionArgs.parseMerge(["-p", "pen.log"])), "no server:logfile given")
    assert.strictEqual(failure(CompanionArgs.parseMerge(["-p", "x", "a.log"])), "'a.log' is not server:logfile")
    assert.strictEqual(
      failure(CompanionArgs.parseMerge(["-p", "x", "-j", "-5", "s:a"])),
      "-j '-5': expected a whole number of seconds"
    )
    assert.strictEqual(
      failure(CompanionArgs.parseMerge(["-p", "x", "-t", "2h", "s:a"])),
      "-t '2h': expected a whole number"
    )
    assert.strictEqual(failure(CompanionArgs.parseMerge(["-p", "x", "-a", "s:a"])), "unknown option -a")
  })
})
