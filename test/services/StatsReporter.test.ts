import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Metric, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Address from "../../src/domain/Address.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"
import { BUFFER_SIZE } from "../../src/net/BufferPool.ts"
import { ClientTable } from "../../src/services/ClientTable.ts"
import { RelayBuffers } from "../../src/services/RelayBuffers.ts"
import { ServerPool } from "../../src/services/ServerPool.ts"
import { MetricNames, StatsReporter } from "../../src/services/StatsReporter.ts"
import { SharedState } from "../../src/shared/SharedState.ts"

/** What the relay does as a connection moves bytes: it adds them to the server's counters. */
const moved = (pool: ServerPool["Service"], index: number, sent: number, received: number) =>
  pool.countUnsafe(index, sent, received)

const spec = (host: string, port: number): ServerSpec.ServerSpec => ServerSpec.make(Address.tcp(host, port))

const policy = { roundrobin: false, hash: false, weight: false, prio: false, stubborn: false }
const pool = ServerPool.layerTest({ servers: [spec("10.0.0.1", 8001), spec("10.0.0.2", 8002)], policy })
const stats = StatsReporter.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(pool, RelayBuffers.layer, ClientTable.layerTest({ capacity: 16 }))),
  Layer.provideMerge(SharedState.layerLocal)
)

// The per-server series' labels: the address, and pen's server number.
const S0 = "10.0.0.1:8001"
const S1 = "10.0.0.2:8002"

const names: ReadonlyArray<string> = Object.values(MetricNames)

/** nib's series in the current MetricRegistry. */
const nibMetrics = Effect.map(Metric.snapshot, (all) => all.filter((m) => names.includes(m.id)))

/** The value of one series: a counter's count or a gauge's value. */
const valueOf = (
  metrics: ReadonlyArray<Metric.Metric.Snapshot>,
  id: string,
  server?: string
): number | bigint | undefined => {
  const found = metrics.filter((m) =>
    m.id === id && (server === undefined ? m.attributes?.["server"] === undefined : m.attributes?.["server"] === server)
  )
  assert.strictEqual(found.length, 1, `one series ${id}${server === undefined ? "" : `{server=${server}}`}`)
  const m = found[0]!
  switch (m.type) {
    case "Counter":
      return m.state.count
    case "Gauge":
      return m.state.value
    default:
      return assert.fail(`${id} is a ${m.type}`)
  }
}

/** The sticky table's gauges: clients remembered, slots. */
const table = (metrics: ReadonlyArray<Metric.Metric.Snapshot>) => [
  Number(valueOf(metrics, MetricNames.clientTableEntries)),
  Number(valueOf(metrics, MetricNames.clientTableSlots))
]

/** The `server` labels of nib_server_connections, sorted. */
const labelled = (metrics: ReadonlyArray<Metric.Metric.Snapshot>) =>
  metrics.filter((m) => m.id === MetricNames.serverConnections).map((m) => m.attributes?.["server"]).toSorted()

/** Lets the layer's fibers run (a bounded number of turns) until `done`; the assertions after it say what is wrong. */
const settle = (done: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let turn = 0; turn < 100 && !(yield* done); turn++) yield* Effect.yieldNow
  })

/** Runs `self` with a MetricRegistry of its own, so series from other tests cannot leak in. */
const isolated = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.provideService(self, Metric.MetricRegistry, new Map())

