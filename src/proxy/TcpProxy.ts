/**
 * The per-connection handler: choose a server as pen does, dial it with the connect timeout, fail over on refusal or
 * timeout, then relay bytes (`net/Relay.ts`) until both directions are closed, or until the connection has moved no
 * byte for `idle_timeout` seconds (`IdleSweep.ts`). See LIFECYCLE.md.
 *
 * One `Effect.callback` per connection owns both sockets: its fiber is the connection's scope, and interrupting it
 * (shutdown) destroys both. Everything inside is plain JavaScript on the services' `*Unsafe` members, with no Effect
 * on the data path; bench/README.md has what a connection costs against a hand-written Node proxy.
 */
import { Clock, Context, Effect, Layer } from "effect"
import type { TLSSocket } from "node:tls"
import { LbConfig } from "../Config.ts"
import type { Backend } from "../domain/Backend.ts"
import * as HttpRewrite from "../domain/HttpRewrite.ts"
import * as ProxyProtocol from "../domain/ProxyProtocol.ts"
import * as Selection from "../domain/Selection.ts"
import * as SocketOptions from "../domain/SocketOptions.ts"
import * as TlsSettings from "../domain/TlsSettings.ts"
import type { BufferPool } from "../net/BufferPool.ts"
import { Relay, type Tap } from "../net/Relay.ts"
import * as Socket from "../net/Socket.ts"
import * as Tls from "../net/Tls.ts"
import type { Acls } from "../services/Acls.ts"
import type { ClientTable } from "../services/ClientTable.ts"
import { type ClientRef, UNIX_CLIENT } from "../services/ClientTable.ts"
import type { HealthChecker } from "../services/HealthChecker.ts"
import { RelayBuffers } from "../services/RelayBuffers.ts"
import type { RequestLog } from "../services/RequestLog.ts"
import { ABUSE_SERVER, addressText, type ServerPool } from "../services/ServerPool.ts"
import type { StatsReporter } from "../services/StatsReporter.ts"
import { Verbosity } from "../services/Verbosity.ts"
import * as Admission from "../shared/Admission.ts"
import { Broadcast } from "../shared/Broadcast.ts"
import { Counters } from "../shared/CounterMemory.ts"
import { SharedState } from "../shared/SharedState.ts"
import * as Common from "./Common.ts"
import * as Failover from "./Failover.ts"
import * as Idlers from "./Idlers.ts"
import { IdleSweep } from "./IdleSweep.ts"
import type { ConnectionInfo, Slotted } from "./Slots.ts"

