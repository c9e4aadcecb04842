/**
 * pen's `idlers N`: connections to servers opened before any client needs them and kept idle, so that a new client
 * whose server has one takes it instead of waiting for a connect. pen 0.34.1 crashes on `idlers N` (reference 6.2);
 * this is what its idlers.c sets out to do, finished. See LIFECYCLE.md, section 7.
 *
 * - **Which server.** Selection is unchanged: a client's server is chosen as it would be without idlers, and the client
 *   takes an idle connection only if one is open to that server (else it dials, as always). The idle connections are
 *   spread over the servers in rotation: each new one goes to the server with the fewest, ties in roundrobin order
 *   (pen's choice, roundrobin), on a cursor of their own, so that the order clients get is not moved by them.
 * - **Not clients.** An idle connection does not count against a server's limits (`max`, `hard`), its `conn` figure,
 *   `-x` or `pending_max`, and has no slot in the connection table: the client that takes it is counted then, as if
 *   it had dialed (the server's limits are checked first, as for any client).
 * - **Out of rotation.** None is opened to a server blacklisted, down by its check, drained or without an address, and
 *   those open to one (or to a server whose address changed) are closed within a second and opened elsewhere.
 * - **Closed by the server.** Each idle connection is read: what its server sends (a banner) is kept, up to
 *   {@link EARLY_MAX} bytes, and goes to the client that takes it before anything else; a connection its server
 *   closes (or resets, or that says more than that) is dropped, and replaced. A dial that fails counts against its
 *   server as a client's does (blacklisted for `-b` seconds).
 * - **How fast.** One a client took is replaced at once (the client would have dialed that server anyway). Others (a
 *   server closed them, they failed, they were never opened) are opened at most N a second per thread, N its share,
 *   so that a server that closes them at once is not dialed in a loop.
 *
 * One per thread. With `--workers`, N is spread over the threads that serve: each thread's clients can take only its
 * own thread's idle connections (a socket belongs to its thread), so thread w keeps N / workers of them, one more for
 * the first N mod workers threads. Nothing here runs on a connection's path when `idlers` is 0: `take` reads a count.
 */
import * as Address from "../domain/Address.ts"
import * as Backend from "../domain/Backend.ts"
import { hold, type Holder } from "../net/Relay.ts"
import * as Socket from "../net/Socket.ts"
import type { HealthChecker } from "../services/HealthChecker.ts"
import type { ServerPool } from "../services/ServerPool.ts"

/** What an idle connection keeps of what its server sends before a client takes it. @category constants */
export const EARLY_MAX = 16 * 1024

/** How often idle connections are checked (servers out of rotation), and their dials' budget refilled. */
export const TICK_MILLIS = 1_000

/** Thread `worker`'s share of `total` idle connections over `workers` threads. @category constructors */
export const share = (total: number, workers: number, worker: number): number =>
  Math.floor(total / workers) + (worker < total % workers ? 1 : 0)

/** An idle connection a client took: its socket, connected, and what its server sent meanwhile. @category models */
export interface Taken {
  readonly socket: Socket.Socket
  readonly early: ReadonlyArray<Buffer> | undefined
}

/** What the idle connections need of the balancer. @category models */
export interface Env {
  readonly pool: ServerPool["Service"]
  readonly health: HealthChecker["Service"]
  /** The `-t` deadlines of the dials (the one queue every dial of the thread uses). */
  readonly deadlines: Socket.DeadlineQueue
  /** The time now (milliseconds), as blacklist deadlines are kept. */
  readonly now: () => number
  /** This thread's idle connections open now (the `idlers` gauge of the shared counters). */
  readonly report: (open: number) => void
  /** This thread's number (0 with one thread): threads start their cursors apart, to spread over the servers. */
  readonly worker: number
}

const kIdler = Symbol("nib/Idler")
type Owned = Socket.Socket & { [kIdler]?: Idler | undefined }
const idlerOf = (socket: Socket.Socket) => (socket as Owned)[kIdler]

function onIdleConnect(this: Socket.Socket) {
  const idler = idlerOf(this)
  idler?.owner.connected(idler)
}
function onIdleError(this: Socket.Socket, error: Error) {
  const idler = idlerOf(this)
  idler?.owner.failed(idler, "error", error)
}
function onIdleGone(this: Socket.Socket) {
  const idler = idlerOf(this)
  idler?.owner.drop(idler)
}
const ignore = () => {}

