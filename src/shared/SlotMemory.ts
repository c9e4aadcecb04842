/**
 * pen's connection numbers, one set for every thread: which slot of the connection table each live connection holds,
 * and which thread holds it (so that `close N` reaches the right one). A slot is taken with a compare-and-swap, so two
 * threads never number two connections alike; a connection's own details stay with the thread that serves it.
 *
 * Numbered as pen's store_conn numbers them: the first free slot from the last one taken, wrapping at the table's size
 * (`-x`); a table with every slot taken grows by one (the limit was raised at run time).
 */

/** Slots reserved beyond which the table cannot grow. @category constants */
export const SLOTS_MAX = 1 << 22

/** Free, in the owner word of a slot. */
const FREE = 0

const H_LAST = 0
/** The slots in use so far: the table's size, or more when it grew. */
const H_LENGTH = 1
const HEADER = 2

/** The buffer, as posted to a worker thread. @category models */
export interface Memory {
  readonly buffer: SharedArrayBuffer | ArrayBuffer
}

/** A table of `size` slots (at least one), shared between threads or not. @category constructors */
export const allocate = (options: { readonly size: number; readonly shared: boolean }): Memory => {
  const size = Math.max(1, Math.min(SLOTS_MAX, options.size))
  const bytes = (HEADER + size) * 4
  const max = (HEADER + SLOTS_MAX) * 4
  const buffer = options.shared
    ? new SharedArrayBuffer(bytes, { maxByteLength: max })
    : new ArrayBuffer(bytes, { maxByteLength: max })
  new Int32Array(buffer)[H_LENGTH] = size
  return { buffer }
}

/** One thread's handle: it takes slots as thread `owner` (0, 1, ...). @category models */
export class SlotTable {
  // A fixed-length view, made again when the table has grown past it (a view that tracks a growable buffer's length
  // costs tens of nanoseconds an access in Node 24).
  private words!: Int32Array
  private readonly mark: number
  readonly memory: Memory

  constructor(memory: Memory, owner: number) {
    this.memory = memory
    this.mark = owner + 1
    this.remap()
  }

  private remap(): void {
    this.words = new Int32Array(this.memory.buffer, 0, this.memory.buffer.byteLength / 4)
  }

  /** The table's length now, with a view that covers it. */
  private length(): number {
    const length = Atomics.load(this.words, H_LENGTH)
    if (HEADER + length > this.words.length) this.remap()
    return length
  }

  /** Takes a free slot for this thread: pen's number for a new connection. */
  take(): number {
    while (true) {
      const length = this.length()
      const words = this.words
      let slot = Atomics.load(words, H_LAST)
      for (let i = 0; i < length; i++, slot = slot + 1 >= length ? 0 : slot + 1) {
        if (Atomics.load(words, HEADER + slot) === FREE && this.claim(slot)) return slot
      }
      // Every slot is taken: the table grows by one (the threads that get here together each add their own). The
      // buffer grows first, a few slots ahead, so that no thread reads past it once the length says more.
      this.reserve(length + 64)
      const grown = Atomics.add(this.words, H_LENGTH, 1)
      if (grown >= SLOTS_MAX) {
        Atomics.sub(this.words, H_LENGTH, 1)
        throw new RangeError(`more than ${SLOTS_MAX} connections`)
      }
      this.reserve(grown + 1)
      if (this.claim(grown)) return grown
    }
  }

  private claim(slot: number): boolean {
    if (Atomics.compareExchange(this.words, HEADER + slot, FREE, this.mark) !== FREE) return false
    Atomics.store(this.words, H_LAST, slot)
    return true
  }

  /** Makes room for `slots` slots in the buffer (another thread may have made it already). */
  private reserve(slots: number): void {
    const bytes = (HEADER + Math.min(slots, SLOTS_MAX)) * 4
    const buffer = this.memory.buffer
    if (buffer.byteLength < bytes) {
      try {
        if (buffer instanceof SharedArrayBuffer) buffer.grow(bytes)
        else buffer.resize(bytes)
      } catch (error) {
        // Another thread grew it past `bytes` in between: a SharedArrayBuffer never shrinks.
        if (buffer.byteLength < bytes) throw error
      }
    }
    if (this.words.byteLength < bytes) this.remap()
  }

  /** Frees `slot` (it must be this thread's). */
  release(slot: number): void {
    if (HEADER + slot >= this.words.length) this.remap()
    Atomics.compareExchange(this.words, HEADER + slot, this.mark, FREE)
  }

  /** Frees every slot thread `owner` holds (it died, from the main thread); how many there were. */
  releaseAllOf(owner: number): number {
    const length = this.length()
    const words = this.words
    let released = 0
    for (let slot = 0; slot < length; slot++) {
      if (Atomics.compareExchange(words, HEADER + slot, owner + 1, FREE) === owner + 1) released++
    }
    return released
  }

  /** The thread holding `slot` (0, 1, ...), or -1 when it is free or out of the table. */
  owner(slot: number): number {
    if (slot < 0 || slot >= this.length()) return -1
    return Atomics.load(this.words, HEADER + slot) - 1
  }
}
