/**
 * nib's command line errors, each exiting non-zero with `nib: <message>` on stderr before it listens, and `--help` /
 * `--version`.
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

describe("command line", () => {
  // Each case builds its argv with a free port for the servers, which are never contacted.
  const cases: ReadonlyArray<{
    readonly name: string
    readonly argv: (free: string) => Effect.Effect<ReadonlyArray<string>, never, Scope.Scope>
    readonly message: RegExp
  }> = [
    {
      name: "-H (a pen flag nib does not support yet)",
      argv: (free) => Effect.succeed(["-f", "-H", "127.0.0.1:0", free]),
      message: /-H.*is not supported yet/
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
        assert.notStrictEqual(result.code, 0, context)
        assert.notStrictEqual(result.code, null, context)
        assert.match(result.stderr, /^nib: /, context)
        assert.match(result.stderr, message, context)
        assert.notMatch(result.stderr, /listening on/, context)
      }))
  }

  it.live("--help and --version exit 0", () =>
    Effect.gen(function*() {
      const help = yield* Nib.run(["--help"])
      assert.strictEqual(help.code, 0, help.stderr)
      assert.include(help.stdout, "nib")
      assert.match(help.stdout, /-b\b/)
      const version = yield* Nib.run(["--version"])
      assert.strictEqual(version.code, 0, version.stderr)
      assert.include(version.stdout, VERSION)
    }))
})
