/**
 * The core of pen's sticky client table: client address -> the server it used last, a fixed number of slots,
 * least-recently-used eviction and an optional tracking time after which a client is forgotten.
 *
 * Sans-IO: time is passed in, nothing is read from a clock. Every operation is O(1) (a `Map` keeps insertion order,
 * so re-inserting on each visit makes its first key the least recently used); pen scans the whole table instead.
 */

/** No server remembered for this client. @category constants */
export const NO_SERVER = -1

/** What the table remembers about one client address. @category models */
export interface ClientEntry {
  readonly address: string
  /** The server this client used last, or {@link NO_SERVER}. */
  server: number
  /** Time of the client's last connection, in milliseconds. */
  lastSeen: number
  /** Connections since the entry was created. */
  connects: number
  /** Bytes sent to the client, and received from it, since the entry was created. */
  bytesToClient: number
  bytesFromClient: number
}

/** A sticky table. Mutable on purpose: it is touched once per connection. @category models */
export interface StickyTable {
  /** Slots; lowering it evicts the least recently used clients at their next visit (`resize` does it at once). */
  capacity: number
  /** Milliseconds after which a client that has not connected is forgotten; 0 keeps it forever. */
  trackingMillis: number
  readonly entries: Map<string, ClientEntry>
}

/** Makes an empty table with `capacity` slots (at least one). @category constructors */
export const make = (capacity: number, trackingMillis: number): StickyTable => ({
  capacity: Math.max(1, Math.floor(capacity)),
  trackingMillis: Math.max(0, trackingMillis),
  entries: new Map()
})

const isExpired = (table: StickyTable, entry: ClientEntry, now: number): boolean =>
  table.trackingMillis > 0 && now - entry.lastSeen >= table.trackingMillis

/**
 * Records a connection from `address` at `now` and returns its entry: the known entry moved to most recently used,
 * or a fresh one (no server) when the client is new or was forgotten, evicting the least recently used client when
 * the table is full.
 *
 * @category operations
 */
export const visit = (table: StickyTable, address: string, now: number): ClientEntry => {
  const entries = table.entries
  let entry = entries.get(address)
  if (entry !== undefined) {
    entries.delete(address)
    if (isExpired(table, entry, now)) entry = undefined
  }
  if (entry === undefined) {
    while (entries.size >= table.capacity) {
      entries.delete(entries.keys().next().value!)
    }
    entry = { address, server: NO_SERVER, lastSeen: now, connects: 0, bytesToClient: 0, bytesFromClient: 0 }
  }
  entry.lastSeen = now
  entry.connects++
  entries.set(address, entry)
  return entry
}

/** The entry of `address` if the client is remembered at `now`, without touching it. @category operations */
export const lookup = (table: StickyTable, address: string, now: number): ClientEntry | undefined => {
  const entry = table.entries.get(address)
  return entry === undefined || isExpired(table, entry, now) ? undefined : entry
}

/**
 * Remembered clients at `now` in table order: least recently seen first (the order of eviction; it stands for the
 * order of pen's slots, by which the status page and `connection N` number clients). @category operations
 */
export const inOrder = (table: StickyTable, now: number): Array<ClientEntry> => {
  const out: Array<ClientEntry> = []
  for (const entry of table.entries.values()) if (!isExpired(table, entry, now)) out.push(entry)
  return out
}

/** Remembered clients at `now`, most recently seen first. @category operations */
export const recent = (table: StickyTable, now: number): Array<ClientEntry> => inOrder(table, now).toReversed()

/** Drops the clients whose tracking time has run out, so they stop holding slots. @category operations */
export const sweep = (table: StickyTable, now: number): number => {
  let dropped = 0
  for (const [address, entry] of table.entries) {
    if (isExpired(table, entry, now)) {
      table.entries.delete(address)
      dropped++
    }
  }
  return dropped
}

/** Changes the number of slots (at least one), evicting the least recently used clients that no longer fit. */
export const resize = (table: StickyTable, capacity: number): void => {
  table.capacity = Math.max(1, Math.floor(capacity))
  while (table.entries.size > table.capacity) table.entries.delete(table.entries.keys().next().value!)
}
