/**
 * The production layer graph, written once: the balancer as a Layer that needs only its configuration. Anything
 * that provides `LbConfig` can run it, the CLI or a larger Effect app.
 */
import { Layer } from "effect"
import { TcpProxy } from "../src/proxy/TcpProxy.ts"
import { UdpProxy } from "../src/proxy/UdpProxy.ts"
import { Acls } from "../src/services/Acls.ts"
import { Admin } from "../src/services/Admin.ts"
import { ClientTable } from "../src/services/ClientTable.ts"
import { Control } from "../src/services/Control.ts"
import { ControlPort } from "../src/services/ControlPort.ts"
import { HealthChecker } from "../src/services/HealthChecker.ts"
import { Listener } from "../src/services/Listener.ts"
import { RelayBuffers } from "../src/services/RelayBuffers.ts"
import { RequestLog } from "../src/services/RequestLog.ts"
import { ServerPool } from "../src/services/ServerPool.ts"
import * as Signals from "../src/services/Signals.ts"
import { StatsReporter } from "../src/services/StatsReporter.ts"
import { Status } from "../src/services/Status.ts"
import { SharedState } from "../src/shared/SharedState.ts"

/** Builds the graph over a given ServerPool layer (production resolves LbConfig's servers; tests swap their own). */
export const makeApp = <E, R>(pool: Layer.Layer<ServerPool, E, R>) => {
  // StatsReporter exports the sticky table's size, so ClientTable comes first. One thread: memory of its own.
  const stats = StatsReporter.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(pool, RelayBuffers.layer, ClientTable.layer)),
    Layer.provideMerge(SharedState.layer)
  )
  const core = Layer.mergeAll(HealthChecker.layer, RequestLog.layer, Acls.layer).pipe(Layer.provideMerge(stats))
  const proxy = Layer.merge(TcpProxy.layer, UdpProxy.layer).pipe(Layer.provideMerge(core))
  const listener = Listener.layer.pipe(Layer.provideMerge(proxy))
  const status = Status.layer.pipe(Layer.provideMerge(listener))
  const control = Control.layer.pipe(Layer.provideMerge(status))
  return Layer.mergeAll(ControlPort.layer, Signals.layer, Admin.layer).pipe(Layer.provideMerge(control))
}

/**
 * The whole balancer: Listener, ServerPool, ClientTable, HealthChecker, StatsReporter, TcpProxy, UdpProxy, RelayBuffers,
 * RequestLog, Status, Control, the control port, pen's signals (HUP, USR1) and the admin endpoint (`--admin`), needing
 * `LbConfig`.
 */
export const AppLive = makeApp(ServerPool.layer)
