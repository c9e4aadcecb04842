/**
 * Active health checks, the pure part: what a check is (`--check tcp`, `http[:/path]`, `send:TEXT,expect:REGEX`), how
 * its text is read and written back, the rise/fall rule that turns passes and failures into up and down, and the
 * share of new clients a server gets while it starts slowly (`--slow-start`). The probes themselves are in
 * `net/Probe.ts`; HealthChecker runs them.
 */
import { Schema } from "effect"

/** What a check does to a server. @category models */
export type Check =
  /** A TCP connect that succeeds within the timeout. */
  | { readonly _tag: "Tcp" }
  /** `GET path`, with a Host header; a 2xx or 3xx status within the timeout passes. */
  | { readonly _tag: "Http"; readonly path: string }
  /** Sends `send`, then reads until what was read matches `expect` (a regular expression), within the timeout. */
  | { readonly _tag: "Send"; readonly send: string; readonly expect: string }

// A check's text is printable ASCII without spaces, so that it is one word of a control line and survives `write`
// (read back as latin1): TEXT writes other bytes as escapes, and REGEX has its own (`\x20`, `\s`, `\n`).
const PATH = /^\/[\x21-\x7e]*$/
const REGEX = /^[\x21-\x7e]+$/

/** Why `source` is not a regular expression JavaScript accepts, or undefined when it is one. */
const regexError = (source: string): string | undefined => {
  try {
    RegExp(source)
    return undefined
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
}

/** The schema of a check, for settings that are decoded. @category schemas */
export const CheckSchema: Schema.Codec<Check> = Schema.Union([
  Schema.TaggedStruct("Tcp", {}),
  Schema.TaggedStruct("Http", { path: Schema.String.check(Schema.isPattern(PATH)) }),
  Schema.TaggedStruct("Send", {
    // Bytes, one character each (latin1): what is sent.
    send: Schema.String.check(
      Schema.makeFilter((bytes: string) => [...bytes].every((c) => c.charCodeAt(0) <= 0xff), {
        expected: "bytes (characters up to \\xff)",
        arbitraryConstraint: { patterns: [{ source: "^[\\x00-\\xff]*$", flags: "" }] }
      })
    ),
    expect: Schema.String.check(
      Schema.isPattern(REGEX),
      Schema.makeFilter((source: string) => regexError(source) === undefined, { expected: "a regular expression" })
    )
  })
])

const ESCAPES: Readonly<Record<string, string>> = { r: "\r", n: "\n", t: "\t", "\\": "\\", ",": "," }

/**
 * TEXT to bytes: `\r`, `\n`, `\t`, `\\`, `\,` and `\xHH` are those bytes; any other character must be printable
 * ASCII (a space too). A string says what was wrong.
 */
const unescape = (text: string): string | { readonly error: string } => {
  let out = ""
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (c !== "\\") {
      const code = c.charCodeAt(0)
      if (code < 0x20 || code > 0x7e) {
        return { error: `${JSON.stringify(c)} is not printable ASCII: write its bytes as \\xHH` }
      }
      out += c
      continue
    }
    const next = text[i + 1]
    if (next !== undefined && Object.hasOwn(ESCAPES, next)) {
      out += ESCAPES[next]
      i++
    } else if (next === "x" && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 2, i + 4))) {
      out += String.fromCharCode(Number.parseInt(text.slice(i + 2, i + 4), 16))
      i += 3
    } else {
      return { error: `'\\${next ?? ""}' is not \\r, \\n, \\t, \\\\, \\, or \\xHH` }
    }
  }
  return out
}

const hex = (code: number) => code.toString(16).padStart(2, "0")

/** Bytes to TEXT: {@link unescape} reads it back; only printable ASCII without space or comma is left as it is. */
const escape = (bytes: string): string => {
  let out = ""
  for (const c of bytes) {
    const code = c.charCodeAt(0)
    if (c === "\r") out += "\\r"
    else if (c === "\n") out += "\\n"
    else if (c === "\t") out += "\\t"
    else if (c === "\\" || c === ",") out += `\\${c}`
    else if (code <= 0x20 || code > 0x7e) out += `\\x${hex(code)}`
    else out += c
  }
  return out
}

