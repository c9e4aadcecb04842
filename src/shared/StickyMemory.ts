/**
 * pen's sticky client table in memory that worker threads share: the twin of `domain/StickyTable`, giving the same
 * answers (slots, servers, connects, times, bytes, listings and their order) while several threads use it at once,
 * with no message between them.
 *
 * All the state lives in typed arrays over buffers that are `SharedArrayBuffer`s (workers) or plain `ArrayBuffer`s
 * (one thread, tests): {@link allocate} makes them and {@link attach} gives a thread its handle. The buffers grow in
 * place, reserved up to `capacityMax`, so the number of slots can change at run time (`clients_max`). Each thread
 * views them through fixed-length typed arrays that it makes again when a header count says they grew: length-tracking
 * views of a growable `SharedArrayBuffer` cost some 70 ns an access in Node 24, against a few for fixed ones.
 *
 * - One lock word guards every structural operation (a visit, a pin, a sweep, a resize, a listing): a
 *   compare-and-swap, a short spin, then `Atomics.wait`. What it guards allocates nothing.
 * - A client lives in a record; its slot (pen's client number) is a field of the record, because a shrink moves
 *   clients to lower slots while their connections still refer to them.
 * - A connection holds a {@link ClientRef}, one number packing record and generation. The generation changes when the
 *   record gets a new client, or its client is forgotten or dropped, so a ref to a client since gone does nothing.
 * - Byte counters are rows, one per worker, each written by its worker only, with no lock or atomic operation. A row
 *   carries the generation it counts for, and readers add up the rows of the record's current generation, so a new
 *   client starts at zero without anyone writing into another thread's row (a reset written under the lock could be
 *   overwritten by the worker's add in flight). Readers may see a count a few adds old.
 *
 * A thread that dies holding the lock (terminated mid-operation) leaves it held: the others then wait forever.
 */
import type * as Brand from "effect/Brand"
import * as StickyTable from "../domain/StickyTable.ts"

export type { ClientEntry } from "../domain/StickyTable.ts"

/** No server remembered for the client (`domain/StickyTable`'s). @category constants */
export const NO_SERVER = StickyTable.NO_SERVER

/** The longest client address kept, in ASCII characters (Node's longest is 61: IPv6 and a zone). @category constants */
export const ADDRESS_MAX = 64

/** The most slots a table can be made for: a {@link ClientRef} keeps 24 bits for the record. @category constants */
export const CAPACITY_LIMIT = 2 ** 24

/** The slots reserved when the options name no `capacityMax` (or the capacity, if more). @category constants */
export const DEFAULT_CAPACITY_MAX = 2 ** 20

/** Changes the journal keeps: more since a mark and the table is walked whole instead. @category constants */
export const JOURNAL = 4096

/** The most threads that count bytes in one table. @category constants */
export const WORKERS_LIMIT = 1024

/**
 * A connection's handle on its client: `generation * 2^24 + record` in one number, so that nothing is allocated per
 * connection. It goes stale when the client is evicted, forgotten or dropped; a shrink that moves the client keeps it.
 *
 * @category models
 */
export type ClientRef = Brand.Branded<number, "ClientRef">

/** A buffer of the table: shared between threads, or plain for one thread. @category models */
export type Backing = ArrayBuffer | SharedArrayBuffer

/** The buffers of a table: a plain object to post in `workerData`; {@link attach} each thread. @category models */
export interface Memory {
  /** The lock, the counts, the list ends and the settings. */
  readonly header: Backing
  /** Per record: generation, server, hash, address length, hash chain, LRU links, slot (Int32). */
  readonly ints: Backing
  /** Per record: last seen, connects (Float64). */
  readonly floats: Backing
  /** Per record: the address, {@link ADDRESS_MAX} bytes. */
  readonly text: Backing
  /** Per slot: its record, or -1 (pen's client table, by client number). */
  readonly slots: Backing
  /** The free slots below the high-water mark, as a min-heap. */
  readonly heap: Backing
  /** The heads of the hash chains: a power of two at least the capacity. */
  readonly buckets: Backing
  /** Per worker, per record: the generation counted for, bytes to the client, bytes from it. */
  readonly rows: ReadonlyArray<Backing>
  /**
   * The records whose server changed last, by change count modulo {@link JOURNAL}: where `--peers` finds what changed
   * without walking the table.
   */
  readonly journal: Backing
}

/** How {@link allocate} makes a table. @category models */
export interface Options {
  /** Slots (pen's `-c`); at least one. */
  readonly capacity: number
  /** Milliseconds after which a client that has not connected is forgotten; 0 keeps it forever. */
  readonly trackingMillis: number
  /** Threads that count bytes, each in its own row: they attach as workers 0 to `workers - 1`. */
  readonly workers: number
  /** The most slots a resize may ask for (at least the capacity, at most {@link CAPACITY_LIMIT}): the reservation. */
  readonly capacityMax?: number
  /** `SharedArrayBuffer`s (the default), to share between threads; or plain `ArrayBuffer`s, for one thread. */
  readonly shared?: boolean
}

// The header: Int32 words, and the tracking time as a Float64.
const LOCK = 0
const CAPACITY = 1
const CAPACITY_MAX = 2
const WORKERS = 3
/** Clients held, forgotten ones included until they are dropped (the model's `entries.size`). */
const COUNT = 4
/** Slots below it are held or free (the model's `slots.length`). */
const HIGH = 5
/** Free slots below `HIGH`: the heap's size. */
const FREE = 6
/** The least recently seen client's record, -1 when none. */
const OLDEST = 7
const NEWEST = 8
/** Records ever used: the ones below it are held or on the free list. */
const RECORDS = 9
/** The first free record, -1 when none; the list goes through `NEXT`. */
const RECORD_FREE = 10
const BUCKETS = 11
/** How many times the buffers have grown: a thread whose views are older makes them again. */
const GROWN = 12
/** The thread holding the lock (its worker number + 1), 0 when none: so that a thread that died holding it is known. */
const HOLDER = 13
/** Float64 index of the tracking time (byte 64). */
const TRACKING = 8
/** Float64 index of the change count (byte 72): pins that changed a client's server, for `--peers` to find them. */
const CHANGES = 9
const HEADER_BYTES = 128

