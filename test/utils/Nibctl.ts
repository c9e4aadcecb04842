/**
 * Running the built `nibctl` (dist/src/nibctl.js) from tests: to completion with its raw output, or as a one-line
 * question to a running nib's control port that must succeed.
 */
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Nib from "./Nib.ts"

/** The built nibctl. */
export const NIBCTL = Path.join(Nib.ROOT, "dist", "src", "nibctl.js")
if (!Fs.existsSync(NIBCTL)) throw new Error(`${NIBCTL} is missing: run \`npm run -s build\` first`)

/** How a run of nibctl ended, with stdout's bytes as they came. */
export type Run = Nib.CompletedBytes

/** Runs nibctl with `args` under Node 24 to completion; SIGKILLed after `timeoutMs`. */
export const run = (args: ReadonlyArray<string>, timeoutMs = 20_000): Promise<Run> =>
  Nib.runBytes(Nib.NODE, [NIBCTL, ...args], timeoutMs)

/** The nibctl target of a nib started with a TCP control port. */
export const targetOf = (lb: Nib.Balancer): string => {
  assert.isDefined(lb.control, `no control port line in nib's stderr:\n${lb.stderr()}`)
  return `${lb.control!.host}:${lb.control!.port}`
}

/**
 * nibctl's reply to `line` (split into words on spaces, as a shell would), as latin1 text so that every byte shows
 * as one character; fails the test unless nibctl exited 0 without a word on stderr.
 */
export const askPromise = async (target: string, line: string): Promise<string> => {
  const result = await run([target, ...line.split(" ")])
  assert.deepStrictEqual(
    { code: result.code, signal: result.signal, timedOut: result.timedOut, stderr: result.stderr },
    { code: 0, signal: null, timedOut: false, stderr: "" },
    `nibctl ${target} ${line}`
  )
  return result.stdout.toString("latin1")
}

/** {@link askPromise} as an Effect. */
export const ask = (target: string, line: string) => Effect.promise(() => askPromise(target, line))
