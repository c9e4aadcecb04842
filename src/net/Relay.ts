/**
 * Moves bytes between a client and its server, both ways, with no allocation per read that the garbage collector must
 * later find.
 *
 * - **Reads.** Every relayed socket reads into one shared buffer (`net`'s `onread`) of {@link READ_SIZE} bytes. Reads
 *   and their callbacks run one at a time on the event loop, so one buffer serves every socket, and an idle socket
 *   holds none. Servers are dialed with `onread` (see `Socket.dialTarget`). Accepted sockets come from `net.Server`,
 *   which has no such option: `readShared` gives an accepted, not yet reading socket the same two fields and the same
 *   `useUserBuffer` call that Node's own constructor gives a socket made with `onread`. The fields are found by value
 *   on a probe socket, not by name; if they cannot be found (another Node), the socket reads with `data` events and
 *   nothing else changes.
 * - **Writes.** A chunk is copied from the shared buffer into a buffer borrowed from a `BufferPool` and written from
 *   there. Consecutive chunks share a pooled buffer while it has room; it goes back to the pool when its last write
 *   completes. Most writes complete at once (nothing was queued): they take no callback, and their buffer goes back
 *   right away. A memcpy costs less than a fresh 64 KiB read buffer, which is external memory that V8 answers with
 *   full mark-compacts. A chunk larger than a pooled buffer fills several, and they leave together in one `writev`
 *   (`dst` is corked meanwhile).
 * - **No Nagle.** A destination sends each write at once (TCP_NODELAY) from its second write on. With Nagle's
 *   algorithm the kernel holds a write's last, less than full segment while an earlier short segment is
 *   unacknowledged, and a peer that is reading a stream acknowledges late (its delayed ACK, up to 40 ms on Linux): the
 *   end of a burst (a response, a download's last bytes) then waited up to 40 ms, with both peers and the relay idle.
 *   A relay never has more to add to what it writes. A socket's first write cannot be held (nothing of it is
 *   unacknowledged yet), so a connection that writes once each way pays no system call for it.
 * - **Back-pressure.** When a write leaves the destination over its high-water mark, the source stops reading until
 *   the destination drains, so a slow reader holds at most one read's worth of pooled buffers per direction.
 * - **Half-close.** Each side's EOF becomes a FIN to the other after the bytes already queued, and the other
 *   direction keeps flowing. Errors, resets and closing are the owner's (`proxy/TcpProxy.ts`): it calls `dispose`
 *   once both sockets have closed, which gives back whatever is still borrowed.
 * - **Activity.** Each read, and each drain of a stalled direction, stamps its pipe with the tick of an
 *   {@link ActivityClock} (a field write: no clock is read), so that the owner's idle sweep can tell a connection that
 *   has moved no byte for a while (`lastActive`).
 * - **Fast close.** When the tap says an EOF ends the whole connection (pen's `tcp_fastclose`), both sockets close
 *   once the bytes already read from either side are written to the other; what either side sends from then on is
 *   read and dropped, so that its socket closes with nothing unread (a FIN, not a reset). The tap is asked at each
 *   EOF, not per read: off, it costs a call per EOF.
 *
 * A relay allocates its two pipes and their write callbacks once; per write it allocates only the small view that
 * `write` needs (and Node, for a corked batch, the list it hands to `writev`).
 */
import * as Net from "node:net"
import * as HttpRewrite from "../domain/HttpRewrite.ts"
import { BUFFER_SIZE, type BufferPool } from "./BufferPool.ts"

/** Where a relay reports the bytes it moves (live byte counters, pen's `-l` log). @category models */
export interface Tap {
  /**
   * `length` bytes were read from the client; `chunk` holds them from index 0, and only until this returns. `sent` of
   * them go to the server: as many, or with -H, what the rewrite made of them (pen counts that).
   */
  readonly fromClient: (chunk: Buffer, length: number, sent: number) => void
  /** `length` bytes were read from the server. */
  readonly fromServer: (length: number) => void
  /** -H: a request head was refused with `status` (the client got it, and a close). */
  readonly httpError?: (status: 400 | 431, reason: string) => void
  /**
   * The client (`fromClient`) or the server closed its side (EOF): true ends the whole connection (pen's
   * `tcp_fastclose`), false passes the half-close on and lets the other direction go on.
   */
  readonly closesAll: (fromClient: boolean) => boolean
}