// A record's Int32 words.
const GEN = 0
const SERVER = 1
const HASH = 2
const LENGTH = 3
const CHAIN = 4
const PREV = 5
const NEXT = 6
const SLOT = 7
const INTS = 8

// A record's Float64 words.
const SEEN = 0
const CONNECTS = 1
/** The value of the header's change count when the record's server last changed here (0: never, or from a peer). */
const STAMP = 2
const FLOATS = 3

// A worker's row for a record, in Float64 words: the generation as an Int32 at the start, then the two counters.
const ROW = 4
const TO_CLIENT = 1
const FROM_CLIENT = 2

/** A ref is `generation * GEN_SPAN + record`. */
const GEN_SPAN = 2 ** 24
const RECORD_MASK = GEN_SPAN - 1
/** Generations run from 1 to GEN_LIMIT - 1 and wrap (0 is never used, so a zeroed row counts for nobody). */
const GEN_LIMIT = 2 ** 29

/** Spins on the lock word before waiting. */
const SPINS = 64
/** The wait's timeout in milliseconds: a waiter is also woken by the unlock, this only bounds a missed wake. */
const WAIT_MILLIS = 0.5

/** The hash of an address that cannot be kept: not an Int32, so it matches no record. */
const INVALID = 2 ** 32

/** FNV-1a over the characters, or {@link INVALID} when the address is too long or not ASCII. */
const hashOf = (address: string): number => {
  const length = address.length
  let hash = 0x811c9dc5 | 0
  let bits = 0
  for (let i = 0; i < length; i++) {
    const c = address.charCodeAt(i)
    bits |= c
    hash = Math.imul(hash ^ c, 0x01000193)
  }
  return bits > 0x7f || length > ADDRESS_MAX ? INVALID : hash
}

const bucketsFor = (capacity: number): number => {
  let n = 1
  while (n < capacity) n *= 2
  return n
}

const grow = (backing: Backing, bytes: number): void => {
  if (backing.byteLength >= bytes) return
  if (backing instanceof SharedArrayBuffer) backing.grow(bytes)
  else backing.resize(bytes)
}

/**
 * Makes the buffers of an empty table with `capacity` slots (at least one), reserved up to `capacityMax`. Throws a
 * `RangeError` for a capacity that is not a number, above `capacityMax` or {@link CAPACITY_LIMIT}, or a bad worker
 * count.
 *
 * @category constructors
 */
export const allocate = (options: Options): Memory => {
  const capacity = Math.max(1, Math.floor(options.capacity))
  const capacityMax = Math.floor(Math.max(options.capacityMax ?? DEFAULT_CAPACITY_MAX, capacity))
  const workers = options.workers
  if (!(capacityMax <= CAPACITY_LIMIT)) {
    throw new RangeError(`StickyMemory: capacity ${options.capacity}, capacityMax ${options.capacityMax}`)
  }
  if (!(Number.isInteger(workers) && workers >= 1 && workers <= WORKERS_LIMIT)) {
    throw new RangeError(`StickyMemory: ${workers} workers`)
  }
  const shared = options.shared ?? true
  const make = (bytes: number, most: number): Backing =>
    shared ? new SharedArrayBuffer(bytes, { maxByteLength: most }) : new ArrayBuffer(bytes, { maxByteLength: most })
  const buckets = bucketsFor(capacity)
  const memory: Memory = {
    header: shared ? new SharedArrayBuffer(HEADER_BYTES) : new ArrayBuffer(HEADER_BYTES),
    ints: make(capacity * INTS * 4, capacityMax * INTS * 4),
    floats: make(capacity * FLOATS * 8, capacityMax * FLOATS * 8),
    text: make(capacity * ADDRESS_MAX, capacityMax * ADDRESS_MAX),
    slots: make(capacity * 4, capacityMax * 4),
    heap: make(capacity * 4, capacityMax * 4),
    buckets: make(buckets * 4, bucketsFor(capacityMax) * 4),
    rows: Array.from({ length: workers }, () => make(capacity * ROW * 8, capacityMax * ROW * 8)),
    journal: shared ? new SharedArrayBuffer(JOURNAL * 4) : new ArrayBuffer(JOURNAL * 4)
  }
  const header = new Int32Array(memory.header)
  header[CAPACITY] = capacity
  header[CAPACITY_MAX] = capacityMax
  header[WORKERS] = workers
  header[OLDEST] = -1
  header[NEWEST] = -1
  header[RECORD_FREE] = -1
  header[BUCKETS] = buckets
  new Float64Array(memory.header)[TRACKING] = options.trackingMillis > 0 ? options.trackingMillis : 0
  new Int32Array(memory.buckets).fill(-1)
  return memory
}

/**
 * One thread's handle on a table: the operations of `domain/StickyTable`, plus refs for the per-connection path.
 * `worker` is the row this thread counts bytes in; each row must have one writer only.
 *
 * @category models
 */
export class StickyMemory {
  /** The row this thread adds bytes to. */
  readonly worker: number
  private readonly memory: Memory
  private readonly shared: boolean
  private readonly header: Int32Array
  private readonly settings: Float64Array
  private readonly journal: Int32Array
  // Fixed-length views of the growable buffers, made again when they grow (see `remap`).
  private grown = -1
  private ints!: Int32Array
  private floats!: Float64Array
  private text!: Uint8Array
  private slots!: Int32Array
  private heap!: Int32Array
  private buckets!: Int32Array
  private rowGens!: ReadonlyArray<Int32Array>
  private rowCounts!: ReadonlyArray<Float64Array>
  private ownGens!: Int32Array
  private ownCounts!: Float64Array
  /** Where listings copy entries under the lock, to build their objects after it: slot, server, length. */
  private scratchInts = new Int32Array(3)
  /** Last seen, connects, bytes to the client, bytes from it. */
  private scratchFloats = new Float64Array(4)
  private scratchText = new Uint8Array(ADDRESS_MAX)

