/**
 * UDP mode's sessions as every worker sees them (`-U --workers N`): which worker holds each session and when it was
 * last active, so that `-x` bounds the sessions of all workers together, and the least recently active session of
 * any worker makes room for a new client, as pen's one table does.
 *
 * A session takes a place on the board with a compare-and-swap, and marks its activity with a plain store. A worker
 * that needs room picks the least recently active session: its own it ends at once; another worker's it marks, and
 * wakes that worker (`Atomics.notify` on the worker's mailbox word, which the worker awaits with `Atomics.waitAsync`),
 * which ends it. No thread waits for another.
 *
 * Times are absolute milliseconds (`performance.timeOrigin + performance.now()`), comparable across threads.
 */

/** The most places the board can grow to. @category constants */
export const PLACES_MAX = 1 << 20

const FREE = 0
/**
 * Header words: the live sessions, the places in use so far, the sessions asked to end and not ended yet, then one
 * mailbox word per worker.
 */
const H_LIVE = 0
const H_LENGTH = 1
const H_ASKED = 2
const H_MAILBOX = 3
/** Per place: owner (worker + 1, or FREE), and whether another worker asked its owner to end it. */
const P_OWNER = 0
const P_EVICT = 1

/** The buffers, as posted to a worker thread. @category models */
export interface Memory {
  readonly ints: SharedArrayBuffer
  readonly times: SharedArrayBuffer
  readonly workers: number
}

const header = (workers: number) => H_MAILBOX + workers

/** A board of `places` places (grown as `-x` grows) for `workers` workers. @category constructors */
export const allocate = (options: { readonly places: number; readonly workers: number }): Memory => {
  const places = Math.max(16, Math.min(PLACES_MAX, options.places))
  const ints = new SharedArrayBuffer((header(options.workers) + places * 2) * 4, {
    maxByteLength: (header(options.workers) + PLACES_MAX * 2) * 4
  })
  new Int32Array(ints)[H_LENGTH] = places
  return {
    ints,
    times: new SharedArrayBuffer(places * 8, { maxByteLength: PLACES_MAX * 8 }),
    workers: options.workers
  }
}

/** The time the board keeps: absolute milliseconds, the same clock in every thread. @category constructors */
export const now = (): number => performance.timeOrigin + performance.now()

/** Which session a worker should end for another: its place, and whether it is the asker's own. @category models */
export interface Victim {
  readonly place: number
  readonly mine: boolean
}

/** One thread's handle on the board, as worker `worker`. @category models */
export class SessionBoard {
  // Fixed-length views, made again when the board has grown past them (a length-tracking view of a growable
  // SharedArrayBuffer costs tens of nanoseconds an access in Node 24).
  private ints!: Int32Array
  private times!: Float64Array
  private readonly base: number
  private readonly mark: number
  private readonly mailbox: number
  private hint = 0
  readonly memory: Memory

  constructor(memory: Memory, worker: number) {
    this.memory = memory
    this.base = header(memory.workers)
    this.mark = worker + 1
    this.mailbox = H_MAILBOX + worker
    this.remap()
  }

  private remap(): void {
    this.ints = new Int32Array(this.memory.ints, 0, this.memory.ints.byteLength / 4)
    this.times = new Float64Array(this.memory.times, 0, this.memory.times.byteLength / 8)
  }

  /** Places in use so far, with views that cover them. */
  private length(): number {
    const length = Atomics.load(this.ints, H_LENGTH)
    if (length > this.times.length) this.remap()
    return length
  }

  /** Live sessions, every worker's, less those already asked to end (their room is made). */
  live(): number {
    return Atomics.load(this.ints, H_LIVE) - Atomics.load(this.ints, H_ASKED)
  }

  /** Grows the board to `places` places (the main thread, when `-x` grows). */
  ensure(places: number): void {
    const want = Math.min(PLACES_MAX, places)
    if (want <= Atomics.load(this.ints, H_LENGTH)) return
    this.memory.times.grow(want * 8)
    this.memory.ints.grow((this.base + want * 2) * 4)
    this.remap()
    Atomics.store(this.ints, H_LENGTH, want)
  }

