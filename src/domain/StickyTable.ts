/**
 * The core of pen's sticky client table: client address -> the server it used last, a fixed number of slots,
 * least-recently-used eviction and an optional tracking time after which a client is forgotten.
 *
 * Each client holds a slot, numbered as pen numbers them: a new client takes the lowest free slot, or, when the table
 * is full, the slot of the client it evicts. Listings (`recent`, the status page) go in slot order, as pen's do.
 *
 * Sans-IO: time is passed in, nothing is read from a clock. A visit is O(1) (a `Map` keeps insertion order, so
 * re-inserting on each visit makes its first key the least recently used); pen scans the whole table instead.
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
  /** Its slot in the table (pen's client index): listings go in slot order. */
  slot: number
}

/** A sticky table. Mutable on purpose: it is touched once per connection. @category models */
export interface StickyTable {
  /** Slots; change it with `resize`. */
  capacity: number
  /** Milliseconds after which a client that has not connected is forgotten; 0 keeps it forever. */
  trackingMillis: number
  /** The clients, least recently seen first. */
  readonly entries: Map<string, ClientEntry>
  /** The clients by slot; a hole is a free slot. Never longer than `capacity`. */
  readonly slots: Array<ClientEntry | undefined>
  /** The free slots below `slots.length`, lowest first (left by forgotten clients). */
  readonly free: Array<number>
}

/** Makes an empty table with `capacity` slots (at least one). @category constructors */
export const make = (capacity: number, trackingMillis: number): StickyTable => ({
  capacity: Math.max(1, Math.floor(capacity)),
  trackingMillis: Math.max(0, trackingMillis),
  entries: new Map(),
  slots: [],
  free: []
})

const isExpired = (table: StickyTable, entry: ClientEntry, now: number): boolean =>
  table.trackingMillis > 0 && now - entry.lastSeen >= table.trackingMillis

/** Forgets `entry`: its slot becomes free. */
const drop = (table: StickyTable, entry: ClientEntry): void => {
  table.entries.delete(entry.address)
  table.slots[entry.slot] = undefined
  const free = table.free
  let i = free.length
  while (i > 0 && free[i - 1]! > entry.slot) i--
  free.splice(i, 0, entry.slot)
}

/** The slot a new client takes: the lowest free one (the table has room). */
const takeSlot = (table: StickyTable): number => table.free.shift() ?? table.slots.length

const fresh = (address: string, slot: number, now: number): ClientEntry => ({
  address,
  server: NO_SERVER,
  lastSeen: now,
  connects: 0,
  bytesToClient: 0,
  bytesFromClient: 0,
  slot
})

/**
 * Records a connection from `address` at `now` and returns its entry: the known entry moved to most recently used,
 * or a fresh one (no server). A client that was forgotten (its tracking time ran out) starts afresh in the slot it
 * had, as in pen. A new client takes the lowest free slot (clients forgotten meanwhile free theirs first); when the
 * table is full, it evicts the least recently used client and takes its slot.
 *
 * @category operations
 */
export const visit = (table: StickyTable, address: string, now: number): ClientEntry => {
  const entries = table.entries
  let entry = entries.get(address)
  if (entry !== undefined) {
    entries.delete(address)
    if (isExpired(table, entry, now)) {
      entry = fresh(address, entry.slot, now)
      table.slots[entry.slot] = entry
    }
  } else {
    // Forgotten clients are the least recently seen: they are at the front, and give their slots back first.
    if (table.trackingMillis > 0) {
      for (const first of entries.values()) {
        if (!isExpired(table, first, now)) break
        drop(table, first)
      }
    }
    let slot: number
    if (entries.size >= table.capacity) {
      const lru = entries.values().next().value!
      entries.delete(lru.address)
      slot = lru.slot
    } else {
      slot = takeSlot(table)
    }
    entry = fresh(address, slot, now)
    table.slots[slot] = entry
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
 * Remembered clients at `now` in table order: by slot, as pen lists them (`recent`, the status page) and numbers
 * them (`connection N`, the page's client column). @category operations
 */
export const inOrder = (table: StickyTable, now: number): Array<ClientEntry> => {
  const out: Array<ClientEntry> = []
  for (const entry of table.slots) if (entry !== undefined && !isExpired(table, entry, now)) out.push(entry)
  return out
}

/** Remembered clients at `now`, most recently seen first. @category operations */
export const recent = (table: StickyTable, now: number): Array<ClientEntry> => {
  const out: Array<ClientEntry> = []
  for (const entry of table.entries.values()) if (!isExpired(table, entry, now)) out.push(entry)
  return out.toReversed()
}

/** Drops the clients whose tracking time has run out, so they stop holding slots. @category operations */
export const sweep = (table: StickyTable, now: number): number => {
  let dropped = 0
  for (const entry of table.entries.values()) {
    if (isExpired(table, entry, now)) {
      drop(table, entry)
      dropped++
    }
  }
  return dropped
}

/**
 * Changes the number of slots (at least one). Shrinking evicts the least recently used clients that no longer fit,
 * then moves the clients left in slots past the new end to the lowest free slots, in slot order (pen's table only
 * grows: it ignores a smaller size).
 */
export const resize = (table: StickyTable, capacity: number): void => {
  table.capacity = Math.max(1, Math.floor(capacity))
  const { entries, slots } = table
  while (entries.size > table.capacity) drop(table, entries.values().next().value!)
  if (slots.length <= table.capacity) return
  const moving = slots.slice(table.capacity).filter((entry) => entry !== undefined)
  slots.length = table.capacity
  const free = table.free
  while (free.length > 0 && free[free.length - 1]! >= table.capacity) free.pop()
  for (const entry of moving) {
    entry.slot = takeSlot(table)
    slots[entry.slot] = entry
  }
  // The slots past the last client are not free slots but the table's unused end.
  while (slots.length > 0 && slots[slots.length - 1] === undefined) slots.pop()
  while (free.length > 0 && free[free.length - 1]! >= slots.length) free.pop()
}