/** The TCP proxy service: what the Listener runs for each accepted connection. @category services */
export class TcpProxy extends Context.Service<TcpProxy, {
  /** Serves one client connection until both sides are closed; interruption closes both. */
  readonly handle: (client: Socket.Socket) => Effect.Effect<void>
  /** Seconds to wait for a server to accept (`-t`, the `timeout` command); a change applies to later dials. */
  readonly connectTimeoutSeconds: Effect.Effect<number>
  readonly setConnectTimeoutSeconds: (seconds: number) => Effect.Effect<void>
  /**
   * -E: reads the certificate and key again (SIGHUP), for the connections accepted from then on; live ones keep
   * theirs. A failure keeps the old ones. Nothing to do without -E.
   */
  readonly reloadTls: Effect.Effect<void, Tls.TlsError>
  /** -L, -Z and the `ssl_*` commands' settings. */
  readonly tlsTuning: Effect.Effect<TlsSettings.Tuning>
  /**
   * Changes them: with -E, the clients that connect from then on get a context built with them; a setting that
   * cannot be used fails and changes nothing. Without -E they are checked and kept (pen keeps them too).
   */
  readonly setTlsTuning: (tuning: TlsSettings.Tuning) => Effect.Effect<void, Tls.TlsError>
  /**
   * pen's `idle_timeout` (`--idle-timeout`): seconds an established connection may move no byte either way before
   * both its sides are closed; 0: never.
   */
  readonly idleTimeoutSeconds: Effect.Effect<number>
  /** Sets it for this thread's connections, live ones included (the Listener tells the worker threads). */
  readonly setIdleTimeoutSeconds: (seconds: number) => Effect.Effect<void>
  /** -H, the `http` command: whether connections that start relaying from now on get X-Forwarded-For. */
  readonly http: Effect.Effect<boolean>
  readonly setHttp: (on: boolean) => Effect.Effect<void>
  /**
   * pen's `pending_max`: the connects to servers in progress (every thread's), and the limit beyond which new clients
   * wait. The listener takes a client only with a place among them (`Admission.Dials.reserve`), which the connection
   * passes on to its dial, or gives back.
   */
  readonly dials: Admission.Dials
  readonly pendingMax: Effect.Effect<number>
  /** Sets `pending_max` (below 1 is 1, as in pen); a higher limit lets waiting clients in at once. */
  readonly setPendingMax: (n: number) => Effect.Effect<void>
  /** pen's `idlers`: the idle server connections open now (every thread's), and how many are wanted. */
  readonly idlers: Effect.Effect<{ readonly open: number; readonly wanted: number }>
  /** Keeps `n` idle server connections open (spread over the threads that serve); 0 closes them. */
  readonly setIdlers: (n: number) => Effect.Effect<void>
  /** pen's socket settings: `keepalive`, `tcp_nodelay`, `tcp_fastclose`, `source` (its address resolved). */
  readonly sockets: Effect.Effect<SocketOptions.SocketOptions>
  /**
   * Changes them: `keepalive`, `tcp_nodelay` and `source` reach the sockets dialed (and for `tcp_nodelay` accepted)
   * from then on, `tcp_fastclose` the next close of every connection, live ones too (as pen's).
   */
  readonly setSockets: (options: SocketOptions.SocketOptions) => Effect.Effect<void>
  /** The live connections, by slot number (pen's connection table). */
  readonly connections: Effect.Effect<ReadonlyArray<ConnectionInfo>>
  /** Closes connection `slot` (pen's `close N`); false when no connection has that slot. */
  readonly close: (slot: number) => Effect.Effect<boolean>
}>()("nib/proxy/TcpProxy") {
  static readonly layer: Layer.Layer<
    TcpProxy,
    Tls.TlsError,
    LbConfig | ServerPool | ClientTable | HealthChecker | StatsReporter | RequestLog | Acls | RelayBuffers | SharedState
  > = Layer.effect(
    TcpProxy,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const deadlines = new Socket.DeadlineQueue(config.connectTimeoutSeconds * 1000)
      const tlsFiles: Tls.Files | undefined = config.tlsCert === undefined ? undefined : {
        cert: config.tlsCert,
        key: config.tlsKey,
        caFile: config.tlsCaFile,
        caDir: config.tlsCaDir,
        requireClientCert: config.tlsRequireClientCert
      }
      // -L, -Z and the ssl_* commands (which may come before -E's context exists: -F, -O).
      let tuning: TlsSettings.Tuning = {
        ...TlsSettings.defaults,
        protocol: config.tlsProtocol,
        compat: config.tlsCompat
      }
      yield* Effect.addFinalizer(() => Effect.sync(() => deadlines.close()))
      const fork = Effect.runForkWith(yield* Effect.context<never>())
      const warnUnsafe = Common.rateLimited(
        fork,
        (message) => Effect.logWarning(message).pipe(Effect.annotateLogs({ service: "TcpProxy" }))
      )
      const verbosity = yield* Verbosity
      const debugUnsafe = (message: string) => {
        // (built and logged only at -d: the logger would drop it anyway)
        if (verbosity.debug >= 1) fork(Effect.logDebug(message).pipe(Effect.annotateLogs({ service: "TcpProxy" })))
      }
      const services = yield* Common.services<Session>()
      // pen's idle_timeout: one sweep for this thread's connections (in UDP mode the Listener's sessions have theirs).
      const sweep = new IdleSweep(
        () => services.slots.each(closeIfIdle),
        config.udp ? 0 : config.idleTimeoutSeconds ?? 0
      )
      yield* Effect.addFinalizer(() => Effect.sync(() => sweep.close()))
      const tlsContext = (with_: TlsSettings.Tuning) =>
        tlsFiles === undefined
          ? Effect.as(Tls.check(with_), undefined)
          : Tls.context({ ...tlsFiles, ...with_ }, warnUnsafe)
      const shared = yield* SharedState
      const admission = shared.memory.admission
      const dials = new Admission.Dials(
        Admission.PENDING_MAX,
        admission === undefined ? undefined : new Int32Array(admission),
        shared.worker
      )
      const counters = new Counters(shared.memory.counters, shared.worker)
      const clock = yield* Clock.Clock
      const idlers = new Idlers.Idlers({
        pool: services.pool,
        health: services.health,
        deadlines,
        now: () => clock.currentTimeMillisUnsafe(),
        report: (open) => counters.set("idlers", open),
        worker: shared.worker
      })
      // (after the deadlines' finalizer, so it runs first)
      yield* Effect.addFinalizer(() => Effect.sync(() => idlers.close()))
      let idlersWanted = 0
      const env: Env = {
        ...services,
        buffers: (yield* RelayBuffers).pool,
        deadlines,
        dials,
        idlers,
        unixListener: config.listen._tag === "Unix",
        acceptProxy: config.acceptProxy,
        http: { on: config.http },
        tls: yield* tlsContext(tuning),
        warnUnsafe,
        debugUnsafe,
        sweep,
        sockets: SocketOptions.defaults,
        dialer: new Socket.Dialer()
      }
      yield* Common.closeOnDown(env.slots, "connections")
      // Worker threads apply each change too (a no-op without workers).
      const broadcast = yield* Broadcast
      return TcpProxy.of({
        connectTimeoutSeconds: Effect.sync(() => deadlines.timeoutMillis / 1000),
        setConnectTimeoutSeconds: (seconds) =>
          Effect.andThen(
            Effect.sync(() => {
              deadlines.timeoutMillis = seconds * 1000
            }),
            broadcast.send({ _tag: "Timeout", seconds })
          ),
        reloadTls: tlsFiles === undefined ? Effect.void : Effect.map(tlsContext(tuning), (context) => {
          env.tls = context
        }).pipe(Effect.andThen(broadcast.send({ _tag: "TlsReload" }))),
        tlsTuning: Effect.sync(() => tuning),
        setTlsTuning: (next) =>
          Effect.map(tlsContext(next), (context) => {
            tuning = next
            env.tls = context
          }).pipe(Effect.andThen(broadcast.send({ _tag: "Tls", tuning: next }))),
        dials,
        pendingMax: Effect.sync(() => dials.max),
        setPendingMax: (n) =>
          Effect.andThen(Effect.sync(() => dials.setMax(n)), broadcast.send({ _tag: "PendingMax", n })),
        idlers: Effect.sync(() => ({ open: counters.get("idlers"), wanted: idlersWanted })),
        setIdlers: (n) =>
          Effect.andThen(
            Effect.sync(() => {
              idlersWanted = n
              idlers.setWanted(Idlers.share(n, shared.memory.workers, shared.worker))
            }),
            broadcast.send({ _tag: "Idlers", n })
          ),
        idleTimeoutSeconds: Effect.sync(() => sweep.timeoutSeconds),
        setIdleTimeoutSeconds: (seconds) => Effect.sync(() => sweep.set(seconds)),
        sockets: Effect.sync(() => env.sockets),
        setSockets: (options) =>
          Effect.andThen(
            Effect.sync(() => {
              env.sockets = options
              env.dialer.set({
                keepAlive: options.keepalive,
                noDelay: options.nodelay,
                localAddress: options.source
              })
            }),
            broadcast.send({ _tag: "Sockets", options })
          ),
        http: Effect.sync(() => env.http.on),
        setHttp: (on) =>
          Effect.andThen(
            Effect.sync(() => {
              env.http.on = on
            }),
            broadcast.send({ _tag: "Http", on })
          ),
        ...Common.table(env.slots),
        handle: (client) => Common.run((resume) => new Session(env, client, resume))
      })
    })
  )
}

