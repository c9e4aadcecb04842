/**
 * UDP mode's per-session handler (`-U`): the first datagram of a client address:port chooses a server exactly as a
 * TCP connection does (sticky table by client IP, `-r`, `-h`, `-W`, prio, limits, the emergency and abuse servers),
 * and the session's later datagrams go to that server through one connected socket of its own. Replies go back to
 * the client from the listen address (`net/UdpServer.ts`).
 *
 * Where pen differs: an ICMP port-unreachable from the server (an `ECONNREFUSED` on the session's connected socket)
 * counts as that server's failure, as a refused TCP connect does (blacklisted for `-b`), and the session fails over,
 * sending the client's datagrams that the server never answered again to the next server; replies are counted; and no per-session socket is
 * bound to the listen port, so `-u` works.
 *
 * Effect owns each session's lifecycle (one `Effect.callback` per session, interrupted when the listener closes);
 * datagrams move in plain code on the services' `*Unsafe` members.
 */
import { Context, Effect, Layer } from "effect"
import type { LbConfig } from "../Config.ts"
import type { Backend } from "../domain/Backend.ts"
import * as Selection from "../domain/Selection.ts"
import * as Socket from "../net/Socket.ts"
import * as UdpServer from "../net/UdpServer.ts"
import type { Acls } from "../services/Acls.ts"
import type { ClientRef, ClientTable } from "../services/ClientTable.ts"
import type { HealthChecker } from "../services/HealthChecker.ts"
import type { RequestLog } from "../services/RequestLog.ts"
import { ABUSE_SERVER, addressText, type ServerPool } from "../services/ServerPool.ts"
import type { StatsReporter } from "../services/StatsReporter.ts"
import type { SharedState } from "../shared/SharedState.ts"
import * as Common from "./Common.ts"
import * as Failover from "./Failover.ts"
import type { ConnectionInfo, Slotted } from "./Slots.ts"

/** The UDP proxy service: what the Listener runs for each UDP session in `-U` mode. @category services */
export class UdpProxy extends Context.Service<UdpProxy, {
  /** Serves one session until it ends (idle, evicted, no server); interruption ends it. */
  readonly handle: (peer: UdpServer.Peer) => Effect.Effect<void>
  /** The live sessions, by slot number (pen's connection table). */
  readonly connections: Effect.Effect<ReadonlyArray<ConnectionInfo>>
  /** Ends session `slot` (pen's `close N`); false when no session has that slot. */
  readonly close: (slot: number) => Effect.Effect<boolean>
}>()("nib/proxy/UdpProxy") {
  static readonly layer: Layer.Layer<
    UdpProxy,
    never,
    LbConfig | ServerPool | ClientTable | HealthChecker | StatsReporter | RequestLog | Acls | SharedState
  > = Layer.effect(
    UdpProxy,
    Effect.gen(function*() {
      const env: Env = yield* Common.services()
      yield* Common.closeOnDown(env.slots, "sessions")
      return UdpProxy.of({
        ...Common.table(env.slots),
        handle: (peer) => Common.run((resume) => new Session(env, peer, resume))
      })
    })
  )
}

type Env = Common.Services

/** ICMP errors a connected datagram socket reports: the server (or the way to it) is down. */
const SERVER_DOWN = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN"])

/** Datagrams held while the session's socket connects; more are dropped, as the network may. */
const PENDING_MAX = 64

/** Datagrams kept, until the server replies, to send again to the next server if this one turns out to be down. */
const UNANSWERED_MAX = 16

const DONE = Effect.void

const kSession = Symbol("nib/UdpSession")
type Owned = UdpServer.Datagram & { [kSession]: Session }
const sessionOf = (socket: UdpServer.Datagram) => (socket as Owned)[kSession]

function onUpstreamConnect(this: UdpServer.Datagram) {
  sessionOf(this).upstreamConnected(this)
}
function onUpstreamMessage(this: UdpServer.Datagram, datagram: Buffer) {
  sessionOf(this).fromServer(this, datagram)
}
function onUpstreamError(this: UdpServer.Datagram, error: Error) {
  sessionOf(this).upstreamError(this, error)
}

