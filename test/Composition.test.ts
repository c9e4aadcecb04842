/**
 * nib as a library: its layer graph (the public entry's `Layers.makeApp`) inside another Effect program, next to a
 * service of the program's own, over real sockets on 127.0.0.1.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Logger, Option, Scope } from "effect"
import * as Net from "node:net"
import { Address, Config, Layers, Listener, ServerPool, ServerSpec, StatsReporter } from "../src/index.ts"

/** An identity backend: says its name on a line, then echoes. Counts the connections it got. */
const backend = (name: string) =>
  Effect.acquireRelease(
    Effect.callback<
      { readonly server: Net.Server; readonly sockets: Set<Net.Socket>; readonly connections: () => number }
    >(
      (resume) => {
        let connections = 0
        const sockets = new Set<Net.Socket>()
        const server = Net.createServer((socket) => {
          connections++
          sockets.add(socket)
          socket.once("close", () => sockets.delete(socket))
          socket.on("error", () => {})
          socket.write(`${name}\n`)
          socket.pipe(socket)
        })
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, sockets, connections: () => connections })))
      }
    ),
    ({ server, sockets }) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        for (const socket of sockets) socket.destroy()
      })
  ).pipe(
    Effect.map(({ connections, server }) => ({ port: (server.address() as Net.AddressInfo).port, connections }))
  )

const spec = (port: number) => ServerSpec.make(Address.tcp("127.0.0.1", port))

const policy = { roundrobin: false, hash: false, weight: false, prio: false, stubborn: false }

/** An open client connection and the first line it read. */
interface Open {
  readonly socket: Net.Socket
  readonly line: string
  /** Succeeds once the socket is closed (at once if it already is). */
  readonly closed: Effect.Effect<void>
}

const open = (port: number) =>
  Effect.callback<Open>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    let isClosed = false
    const waiters: Array<() => void> = []
    socket.on("error", () => {})
    socket.once("close", () => {
      isClosed = true
      waiters.splice(0).forEach((f) => f())
    })
    const closed = Effect.callback<void>((done) => {
      if (isClosed) return done(Effect.void)
      waiters.push(() => done(Effect.void))
    })
    socket.once("data", (data) => resume(Effect.succeed({ socket, line: data.toString().split("\n")[0]!, closed })))
    socket.once("close", () => resume(Effect.die(new Error("closed before the first line"))))
  })

/** Whether a new connection to `port` is accepted or refused (the error code). */
const connectOutcome = (port: number) =>
  Effect.callback<string>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed("connected"))
    })
    socket.once("error", (error: NodeJS.ErrnoException) => resume(Effect.succeed(error.code ?? error.message)))
  })

/** The outer program's own service: it asks nib's listener who answers. */
class Frontdoor extends Context.Service<Frontdoor, {
  readonly port: number
  /** Opens a connection through nib and says which backend answered. */
  readonly whoAnswers: Effect.Effect<string>
}>()("test/Composition/Frontdoor") {
  static readonly layer = Layer.effect(
    Frontdoor,
    Effect.gen(function*() {
      const listener = yield* Listener.Listener
      assert.strictEqual(listener.address._tag, "Tcp")
      const port = (listener.address as Address.TcpEndpoint).port
      return Frontdoor.of({
        port,
        whoAnswers: Effect.map(open(port), (c) => {
          c.socket.destroy()
          return c.line
        })
      })
    })
  )
}

/** nib with the given pool, configured (LbConfig) with `configured` as its servers, and the program's service. */
const program = (pool: ReadonlyArray<number>, configured: ReadonlyArray<number>) =>
  Frontdoor.layer.pipe(
    Layer.provideMerge(Layers.makeApp(ServerPool.ServerPool.layerTest({ servers: pool.map(spec), policy }))),
    Layer.provide(
      Config.LbConfig.layer({ listen: Address.tcp("127.0.0.1", 0), servers: configured.map(spec) })
    ),
    Layer.provide(Logger.layer([]))
  )

describe("Composition", () => {
  it.live("nib runs inside another program's layer graph, on the pool given to makeApp", () =>
    Effect.gen(function*() {
      const a = yield* backend("a")
      const b = yield* backend("b")
      const configured = yield* backend("configured")
      yield* Effect.gen(function*() {
        const door = yield* Frontdoor
        const listener = yield* Listener.Listener
        assert.notStrictEqual(door.port, 0)
        assert.strictEqual((listener.address as Address.TcpEndpoint).port, door.port)

        // A new client goes roundrobin from server 1 of the pool (b), then stays there (sticky).
        assert.strictEqual(yield* door.whoAnswers, "b")
        assert.strictEqual(yield* door.whoAnswers, "b")

        // The swapped pool is the one in use: LbConfig's server never saw a connection.
        assert.strictEqual(configured.connections(), 0)
        assert.strictEqual(b.connections(), 2)
        assert.strictEqual(a.connections(), 0)
        const pool = yield* (yield* ServerPool.ServerPool).snapshot
        assert.deepStrictEqual(pool.servers.map((s) => s.address), [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`])
        // The pool the program reaches is the very instance the proxy used (one build of the layer).
        assert.strictEqual(pool.current, 1)
        const stats = yield* (yield* StatsReporter.StatsReporter).snapshot
        assert.strictEqual(stats.accepted, 2)
      }).pipe(Effect.provide(program([a.port, b.port], [configured.port])))
    }).pipe(Effect.scoped))

  it.live("the pool given to makeApp wins even when LbConfig's servers could not be resolved", () =>
    Effect.gen(function*() {
      const a = yield* backend("a")
      yield* Effect.gen(function*() {
        assert.strictEqual(yield* (yield* Frontdoor).whoAnswers, "a")
      }).pipe(
        Effect.provide(
          Frontdoor.layer.pipe(
            Layer.provideMerge(Layers.makeApp(ServerPool.ServerPool.layerTest({ servers: [spec(a.port)], policy }))),
            Layer.provide(
              Config.LbConfig.layer({
                listen: Address.tcp("127.0.0.1", 0),
                servers: [{ ...spec(80), endpoint: Address.tcp("nonexistent.invalid", 80) }]
              })
            ),
            Layer.provide(Logger.layer([]))
          )
        )
      )
    }).pipe(Effect.scoped))

  it.live("closing the outer scope closes nib's listener and its connections", () =>
    Effect.gen(function*() {
      const a = yield* backend("a")
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(program([a.port], [a.port]), scope)
      const door = Context.get(context, Frontdoor)
      assert.strictEqual(yield* connectOutcome(door.port), "connected")
      const live = yield* open(door.port)
      assert.strictEqual(live.line, "a")

      yield* Scope.close(scope, Exit.void)

      // The relayed connection was ended with the scope...
      const ended = yield* live.closed.pipe(Effect.timeoutOption("5 seconds"))
      assert.isTrue(Option.isSome(ended), "the relayed connection is still open")
      assert.isTrue(live.socket.destroyed)
      // ...and nothing listens on nib's port any more.
      assert.strictEqual(yield* connectOutcome(door.port), "ECONNREFUSED")
    }))
})
