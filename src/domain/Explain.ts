/**
 * "Why this server?": the decision nib would make for a client now, step by step, as `explain IP` (the control port)
 * and `GET /api/explain?client=IP` (the admin endpoint) answer it. The model and its text; `proxy/Explain` makes the
 * decision with the code that serves clients.
 */
import type * as Backend from "./Backend.ts"
import type { Rule } from "./Selection.ts"

/**
 * Why a server did not take the client: its own reason (`Backend.Refusal`), its ACL, no such server, or its slow
 * start's draw (`Failover.Refusal`, which this mirrors without the services). @category models
 */
export type Reason = Backend.Refusal | "acl" | "none" | "slow-start"

/** A server as the explanation names it. @category models */
export interface Server {
  /** Its index; -2 for the emergency server, -3 for the abuse server. */
  readonly index: number
  /** `host:port` or the socket path. */
  readonly address: string
}

/** One server the client would be offered to, in order, and why it would not take it. @category models */
export interface Try {
  readonly server: Server
  /** Undefined: it takes the client. */
  readonly reason: Reason | undefined
  /** Figures that go with the reason: the blacklist's seconds left, the connections against the limit. */
  readonly detail?: string | undefined
}

/** The decision for one client. @category models */
export interface Explanation {
  readonly client: string
  /** client_acl denies the client: it goes to the abuse server (-B) if there is one, else it is closed. */
  readonly denied: boolean
  /** The client's entry in the sticky table, if it is remembered. */
  readonly sticky: { readonly server: number; readonly seenSecondsAgo: number } | undefined
  /** How the first server is chosen (the selection flags and the sticky entry decide); undefined when denied. */
  readonly rule: Rule | undefined
  /** The first choice; undefined when the rule found none (every server it picks from is blacklisted). */
  readonly first: Server | undefined
  /** The selection flags that are on (pen's `mode`, without the `no`s). */
  readonly mode: ReadonlyArray<string>
  readonly tries: ReadonlyArray<Try>
  /** The server that takes the client; undefined: no server does, the client is closed. */
  readonly chosen: Server | undefined
}

const RULES: Readonly<Record<Rule, string>> = {
  sticky: "the sticky table: the server it used last",
  prio: "prio: the lowest priority value not blacklisted, down or drained",
  weight: "weight (-W): the lowest load for its weight",
  hash: "hash (-h) of the client's address",
  roundrobin: "roundrobin: the next server in turn"
}

const REASONS: Readonly<Record<Reason, string>> = {
  unconfigured: "has no address",
  down: "is down (its check failed)",
  draining: "is drained (takes no new clients)",
  blacklisted: "is blacklisted",
  full: "is at its connection limit",
  acl: "its acl does not let the client in",
  none: "no such server",
  "slow-start": "its slow start's draw sent the client on"
}

const name = (server: Server): string =>
  server.index === -2
    ? `emergency server ${server.address}`
    : server.index === -3
    ? `abuse server ${server.address}`
    : `server ${server.index} (${server.address})`

/**
 * The explanation as the control port answers `explain IP`: one line per step, the last one the decision.
 *
 * @category encoding
 */
export const format = (e: Explanation): string => {
  const lines = [`client ${e.client}`]
  if (e.denied) lines.push("client_acl denies it")
  else {
    lines.push(
      e.sticky === undefined
        ? "not in the sticky table"
        : `sticky to server ${e.sticky.server}, last seen ${e.sticky.seenSecondsAgo} s ago`
    )
    lines.push(`mode: ${e.mode.length === 0 ? "pen's default (sticky, then roundrobin)" : e.mode.join(" ")}`)
    if (e.rule !== undefined) {
      lines.push(
        `first choice by ${RULES[e.rule]}: ${
          e.first === undefined ? "none (every server it picks from is blacklisted)" : name(e.first)
        }`
      )
    }
  }
  for (const t of e.tries) {
    lines.push(
      t.reason === undefined
        ? `${name(t.server)}: takes it${t.detail === undefined ? "" : ` (${t.detail})`}`
        : `${name(t.server)}: skipped: ${REASONS[t.reason]}${t.detail === undefined ? "" : ` (${t.detail})`}`
    )
  }
  lines.push(e.chosen === undefined ? "=> closed: no server takes it" : `=> ${name(e.chosen)}`)
  return lines.join("\n") + "\n"
}