/**
 * The most one read takes: four pooled buffers. On one fast stream each read is a system call, a callback into
 * JavaScript and a write (with TCP_NODELAY, a write ends in a short segment of its own); at 64 KiB the relay spent
 * its time on them. Larger reads would hold more pooled buffers in a stalled direction (back-pressure stops reading
 * only after a read) and measured no faster. @category constants
 */
export const READ_SIZE = 4 * BUFFER_SIZE

/**
 * A coarse clock the relay stamps activity with: a count that only the idle sweep advances
 * (`domain/IdleClock.ts`), so a read costs a field write. @category models
 */
export interface ActivityClock {
  tick: number
}

/** The clock of relays whose owner runs no idle sweep: it never advances. */
const STOPPED: ActivityClock = { tick: 0 }

/** The buffer every relayed socket reads into; a chunk is copied out before the next read. */
const SHARED = Buffer.allocUnsafeSlow(READ_SIZE)

/** Written behind a write that did not complete at once: its callback says when that one has. */
const EMPTY = Buffer.alloc(0)

/** What takes a server socket's reads before a relay does (an idle connection, `proxy/Idlers.ts`). @category models */
export interface Holder {
  /** `length` bytes were read; `chunk` holds them from index 0, and only until this returns. False stops reading. */
  readonly chunk: (chunk: Buffer, length: number) => boolean
}

const kFrom = Symbol("nib/Relay/from")
const kTo = Symbol("nib/Relay/to")
type Piped = Net.Socket & { [kFrom]?: Reader | Holder; [kTo]?: Pipe }

/** What takes the bytes and the EOF read from a socket: the pipe they go through, or {@link DISCARD}. */
interface Reader {
  readonly chunk: (chunk: Buffer, length: number) => boolean
  readonly ended: () => void
}

/** Takes the bytes of a socket whose connection is closing (`tcp_fastclose`): dropped, reading on. */
const DISCARD: Reader = { chunk: () => true, ended: () => {} }

// Listeners are module-level functions that find their pipe through the socket (`this`): no closures per connection.
function onRead(this: Net.Socket, length: number, buffer: Uint8Array): boolean {
  const pipe = (this as Piped)[kFrom]
  return pipe !== undefined && pipe.chunk(buffer as Buffer, length)
}
function onData(this: Net.Socket, chunk: Buffer) {
  if (!(this as Piped)[kFrom]!.chunk(chunk, chunk.length)) this.pause()
}
function onEnd(this: Net.Socket) {
  ;((this as Piped)[kFrom] as Reader).ended()
}
function onDrain(this: Net.Socket) {
  ;(this as Piped)[kTo]!.drained()
}

/** The `onread` option of a socket whose reads the relay takes (servers are dialed with it). @category constants */
export const readOptions: Net.OnReadOpts = { buffer: SHARED, callback: onRead }

/**
 * Gives the reads of `socket`, dialed with {@link readOptions}, to `holder` until a relay starts on it (an idle
 * server connection keeps what its server sends before a client takes it).
 */
export const hold = (socket: Net.Socket, holder: Holder): void => {
  ;(socket as Piped)[kFrom] = holder
}

/** The two private fields Node's `onread` sets on a socket, found by their values on a probe socket. */
interface ReadFields {
  readonly buffer: symbol
  readonly callback: symbol
}

let fields: ReadFields | null | undefined

const probeCallback = () => true

const readFields = (): ReadFields | null => {
  if (fields !== undefined) return fields
  const buffer = Buffer.alloc(1)
  const probe = new Net.Socket({ onread: { buffer, callback: probeCallback } })
  const own = probe as unknown as Record<symbol, unknown>
  const symbols = Object.getOwnPropertySymbols(probe)
  const b = symbols.find((s) => own[s] === buffer)
  const c = symbols.find((s) => own[s] === probeCallback)
  probe.destroy()
  return (fields = b !== undefined && c !== undefined ? { buffer: b, callback: c } : null)
}

interface StreamHandle {
  readonly reading?: boolean
  readonly useUserBuffer?: (buffer: Uint8Array) => void
}

/**
 * Makes `socket` read into the shared buffer, as if it had been created with {@link readOptions}; true if it does
 * (or already did). Only a socket that is not reading yet can switch (an accepted socket with `pauseOnConnect`).
 */
