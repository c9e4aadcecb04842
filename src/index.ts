/**
 * nib as a library: the balancer is a Layer (`Layers.AppLive`, needing only `Config.LbConfig`), and each service can
 * be swapped or reused by a larger Effect app.
 *
 * @example
 * const app = Layers.AppLive.pipe(Layer.provide(Config.LbConfig.layer({ listen, servers })))
 * Layer.launch(app).pipe(NodeRuntime.runMain)
 */

/** The configuration schema, `LbConfig` service and pen's defaults. */
export * as Config from "./Config.ts"
/** Listen and server addresses in pen's syntax. */
export * as Address from "./domain/Address.ts"
/** Server specs `host:port:maxc:hard:weight:prio`. */
export * as ServerSpec from "./domain/ServerSpec.ts"
/** pen's selection rules as pure functions. */
export * as Selection from "./domain/Selection.ts"
/** The production layer graph: `AppLive` and `makeApp(poolLayer)`. */
export * as Layers from "../layers/Live.ts"
/** The listener service. */
export * as Listener from "./proxy/Listener.ts"
/** The server pool service. */
export * as ServerPool from "./services/ServerPool.ts"
/** The sticky client table service. */
export * as ClientTable from "./services/ClientTable.ts"
/** The health checker service. */
export * as HealthChecker from "./services/HealthChecker.ts"
/** The stats service and metric names. */
export * as StatsReporter from "./services/StatsReporter.ts"
/** The per-connection TCP proxy service. */
export * as TcpProxy from "./proxy/TcpProxy.ts"
/** The per-session UDP proxy service (`-U`). */
export * as UdpProxy from "./proxy/UdpProxy.ts"
/** pen's control language, decoded into typed commands. */
export * as Command from "./control/Command.ts"
/** The control service: runs a command against the running balancer, with pen's replies. */
export * as Control from "./control/Control.ts"
/** The control port (`-C`). */
export * as ControlPort from "./control/ControlPort.ts"
/** pen's access control lists. */
export * as Acl from "./domain/Acl.ts"
/** pen's HTML status page and text statistics. */
export * as StatusPage from "./domain/StatusPage.ts"
/** pen's request log line and penlogd datagram formats. */
export * as AccessLog from "./domain/AccessLog.ts"
/** The request log (`-l`). */
export * as RequestLog from "./services/RequestLog.ts"
/** The status page service (`-w`, `status`). */
export * as Status from "./control/Status.ts"
/** The access control lists in use (`client_acl`, `control_acl`, `server N acl`). */
export * as Acls from "./services/Acls.ts"
/** pen's HUP and USR1 handlers, and nib's QUIT (a graceful stop) and USR2 (an upgrade), as a layer. */
export * as Signals from "./control/Signals.ts"
/** Names that follow DNS (`--resolve-interval`): the servers' host names resolved again, as a layer. */
export * as FollowDns from "./control/FollowDns.ts"
/** The graceful stop: the listeners closed, the open connections let finish within `--grace`. */
export * as Drain from "./control/Drain.ts"
/** The upgrade (SIGUSR2): a new nib takes over the listening sockets and the sticky table, and this one drains. */
export * as Upgrade from "./control/Upgrade.ts"
/** pen's debug level, and the logger that follows it. */
export * as Verbosity from "./services/Verbosity.ts"
/** The relay's buffer pool service (its size is in StatsReporter's snapshot). */
export * as RelayBuffers from "./services/RelayBuffers.ts"
/** The admin endpoint (`--admin`): dashboard, `/metrics` and the JSON API. */
export * as Admin from "./admin/Admin.ts"
/** The admin API's request schemas, errors and JSON views. */
export * as AdminApi from "./admin/Api.ts"
