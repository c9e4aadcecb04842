/**
 * A worker thread's side of the control plane: it applies the settings the main thread changed, through the same
 * service setters the main thread used (so that a worker's copy of each setting is the main thread's), and answers the
 * main thread's questions about the connections it serves. Nothing here is on a connection's path.
 */
import { Effect } from "effect"
import { Listener } from "../proxy/Listener.ts"
import { TcpProxy } from "../proxy/TcpProxy.ts"
import { Acls } from "../services/Acls.ts"
import { HealthChecker } from "../services/HealthChecker.ts"
import { RequestLog } from "../services/RequestLog.ts"
import { ServerPool } from "../services/ServerPool.ts"
import { Verbosity } from "../services/Verbosity.ts"
import type { SettingChange } from "../shared/Broadcast.ts"
import type { ReplyValue, Request } from "../shared/Messages.ts"

/** The services a setting change reaches before the listener exists (replayed at start). */
type Settings = ServerPool | HealthChecker | TcpProxy | Acls | RequestLog

/**
 * Applies `change` to this thread's services. The listener's own settings (`listen`, `conn_max`, `idle_timeout`) are
 * left to {@link applyToListener}: at start they are in the worker's configuration already.
 */
export const apply = (change: SettingChange): Effect.Effect<void, { readonly message: string }, Settings> =>
  Effect.gen(function*() {
    switch (change._tag) {
      case "Server":
        return yield* (yield* ServerPool).adopt(change.index, change.settings)
      case "Blacklist":
        return yield* (yield* HealthChecker).setBlacklistSeconds(change.seconds)
      case "Timeout":
        return yield* (yield* TcpProxy).setConnectTimeoutSeconds(change.seconds)
      case "PendingMax":
        return yield* (yield* TcpProxy).setPendingMax(change.n)
      case "Idlers":
        return yield* (yield* TcpProxy).setIdlers(change.n)
      case "Http":
        return yield* (yield* TcpProxy).setHttp(change.on)
      case "Sockets":
        return yield* (yield* TcpProxy).setSockets(change.options)
      case "Tls":
        return yield* (yield* TcpProxy).setTlsTuning(change.tuning)
      case "TlsReload":
        return yield* (yield* TcpProxy).reloadTls
      case "Acls":
        return yield* (yield* Acls).replace(change.table, change.clientAcl)
      case "Debug":
        ;(yield* Verbosity).debug = change.level
        return
      case "Log": {
        const log = yield* RequestLog
        return yield* (change.on ? log.open("main") : log.close)
      }
      case "Down":
        return yield* (yield* HealthChecker).announceDown(change.index)
      case "Listen":
      case "ConnectionsMax":
      case "IdleTimeout":
        return
    }
  })

/** Applies a change to the listener's own settings; the bound address for `Listen`. */
const applyToListener = (change: SettingChange): Effect.Effect<ReplyValue, { readonly message: string }, Listener> =>
  Effect.gen(function*() {
    const listener = yield* Listener
    switch (change._tag) {
      case "Listen":
        return yield* listener.rebind(change.endpoint)
      case "ConnectionsMax":
        return yield* Effect.as(listener.setConnectionsMax(change.n), undefined)
      case "IdleTimeout":
        return yield* Effect.as(listener.setIdleTimeoutSeconds(change.seconds), undefined)
      default:
        return undefined
    }
  })

/** Answers one request of the main thread (`Stop` and `Crash` are the entry's own). */
export const answer = (
  request: Exclude<Request, { readonly _tag: "Stop" | "Crash" }>
): Effect.Effect<ReplyValue, { readonly message: string }, Settings | Listener> =>
  Effect.gen(function*() {
    switch (request._tag) {
      case "Change":
        yield* apply(request.change)
        return yield* applyToListener(request.change)
      case "Connections":
        return yield* (yield* Listener).connections
      case "Close":
        return yield* (yield* Listener).close(request.slot)
      case "Drain":
        return yield* Effect.as((yield* Listener).drain, undefined)
      case "Open":
        return yield* (yield* Listener).open
      case "Drained":
        return yield* Effect.as((yield* Listener).drained, undefined)
      case "TakeOver":
        return yield* Effect.as((yield* Listener).takeOver, undefined)
      case "Descriptors":
        return yield* (yield* Listener).descriptors
      case "HandOver":
        return yield* Effect.as((yield* Listener).handOver, undefined)
    }
  })
