/**
 * What happened: counters (connections accepted, refused, failovers, blacklistings, local failures), the
 * live-connection gauge and per-server figures, exposed as Effect `Metric`s and as a typed snapshot.
 *
 * The per-connection path only bumps plain numbers; the metrics read them when they are exported (pull-based series
 * registered with `Metric.registerUnsafe`), so observability costs nothing per connection.
 */
import { Clock, Context, Effect, Layer, Metric } from "effect"
import * as Backend from "../domain/Backend.ts"
import type { PoolStats } from "../net/BufferPool.ts"
import { RelayBuffers } from "./RelayBuffers.ts"
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
  serverConnections: "nib_server_connections",
  serverBytesSent: "nib_server_bytes_sent_total",
  serverBytesReceived: "nib_server_bytes_received_total",
  serverBlacklisted: "nib_server_blacklisted",
  relayBuffers: "nib_relay_buffers",
  relayBuffersInUse: "nib_relay_buffers_in_use",
  relayBufferBytes: "nib_relay_buffer_bytes"
} as const

/** The counters the per-connection path moves. @category models */
export type Counter =
  | "accepted"
  | "active"
  | "refused"
  | "failovers"
  | "blacklistings"
  | "localFailures"
  | "healthTransitions"

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
  readonly servers: ReadonlyArray<ServerStatus>
  readonly emergency: ServerStatus | undefined
  /** The relay's buffer pool: buffers owned, lent out, and their bytes. */
  readonly buffers: PoolStats
}

/** The stats service. @category services */
export class StatsReporter extends Context.Service<StatsReporter, {
  /** Adds `delta` to a counter (per-connection path). */
  readonly addUnsafe: (counter: Counter, delta: number) => void
  /** Counters and per-server figures now. */
  readonly snapshot: Effect.Effect<StatsSnapshot>
}>()("nib/services/StatsReporter") {
  /** Counts in memory and registers nib's metrics in the current MetricRegistry for the layer's lifetime. */
  static readonly layer: Layer.Layer<StatsReporter, never, ServerPool | RelayBuffers> = Layer.effect(
    StatsReporter,
    Effect.gen(function*() {
      const pool = yield* ServerPool
      const buffers = (yield* RelayBuffers).pool
      const clock = yield* Clock.Clock
      const counts = zeroCounts()
      const context = yield* Effect.context<never>()
      const registrations: Array<Metric.Registration> = []
      const register = <S>(
        metric: Metric.Metric<number, S>,
        get: () => S,
        attributes?: Record<string, string>
      ) => {
        const ctx = attributes === undefined
          ? context
          : Context.add(context, Metric.CurrentMetricAttributes, attributes)
        registrations.push(Metric.registerUnsafe(metric, ctx, { get, update: noop, modify: noop }))
      }
      const counterOf = (name: string, description: string, read: () => number, attributes?: Record<string, string>) =>
        register(Metric.counter(name, { description, incremental: true }), () => ({
          count: read(),
          incremental: true
        }), attributes)
      const gauge = (name: string, description: string, read: () => number, attributes?: Record<string, string>) =>
        register(Metric.gauge(name, { description }), () => ({ value: read() }), attributes)

      counterOf(MetricNames.connectionsAccepted, "client connections accepted", () => counts.accepted)
      gauge(MetricNames.connectionsActive, "client connections being served", () => counts.active)
      counterOf(MetricNames.connectionsRefused, "connections closed with no server", () => counts.refused)
      counterOf(MetricNames.failovers, "connections moved to another server", () => counts.failovers)
      counterOf(MetricNames.blacklistings, "servers blacklisted after a failure", () => counts.blacklistings)
      counterOf(
        MetricNames.localFailures,
        "connections closed for want of nib's own resources (no server blamed)",
        () => counts.localFailures
      )
      counterOf(
        MetricNames.healthTransitions,
        "servers an active check took down or brought back up",
        () => counts.healthTransitions
      )
      gauge(MetricNames.relayBuffers, "buffers the relay owns (lent out or free)", () => buffers.stats().buffers)
      gauge(MetricNames.relayBuffersInUse, "relay buffers holding bytes not yet written", () => buffers.stats().inUse)
      gauge(MetricNames.relayBufferBytes, "bytes of all relay buffers", () => buffers.stats().bytes)
      const servers = pool.emergency === undefined ? pool.backends : [...pool.backends, pool.emergency]
      for (const b of servers) {
        const server = { server: b.index === EMERGENCY_SERVER ? "emergency" : String(b.index) }
        gauge(MetricNames.serverConnections, "live connections per server", () => b.connections, server)
        counterOf(MetricNames.serverBytesSent, "bytes sent to the server", () => b.bytesSent, server)
        counterOf(MetricNames.serverBytesReceived, "bytes received from the server", () => b.bytesReceived, server)
        gauge(
          MetricNames.serverBlacklisted,
          "1 while the server is blacklisted",
          () => Backend.isBlacklisted(b, clock.currentTimeMillisUnsafe()) ? 1 : 0,
          server
        )
      }
      yield* Effect.addFinalizer(() => Effect.sync(() => registrations.forEach((r) => r.remove())))

      return StatsReporter.of({
        addUnsafe: (name, delta) => {
          counts[name] += delta
        },
        snapshot: Effect.map(pool.snapshot, (p) => ({
          ...counts,
          servers: p.servers,
          emergency: p.emergency,
          buffers: buffers.stats()
        }))
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
        buffers: { buffers: 0, inUse: 0, bytes: 0 }
      })
    })
  )
}

function noop() {}

function zeroCounts(): Record<Counter, number> {
  return { accepted: 0, active: 0, refused: 0, failovers: 0, blacklistings: 0, localFailures: 0, healthTransitions: 0 }
}
