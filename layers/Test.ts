/**
 * The layer graph for tests: the same wiring as Live.ts with inert or steerable variants swapped in.
 */
import { Layer } from "effect"
import { LbConfig, type Settings } from "../src/Config.ts"
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
import { SharedState } from "../src/shared/SharedState.ts"
import { makeApp } from "./Live.ts"

/** The full balancer over `settings`, with its real services (what the CLI runs, minus the process). */
export const makeAppTest = (settings: Partial<Settings> & Pick<Settings, "listen" | "servers">) =>
  makeApp(ServerPool.layer).pipe(Layer.provideMerge(LbConfig.layer(settings)))

/**
 * The balancer with passive health switched off (servers are never blacklisted) and stats dropped: selection and
 * relaying alone.
 */
export const makeAppNoHealth = (settings: Partial<Settings> & Pick<Settings, "listen" | "servers">) => {
  const core = Layer.mergeAll(
    ClientTable.layer,
    HealthChecker.layerNoop,
    StatsReporter.layerNoop,
    RequestLog.layer,
    Acls.layer,
    RelayBuffers.layer
  ).pipe(
    Layer.provideMerge(ServerPool.layer),
    Layer.provideMerge(SharedState.layer)
  )
  return Listener.layer.pipe(
    Layer.provide(Layer.merge(TcpProxy.layer, UdpProxy.layer).pipe(Layer.provide(core))),
    Layer.provideMerge(core),
    Layer.provideMerge(LbConfig.layer(settings))
  )
}
