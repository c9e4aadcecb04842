/**
 * The admin endpoint (`--admin [host:]port`): an HTTP server on `effect/http` and `@effect/platform-node` serving
 * the live dashboard, `/metrics` for Prometheus, and the JSON API (`src/admin/Routes.ts`). This module is the
 * service, its error and the dashboard's update; the server itself is `src/admin/Server.ts`, which the layer loads
 * only with `--admin`. Without it the layer does nothing at all: no socket, no timer, no HTTP module loaded.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { LbConfig } from "../Config.ts"
import * as Address from "../domain/Address.ts"
import type { Peers } from "../peers/Peers.ts"
import type { Listener } from "../proxy/Listener.ts"
import type { TcpProxy } from "../proxy/TcpProxy.ts"
import type { Acls } from "../services/Acls.ts"
import type { ClientTable } from "../services/ClientTable.ts"
import type { HealthChecker } from "../services/HealthChecker.ts"
import type { ServerPool } from "../services/ServerPool.ts"
import type { StatsReporter } from "../services/StatsReporter.ts"
import type * as Api from "./Api.ts"
import type * as History from "./History.ts"
import type { PeersView } from "./State.ts"

/** The admin endpoint could not start: its token file, or its address. @category errors */
export class AdminError extends Schema.TaggedError<AdminError>()("AdminError", {
  message: Schema.String
}) {}

/** How often the history takes a sample and dashboards get an update. @category constants */
export const SAMPLE_INTERVAL = "1 second"

/** Clients listed as the busiest in each update. @category constants */
export const BUSIEST_CLIENTS = 10

/** One update of the dashboard's event stream. @category models */
export interface Update {
  readonly time: number
  readonly readOnly: boolean
  /** `draining` once a graceful stop (SIGQUIT) has closed the listeners. */
  readonly state: "serving" | "draining"
  readonly totals: {
    readonly accepted: number
    readonly active: number
    readonly refused: number
    readonly failovers: number
    readonly blacklistings: number
    readonly healthTransitions: number
    readonly localFailures: number
    /** Connections closed by idle_timeout. */
    readonly idleClosed: number
  }
  /** Live connections per worker thread (`--workers`; one figure when the main thread serves). */
  readonly workers: ReadonlyArray<number>
  /** The nibs sharing the sticky table (`--peers`), or `enabled: false`. */
  readonly peers: PeersView
  readonly servers: ReadonlyArray<Api.ServerView>
  readonly emergency: Api.ServerView | null
  readonly clients: {
    readonly total: number
    readonly capacity: number
    readonly busiest: ReadonlyArray<Api.ClientView>
  }
  /** Recent events, oldest first. */
  readonly events: ReadonlyArray<History.Event>
  /** The first update of a stream carries the whole history (`reset`); later ones the newest sample. */
  readonly reset: boolean
  readonly samples: ReadonlyArray<History.Sample>
}

/** The admin endpoint service: where it listens, if it does. @category services */
export class Admin extends Context.Service<Admin, {
  /** The bound address (the real port when 0 was asked for); `undefined` without `--admin`. */
  readonly address: Address.Endpoint | undefined
  /** Whether the API refuses changes (no `--admin-token-file`). */
  readonly readOnly: boolean
  /** The listening socket's descriptor, to hand it over in an upgrade; `undefined` without `--admin`. */
  readonly descriptor: () => number | undefined
  /** The socket was handed over (an upgrade): this nib stops listening; requests under way are answered. */
  readonly handOver: Effect.Effect<void>
}>()("nib/admin/Admin") {
  /**
   * The endpoint `--admin` asks for, its server loaded only then (`admin/Server.ts`); without `--admin` the layer does
   * nothing at all: no socket, no timer, no HTTP module loaded.
   */
  static readonly layer: Layer.Layer<
    Admin,
    AdminError,
    LbConfig | ServerPool | ClientTable | StatsReporter | Listener | HealthChecker | TcpProxy | Acls | Peers
  > = Layer.unwrap(Effect.gen(function*() {
    const { admin } = yield* LbConfig
    if (admin === undefined) {
      return Layer.succeed(
        Admin,
        Admin.of({
          address: undefined,
          readOnly: true,
          descriptor: () => undefined,
          handOver: Effect.void
        })
      )
    }
    const Server = yield* Effect.promise(() => import("./Server.ts"))
    return Server.layer(admin)
  }))
}

/** The address as a URL a browser opens (a Unix socket shows as its path). @category formatting */
export const url = (address: Address.Endpoint): string =>
  address._tag === "Unix" ? `unix:${address.path}` : `http://${Address.format(address)}/`
