/**
 * The server pool as the control plane sees and changes it: a server's figures as the status outputs show them, the
 * pool at one instant, and the changes of pen's `server N ...` and selection flags. Types only: ServerPool
 * (services/ServerPool.ts) holds the servers; the control language, the admin API and the status page read these.
 */
import type { ProxyHeader } from "./Backend.ts"
import type { Check } from "./HealthCheck.ts"
import type { Policy } from "./Selection.ts"

/** One server as the status outputs show it. @category models */
export interface ServerStatus {
  readonly index: number
  readonly address: string
  readonly connections: number
  readonly softLimit: number
  readonly hardLimit: number
  readonly weight: number
  readonly prio: number
  readonly blacklistedUntil: number
  readonly blacklisted: boolean
  readonly bytesSent: number
  readonly bytesReceived: number
  /** The active check's text (`HealthCheck.format`), or undefined when the server is not checked. */
  readonly check: string | undefined
  /** Down by its active check. */
  readonly down: boolean
  /** Taking no new clients (the admin API's drain). */
  readonly draining: boolean
}

/** The pool at one instant. @category models */
export interface PoolSnapshot {
  readonly servers: ReadonlyArray<ServerStatus>
  readonly emergency: ServerStatus | undefined
  /** The regular server that last took a connection (pen's "current"), or -1. */
  readonly current: number
}

/** A selection flag the control port switches. @category models */
export type PolicyFlag = Exclude<keyof Policy, "hashMethod">

/** One change of a `server N ...` command, applied in order. @category models */
export type ServerChange =
  | { readonly key: "address"; readonly value: string }
  | { readonly key: "proxy"; readonly value: ProxyHeader }
  /** The server's own active check; undefined: not checked (`server N check none`). */
  | { readonly key: "check"; readonly value: Check | undefined }
  | { readonly key: "port" | "max" | "hard" | "weight" | "prio" | "blacklist" | "acl"; readonly value: number }

/**
 * Who changed a server: the operator (the control port, the admin API), the configuration (`-O`, `-F`, the command
 * line, an upgrade's hand-over), or a peer (`--peers`). Only the operator's changes are shared with the peers.
 *
 * @category models
 */
export type ActionOrigin = "operator" | "configuration" | "peer"

/**
 * A change of the part of a server's state the peers share: the blacklist's deadline (milliseconds since the epoch,
 * 0 lifts it), the drain, the weight. @category models
 */
export interface ServerAction {
  readonly index: number
  readonly origin: ActionOrigin
  readonly blacklistedUntil?: number | undefined
  readonly draining?: boolean | undefined
  readonly weight?: number | undefined
}