export const readShared = (socket: Net.Socket): boolean => {
  const own = socket as unknown as Record<symbol, unknown>
  const f = readFields()
  if (f === null) return false
  if (own[f.buffer] === SHARED) return true
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle
  if (handle == null || typeof handle.useUserBuffer !== "function" || handle.reading === true) return false
  if (own[f.buffer] != null) return false
  own[f.buffer] = SHARED
  own[f.callback] = onRead
  handle.useUserBuffer(SHARED)
  return true
}

/** Whether accepted sockets can read into the shared buffer on this Node (false means `data` events). */
export const sharedReadsAvailable = (): boolean => readFields() !== null

/**
 * One direction: bytes read from `src` are copied into pooled buffers and written to `dst`. Writes complete in order,
 * so the pooled buffers in use are a FIFO: older ones that are full (`retired`) and the one being filled.
 */
class Pipe {
  private buffer: Buffer | undefined
  private fill = 0
  /** Where the bytes not yet written start in `buffer` (they end at `fill`). */
  private flushed = 0
  /** Writes not yet completed from `buffer`. */
  private writes = 0
  /** Earlier buffers with writes not yet completed, oldest first, and how many each has (made when first needed). */
  private retired: Array<Buffer> | undefined
  private retiredWrites: Array<number> | undefined
  private paused = false
  /** `dst` is corked: writes leave together at the end of the chunk, and whether to stop reading is decided then. */
  private corked = false
  /** Where `dst` stands with Nagle: nothing written yet, one write made (Nagle still on), or off (TCP_NODELAY). */
  private nagle: "unwritten" | "once" | "off" = "unwritten"
  private disposed = false
  /** The pipe of the other direction (set once, by the relay). */
  partner: Pipe | undefined
  /** -H: the rewriter's bytes handed over so far (a rewritten chunk is counted as what it became). */
  private rewritten = 0
  /** The idle clock's tick when bytes last moved this way (a read, or a drain of `dst`). */
  active: number
  /** `src` reached EOF: the connection is half-closed. */
  eof = false
  /** The write callback, made once per pipe. */
  private readonly written = () => this.writeDone()

  constructor(
    private readonly src: Net.Socket,
    private readonly dst: Net.Socket,
    private readonly pool: BufferPool,
    private readonly tap: Tap,
    private readonly fromClient: boolean,
    private readonly clock: ActivityClock,
    /** -H: rewrites the request heads (client to server only), until the connection leaves HTTP. */
    private rewriter?: HttpRewrite.Rewriter | undefined
  ) {
    this.active = clock.tick
  }

  /** `length` bytes read from `src` are in `chunk` from index 0; false stops reading until `dst` drains. */
  chunk(chunk: Buffer, length: number): boolean {
    this.active = this.clock.tick
    const dst = this.dst
    // The other side is gone (an error or reset, which ends the connection): nothing more to move.
    if (this.disposed || dst.destroyed) return false
    // A chunk that fills more than one pooled buffer leaves in one writev: one system call, and one run of full
    // segments instead of one short segment per pooled buffer.
    if (length > BUFFER_SIZE) {
      dst.cork()
      this.corked = true
    }
    const rewriter = this.rewriter
    if (rewriter === undefined) {
      if (this.fromClient) this.tap.fromClient(chunk, length, length)
      else this.tap.fromServer(length)
      this.append(chunk, 0, length)
    } else {
      // -H: the rewriter hands over slices of the chunk and the lines it inserts, in order (`append`).
      const before = this.rewritten
      rewriter.feed(chunk, this, length)
      this.tap.fromClient(chunk, length, this.rewritten - before)
      if (rewriter.mode !== "http") this.rewriter = undefined
    }
    const flowing = this.flush()
    return this.corked ? this.uncork() : flowing
  }

  /** Rewriter sink: `buffer[start, end)` goes to `dst`, after what is already appended. */
  bytes(buffer: Uint8Array, start: number, end: number): void {
    this.rewritten += end - start
    this.append(buffer, start, end)
  }

  /** Rewriter sink: a bad request head. The client gets the status and a close; the server gets an EOF. */
  error(status: 400 | 431, reason: string): void {
    this.flush()
    this.tap.httpError?.(status, reason)
    const src = this.src
    if (!src.destroyed) src.end(HttpRewrite.errorResponse(status))
    if (!this.dst.destroyed) this.dst.end()
  }

