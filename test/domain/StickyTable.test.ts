import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as StickyTable from "../../src/domain/StickyTable.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

/** One connection: which of a few clients, how long after the previous one (ms), the server it ends up on. */
const Visit = Schema.Struct({ client: int(0, 7), gap: int(0, 400), server: int(0, 4) })
const Visits = Schema.Array(Visit).check(Schema.isMaxLength(60))

const addressOf = (client: number) => `10.0.0.${client + 1}`

/** Reference model of the table: remembered clients in least- to most-recently-seen order. */
interface ModelEntry {
  readonly address: string
  server: number
  lastSeen: number
  connects: number
}

const modelVisit = (
  model: Array<ModelEntry>,
  capacity: number,
  tracking: number,
  address: string,
  now: number
): ModelEntry => {
  const at = model.findIndex((e) => e.address === address)
  let entry: ModelEntry | undefined
  if (at >= 0) {
    entry = model.splice(at, 1)[0]!
    if (tracking > 0 && now - entry.lastSeen >= tracking) entry = undefined
  }
  if (entry === undefined) {
    while (model.length >= capacity) model.shift()
    entry = { address, server: StickyTable.NO_SERVER, lastSeen: now, connects: 0 }
  }
  entry.lastSeen = now
  entry.connects++
  model.push(entry)
  return entry
}

const addresses = (entries: ReadonlyArray<{ readonly address: string }>) => entries.map((e) => e.address)

describe("StickyTable.make", () => {
  it("has at least one slot and no negative tracking time", () => {
    assert.strictEqual(StickyTable.make(0, 0).capacity, 1)
    assert.strictEqual(StickyTable.make(3.7, 0).capacity, 3)
    assert.strictEqual(StickyTable.make(5, -10).trackingMillis, 0)
    assert.strictEqual(StickyTable.make(2048, 0).entries.size, 0)
  })
})

