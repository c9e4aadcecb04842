/**
 * UDP mode's listener (`-U`): a bound datagram socket whose traffic is split into sessions, one per client
 * address:port, as TCP's is into connections. A datagram from an address:port with no session opens one and is handed
 * to the handler (one fiber per session, in `run`'s scope); later ones go straight to the session's receiver. Replies
 * leave from the socket the session arrived on, so the client sees them come from the address it sent to; after a
 * `rebind` the old socket lives on for its sessions, and a client that sends to both has a session on each.
 *
 * Sessions end when their handler ends them, when they have been idle (no datagram either way) for the idle timeout,
 * or, when `maxSessions` are live and a new client arrives, the least recently active one makes room (pen's HALFDEAD
 * recycling, in order of activity). The per-datagram path is plain code: a map lookup and a call. Node hands every
 * datagram over in a Buffer of its own (dgram has no `onread`), which nib passes on without copying.
 *
 * Upstream sockets are connected (`dial`), so that an ICMP port-unreachable from a server surfaces as an
 * `ECONNREFUSED` error on that session's socket.
 */
import { Context, Data, Effect, Exit, Fiber, Scope } from "effect"
import * as Dgram from "node:dgram"
import * as Dns from "node:dns"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Address from "../domain/Address.ts"
import { now as boardNow, type SessionBoard } from "../shared/SessionBoard.ts"
import { IdleWaiters } from "./IdleWaiters.ts"

/** Why the listener could not be opened. @category errors */
export class UdpServerError extends Data.TaggedError("UdpServerError")<{
  readonly address: string
  readonly cause: unknown
}> {
  override get message(): string {
    return `can't bind local address ${this.address}: ${this.cause instanceof Error ? this.cause.message : this.cause}`
  }
}

/** A datagram socket. @category models */
export type Datagram = Dgram.Socket

/** What a session's handler attaches to its peer: where the client's datagrams go, and how to end it. @category models */
export interface Receiver {
  /** A datagram from the client (the session's activity time has been updated). */
  readonly fromPeer: (datagram: Buffer) => void
  /** Ends the session now (idle, evicted, listener closing); the handler then calls `peer.end()`. */
  readonly abort: () => void
}

/** Datagrams kept for a session whose handler has not attached yet; more are dropped, as the network may. */
const EARLY_MAX = 64

/** One listen socket (the current one, or one replaced by `rebind` that lives on for its sessions) and its sessions. */
class Home {
  /** The sessions that came to this socket: client address, then port, to peer. */
  readonly table = new Map<string, Map<number, Peer>>()
  sessions = 0
  closing = false
  constructor(readonly socket: Datagram) {}
}

/** One client address:port: a session. @category models */
export class Peer {
  /** The monotonic time of the last datagram either way (`touch`). */
  lastActive = performance.now()
  /** Set by the handler; until then datagrams wait in `early`. */
  private receiver: Receiver | undefined
  private early: Array<Buffer> | undefined = []
  /** Whether the session is over (removed from the table). */
  ended = false
  /** Its place on the workers' session board (`--workers`), -1 without one. */
  place = -1

  constructor(
    private readonly server: Demux,
    readonly home: Home,
    readonly address: string,
    readonly port: number
  ) {}

  /** Sends `datagram` to the client, from the listen socket it came to. */
  reply(datagram: Buffer): void {
    this.active()
    this.home.socket.send(datagram, this.port, this.address)
  }

  /** Marks the session active now, here and on the workers' board. */
  private active(): void {
    const now = (this.lastActive = performance.now())
    if (this.place >= 0) this.server.board!.touch(this.place, performance.timeOrigin + now)
  }

  /** The descriptor of the listen socket the session came to (listings only). */
  fd(): number {
    return fdOf(this.home.socket)
  }

  /** Marks activity (a reply from the server that was not relayed through `reply`). */
  touch(): void {
    this.active()
  }

  /** The handler takes over: datagrams that arrived before it are delivered now, in order. */
  attach(receiver: Receiver): void {
    const early = this.early
    this.receiver = receiver
    this.early = undefined
    if (early !== undefined) { for (const datagram of early) if (!this.ended) receiver.fromPeer(datagram) }
  }

