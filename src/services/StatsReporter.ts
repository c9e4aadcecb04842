/**
 * What happened: counters (connections accepted, refused, failovers, blacklistings, local failures, idle closes, control
 * clients refused), the live-connection gauge, the sticky table's size and per-server figures, exposed as Effect
 * `Metric`s and as a typed snapshot.
 *
 * The per-connection path only bumps plain numbers; the metrics read them when they are exported (pull-based series
 * registered with `Metric.registerUnsafe`), so observability costs nothing per connection. Per-server series are
 * labelled `server="host:port"` (and `index`, pen's server number, which keeps two slots with one address apart);
 * servers the control port adds or readdresses at run time (`server N ...`, which ServerPool announces on `changes`)
 * get their series under their new label as soon as the change is made.
 */
import { Clock, Context, Effect, Layer, Metric, Option, PubSub } from "effect"
import * as Address from "../domain/Address.ts"
import * as Backend from "../domain/Backend.ts"
import { BUFFER_SIZE, type PoolStats } from "../net/BufferPool.ts"
import * as CounterMemory from "../shared/CounterMemory.ts"
import { SharedState } from "../shared/SharedState.ts"
import { ClientTable } from "./ClientTable.ts"
import { EMERGENCY_SERVER, ServerPool, type ServerStatus } from "./ServerPool.ts"

/** Every metric name nib exports; emission sites use these, never literals. @category constants */
export const MetricNames = {
  connectionsAccepted: "nib_connections_accepted_total",
  connectionsActive: "nib_connections_active",
  connectionsRefused: "nib_connections_refused_total",
  failovers: "nib_failovers_total",
  blacklistings: "nib_blacklistings_total",
  localFailures: "nib_local_failures_total",
  healthTransitions: "nib_health_transitions_total",
  idleClosed: "nib_idle_closed_total",
  controlRefused: "nib_control_refused_total",
  serverConnections: "nib_server_connections",
  serverBytesSent: "nib_server_bytes_sent_total",
  serverBytesReceived: "nib_server_bytes_received_total",
  serverBlacklisted: "nib_server_blacklisted",
  serverUp: "nib_server_up",
  serverDraining: "nib_server_draining",
  clientTableEntries: "nib_client_table_entries",
  clientTableSlots: "nib_client_table_slots",
  relayBuffers: "nib_relay_buffers",
  relayBuffersInUse: "nib_relay_buffers_in_use",
  relayBufferBytes: "nib_relay_buffer_bytes",
  workers: "nib_workers",
  workerConnections: "nib_worker_connections"
} as const

/** The counters the per-connection path moves. @category models */
export type Counter = CounterMemory.Counter

/** Counters and per-server figures at one instant. @category models */
export interface StatsSnapshot {
  readonly accepted: number
  readonly active: number
  /** Connections closed because no server (nor the emergency server) would take them. */
  readonly refused: number
  readonly failovers: number
  readonly blacklistings: number
  /** Connections closed because nib itself ran short (descriptors, buffers, memory, local ports): no server blamed. */
  readonly localFailures: number
  /** Servers an active check took down or brought back up. */
  readonly healthTransitions: number
  /** Connections closed for having moved no byte for `idle_timeout` seconds. */
  readonly idleClosed: number
  /** Control clients refused, with a line saying why, for being past the control port's share of descriptors. */
  readonly controlRefused: number
  readonly servers: ReadonlyArray<ServerStatus>
  readonly emergency: ServerStatus | undefined
  /** The relay's buffer pool: buffers owned, lent out, and their bytes. */
  readonly buffers: PoolStats
  /** Live connections per thread that serves (`--workers`; one figure when the main thread serves). */
  readonly workers: ReadonlyArray<number>
}

/** Labels of a server's series: its address, and pen's server number (`emergency` for `-e`). @category models */
export const serverLabels = (backend: Backend.Backend): Record<string, string> => ({
  server: Address.format(backend.spec.endpoint),
  index: backend.index === EMERGENCY_SERVER ? "emergency" : String(backend.index)
})