interface Env extends Common.Services<Session> {
  readonly buffers: BufferPool
  readonly deadlines: Socket.DeadlineQueue
  /** `pending_max`: the connects in progress. */
  readonly dials: Admission.Dials
  /** `idlers`: this thread's idle server connections. */
  readonly idlers: Idlers.Idlers
  readonly unixListener: boolean
  /** --accept-proxy: each client starts with a PROXY header. */
  readonly acceptProxy: boolean
  /** -H and the `http` command (read when a connection starts relaying). */
  readonly http: { on: boolean }
  /** -E: the clients speak TLS, terminated here with this context (SIGHUP replaces it). */
  tls: Tls.Context | undefined
  /** Logs a warning, at most one line a second (the ones in between are counted into the next). */
  readonly warnUnsafe: (message: string) => void
  /** Logs a debug line, at -d. */
  readonly debugUnsafe: (message: string) => void
  /** pen's idle_timeout: the clock relays stamp, and the timeout. */
  readonly sweep: IdleSweep
  /** `keepalive`, `tcp_nodelay`, `tcp_fastclose`, `source`: read as a connection starts, dials, and at each EOF. */
  sockets: SocketOptions.SocketOptions
  /** Dials servers with them. */
  readonly dialer: Socket.Dialer
}

export type { ConnectionInfo }