  /** Ends the session: it leaves the table, and the next datagram from this address:port opens a new one. */
  end(): void {
    if (this.ended) return
    this.ended = true
    this.receiver = undefined
    this.early = undefined
    this.server.remove(this)
  }

  /** @internal */
  deliver(datagram: Buffer): void {
    this.active()
    const receiver = this.receiver
    if (receiver !== undefined) receiver.fromPeer(datagram)
    else if (this.early !== undefined && this.early.length < EARLY_MAX) this.early.push(datagram)
  }

  /** @internal Ends the session from outside (idle, evicted, closing). */
  abort(): void {
    const receiver = this.receiver
    if (receiver !== undefined) receiver.abort()
    else this.end()
  }
}

/** The session tables of every listen socket still open, and their count. */
class Demux {
  readonly homes = new Set<Home>()
  count = 0
  /** With workers: the sessions by their place on the board. */
  readonly byPlace = new Map<number, Peer>()
  constructor(private readonly onRemove: (peer: Peer) => void, readonly board: SessionBoard | undefined) {}

  get(home: Home, address: string, port: number): Peer | undefined {
    return home.table.get(address)?.get(port)
  }

  add(peer: Peer): void {
    const table = peer.home.table
    let byPort = table.get(peer.address)
    if (byPort === undefined) table.set(peer.address, byPort = new Map())
    byPort.set(peer.port, peer)
    peer.home.sessions++
    this.count++
    if (this.board !== undefined) {
      peer.place = this.board.take(boardNow())
      if (peer.place >= 0) this.byPlace.set(peer.place, peer)
    }
  }

  remove(peer: Peer): void {
    const table = peer.home.table
    const byPort = table.get(peer.address)
    if (byPort?.get(peer.port) !== peer) return
    byPort.delete(peer.port)
    if (byPort.size === 0) table.delete(peer.address)
    peer.home.sessions--
    this.count--
    if (peer.place >= 0) {
      this.byPlace.delete(peer.place)
      this.board!.release(peer.place)
    }
    this.onRemove(peer)
  }

  /**
   * Makes room for one more session under `max`: the least recently active session goes, this thread's or (with
   * workers) another worker's, which the board asks to end it.
   */
  makeRoom(max: number): void {
    const board = this.board
    if (board === undefined) {
      while (this.count >= max) {
        const oldest = this.oldest()
        if (oldest === undefined) break
        end(oldest)
      }
      return
    }
    for (let over = board.live() - max + 1; over > 0; over--) {
      const victim = board.evictOldest()
      if (victim === undefined) break
      if (victim.mine) {
        const peer = this.byPlace.get(victim.place)
        if (peer === undefined) board.release(victim.place)
        else end(peer)
      }
    }
  }

  /** Ends the sessions another worker asked this one to end (to make room for its new client). */
  endAsked(): void {
    for (const place of this.board?.asked() ?? []) {
      const peer = this.byPlace.get(place)
      if (peer === undefined) this.board!.release(place)
      else end(peer)
    }
  }

  /** Every live peer (a copy: aborting one changes the tables). */
  all(): Array<Peer> {
    const out: Array<Peer> = []
    for (const home of this.homes) {
      for (const byPort of home.table.values()) for (const peer of byPort.values()) out.push(peer)
    }
    return out
  }

  /** The least recently active peer. */
  oldest(): Peer | undefined {
    let oldest: Peer | undefined
    for (const home of this.homes) {
      for (const byPort of home.table.values()) {
        for (const peer of byPort.values()) {
          if (oldest === undefined || peer.lastActive < oldest.lastActive) oldest = peer
        }
      }
    }
    return oldest
  }
}

/** Ends `peer`'s session from outside (evicted). */
const end = (peer: Peer): void => {
  peer.abort()
  if (!peer.ended) peer.end()
}

/** What to bind, and the session limits. @category models */
export interface Options {
  readonly endpoint: Address.TcpEndpoint
  /** Live sessions at which the least recently active one makes room for a new one (`-x`). */
  readonly maxSessions: number
  /** SO_REUSEPORT: worker threads each bind the address, and the kernel spreads clients among them. */
  readonly reusePort?: boolean | undefined
  /** With workers: the board on which `maxSessions` bounds every worker's sessions together. */
  readonly board?: SessionBoard | undefined
  /** Seconds without a datagram either way after which a session ends (0: never). */
  readonly idleSeconds: number
  /**
   * Bound sockets inherited from the nib this one replaces (an upgrade), served instead of binding `endpoint` (which
   * names their address): none is read until {@link UdpServer.adopt}, so that until then datagrams wait in the kernel.
   */
  readonly descriptors?: ReadonlyArray<number> | undefined
}

