/**
 * nib's command line errors, each exiting 1 with `nib: <message>` on stderr before it listens (a usage error adds the
 * synopsis and a pointer at `--help`, never the whole help), and `--help` / `--version`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Nib from "../utils/Nib.ts"

const VERSION = (JSON.parse(Fs.readFileSync(Path.join(Nib.ROOT, "package.json"), "utf8")) as { version: string })
  .version

const lines = (text: string) => text.split("\n").filter((line) => line !== "")

describe("command line", () => {
  // Each case builds its argv with a free port for the servers, which are never contacted.
  const cases: ReadonlyArray<{
    readonly name: string
    readonly argv: (free: string) => Effect.Effect<ReadonlyArray<string>, never, Scope.Scope>
    readonly message: RegExp
  }> = [
    {
      name: "-L with a version pen does not know",
      argv: (free) => Effect.succeed(["-f", "-E", "cert.pem", "-L", "tls9", "127.0.0.1:0", free]),
      message: /-L 'tls9': protocol version not known/
    },
    {
      name: "-Z without -E",
      argv: (free) => Effect.succeed(["-f", "-Z", "127.0.0.1:0", free]),
      message: /-Z needs -E/
    },
    {
      name: "an unknown flag",
      argv: (free) => Effect.succeed(["-f", "-Y", "127.0.0.1:0", free]),
      message: /unknown option -Y/
    },
    {
      name: "-b x",
      argv: (free) => Effect.succeed(["-f", "-b", "x", "127.0.0.1:0", free]),
      message: /-b.*"?x"?/
    },
    {
      name: "-t 0",
      argv: (free) => Effect.succeed(["-f", "-t", "0", "127.0.0.1:0", free]),
      message: /-t\b/
    },
    {
      name: "a bad server spec (host:80:abc)",
      argv: () => Effect.succeed(["-f", "127.0.0.1:0", "host:80:abc"]),
      message: /host:80:abc/
    },
    {
      name: "an out-of-range listen port",
      argv: (free) => Effect.succeed(["-f", "127.0.0.1:70000", free]),
      message: /70000.*out of range|out of range.*70000/
    },
    {
      name: "an out-of-range server port",
      argv: () => Effect.succeed(["-f", "127.0.0.1:0", "127.0.0.1:70000"]),
      message: /70000.*out of range|out of range.*70000/
    },
    {
      name: "a listen address that cannot be bound",
      argv: (free) => Backend.identity("taken").pipe(Effect.map((taken) => ["-f", taken.spec(), free])),
      message: /can't bind local address/
    },
    {
      name: "no server",
      argv: () => Effect.succeed(["-f", "127.0.0.1:0"]),
      message: /no server/
    },
    {
      name: "an unresolvable server host",
      argv: () => Effect.succeed(["-f", "127.0.0.1:0", "nonexistent.invalid:80"]),
      message: /unknown or invalid address.*nonexistent\.invalid/
    }
  ]

  for (const { argv, message, name } of cases) {
    it.live(`${name}: exits non-zero with its message`, () =>
      Effect.gen(function*() {
        const args = yield* argv(`127.0.0.1:${yield* Backend.freePort}`)
        const result = yield* Nib.run(args)
        const context = `nib ${args.join(" ")}\n${result.stderr}`
        assert.isFalse(result.timedOut, context)
        assert.strictEqual(result.code, 1, context)
        assert.match(result.stderr, /^nib: /, context)
        assert.match(result.stderr, message, context)
        assert.notMatch(result.stderr, /listening on/, context)
        // one line, or with a usage error the synopsis and the pointer: never the whole help
        assert.isAtMost(lines(result.stderr).length, 3, context)
        assert.strictEqual(result.stdout, "", context)
      }))
  }

  // The exact stderr of the errors a newcomer meets first, as they would type them (a regression that started nib
  // instead is killed at the deadline and fails the test).
  const SYNOPSIS = "usage: nib [options] [host:]port h1[:p1[:maxc[:hard[:weight[:prio]]]]] [h2 ...]"
  const POINTER = "Try 'nib --help' for more information."
  const exact: ReadonlyArray<{ readonly argv: ReadonlyArray<string>; readonly stderr: ReadonlyArray<string> }> = [
    {
      argv: ["-f", "-x", "abc", "127.0.0.1:0", "h1"],
      stderr: ["nib: -x (live connections before nib stops accepting): 'abc' is not a number", POINTER]
    },
    {
      argv: ["-f", "-c1.5", "127.0.0.1:0", "h1"],
      stderr: ["nib: -c (slots of the sticky client table): '1.5' is not a whole number", POINTER]
    },
    {
      argv: ["-f", "--udp-idle-timeout", "soon", "127.0.0.1:0", "h1"],
      stderr: [
        "nib: --udp-idle-timeout (seconds an idle UDP session is kept (idle_timeout overrides)): 'soon' is not a number",
        POINTER
      ]
    },
    {
      argv: ["-f", "127.0.0.1:0", "h1", "-b"],
      stderr: ["nib: -b (seconds a failed server is blacklisted): needs a value", POINTER]
    },
    { argv: ["-Y", "8080", "h1"], stderr: ["nib: unknown option -Y", SYNOPSIS, POINTER] },
    { argv: ["-rfY", "8080", "h1"], stderr: ["nib: unknown option -Y", SYNOPSIS, POINTER] },
    { argv: ["--bogus"], stderr: ["nib: unknown option --bogus", SYNOPSIS, POINTER] },
    { argv: ["--dmeo"], stderr: ["nib: unknown option --dmeo (did you mean --demo?)", SYNOPSIS, POINTER] },
    { argv: ["--wizard"], stderr: ["nib: unknown option --wizard", SYNOPSIS, POINTER] },
    { argv: ["-v"], stderr: ["nib: unknown option -v", SYNOPSIS, POINTER] },
    {
      argv: [],
      stderr: [SYNOPSIS, "Try 'nib --help' for the options, or 'nib --demo' to watch nib balance two demo servers."]
    },
    { argv: ["-f"], stderr: ["nib: no listen address given", SYNOPSIS, POINTER] },
    { argv: ["-h"], stderr: ["nib: no listen address given", SYNOPSIS, POINTER] },
    { argv: ["8080"], stderr: ["nib: no server given", SYNOPSIS, POINTER] }
  ]

  for (const { argv, stderr } of exact) {
    it.live(`nib ${argv.join(" ") || "(no arguments)"}: exactly its usage error, exit 1`, () =>
      Effect.gen(function*() {
        const result = yield* Nib.run(argv, 10_000)
        const context = `nib ${argv.join(" ")}\n${result.stderr}`
        assert.isFalse(result.timedOut, context)
        assert.deepStrictEqual(lines(result.stderr), stderr, context)
        assert.strictEqual(result.stdout, "", context)
        assert.strictEqual(result.code, 1, context)
      }))
  }

  it.live("--help shows pen's flags as pen does and nib's long options, on stdout, exit 0", () =>
    Effect.gen(function*() {
      const help = yield* Nib.run(["--help"])
      assert.strictEqual(help.code, 0, help.stderr)
      assert.strictEqual(help.stderr, "")
      assert.strictEqual(lines(help.stdout)[0], SYNOPSIS)
      for (const entry of ["-b sec", "-C [host:]port", "-e host:port", "-x N", "-B host:port", "-t sec", "-U", "-h"]) {
        assert.match(help.stdout, new RegExp(`\n  ${entry.replace(/[[\]]/g, "\\$&")}  `), entry)
      }
      for (const option of ["--demo", "--udp-idle-timeout SEC", "--help", "--version"]) {
        assert.include(help.stdout, `\n  ${option}`, option)
      }
      for (const absent of ["--b ", "--x ", "--wizard", "-h, --help", "--completions", "--log-level"]) {
        assert.notInclude(help.stdout, absent, absent)
      }
    }))

  it.live("--version exits 0", () =>
    Effect.gen(function*() {
      const version = yield* Nib.run(["--version"])
      assert.strictEqual(version.code, 0, version.stderr)
      assert.strictEqual(version.stdout, `nib v${VERSION}\n`)
    }))
})