const fdOf = (socket: Socket.Socket | undefined): number => {
  const handle = (socket as { _handle?: { fd?: number } } | undefined)?._handle
  return typeof handle?.fd === "number" ? handle.fd : -1
}

const DONE = Effect.void

const ignore = () => {}

// The session a socket belongs to. Listeners are shared module-level functions that find their session through the
// socket (`this`), so a connection allocates no closures for them.
const kSession = Symbol("nib/Session")
type Owned = Socket.Socket & { [kSession]: Session }
const sessionOf = (socket: Socket.Socket) => (socket as Owned)[kSession]

function onClientHeaderData(this: Socket.Socket, chunk: Buffer) {
  sessionOf(this).headerData(chunk)
}
function onProxyHeaderTimeout(session: Session) {
  session.proxyHeaderTimedOut()
}
function onClientSecure(this: Socket.Socket) {
  sessionOf(this).secured()
}
function onHandshakeTimeout(session: Session) {
  session.handshakeTimedOut()
}
function onClientGreetingEnd(this: Socket.Socket) {
  sessionOf(this).leftWhileGreeting()
}

/** How long a client has to finish its TLS handshake (`-E`). @category constants */
export const TLS_HANDSHAKE_MILLIS = 10_000

/** How long an --accept-proxy client has to send its PROXY header. @category constants */
export const PROXY_HEADER_MILLIS = 5_000

function onClientError(this: Socket.Socket) {
  sessionOf(this).clientError()
}
function onClientClose(this: Socket.Socket) {
  sessionOf(this).clientClosed()
}
function onUpstreamConnect(this: Socket.Socket) {
  sessionOf(this).upstreamConnected()
}
function onUpstreamError(this: Socket.Socket, error: Error) {
  sessionOf(this).upstreamError(error)
}
function onUpstreamClose(this: Socket.Socket) {
  sessionOf(this).closed()
}
function closeIfIdle(session: Session) {
  session.closeIfIdle()
}

/**
 * One client connection: choosing and dialing (`upstream` set, not connected), then relaying, then finished. Each
 * socket gets its listeners once (the client's at start, the server's when dialed) and they act on the state, so the
 * common path adds no listener it later removes, allocates no closure and starts no timer of its own. Every end goes
 * through `finish`, once.
 */
class Session implements Socket.Dialing, Tap, Slotted, Failover.Failing {
  /** The client's entry in the sticky table. */
  private visitor = 0 as ClientRef
  /** The client's pinned server before the attempt in hand (`Failover.firstServer`). */
  pinned = Selection.NO_SERVER
  initial = Selection.NO_SERVER
  private server = Selection.NO_SERVER
  private upstream: Socket.Socket | undefined
  private relay: Relay | undefined
  /** The server being relayed to, whose byte counters move with every chunk. */
  private backend: Backend | undefined
  /** Whether each chunk from the client is logged (`-l` open when relaying started). */
  private logging = false
  private relaying = false
  private finished = false
  /** Sockets not yet closed once relaying; the connection is over at 0. */
  private open = 2
  /** This connection's slot in the connection table (-1 once released). */
  private slot = -1
  private peer = ""
  /** The client's address (the PROXY header's source with --accept-proxy); undefined for a Unix socket client. */
  private peerAddress: string | undefined
  /** --accept-proxy: the bytes read so far while the header is incomplete, then what followed it (sent first). */
  private early: Buffer | undefined
  /** The deadline of the TLS handshake (-E) or of the PROXY header (--accept-proxy), one at a time. */
  private greetingTimer: ReturnType<typeof setTimeout> | undefined
  /** -E: the TLS context this client was accepted with (SIGHUP may replace the service's since). */
  private tlsContext: Tls.Context | undefined
  /** --accept-proxy: the header the client sent, passed on as it is with --send-proxy. */
  private accepted: ProxyProtocol.Header | undefined
  /** The DeadlineQueue ticket of the pending dial. */
  private ticket = 0
  /**
   * Whether this connection holds a place among the connects in progress (`pending_max`): the listener took the
   * client with one; it is passed on to the dial, kept through failover, and given back once a server is connected or
   * the connection ends. A client greeted first (-E, --accept-proxy) gives it back meanwhile, and its dial takes one.
   */
  private dialing = true
  /** Servers this connection has tried, made on its first failover only. */
  tried: Set<number> | undefined

