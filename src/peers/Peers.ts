/**
 * `--peers`: the nibs that share one sticky table and the operator's actions (blacklists, drains, weights) through
 * Redis. This is the service's face; the work is in `peers/Sync.ts`, loaded only when `--peers` is given (the Redis
 * client stays out of every other start).
 *
 * Redis is never on a connection's path: look-ups stay in the local table, and what changes there is sent after the
 * fact, a batch every {@link FLUSH_MILLIS}, by one fiber of the main thread.
 */
import { Context, Effect, Layer } from "effect"
import { LbConfig } from "../Config.ts"
import type { ClientTable } from "../services/ClientTable.ts"
import type { ServerPool } from "../services/ServerPool.ts"

/** How often the local changes go to Redis. @category constants */
export const FLUSH_MILLIS = 200

/** How long a starting nib waits for the shared table before it serves anyway. @category constants */
export const LOAD_WAIT_MILLIS = 3000

/** The metrics of `--peers` (registered only with it). @category constants */
export const MetricNames = {
  peersUp: "nib_peers_up",
  peers: "nib_peers",
  peersSyncErrors: "nib_peers_sync_errors_total",
  peersLagSeconds: "nib_peers_lag_seconds"
} as const

/** A nib live on the key, as its last heartbeat tells. @category models */
export interface PeerView {
  readonly id: string
  /** This nib. */
  readonly self: boolean
  readonly host: string
  readonly pid: number
  readonly startedAt: number
  /** When its last heartbeat was written (ms since the epoch). */
  readonly lastBeat: number
  /** When it last synchronized with Redis, or 0. */
  readonly lastSync: number
  /** Milliseconds between a peer's change and its application there: the last one seen. */
  readonly lagMs: number
  /** Clients in its table. */
  readonly clients: number
}

/** Where this nib stands with its peers (`/api/peers`). @category models */
export interface PeersStatus {
  /** The Redis URL, its password shown as `***`. */
  readonly url: string
  readonly key: string
  /** This nib's id among the peers: host:pid:random. */
  readonly id: string
  /** Connected to Redis and synchronized. */
  readonly up: boolean
  /** When this nib last synchronized (pushed its changes and had them answered), or 0. */
  readonly lastSync: number
  /** The last change a peer made, in milliseconds between its publication and its application here. */
  readonly lagMs: number
  /** Connections to Redis that failed or broke, and commands that failed. */
  readonly syncErrors: number
  /** The nibs live on the key, this one among them (once Redis has answered). */
  readonly peers: ReadonlyArray<PeerView>
}

/** The peers service. @category services */
export class Peers extends Context.Service<Peers, {
  /** Where this nib stands with its peers; undefined without `--peers`. */
  readonly status: Effect.Effect<PeersStatus | undefined>
  /**
   * Applies the operator's state the peers share (drains, blacklists still running, weights) again, after a start's
   * configuration (`-O`, `-F`, the command line's servers) was applied over what was loaded: a nib that joins follows
   * its peers, as haproxy's server state file wins over its configuration.
   */
  readonly reapply: Effect.Effect<void>
}>()("nib/peers/Peers") {
  /** No peers: what a nib without `--peers` has. */
  static readonly layerNone: Layer.Layer<Peers> = Layer.succeed(Peers, {
    status: Effect.undefined,
    reapply: Effect.void
  })

  /**
   * The peers of the running configuration: none without `--peers`; with it, the table is loaded from Redis before
   * the layer is built (waiting at most {@link LOAD_WAIT_MILLIS}), then kept in step until the scope closes.
   */
  static readonly layer: Layer.Layer<Peers, never, LbConfig | ClientTable | ServerPool> = Layer.unwrap(
    Effect.gen(function*() {
      const config = yield* LbConfig
      const url = config.peers
      if (url === undefined) return Peers.layerNone
      const sync = yield* Effect.promise(() => import("./Sync.ts"))
      return Layer.effect(Peers, sync.make(url, config.peersKey))
    })
  )
}