  constructor(memory: Memory, worker: number) {
    const header = new Int32Array(memory.header)
    if (!(Number.isInteger(worker) && worker >= 0 && worker < header[WORKERS])) {
      throw new RangeError(`StickyMemory: worker ${worker} of ${header[WORKERS]}`)
    }
    this.worker = worker
    this.memory = memory
    this.shared = memory.header instanceof SharedArrayBuffer
    this.header = header
    this.settings = new Float64Array(memory.header)
    this.journal = new Int32Array(memory.journal)
    this.remap()
  }

  /** Slots in the table; change it with {@link resize}. */
  get capacity(): number {
    return Atomics.load(this.header, CAPACITY)
  }

  /** The most slots {@link resize} accepts. */
  get capacityMax(): number {
    return this.header[CAPACITY_MAX]
  }

  /** Milliseconds after which a client that has not connected is forgotten; 0 keeps it forever. */
  get trackingMillis(): number {
    return this.settings[TRACKING]
  }

  /** Every thread sees the new tracking time from its next operation; a negative one is 0. */
  set trackingMillis(millis: number) {
    this.lock()
    this.settings[TRACKING] = millis > 0 ? millis : 0
    this.unlock()
  }

  /**
   * Records a connection from `address` at `now`, as `StickyTable.visit` does, and returns the ref of its entry: the
   * known client moved to most recently used, or a fresh entry (no server) for a new or forgotten client, in the
   * lowest free slot, or in the evicted least recently used client's when the table is full. Throws a `RangeError` for
   * an address longer than {@link ADDRESS_MAX} or not ASCII (Node prints none such).
   */
  visit(address: string, now: number): ClientRef {
    const hash = hashOf(address)
    if (hash === INVALID) throw new RangeError(`StickyMemory: not a client address: ${JSON.stringify(address)}`)
    this.lock()
    // The views only now: the lock makes them again if another thread grew the buffers.
    const ints = this.ints
    const floats = this.floats
    const tracking = this.settings[TRACKING]
    let record = this.find(address, hash)
    if (record >= 0) {
      this.unlink(record)
      if (tracking > 0 && now - floats[record * FLOATS + SEEN] >= tracking) this.restart(record)
    } else {
      record = this.room(now, Number.POSITIVE_INFINITY)
      this.settle(record, address, hash)
    }
    floats[record * FLOATS + SEEN] = now
    floats[record * FLOATS + CONNECTS]++
    this.append(record)
    const ref = ints[record * INTS + GEN] * GEN_SPAN + record
    this.unlock()
    return ref as ClientRef
  }

  /** The server of the ref's client, or {@link NO_SERVER} when none is pinned or the ref is stale. Takes no lock. */
  server(ref: ClientRef): number {
    const record = ref & RECORD_MASK
    const at = record * INTS
    if (at >= this.ints.length) {
      // A record past this thread's views: another thread grew the buffers since this one last looked.
      this.remap()
      if (at >= this.ints.length) return NO_SERVER
    }
    const ints = this.ints
    // The server first, then the generation: a writer changes the generation before the server of a new client.
    const server = Atomics.load(ints, at + SERVER)
    return Atomics.load(ints, at + GEN) === (ref - record) / GEN_SPAN ? server : NO_SERVER
  }

  /** Remembers `server` for the ref's client (the first choice, or a failover's); nothing when the ref is stale. */
  pin(ref: ClientRef, server: number): void {
    const record = ref & RECORD_MASK
    const at = record * INTS
    this.lock()
    if (record < this.header[RECORDS] && this.ints[at + GEN] === (ref - record) / GEN_SPAN) {
      if (this.ints[at + SERVER] !== server) this.stamp(record)
      Atomics.store(this.ints, at + SERVER, server)
    }
    this.unlock()
  }

  /**
   * Pins `server` unless the client has one already, and returns the one it has then: `server` if this call won, the
   * winner's otherwise, so simultaneous first connections of one client agree. {@link NO_SERVER} when the ref is stale.
   */
  claim(ref: ClientRef, server: number): number {
    const record = ref & RECORD_MASK
    const at = record * INTS
    let pinned = NO_SERVER
    this.lock()
    const ints = this.ints
    if (record < this.header[RECORDS] && ints[at + GEN] === (ref - record) / GEN_SPAN) {
      pinned = ints[at + SERVER]
      if (pinned === NO_SERVER) {
        Atomics.store(ints, at + SERVER, server)
        this.stamp(record)
        pinned = server
      }
    }
    this.unlock()
    return pinned
  }

  /** Adds to the bytes of the ref's client, in this thread's row, with no lock; nothing when the ref is stale. */
  addBytes(ref: ClientRef, toClient: number, fromClient: number): void {
    const record = ref & RECORD_MASK
    const gen = (ref - record) / GEN_SPAN
    const at = record * ROW
    if (this.ownGens[at * 2] !== gen) {
      // The row counts for an earlier client of the record (or none): start it afresh if the ref is current.
      if (at >= this.ownCounts.length || record * INTS >= this.ints.length) {
        this.remap()
        if (at >= this.ownCounts.length || record * INTS >= this.ints.length) return
      }
      if (Atomics.load(this.ints, record * INTS + GEN) !== gen) return
      this.ownCounts[at + TO_CLIENT] = 0
      this.ownCounts[at + FROM_CLIENT] = 0
      Atomics.store(this.ownGens, at * 2, gen)
    }
    const counts = this.ownCounts
    counts[at + TO_CLIENT] += toClient
    counts[at + FROM_CLIENT] += fromClient
  }

  /** A snapshot of the ref's client, forgotten or not (as the model's entry object is), or undefined when stale. */
  entry(ref: ClientRef): StickyTable.ClientEntry | undefined {
    const record = ref & RECORD_MASK
    this.lock()
    const current = record < this.header[RECORDS] && this.ints[record * INTS + GEN] === (ref - record) / GEN_SPAN
    if (current) this.copyOut(record, 0)
    this.unlock()
    return current ? this.copied(0) : undefined
  }