  constructor(
    private readonly env: Env,
    private client: Socket.Socket,
    private readonly resume: (effect: Effect.Effect<void>) => void
  ) {}

  start(): void {
    const { env } = this
    env.stats.addUnsafe("accepted", 1)
    env.stats.addUnsafe("active", 1)
    this.slot = env.slots.take(this)
    // tcp_nodelay: on from the first byte (off, the relay turns Nagle off from a socket's second write).
    if (env.sockets.nodelay) this.client.setNoDelay(true)
    this.own(this.client)
    // A TCP client with no peer address reset its connection while it waited (-x): nothing to serve.
    if (this.client.remoteAddress === undefined && !env.unixListener) return this.finish()
    // --accept-proxy: the client is another balancer, whose PROXY header (sent in the clear, before any TLS) says who
    // the real client is.
    if (env.acceptProxy) {
      this.endDialing()
      return this.readProxyHeader()
    }
    this.startTls()
  }

  /** The session's listeners on `client`, its client socket from now on. */
  private own(client: Socket.Socket): void {
    this.client = client
    ;(client as Owned)[kSession] = this
    // "close" and "connect" fire once per socket: `on` spares the wrapper closure `once` allocates.
    client.on("error", onClientError)
    client.on("close", onClientClose)
  }

  /**
   * -E: the client speaks TLS; the session works on the decrypted socket from then on, and the server is chosen once
   * the handshake is done. A client that never finishes it is closed.
   */
  private startTls(): void {
    const tls = (this.tlsContext = this.env.tls)
    if (tls === undefined) return this.greeted()
    // A TLS handshake is not a connect in progress: a slow client does not hold new ones back.
    this.endDialing()
    const raw = this.client
    raw.off("error", onClientError)
    raw.off("close", onClientClose)
    const client = Tls.accept(raw, tls)
    this.own(client)
    client.on("secure", onClientSecure)
    // The client's FIN ends the handshake: it can never finish (a reset is an `error`, which closes the socket).
    client.on("end", onClientGreetingEnd)
    this.greetingTimer = setTimeout(onHandshakeTimeout, TLS_HANDSHAKE_MILLIS, this)
  }

  /** The client may be served: its PROXY header read and its TLS handshake done, as asked. */
  private greeted(): void {
    const header = this.accepted
    if (header?._tag === "Proxied") return this.choose(header.source.address, header.source.port)
    this.choose(this.client.remoteAddress, this.client.remotePort ?? 0)
  }

  secured(): void {
    const client = this.client as TLSSocket
    // `secure` comes again after each renegotiation (TLS 1.2): the server is chosen once. From now on the relay sees
    // the client's FIN (Node emits `secure` as the handshake completes, before an `end` that follows it).
    client.off("secure", onClientSecure)
    client.off("end", onClientGreetingEnd)
    if (this.finished) return
    this.stopGreetingTimer()
    Tls.established(client)
    // -R: a client whose certificate did not verify against the -G/-A CA is closed.
    if (!Tls.clientAuthorized(client, this.tlsContext!)) {
      return this.refuseGreeting("-R", "no valid client certificate")
    }
    this.greeted()
  }

  /**
   * The client sent its FIN (or its reset, seen as an EOF when it comes after bytes nib answered) before its greeting
   * was done, TLS handshake or PROXY header: there is nothing to serve, and its socket is closed now, not left half
   * closed until the greeting's deadline. As a client that resets: not a refusal, nothing logged.
   */
  leftWhileGreeting(): void {
    if (this.finished || this.peer !== "") return
    this.abort()
  }

  handshakeTimedOut(): void {
    this.greetingTimer = undefined
    if (this.finished || this.peer !== "") return
    this.refuseGreeting("-E", `no TLS handshake within ${TLS_HANDSHAKE_MILLIS / 1000} s`)
  }

