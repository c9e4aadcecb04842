/**
 * The admin endpoint from a test's side: its address from nib's start-up line, requests with or without a token,
 * and a strict reader of Prometheus' text format (every line must parse; each family has one TYPE).
 */
import { Effect } from "effect"
import type * as Nib from "./Nib.ts"

/** nib's line for its admin endpoint, printed before the listening line. */
export const ADMIN = /nib: admin endpoint on http:\/\/(.+):(\d+)\/( \(read-only[^)]*\))?\n/

/** The admin endpoint's base URL (`http://127.0.0.1:PORT`) of a nib started with `--admin`. */
export const baseUrl = (balancer: Nib.Proc): string => {
  const match = ADMIN.exec(balancer.stderr())
  if (match === null) throw new Error(`no admin line in nib's output:\n${balancer.stderr()}`)
  return `http://${match[1]}:${match[2]}`
}

/** A response: status, headers and the body (JSON parsed when it is JSON). */
export interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly json: any
}

/** `method path` on the admin endpoint, with a JSON `body` and a bearer `token` when given. */
export const call = (
  base: string,
  method: string,
  path: string,
  options: { readonly token?: string; readonly body?: unknown; readonly raw?: string } = {}
): Effect.Effect<Reply> =>
  Effect.promise(async () => {
    const headers: Record<string, string> = {}
    if (options.token !== undefined) headers["authorization"] = `Bearer ${options.token}`
    const body = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body))
    if (body !== undefined) headers["content-type"] = "application/json"
    const response = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
      signal: AbortSignal.timeout(10_000)
    })
    const text = await response.text()
    const json = (response.headers.get("content-type") ?? "").includes("json") ? JSON.parse(text) : undefined
    return { status: response.status, headers: response.headers, text, json }
  })

/** One sample line of the text format. */
export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/** A scrape, parsed. */
export interface Scrape {
  readonly samples: ReadonlyArray<Sample>
  /** `# TYPE` per family. */
  readonly types: ReadonlyMap<string, string>
  /** `# HELP` per family. */
  readonly help: ReadonlyMap<string, string>
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*"
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`)
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/y

/** Parses Prometheus' text format, failing on any line it does not understand. */
export const parseMetrics = (text: string): Scrape => {
  const samples: Array<Sample> = []
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  for (const line of text.split("\n")) {
    if (line === "") continue
    const comment = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line)
    if (comment !== null) {
      const map = comment[1] === "TYPE" ? types : help
      if (map.has(comment[2]!)) throw new Error(`a second # ${comment[1]} for ${comment[2]}`)
      map.set(comment[2]!, comment[3]!)
      continue
    }
    const match = SAMPLE.exec(line)
    if (match === null) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    const body = match[2] ?? ""
    LABEL.lastIndex = 0
    while (LABEL.lastIndex < body.length) {
      const label = LABEL.exec(body)
      if (label === null) throw new Error(`bad labels in: ${line}`)
      labels[label[1]!] = label[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c))
    }
    const value = Number(match[3])
    if (Number.isNaN(value) && match[3] !== "NaN") throw new Error(`bad value in: ${line}`)
    samples.push({ name: match[1]!, labels, value })
  }
  return { samples, types, help }
}

/** The value of the one sample named `name` whose labels include `labels`; fails unless there is exactly one. */
export const valueOf = (scrape: Scrape, name: string, labels: Readonly<Record<string, string>> = {}): number => {
  const found = scrape.samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  )
  if (found.length !== 1) {
    throw new Error(`${found.length} samples ${name}${JSON.stringify(labels)} in the scrape`)
  }
  return found[0]!.value
}

/** Scrapes `/metrics` and parses it. */
export const scrape = (base: string): Effect.Effect<Scrape> =>
  Effect.flatMap(call(base, "GET", "/metrics"), (reply) => {
    if (reply.status !== 200) return Effect.die(new Error(`/metrics answered ${reply.status}`))
    return Effect.succeed(parseMetrics(reply.text))
  })
