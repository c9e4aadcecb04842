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
 * The table. Taking and freeing a slot is O(1) (a free list: the slot freed last is taken first; pen scans for a
 * free slot from the last one it used).
 *
 * @category models
 */
export class Slots {
  private readonly entries: Array<Slotted | undefined> = []
  private readonly free: Array<number> = []

  take(entry: Slotted): number {
    const slot = this.free.pop()
    if (slot !== undefined) {
      this.entries[slot] = entry
      return slot
    }
    return this.entries.push(entry) - 1
  }

  release(slot: number): void {
    this.entries[slot] = undefined
    this.free.push(slot)
  }

  get(slot: number): Slotted | undefined {
    return this.entries[slot]
  }

  list(): Array<ConnectionInfo> {
    const out: Array<ConnectionInfo> = []
    this.entries.forEach((entry, slot) => {
      if (entry !== undefined) out.push(entry.info(slot))
    })
    return out
  }
}