  /** A snapshot of the entry of `address` if the client is remembered at `now`, without touching it. */
  lookup(address: string, now: number): StickyTable.ClientEntry | undefined {
    const hash = hashOf(address)
    if (hash === INVALID) return undefined
    this.lock()
    const record = this.find(address, hash)
    const found = record >= 0 && !this.expired(record, now)
    if (found) this.copyOut(record, 0)
    this.unlock()
    return found ? this.copied(0) : undefined
  }

  /** Snapshots of the clients remembered at `now`, by slot: pen's order for `recent` and the status page. */
  inOrder(now: number): Array<StickyTable.ClientEntry> {
    return this.listing(() => this.header[HIGH], () => {
      let n = 0
      const high = this.header[HIGH]
      for (let slot = 0; slot < high; slot++) {
        const record = this.slots[slot]
        if (record >= 0 && !this.expired(record, now)) this.copyOut(record, n++)
      }
      return n
    })
  }

  /** Snapshots of the clients remembered at `now`, most recently seen first. */
  recent(now: number): Array<StickyTable.ClientEntry> {
    return this.listing(() => this.header[COUNT], () => {
      let n = 0
      for (let record = this.header[NEWEST]; record >= 0; record = this.ints[record * INTS + PREV]) {
        if (!this.expired(record, now)) this.copyOut(record, n++)
      }
      return n
    })
  }

  /** How many clients are remembered at `now` (a walk of the table under the lock). */
  size(now: number): number {
    let n = 0
    this.lock()
    for (let record = this.header[OLDEST]; record >= 0; record = this.ints[record * INTS + NEXT]) {
      if (!this.expired(record, now)) n++
    }
    this.unlock()
    return n
  }

  /** Drops the clients whose tracking time has run out, so they stop holding slots; returns how many. */
  sweep(now: number): number {
    let dropped = 0
    this.lock()
    if (this.settings[TRACKING] > 0) {
      for (let record = this.header[OLDEST]; record >= 0;) {
        const next = this.ints[record * INTS + NEXT]
        if (this.expired(record, now)) {
          this.drop(record)
          dropped++
        }
        record = next
      }
    }
    this.unlock()
    return dropped
  }

  /**
   * Changes the number of slots (at least one), as `StickyTable.resize` does: a shrink evicts the least recently used
   * clients that no longer fit, then moves those left past the new end to the lowest free slots, in slot order. Returns
   * false, changing nothing, for more slots than `capacityMax` (or not a number).
   */
  resize(capacity: number): boolean {
    const slots = Math.max(1, Math.floor(capacity))
    if (!(slots <= this.capacityMax)) return false
    this.lock()
    try {
      this.reserve(slots)
      this.shrink(slots)
    } finally {
      this.unlock()
    }
    return true
  }

  /**
   * Takes in clients another table remembered (`recent`'s entries, given least recently seen first), as the
   * most recently seen ones, in that order, each with its server, last visit, connects and bytes, in the slot it had
   * (the lowest free slot when that one is taken or past the capacity). Clients already known, forgotten at `now`, or
   * past the capacity (the least recently seen are left out) are not taken. Returns how many were.
   */
  restore(entries: ReadonlyArray<StickyTable.ClientEntry>, now: number): number {
    this.lock()
    try {
      const header = this.header
      const tracking = this.settings[TRACKING]
      const fresh = entries.filter((entry) => {
        const hash = hashOf(entry.address)
        return hash !== INVALID && !(tracking > 0 && now - entry.lastSeen >= tracking) &&
          this.find(entry.address, hash) < 0
      })
      const taken = fresh.slice(Math.max(0, fresh.length - (header[CAPACITY] - header[COUNT])))
      // Each client's own slot where it is free and within the table; the others take the lowest free ones after.
      const slotOf = taken.map(() => -1)
      const claimed = new Set<number>()
      taken.forEach((entry, i) => {
        const slot = entry.slot
        if (!(Number.isInteger(slot) && slot >= 0 && slot < header[CAPACITY]) || claimed.has(slot)) return
        if (slot < header[HIGH] && this.slots[slot] >= 0) return
        claimed.add(slot)
        slotOf[i] = slot
      })
      for (const slot of claimed) {
        for (let below = header[HIGH]; below < slot; below++) {
          this.slots[below] = -1
          this.pushFree(below)
        }
        if (slot >= header[HIGH]) header[HIGH] = slot + 1
      }
      // The claimed slots leave the free heap (a slot claimed below the old high-water mark was in it).
      const heap = this.heap
      let size = 0
      for (let i = 0; i < header[FREE]; i++) if (!claimed.has(heap[i])) heap[size++] = heap[i]
      header[FREE] = size
      for (let at = (size >> 1) - 1; at >= 0; at--) this.siftDown(heap[at], at, size)
      taken.forEach((entry, i) => {
        const slot = slotOf[i]! >= 0 ? slotOf[i]! : this.takeSlot()
        const record = this.takeRecord()
        this.ints[record * INTS + SLOT] = slot
        this.slots[slot] = record
        header[COUNT]++
        this.settle(record, entry.address, hashOf(entry.address))
        Atomics.store(this.ints, record * INTS + SERVER, entry.server)
        this.floats[record * FLOATS + SEEN] = entry.lastSeen
        this.floats[record * FLOATS + CONNECTS] = entry.connects
        const at = record * ROW
        this.ownCounts[at + TO_CLIENT] = entry.bytesToClient
        this.ownCounts[at + FROM_CLIENT] = entry.bytesFromClient
        Atomics.store(this.ownGens, at * 2, this.ints[record * INTS + GEN])
        this.append(record)
      })
      return taken.length
    } finally {
      this.unlock()
    }
  }

  /** How many times a client's server changed here (pins and claims; not {@link adopt}): 0 for a new table. */
  get changes(): number {
    this.lock()
    const changes = this.settings[CHANGES]
    this.unlock()
    return changes
  }

