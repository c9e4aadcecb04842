/**
 * The per-connection handler: choose a server as pen does, dial it with the connect timeout, fail over on refusal or
 * timeout, then relay bytes on native streams until both directions are closed. See LIFECYCLE.md.
 *
 * One `Effect.callback` per connection owns both sockets: its fiber is the connection's scope, and interrupting it
 * (shutdown) destroys both. Everything inside is plain JavaScript on the services' `*Unsafe` members, so a connection
 * costs about what a hand-written Node proxy costs.
 */
import { Context, Effect, Layer } from "effect"
import { LbConfig } from "../Config.ts"
import { NO_SERVER } from "../domain/Selection.ts"
import * as Selection from "../domain/Selection.ts"
import type { ClientEntry } from "../domain/StickyTable.ts"
import * as Socket from "../net/Socket.ts"
import { ClientTable, UNIX_CLIENT } from "../services/ClientTable.ts"
import { HealthChecker } from "../services/HealthChecker.ts"
import { EMERGENCY_SERVER, ServerPool } from "../services/ServerPool.ts"
import { StatsReporter } from "../services/StatsReporter.ts"

/** The TCP proxy service: what the Listener runs for each accepted connection. @category services */
export class TcpProxy extends Context.Service<TcpProxy, {
  /** Serves one client connection until both sides are closed; interruption closes both. */
  readonly handle: (client: Socket.Socket) => Effect.Effect<void>
}>()("nib/proxy/TcpProxy") {
  static readonly layer: Layer.Layer<
    TcpProxy,
    never,
    LbConfig | ServerPool | ClientTable | HealthChecker | StatsReporter
  > = Layer.effect(
    TcpProxy,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const env: Env = {
        pool: yield* ServerPool,
        clients: yield* ClientTable,
        health: yield* HealthChecker,
        stats: yield* StatsReporter,
        timeoutMillis: config.connectTimeoutSeconds * 1000,
        unixListener: config.listen._tag === "Unix"
      }
      return TcpProxy.of({
        handle: (client) =>
          Effect.callback<void>((resume) => {
            const session = new Session(env, client, resume)
            session.start()
            return Effect.sync(() => session.abort())
          })
      })
    })
  )
}

interface Env {
  readonly pool: ServerPool["Service"]
  readonly clients: ClientTable["Service"]
  readonly health: HealthChecker["Service"]
  readonly stats: StatsReporter["Service"]
  readonly timeoutMillis: number
  readonly unixListener: boolean
}

const DONE = Effect.void

/**
 * One client connection. States: choosing/dialing (`upstream` set, not yet connected), relaying, closed. Every end
 * goes through `finish`, which runs once.
 */
class Session {
  private entry: ClientEntry | undefined
  private initial = NO_SERVER
  private server = NO_SERVER
  private upstream: Socket.Socket | undefined
  private relaying = false
  private finished = false
  /** Servers this connection has tried, made on its first failover only. */
  private tried: Set<number> | undefined

  constructor(
    private readonly env: Env,
    private readonly client: Socket.Socket,
    private readonly resume: (effect: Effect.Effect<void>) => void
  ) {}

  start(): void {
    const { client, env } = this
    env.stats.addUnsafe("accepted", 1)
    env.stats.addUnsafe("active", 1)
    client.on("error", this.onEarlyClientError)
    client.once("close", this.onEarlyClientClose)
    const peer = client.remoteAddress
    // A TCP client with no peer address reset its connection while it waited (-x): nothing to serve.
    if (peer === undefined && !env.unixListener) return this.finish()
    const ip = peer ?? UNIX_CLIENT
    const entry = (this.entry = env.clients.visitUnsafe(ip))
    const first = env.pool.chooseUnsafe(entry.server, ip, client.remotePort ?? 0)
    this.initial = first
    if (!this.tryServer(first)) this.failover(first)
  }

  /** pen's try_server: admission (blacklist, limits), then an asynchronous connect. */
  private tryServer(index: number): boolean {
    const { env, entry } = this
    if (index === NO_SERVER || !env.pool.admitsUnsafe(index, entry!.server === index)) return false
    env.pool.acquireUnsafe(index)
    this.server = index
    // The client is pinned as soon as the attempt starts, as pen does; a failover re-pins it.
    entry!.server = index === EMERGENCY_SERVER ? NO_SERVER : index
    this.upstream = Socket.dial(env.pool.dialTarget(index), env.timeoutMillis, this.onDial)
    return true
  }

  /**
   * pen's failover_server: the servers after the failed one, up to the first one tried, then the emergency server.
   * Unlike pen, a connection tries each server at most once: with `-b 0` (nothing is ever blacklisted) pen would go
   * round the ring for as long as every server refuses.
   */
  private failover(failed: number): void {
    const { env } = this
    if (!env.pool.policy.stubborn && failed !== EMERGENCY_SERVER) {
      const tried = (this.tried ??= new Set([this.initial]))
      tried.add(failed)
      for (const s of Selection.failoverOrder(failed, this.initial, env.pool.backends.length)) {
        if (!tried.has(s) && this.tryServer(s)) return this.countFailover()
      }
      if (env.pool.emergency !== undefined && this.tryServer(EMERGENCY_SERVER)) return this.countFailover()
    }
    env.stats.addUnsafe("refused", 1)
    this.finish()
  }

  private countFailover(): void {
    this.env.stats.addUnsafe("failovers", 1)
  }

  private readonly onDial = (
    upstream: Socket.Socket | undefined,
    failure: Socket.DialFailure | undefined,
    error: Error | undefined
  ): void => {
    const { env } = this
    const index = this.server
    if (this.finished) {
      if (upstream !== undefined) Socket.destroy(upstream)
      return
    }
    if (upstream === undefined) {
      env.pool.releaseUnsafe(index, 0, 0)
      this.server = NO_SERVER
      this.upstream = undefined
      env.health.connectFailedUnsafe(index, failure!, error)
      return this.failover(index)
    }
    const client = this.client
    client.off("error", this.onEarlyClientError)
    client.off("close", this.onEarlyClientClose)
    this.relaying = true
    Socket.relay(client, upstream, this.onRelayDone)
  }

  private readonly onRelayDone = (totals: Socket.RelayTotals): void => {
    const entry = this.entry!
    entry.bytesFromClient += totals.fromClient
    entry.bytesToClient += totals.fromServer
    this.env.pool.releaseUnsafe(this.server, totals.fromClient, totals.fromServer)
    this.server = NO_SERVER
    this.finish()
  }

  /** The client went away while nib was still choosing or dialing a server. */
  private readonly onEarlyClientClose = (): void => this.abort()
  private readonly onEarlyClientError = (): void => {}

  /** Ends the connection now, whatever its state (interruption, shutdown, client gone). Idempotent. */
  abort(): void {
    if (this.finished) return
    if (this.relaying) {
      // The relay's own close handlers release the server once both sockets are closed.
      Socket.destroy(this.client)
      if (this.upstream !== undefined) Socket.destroy(this.upstream)
      return
    }
    if (this.upstream !== undefined) {
      Socket.destroy(this.upstream)
      this.upstream = undefined
      this.env.pool.releaseUnsafe(this.server, 0, 0)
      this.server = NO_SERVER
    }
    this.finish()
  }

  /**
   * Closes the client (if not closed yet) and ends the fiber. A client no server would take is closed as pen's
   * close_conn does, without reading it: it sees an EOF, or a reset if it had sent bytes nib never read.
   */
  private finish(): void {
    if (this.finished) return
    this.finished = true
    this.env.stats.addUnsafe("active", -1)
    Socket.destroy(this.client)
    this.resume(DONE)
  }
}