describe("StickyTable.visit", () => {
  it("a new client gets a fresh entry with no server", () => {
    const table = StickyTable.make(4, 0)
    const entry = StickyTable.visit(table, "10.0.0.1", 1000)
    assert.strictEqual(entry.address, "10.0.0.1")
    assert.strictEqual(entry.server, StickyTable.NO_SERVER)
    assert.strictEqual(entry.connects, 1)
    assert.strictEqual(entry.lastSeen, 1000)
  })

  it("a known client keeps its entry and server, and its connects count", () => {
    const table = StickyTable.make(4, 0)
    const first = StickyTable.visit(table, "10.0.0.1", 1000)
    first.server = 2
    first.bytesToClient = 77
    StickyTable.visit(table, "10.0.0.2", 1500)
    const again = StickyTable.visit(table, "10.0.0.1", 2000)
    assert.strictEqual(again.server, 2)
    assert.strictEqual(again.connects, 2)
    assert.strictEqual(again.lastSeen, 2000)
    assert.strictEqual(again.bytesToClient, 77)
  })

  it("the key is the address only: another port of the same IP is the same client", () => {
    // the caller passes the IP; this documents that two visits of one address share the entry
    const table = StickyTable.make(4, 0)
    StickyTable.visit(table, "::ffff:127.0.0.1", 0).server = 1
    assert.strictEqual(StickyTable.visit(table, "::ffff:127.0.0.1", 1).server, 1)
    assert.strictEqual(StickyTable.visit(table, "127.0.0.1", 2).server, StickyTable.NO_SERVER)
  })

  it("evicts the least recently used client when full", () => {
    const table = StickyTable.make(2, 0)
    StickyTable.visit(table, "a", 1).server = 0
    StickyTable.visit(table, "b", 2).server = 1
    StickyTable.visit(table, "a", 3) // a is now the most recent
    StickyTable.visit(table, "c", 4) // evicts b
    assert.deepStrictEqual(addresses(StickyTable.recent(table, 4)), ["c", "a"])
    assert.strictEqual(StickyTable.visit(table, "a", 5).server, 0)
    assert.strictEqual(StickyTable.visit(table, "b", 6).server, StickyTable.NO_SERVER)
  })

  it.prop(
    "never holds more clients than its capacity",
    { capacity: int(1, 6), visits: Visits },
    ({ capacity, visits }) => {
      const table = StickyTable.make(capacity, 0)
      let now = 0
      for (const v of visits) {
        now += v.gap
        StickyTable.visit(table, addressOf(v.client), now)
        assert.isAtMost(table.entries.size, capacity)
      }
      const distinct = new Set(visits.map((v) => v.client)).size
      assert.strictEqual(table.entries.size, Math.min(capacity, distinct))
    }
  )

  it.prop(
    "keeps exactly the most recently seen clients (LRU), with their servers",
    { capacity: int(1, 6), visits: Visits },
    ({ capacity, visits }) => {
      const table = StickyTable.make(capacity, 0)
      const model: Array<ModelEntry> = []
      let now = 0
      for (const v of visits) {
        now += v.gap
        const address = addressOf(v.client)
        const expected = modelVisit(model, capacity, 0, address, now)
        const entry = StickyTable.visit(table, address, now)
        assert.strictEqual(entry.address, address)
        assert.strictEqual(entry.server, expected.server, `server of ${address}`)
        assert.strictEqual(entry.connects, expected.connects, `connects of ${address}`)
        // the balancer records where the connection went
        entry.server = v.server
        expected.server = v.server
        assert.deepStrictEqual(addresses(StickyTable.recent(table, now)), addresses(model).toReversed())
      }
    }
  )

  it.prop(
    "a client seen within the tracking time is kept, one not seen for the tracking time or longer is forgotten",
    { tracking: int(1, 100_000), gap: int(0, 200_000), start: int(0, 1_000_000) },
    ({ gap, start, tracking }) => {
      const table = StickyTable.make(16, tracking)
      const first = StickyTable.visit(table, "10.0.0.1", start)
      first.server = 3
      first.bytesFromClient = 10
      const forgotten = gap >= tracking
      assert.strictEqual(StickyTable.lookup(table, "10.0.0.1", start + gap) === undefined, forgotten)
      const again = StickyTable.visit(table, "10.0.0.1", start + gap)
      if (forgotten) {
        assert.strictEqual(again.server, StickyTable.NO_SERVER)
        assert.strictEqual(again.connects, 1)
        assert.strictEqual(again.bytesFromClient, 0)
      } else {
        assert.strictEqual(again.server, 3)
        assert.strictEqual(again.connects, 2)
        assert.strictEqual(again.bytesFromClient, 10)
      }
      assert.strictEqual(again.lastSeen, start + gap)
    }
  )

  it("the tracking boundary: T - 1 ms kept, T ms forgotten", () => {
    const kept = StickyTable.make(4, 1000)
    StickyTable.visit(kept, "c", 5000).server = 1
    assert.strictEqual(StickyTable.visit(kept, "c", 5999).server, 1)
    const lost = StickyTable.make(4, 1000)
    StickyTable.visit(lost, "c", 5000).server = 1
    assert.strictEqual(StickyTable.visit(lost, "c", 6000).server, StickyTable.NO_SERVER)
  })

  it("tracking time 0 remembers a client forever", () => {
    const table = StickyTable.make(4, 0)
    StickyTable.visit(table, "c", 0).server = 2
    assert.strictEqual(StickyTable.visit(table, "c", 10 ** 12).server, 2)
  })

  it.prop(
    "with a tracking time, a returning client has its server iff it was seen within that time and not evicted",
    { capacity: int(1, 5), tracking: int(1, 1000), visits: Visits },
    ({ capacity, tracking, visits }) => {
      const table = StickyTable.make(capacity, tracking)
      const model: Array<ModelEntry> = []
      let now = 0
      for (const v of visits) {
        now += v.gap
        const address = addressOf(v.client)
        const expected = modelVisit(model, capacity, tracking, address, now)
        const entry = StickyTable.visit(table, address, now)
        assert.strictEqual(entry.server, expected.server)
        assert.strictEqual(entry.connects, expected.connects)
        entry.server = v.server
        expected.server = v.server
        assert.isAtMost(table.entries.size, capacity)
      }
    }
  )
})

describe("StickyTable.lookup", () => {
  it("finds a remembered client without touching its recency", () => {
    const table = StickyTable.make(2, 0)
    StickyTable.visit(table, "a", 1).server = 0
    StickyTable.visit(table, "b", 2)
    assert.strictEqual(StickyTable.lookup(table, "a", 3)?.server, 0)
    assert.strictEqual(StickyTable.lookup(table, "a", 3)?.connects, 1)
    StickyTable.visit(table, "c", 4) // a is still the least recently used
    assert.isUndefined(StickyTable.lookup(table, "a", 5))
    assert.isDefined(StickyTable.lookup(table, "b", 5))
    assert.isUndefined(StickyTable.lookup(table, "zzz", 5))
  })
})

