/**
 * pen's two limits on taking a new client, counted for the whole balancer: `-x`, the live connections, and
 * `pending_max`, the connects to servers in progress. With worker threads both live in one Int32Array over a
 * SharedArrayBuffer that every thread reads and writes with Atomics (`net/TcpServer.ts` takes and gives back `-x`'s
 * places, {@link Dials} the dials'); a thread whose clients wait for a place waits (without blocking) on one word that
 * every thread bumps when it frees a place while some thread waits.
 *
 * With one thread there is no such memory: the listener counts its own connections, and {@link Dials} counts in a plain
 * field.
 */

/** Live connections of every thread (`-x`). @category constants */
export const LIVE = 0
/** Threads waiting for a place to free ({@link FREED}). @category constants */
export const WAITING = 1
/** Set once the balancer stops: no thread takes a waiting client any more. @category constants */
export const STOPPED = 2
/** Connects to servers in progress, of every thread (`pending_max`). @category constants */
export const DIALS = 3
/** Bumped whenever a place frees while a thread waits: what a waiting thread waits on. @category constants */
export const FREED = 4
/** Then one word per thread: the dials it holds, given back if it dies. */
const ROWS = 5

/** pen's default `pending_max`. @category constants */
export const PENDING_MAX = 100

/** The admission memory for `workers` threads that serve. @category constructors */
export const allocate = (workers: number): SharedArrayBuffer => new SharedArrayBuffer((ROWS + workers) * 4)

/**
 * Wakes the threads waiting for a place, if any. Called after a place was given back: a thread that found none
 * announced itself ({@link WAITING}) before it looked, so that either it sees the place, or the bump of {@link FREED}
 * here wakes it (or stops it from sleeping).
 */
export const wake = (words: Int32Array): void => {
  if (Atomics.load(words, WAITING) === 0) return
  Atomics.add(words, FREED, 1)
  Atomics.notify(words, FREED)
}

/** Gives back the dials worker `worker` held when it died (then {@link wake} the waiting threads); how many. */
export const reclaimDials = (words: Int32Array, worker: number): number => {
  const held = words[ROWS + worker]!
  words[ROWS + worker] = 0
  if (held > 0) Atomics.sub(words, DIALS, held)
  return held
}

/**
 * pen's `pending_max`: the connects to servers in progress, and the limit beyond which a new client waits, unread,
 * until one ends (the listener asks {@link reserve} before it takes a client). One thread's handle; with workers, over
 * the admission memory, each thread's own dials in its own word (a dead worker's are given back).
 *
 * A client taken under the limit holds one place, which its connection passes on to its first dial or gives back
 * ({@link release}). A dial that starts without a place (a failover after the place was given back, a dial after a TLS
 * handshake) takes one regardless ({@link add}): the limit is checked when a client is taken, as pen checks it only
 * before accept().
 * @category models
 */
export class Dials {
  private local = 0
  /** One thread: a reservation failed, and the listener waits for {@link onFree}. */
  private blocked = false
  private readonly own: number

  constructor(
    /** `pending_max`: clients wait once this many connects are in progress. */
    private limit: number,
    /** The admission memory with workers, and this thread's number; undefined with one thread. */
    private readonly words?: Int32Array | undefined,
    worker = 0
  ) {
    this.own = ROWS + worker
  }

  /** One thread: called (in a microtask) when a place frees after a reservation failed; the listener drains then. */
  onFree: () => void = () => {}

  /** `pending_max` now. */
  get max(): number {
    return this.limit
  }

  /** Sets `pending_max` (at least 1); a higher limit lets waiting clients in at once. */
  setMax(n: number): void {
    this.limit = Math.max(1, n)
    this.freed()
  }

  /** Connects in progress now (every thread's). */
  get inProgress(): number {
    return this.words === undefined ? this.local : Atomics.load(this.words, DIALS)
  }

  /** Whether a reservation would succeed now (it may not, a moment later, with workers). */
  get free(): boolean {
    return this.inProgress < this.limit
  }

  /** Takes a place for a new client, if fewer than `pending_max` connects are in progress; false leaves it waiting. */
  reserve(): boolean {
    const words = this.words
    if (words === undefined) {
      if (this.local < this.limit) {
        this.local++
        return true
      }
      this.blocked = true
      return false
    }
    for (let n = Atomics.load(words, DIALS); n < this.limit;) {
      const seen = Atomics.compareExchange(words, DIALS, n, n + 1)
      if (seen === n) {
        words[this.own]!++
        return true
      }
      n = seen
    }
    return false
  }

  /** Takes a place whatever the count: a dial that starts without one. */
  add(): void {
    const words = this.words
    if (words === undefined) {
      this.local++
      return
    }
    Atomics.add(words, DIALS, 1)
    words[this.own]!++
  }

  /** Gives a place back: the dial connected or ended, or the client ended before dialing. */
  release(): void {
    const words = this.words
    if (words === undefined) {
      this.local--
    } else {
      words[this.own]!--
      Atomics.sub(words, DIALS, 1)
    }
    this.freed()
  }

  private freed(): void {
    if (this.words !== undefined) return wake(this.words)
    if (!this.blocked) return
    this.blocked = false
    queueMicrotask(this.onFree)
  }
}