  /** Rewriter sink: the connection switched to plain relaying (Upgrade, CONNECT). */
  passthrough(): void {}

  /**
   * Copies `source[start, end)` after the bytes not yet written. A slice that does not fit in the current pooled
   * buffer's room starts a fresh one, after writing what is pending; a slice larger than a pooled buffer fills as many
   * as it needs, each written as it fills.
   */
  private append(source: Uint8Array, start: number, end: number): void {
    while (start < end) {
      let buffer = this.buffer
      if (buffer === undefined || this.fill + Math.min(end - start, BUFFER_SIZE) > buffer.length) {
        this.flush()
        buffer = this.fresh()
      }
      const n = Math.min(end - start, buffer.length - this.fill)
      // (Buffer's copy takes any Uint8Array as its source, and makes no view)
      Buffer.prototype.copy.call(source, buffer, this.fill, start, start + n)
      this.fill += n
      start += n
    }
  }

  /** Writes the bytes appended since the last write; false when `dst` is over its high-water mark. */
  private flush(): boolean {
    const dst = this.dst
    const buffer = this.buffer
    const start = this.flushed
    if (buffer === undefined || start === this.fill) return true
    const view = buffer.subarray(start, this.flushed = this.fill)
    if (this.nagle !== "off") this.noNagle()
    if (this.corked) {
      // (queued until `uncork`, so it cannot complete at once: its callback says when it has)
      this.writes++
      dst.write(view, this.written)
      return true
    }
    let ok: boolean
    if (dst.writableLength === 0) {
      // Nothing is queued, so the write usually completes at once: its bytes are then in the kernel, the buffer is
      // free again, and a write without a callback costs Node no deferred call.
      ok = dst.write(view)
      if (dst.writableLength === 0) {
        if (this.writes === 0) this.release()
        // Gone already: no reason to stop reading, though `write` says false for a chunk as large as the high-water
        // mark (it judges before writing); the `drain` it then emits finds nothing paused.
        return true
      }
      // Part of it is still queued: an empty write behind it reports when it has gone (writes complete in order).
      this.writes++
      dst.write(EMPTY, this.written)
    } else {
      this.writes++
      ok = dst.write(view, this.written)
    }
    if (ok) return true
    this.paused = true
    return false
  }

  /**
   * Sends what was written while corked, in one writev; false, and reading stops, when that leaves `dst` over its
   * high-water mark (what the kernel did not take waits in Node until `dst` drains).
   */
  private uncork(): boolean {
    this.corked = false
    const dst = this.dst
    dst.uncork()
    if (dst.writableLength < dst.writableHighWaterMark) return true
    this.paused = true
    return false
  }

  /**
   * Before a write: from `dst`'s second write on, Nagle goes off, once per connection and direction. The relay's first
   * write may not be the socket's first: a PROXY header went before it, or a TLS handshake (whose last short segment
   * may still be unacknowledged).
   */
  private noNagle(): void {
    const dst = this.dst
    if (this.nagle === "unwritten" && dst.bytesWritten === 0 && (dst as { encrypted?: boolean }).encrypted !== true) {
      this.nagle = "once"
      return
    }
    this.nagle = "off"
    // (a Unix socket has no Nagle, and Node then leaves it alone)
    dst.setNoDelay(true)
  }

  /** The current buffer has no write pending: back to the pool, so that an idle connection holds none. */
  private release(): void {
    if (this.buffer !== undefined) this.pool.giveBack(this.buffer)
    this.buffer = undefined
    this.fill = 0
    this.flushed = 0
  }

  /** A buffer with room: the current one, if still being written, joins the retired ones. */
  private fresh(): Buffer {
    if (this.buffer !== undefined && this.writes === 0) {
      this.pool.giveBack(this.buffer)
    } else if (this.buffer !== undefined) {
      ;(this.retired ??= []).push(this.buffer)
      ;(this.retiredWrites ??= []).push(this.writes)
    }
    this.fill = 0
    this.flushed = 0
    this.writes = 0
    return (this.buffer = this.pool.borrow())
  }

  /** A write completed (or failed): the oldest pending write's buffer may go back to the pool. */
  private writeDone(): void {
    if (this.disposed) return
    const retired = this.retired
    if (retired !== undefined && retired.length > 0) {
      const writes = this.retiredWrites!
      if (--writes[0]! === 0) {
        this.pool.giveBack(retired.shift()!)
        writes.shift()
      }
      return
    }
    if (--this.writes === 0) this.release()
  }

