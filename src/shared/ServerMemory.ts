/**
 * The servers' live state in memory that every thread of a balancer sees: connections in use (taken with one atomic
 * compare-and-swap against the server's limit), blacklist deadlines, the active check's down flag and slow-start time,
 * the drain flag, byte counters, the roundrobin cursor, pen's "current" server and the selection flags.
 *
 * A row per server: the emergency server is row 0, the abuse server row 1, server N row N + 2. The buffers are
 * `SharedArrayBuffer`s when workers share them, plain `ArrayBuffer`s for one thread; both grow at the end (the control
 * port adds servers at run time) up to {@link ROWS_MAX}, reserved as address space and committed as they grow.
 *
 * Who writes what: connections with `Atomics` from any thread; byte counters in one row per worker, each written by its
 * own worker alone (no atomics on the per-chunk path) and summed by readers; the rest is written by whoever changes it
 * (the control plane, or a worker blacklisting a server that failed) with plain stores, read with plain loads. Times
 * are Float64 milliseconds: aligned 8-byte stores do not tear on the platforms Node runs on.
 */

/** Rows reserved for servers (the emergency and abuse servers included). @category constants */
export const ROWS_MAX = 65_536

/** The buffers, as posted to a worker thread (`workerData`). @category models */
export interface Memory {
  /** Int32: a header (cursor, current, flags), then per row: connections, down, draining. */
  readonly ints: SharedArrayBuffer | ArrayBuffer
  /** Float64 per row: blacklisted until, up since. */
  readonly times: SharedArrayBuffer | ArrayBuffer
  /** Float64 per row, per worker (a cache line each): bytes sent to the server and received from it, connections held. */
  readonly bytes: SharedArrayBuffer | ArrayBuffer
  /** Threads that count bytes (workers, or 1). */
  readonly workers: number
}

const HEADER = 4
const H_CURSOR = 0
const H_CURRENT = 1
const H_FLAGS = 2
const INTS = 3
const I_CONNECTIONS = 0
const I_DOWN = 1
const I_DRAINING = 2
const TIMES = 2
const T_BLACKLISTED = 0
const T_UP_SINCE = 1
/** Float64s per worker and row: its counters, padded to a cache line so that workers never write one line. */
const COUNTERS = 8
const C_SENT = 0
const C_RECEIVED = 1
/** Connections this worker holds on the server (so that a worker that dies gives them back). */
const C_HELD = 2

const buffer = (shared: boolean, bytes: number, max: number): SharedArrayBuffer | ArrayBuffer =>
  shared ? new SharedArrayBuffer(bytes, { maxByteLength: max }) : new ArrayBuffer(bytes, { maxByteLength: max })

const grow = (b: SharedArrayBuffer | ArrayBuffer, bytes: number): void =>
  b instanceof SharedArrayBuffer ? b.grow(bytes) : b.resize(bytes)

const sizes = (rows: number, workers: number) => ({
  ints: (HEADER + rows * INTS) * 4,
  times: rows * TIMES * 8,
  bytes: rows * workers * COUNTERS * 8
})

/**
 * Memory for `rows` rows (grown later by {@link ServerState.ensure}) and `workers` byte-counting threads, shared
 * between threads or not. @category constructors
 */
export const allocate = (
  options: { readonly rows: number; readonly workers: number; readonly shared: boolean }
): Memory => {
  const workers = Math.max(1, options.workers)
  const now = sizes(Math.max(2, options.rows), workers)
  const max = sizes(ROWS_MAX, workers)
  const ints = buffer(options.shared, now.ints, max.ints)
  new Int32Array(ints)[H_CURRENT] = -1
  return {
    ints,
    times: buffer(options.shared, now.times, max.times),
    bytes: buffer(options.shared, now.bytes, max.bytes),
    workers
  }
}

/** The row of server `index` (the emergency server is -2, the abuse server -3). @category constructors */
export const rowOf = (index: number): number => index >= 0 ? index + 2 : index === -2 ? 0 : 1

/** The selection flags, as bits of one word. @category constants */
export const Flag = { roundrobin: 1, hash: 2, weight: 4, prio: 8, stubborn: 16 } as const

/** One thread's handle on the memory: `worker` is the byte-counter row it writes. @category models */
export class ServerState {
  // Fixed-length views, made again when the memory has grown past them: an access through a view that tracks a
  // growable SharedArrayBuffer's length costs tens of nanoseconds in Node 24, a fixed one a few.
  private ints!: Int32Array
  private times!: Float64Array
  private bytes!: Float64Array
  /** Rows the views cover. */
  private viewRows = 0
  private readonly workers: number
  /** Where this thread's byte counters start. */
  private readonly own: number
  readonly memory: Memory

  constructor(memory: Memory, worker: number) {
    this.memory = memory
    this.workers = memory.workers
    this.own = Math.min(Math.max(0, worker), memory.workers - 1)
    this.remap()
  }

  /** Rows the memory holds now. */
  rows(): number {
    return this.memory.times.byteLength / 8 / TIMES
  }

  /** Makes the views cover the memory as it is now. */
  private remap(): void {
    const rows = this.rows()
    const { bytes, ints, times } = sizes(rows, this.workers)
    this.ints = new Int32Array(this.memory.ints, 0, ints / 4)
    this.times = new Float64Array(this.memory.times, 0, times / 8)
    this.bytes = new Float64Array(this.memory.bytes, 0, bytes / 8)
    this.viewRows = rows
  }