  /**
   * Chooses the server for client `peer` (undefined for a Unix socket client): client_acl, the sticky table, pen's
   * selection, then the dial.
   */
  private choose(peer: string | undefined, port: number): void {
    const { env } = this
    const ip = (this.peer = peer ?? UNIX_CLIENT)
    this.peerAddress = peer
    // client_acl: a denied client goes to the -B abuse server, with no failover; without one it is closed unread.
    // (pen, by a bug, sends it to the emergency server when there is no abuse server.)
    if (!env.acls.admitsClientUnsafe(peer)) {
      if (env.pool.abuse !== undefined) {
        this.visitor = env.clients.visitUnsafe(ip)
        this.initial = ABUSE_SERVER
        if (this.tryServer(ABUSE_SERVER)) return
      }
      env.stats.addUnsafe("refused", 1)
      return this.finish()
    }
    this.visitor = env.clients.visitUnsafe(ip)
    const first = Failover.firstServer(env.pool, env.clients, this.visitor, ip, port, this)
    this.initial = first
    if (!this.tryServer(first)) this.failover(first)
  }

  /**
   * --accept-proxy: reads the client until its PROXY header (v1 or v2) is whole, at most {@link PROXY_HEADER_MILLIS}.
   * A `Proxied` header's source is the client from then on (sticky table, ACLs, logs); a `Local` one keeps the real
   * peer. A missing, late or malformed header closes the client. Bytes after the header go to the server first.
   */
  private readProxyHeader(): void {
    const { client } = this
    client.on("data", onClientHeaderData)
    client.on("end", onClientGreetingEnd)
    this.greetingTimer = setTimeout(onProxyHeaderTimeout, PROXY_HEADER_MILLIS, this)
    client.resume()
  }

  headerData(chunk: Buffer): void {
    const bytes = this.early === undefined ? chunk : Buffer.concat([this.early, chunk])
    const decoded = ProxyProtocol.decode(bytes)
    if (decoded._tag === "NeedMore") {
      this.early = bytes
      return
    }
    this.endHeaderRead()
    if (decoded._tag === "Invalid") {
      return this.refuseGreeting("--accept-proxy", `a malformed PROXY header (${decoded.reason})`)
    }
    this.accepted = decoded.header
    const rest = decoded.length < bytes.length ? bytes.subarray(decoded.length) : undefined
    if (this.env.tls === undefined) {
      this.early = rest
      return this.greeted()
    }
    // -E: what followed the header is the start of the handshake, which the TLS socket reads first.
    if (rest !== undefined) this.client.unshift(rest)
    this.startTls()
  }

  proxyHeaderTimedOut(): void {
    this.greetingTimer = undefined
    if (this.finished || this.peer !== "") return
    this.endHeaderRead()
    this.refuseGreeting("--accept-proxy", `no PROXY header within ${PROXY_HEADER_MILLIS / 1000} s`)
  }

  private endHeaderRead(): void {
    this.stopGreetingTimer()
    this.client.off("data", onClientHeaderData)
    this.client.off("end", onClientGreetingEnd)
    this.client.pause()
  }

  private stopGreetingTimer(): void {
    if (this.greetingTimer !== undefined) clearTimeout(this.greetingTimer)
    this.greetingTimer = undefined
  }

  /** A client that did not greet as `flag` asks (TLS handshake, client certificate, PROXY header): refused, closed. */
  private refuseGreeting(flag: string, why: string): void {
    this.env.stats.addUnsafe("refused", 1)
    this.env.warnUnsafe(`${flag}: closed ${this.client.remoteAddress ?? "a client"}: ${why}`)
    this.finish()
  }

  /** pen's try_server: admission (blacklist, limits), then an asynchronous connect with the `-t` deadline. */
  tryServer(index: number): boolean {
    const { env } = this
    // Admission (health, drain, blacklist, limits, slow start), then `server N acl A` (explain asks the same).
    if (Failover.refusalUnsafe(env.pool, env.acls, index, this.pinned, this.peerAddress) !== undefined) return false
    // The limits, taken atomically: another thread may have taken the server's last connection since admission.
    if (!env.pool.tryAcquireUnsafe(index, this.pinned === index)) return false
    this.server = index
    // The client is pinned as soon as the attempt starts, as pen does; a failover re-pins it. The emergency and abuse
    // servers never pin.
    this.pinned = index >= 0 ? index : Selection.NO_SERVER
    env.clients.pinUnsafe(this.visitor, this.pinned)
    // `idlers`: a connection to this server is open already, and waiting for a client.
    const idle = env.idlers.take(index)
    if (idle !== undefined) {
      const upstream = (this.upstream = idle.socket)
      ;(upstream as Owned)[kSession] = this
      upstream.on("error", onUpstreamError)
      this.relayTo(upstream, idle.early)
      return true
    }
    if (!this.dialing) {
      this.dialing = true
      env.dials.add()
    }
    const upstream = (this.upstream = env.dialer.connect(env.pool.dialTarget(index)))
    ;(upstream as Owned)[kSession] = this
    upstream.on("error", onUpstreamError)
    upstream.on("connect", onUpstreamConnect)
    this.ticket = env.deadlines.add(this, upstream)
    return true
  }