/**
 * Reads a check: `tcp`, `http` (path `/`), `http:/path`, or `send:TEXT,expect:REGEX`. TEXT is the bytes sent: printable
 * ASCII, with `\r`, `\n`, `\t`, `\\`, `\,` and `\xHH` for the others (empty: nothing is sent, the server speaks
 * first). REGEX is JavaScript's, matched against the answer's bytes as latin1; it has no space (`\x20` or `\s`
 * instead). A string says what was wrong.
 *
 * @category parsing
 */
export const parse = (text: string): Check | string => {
  if (text === "tcp") return { _tag: "Tcp" }
  if (text === "http") return { _tag: "Http", path: "/" }
  if (text.startsWith("http:")) {
    const path = text.slice(5)
    return PATH.test(path)
      ? { _tag: "Http", path }
      : `'${text}': the path must start with / and be printable ASCII without spaces`
  }
  if (text.startsWith("send:")) {
    // The comma before `expect:` is the first one not escaped.
    const match = /^send:((?:[^\\,]|\\.)*),expect:(.+)$/s.exec(text)
    if (match === null) return `'${text}': send:TEXT,expect:REGEX (a comma in TEXT is written \\,)`
    const send = unescape(match[1]!)
    if (typeof send !== "string") return `'${text}': send: ${send.error}`
    const expect = match[2]!
    if (!REGEX.test(expect)) return `'${text}': expect: printable ASCII without spaces (a space is \\x20 or \\s)`
    const error = regexError(expect)
    if (error !== undefined) return `'${text}': expect: ${error}`
    return { _tag: "Send", send, expect }
  }
  return `'${text}' is not tcp, http[:/path] or send:TEXT,expect:REGEX`
}

/** The text {@link parse} reads back as `check`. @category encoding */
export const format = (check: Check): string => {
  switch (check._tag) {
    case "Tcp":
      return "tcp"
    case "Http":
      return check.path === "/" ? "http" : `http:${check.path}`
    case "Send":
      return `send:${escape(check.send)},expect:${check.expect}`
  }
}

/** A checked server's state: up or down, and the passes or failures in a row that count towards a change. @category models */
export interface State {
  readonly up: boolean
  /** Results in a row against the current state (passes while down, failures while up). */
  readonly streak: number
}

/**
 * A server starts up: a server nib has never checked is given the benefit of the doubt, as pen gives every server,
 * and `fall` failures take it down. @category constructors
 */
export const initial: State = { up: true, streak: 0 }

/**
 * The rule: `fall` failures in a row take an up server down; `rise` passes in a row bring a down one up; a result that
 * agrees with the state resets the streak.
 *
 * @category rules
 */
export const next = (state: State, passed: boolean, rise: number, fall: number): State => {
  if (passed === state.up) return state.streak === 0 ? state : { up: state.up, streak: 0 }
  const streak = state.streak + 1
  return streak >= (state.up ? fall : rise) ? { up: !state.up, streak: 0 } : { up: state.up, streak }
}

/**
 * The share (0 to 1) of new clients a server takes `sinceUp` milliseconds after it came back up, with a slow start
 * of `slowStartMs`: growing linearly from 0, whole once the slow start is over (or without one).
 *
 * @category rules
 */
export const slowStartShare = (sinceUp: number, slowStartMs: number): number =>
  slowStartMs <= 0 || sinceUp >= slowStartMs ? 1 : Math.max(0, sinceUp) / slowStartMs

/**
 * When the next check of a server runs: `intervalMs` after the last one, moved by up to `jitter` of it either way
 * (`random` in [0, 1)), so that checks of many servers do not fall in step.
 *
 * @category rules
 */
export const delay = (intervalMs: number, random: number, jitter = 0.1): number =>
  Math.round(intervalMs * (1 - jitter + 2 * jitter * random))
