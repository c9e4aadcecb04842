/**
 * Settings the main thread changes and every worker thread must apply: what a service that owns a setting announces
 * once it has changed it (the control port's commands, the admin API, SIGHUP, `-F`), so that the workers' copies follow.
 *
 * State that connections change (connections, blacklists, the sticky table, counters) is not sent: it lives in the
 * shared memory. A change travels as a structured-clone message; each worker applies it through the same service
 * setter the main thread used, and acknowledges, so that the command's reply is sent only once every worker has it.
 *
 * Without workers the {@link Broadcast} is a no-op, and services pay one call per change.
 */
import { Context, Effect } from "effect"
import type { Table } from "../domain/Acl.ts"
import type { Endpoint } from "../domain/Address.ts"
import type { ProxyHeader } from "../domain/Backend.ts"
import type { Check } from "../domain/HealthCheck.ts"
import type { ServerSpec } from "../domain/ServerSpec.ts"
import type { SocketOptions } from "../domain/SocketOptions.ts"
import type { Tuning } from "../domain/TlsSettings.ts"

/** A server's settings, as `server N ...` leaves them (its address resolved by the main thread). @category models */
export interface ServerSettings {
  readonly spec: ServerSpec
  readonly configured: boolean
  readonly acl: number
  readonly proxy: ProxyHeader
  readonly check: Check | undefined
}

/** A change every worker applies. @category models */
export type SettingChange =
  /** Server `index` (added or changed): its whole settings. */
  | { readonly _tag: "Server"; readonly index: number; readonly settings: ServerSettings }
  /** `-b`, the `blacklist` command. */
  | { readonly _tag: "Blacklist"; readonly seconds: number }
  /** `-t`, the `timeout` command. */
  | { readonly _tag: "Timeout"; readonly seconds: number }
  /** `pending_max N`. */
  | { readonly _tag: "PendingMax"; readonly n: number }
  /** `idlers N`: the balancer's total (each thread keeps its share). */
  | { readonly _tag: "Idlers"; readonly n: number }
  /** `-H`, `http` / `no http`. */
  | { readonly _tag: "Http"; readonly on: boolean }
  /** `keepalive`, `tcp_nodelay`, `tcp_fastclose`, `source` (resolved by the main thread) and their `no` forms. */
  | { readonly _tag: "Sockets"; readonly options: SocketOptions }
  /** -L, -Z and the `ssl_*` commands. */
  | { readonly _tag: "Tls"; readonly tuning: Tuning }
  /** SIGHUP: read the certificate and key again. */
  | { readonly _tag: "TlsReload" }
  /** The ACLs and which lists clients must pass. */
  | { readonly _tag: "Acls"; readonly table: Table; readonly clientAcl: number }
  /** `listen ADDRESS`: each worker binds it (the first reply names the port bound when 0 was asked for). */
  | { readonly _tag: "Listen"; readonly endpoint: Endpoint }
  /** `-x`, `conn_max`. */
  | { readonly _tag: "ConnectionsMax"; readonly n: number }
  /** `idle_timeout`: TCP connections' idle timeout, or in UDP mode the sessions'. */
  | { readonly _tag: "IdleTimeout"; readonly seconds: number }
  /** `-d`, `debug N`. */
  | { readonly _tag: "Debug"; readonly level: number }
  /** Whether chunks go to the request log (`-l`, `log`, `no log`): the workers send them to the main thread. */
  | { readonly _tag: "Log"; readonly on: boolean }
  /** `--on-down close`: an active check took server `index` down; its connections end now. */
  | { readonly _tag: "Down"; readonly index: number }

/**
 * What a worker started later must be told to be where the others are: the last change of each setting, under this
 * key; undefined for an event (`Down`, `TlsReload`), which concerns only the workers alive when it happened.
 * @category models
 */
export const keyOf = (change: SettingChange): string | undefined => {
  switch (change._tag) {
    case "Server":
      return `Server ${change.index}`
    case "Down":
    case "TlsReload":
      return undefined
    default:
      return change._tag
  }
}

/** Sends a change to every worker thread and waits until each has applied it. @category services */
export interface BroadcastShape {
  readonly send: (change: SettingChange) => Effect.Effect<void>
}

/** The broadcast: a no-op unless the main thread of a balancer with workers provides its own. @category services */
export const Broadcast = Context.Reference<BroadcastShape>("nib/shared/Broadcast", {
  defaultValue: () => ({ send: () => Effect.void })
})
