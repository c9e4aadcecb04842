/**
 * The admin endpoint's server (`--admin`): the Admin service's layer when an address is given, loaded only then (with
 * `effect/http`, `@effect/platform-node`'s HTTP server, the Prometheus exporter and the dashboard), so that a nib
 * without `--admin` never loads any of them. `Admin.ts` holds the service and chooses this layer.
 *
 * The layer reads the token file (a missing or empty one stops nib at start-up, naming the file), keeps the
 * dashboard's history (one reading of the stats a second, on a timer in the layer's scope, into bounded rings) and
 * publishes one update a second to the dashboards connected to `/api/events`. None of it touches the per-connection
 * path: everything is read from the counters and server state the proxy already keeps. The server closes with the
 * layer's scope; event streams are ended first, so a dashboard left open never holds nib's shutdown.
 */
import { Clock, Console, Context, Deferred, Effect, Layer, PubSub, Schedule, Stream } from "effect"
import { HttpRouter, HttpServer } from "effect/http"
import { LbConfig, type Settings } from "../Config.ts"
import * as Address from "../domain/Address.ts"
import * as HttpListener from "../net/HttpListener.ts"
import { Peers } from "../peers/Peers.ts"
import * as ProxyExplain from "../proxy/Explain.ts"
import { Listener } from "../proxy/Listener.ts"
import { TcpProxy } from "../proxy/TcpProxy.ts"
import type { Acls } from "../services/Acls.ts"
import { ClientTable } from "../services/ClientTable.ts"
import { HealthChecker } from "../services/HealthChecker.ts"
import { ServerPool } from "../services/ServerPool.ts"
import { StatsReporter } from "../services/StatsReporter.ts"
import { Handover } from "../shared/Handover.ts"
import { Admin, AdminError, BUSIEST_CLIENTS, SAMPLE_INTERVAL, type Update, url } from "./Admin.ts"
import * as Auth from "./Auth.ts"
import * as History from "./History.ts"
import * as Routes from "./Routes.ts"
import * as State from "./State.ts"

/** The admin endpoint serving on `admin` (LbConfig's `admin`, given). @category layers */
export const layer = (admin: NonNullable<Settings["admin"]>): Layer.Layer<
  Admin,
  AdminError,
  LbConfig | ServerPool | ClientTable | StatsReporter | Listener | HealthChecker | TcpProxy | Acls | Peers
> =>
  Layer.effect(
    Admin,
    Effect.gen(function*() {
      const config = yield* LbConfig
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
        peers: yield* Peers,
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
            state: (yield* services.listener.draining) ? "draining" : "serving",
            totals: {
              accepted: stats.accepted,
              active: stats.active,
              refused: stats.refused,
              failovers: stats.failovers,
              blacklistings: stats.blacklistings,
              healthTransitions: stats.healthTransitions,
              localFailures: stats.localFailures,
              idleClosed: stats.idleClosed
            },
            workers: stats.workers,
            peers: yield* State.peers(services),
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
      // After an upgrade, the socket of the nib this one replaces.
      const http = HttpListener.make(endpoint, (yield* Handover).admin)
      const context = yield* Layer.build(
        HttpRouter.serve(Routes.layer({ services, token, events }), { disableLogger: true, disableListenLog: true })
          .pipe(
            Layer.provideMerge(http.layer)
          )
      ).pipe(
        Effect.mapError((error) =>
          new AdminError({ message: `--admin '${admin.text}': cannot listen: ${describe(error.cause ?? error)}` })
        )
      )
      // A socket path moves from its temporary name into place now that the server listens.
      yield* http.settle.pipe(
        Effect.mapError((error) =>
          new AdminError({ message: `--admin '${admin.text}': cannot listen: ${describe(error)}` })
        )
      )
      // Added after the server, so it runs before the server's own finalizer: event streams end, their connections
      // go idle, and the server closes without waiting for a dashboard.
      yield* Effect.addFinalizer(() => Deferred.succeed(closing, undefined))
      const bound = Context.get(context, HttpServer.HttpServer).address
      const address: Address.Endpoint = endpoint._tag === "Unix"
        ? endpoint
        : bound._tag === "UnixPathAddress"
        ? Address.unix(bound.path)
        : endpoint._tag === "Tcp"
        ? Address.tcp(endpoint.host, bound.port)
        : endpoint
      yield* Console.error(
        `nib: admin endpoint on ${url(address)}${readOnly ? " (read-only: no --admin-token-file)" : ""}`
      )
      return Admin.of({ address, readOnly, descriptor: http.descriptor, handOver: Effect.sync(http.handOver) })
    }).pipe(Effect.annotateLogs({ service: "Admin" }))
  )

const describe = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)
