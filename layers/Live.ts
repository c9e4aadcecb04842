/**
 * The production layer graph, written once: the balancer as a Layer that needs only its configuration. Anything
 * that provides `LbConfig` can run it, the CLI or a larger Effect app.
 *
 * With one worker (the default) the main thread serves: the whole graph runs on it. With `--workers N` it is the
 * control plane alone: the same services, over memory it shares with N worker threads (layers/Worker.ts), whose
 * listener starts the workers and answers for them, and whose settings reach them through the Broadcast.
 */
import { Effect, Layer } from "effect"
import { Admin } from "../src/admin/Admin.ts"
import { LbConfig } from "../src/Config.ts"
import { Control } from "../src/control/Control.ts"
import { ControlPort } from "../src/control/ControlPort.ts"
import { Drain } from "../src/control/Drain.ts"
import * as Signals from "../src/control/Signals.ts"
import { Status } from "../src/control/Status.ts"
import { Upgrade } from "../src/control/Upgrade.ts"
import * as Workers from "../src/control/Workers.ts"
import { Peers } from "../src/peers/Peers.ts"
import { Listener } from "../src/proxy/Listener.ts"
import { TcpProxy } from "../src/proxy/TcpProxy.ts"
import { UdpProxy } from "../src/proxy/UdpProxy.ts"
import { Acls } from "../src/services/Acls.ts"
import { ClientTable } from "../src/services/ClientTable.ts"
import { HealthChecker } from "../src/services/HealthChecker.ts"
import { RelayBuffers } from "../src/services/RelayBuffers.ts"
import { RequestLog } from "../src/services/RequestLog.ts"
import { ServerPool } from "../src/services/ServerPool.ts"
import { StatsReporter } from "../src/services/StatsReporter.ts"
import { Broadcast } from "../src/shared/Broadcast.ts"
import { SharedState } from "../src/shared/SharedState.ts"
import { Threads } from "../src/shared/Threads.ts"

/**
 * Builds the graph over a given ServerPool layer (production resolves LbConfig's servers; tests swap their own) and
 * listener (the main thread's own, or the workers').
 */
const graph = <E, R, LE, LR>(
  pool: Layer.Layer<ServerPool, E, R>,
  listen: Layer.Layer<Listener, LE, LR>
) => {
  // StatsReporter exports the sticky table's size, so ClientTable comes first.
  const stats = StatsReporter.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(pool, RelayBuffers.layer, ClientTable.layer))
  )
  // Peers (`--peers`) load the shared sticky table before the listener is built: a peer serves with it.
  const core = Layer.mergeAll(HealthChecker.layer, RequestLog.layer, Acls.layer, Peers.layer).pipe(
    Layer.provideMerge(stats)
  )
  const proxy = Layer.merge(TcpProxy.layer, UdpProxy.layer).pipe(Layer.provideMerge(core))
  const listener = listen.pipe(Layer.provideMerge(proxy))
  const status = Status.layer.pipe(Layer.provideMerge(listener))
  const control = Layer.merge(Control.layer, Drain.layer).pipe(Layer.provideMerge(status))
  const ports = Layer.merge(ControlPort.layer, Admin.layer).pipe(Layer.provideMerge(control))
  // SIGUSR2 hands the listening sockets over, the admin endpoint's among them.
  const upgrade = Layer.unwrap(Effect.map(Effect.service(Admin), (admin) => Upgrade.layer(admin))).pipe(
    Layer.provideMerge(ports)
  )
  return Signals.layer.pipe(Layer.provideMerge(upgrade))
}

/** The balancer whose main thread serves (one worker), over a given ServerPool layer. */
export const makeApp = <E, R>(pool: Layer.Layer<ServerPool, E, R>) =>
  graph(pool, Listener.layer).pipe(Layer.provideMerge(SharedState.layer))

/**
 * The main thread of a balancer with workers: the control plane over the shared memory, the workers started by its
 * listener, every setting change broadcast to them.
 */
export const makeMain = <E, R>(pool: Layer.Layer<ServerPool, E, R>) => {
  const broadcast = Layer.effect(
    Broadcast,
    Effect.map(Effect.service(Workers.Workers), (workers) => ({ send: workers.send }))
  )
  const threads = Layer.effect(
    Threads,
    Effect.map(Effect.service(Workers.Workers), (workers) => ({ status: workers.status, crash: workers.crash }))
  )
  return graph(pool, Workers.layerListener).pipe(
    Layer.provide(Layer.merge(broadcast, threads)),
    Layer.provideMerge(Workers.Workers.layer),
    Layer.provideMerge(SharedState.layer)
  )
}

/**
 * The whole balancer: Listener, ServerPool, ClientTable, HealthChecker, StatsReporter, TcpProxy, UdpProxy, RelayBuffers,
 * RequestLog, Status, Control, Drain, the control port, the signals (pen's HUP and USR1, nib's QUIT and USR2: the
 * upgrade) and the admin endpoint (`--admin`), needing `LbConfig`; with `--workers N`, the main thread of N workers.
 */
export const AppLive = Layer.unwrap(
  Effect.map(
    Effect.service(LbConfig),
    (config) => config.workers > 1 ? makeMain(ServerPool.layer) : makeApp(ServerPool.layer)
  )
)
