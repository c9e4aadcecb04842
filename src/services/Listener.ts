/**
 * Who listens: binds the listen address and runs the proxy for each connection, one fiber each, in the layer's scope.
 * Closing the scope stops accepting, closes the listener and ends every connection.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { LbConfig } from "../Config.ts"
import * as Address from "../domain/Address.ts"
import * as TcpServer from "../net/TcpServer.ts"
import { TcpProxy } from "../proxy/TcpProxy.ts"

/** The listen address could not be bound. @category errors */
export class ListenerError extends Schema.TaggedError<ListenerError>()("ListenerError", {
  message: Schema.String
}) {}

/** The listener service. @category services */
export class Listener extends Context.Service<Listener, {
  /** The bound address (with the real port when 0 was asked for); `listen ADDR` changes it. */
  readonly address: Address.Endpoint
  /** Listens on `endpoint` instead, keeping live connections (pen's `listen ADDR`); a failure changes nothing. */
  readonly rebind: (endpoint: Address.Endpoint) => Effect.Effect<Address.Endpoint, ListenerError>
  /** Connections being served now. */
  readonly active: Effect.Effect<number>
  /** Connections accepted and waiting for a free slot (`-x`). */
  readonly waiting: Effect.Effect<number>
  /** Live connections at which new ones wait (`-x`, the `conn_max` command). */
  readonly connectionsMax: Effect.Effect<number>
  readonly setConnectionsMax: (n: number) => Effect.Effect<void>
}>()("nib/services/Listener") {
  /** Binds the configured address and serves every connection through TcpProxy until the scope closes. */
  static readonly layer: Layer.Layer<Listener, ListenerError, LbConfig | TcpProxy> = Layer.effect(
    Listener,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const proxy = yield* TcpProxy
      const server = yield* TcpServer.make({
        endpoint: config.listen,
        backlog: config.backlog,
        maxConnections: config.connectionsMax
      }).pipe(Effect.mapError((error) => new ListenerError({ message: error.message })))
      yield* Effect.forkScoped(server.run(proxy.handle))
      yield* Effect.logDebug(`listening on ${Address.format(server.address())}`).pipe(
        Effect.annotateLogs({ service: "Listener" })
      )
      return Listener.of({
        get address() {
          return server.address()
        },
        rebind: (endpoint) =>
          server.rebind(endpoint).pipe(Effect.mapError((error) => new ListenerError({ message: error.message }))),
        active: Effect.sync(server.active),
        waiting: Effect.sync(server.waiting),
        connectionsMax: Effect.sync(server.maxConnections),
        setConnectionsMax: (n) => Effect.sync(() => server.setMaxConnections(n))
      })
    })
  )
}