  /**
   * What changed since a mark, for `--peers` to share: the clients remembered at `now` whose server changed here after
   * change count `since` ({@link changes}), and those seen after `seenAfter` (milliseconds). Changes are found in the
   * journal, visits from the most recent back: the table is walked whole only when more than {@link JOURNAL} changes
   * were made since the mark.
   */
  changedSince(since: number, seenAfter: number, now: number): Array<StickyTable.ClientEntry> {
    return this.listing(() => this.header[COUNT], () => {
      const floats = this.floats
      const changes = this.settings[CHANGES]
      const whole = changes - since > JOURNAL
      let n = 0
      // Visits first, newest back: a client also changed is copied here, and skipped below.
      for (let record = this.header[NEWEST]; record >= 0; record = this.ints[record * INTS + PREV]) {
        const seen = floats[record * FLOATS + SEEN]
        if (seen <= seenAfter && !whole) break
        if ((seen > seenAfter || floats[record * FLOATS + STAMP] > since) && !this.expired(record, now)) {
          this.copyOut(record, n++)
        }
      }
      if (!whole) {
        for (let change = since + 1; change <= changes; change++) {
          const record = this.journal[change % JOURNAL]
          // The record's last change only (an earlier one was overwritten), and a client not copied already.
          if (floats[record * FLOATS + STAMP] !== change || floats[record * FLOATS + SEEN] > seenAfter) continue
          if (this.expired(record, now) || !this.held(record)) continue
          this.copyOut(record, n++)
        }
      }
      return n
    })
  }

  /**
   * Takes in a client a peer pinned (`--peers`): its server and, when later than this table's, its last visit, with
   * no connection counted and no change counted (so it is not shared back). A client new here takes a slot as a visit
   * does (the least recently seen one's when the table is full, unless that one was seen later). Nothing for a client
   * forgotten at `now`, or an address the table cannot keep. Whether the table took it.
   */
  adopt(address: string, server: number, lastSeen: number, now: number): boolean {
    const hash = hashOf(address)
    if (hash === INVALID) return false
    this.lock()
    try {
      const floats = this.floats
      const tracking = this.settings[TRACKING]
      if (tracking > 0 && now - lastSeen >= tracking) return false
      let record = this.find(address, hash)
      if (record >= 0) {
        if (this.expired(record, now)) this.restart(record)
        Atomics.store(this.ints, record * INTS + SERVER, server)
        if (lastSeen > floats[record * FLOATS + SEEN]) {
          this.unlink(record)
          floats[record * FLOATS + SEEN] = lastSeen
          this.place(record)
        }
        return true
      }
      record = this.room(now, lastSeen)
      if (record < 0) return false
      this.settle(record, address, hash)
      Atomics.store(this.ints, record * INTS + SERVER, server)
      floats[record * FLOATS + SEEN] = lastSeen
      this.place(record)
      return true
    } finally {
      this.unlock()
    }
  }

  /**
   * A listing: `fill` copies entries to scratch under the lock (at most `most()` of them, read under the lock) and says
   * how many; their snapshots are built after it. The scratch is grown first, outside the lock, and again if the
   * table grew meanwhile.
   */
  private listing(most: () => number, fill: () => number): Array<StickyTable.ClientEntry> {
    for (;;) {
      this.reserveScratch(this.capacity)
      this.lock()
      if (most() > this.scratchInts.length / 3) {
        this.unlock()
        continue
      }
      const n = fill()
      this.unlock()
      return this.copiedAll(n)
    }
  }

  /** Every broken invariant of the table's structure, in words; empty when it is sound. Takes the lock. */
  violations(): Array<string> {
    this.lock()
    try {
      return this.audit()
    } finally {
      this.unlock()
    }
  }

  private lock(): void {
    if (Atomics.compareExchange(this.header, LOCK, 0, 1) !== 0) this.lockContended()
    this.header[HOLDER] = this.worker + 1
    if (this.header[GROWN] !== this.grown) this.remap()
  }

  /**
   * Makes the views again over the buffers' whole length, after a thread grew them. The views have a fixed length:
   * length-tracking views of a growable `SharedArrayBuffer` cost some 70 ns an access in Node 24 (V8 reads the length
   * atomically each time), fixed ones a few.
   */
  private remap(): void {
    const memory = this.memory
    // The count first: a thread that grows the buffers counts after growing them.
    this.grown = Atomics.load(this.header, GROWN)
    this.ints = new Int32Array(memory.ints, 0, memory.ints.byteLength >> 2)
    this.floats = new Float64Array(memory.floats, 0, memory.floats.byteLength >> 3)
    this.text = new Uint8Array(memory.text, 0, memory.text.byteLength)
    this.slots = new Int32Array(memory.slots, 0, memory.slots.byteLength >> 2)
    this.heap = new Int32Array(memory.heap, 0, memory.heap.byteLength >> 2)
    this.buckets = new Int32Array(memory.buckets, 0, memory.buckets.byteLength >> 2)
    this.rowGens = memory.rows.map((row) => new Int32Array(row, 0, row.byteLength >> 2))
    this.rowCounts = memory.rows.map((row) => new Float64Array(row, 0, row.byteLength >> 3))
    this.ownGens = this.rowGens[this.worker]
    this.ownCounts = this.rowCounts[this.worker]
  }

  /** Drepper's mutex: 1 is held, 2 is held with (perhaps) a waiter, whom the unlock wakes. */
  private lockContended(): void {
    const header = this.header
    if (!this.shared) throw new Error("StickyMemory: the lock of a one-thread table is held: a re-entered operation")
    for (let spin = 0; spin < SPINS; spin++) {
      if (Atomics.load(header, LOCK) === 0 && Atomics.compareExchange(header, LOCK, 0, 1) === 0) return
    }
    while (Atomics.exchange(header, LOCK, 2) !== 0) Atomics.wait(header, LOCK, 2, WAIT_MILLIS)
  }

  private unlock(): void {
    this.header[HOLDER] = 0
    if (Atomics.exchange(this.header, LOCK, 0) === 2) Atomics.notify(this.header, LOCK, 1)
  }

  private expired(record: number, now: number): boolean {
    const tracking = this.settings[TRACKING]
    return tracking > 0 && now - this.floats[record * FLOATS + SEEN] >= tracking
  }