  /** `dst` drained: reading from `src` resumes if this pipe had stopped it. */
  drained(): void {
    this.active = this.clock.tick
    if (!this.paused) return
    this.paused = false
    if (!this.src.destroyed) this.src.resume()
  }

  /**
   * `src` reached EOF: a FIN to `dst` once the bytes queued there are written, the other direction going on; or, when
   * the tap says so (`tcp_fastclose`), the whole connection closes.
   */
  ended(): void {
    this.eof = true
    if (this.tap.closesAll(this.fromClient)) {
      this.closing()
      this.partner!.closing()
      return
    }
    if (!this.dst.destroyed) this.dst.end()
  }

  /**
   * This direction's part of closing the whole connection: what `src` sends from now on is read and dropped (reading
   * resumes if this pipe had stopped it), and `dst` is closed once the bytes queued for it are written (a FIN, then
   * the socket destroyed). Both directions do it, so nothing read from either side is lost.
   */
  private closing(): void {
    const src = this.src as Piped
    src[kFrom] = DISCARD
    if (this.paused) {
      this.paused = false
      // (a socket that has reached EOF reads no more: it may not be started again)
      if (!src.destroyed && !src.readableEnded) src.resume()
    }
    if (!this.dst.destroyed) this.dst.destroySoon()
  }

  /** Gives back every buffer; only once both sockets are closed, when no write can still refer to one. */
  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    for (const buffer of this.retired ?? []) this.pool.giveBack(buffer)
    this.retired = this.retiredWrites = undefined
    if (this.buffer !== undefined) this.pool.giveBack(this.buffer)
    this.buffer = undefined
  }
}

/** The relay of one connection: client to server and server to client. @category models */
export class Relay {
  private readonly up: Pipe
  private readonly down: Pipe

  constructor(
    private readonly client: Net.Socket,
    private readonly server: Net.Socket,
    pool: BufferPool,
    tap: Tap,
    rewriter?: HttpRewrite.Rewriter,
    /** What activity is stamped with (an owner without an idle sweep leaves it out). */
    clock: ActivityClock = STOPPED
  ) {
    this.up = new Pipe(client, server, pool, tap, true, clock, rewriter)
    this.down = new Pipe(server, client, pool, tap, false, clock)
    this.up.partner = this.down
    this.down.partner = this.up
  }

  /** The clock's tick when a byte last moved either way (or when relaying started). */
  get lastActive(): number {
    const up = this.up.active
    const down = this.down.active
    return up > down ? up : down
  }

  /** Whether either side has sent its EOF (the other direction may still flow). */
  get halfClosed(): boolean {
    return this.up.eof || this.down.eof
  }

  /**
   * Starts moving bytes: the server is connected, the client accepted and not read yet. `early` is what was read
   * from the client before (after a PROXY header): it goes first, as chunks read now would. `fromServer` is what the
   * server sent before (on an idle connection): it goes to the client first.
   */
  start(early?: ReadonlyArray<Buffer>, fromServer?: ReadonlyArray<Buffer>): void {
    const { client, server } = this
    wire(client, this.up, this.down)
    wire(server, this.down, this.up)
    if (fromServer !== undefined) {
      let reading = true
      for (const chunk of fromServer) reading = this.down.chunk(chunk, chunk.length)
      // The client is over its high-water mark already: its `drain` resumes the server.
      if (!reading) server.pause()
    }
    let flowing = true
    if (early !== undefined) { for (const chunk of early) flowing = this.up.chunk(chunk, chunk.length) }
    // The server was dialed with `readOptions` and reads already; the client starts now, unless the server's side
    // is already full (its `drain` resumes the client then).
    if (flowing) client.resume()
  }

  /** Gives back every borrowed buffer; call once both sockets have closed. Idempotent. */
  dispose(): void {
    this.up.dispose()
    this.down.dispose()
  }
}

const wire = (socket: Net.Socket, from: Pipe, to: Pipe): void => {
  const piped = socket as Piped
  piped[kFrom] = from
  piped[kTo] = to
  if (!readShared(socket)) socket.on("data", onData)
  socket.on("end", onEnd)
  socket.on("drain", onDrain)
}
