/**
 * The buffers that bytes wait in between a read from one socket and the completion of their write to the other.
 *
 * Every socket reads into one shared buffer (see `Relay.ts`), so a chunk has to be copied out before the next read
 * overwrites it: it is copied into a buffer borrowed here, written from there, and the buffer comes back when the
 * write completes. Buffers are allocated once and reused, so relaying allocates no memory that the garbage collector
 * must later find (each fresh read buffer is external memory, and V8 answers every ~64 MB of it with a full
 * mark-compact). A connection holds buffers only while its writes are pending, and back-pressure bounds how many that
 * is; an idle connection holds none.
 */

/** Bytes in each pooled buffer: the largest read, so any chunk fits in a fresh buffer. @category constants */
export const BUFFER_SIZE = 64 * 1024

/** How many free buffers the pool keeps by default (16 MiB); buffers given back beyond that are left to the GC. */
export const DEFAULT_MAX_FREE = 256

/** Counters of a pool at one instant. @category models */
export interface PoolStats {
  /** Buffers the pool owns: lent out plus free. */
  readonly buffers: number
  /** Buffers lent out now (bytes waiting for a write to complete). */
  readonly inUse: number
  /** Bytes of all the pool's buffers. */
  readonly bytes: number
}

function ignore() {}

/**
 * A pool of {@link BUFFER_SIZE}-byte buffers, lent and given back; it grows on demand and keeps at most `maxFree`
 * free ones.
 */
export class BufferPool {
  private readonly free: Array<Buffer> = []
  private owned = 0
  private lent = 0

  /**
   * `report` is told the buffers owned and lent out at each change (StatsReporter's figures, summed over threads).
   */
  constructor(
    readonly maxFree: number = DEFAULT_MAX_FREE,
    private readonly report: (owned: number, lent: number) => void = ignore
  ) {}

  /** A buffer of {@link BUFFER_SIZE} bytes, with stale contents; give it back when nothing refers to it any more. */
  borrow(): Buffer {
    this.lent++
    const buffer = this.free.pop()
    if (buffer === undefined) this.owned++
    this.report(this.owned, this.lent)
    return buffer ?? Buffer.allocUnsafeSlow(BUFFER_SIZE)
  }

  /** Returns a buffer borrowed from this pool. */
  giveBack(buffer: Buffer): void {
    this.lent--
    if (this.free.length < this.maxFree) this.free.push(buffer)
    else this.owned--
    this.report(this.owned, this.lent)
  }

  stats(): PoolStats {
    return { buffers: this.owned, inUse: this.lent, bytes: this.owned * BUFFER_SIZE }
  }
}
