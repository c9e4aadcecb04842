/**
 * A server's live state beside its spec: connections in use, blacklist deadline and byte counters, and the admission
 * rule pen's `try_server` applies before it connects (blacklist, soft and hard limits).
 */
import type { Check } from "./HealthCheck.ts"
import type { ServerSpec } from "./ServerSpec.ts"

/** Which PROXY protocol header a server gets: none, or version 1 or 2. @category models */
export type ProxyHeader = "none" | "v1" | "v2"

/**
 * One server of the pool: its settings, changed by the control plane, and its live state, read here and changed only
 * through its owner (ServerPool keeps it in memory that worker threads share). @category models
 */
export interface Backend {
  readonly index: number
  /** Replaced, not mutated, when the control port changes the server (`server N ...`). */
  spec: ServerSpec
  /** False for a slot the control port created (`server 5 ...` on four servers) but gave no address yet. */
  configured: boolean
  /** The ACL list a client must pass to use this server (`server N acl A`; list 0, empty, lets everyone in). */
  acl: number
  /** The PROXY protocol header sent first on each connection (`--send-proxy`, `server N proxy`). */
  proxy: ProxyHeader
  /** Connections to this server being set up or relayed. */
  readonly connections: number
  /** Milliseconds until which the server is blacklisted; 0 when it is not. */
  readonly blacklistedUntil: number
  /** Bytes sent to the server, and received from it, counted as they move (open connections included, as in pen). */
  readonly bytesSent: number
  readonly bytesReceived: number
  /** The active check (`--check`, `server N check`); undefined: the server is not checked (pen's passive health). */
  check: Check | undefined
  /** Down by its active check (`--fall` failures in a row), until `--rise` passes in a row. */
  readonly down: boolean
  /** When the server last came back up (milliseconds), for `--slow-start`; 0 when it never went down. */
  readonly upSince: number
  /** Drained (the admin API): takes no new client, its live connections go on. */
  readonly draining: boolean
}

/** A backend whose every field can be set: a plain record, for selection on its own (tests, models). @category models */
export type Plain = { -readonly [K in keyof Backend]: Backend[K] }

/** A fresh plain backend for `spec`. @category constructors */
export const make = (index: number, spec: ServerSpec, proxy: ProxyHeader = "none"): Plain => ({
  index,
  spec,
  configured: true,
  acl: 0,
  proxy,
  connections: 0,
  blacklistedUntil: 0,
  bytesSent: 0,
  bytesReceived: 0,
  check: undefined,
  down: false,
  upSince: 0,
  draining: false
})

/** Whether the server is blacklisted at `now`. @category predicates */
export const isBlacklisted = (backend: Backend, now: number): boolean => now < backend.blacklistedUntil

/**
 * Whether selection passes the server over at `now` (roundrobin, prio and weight skip it, as pen skips a blacklisted
 * server): blacklisted, down by its active check, or drained. @category predicates
 */
export const isOutOfRotation = (backend: Backend, now: number): boolean =>
  backend.down || backend.draining || now < backend.blacklistedUntil

/** Why a server takes no more connections: no address, down by its check, drained, blacklisted, at its limit. @category models */
export type Refusal = "unconfigured" | "down" | "draining" | "blacklisted" | "full"

/**
 * Why the server takes no more connections at `now`, or undefined when it takes one: it must have an address, be
 * neither down by its check, drained nor blacklisted, and be under its soft limit, or under its hard limit for a
 * client pinned to it (`sticky`). As in pen, `hard` must exceed `maxc` to mean anything.
 *
 * @category predicates
 */
export const refusal = (backend: Backend, sticky: boolean, now: number): Refusal | undefined => {
  if (!backend.configured) return "unconfigured"
  if (backend.down) return "down"
  if (backend.draining) return "draining"
  if (isBlacklisted(backend, now)) return "blacklisted"
  const { hardLimit, softLimit } = backend.spec
  const c = backend.connections
  return softLimit === 0 || c < softLimit || (sticky && c < hardLimit) ? undefined : "full"
}

/**
 * The connections at which the server refuses one more: its soft limit, or for a client pinned to it (`sticky`) its
 * hard limit when that is higher; 0 when it has no limit. {@link refusal}'s "full", as one number to take a connection
 * against atomically. @category predicates
 */
export const limit = (backend: Backend, sticky: boolean): number => {
  const { hardLimit, softLimit } = backend.spec
  return softLimit === 0 ? 0 : sticky ? Math.max(softLimit, hardLimit) : softLimit
}

/** Whether the server takes one more connection at `now` ({@link refusal} has no reason). @category predicates */
export const admits = (backend: Backend, sticky: boolean, now: number): boolean =>
  refusal(backend, sticky, now) === undefined
