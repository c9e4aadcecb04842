/**
 * The byte path's Node primitives: connect options computed once per server, opening an upstream connection (with
 * pen's socket settings: `Dialer`), and the connect deadlines of all dials in one queue with one timer. The
 * per-connection state machine that uses them (dial, fail over, relay) is `proxy/TcpProxy.ts`, the relay itself
 * `Relay.ts`; modules of `net/` are the only ones that import `node:net`.
 */
import { Data, Effect } from "effect"
import * as Dns from "node:dns"
import * as Net from "node:net"
import type { Endpoint } from "../domain/Address.ts"
import { readOptions } from "./Relay.ts"

/** A connected stream socket (client or server side). @category models */
export type Socket = Net.Socket

/** Why a dial failed: the server refused or errored, or did not accept within the timeout. @category models */
export type DialFailure = "error" | "timeout"

/**
 * Error codes that say the balancer itself ran short, not the server: no file descriptor left for the process
 * (`EMFILE`) or the system (`ENFILE`), no kernel buffer (`ENOBUFS`) or memory (`ENOMEM`), no local port to dial from
 * (`EADDRNOTAVAIL`). @category constants
 */
export const OWN_FAILURE_CODES: ReadonlySet<string> = new Set([
  "EMFILE",
  "ENFILE",
  "ENOBUFS",
  "ENOMEM",
  "EADDRNOTAVAIL"
])

/**
 * Whether `error` is a failure of the balancer's own resources ({@link OWN_FAILURE_CODES}): such a failure says
 * nothing about the server being dialed (or the peer being written to), so no server may be blamed for it, and
 * another server would fail the same way. @category guards
 */
export const isOwnFailure = (error: unknown): boolean => {
  const code = typeof error === "object" && error !== null ? (error as { readonly code?: unknown }).code : undefined
  return typeof code === "string" && OWN_FAILURE_CODES.has(code)
}

/** Connect options computed once per server, so dialing allocates nothing else. @category models */
export type DialTarget = Net.NetConnectOpts

/**
 * The options to reach `endpoint` (already resolved to an address): half-open allowed, so each direction closes on its
 * own, and reads going to the relay's shared buffer. @category constructors
 */
export const dialTarget = (endpoint: Endpoint): DialTarget =>
  endpoint._tag === "Unix"
    ? { path: endpoint.path, allowHalfOpen: true, onread: readOptions }
    : { host: endpoint.host, port: endpoint.port, allowHalfOpen: true, onread: readOptions }

/** Starts a connection to `target`. */
export const connect = (target: DialTarget): Socket => Net.connect(target)

/** What pen's settings change in a dial to a server (`keepalive`, `tcp_nodelay`, `source`). @category models */
export interface DialSettings {
  /** SO_KEEPALIVE, with the system's timers (as pen's setsockopt). */
  readonly keepAlive: boolean
  /** TCP_NODELAY from the connect on, instead of from the relay's second write. */
  readonly noDelay: boolean
  /** The local address to bind (an IP address of this host); a server of the other family is dialed without it. */
  readonly localAddress: string | undefined
}

/**
 * Starts connections to servers with {@link DialSettings}. With none set, a dial uses the server's own options as
 * they are, and costs nothing more; with some, each server's options are derived once, on its first dial, and kept
 * until the settings change, so that a dial still allocates no options of its own. A setting applies to the
 * sockets dialed from then on. @category models
 */
export class Dialer {
  /** The options derived from each server's for the settings in force; undefined while none is set. */
  private derived: WeakMap<DialTarget, DialTarget> | undefined
  private settings: DialSettings = { keepAlive: false, noDelay: false, localAddress: undefined }

  /** The settings for the dials from now on. */
  set(settings: DialSettings): void {
    this.settings = settings
    const none = !settings.keepAlive && !settings.noDelay && settings.localAddress === undefined
    this.derived = none ? undefined : new WeakMap()
  }

  /** Starts a connection to `target` (options made by {@link dialTarget}), with the settings in force. */
  connect(target: DialTarget): Socket {
    const derived = this.derived
    if (derived === undefined) return Net.connect(target)
    let options = derived.get(target)
    if (options === undefined) derived.set(target, options = derive(target, this.settings))
    return Net.connect(options)
  }
}

/** `target` with `settings` (a Unix socket takes none of them: it has neither keepalives, Nagle nor addresses). */
const derive = (target: DialTarget, settings: DialSettings): DialTarget => {
  if (!("host" in target) || target.host === undefined) return target
  const family = Net.isIP(target.host)
  const local = settings.localAddress
  return {
    ...target,
    ...(settings.keepAlive ? { keepAlive: true } : {}),
    ...(settings.noDelay ? { noDelay: true } : {}),
    // pen's bind fails for a server of the other family, and it connects from the system's choice: so does nib.
    ...(local !== undefined && Net.isIP(local) === family ? { localAddress: local } : {})
  }
}