/** One client address:port and the server it was given. Every end goes through `finish`, once. */
class Session implements UdpServer.Receiver, Slotted, Failover.Failing {
  /** The client's entry in the sticky table. */
  private visitor = 0 as ClientRef
  /** The client's pinned server before the attempt in hand (`Failover.firstServer`). */
  pinned = Selection.NO_SERVER
  initial = Selection.NO_SERVER
  private server = Selection.NO_SERVER
  private backend: Backend | undefined
  private upstream: UdpServer.Datagram | undefined
  private connected = false
  /** Datagrams waiting for the upstream socket to connect. */
  private pending: Array<Buffer> | undefined
  /**
   * The client's datagrams since the server last replied (the latest {@link UNANSWERED_MAX}): sent again to the next
   * server when this one turns out to be down, so that a DNS query, say, is answered without the client retrying.
   */
  private unanswered: Array<Buffer> | undefined
  private logging = false
  private finished = false
  private slot = -1
  /** Servers this session has tried, made on its first failover only. */
  tried: Set<number> | undefined

  constructor(
    private readonly env: Env,
    private readonly peer: UdpServer.Peer,
    private readonly resume: (effect: Effect.Effect<void>) => void
  ) {}

  start(): void {
    const { env, peer } = this
    env.stats.addUnsafe("accepted", 1)
    env.stats.addUnsafe("active", 1)
    this.slot = env.slots.take(this)
    this.logging = env.log.enabledUnsafe()
    const ip = peer.address
    if (!env.acls.admitsClientUnsafe(ip)) {
      // client_acl: to the -B abuse server, with no failover; without one the datagrams are dropped.
      if (env.pool.abuse !== undefined) {
        this.visitor = env.clients.visitUnsafe(ip)
        this.initial = ABUSE_SERVER
        if (this.tryServer(ABUSE_SERVER)) return this.peer.attach(this)
        if (this.finished) return
      }
      env.stats.addUnsafe("refused", 1)
      return this.finish()
    }
    this.visitor = env.clients.visitUnsafe(ip)
    const first = Failover.firstServer(env.pool, env.clients, this.visitor, ip, peer.port, this)
    this.initial = first
    if (!this.tryServer(first)) this.failover(first)
    if (!this.finished) this.peer.attach(this)
  }

  /** Admission (blacklist, limits, the server's ACL), then a socket connected to the server. */
  tryServer(index: number): boolean {
    const { env } = this
    // A session ended by nib's own failure during a failover scan takes no other server.
    if (this.finished) return false
    // Admission (health, drain, blacklist, limits, slow start), then `server N acl A` (explain asks the same).
    if (Failover.refusalUnsafe(env.pool, env.acls, index, this.pinned, this.peer.address) !== undefined) {
      return false
    }
    const backend = env.pool.backendUnsafe(index)!
    const endpoint = backend.spec.endpoint
    // A Unix stream socket cannot take datagrams (the command line refuses one in -U mode; `server N address` may not).
    if (endpoint._tag !== "Tcp") return false
    // The limits, taken atomically: another thread may have taken the server's last connection since admission.
    if (!env.pool.tryAcquireUnsafe(index, this.pinned === index)) return false
    let upstream: UdpServer.Datagram
    try {
      upstream = UdpServer.dial(endpoint)
    } catch (error) {
      env.pool.releaseUnsafe(index)
      this.env.health.ownFailureUnsafe(error as Error)
      this.finish()
      return false
    }
    this.server = index
    this.backend = backend
    this.pinned = index >= 0 ? index : Selection.NO_SERVER
    env.clients.pinUnsafe(this.visitor, this.pinned)
    this.upstream = upstream
    this.connected = false
    ;(upstream as Owned)[kSession] = this
    upstream.on("error", onUpstreamError)
    upstream.on("message", onUpstreamMessage)
    upstream.on("connect", onUpstreamConnect)
    return true
  }