describe("StickyTable.recent", () => {
  it("lists most recent first and skips expired clients", () => {
    const table = StickyTable.make(8, 1000)
    StickyTable.visit(table, "a", 0)
    StickyTable.visit(table, "b", 500)
    StickyTable.visit(table, "c", 900)
    StickyTable.visit(table, "a", 950)
    assert.deepStrictEqual(addresses(StickyTable.recent(table, 1000)), ["a", "c", "b"])
    assert.deepStrictEqual(addresses(StickyTable.recent(table, 1500)), ["a", "c"])
    assert.deepStrictEqual(addresses(StickyTable.recent(table, 1949)), ["a"])
    assert.deepStrictEqual(addresses(StickyTable.recent(table, 1950)), [])
  })

  it.prop(
    "is exactly the unexpired clients, ordered by last visit, most recent first",
    { tracking: int(1, 1000), visits: Visits, later: int(0, 2000) },
    ({ later, tracking, visits }) => {
      const table = StickyTable.make(100, tracking)
      const lastSeen = new Map<string, number>()
      let now = 0
      for (const v of visits) {
        now += v.gap
        const address = addressOf(v.client)
        StickyTable.visit(table, address, now)
        lastSeen.delete(address)
        lastSeen.set(address, now)
      }
      const at = now + later
      const expected = [...lastSeen].filter(([, seen]) => at - seen < tracking).map(([address]) => address).toReversed()
      const listed = StickyTable.recent(table, at)
      assert.deepStrictEqual(addresses(listed), expected)
      for (let i = 1; i < listed.length; i++) assert.isAtLeast(listed[i - 1]!.lastSeen, listed[i]!.lastSeen)
    }
  )
})

describe("StickyTable.sweep", () => {
  it("drops expired clients and returns how many", () => {
    const table = StickyTable.make(8, 1000)
    StickyTable.visit(table, "a", 0)
    StickyTable.visit(table, "b", 500)
    StickyTable.visit(table, "c", 900)
    assert.strictEqual(StickyTable.sweep(table, 1600), 2)
    assert.deepStrictEqual([...table.entries.keys()], ["c"])
    assert.strictEqual(StickyTable.sweep(table, 1600), 0)
  })

  it("drops nothing without a tracking time", () => {
    const table = StickyTable.make(8, 0)
    StickyTable.visit(table, "a", 0)
    assert.strictEqual(StickyTable.sweep(table, 10 ** 12), 0)
    assert.strictEqual(table.entries.size, 1)
  })

  it.prop(
    "leaves exactly the clients recent lists, in the same order",
    { tracking: int(1, 1000), visits: Visits, later: int(0, 2000) },
    ({ later, tracking, visits }) => {
      const table = StickyTable.make(5, tracking)
      let now = 0
      for (const v of visits) {
        now += v.gap
        StickyTable.visit(table, addressOf(v.client), now)
      }
      const at = now + later
      const before = table.entries.size
      const listed = addresses(StickyTable.recent(table, at))
      const dropped = StickyTable.sweep(table, at)
      assert.strictEqual(dropped, before - listed.length)
      assert.strictEqual(table.entries.size, listed.length)
      assert.deepStrictEqual([...table.entries.keys()].toReversed(), listed)
      assert.deepStrictEqual(addresses(StickyTable.recent(table, at)), listed)
    }
  )
})

/**
 * Reference model of the slots: pen's store_client (client.c) at millisecond resolution. A known client keeps its
 * slot (a forgotten one starts afresh there); a new client takes the lowest slot that is free (never used, or held by
 * a forgotten client), else the slot of the least recently seen client (ties: the one seen first).
 */
interface SlotModel {
  readonly slots: Array<{ address: string; lastSeen: number; seq: number } | undefined>
  seq: number
}

const slotModelVisit = (model: SlotModel, capacity: number, tracking: number, address: string, now: number) => {
  const expired = (e: { lastSeen: number }) => tracking > 0 && now - e.lastSeen >= tracking
  const seq = model.seq++
  const known = model.slots.findIndex((e) => e?.address === address)
  if (known >= 0) {
    model.slots[known] = { address, lastSeen: now, seq }
    return known
  }
  for (let i = 0; i < model.slots.length; i++) {
    if (model.slots[i] !== undefined && expired(model.slots[i]!)) model.slots[i] = undefined
  }
  let slot = -1
  for (let i = 0; i < capacity; i++) {
    if (model.slots[i] === undefined) {
      slot = i
      break
    }
  }
  if (slot < 0) {
    for (let i = 0; i < capacity; i++) {
      const e = model.slots[i]!
      const o = model.slots[slot]
      if (slot < 0 || e.lastSeen < o!.lastSeen || (e.lastSeen === o!.lastSeen && e.seq < o!.seq)) slot = i
    }
  }
  model.slots[slot] = { address, lastSeen: now, seq }
  return slot
}