/** A bound UDP listener. @category models */
export interface UdpServer {
  /** The bound address, with the real port when 0 was asked for (it changes with `rebind`). */
  readonly address: () => Address.Endpoint
  /** Listens on `endpoint` instead; live sessions keep their socket until they end. */
  readonly rebind: (endpoint: Address.Endpoint) => Effect.Effect<Address.Endpoint, UdpServerError>
  /** Live sessions. */
  readonly active: () => number
  readonly maxSessions: () => number
  /** Lowering it ends the least recently active sessions above the new limit. */
  readonly setMaxSessions: (n: number) => void
  readonly idleSeconds: () => number
  readonly setIdleSeconds: (seconds: number) => void
  /**
   * Takes no new session any more, for a graceful stop: a datagram from a new client address:port is dropped. Live
   * sessions go on, their replies leaving from the listen socket, which closes when the last one ends. Once; `rebind`
   * must not follow.
   */
  readonly drain: () => void
  /** Completes once the listener has drained and no session is live any more. */
  readonly idle: Effect.Effect<void>
  /** The listen socket's descriptor (-1 if unknown), for pen's connection listing. */
  readonly fd: () => number
  /** Starts reading the inherited sockets (`descriptors`); nothing to do for a listener that bound its address. */
  readonly adopt: Effect.Effect<void, UdpServerError>
  /** The descriptors of the sockets that take new sessions (to hand them to the nib that replaces this one). */
  readonly descriptors: () => ReadonlyArray<number>
  /**
   * The listen sockets were handed over (an upgrade): stops reading them, so that every datagram goes to the nib that
   * took them over. Live sessions still send their replies from them, until they end (`drain` follows).
   */
  readonly handOver: () => void
  /** Serves every session, one fiber each, until interrupted; interruption ends every session. */
  readonly run: <R>(handler: (peer: Peer) => Effect.Effect<void, never, R>) => Effect.Effect<never, never, R>
}

const ignore = () => {}

const socketType = (host: string): Dgram.SocketType => Net.isIPv6(host) ? "udp6" : "udp4"

/**
 * dgram's address lookup: an IP literal (every client address is one) is answered at once, where dgram's default
 * goes through `dns.lookup` and a tick for each reply sent; a name goes to DNS as before.
 */
const lookup = (
  address: string,
  family: number,
  callback: (error: Error | null, address: string, family: number) => void
): void => {
  const ip = Net.isIP(address)
  if (ip === 0) Dns.lookup(address, family, callback)
  else callback(null, address, ip)
}

/** The descriptor of a datagram socket, read from Node's private handle (listings only); -1 if not found. */
export const fdOf = (socket: Datagram | undefined): number => {
  if (socket === undefined) return -1
  for (const symbol of Object.getOwnPropertySymbols(socket)) {
    const handle = (socket as unknown as Record<symbol, { handle?: { fd?: number } } | undefined>)[symbol]?.handle
    if (typeof handle?.fd === "number") return handle.fd
  }
  return -1
}

/**
 * Stops reading a datagram socket without closing it: dgram has no pause, so its private handle's `recvStop` is
 * called (Node's own `close` calls it first); without such a handle, nothing is done and the socket is read on.
 */
const stopReceiving = (socket: Datagram): void => {
  for (const symbol of Object.getOwnPropertySymbols(socket)) {
    const handle = (socket as unknown as Record<symbol, { handle?: { recvStop?: () => void } } | undefined>)[symbol]
      ?.handle
    if (typeof handle?.recvStop === "function") return void handle.recvStop()
  }
}

/** Closes an inherited descriptor that will not be read. */
const closeDescriptor = (fd: number): void => {
  try {
    Fs.closeSync(fd)
  } catch {
    // already closed
  }
}