  /** Fails over (`Failover.scan`); a connection no server takes is refused. */
  private failover(failed: number): void {
    if (Failover.scan(this.env.pool, this, failed)) return this.env.stats.addUnsafe("failovers", 1)
    this.env.stats.addUnsafe("refused", 1)
    this.finish()
  }

  upstreamConnected(): void {
    this.env.deadlines.settle(this.ticket)
    this.relayTo(this.upstream!, undefined)
  }

  /**
   * The server is connected (dialed, or an idle connection taken, with what its server sent meanwhile in
   * `fromServer`): relaying starts.
   */
  private relayTo(upstream: Socket.Socket, fromServer: ReadonlyArray<Buffer> | undefined): void {
    const { client } = this
    this.relaying = true
    this.endDialing()
    upstream.on("close", onUpstreamClose)
    const backend = (this.backend = this.env.pool.backendUnsafe(this.server)!)
    // --send-proxy / `server N proxy`: the PROXY protocol header goes first, before any byte of the client's.
    if (backend.proxy !== "none") {
      const header = this.accepted ?? ProxyProtocol.fromSocket(client)
      upstream.write(backend.proxy === "v1" ? ProxyProtocol.encodeV1(header) : ProxyProtocol.encodeV2(header))
    }
    // pen's -l: a line per chunk from the client. Only connections that start relaying while a log is open pay it.
    this.logging = this.env.log.enabledUnsafe()
    // Each side's EOF becomes a FIN to the other, while the other direction keeps flowing.
    // -H: each request head gets X-Forwarded-Proto and X-Forwarded-For (pen's rewrite_request, done right).
    const rewriter = this.env.http.on
      ? HttpRewrite.make({ proto: this.tlsContext === undefined ? "http" : "https", clientIp: this.peer })
      : undefined
    const relay = (this.relay = new Relay(client, upstream, this.env.buffers, this, rewriter, this.env.sweep.clock))
    // --accept-proxy: what the client sent after its header, and while the server was dialed, goes first (through
    // the relay, so that -H rewrites it and it is counted and logged as any other chunk).
    relay.start(this.env.acceptProxy ? this.takeEarly() : undefined, fromServer)
  }

  /** Gives back this connection's place among the connects in progress, if it holds one. */
  private endDialing(): void {
    if (!this.dialing) return
    this.dialing = false
    this.env.dials.release()
  }

  private takeEarly(): Array<Buffer> | undefined {
    const chunks = this.early === undefined ? [] : [this.early]
    this.early = undefined
    for (let chunk: Buffer | null; (chunk = this.client.read() as Buffer | null) !== null;) chunks.push(chunk)
    return chunks.length === 0 ? undefined : chunks
  }

  /**
   * Bytes from the client, counted as they move (pen's copy_up): `servers`, `recent` and the page show them live. With
   * -H the count is what the server gets after the rewrite, as pen's; the log shows the client's bytes.
   */
  fromClient(chunk: Buffer, length: number, sent: number): void {
    this.env.pool.countUnsafe(this.backend!.index, sent, 0)
    this.env.clients.countUnsafe(this.visitor, 0, sent)
    if (this.logging) this.env.log.chunkUnsafe(this.peer, addressText(this.backend!), chunk.subarray(0, length))
  }

  /** -H: a bad request head was answered with `status` and a close. */
  httpError(status: 400 | 431, reason: string): void {
    this.env.warnUnsafe(`-H: ${this.peer}: answered ${status} and closed: ${reason}`)
  }

  /** tcp_fastclose: whether this side's close ends the whole connection (read at the close: a change reaches all). */
  closesAll(fromClient: boolean): boolean {
    return SocketOptions.closesAll(this.env.sockets.fastclose, fromClient)
  }

  /** Bytes from the server (pen's copy_down). */
  fromServer(length: number): void {
    this.env.pool.countUnsafe(this.backend!.index, 0, length)
    this.env.clients.countUnsafe(this.visitor, length, 0)
  }