  /** The record of `address`, or -1. */
  private find(address: string, hash: number): number {
    const ints = this.ints
    const length = address.length
    let record = this.buckets[hash & (this.header[BUCKETS] - 1)]
    while (record >= 0) {
      const at = record * INTS
      if (ints[at + HASH] === hash && ints[at + LENGTH] === length && this.holds(record, address)) return record
      record = ints[at + CHAIN]
    }
    return -1
  }

  private holds(record: number, address: string): boolean {
    const text = this.text
    const base = record * ADDRESS_MAX
    for (let i = 0; i < address.length; i++) if (text[base + i] !== address.charCodeAt(i)) return false
    return true
  }

  /** A new generation, so that refs to the record's previous client go stale. */
  private renew(record: number): void {
    const at = record * INTS + GEN
    const gen = this.ints[at]
    Atomics.store(this.ints, at, gen >= GEN_LIMIT - 1 ? 1 : gen + 1)
  }

  /** The record's client starts afresh: no server, no connects, bytes counted from zero (the rows go by generation). */
  private restart(record: number): void {
    this.renew(record)
    Atomics.store(this.ints, record * INTS + SERVER, NO_SERVER)
    this.floats[record * FLOATS + CONNECTS] = 0
  }

  /** `address` moves into the record (which has its slot and is in no list). */
  private settle(record: number, address: string, hash: number): void {
    const text = this.text
    const base = record * ADDRESS_MAX
    for (let i = 0; i < address.length; i++) text[base + i] = address.charCodeAt(i)
    const at = record * INTS
    this.ints[at + HASH] = hash
    this.ints[at + LENGTH] = address.length
    this.floats[record * FLOATS + STAMP] = 0
    this.chain(record)
    this.restart(record)
  }

  /** Whether the record holds a client (not on the free list): its slot maps back to it. */
  private held(record: number): boolean {
    const slot = this.ints[record * INTS + SLOT]
    return slot >= 0 && slot < this.header[HIGH] && this.slots[slot] === record
  }

  /** Counts a change of the record's server, and marks the record with the count (under the lock). */
  private stamp(record: number): void {
    const change = ++this.settings[CHANGES]
    this.floats[record * FLOATS + STAMP] = change
    this.journal[change % JOURNAL] = record
  }

  /**
   * A record, with its slot, for a client new to the table (in no list, not yet settled), under the lock: forgotten
   * clients give theirs back first (they are the least recently seen); when the table is full, the least recently
   * seen client gives up its record, and with it its slot, unless it was seen after `before` (then -1: no room).
   */
  private room(now: number, before: number): number {
    const header = this.header
    const floats = this.floats
    const tracking = this.settings[TRACKING]
    if (tracking > 0) {
      for (let oldest = header[OLDEST]; oldest >= 0; oldest = header[OLDEST]) {
        if (now - floats[oldest * FLOATS + SEEN] < tracking) break
        this.drop(oldest)
      }
    }
    if (header[COUNT] >= header[CAPACITY]) {
      const record = header[OLDEST]
      if (floats[record * FLOATS + SEEN] > before) return -1
      this.unlink(record)
      this.unchain(record)
      return record
    }
    const record = this.takeRecord()
    const slot = this.takeSlot()
    this.ints[record * INTS + SLOT] = slot
    this.slots[slot] = record
    header[COUNT]++
    return record
  }

  /**
   * Moves the record (in no list) to its place by last visit: after the newest client seen at or before it. A peer's
   * client comes in with its own last visit, which may be older than this table's newest.
   */
  private place(record: number): void {
    const ints = this.ints
    const floats = this.floats
    const seen = floats[record * FLOATS + SEEN]
    let before = this.header[NEWEST]
    while (before >= 0 && floats[before * FLOATS + SEEN] > seen) before = ints[before * INTS + PREV]
    const after = before >= 0 ? ints[before * INTS + NEXT] : this.header[OLDEST]
    ints[record * INTS + PREV] = before
    ints[record * INTS + NEXT] = after
    if (before >= 0) ints[before * INTS + NEXT] = record
    else this.header[OLDEST] = record
    if (after >= 0) ints[after * INTS + PREV] = record
    else this.header[NEWEST] = record
  }

  /** Forgets the record's client: its slot becomes free, and so does the record. */
  private drop(record: number): void {
    const header = this.header
    this.unlink(record)
    this.unchain(record)
    const slot = this.ints[record * INTS + SLOT]
    this.slots[slot] = -1
    this.pushFree(slot)
    this.renew(record)
    header[COUNT]--
    this.ints[record * INTS + NEXT] = header[RECORD_FREE]
    header[RECORD_FREE] = record
  }

  private takeRecord(): number {
    const header = this.header
    const free = header[RECORD_FREE]
    if (free < 0) return header[RECORDS]++
    header[RECORD_FREE] = this.ints[free * INTS + NEXT]
    return free
  }

  /** The slot a new client takes: the lowest free one, else the next above all. */
  private takeSlot(): number {
    const header = this.header
    return header[FREE] > 0 ? this.popFree() : header[HIGH]++
  }

  private chain(record: number): void {
    const at = record * INTS
    const bucket = this.ints[at + HASH] & (this.header[BUCKETS] - 1)
    this.ints[at + CHAIN] = this.buckets[bucket]
    this.buckets[bucket] = record
  }

  private unchain(record: number): void {
    const ints = this.ints
    const at = record * INTS
    const bucket = ints[at + HASH] & (this.header[BUCKETS] - 1)
    let other = this.buckets[bucket]
    if (other === record) {
      this.buckets[bucket] = ints[at + CHAIN]
      return
    }
    while (other >= 0) {
      const next = ints[other * INTS + CHAIN]
      if (next === record) {
        ints[other * INTS + CHAIN] = ints[at + CHAIN]
        return
      }
      other = next
    }
  }

  private unlink(record: number): void {
    const ints = this.ints
    const prev = ints[record * INTS + PREV]
    const next = ints[record * INTS + NEXT]
    if (prev >= 0) ints[prev * INTS + NEXT] = next
    else this.header[OLDEST] = next
    if (next >= 0) ints[next * INTS + PREV] = prev
    else this.header[NEWEST] = prev
  }

