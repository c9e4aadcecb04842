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

/** The schema of a check, for settings that are decoded. @category schemas */
export const CheckSchema: Schema.Codec<Check> = Schema.Union([
  Schema.TaggedStruct("Tcp", {}),
  Schema.TaggedStruct("Http", { path: Schema.String.check(Schema.isPattern(/^\/\S*$/)) }),
  Schema.TaggedStruct("Send", { send: Schema.String, expect: Schema.String })
])

/** `\r`, `\n`, `\t`, `\\` and `\,` in a check's text; any other backslash stays as it is. */
const unescape = (text: string): string =>
  text.replace(/\\([rnt\\,])/g, (_, c: string) => (c === "r" ? "\r" : c === "n" ? "\n" : c === "t" ? "\t" : c))

const escape = (text: string): string =>
  text.replace(/[\\,\r\n\t]/g, (c) => (c === "\r" ? "\\r" : c === "\n" ? "\\n" : c === "\t" ? "\\t" : `\\${c}`))

/**
 * Reads a check: `tcp`, `http` (path `/`), `http:/path`, or `send:TEXT,expect:REGEX` (in TEXT, `\r`, `\n`, `\t`, `\\`
 * and `\,` are those characters; REGEX is JavaScript's). A string says what was wrong.
 *
 * @category parsing
 */
export const parse = (text: string): Check | string => {
  if (text === "tcp") return { _tag: "Tcp" }
  if (text === "http") return { _tag: "Http", path: "/" }
  if (text.startsWith("http:")) {
    const path = text.slice(5)
    return /^\/\S*$/.test(path) ? { _tag: "Http", path } : `'${text}': the path must start with / and have no space`
  }
  if (text.startsWith("send:")) {
    // The comma before `expect:` is the first one not escaped.
    const match = /^send:((?:[^\\,]|\\.)*),expect:(.+)$/s.exec(text)
    if (match === null) return `'${text}': send:TEXT,expect:REGEX (a comma in TEXT is written \\,)`
    try {
      new RegExp(match[2]!)
    } catch (error) {
      return `'${text}': expect: ${error instanceof Error ? error.message : String(error)}`
    }
    return { _tag: "Send", send: unescape(match[1]!), expect: match[2]! }
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
