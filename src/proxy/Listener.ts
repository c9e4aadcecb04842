/**
 * Who listens: binds the listen address and runs the proxy for each connection (TCP) or session (UDP, `-U`), one
 * fiber each, in the layer's scope. Closing the scope stops listening and ends every connection and session; `drain`
 * stops listening and lets them end (a graceful stop, `control/Drain.ts`).
 */
import { Context, Effect, Layer, Schema } from "effect"
import type { Scope } from "effect"
import { LbConfig } from "../Config.ts"
import * as Address from "../domain/Address.ts"
import * as TcpServer from "../net/TcpServer.ts"
import * as UdpServer from "../net/UdpServer.ts"
import * as Handover from "../shared/Handover.ts"
import { SessionBoard } from "../shared/SessionBoard.ts"
import { SharedState } from "../shared/SharedState.ts"
import type { ConnectionInfo } from "./Slots.ts"
import { TcpProxy } from "./TcpProxy.ts"
import { UdpProxy } from "./UdpProxy.ts"

/**
 * What this thread listens on: the configured address, or, after an upgrade, its share of the sockets taken over and
 * the address they are bound to.
 */
const inherited = Effect.gen(function*() {
  const config = yield* LbConfig
  const handover = yield* Handover.Handover
  const shared = yield* SharedState
  const descriptors = Handover.share(handover.listen, config.workers, shared.worker)
  return { endpoint: handover.address ?? config.listen, descriptors }
})

/** The listen address could not be bound. @category errors */
export class ListenerError extends Schema.TaggedError<ListenerError>()("ListenerError", {
  message: Schema.String
}) {}

/** The listener service. @category services */
export class Listener extends Context.Service<Listener, {
  /** The bound address (with the real port when 0 was asked for); `listen ADDR` changes it. */
  readonly address: Address.Endpoint
  /** Whether this is UDP mode (`-U`). */
  readonly udp: boolean
  /** Listens on `endpoint` instead, keeping live connections (pen's `listen ADDR`); a failure changes nothing. */
  readonly rebind: (endpoint: Address.Endpoint) => Effect.Effect<Address.Endpoint, ListenerError>
  /** Connections (UDP sessions) being served now. */
  readonly active: Effect.Effect<number>
  /** Connections accepted and waiting for a free slot (`-x`); always 0 in UDP mode. */
  readonly waiting: Effect.Effect<number>
  /** Live connections at which new ones wait (`-x`, the `conn_max` command); in UDP mode, live sessions. */
  readonly connectionsMax: Effect.Effect<number>
  readonly setConnectionsMax: (n: number) => Effect.Effect<void>
  /** The live connections or sessions, by slot number (pen's connection table). */
  readonly connections: Effect.Effect<ReadonlyArray<ConnectionInfo>>
  /** Ends connection (or session) `slot` (pen's `close N`); false when none has that slot. */
  readonly close: (slot: number) => Effect.Effect<boolean>
  /**
   * pen's `idle_timeout` (0: never): seconds an established TCP connection may move no byte before it is closed
   * (TcpProxy), or in UDP mode seconds an idle session is kept.
   */
  readonly idleTimeoutSeconds: Effect.Effect<number>
  /** Sets it, for live connections (sessions) too. */
  readonly setIdleTimeoutSeconds: (seconds: number) => Effect.Effect<void>
  /**
   * Stops listening on every thread, for a graceful stop: new clients are refused (UDP: a new client's datagrams are
   * dropped); live connections and sessions go on, and clients waiting for a slot (`-x`) are served as slots free.
   * Once: `rebind` is refused from then on.
   */
  readonly drain: Effect.Effect<void>
  /** Whether `drain` has run. */
  readonly draining: Effect.Effect<boolean>
  /** Connections open on every thread: served (being dialed or relayed) or waiting for a slot; UDP: live sessions. */
  readonly open: Effect.Effect<number>
  /** Completes once `drain` has run and nothing is open any more on any thread. */
  readonly drained: Effect.Effect<void>
  /**
   * Starts serving the sockets taken over from the nib this one replaces (`Handover`), every thread's: until then their
   * clients wait in the kernel's queues. Nothing to do for a listener that bound its address.
   */
  readonly takeOver: Effect.Effect<void, ListenerError>
  /** The descriptors of the listening sockets, every thread's (the main thread's first), to hand them over. */
  readonly descriptors: Effect.Effect<ReadonlyArray<number>, ListenerError>
  /**
   * The listening sockets were handed over to a new nib, which serves them now, on every thread: UDP stops reading them
   * (live sessions still reply from them), so that no datagram is read here and dropped while this one drains; a Unix
   * socket's path stays when `drain` closes them (it is the new nib's).
   */
  readonly handOver: Effect.Effect<void>
}>()("nib/proxy/Listener") {
  /** Binds the configured address and serves it through TcpProxy, or UdpProxy with `-U`, until the scope closes. */
  static readonly make: Effect.Effect<
    Listener["Service"],
    ListenerError,
    LbConfig | TcpProxy | UdpProxy | SharedState | Scope.Scope
  > = Effect.suspend(() =>
    Effect.gen(function*() {
      const config = yield* LbConfig
      const listener = config.udp ? yield* udp : yield* tcp
      yield* Effect.logDebug(`listening on ${Address.format(listener.address)}${config.udp ? " (UDP)" : ""}`).pipe(
        Effect.annotateLogs({ service: "Listener" })
      )
      return listener
    })
  )

  /** {@link make} as a layer: this thread's listener. */
  static readonly layer: Layer.Layer<Listener, ListenerError, LbConfig | TcpProxy | UdpProxy | SharedState> = Layer
    .effect(Listener, Listener.make)
}

