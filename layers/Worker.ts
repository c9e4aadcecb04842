/**
 * A worker thread's layer graph (`--workers N`): the data plane alone. It serves the connections the kernel hands its
 * own listening socket (SO_REUSEPORT), over the memory the main thread shares with every worker (servers' state,
 * counters, connection numbers); its settings are the main thread's, replayed at start and followed after.
 */
import { Effect, Layer } from "effect"
import { LbConfig } from "../src/Config.ts"
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
import type { WorkerInit } from "../src/shared/Messages.ts"
import { SharedState } from "../src/shared/SharedState.ts"
import * as Agent from "../src/worker/Agent.ts"

/**
 * Worker `init.worker`'s graph: the settings changed since start-up applied before its listener binds; its request log
 * lines sent to `log` (the main thread writes them).
 */
export const makeWorker = (
  init: WorkerInit,
  log: (clientIp: string, serverIp: string, chunk: Uint8Array) => void
) => {
  const stats = StatsReporter.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(ServerPool.layerWorker, RelayBuffers.layer, ClientTable.layerWorker))
  )
  const core = Layer.mergeAll(HealthChecker.layerPassive, RequestLog.layerForward(log), Acls.layer).pipe(
    Layer.provideMerge(stats)
  )
  const proxy = Layer.merge(TcpProxy.layer, UdpProxy.layer).pipe(Layer.provideMerge(core))
  // What changed before this worker started (servers above all): applied before it takes a client.
  const replay = Layer.effectDiscard(
    Effect.forEach(init.changes, (change) => Effect.orDie(Agent.apply(change)), { discard: true })
  )
  return Listener.layer.pipe(
    Layer.provideMerge(replay),
    Layer.provideMerge(proxy),
    Layer.provideMerge(SharedState.layerAttach(init.memory, init.worker)),
    Layer.provideMerge(LbConfig.layerSettings(init.settings))
  )
}