/** One idle connection: connecting, then connected and waiting for a client. */
class Idler implements Socket.Dialing, Holder {
  connected = false
  gone = false
  /** What the server sent so far, copied out of the relay's shared read buffer. */
  early: Array<Buffer> | undefined
  size = 0
  ticket = 0

  constructor(
    readonly owner: Idlers,
    readonly server: number,
    /** The server's address when dialed: a changed address drops the connection. */
    readonly address: string,
    readonly socket: Socket.Socket
  ) {}

  chunk(chunk: Buffer, length: number): boolean {
    if (this.gone) return false
    this.size += length
    // A server that says this much unasked is not waiting for a client.
    if (this.size > EARLY_MAX) {
      this.owner.drop(this)
      return false
    }
    ;(this.early ??= []).push(Buffer.from(chunk.subarray(0, length)))
    return true
  }

  connectTimedOut(socket: Socket.Socket): void {
    if (socket === this.socket && !this.connected && !this.gone) this.owner.failed(this, "timeout", undefined)
  }
}

/** One thread's idle connections. @category models */
export class Idlers {
  /** This thread's share of `idlers N`. */
  private wanted = 0
  /** Connected idle connections by server, newest last. */
  private readonly idle: Array<Array<Idler> | undefined> = []
  /** Idle connections (connecting or connected) by server. */
  private readonly held: Array<number> = []
  private connecting = 0
  private open = 0
  /** The last server an idle connection went to (their own roundrobin cursor; thread w starts at server w). */
  private cursor: number
  /** Dials left until the next tick, for connections dropped (or never opened). */
  private budget = 0
  /** Connections clients took and not yet replaced: each is replaced at once, outside the budget. */
  private owed = 0
  private timer: ReturnType<typeof setInterval> | undefined
  private soon = false
  private closed = false
  /** The dials in progress. */
  private readonly dialing = new Set<Idler>()

  constructor(private readonly env: Env) {
    this.cursor = env.worker - 1
  }

  /** This thread's idle connections open now. */
  get count(): number {
    return this.open
  }

  /** Sets this thread's share: extra connections are closed, missing ones opened (within the dials' budget). */
  setWanted(n: number): void {
    if (this.closed) return
    this.wanted = Math.max(0, n)
    this.budget = this.wanted
    if (this.wanted > 0 && this.timer === undefined) {
      this.timer = setInterval(this.tick, TICK_MILLIS)
      this.timer.unref()
    }
    this.tick()
  }

  /**
   * An idle connection to server `index`, taken by a client (per-connection path), or undefined when there is none:
   * the client dials then. Its replacement is opened soon after.
   */
  take(index: number): Taken | undefined {
    if (this.open === 0) return undefined
    const list = this.idle[index]
    const idler = list?.pop()
    if (idler === undefined) return undefined
    this.forget(idler)
    const socket = idler.socket
    socket.off("error", onIdleError)
    socket.off("end", onIdleGone)
    socket.off("close", onIdleGone)
    ;(socket as Owned)[kIdler] = undefined
    // A client would have dialed this server anyway: its replacement is not held to the budget.
    if (this.owed < this.wanted) this.owed++
    this.later()
    return { socket, early: idler.early }
  }

  /** Closes every idle connection and stops (the thread's proxy is closing). */
  close(): void {
    this.closed = true
    this.wanted = 0
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    this.trim(0)
  }

  /** A dial connected: the connection waits for a client (or is closed, if no longer wanted). */
  connected(idler: Idler): void {
    if (idler.gone) return
    this.env.deadlines.settle(idler.ticket)
    idler.connected = true
    this.dialing.delete(idler)
    this.connecting--
    ;(this.idle[idler.server] ??= []).push(idler)
    this.open++
    this.env.report(this.open)
    idler.socket.off("connect", onIdleConnect)
    idler.socket.on("end", onIdleGone)
    idler.socket.on("close", onIdleGone)
    if (this.open + this.connecting > this.wanted) this.trim(this.wanted)
  }

  /** A dial failed: its server is blamed as for a client's dial (nib's own shortage blames none). */
  failed(idler: Idler, failure: Socket.DialFailure, error: Error | undefined): void {
    if (idler.gone) return
    if (idler.connected) return this.drop(idler)
    this.drop(idler)
    if (error !== undefined && Socket.isOwnFailure(error)) this.env.health.ownFailureUnsafe(error)
    else this.env.health.connectFailedUnsafe(idler.server, failure, error)
  }