describe("StickyTable slots (pen's client numbering)", () => {
  it("a new client takes the lowest free slot, or the evicted client's; listings go by slot", () => {
    const table = StickyTable.make(3, 0)
    const slotsOf = () => StickyTable.inOrder(table, 10_000).map((e) => `${e.slot} ${e.address}`)
    StickyTable.visit(table, ".2", 0)
    StickyTable.visit(table, ".3", 10)
    StickyTable.visit(table, ".4", 20)
    StickyTable.visit(table, ".2", 1000)
    assert.deepStrictEqual(slotsOf(), ["0 .2", "1 .3", "2 .4"])
    // Full: .3 is the least recently seen; .5 takes its slot, and is listed there.
    StickyTable.visit(table, ".5", 2000)
    assert.deepStrictEqual(slotsOf(), ["0 .2", "1 .5", "2 .4"])
    StickyTable.visit(table, ".6", 2010)
    assert.deepStrictEqual(slotsOf(), ["0 .2", "1 .5", "2 .6"])
    StickyTable.visit(table, ".3", 2020)
    assert.deepStrictEqual(slotsOf(), ["0 .3", "1 .5", "2 .6"])
    // `recent` is still most recent first.
    assert.deepStrictEqual(addresses(StickyTable.recent(table, 2020)), [".3", ".6", ".5"])
  })

  it("a forgotten client frees its slot for the next new client, or keeps it if it comes back first", () => {
    const table = StickyTable.make(4, 1000)
    StickyTable.visit(table, "a", 0)
    StickyTable.visit(table, "b", 500)
    StickyTable.visit(table, "c", 600)
    // a is forgotten at 1000: it comes back, starts afresh, in its own slot.
    const a = StickyTable.visit(table, "a", 1200)
    assert.deepStrictEqual([a.slot, a.connects], [0, 1])
    // b and c are forgotten at 1600: the next new client takes the lowest of their slots.
    assert.strictEqual(StickyTable.visit(table, "d", 1700).slot, 1)
    assert.deepStrictEqual(StickyTable.inOrder(table, 1700).map((e) => `${e.slot} ${e.address}`), ["0 a", "1 d"])
    assert.strictEqual(StickyTable.visit(table, "e", 1700).slot, 2)
    assert.strictEqual(StickyTable.visit(table, "f", 1700).slot, 3)
  })

  it.prop(
    "slots are pen's: the model of store_client at millisecond resolution, forgotten clients' slots free",
    { capacity: int(1, 6), tracking: int(0, 1000), visits: Visits, later: int(0, 2000) },
    ({ capacity, later, tracking, visits }) => {
      const table = StickyTable.make(capacity, tracking)
      const model: SlotModel = { slots: [], seq: 0 }
      let now = 0
      for (const v of visits) {
        now += v.gap
        const address = addressOf(v.client)
        const slot = slotModelVisit(model, capacity, tracking, address, now)
        assert.strictEqual(StickyTable.visit(table, address, now).slot, slot, `slot of ${address} at ${now}`)
      }
      const at = now + later
      const expected = model.slots.flatMap((e, slot) =>
        e !== undefined && !(tracking > 0 && at - e.lastSeen >= tracking) ? [`${slot} ${e.address}`] : []
      )
      assert.deepStrictEqual(StickyTable.inOrder(table, at).map((e) => `${e.slot} ${e.address}`), expected)
    }
  )

  it.prop(
    "resize keeps every slot below the capacity and distinct, the table in slot order, LRU eviction on a shrink",
    { capacity: int(1, 8), smaller: int(1, 8), visits: Visits },
    ({ capacity, smaller, visits }) => {
      const table = StickyTable.make(capacity, 0)
      let now = 0
      for (const v of visits) {
        now += v.gap
        StickyTable.visit(table, addressOf(v.client), now)
      }
      const keep = addresses(StickyTable.recent(table, now)).slice(0, smaller)
      StickyTable.resize(table, smaller)
      const listed = StickyTable.inOrder(table, now)
      assert.sameMembers(addresses(listed), keep)
      const slots = listed.map((e) => e.slot)
      assert.deepStrictEqual(slots, slots.toSorted((x, y) => x - y))
      assert.strictEqual(new Set(slots).size, slots.length)
      assert.isTrue(slots.every((slot) => slot < Math.min(capacity, smaller)), JSON.stringify(slots))
      // New clients fill the free slots from the lowest, and the table never holds more than its capacity.
      for (let i = 0; i < 10; i++) StickyTable.visit(table, `new ${i}`, now + 1 + i)
      const after = StickyTable.inOrder(table, now + 20).map((e) => e.slot)
      assert.deepStrictEqual(after, Array.from({ length: smaller }, (_, i) => i))
    }
  )
})