  /** A place for a new session of this worker, active now; -1 when the board is full. */
  take(time: number): number {
    const length = this.length()
    const ints = this.ints
    for (let i = 0, place = this.hint; i < length; i++, place = place + 1 >= length ? 0 : place + 1) {
      const word = this.base + place * 2
      if (Atomics.load(ints, word + P_OWNER) !== FREE) continue
      if (Atomics.compareExchange(ints, word + P_OWNER, FREE, this.mark) !== FREE) continue
      // A worker may have asked to end the session that held the place just as it ended: that ask is void.
      if (Atomics.exchange(ints, word + P_EVICT, 0) !== 0) Atomics.sub(ints, H_ASKED, 1)
      this.times[place] = time
      Atomics.add(ints, H_LIVE, 1)
      this.hint = place + 1 >= length ? 0 : place + 1
      return place
    }
    return -1
  }

  /** The session in `place` was active at `at`. */
  touch(place: number, time: number): void {
    this.times[place] = time
  }

  /** The session in `place` (this worker's) ended. */
  release(place: number): void {
    const at = this.base + place * 2
    const ints = this.ints
    if (Atomics.load(ints, at + P_OWNER) !== this.mark) return
    if (Atomics.exchange(ints, at + P_EVICT, 0) !== 0) Atomics.sub(ints, H_ASKED, 1)
    Atomics.store(ints, at + P_OWNER, FREE)
    Atomics.sub(ints, H_LIVE, 1)
  }

  /**
   * Picks the least recently active session no one has asked to end yet: this worker's own (`mine`), which the caller
   * ends, or another's, which is marked and its worker woken to end it. Undefined when there is none.
   */
  evictOldest(): Victim | undefined {
    const length = this.length()
    const ints = this.ints
    let oldest = -1
    let oldestAt = Infinity
    for (let place = 0; place < length; place++) {
      const at = this.base + place * 2
      if (Atomics.load(ints, at + P_OWNER) === FREE || Atomics.load(ints, at + P_EVICT) !== 0) continue
      const active = this.times[place]!
      if (active < oldestAt) {
        oldest = place
        oldestAt = active
      }
    }
    if (oldest < 0) return undefined
    const at = this.base + oldest * 2
    const owner = Atomics.load(ints, at + P_OWNER)
    if (owner === this.mark) return { place: oldest, mine: true }
    if (owner === FREE || Atomics.compareExchange(ints, at + P_EVICT, 0, 1) !== 0) return this.evictOldest()
    Atomics.add(ints, H_ASKED, 1)
    const mailbox = H_MAILBOX + owner - 1
    Atomics.add(ints, mailbox, 1)
    Atomics.notify(ints, mailbox)
    return { place: oldest, mine: false }
  }

  /** Frees every place worker `worker` held (it died: its sessions are gone), from the main thread; how many. */
  releaseAllOf(worker: number): number {
    const length = this.length()
    const ints = this.ints
    let released = 0
    for (let place = 0; place < length; place++) {
      const at = this.base + place * 2
      if (Atomics.compareExchange(ints, at + P_OWNER, worker + 1, FREE) !== worker + 1) continue
      if (Atomics.exchange(ints, at + P_EVICT, 0) !== 0) Atomics.sub(ints, H_ASKED, 1)
      Atomics.sub(ints, H_LIVE, 1)
      released++
    }
    return released
  }

  /** This worker's sessions that another worker asked it to end. */
  asked(): Array<number> {
    const length = this.length()
    const out: Array<number> = []
    for (let place = 0; place < length; place++) {
      const at = this.base + place * 2
      if (Atomics.load(this.ints, at + P_OWNER) === this.mark && Atomics.load(this.ints, at + P_EVICT) !== 0) {
        out.push(place)
      }
    }
    return out
  }

  /**
   * Calls `onAsked` each time another worker asks this one to end sessions, until `stopped()` says so (checked at
   * least every second).
   */
  watch(onAsked: () => void, stopped: () => boolean): void {
    const wait = () => {
      if (stopped()) return
      const seen = Atomics.load(this.ints, this.mailbox)
      const result = Atomics.waitAsync(this.ints, this.mailbox, seen, 1_000)
      const next = () => {
        if (stopped()) return
        if (Atomics.load(this.ints, this.mailbox) !== seen) onAsked()
        wait()
      }
      if (result.async) void result.value.then(next)
      else queueMicrotask(next)
    }
    wait()
  }
}