  info(slot: number): ConnectionInfo {
    return {
      slot,
      state: this.relaying ? 2 : 1,
      downfd: fdOf(this.client),
      upfd: fdOf(this.upstream),
      pendingDown: this.client.writableLength,
      pendingUp: this.upstream?.writableLength ?? 0,
      client: this.peer,
      server: this.server
    }
  }

  /** The `-t` deadline of a dial passed (DeadlineQueue); stale calls (an earlier dial, a settled one) are ignored. */
  connectTimedOut(socket: Socket.Socket): void {
    if (socket === this.upstream && !this.relaying && !this.finished) this.dialFailed("timeout", undefined)
  }

  upstreamError(error: Error): void {
    if (!this.relaying) return this.dialFailed("error", error)
    // A reset or error from the server resets the client; both sockets then close.
    if (!this.client.destroyed) this.client.resetAndDestroy()
  }

  private dialFailed(failure: Socket.DialFailure, error: Error | undefined): void {
    const upstream = this.upstream!
    const index = this.server
    this.env.deadlines.settle(this.ticket)
    upstream.off("error", onUpstreamError)
    upstream.off("connect", onUpstreamConnect)
    upstream.on("error", ignore)
    upstream.destroy()
    this.upstream = undefined
    this.server = Selection.NO_SERVER
    this.env.pool.releaseUnsafe(index)
    // nib ran short itself (descriptors, buffers, memory, local ports): the server is not to blame, and every other
    // server would fail the same way, so the client is closed with no failover.
    if (error !== undefined && Socket.isOwnFailure(error)) {
      this.env.health.ownFailureUnsafe(error)
      return this.finish()
    }
    this.env.health.connectFailedUnsafe(index, failure, error)
    this.failover(index)
  }

  clientError(): void {
    // Before relaying the close that follows does the work; while relaying, the server is reset too.
    const upstream = this.upstream
    if (this.relaying && upstream !== undefined && !upstream.destroyed) upstream.resetAndDestroy()
    // A socket's own errors destroy it; a TLS socket's (a refused renegotiation, a broken record) only say so.
    if (!this.client.destroyed) this.client.destroy()
  }

  clientClosed(): void {
    if (this.relaying) this.closed()
    else this.abort()
  }

  /**
   * The idle sweep's visit (pen's idle_timeout): a relaying connection that has moved no byte either way for the
   * timeout is closed on both sides at once, as pen's close() does; nothing is pending on it, so each peer sees a FIN.
   * Like pen, only connections relaying both ways are closed: not those still greeting or dialing (they have limits of
   * their own), nor half-closed ones.
   */
  closeIfIdle(): void {
    const relay = this.relay
    if (relay === undefined || relay.halfClosed) return
    const upstream = this.upstream!
    if (this.client.destroyed || upstream.destroyed || !this.env.sweep.isIdle(relay.lastActive)) return
    this.env.stats.addUnsafe("idleClosed", 1)
    const seconds = this.env.sweep.timeoutSeconds
    this.env.debugUnsafe(
      `connection ${this.slot} idle for ${seconds} seconds, closing (client ${this.peer}, server ${this.server})`
    )
    // The close handlers release the server once both sockets are closed.
    Socket.destroy(this.client)
    Socket.destroy(upstream)
  }

  /** One socket of a relayed connection closed; when both have, the relay's buffers go back and the server is released. */
  closed(): void {
    if (--this.open > 0) return
    this.relay!.dispose()
    this.env.pool.releaseUnsafe(this.server)
    this.server = Selection.NO_SERVER
    this.finish()
  }

  /** Ends the connection now, whatever its state (interruption, shutdown, client gone). Idempotent. */
  abort(): void {
    if (this.finished) return
    if (this.relaying) {
      // The close handlers release the server once both sockets are closed.
      Socket.destroy(this.client)
      Socket.destroy(this.upstream!)
      return
    }
    const upstream = this.upstream
    if (upstream !== undefined) {
      this.env.deadlines.settle(this.ticket)
      upstream.on("error", ignore)
      upstream.destroy()
      this.upstream = undefined
      this.env.pool.releaseUnsafe(this.server)
      this.server = Selection.NO_SERVER
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
    this.stopGreetingTimer()
    this.env.stats.addUnsafe("active", -1)
    if (this.slot >= 0) this.env.slots.release(this.slot)
    this.slot = -1
    Socket.destroy(this.client)
    this.endDialing()
    this.resume(DONE)
  }
}