  /** Makes the record the most recently seen. */
  private append(record: number): void {
    const ints = this.ints
    const newest = this.header[NEWEST]
    ints[record * INTS + PREV] = newest
    ints[record * INTS + NEXT] = -1
    if (newest >= 0) ints[newest * INTS + NEXT] = record
    else this.header[OLDEST] = record
    this.header[NEWEST] = record
  }

  private pushFree(slot: number): void {
    const heap = this.heap
    let at = this.header[FREE]++
    while (at > 0) {
      const parent = (at - 1) >> 1
      if (heap[parent] <= slot) break
      heap[at] = heap[parent]
      at = parent
    }
    heap[at] = slot
  }

  private popFree(): number {
    const heap = this.heap
    const lowest = heap[0]
    const size = --this.header[FREE]
    if (size > 0) this.siftDown(heap[size], 0, size)
    return lowest
  }

  private siftDown(slot: number, from: number, size: number): void {
    const heap = this.heap
    let at = from
    for (;;) {
      let child = 2 * at + 1
      if (child >= size) break
      if (child + 1 < size && heap[child + 1] < heap[child]) child++
      if (heap[child] >= slot) break
      heap[at] = heap[child]
      at = child
    }
    heap[at] = slot
  }

  /** Keeps only the free slots below `limit`, and makes the heap whole again. */
  private keepFreeBelow(limit: number): void {
    const heap = this.heap
    let size = 0
    for (let i = 0; i < this.header[FREE]; i++) if (heap[i] < limit) heap[size++] = heap[i]
    this.header[FREE] = size
    for (let at = (size >> 1) - 1; at >= 0; at--) this.siftDown(heap[at], at, size)
  }

  /** Grows the buffers (never shrinks them) to hold `capacity` slots, with a power-of-two bucket count. */
  private reserve(capacity: number): void {
    const memory = this.memory
    const buckets = bucketsFor(capacity)
    const records = memory.ints.byteLength < capacity * INTS * 4
    const slots = memory.slots.byteLength < capacity * 4
    const rehash = buckets > this.header[BUCKETS]
    if (!records && !slots && !rehash) return
    if (records) {
      grow(memory.ints, capacity * INTS * 4)
      grow(memory.floats, capacity * FLOATS * 8)
      grow(memory.text, capacity * ADDRESS_MAX)
      for (const row of memory.rows) grow(row, capacity * ROW * 8)
    }
    if (slots) {
      grow(memory.slots, capacity * 4)
      grow(memory.heap, capacity * 4)
    }
    if (rehash) grow(memory.buckets, buckets * 4)
    Atomics.add(this.header, GROWN, 1)
    this.remap()
    if (rehash) {
      this.header[BUCKETS] = buckets
      this.buckets.fill(-1, 0, buckets)
      for (let record = this.header[OLDEST]; record >= 0; record = this.ints[record * INTS + NEXT]) this.chain(record)
    }
  }

  /** The model's resize, once the buffers hold `capacity` slots. */
  private shrink(capacity: number): void {
    const header = this.header
    const slots = this.slots
    Atomics.store(header, CAPACITY, capacity)
    while (header[COUNT] > capacity) this.drop(header[OLDEST])
    const high = header[HIGH]
    if (high <= capacity) return
    header[HIGH] = capacity
    this.keepFreeBelow(capacity)
    for (let slot = capacity; slot < high; slot++) {
      const record = slots[slot]
      if (record < 0) continue
      slots[slot] = -1
      const moved = this.takeSlot()
      this.ints[record * INTS + SLOT] = moved
      slots[moved] = record
    }
    // The slots past the last client are not free slots but the table's unused end.
    let top = header[HIGH]
    while (top > 0 && slots[top - 1] < 0) top--
    header[HIGH] = top
    this.keepFreeBelow(top)
  }

  private reserveScratch(entries: number): void {
    if (this.scratchInts.length >= entries * 3) return
    this.scratchInts = new Int32Array(entries * 3)
    this.scratchFloats = new Float64Array(entries * 4)
    this.scratchText = new Uint8Array(entries * ADDRESS_MAX)
  }

  /** Copies the record's client to scratch entry `n`, bytes summed over the rows of its generation. */
  private copyOut(record: number, n: number): void {
    const ints = this.ints
    const at = record * INTS
    const length = ints[at + LENGTH]
    this.scratchInts[n * 3] = ints[at + SLOT]
    this.scratchInts[n * 3 + 1] = ints[at + SERVER]
    this.scratchInts[n * 3 + 2] = length
    const gen = ints[at + GEN]
    let toClient = 0
    let fromClient = 0
    for (let worker = 0; worker < this.rowGens.length; worker++) {
      if (Atomics.load(this.rowGens[worker], record * ROW * 2) !== gen) continue
      const counts = this.rowCounts[worker]
      toClient += counts[record * ROW + TO_CLIENT]
      fromClient += counts[record * ROW + FROM_CLIENT]
    }
    const floats = this.scratchFloats
    floats[n * 4] = this.floats[record * FLOATS + SEEN]
    floats[n * 4 + 1] = this.floats[record * FLOATS + CONNECTS]
    floats[n * 4 + 2] = toClient
    floats[n * 4 + 3] = fromClient
    const text = this.text
    const scratch = this.scratchText
    for (let i = 0; i < length; i++) scratch[n * ADDRESS_MAX + i] = text[record * ADDRESS_MAX + i]
  }

  private copied(n: number): StickyTable.ClientEntry {
    const ints = this.scratchInts
    const floats = this.scratchFloats
    let address = ""
    for (let i = 0; i < ints[n * 3 + 2]; i++) address += String.fromCharCode(this.scratchText[n * ADDRESS_MAX + i])
    return {
      address,
      server: ints[n * 3 + 1],
      lastSeen: floats[n * 4],
      connects: floats[n * 4 + 1],
      bytesToClient: floats[n * 4 + 2],
      bytesFromClient: floats[n * 4 + 3],
      slot: ints[n * 3]
    }
  }

