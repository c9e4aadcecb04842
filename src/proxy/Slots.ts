/**
 * pen's connection table, shared by the TCP and UDP proxies: each live connection (or UDP session) holds a slot
 * number, so that `close N`, `connection N` and the status page can name it.
 */

/** One live connection as pen's `connection N` and status page show it. @category models */
export interface ConnectionInfo {
  readonly slot: number
  /** pen's state bits: 1 while the server is being dialed, 2 once relaying. */
  readonly state: 1 | 2
  /** The client's and the server's socket descriptors (-1 when there is none). */
  readonly downfd: number
  readonly upfd: number
  /** Bytes queued towards the client and towards the server. */
  readonly pendingDown: number
  readonly pendingUp: number
  readonly client: string
  readonly server: number
}

/** Something that holds a slot: it can describe itself and be ended. @category models */
export interface Slotted {
  readonly info: (slot: number) => ConnectionInfo
  readonly abort: () => void
}

/**
 * The table. A new connection takes the first free slot from the last one taken, wrapping at the table's size, as
 * pen's store_conn does, so connections are numbered (and listed) as pen numbers them. With short connections the
 * last slot taken is usually free again, and taking one is O(1); the scan is longer only while many are live.
 *
 * @category models
 */
export class Slots {
  private readonly entries: Array<Slotted | undefined> = []
  /** The slot taken last (pen's connections_last): the scan for a free one starts there. */
  private last = 0

  /**
   * `size` is the table's size (pen's connections_max, `-x`), where the scan wraps. A table with every slot taken
   * (the limit was raised at run time, or no size was given) grows by one.
   */
  constructor(private readonly size = 0) {}

  take(entry: Slotted): number {
    const entries = this.entries
    const size = Math.max(this.size, entries.length)
    for (let i = 0, slot = this.last; i < size; i++, slot = slot + 1 === size ? 0 : slot + 1) {
      if (entries[slot] === undefined) return this.put(slot, entry)
    }
    return this.put(size, entry)
  }

  private put(slot: number, entry: Slotted): number {
    this.entries[slot] = entry
    this.last = slot
    return slot
  }

  release(slot: number): void {
    this.entries[slot] = undefined
  }

  get(slot: number): Slotted | undefined {
    return this.entries[slot]
  }

  /** Ends the connection in `slot` (pen's `close N`); whether there was one. */
  close(slot: number): boolean {
    const entry = this.entries[slot]
    entry?.abort()
    return entry !== undefined
  }

  /** Ends every connection (or session) to server `index` (`--on-down close`); how many there were. */
  closeServer(index: number): number {
    let closed = 0
    this.entries.forEach((entry, slot) => {
      if (entry !== undefined && entry.info(slot).server === index) {
        entry.abort()
        closed++
      }
    })
    return closed
  }

  list(): Array<ConnectionInfo> {
    const out: Array<ConnectionInfo> = []
    this.entries.forEach((entry, slot) => {
      if (entry !== undefined) out.push(entry.info(slot))
    })
    return out
  }
}