describe("StatsReporter", () => {
  it.effect("addUnsafe moves the snapshot's counters; the snapshot carries the pool's servers", () =>
    Effect.gen(function*() {
      const reporter = yield* StatsReporter
      const servers = yield* ServerPool
      assert.deepStrictEqual(
        { ...(yield* reporter.snapshot), servers: [] },
        {
          accepted: 0,
          active: 0,
          refused: 0,
          failovers: 0,
          blacklistings: 0,
          localFailures: 0,
          healthTransitions: 0,
          idleClosed: 0,
          controlRefused: 0,
          servers: [],
          emergency: undefined,
          buffers: { buffers: 0, inUse: 0, bytes: 0 },
          workers: [0]
        }
      )
      reporter.addUnsafe("accepted", 3)
      reporter.addUnsafe("active", 2)
      reporter.addUnsafe("active", -1)
      reporter.addUnsafe("refused", 1)
      reporter.addUnsafe("failovers", 4)
      reporter.addUnsafe("blacklistings", 5)
      reporter.addUnsafe("localFailures", 6)
      reporter.addUnsafe("idleClosed", 7)
      assert.isTrue(servers.tryAcquireUnsafe(1, false))
      moved(servers, 1, 10, 20)
      servers.releaseUnsafe(1)
      yield* servers.blacklist(0, 30)
      const snapshot = yield* reporter.snapshot
      assert.strictEqual(snapshot.accepted, 3)
      assert.strictEqual(snapshot.active, 1)
      assert.strictEqual(snapshot.refused, 1)
      assert.strictEqual(snapshot.failovers, 4)
      assert.strictEqual(snapshot.blacklistings, 5)
      assert.strictEqual(snapshot.localFailures, 6)
      assert.strictEqual(snapshot.idleClosed, 7)
      assert.deepStrictEqual(snapshot.servers, (yield* servers.snapshot).servers)
      assert.strictEqual(snapshot.servers[1]!.bytesSent, 10)
      assert.isTrue(snapshot.servers[0]!.blacklisted)
    }).pipe(Effect.provide(stats), isolated))

  it.effect("exports every metric in MetricNames through Metric.snapshot, with live values", () =>
    Effect.gen(function*() {
      const reporter = yield* StatsReporter
      const servers = yield* ServerPool

      reporter.addUnsafe("accepted", 5)
      reporter.addUnsafe("active", 5)
      reporter.addUnsafe("active", -3)
      reporter.addUnsafe("refused", 1)
      reporter.addUnsafe("failovers", 2)
      reporter.addUnsafe("blacklistings", 1)
      reporter.addUnsafe("localFailures", 3)
      reporter.addUnsafe("idleClosed", 4)
      reporter.addUnsafe("controlRefused", 6)
      assert.isTrue(servers.tryAcquireUnsafe(0, false))
      assert.isTrue(servers.tryAcquireUnsafe(1, false))
      assert.isTrue(servers.tryAcquireUnsafe(1, false))
      moved(servers, 1, 100, 2500)
      servers.releaseUnsafe(1)
      yield* servers.blacklist(0, 30)

      const metrics = yield* nibMetrics
      assert.strictEqual(valueOf(metrics, MetricNames.connectionsAccepted), 5)
      assert.strictEqual(valueOf(metrics, MetricNames.connectionsActive), 2)
      assert.strictEqual(valueOf(metrics, MetricNames.connectionsRefused), 1)
      assert.strictEqual(valueOf(metrics, MetricNames.failovers), 2)
      assert.strictEqual(valueOf(metrics, MetricNames.blacklistings), 1)
      assert.strictEqual(valueOf(metrics, MetricNames.localFailures), 3)
      assert.strictEqual(valueOf(metrics, MetricNames.idleClosed), 4)
      assert.strictEqual(valueOf(metrics, MetricNames.controlRefused), 6)

      assert.strictEqual(valueOf(metrics, MetricNames.serverConnections, S0), 1)
      assert.strictEqual(valueOf(metrics, MetricNames.serverConnections, S1), 1)
      assert.strictEqual(valueOf(metrics, MetricNames.serverBytesSent, S0), 0)
      assert.strictEqual(valueOf(metrics, MetricNames.serverBytesSent, S1), 100)
      assert.strictEqual(valueOf(metrics, MetricNames.serverBytesReceived, S0), 0)
      assert.strictEqual(valueOf(metrics, MetricNames.serverBytesReceived, S1), 2500)

      // The metric types and descriptions are what exporters see.
      const types = new Map(metrics.map((m) => [m.id, m.type]))
      assert.strictEqual(types.get(MetricNames.connectionsAccepted), "Counter")
      assert.strictEqual(types.get(MetricNames.connectionsActive), "Gauge")
      assert.strictEqual(types.get(MetricNames.localFailures), "Counter")
      assert.strictEqual(types.get(MetricNames.idleClosed), "Counter")
      assert.strictEqual(types.get(MetricNames.controlRefused), "Counter")
      assert.strictEqual(types.get(MetricNames.serverConnections), "Gauge")
      assert.strictEqual(types.get(MetricNames.serverBytesSent), "Counter")
      assert.isTrue(metrics.every((m) => typeof m.description === "string" && m.description.length > 0))

      // Series are pulled when read: later updates show without re-registering.
      reporter.addUnsafe("accepted", 1)
      moved(servers, 0, 7, 9)
      servers.releaseUnsafe(0)
      const later = yield* nibMetrics
      assert.strictEqual(valueOf(later, MetricNames.connectionsAccepted), 6)
      assert.strictEqual(valueOf(later, MetricNames.serverConnections, S0), 0)
      assert.strictEqual(valueOf(later, MetricNames.serverBytesSent, S0), 7)
      assert.strictEqual(valueOf(later, MetricNames.serverBytesReceived, S0), 9)
    }).pipe(Effect.provide(stats), isolated))

  it.effect("every name in MetricNames has a series; nib_server_blacklisted is 1 while a server is blacklisted", () =>
    Effect.gen(function*() {
      const servers = yield* ServerPool
      yield* servers.blacklist(0, 30)
      const metrics = yield* nibMetrics
      for (const name of names) {
        assert.isTrue(metrics.some((m) => m.id === name), `no series named ${name}`)
      }
      assert.strictEqual(Number(valueOf(metrics, MetricNames.serverBlacklisted, S0)), 1)
      assert.strictEqual(Number(valueOf(metrics, MetricNames.serverBlacklisted, S1)), 0)
      // The gauge follows the clock the layer was built with: the blacklist lapses after 30 s.
      yield* TestClock.adjust("29 seconds")
      assert.strictEqual(Number(valueOf(yield* nibMetrics, MetricNames.serverBlacklisted, S0)), 1)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(Number(valueOf(yield* nibMetrics, MetricNames.serverBlacklisted, S0)), 0)
    }).pipe(Effect.provide(stats), isolated))

  it.effect("per-server series carry server=<host:port> and index=<N>, one series per server and name", () =>
    Effect.gen(function*() {
      const metrics = yield* nibMetrics
      const perServer = [
        MetricNames.serverConnections,
        MetricNames.serverBytesSent,
        MetricNames.serverBytesReceived,
        MetricNames.serverBlacklisted,
        MetricNames.serverUp,
        MetricNames.serverDraining
      ]
      for (const name of perServer) {
        const series = metrics.filter((m) => m.id === name)
        assert.deepStrictEqual(
          series.map((m) => m.attributes).toSorted((a, b) => String(a?.["index"]).localeCompare(String(b?.["index"]))),
          [{ server: S0, index: "0" }, { server: S1, index: "1" }],
          name
        )
      }
      const global = [
        MetricNames.connectionsAccepted,
        MetricNames.connectionsActive,
        MetricNames.connectionsRefused,
        MetricNames.failovers,
        MetricNames.blacklistings,
        MetricNames.clientTableEntries,
        MetricNames.clientTableSlots
      ]
      for (const name of global) {
        const series = metrics.filter((m) => m.id === name)
        assert.strictEqual(series.length, 1, name)
        assert.isUndefined(series[0]!.attributes?.["server"], name)
      }
    }).pipe(Effect.provide(stats), isolated))

  it.effect("the relay's buffer pool: buffers owned, lent out and their bytes, in the snapshot and as gauges", () =>
    Effect.gen(function*() {
      const reporter = yield* StatsReporter
      const buffers = (yield* RelayBuffers).pool
      const a = buffers.borrow()
      const b = buffers.borrow()
      buffers.giveBack(a)
      assert.deepStrictEqual((yield* reporter.snapshot).buffers, { buffers: 2, inUse: 1, bytes: 2 * BUFFER_SIZE })
      const metrics = yield* nibMetrics
      assert.strictEqual(valueOf(metrics, MetricNames.relayBuffers), 2)
      assert.strictEqual(valueOf(metrics, MetricNames.relayBuffersInUse), 1)
      assert.strictEqual(valueOf(metrics, MetricNames.relayBufferBytes), 2 * BUFFER_SIZE)
      buffers.giveBack(b)
      assert.strictEqual(valueOf(yield* nibMetrics, MetricNames.relayBuffersInUse), 0)
    }).pipe(Effect.provide(stats), isolated))

  it.effect("closing the layer's scope removes its metrics", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(stats, scope)
      const reporter = Context.get(context, StatsReporter)
      reporter.addUnsafe("accepted", 1)
      const before = yield* nibMetrics
      // 9 counters, 3 buffer gauges, 2 sticky-table gauges, nib_workers and one worker's connections, 6 per server.
      assert.strictEqual(before.length, 9 + 3 + 2 + 2 + 6 * 2)
      assert.strictEqual(valueOf(before, MetricNames.connectionsAccepted), 1)
      const other = Metric.counter("test_other_total")
      yield* Metric.update(other, 2)
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* nibMetrics, [])
      // Only nib's own series go.
      const rest = yield* Metric.snapshot
      assert.deepStrictEqual(rest.map((m) => m.id), ["test_other_total"])
    }).pipe(isolated))

  it.effect("nib_server_up is 0 while a server is down by its check or blacklisted; nib_server_draining follows a drain", () =>
    Effect.gen(function*() {
      const servers = yield* ServerPool
      const up = (metrics: ReadonlyArray<Metric.Metric.Snapshot>) => [
        Number(valueOf(metrics, MetricNames.serverUp, S0)),
        Number(valueOf(metrics, MetricNames.serverUp, S1))
      ]
      assert.deepStrictEqual(up(yield* nibMetrics), [1, 1])
      // What an active check does when a server fails it.
      yield* servers.setDown(0, true)
      yield* servers.blacklist(1, 30)
      assert.deepStrictEqual(up(yield* nibMetrics), [0, 0])
      yield* servers.setDown(0, false)
      yield* TestClock.adjust("30 seconds")
      assert.deepStrictEqual(up(yield* nibMetrics), [1, 1])

      assert.strictEqual(Number(valueOf(yield* nibMetrics, MetricNames.serverDraining, S1)), 0)
      yield* servers.setDraining(1, true)
      const drained = yield* nibMetrics
      assert.strictEqual(Number(valueOf(drained, MetricNames.serverDraining, S1)), 1)
      // A drained server is still up: it is healthy, it only takes no new clients.
      assert.strictEqual(Number(valueOf(drained, MetricNames.serverUp, S1)), 1)
    }).pipe(Effect.provide(stats), isolated))

  it.effect("the sticky table's size: clients remembered and slots", () =>
    Effect.gen(function*() {
      const clients = yield* ClientTable
      assert.deepStrictEqual(table(yield* nibMetrics), [0, 16])
      clients.visitUnsafe("192.0.2.1")
      clients.visitUnsafe("192.0.2.2")
      clients.visitUnsafe("192.0.2.1")
      assert.deepStrictEqual(table(yield* nibMetrics), [2, 16])
      yield* clients.resize(1)
      assert.deepStrictEqual(table(yield* nibMetrics), [1, 1])
    }).pipe(Effect.provide(stats), isolated))

  it.effect("servers added at run time get their series as the change is made; a new address relabels them", () =>
    Effect.gen(function*() {
      const reporter = yield* StatsReporter
      const servers = yield* ServerPool
      const labels = Effect.map(nibMetrics, labelled)

      // pen's `server 2 address 10.0.0.3 port 8003`, and `server 4 max 1`, which adds slots 3 and 4 with no address.
      yield* servers.configure(2, [{ key: "address", value: "10.0.0.3" }, { key: "port", value: 8003 }])
      yield* servers.configure(4, [{ key: "max", value: 1 }])
      // The layer follows ServerPool's changes; slots without an address get no series.
      yield* settle(Effect.map(labels, (l) => l.includes("10.0.0.3:8003")))
      assert.deepStrictEqual(yield* labels, [S0, S1, "10.0.0.3:8003"])
      assert.isTrue(servers.tryAcquireUnsafe(2, false))
      moved(servers, 2, 5, 6)
      const added = yield* nibMetrics
      assert.strictEqual(valueOf(added, MetricNames.serverConnections, "10.0.0.3:8003"), 1)
      assert.strictEqual(valueOf(added, MetricNames.serverBytesSent, "10.0.0.3:8003"), 5)
      assert.deepStrictEqual(
        added.find((m) => m.id === MetricNames.serverUp && m.attributes?.["server"] === "10.0.0.3:8003")?.attributes,
        { server: "10.0.0.3:8003", index: "2" }
      )

      // A new address moves server 0's series to its new label, its counters with it.
      moved(servers, 0, 70, 80)
      yield* servers.configure(0, [{ key: "address", value: "10.0.0.9" }])
      yield* settle(Effect.map(labels, (l) => l.includes("10.0.0.9:8001")))
      const readdressed = yield* nibMetrics
      assert.deepStrictEqual(labelled(readdressed), [S1, "10.0.0.3:8003", "10.0.0.9:8001"])
      assert.strictEqual(valueOf(readdressed, MetricNames.serverBytesReceived, "10.0.0.9:8001"), 80)
      // refresh (what an exporter may run before reading) changes nothing more.
      yield* reporter.refresh
      assert.deepStrictEqual(yield* labels, [S1, "10.0.0.3:8003", "10.0.0.9:8001"])
    }).pipe(Effect.provide(stats), isolated))

  it.effect("layerNoop: the snapshot stays zero whatever is added", () =>
    Effect.gen(function*() {
      const reporter = yield* StatsReporter
      reporter.addUnsafe("accepted", 3)
      reporter.addUnsafe("active", 1)
      reporter.addUnsafe("refused", 1)
      reporter.addUnsafe("failovers", 1)
      reporter.addUnsafe("blacklistings", 1)
      assert.deepStrictEqual(yield* reporter.snapshot, {
        accepted: 0,
        active: 0,
        refused: 0,
        failovers: 0,
        blacklistings: 0,
        localFailures: 0,
        healthTransitions: 0,
        idleClosed: 0,
        controlRefused: 0,
        servers: [],
        emergency: undefined,
        buffers: { buffers: 0, inUse: 0, bytes: 0 },
        workers: []
      })
      assert.deepStrictEqual(yield* nibMetrics, [])
    }).pipe(Effect.provide(StatsReporter.layerNoop), isolated))
})