  /** Closes an idle connection (its server closed it, it failed, it is not wanted); it is replaced, in time. */
  drop(idler: Idler): void {
    if (idler.gone) return
    if (idler.connected) {
      const list = this.idle[idler.server]!
      list.splice(list.indexOf(idler), 1)
    }
    this.forget(idler)
    const socket = idler.socket
    socket.off("error", onIdleError)
    socket.on("error", ignore)
    socket.destroy()
    this.later()
  }

  /** Takes `idler` out of the counts (taken or dropped). */
  private forget(idler: Idler): void {
    idler.gone = true
    this.held[idler.server]!--
    if (idler.connected) {
      this.open--
      this.env.report(this.open)
    } else {
      this.connecting--
      this.dialing.delete(idler)
      this.env.deadlines.settle(idler.ticket)
    }
  }

  /** Opens the missing connections at the next turn of the event loop (once, however many are missing). */
  private later(): void {
    if (this.soon || this.closed || this.wanted === 0) return
    this.soon = true
    setImmediate(this.topUpSoon)
  }

  private readonly topUpSoon = (): void => {
    this.soon = false
    this.topUp()
  }

  /** Once a second: the budget refilled, connections to servers out of rotation closed, the missing ones opened. */
  private readonly tick = (): void => {
    if (this.closed) return
    this.budget = this.wanted
    const { pool } = this.env
    const now = this.env.now()
    for (let index = 0; index < this.idle.length; index++) {
      const list = this.idle[index]
      if (list === undefined || list.length === 0) continue
      const b = pool.backends[index]
      const keep = b !== undefined && eligible(b, now)
      // (a copy: dropping takes out of the list)
      for (const idler of list.slice()) {
        if (!keep || Address.format(b.spec.endpoint) !== idler.address) this.drop(idler)
      }
    }
    this.trim(this.wanted)
    this.topUp()
    if (this.wanted === 0 && this.timer !== undefined) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  /** Closes connections beyond `n`: the connected ones, oldest first, then those still connecting. */
  private trim(n: number): void {
    for (const list of this.idle) {
      if (list === undefined) continue
      while (list.length > 0 && this.open + this.connecting > n) this.drop(list[0]!)
    }
    // Dials in progress are closed when they connect (`connected` trims again), or, if not wanted at all, now.
    if (n === 0) { for (const idler of Array.from(this.dialing)) this.drop(idler) }
  }

  /**
   * Dials until `wanted` are open or connecting, to the servers in rotation: one for each connection a client took,
   * then within the budget.
   */
  private topUp(): void {
    while (!this.closed && (this.owed > 0 || this.budget > 0) && this.open + this.connecting < this.wanted) {
      const index = this.pick()
      if (index < 0) return
      if (this.owed > 0) this.owed--
      else this.budget--
      this.dial(index)
    }
    if (this.open + this.connecting >= this.wanted) this.owed = 0
  }

  /**
   * The server the next idle connection goes to: of those in rotation, the one with the fewest, the first after the
   * cursor on a tie (roundrobin); -1 when none is in rotation.
   */
  private pick(): number {
    const backends = this.env.pool.backends
    const n = backends.length
    const now = this.env.now()
    let best = -1
    for (let k = 1; k <= n; k++) {
      const i = (((this.cursor + k) % n) + n) % n
      if (!eligible(backends[i]!, now)) continue
      if (best < 0 || (this.held[i] ?? 0) < (this.held[best] ?? 0)) best = i
    }
    if (best >= 0) this.cursor = best
    return best
  }

  private dial(index: number): void {
    const { pool } = this.env
    const socket = Socket.connect(pool.dialTarget(index))
    const idler = new Idler(this, index, Address.format(pool.backends[index]!.spec.endpoint), socket)
    ;(socket as Owned)[kIdler] = idler
    hold(socket, idler)
    socket.on("error", onIdleError)
    socket.on("connect", onIdleConnect)
    this.dialing.add(idler)
    idler.ticket = this.env.deadlines.add(idler, socket)
    this.held[index] = (this.held[index] ?? 0) + 1
    this.connecting++
  }
}

/** Whether a server may have idle connections: it has an address, and is neither blacklisted, down nor drained. */
const eligible = (b: Backend.Backend, now: number): boolean => b.configured && !Backend.isOutOfRotation(b, now)
