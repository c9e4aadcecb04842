/**
 * The admin endpoint (`--admin [host:]port`): an HTTP server on `effect/http` and `@effect/platform-node` serving
 * the live dashboard, `/metrics` for Prometheus, and the JSON API (`src/admin/Routes.ts`). Without `--admin` the
 * layer does nothing at all: no socket, no timer.
 *
 * With it, the layer reads the token file (a missing or empty one stops nib at start-up, naming the file), keeps the
 * dashboard's history (one reading of the stats a second, on a timer in the layer's scope, into bounded rings) and
 * publishes one update a second to the dashboards connected to `/api/events`. None of it touches the per-connection
 * path: everything is read from the counters and server state the proxy already keeps. The server closes with the
 * layer's scope; event streams are ended first, so a dashboard left open never holds nib's shutdown.
 */
import { Clock, Console, Context, Deferred, Effect, Layer, PubSub, Schedule, Schema, Stream } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import type * as Api from "../admin/Api.ts"
import * as Auth from "../admin/Auth.ts"
import * as History from "../admin/History.ts"
import * as Routes from "../admin/Routes.ts"
import * as State from "../admin/State.ts"
import { LbConfig } from "../Config.ts"
import * as Address from "../domain/Address.ts"
import * as HttpListener from "../net/HttpListener.ts"
import * as ProxyExplain from "../proxy/Explain.ts"
import { TcpProxy } from "../proxy/TcpProxy.ts"
import type { Acls } from "./Acls.ts"
import { ClientTable } from "./ClientTable.ts"
import { HealthChecker } from "./HealthChecker.ts"
import { Listener } from "./Listener.ts"
import { ServerPool } from "./ServerPool.ts"
import { StatsReporter } from "./StatsReporter.ts"

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
  readonly totals: {
    readonly accepted: number
    readonly active: number
    readonly refused: number
    readonly failovers: number
    readonly blacklistings: number
    readonly healthTransitions: number
    readonly localFailures: number
  }
  /** Live connections per worker thread (`--workers`; one figure when the main thread serves). */
  readonly workers: ReadonlyArray<number>
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
}>()("nib/services/Admin") {
  static readonly layer: Layer.Layer<
    Admin,
    AdminError,
    LbConfig | ServerPool | ClientTable | StatsReporter | Listener | HealthChecker | TcpProxy | Acls
  > = Layer.effect(
    Admin,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const admin = config.admin
      if (admin === undefined) return Admin.of({ address: undefined, readOnly: true })
      const token = yield* Auth.load(config.adminTokenFile).pipe(
        Effect.mapError((error) => new AdminError({ message: error.message }))
      )
      const readOnly = token._tag === "ReadOnly"
      const services: State.Services = {
        config,
        pool: yield* ServerPool,
        clients: yield* ClientTable,
        stats: yield* StatsReporter,
        listener: yield* Listener,
        health: yield* HealthChecker,
        proxy: yield* TcpProxy,
        explain: yield* Effect.map(
          Effect.context<ServerPool | Acls | ClientTable>(),
          (context) => (client: string) => Effect.provide(ProxyExplain.explain(client), context)
        )
      }

      const history = History.make()
      const updates = yield* PubSub.sliding<string>(4)
      const closing = yield* Deferred.make<void>()
      let watchers = 0

      const update = (reset: boolean, latest: History.Sample | undefined) =>
        Effect.gen(function*() {
          const stats = yield* services.stats.snapshot
          const { emergency, servers } = yield* State.servers(services)
          const recent = yield* services.clients.recent
          const body: Update = {
            time: yield* Clock.currentTimeMillis,
            readOnly,
            totals: {
              accepted: stats.accepted,
              active: stats.active,
              refused: stats.refused,
              failovers: stats.failovers,
              blacklistings: stats.blacklistings,
              healthTransitions: stats.healthTransitions,
              localFailures: stats.localFailures
            },
            workers: stats.workers,
            servers,
            emergency,
            clients: {
              total: recent.length,
              capacity: yield* services.clients.capacity,
              busiest: yield* State.busiest(services, BUSIEST_CLIENTS)
            },
            events: history.events.items,
            reset,
            samples: reset ? history.samples.items : latest === undefined ? [] : [latest]
          }
          return `data: ${JSON.stringify(body)}\n\n`
        })

      // The history's timer: a reading a second, and an update for the dashboards watching (none: no work).
      yield* Effect.gen(function*() {
        const sample = History.record(history, yield* State.reading(services, yield* Clock.currentTimeMillis))
        if (watchers > 0) yield* PubSub.publish(updates, yield* update(false, sample))
      }).pipe(Effect.repeat(Schedule.spaced(SAMPLE_INTERVAL)), Effect.forkScoped)

      const events = Stream.unwrap(Effect.gen(function*() {
        const subscription = yield* PubSub.subscribe(updates)
        yield* Effect.acquireRelease(Effect.sync(() => watchers++), () => Effect.sync(() => watchers--))
        return Stream.concat(Stream.fromEffect(update(true, undefined)), Stream.fromSubscription(subscription))
      })).pipe(Stream.interruptWhen(Deferred.await(closing)), Stream.encodeText)

      const endpoint = admin.endpoint
      const context = yield* Layer.build(
        HttpRouter.serve(Routes.layer({ services, token, events }), { disableLogger: true, disableListenLog: true })
          .pipe(
            Layer.provideMerge(HttpListener.layer(endpoint))
          )
      ).pipe(
        Effect.mapError((error) =>
          new AdminError({ message: `--admin '${admin.text}': cannot listen: ${describe(error.cause ?? error)}` })
        )
      )
      // Added after the server, so it runs before the server's own finalizer: event streams end, their connections
      // go idle, and the server closes without waiting for a dashboard.
      yield* Effect.addFinalizer(() => Deferred.succeed(closing, undefined))
      const bound = Context.get(context, HttpServer.HttpServer).address
      const address: Address.Endpoint = bound._tag === "UnixPathAddress"
        ? Address.unix(bound.path)
        : endpoint._tag === "Tcp"
        ? Address.tcp(endpoint.host, bound.port)
        : endpoint
      yield* Console.error(
        `nib: admin endpoint on ${url(address)}${readOnly ? " (read-only: no --admin-token-file)" : ""}`
      )
      return Admin.of({ address, readOnly })
    }).pipe(Effect.annotateLogs({ service: "Admin" }))
  )
}

/** The address as a URL a browser opens (a Unix socket shows as its path). @category formatting */
export const url = (address: Address.Endpoint): string =>
  address._tag === "Unix" ? `unix:${address.path}` : `http://${Address.format(address)}/`

const describe = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)