/** The tick of the idle sweep: a quarter of the timeout, between 50 ms and 1 s. */
const sweepMillis = (idleSeconds: number) => Math.min(1000, Math.max(50, (idleSeconds * 1000) / 4))

/** Closes a listen socket (once its last session has ended, for a replaced one). */
const closeHome = (h: Home, demux: Demux) => {
  demux.homes.delete(h)
  h.closing = true
  try {
    h.socket.close()
  } catch {
    // already closed
  }
}

const boundAddress = (h: Home) => {
  const bound = h.socket.address()
  return Address.tcp(bound.address, bound.port)
}

/** Binds `endpoint`; the socket, and every session, end when the scope closes. */
export const make = (options: Options): Effect.Effect<UdpServer, UdpServerError, Scope.Scope> =>
  Effect.gen(function*() {
    let maxSessions = options.maxSessions
    let idleSeconds = options.idleSeconds
    let dispatch: ((peer: Peer) => void) | undefined
    /** Sessions opened before `run` started (datagrams that came before the handler was attached). */
    let waiting: Array<Peer> | undefined = []
    // A graceful stop: no new session; `idle` waits for the last one to end.
    let draining = false
    const idleWaiters = new IdleWaiters(() => demux.count === 0)
    const demux: Demux = new Demux((peer) => {
      // A socket that takes no new session (replaced, or drained) closes with its last session.
      if (peer.home.closing && peer.home.sessions === 0) closeHome(peer.home, demux)
      if (draining) idleWaiters.check()
    }, options.board)
    let closed = false
    // Another worker that needs room may ask this one to end a session: it is woken, without a message.
    options.board?.watch(() => demux.endAsked(), () => closed)

    const onMessage = (h: Home) => (datagram: Buffer, rinfo: Dgram.RemoteInfo) => {
      let peer = demux.get(h, rinfo.address, rinfo.port)
      if (peer === undefined) {
        const run = dispatch
        if (h.closing || (run === undefined && waiting === undefined)) return
        demux.makeRoom(maxSessions)
        peer = new Peer(demux, h, rinfo.address, rinfo.port)
        demux.add(peer)
        peer.deliver(datagram)
        if (run !== undefined) run(peer)
        else waiting!.push(peer)
        return
      }
      peer.deliver(datagram)
    }

    /** A socket bound to `endpoint`, or the inherited socket `fd`, its datagrams read from now on. */
    const listen = (endpoint: Address.Endpoint, fd?: number) =>
      Effect.callback<Home, UdpServerError>((resume) => {
        if (endpoint._tag === "Unix") {
          resume(
            Effect.fail(new UdpServerError({ address: endpoint.path, cause: "UDP mode needs a host:port address" }))
          )
          return
        }
        const socket = Dgram.createSocket({
          type: socketType(endpoint.host),
          lookup: lookup as Dgram.SocketOptions["lookup"],
          reusePort: options.reusePort === true
        })
        const h = new Home(socket)
        const onError = (error: Error) => {
          socket.close()
          resume(Effect.fail(new UdpServerError({ address: Address.format(endpoint), cause: error })))
        }
        socket.once("error", onError)
        const onBound = () => {
          socket.off("error", onError)
          // Errors on the listen socket concern one reply (a send that failed); the listener goes on.
          socket.on("error", ignore)
          socket.on("message", onMessage(h))
          demux.homes.add(h)
          resume(Effect.succeed(h))
        }
        if (fd !== undefined) socket.bind({ fd }, onBound)
        else socket.bind(endpoint.port, endpoint.host, onBound)
      })

    const inherited = options.descriptors ?? []
    // Inherited sockets are read from `adopt` on; until then there is no home, and the address is the one given.
    let home: Home | undefined = inherited.length > 0 ? undefined : yield* listen(options.endpoint)
    let address = home === undefined ? options.endpoint : boundAddress(home)
    let opened = inherited.length === 0
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        dispatch = undefined
        waiting = undefined
        closed = true
        for (const peer of demux.all()) peer.abort()
        // (A Set may lose members while it is iterated.)
        for (const h of demux.homes) closeHome(h, demux)
        // Nothing is left open: whoever waits for the drain to end is told.
        draining = true
        idleWaiters.wakeAll()
      })
    )

    const adopt = Effect.suspend(() => {
      if (opened) return Effect.void
      opened = true
      return Effect.forEach(inherited, (fd) =>
        Effect.map(listen(options.endpoint, fd), (h) => {
          if (closed) return closeHome(h, demux)
          // The first is the current home; one more (the replaced nib had more threads) serves its own clients.
          if (home === undefined) {
            home = h
            address = boundAddress(h)
          }
        }), { discard: true })
    })

    const rebind = (endpoint: Address.Endpoint) =>
      Effect.suspend(() => {
        // Before `adopt`: the same address again keeps the inherited sockets; another one is bound instead.
        if (!opened && Address.format(endpoint) === Address.format(address)) return Effect.succeed(address)
        return Effect.map(listen(endpoint), (next) => {
          if (!opened) {
            opened = true
            for (const fd of inherited) closeDescriptor(fd)
          }
          const previous = home
          home = next
          address = boundAddress(next)
          // The old socket takes no new sessions; it closes when its last session ends.
          if (previous !== undefined) {
            previous.closing = true
            if (previous.sessions === 0) closeHome(previous, demux)
          }
          return address
        })
      })

    const sweep = () => {
      if (idleSeconds <= 0) return
      const limit = performance.now() - idleSeconds * 1000
      for (const peer of demux.all()) if (peer.lastActive <= limit) peer.abort()
    }

    const run = <R>(handler: (peer: Peer) => Effect.Effect<void, never, R>) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const context = Context.omit(Scope.Scope)(yield* Effect.context<R>()) as Context.Context<R>
        const track = Fiber.runIn(scope)
        const fork = Effect.runForkWith(context)
        let timer: ReturnType<typeof setInterval> | undefined
        const arm = () => {
          if (timer !== undefined) clearInterval(timer)
          timer = undefined
          // 0 (never): no sweep at all.
          if (idleSeconds <= 0) return
          timer = setInterval(sweep, sweepMillis(idleSeconds))
          timer.unref()
        }
        rearm = arm
        arm()
        dispatch = (peer) => {
          const fiber = fork(handler(peer))
          // However the handler ends, its peer leaves the table.
          fiber.addObserver(() => peer.end())
          track(fiber)
        }
        const early = waiting ?? []
        waiting = undefined
        for (const peer of early) if (!peer.ended) dispatch(peer)
        return yield* Effect.never.pipe(
          Effect.onInterrupt(() =>
            Effect.sync(() => {
              dispatch = undefined
              rearm = undefined
              if (timer !== undefined) clearInterval(timer)
            })
          ),
          Effect.ensuring(Scope.close(scope, Exit.void))
        )
      })
    let rearm: (() => void) | undefined

    return {
      address: () => address,
      rebind,
      active: () => demux.count,
      maxSessions: () => maxSessions,
      setMaxSessions: (n) => {
        maxSessions = n
        // As many as are over the new limit go, the least recently active first.
        demux.makeRoom(maxSessions + 1)
      },
      idleSeconds: () => idleSeconds,
      setIdleSeconds: (seconds) => {
        idleSeconds = seconds
        rearm?.()
      },
      fd: () => fdOf(home?.socket),
      adopt,
      descriptors: () => [...demux.homes].filter((h) => !h.closing).map((h) => fdOf(h.socket)),
      drain: () => {
        if (draining) return
        draining = true
        for (const h of demux.homes) {
          if (h.closing) continue
          h.closing = true
          if (h.sessions === 0) closeHome(h, demux)
        }
        idleWaiters.check()
      },
      handOver: () => {
        for (const h of demux.homes) stopReceiving(h.socket)
      },
      idle: idleWaiters.wait(() => draining),
      run
    }
  })

/**
 * A datagram socket for `endpoint` (an IP address), connecting: datagrams may be sent once its `connect` event has
 * fired. Creating it can throw (out of descriptors): the caller decides whose failure that is.
 */
export const dial = (endpoint: Address.TcpEndpoint): Datagram => {
  const socket = Dgram.createSocket({ type: socketType(endpoint.host) })
  socket.connect(endpoint.port, endpoint.host)
  return socket
}

/** Closes a datagram socket; idempotent. */
export const close = (socket: Datagram): void => {
  try {
    socket.close()
  } catch {
    // already closed
  }
}