  private copiedAll(n: number): Array<StickyTable.ClientEntry> {
    const out: Array<StickyTable.ClientEntry> = []
    for (let i = 0; i < n; i++) out.push(this.copied(i))
    return out
  }

  private audit(): Array<string> {
    const out: Array<string> = []
    const header = this.header
    const ints = this.ints
    const capacity = header[CAPACITY]
    const count = header[COUNT]
    const high = header[HIGH]
    const free = header[FREE]
    const records = header[RECORDS]
    const buckets = header[BUCKETS]
    if (count > capacity) out.push(`${count} clients in ${capacity} slots`)
    if (high > capacity) out.push(`high-water mark ${high} above the capacity ${capacity}`)
    if (free + count !== high) out.push(`${free} free and ${count} held slots, high-water mark ${high}`)
    if (buckets < capacity || (buckets & (buckets - 1)) !== 0) out.push(`${buckets} buckets for ${capacity} slots`)
    if (records * INTS > ints.length) out.push(`${records} records in buffers of ${ints.length / INTS}`)
    if (out.length > 0) return out
    // The LRU list: every held client once, links both ways.
    const listed = new Uint8Array(records)
    let n = 0
    let prev = -1
    for (let record = header[OLDEST]; record >= 0; record = ints[record * INTS + NEXT]) {
      if (record >= records || listed[record] === 1) {
        out.push(`LRU list: record ${record} out of range or seen twice`)
        break
      }
      listed[record] = 1
      n++
      const at = record * INTS
      if (ints[at + PREV] !== prev) out.push(`LRU list: record ${record} links back to ${ints[at + PREV]}, not ${prev}`)
      const slot = ints[at + SLOT]
      if (!(slot >= 0 && slot < high && this.slots[slot] === record)) {
        out.push(`record ${record} claims slot ${slot}, which holds ${this.slots[slot]}`)
      }
      const length = ints[at + LENGTH]
      let hash = 0x811c9dc5 | 0
      for (let i = 0; i < length; i++) hash = Math.imul(hash ^ this.text[record * ADDRESS_MAX + i], 0x01000193)
      if (length < 1 || length > ADDRESS_MAX || hash !== ints[at + HASH]) out.push(`record ${record}: bad address hash`)
      const gen = ints[at + GEN]
      if (!(gen >= 1 && gen < GEN_LIMIT)) out.push(`record ${record}: generation ${gen}`)
      prev = record
    }
    if (header[NEWEST] !== prev) out.push(`LRU list ends at ${prev}, the header says ${header[NEWEST]}`)
    if (n !== count) out.push(`LRU list holds ${n} clients, the count is ${count}`)
    // The hash chains: every held client once, in its bucket, each address once.
    const addresses = new Set<string>()
    let chained = 0
    for (let bucket = 0; bucket < buckets; bucket++) {
      let steps = 0
      for (let record = this.buckets[bucket]; record >= 0; record = ints[record * INTS + CHAIN]) {
        if (++steps > count || record >= records || listed[record] !== 1) {
          out.push(`bucket ${bucket}: record ${record} not held, or a cycle`)
          break
        }
        chained++
        if ((ints[record * INTS + HASH] & (buckets - 1)) !== bucket) out.push(`record ${record} in bucket ${bucket}`)
        this.copyOut(record, 0)
        const address = this.copied(0).address
        if (addresses.has(address)) out.push(`${address} held twice`)
        addresses.add(address)
      }
    }
    if (chained !== count) out.push(`hash chains hold ${chained} clients, the count is ${count}`)
    // The free slots: a min-heap of distinct empty slots below the high-water mark; every other slot is held.
    const freed = new Uint8Array(high)
    for (let i = 0; i < free; i++) {
      const slot = this.heap[i]
      if (!(slot >= 0 && slot < high) || freed[slot] === 1) out.push(`free slot ${slot} out of range or twice`)
      else freed[slot] = 1
      if (i > 0 && this.heap[(i - 1) >> 1] > slot) out.push(`free heap out of order at ${i}`)
      if (this.slots[slot] !== -1) out.push(`free slot ${slot} holds record ${this.slots[slot]}`)
    }
    for (let slot = 0; slot < high; slot++) {
      const record = this.slots[slot]
      if (record < 0 && freed[slot] !== 1) out.push(`slot ${slot} is empty but not free`)
      if (record >= 0 && !(record < records && listed[record] === 1 && ints[record * INTS + SLOT] === slot)) {
        out.push(`slot ${slot} holds record ${record}, which is not its client`)
      }
    }
    // The free records: every record ever used is held or free, once.
    let freeRecords = 0
    for (let record = header[RECORD_FREE]; record >= 0; record = ints[record * INTS + NEXT]) {
      if (record >= records || listed[record] !== 0) {
        out.push(`free record ${record} out of range, held or seen twice`)
        break
      }
      listed[record] = 2
      freeRecords++
    }
    if (freeRecords + count !== records) out.push(`${freeRecords} free and ${count} held records of ${records}`)
    return out
  }
}

/** This thread's handle on a table; `worker` is the row it adds bytes to (one writer a row). @category constructors */
export const attach = (memory: Memory, worker: number): StickyMemory => new StickyMemory(memory, worker)

/** Every broken invariant of the table's structure, in words: empty when it is sound. @category diagnostics */
export const check = (memory: Memory): Array<string> => new StickyMemory(memory, 0).violations()

/**
 * Releases the lock if worker `worker` held it when it died (a defect thrown mid-operation, or the thread terminated),
 * so that the other threads do not wait for it forever; whether it did. What the dead worker was changing may be half
 * done: {@link check} says whether the table is still sound. @category operations
 */
export const releaseLockOf = (memory: Memory, worker: number): boolean => {
  const header = new Int32Array(memory.header)
  if (Atomics.load(header, HOLDER) !== worker + 1) return false
  header[HOLDER] = 0
  Atomics.store(header, LOCK, 0)
  Atomics.notify(header, LOCK)
  return true
}