  /** Row `row`, with views that cover it (another thread may have grown the memory). */
  private fit(row: number): number {
    if (row >= this.viewRows) this.remap()
    return row
  }

  /**
   * Grows the memory to hold `rows` rows (the control plane, before it configures a new server); false beyond
   * {@link ROWS_MAX}. Rows are only added at the end: nothing moves, and other threads go on meanwhile.
   */
  ensure(rows: number): boolean {
    const had = this.rows()
    if (rows <= had) return true
    if (rows > ROWS_MAX) return false
    const want = sizes(Math.max(rows, Math.min(ROWS_MAX, had * 2)), this.workers)
    grow(this.memory.ints, want.ints)
    grow(this.memory.times, want.times)
    grow(this.memory.bytes, want.bytes)
    this.remap()
    return true
  }

  connections(row: number): number {
    this.fit(row)
    return Atomics.load(this.ints, HEADER + row * INTS + I_CONNECTIONS)
  }

  /**
   * Takes a connection on `row` if it has fewer than `limit` (0: no limit): one compare-and-swap, so two threads can
   * never both take the last one. Whether it was taken.
   */
  tryAcquire(row: number, limit: number): boolean {
    this.fit(row)
    const at = HEADER + row * INTS + I_CONNECTIONS
    const ints = this.ints
    if (limit <= 0) {
      Atomics.add(ints, at, 1)
      this.bytes[(row * this.workers + this.own) * COUNTERS + C_HELD] += 1
      return true
    }
    for (let c = Atomics.load(ints, at); c < limit;) {
      const seen = Atomics.compareExchange(ints, at, c, c + 1)
      if (seen === c) {
        this.bytes[(row * this.workers + this.own) * COUNTERS + C_HELD] += 1
        return true
      }
      c = seen
    }
    return false
  }

  release(row: number): void {
    this.fit(row)
    Atomics.sub(this.ints, HEADER + row * INTS + I_CONNECTIONS, 1)
    this.bytes[(row * this.workers + this.own) * COUNTERS + C_HELD] -= 1
  }

  /**
   * Gives back every connection worker `worker` held (it died: its connections are gone), from the main thread.
   * How many there were.
   */
  releaseAllOf(worker: number): number {
    this.remap()
    let released = 0
    for (let row = 0, rows = this.rows(); row < rows; row++) {
      const at = (row * this.workers + worker) * COUNTERS + C_HELD
      const held = this.bytes[at]!
      if (held === 0) continue
      Atomics.sub(this.ints, HEADER + row * INTS + I_CONNECTIONS, held)
      this.bytes[at] = 0
      released += held
    }
    return released
  }

  down(row: number): boolean {
    this.fit(row)
    return this.ints[HEADER + row * INTS + I_DOWN] !== 0
  }

  setDown(row: number, down: boolean): void {
    this.fit(row)
    Atomics.store(this.ints, HEADER + row * INTS + I_DOWN, down ? 1 : 0)
  }

  draining(row: number): boolean {
    this.fit(row)
    return this.ints[HEADER + row * INTS + I_DRAINING] !== 0
  }

  setDraining(row: number, draining: boolean): void {
    this.fit(row)
    Atomics.store(this.ints, HEADER + row * INTS + I_DRAINING, draining ? 1 : 0)
  }

  blacklistedUntil(row: number): number {
    this.fit(row)
    return this.times[row * TIMES + T_BLACKLISTED]!
  }

  setBlacklistedUntil(row: number, until: number): void {
    this.fit(row)
    this.times[row * TIMES + T_BLACKLISTED] = until
  }

  upSince(row: number): number {
    this.fit(row)
    return this.times[row * TIMES + T_UP_SINCE]!
  }

  setUpSince(row: number, at: number): void {
    this.fit(row)
    this.times[row * TIMES + T_UP_SINCE] = at
  }

  /** Counts `sent` bytes to the server on `row` and `received` from it, in this thread's own counters. */
  count(row: number, sent: number, received: number): void {
    this.fit(row)
    const at = (row * this.workers + this.own) * COUNTERS
    const bytes = this.bytes
    bytes[at + C_SENT] += sent
    bytes[at + C_RECEIVED] += received
  }

  /** Bytes sent to the server on `row`, all threads together. */
  sent(row: number): number {
    return this.sum(row, C_SENT)
  }

  /** Bytes received from the server on `row`, all threads together. */
  received(row: number): number {
    return this.sum(row, C_RECEIVED)
  }

  private sum(row: number, which: number): number {
    this.fit(row)
    let total = 0
    for (let w = 0, at = row * this.workers * COUNTERS + which; w < this.workers; w++, at += COUNTERS) {
      total += this.bytes[at]!
    }
    return total
  }

  /** The roundrobin cursor: the server it handed out last. */
  get cursor(): number {
    return this.ints[H_CURSOR]!
  }

  set cursor(server: number) {
    this.ints[H_CURSOR] = server
  }

  /** The regular server that last took a connection (pen's "current"), or -1. */
  get current(): number {
    return this.ints[H_CURRENT]!
  }

  set current(server: number) {
    this.ints[H_CURRENT] = server
  }

  /** Whether selection flag `bit` ({@link Flag}) is on. */
  flag(bit: number): boolean {
    return (Atomics.load(this.ints, H_FLAGS) & bit) !== 0
  }

  setFlag(bit: number, on: boolean): void {
    if (on) Atomics.or(this.ints, H_FLAGS, bit)
    else Atomics.and(this.ints, H_FLAGS, ~bit)
  }
}