/** The error `rebind` fails with once the listener has drained. */
const drainingError = () =>
  new ListenerError({ message: "not listening any more: nib is stopping (draining its connections)" })

/** What `TcpServer` and `UdpServer` have alike for rebinding, a graceful stop and an upgrade. */
interface Server {
  readonly rebind: (endpoint: Address.Endpoint) => Effect.Effect<Address.Endpoint, { readonly message: string }>
  readonly drain: () => void
  readonly idle: Effect.Effect<void>
  readonly adopt: Effect.Effect<void, { readonly message: string }>
  readonly descriptors: () => ReadonlyArray<number>
  readonly handOver: () => void
}

const listenerError = Effect.mapError((error: { readonly message: string }) =>
  new ListenerError({ message: error.message })
)

/**
 * The members of a listener that are its server's alike in both modes: `listen ADDRESS` (refused once draining), the
 * graceful stop (over the server's `drain` and `idle`) and an upgrade's hand-over.
 */
const lifecycle = (server: Server) => {
  let draining = false
  return {
    rebind: (endpoint: Address.Endpoint) =>
      draining ? Effect.fail(drainingError()) : listenerError(server.rebind(endpoint)),
    drain: Effect.sync(() => {
      draining = true
      server.drain()
    }),
    draining: Effect.sync(() => draining),
    drained: server.idle,
    takeOver: listenerError(server.adopt),
    descriptors: Effect.sync(server.descriptors),
    handOver: Effect.sync(server.handOver)
  }
}

const tcp = Effect.gen(function*() {
  const config = yield* LbConfig
  const proxy = yield* TcpProxy
  // With workers, -x is one limit for all of them.
  const admission = (yield* SharedState).memory.admission
  const listen = yield* inherited
  const server = yield* TcpServer.make({
    endpoint: listen.endpoint,
    descriptors: listen.descriptors,
    backlog: config.backlog,
    maxConnections: config.connectionsMax,
    reusePort: config.workers > 1,
    shared: admission === undefined ? undefined : new Int32Array(admission),
    dials: proxy.dials
  }).pipe(listenerError)
  yield* Effect.forkScoped(server.run(proxy.handle))
  return Listener.of({
    get address() {
      return server.address()
    },
    udp: false,
    ...lifecycle(server),
    active: Effect.sync(server.active),
    waiting: Effect.sync(server.waiting),
    connectionsMax: Effect.sync(server.maxConnections),
    setConnectionsMax: (n) => Effect.sync(() => server.setMaxConnections(n)),
    connections: proxy.connections,
    close: proxy.close,
    idleTimeoutSeconds: proxy.idleTimeoutSeconds,
    setIdleTimeoutSeconds: proxy.setIdleTimeoutSeconds,
    open: Effect.sync(() => server.active() + server.waiting())
  })
})

const udp = Effect.gen(function*() {
  const config = yield* LbConfig
  const proxy = yield* UdpProxy
  const { descriptors, endpoint: listen } = yield* inherited
  if (listen._tag !== "Tcp") {
    return yield* new ListenerError({ message: `UDP mode (-U) needs a [host:]port to listen on, not ${listen.path}` })
  }
  // With workers, -x bounds every worker's sessions together.
  const shared = yield* SharedState
  const sessions = shared.memory.sessions
  const server = yield* UdpServer.make({
    endpoint: listen,
    descriptors,
    maxSessions: config.connectionsMax,
    // --idle-timeout (pen's idle_timeout) is the sessions' idle timeout when given.
    idleSeconds: config.idleTimeoutSeconds ?? config.udpIdleSeconds,
    reusePort: config.workers > 1,
    board: sessions === undefined ? undefined : new SessionBoard(sessions, shared.worker)
  }).pipe(listenerError)
  yield* Effect.forkScoped(server.run(proxy.handle))
  return Listener.of({
    get address() {
      return server.address()
    },
    udp: true,
    ...lifecycle(server),
    active: Effect.sync(server.active),
    waiting: Effect.succeed(0),
    connectionsMax: Effect.sync(server.maxSessions),
    setConnectionsMax: (n) => Effect.sync(() => server.setMaxSessions(n)),
    connections: proxy.connections,
    close: proxy.close,
    idleTimeoutSeconds: Effect.sync(server.idleSeconds),
    setIdleTimeoutSeconds: (seconds) => Effect.sync(() => server.setIdleSeconds(seconds)),
    open: Effect.sync(server.active)
  })
})