/** `source ADDRESS` could not be set: the name does not resolve, or the address is not this host's. @category errors */
export class SourceError extends Data.TaggedError("SourceError")<{
  readonly address: string
  readonly cause: unknown
}> {
  /** pen's reply, without a line end as pen's. */
  override get message(): string {
    return `unable to set source address to '${this.address}'`
  }
}

/**
 * The IP address `text` names, for `source`: an IP address, or a host name resolved now (its first address, as pen's
 * getaddrinfo), checked by binding a socket to it, which the system refuses for an address that is not this host's.
 * (pen takes any address and, when its bind fails, dials from the system's choice without a word.)
 */
export const localAddress = (text: string): Effect.Effect<string, SourceError> =>
  Effect.gen(function*() {
    const address = Net.isIP(text) !== 0 ? text : yield* Effect.tryPromise({
      try: () => Dns.promises.lookup(text).then((found) => found.address),
      catch: (cause) => new SourceError({ address: text, cause })
    })
    yield* Effect.callback<void, SourceError>((resume) => {
      const probe = Net.createServer()
      probe.once("error", (cause) => resume(Effect.fail(new SourceError({ address: text, cause }))))
      probe.listen({ host: address, port: 0, exclusive: true }, () => probe.close(() => resume(Effect.void)))
    })
    return address
  })

/** Something waiting for a connect: told when its deadline passes, unless it has settled by then. */
export interface Dialing {
  /** Called at the deadline for `socket`; the dialer ignores it if `socket` is no longer its pending dial. */
  readonly connectTimedOut: (socket: Socket) => void
}

/**
 * Connect deadlines for every dial in one FIFO with one timer, instead of a timer per connection: all dials share the
 * same timeout, so deadlines come in order. A dial that settles clears its entry (`settle`), so the queue does not
 * keep a finished connection's session and sockets alive until its deadline (under a stream of short connections
 * that doubled the balancer's memory); when the timer fires, the empty entries at the head are dropped with the
 * expired ones, so it next fires for the oldest dial still pending. Deadlines are on the monotonic
 * clock that timers use, like the timers themselves.
 */
export class DeadlineQueue {
  private readonly dialers: Array<Dialing | undefined> = []
  private readonly sockets: Array<Socket | undefined> = []
  private readonly deadlines: Array<number> = []
  private head = 0
  /** The ticket of the entry at index 0: tickets keep counting when consumed entries are dropped. */
  private base = 0
  private timer: ReturnType<typeof setTimeout> | undefined

  /** The timeout of dials added from now on; a dial already queued keeps its deadline. */
  constructor(public timeoutMillis: number) {}

  /** Starts the clock for `socket`, dialed by `dialer`; returns the ticket that `settle` takes. */
  add(dialer: Dialing, socket: Socket): number {
    this.dialers.push(dialer)
    this.sockets.push(socket)
    this.deadlines.push(performance.now() + this.timeoutMillis)
    if (this.timer === undefined) this.arm()
    return this.base + this.dialers.length - 1
  }

  /** The dial of `ticket` connected or failed: its entry lets go of the dialer and the socket. Idempotent. */
  settle(ticket: number): void {
    const i = ticket - this.base
    if (i >= this.head && i < this.dialers.length) {
      this.dialers[i] = undefined
      this.sockets[i] = undefined
    }
  }

  /** Stops the timer (the listener is closing). */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }

  private arm(): void {
    const delay = Math.max(0, this.deadlines[this.head]! - performance.now())
    this.timer = setTimeout(this.expire, delay)
  }

  private readonly expire = (): void => {
    this.timer = undefined
    const now = performance.now()
    const { deadlines, dialers, sockets } = this
    // A dialer told of its timeout may fail over and dial again: add() then pushes (and may arm the timer) while
    // this loop runs, so the loop re-reads the length and the timer is armed at most once. Settled entries at the
    // head go too, whatever their deadline: the timer is then armed for the oldest dial still pending, not for every
    // dial that connected long ago (under a stream of short connections that was one wake-up per connection).
    while (this.head < deadlines.length && (deadlines[this.head]! <= now || dialers[this.head] === undefined)) {
      const i = this.head++
      const socket = sockets[i]
      const dialer = dialers[i]
      dialers[i] = undefined
      sockets[i] = undefined
      // A settled entry is empty; a destroyed socket is no longer connecting either.
      if (socket !== undefined && dialer !== undefined && socket.connecting) dialer.connectTimedOut(socket)
    }
    if (this.head === deadlines.length) {
      this.base += this.head
      this.head = 0
      dialers.length = 0
      sockets.length = 0
      deadlines.length = 0
      return
    }
    if (this.head > 4096 && this.head * 2 > deadlines.length) {
      dialers.splice(0, this.head)
      sockets.splice(0, this.head)
      deadlines.splice(0, this.head)
      this.base += this.head
      this.head = 0
    }
    if (this.timer === undefined) this.arm()
  }
}

/**
 * Closes a socket at once: a FIN, or a reset if bytes it received were never read (the kernel's rule for close, the
 * same as pen's). Idempotent.
 */
export const destroy = (socket: Socket): void => {
  if (!socket.destroyed) socket.destroy()
}