  /** Fails over (`Failover.scan`); a session no server takes is refused. */
  private failover(failed: number): void {
    if (Failover.scan(this.env.pool, this, failed)) return this.env.stats.addUnsafe("failovers", 1)
    // (a session ended by nib's own failure on the way is not a refusal)
    if (this.finished) return
    this.env.stats.addUnsafe("refused", 1)
    this.finish()
  }

  /** A datagram from the client: to the server, counted (and logged with `-l`) as pen's copy_up does. */
  fromPeer(datagram: Buffer): void {
    if (this.finished) return
    const unanswered = (this.unanswered ??= [])
    if (unanswered.length === UNANSWERED_MAX) unanswered.shift()
    unanswered.push(datagram)
    this.env.pool.countUnsafe(this.backend!.index, datagram.length, 0)
    this.env.clients.countUnsafe(this.visitor, 0, datagram.length)
    if (this.logging) this.env.log.chunkUnsafe(this.peer.address, addressText(this.backend!), datagram)
    this.send(datagram)
  }

  private send(datagram: Buffer): void {
    if (this.connected) this.upstream!.send(datagram)
    else if ((this.pending ??= []).length < PENDING_MAX) this.pending.push(datagram)
  }

  upstreamConnected(socket: UdpServer.Datagram): void {
    if (socket !== this.upstream || this.finished) return
    this.connected = true
    const pending = this.pending
    this.pending = undefined
    if (pending !== undefined) { for (const datagram of pending) socket.send(datagram) }
  }

  /** A reply: counted (pen counts none), then sent to the client from the listen address. */
  fromServer(socket: UdpServer.Datagram, datagram: Buffer): void {
    if (socket !== this.upstream || this.finished) return
    this.env.pool.countUnsafe(this.backend!.index, 0, datagram.length)
    this.env.clients.countUnsafe(this.visitor, datagram.length, 0)
    if (this.unanswered !== undefined && this.unanswered.length > 0) this.unanswered.length = 0
    this.peer.reply(datagram)
  }

  upstreamError(socket: UdpServer.Datagram, error: NodeJS.ErrnoException): void {
    if (socket !== this.upstream || this.finished) return
    const code = error.code ?? ""
    if (SERVER_DOWN.has(code)) return this.serverDown(error)
    // nib's own failure (out of descriptors, buffers, memory or local ports) blames no server: the session ends.
    if (Socket.isOwnFailure(error)) {
      this.env.health.ownFailureUnsafe(error)
      return this.finish()
    }
    // Anything else concerns one datagram (too large, say): it is lost, as the network may lose it.
  }

  /** The server answered with an ICMP error: its failure, as a refused connect is; the session fails over. */
  private serverDown(error: Error): void {
    const index = this.server
    this.dropUpstream()
    this.env.health.connectFailedUnsafe(index, "error", error)
    this.failover(index)
    const unanswered = this.unanswered
    if (!this.finished && unanswered !== undefined) { for (const datagram of unanswered) this.send(datagram) }
  }

  private dropUpstream(): void {
    const upstream = this.upstream
    if (upstream !== undefined) {
      UdpServer.close(upstream)
      this.upstream = undefined
    }
    this.pending = undefined
    this.connected = false
    if (this.server !== Selection.NO_SERVER) {
      this.env.pool.releaseUnsafe(this.server)
      this.server = Selection.NO_SERVER
    }
  }

  info(slot: number): ConnectionInfo {
    return {
      slot,
      state: this.connected ? 2 : 1,
      downfd: this.peer.fd(),
      upfd: UdpServer.fdOf(this.upstream),
      pendingDown: 0,
      pendingUp: 0,
      client: this.peer.address,
      server: this.server
    }
  }

  /** Ends the session now (idle, evicted, `close N`, interruption). Idempotent. */
  abort(): void {
    this.finish()
  }

  private finish(): void {
    if (this.finished) return
    this.finished = true
    this.dropUpstream()
    this.env.stats.addUnsafe("active", -1)
    if (this.slot >= 0) this.env.slots.release(this.slot)
    this.slot = -1
    this.peer.end()
    this.resume(DONE)
  }
}