/** The stats service. @category services */
export class StatsReporter extends Context.Service<StatsReporter, {
  /** Adds `delta` to a counter (per-connection path). */
  readonly addUnsafe: (counter: Counter, delta: number) => void
  /** Counters and per-server figures now. */
  readonly snapshot: Effect.Effect<StatsSnapshot>
  /**
   * Registers the series of servers added since (`server N address ...`) and relabels those whose address changed.
   * The layer runs it on each of ServerPool's `changes`; an exporter may run it before reading, to be sure.
   */
  readonly refresh: Effect.Effect<void>
}>()("nib/services/StatsReporter") {
  /**
   * Counts in memory and registers nib's metrics in the current MetricRegistry for the layer's lifetime. The sticky
   * table's gauges are registered when a ClientTable is in the context (the production graph provides one first).
   */
  static readonly layer: Layer.Layer<StatsReporter, never, ServerPool | SharedState> = Layer.effect(
    StatsReporter,
    Effect.gen(function*() {
      const pool = yield* ServerPool
      const clients = yield* Effect.serviceOption(ClientTable)
      const clock = yield* Clock.Clock
      const shared = yield* SharedState
      // Every thread's counts, summed when read; this thread adds to its own row.
      const counters = new CounterMemory.Counters(shared.memory.counters, shared.worker)
      const workers = shared.memory.workers
      const perWorker = () => Array.from({ length: workers }, (_, worker) => counters.getRow("active", worker))
      // Every thread's relay buffers (RelayBuffers keeps each thread's in its row).
      const buffers = {
        stats: (): PoolStats => {
          const owned = counters.get("relayBuffers")
          return { buffers: owned, inUse: counters.get("relayBuffersInUse"), bytes: owned * BUFFER_SIZE }
        }
      }
      const now = () => clock.currentTimeMillisUnsafe()
      const context = yield* Effect.context<never>()
      const runSync = Effect.runSyncWith(context)
      const register = <S>(
        metric: Metric.Metric<number, S>,
        get: () => S,
        attributes?: Record<string, string>
      ): Metric.Registration => {
        const ctx = attributes === undefined
          ? context
          : Context.add(context, Metric.CurrentMetricAttributes, attributes)
        return Metric.registerUnsafe(metric, ctx, { get, update: noop, modify: noop })
      }
      const counterOf = (name: string, description: string, read: () => number, attributes?: Record<string, string>) =>
        register(Metric.counter(name, { description, incremental: true }), () => ({
          count: read(),
          incremental: true
        }), attributes)
      const gauge = (name: string, description: string, read: () => number, attributes?: Record<string, string>) =>
        register(Metric.gauge(name, { description }), () => ({ value: read() }), attributes)

      const registrations: Array<Metric.Registration> = [
        counterOf(MetricNames.connectionsAccepted, "client connections accepted", () => counters.get("accepted")),
        gauge(MetricNames.connectionsActive, "client connections being served", () => counters.get("active")),
        counterOf(MetricNames.connectionsRefused, "connections closed with no server", () => counters.get("refused")),
        counterOf(MetricNames.failovers, "connections moved to another server", () => counters.get("failovers")),
        counterOf(
          MetricNames.blacklistings,
          "servers blacklisted after a failure",
          () => counters.get("blacklistings")
        ),
        counterOf(
          MetricNames.localFailures,
          "connections closed for want of nib's own resources (no server blamed)",
          () => counters.get("localFailures")
        ),
        counterOf(
          MetricNames.healthTransitions,
          "servers an active check took down or brought back up",
          () => counters.get("healthTransitions")
        ),
        counterOf(
          MetricNames.idleClosed,
          "connections closed after idle_timeout seconds without a byte either way",
          () => counters.get("idleClosed")
        ),
        counterOf(
          MetricNames.controlRefused,
          "control clients refused for being past the control port's share of descriptors",
          () => counters.get("controlRefused")
        ),
        gauge(MetricNames.relayBuffers, "buffers the relay owns (lent out or free)", () => buffers.stats().buffers),
        gauge(
          MetricNames.relayBuffersInUse,
          "relay buffers holding bytes not yet written",
          () => buffers.stats().inUse
        ),
        gauge(MetricNames.relayBufferBytes, "bytes of all relay buffers", () => buffers.stats().bytes),
        gauge(MetricNames.workers, "threads that serve connections (--workers)", () => workers),
        // Each worker's share of the live connections (one series, worker 0, when the main thread serves).
        ...Array.from({ length: workers }, (_, worker) =>
          gauge(
            MetricNames.workerConnections,
            "client connections each worker serves",
            () => counters.getRow("active", worker),
            { worker: String(worker) }
          ))
      ]
      if (Option.isSome(clients)) {
        const table = clients.value
        registrations.push(
          // Read when exported: `size` walks the table (at most -c entries), never per connection.
          gauge(
            MetricNames.clientTableEntries,
            "clients the sticky table remembers",
            () => runSync(table.size)
          ),
          gauge(MetricNames.clientTableSlots, "slots of the sticky table (-c)", () => runSync(table.capacity))
        )
      }

      const perServer = (b: Backend.Backend): ReadonlyArray<Metric.Registration> => {
        const labels = serverLabels(b)
        return [
          gauge(MetricNames.serverConnections, "live connections per server", () => b.connections, labels),
          counterOf(MetricNames.serverBytesSent, "bytes sent to the server", () => b.bytesSent, labels),
          counterOf(MetricNames.serverBytesReceived, "bytes received from the server", () => b.bytesReceived, labels),
          gauge(
            MetricNames.serverBlacklisted,
            "1 while the server is blacklisted",
            () => Backend.isBlacklisted(b, now()) ? 1 : 0,
            labels
          ),
          gauge(
            MetricNames.serverUp,
            "1 while the server is up: neither down by its check nor blacklisted",
            () => b.down || Backend.isBlacklisted(b, now()) ? 0 : 1,
            labels
          ),
          gauge(
            MetricNames.serverDraining,
            "1 while the server is drained (no new clients)",
            () => b.draining ? 1 : 0,
            labels
          )
        ]
      }

      // Each server's series, under the label they were registered with; a slot without an address has none.
      const series = new Map<
        Backend.Backend,
        { readonly label: string; readonly all: ReadonlyArray<Metric.Registration> }
      >()
      const refreshNow = () => {
        const servers = pool.emergency === undefined ? pool.backends : [...pool.backends, pool.emergency]
        for (const b of servers) {
          const known = series.get(b)
          const label = b.configured ? Address.format(b.spec.endpoint) : undefined
          if (known !== undefined && known.label === label) continue
          known?.all.forEach((r) => r.remove())
          series.delete(b)
          if (label !== undefined) series.set(b, { label, all: perServer(b) })
        }
      }
      refreshNow()
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          registrations.forEach((r) => r.remove())
          series.forEach(({ all }) => all.forEach((r) => r.remove()))
        })
      )
      const refresh = Effect.sync(refreshNow)
      const changes = yield* pool.changes
      yield* PubSub.take(changes).pipe(Effect.andThen(refresh), Effect.forever, Effect.forkScoped)

      return StatsReporter.of({
        addUnsafe: (name, delta) => counters.add(name, delta),
        snapshot: Effect.map(pool.snapshot, (p) => ({
          ...counters.all(),
          servers: p.servers,
          emergency: p.emergency,
          buffers: buffers.stats(),
          workers: perWorker()
        })),
        refresh
      })
    })
  )

  /** Drops every update; the snapshot is all zeros. */
  static readonly layerNoop: Layer.Layer<StatsReporter> = Layer.succeed(
    StatsReporter,
    StatsReporter.of({
      addUnsafe: noop,
      snapshot: Effect.succeed({
        ...zeroCounts(),
        servers: [],
        emergency: undefined,
        buffers: { buffers: 0, inUse: 0, bytes: 0 },
        workers: []
      }),
      refresh: Effect.void
    })
  )
}

function noop() {}

function zeroCounts(): Record<Counter, number> {
  return {
    accepted: 0,
    active: 0,
    refused: 0,
    failovers: 0,
    blacklistings: 0,
    localFailures: 0,
    healthTransitions: 0,
    idleClosed: 0,
    controlRefused: 0
  }
}
