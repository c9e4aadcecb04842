import * as SlotMemory from "../shared/SlotMemory.ts"

/**
 * pen's connection table, shared by the TCP and UDP proxies: each live connection (or UDP session) holds a slot
 * number, so that `close N`, `connection N` and the status page can name it.
 */

import type { ConnectionInfo } from "../domain/Connection.ts"

export type { ConnectionInfo } from "../domain/Connection.ts"

/** Something that holds a slot: it can describe itself and be ended. @category models */
export interface Slotted {
  readonly info: (slot: number) => ConnectionInfo
  readonly abort: () => void
}

/**
 * The table of one thread's connections, numbered in the {@link SlotMemory.SlotTable} every thread shares: a new
 * connection takes the first free slot from the last one taken, wrapping at the table's size, as pen's store_conn
 * does, so connections are numbered (and listed) as pen numbers them. With short connections the last slot taken is
 * usually free again, and taking one is O(1); the scan is longer only while many are live.
 *
 * @category models
 */
export class Slots<T extends Slotted = Slotted> {
  private readonly entries = new Map<number, T>()
  private readonly numbers: SlotMemory.SlotTable

  /**
   * `size` is the table's size (pen's connections_max, `-x`), where the scan wraps; a table with every slot taken (the
   * limit was raised at run time) grows by one. With `shared`, the numbers are those of every worker thread.
   */
  constructor(size = 1, shared?: { readonly memory: SlotMemory.Memory; readonly worker: number }) {
    this.numbers = shared === undefined
      ? new SlotMemory.SlotTable(SlotMemory.allocate({ size, shared: false }), 0)
      : new SlotMemory.SlotTable(shared.memory, shared.worker)
  }

  take(entry: T): number {
    const slot = this.numbers.take()
    this.entries.set(slot, entry)
    return slot
  }

  release(slot: number): void {
    if (this.entries.delete(slot)) this.numbers.release(slot)
  }

  get(slot: number): T | undefined {
    return this.entries.get(slot)
  }

  /** The thread that holds `slot` (0 with one thread), or -1 when no connection holds it. */
  owner(slot: number): number {
    return this.numbers.owner(slot)
  }

  /** Ends this thread's connection in `slot` (pen's `close N`); whether there was one. */
  close(slot: number): boolean {
    const entry = this.entries.get(slot)
    entry?.abort()
    return entry !== undefined
  }

  /** Ends every connection (or session) to server `index` (`--on-down close`); how many there were. */
  closeServer(index: number): number {
    let closed = 0
    // Ending a connection releases its slot: a Map may lose entries while it is iterated.
    for (const [slot, entry] of this.entries) {
      if (entry.info(slot).server === index) {
        entry.abort()
        closed++
      }
    }
    return closed
  }

  /** Calls `visit` with each of this thread's connections (and its slot), in no particular order. */
  each(visit: (entry: T, slot: number) => void): void {
    this.entries.forEach(visit)
  }

  /** This thread's live connections, by slot. */
  list(): Array<ConnectionInfo> {
    return [...this.entries].toSorted((a, b) => a[0] - b[0]).map(([slot, entry]) => entry.info(slot))
  }
}
