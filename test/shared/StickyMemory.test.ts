/**
 * The shared-memory sticky table against its model, domain/StickyTable: the same answers to the same random
 * operations (over a plain ArrayBuffer and over a SharedArrayBuffer), then real worker threads hammering one table and
 * racing the first visits of new clients.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import { Worker } from "node:worker_threads"
import * as StickyTable from "../../src/domain/StickyTable.ts"
import * as StickyMemory from "../../src/shared/StickyMemory.ts"
import type { Burst, Hammer, Report, Task } from "./StickyMemoryWorker.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

/** A small pool of clients, IPv4 and IPv6 as Node prints them, and pen's key for Unix socket clients. */
const ADDRESSES = [
  "10.0.0.1",
  "10.0.0.2",
  "192.168.1.20",
  "127.0.0.1",
  "::ffff:10.0.0.1",
  "::1",
  "2001:db8::7",
  "2001:db8:85a3::8a2e:370:7334",
  "fe80::1%eth0",
  "172.16.254.3",
  "2001:db8::8",
  "unix"
]

const NO_SERVER = StickyMemory.NO_SERVER

/** The model's entry as a plain object, to compare with the memory's snapshots. */
const plain = (entry: StickyTable.ClientEntry): StickyTable.ClientEntry => ({ ...entry })

/**
 * Whether a connection's entry object is still the model's: not evicted, dropped or replaced by a fresh entry. Only
 * then does the model count what the connection does; a stale ref does nothing.
 */
const isCurrent = (table: StickyTable.StickyTable, entry: StickyTable.ClientEntry) => table.slots[entry.slot] === entry

/**
 * One random operation: `kind` picks it (visits most often), the other fields are its arguments. `which` picks one of
 * the connections opened so far (its entry in the model, its ref in each memory).
 */
const Step = Schema.Struct({
  kind: int(0, 99),
  client: int(0, ADDRESSES.length - 1),
  /** In 50 ms steps, so that times often fall on the tracking boundary. */
  gap: int(0, 8),
  server: int(0, 4),
  which: int(0, 63),
  toClient: int(0, 100_000),
  fromClient: int(0, 100_000),
  capacity: int(1, 14),
  /** In 50 ms steps. */
  millis: int(0, 20)
})

/** Slots reserved in the property test: resizes above it are refused. */
const CAPACITY_MAX = 10

describe("StickyMemory against domain/StickyTable", () => {
  it.prop(
    "the same random operations give the same answers: slots, servers, connects, times, bytes, listings and order",
    {
      capacity: int(1, 10),
      tracking: int(0, 20),
      steps: Schema.Array(Step).check(Schema.isMinLength(60), Schema.isMaxLength(150))
    },
    ({ capacity, steps, tracking }) => {
      const model = StickyTable.make(capacity, tracking * 50)
      const options = { capacity, trackingMillis: tracking * 50, workers: 1, capacityMax: CAPACITY_MAX }
      const memories = [
        StickyMemory.allocate({ ...options, shared: false }),
        StickyMemory.allocate({ ...options, shared: true })
      ]
      assert.instanceOf(memories[0]!.ints, ArrayBuffer)
      assert.instanceOf(memories[1]!.ints, SharedArrayBuffer)
      const tables = memories.map((memory) => StickyMemory.attach(memory, 0))
      /** Open connections: the model's entry, and the ref each memory gave. */
      const open: Array<{ readonly entry: StickyTable.ClientEntry; readonly refs: Array<StickyMemory.ClientRef> }> = []
      let now = 1_000_000
      for (const [index, step] of steps.entries()) {
        const at = `step ${index} (kind ${step.kind}) at ${now}`
        const connection = open.length > 0 ? open[step.which % open.length]! : undefined
        const current = connection !== undefined && isCurrent(model, connection.entry)
        if (step.kind < 40) {
          now += step.gap * 50
          const address = ADDRESSES[step.client]!
          const entry = StickyTable.visit(model, address, now)
          const refs = tables.map((table) => table.visit(address, now))
          for (const [i, table] of tables.entries()) {
            assert.deepStrictEqual(table.entry(refs[i]!), plain(entry), `visit of ${address}, ${at}`)
            assert.strictEqual(table.server(refs[i]!), entry.server, at)
          }
          open.push({ entry, refs })
          if (open.length > 64) open.shift()
        } else if (connection === undefined) {
          continue
        } else if (step.kind < 48) {
          if (current) connection.entry.server = step.server
          for (const [i, table] of tables.entries()) table.pin(connection.refs[i]!, step.server)
        } else if (step.kind < 56) {
          let expected = NO_SERVER
          if (current) {
            if (connection.entry.server === NO_SERVER) connection.entry.server = step.server
            expected = connection.entry.server
          }
          for (const [i, table] of tables.entries()) {
            assert.strictEqual(table.claim(connection.refs[i]!, step.server), expected, `claim, ${at}`)
          }
        } else if (step.kind < 70) {
          if (current) {
            connection.entry.bytesToClient += step.toClient
            connection.entry.bytesFromClient += step.fromClient
          }
          for (const [i, table] of tables.entries()) {
            table.addBytes(connection.refs[i]!, step.toClient, step.fromClient)
          }
        } else if (step.kind < 75) {
          const expected = current ? plain(connection.entry) : undefined
          for (const [i, table] of tables.entries()) {
            assert.deepStrictEqual(table.entry(connection.refs[i]!), expected, `entry, ${at}`)
            assert.strictEqual(table.server(connection.refs[i]!), expected?.server ?? NO_SERVER, at)
          }
        } else if (step.kind < 80) {
          now += step.gap * step.millis * 50
        } else if (step.kind < 90) {
          const fits = step.capacity <= CAPACITY_MAX
          if (fits) StickyTable.resize(model, step.capacity)
          for (const table of tables) assert.strictEqual(table.resize(step.capacity), fits, `resize, ${at}`)
        } else if (step.kind < 93) {
          model.trackingMillis = step.millis * 50
          for (const table of tables) table.trackingMillis = step.millis * 50
        } else if (step.kind < 97) {
          const dropped = StickyTable.sweep(model, now)
          for (const table of tables) assert.strictEqual(table.sweep(now), dropped, `sweep, ${at}`)
        } else {
          const address = ADDRESSES[step.client]!
          const found = StickyTable.lookup(model, address, now)
          for (const table of tables) {
            assert.deepStrictEqual(table.lookup(address, now), found && plain(found), `lookup, ${at}`)
          }
        }
        const inOrder = StickyTable.inOrder(model, now).map(plain)
        const recent = StickyTable.recent(model, now).map(plain)
        for (const [i, table] of tables.entries()) {
          assert.deepStrictEqual(table.inOrder(now), inOrder, `inOrder, ${at}`)
          assert.deepStrictEqual(table.recent(now), recent, `recent, ${at}`)
          assert.strictEqual(table.size(now), recent.length, at)
          assert.strictEqual(table.capacity, model.capacity, at)
          assert.strictEqual(table.trackingMillis, model.trackingMillis, at)
          assert.deepStrictEqual(StickyMemory.check(memories[i]!), [], at)
        }
      }
    },
    { arbitrary: { runs: 200 } }
  )
})

describe("StickyMemory", () => {
  it("a stale ref (its client evicted) reads no server and changes nothing", () => {
    const table = StickyMemory.attach(StickyMemory.allocate({ capacity: 1, trackingMillis: 0, workers: 1 }), 0)
    const a = table.visit("10.0.0.1", 0)
    table.pin(a, 2)
    table.addBytes(a, 10, 20)
    const b = table.visit("10.0.0.2", 1)
    assert.strictEqual(b % 2 ** 24, a % 2 ** 24, "b has a's record")
    assert.notStrictEqual(b, a)
    assert.strictEqual(table.server(a), NO_SERVER)
    assert.isUndefined(table.entry(a))
    table.pin(a, 3)
    table.addBytes(a, 5, 5)
    assert.strictEqual(table.claim(a, 4), NO_SERVER)
    assert.deepStrictEqual(table.entry(b), {
      address: "10.0.0.2",
      server: NO_SERVER,
      lastSeen: 1,
      connects: 1,
      bytesToClient: 0,
      bytesFromClient: 0,
      slot: 0
    })
    assert.strictEqual(table.claim(b, 1), 1)
    assert.strictEqual(table.claim(b, 4), 1)
  })

  it("a forgotten client's ref goes stale when it comes back afresh, in its slot", () => {
    const table = StickyMemory.attach(StickyMemory.allocate({ capacity: 4, trackingMillis: 1000, workers: 1 }), 0)
    const first = table.visit("::1", 0)
    table.pin(first, 3)
    table.addBytes(first, 7, 7)
    assert.strictEqual(table.server(first), 3)
    const again = table.visit("::1", 1000)
    assert.strictEqual(table.server(first), NO_SERVER)
    assert.deepStrictEqual(table.entry(again), {
      address: "::1",
      server: NO_SERVER,
      lastSeen: 1000,
      connects: 1,
      bytesToClient: 0,
      bytesFromClient: 0,
      slot: 0
    })
  })

  it("bytes: each worker's row adds up; a new client in the record starts from zero", () => {
    const memory = StickyMemory.allocate({ capacity: 1, trackingMillis: 0, workers: 3 })
    const [w0, w1, w2] = [0, 1, 2].map((worker) => StickyMemory.attach(memory, worker))
    const ref = w0!.visit("10.1.1.1", 0)
    w0!.addBytes(ref, 1, 2)
    w1!.addBytes(ref, 10, 20)
    w2!.addBytes(ref, 100, 200)
    w1!.addBytes(ref, 1000, 2000)
    assert.deepStrictEqual([w2!.entry(ref)?.bytesToClient, w2!.entry(ref)?.bytesFromClient], [1111, 2222])
    const next = w1!.visit("10.1.1.2", 1)
    assert.deepStrictEqual([w0!.entry(next)?.bytesToClient, w0!.entry(next)?.bytesFromClient], [0, 0])
    w2!.addBytes(next, 5, 6)
    w0!.addBytes(ref, 1, 1)
    assert.deepStrictEqual([w0!.entry(next)?.bytesToClient, w0!.entry(next)?.bytesFromClient], [5, 6])
  })

  it("the tracking time set through one handle holds for every handle", () => {
    const memory = StickyMemory.allocate({ capacity: 4, trackingMillis: 0, workers: 2 })
    const main = StickyMemory.attach(memory, 0)
    const worker = StickyMemory.attach(memory, 1)
    worker.visit("10.0.0.1", 0)
    main.trackingMillis = 500
    assert.strictEqual(worker.trackingMillis, 500)
    assert.isUndefined(worker.lookup("10.0.0.1", 500))
    main.trackingMillis = -3
    assert.strictEqual(worker.trackingMillis, 0)
  })

  it("grows its buffers up to capacityMax and refuses a resize beyond it, changing nothing", () => {
    const memory = StickyMemory.allocate({ capacity: 2, trackingMillis: 0, workers: 2, capacityMax: 3000 })
    const table = StickyMemory.attach(memory, 1)
    const before = memory.ints.byteLength
    assert.isTrue(table.resize(3000))
    assert.isAbove(memory.ints.byteLength, before)
    for (let i = 0; i < 3000; i++) table.addBytes(table.visit(`10.0.${i >> 8}.${i & 255}`, i), 1, 2)
    assert.deepStrictEqual(StickyMemory.check(memory), [])
    assert.isFalse(table.resize(3001))
    assert.isFalse(table.resize(Number.NaN))
    assert.strictEqual(table.capacity, 3000)
    assert.strictEqual(table.size(3000), 3000)
    assert.deepStrictEqual(table.lookup("10.0.11.183", 3000), {
      address: "10.0.11.183",
      server: NO_SERVER,
      lastSeen: 2999,
      connects: 1,
      bytesToClient: 1,
      bytesFromClient: 2,
      slot: 2999
    })
    assert.isTrue(table.resize(5))
    assert.deepStrictEqual(table.inOrder(3000).map((e) => [e.slot, e.address]), [
      [0, "10.0.11.179"],
      [1, "10.0.11.180"],
      [2, "10.0.11.181"],
      [3, "10.0.11.182"],
      [4, "10.0.11.183"]
    ])
    assert.deepStrictEqual(StickyMemory.check(memory), [])
  })

  it("a handle works on the buffers another handle grew: visits, pins, bytes and listings past its old end", () => {
    const memory = StickyMemory.allocate({ capacity: 2, trackingMillis: 0, workers: 2, capacityMax: 600, shared: true })
    const main = StickyMemory.attach(memory, 0)
    const worker = StickyMemory.attach(memory, 1)
    const refs: Array<StickyMemory.ClientRef> = []
    for (let i = 0; i < 600; i++) {
      // The other handle grows the table before each visit; this handle's views are older every time.
      assert.isTrue(main.resize(i + 1))
      const ref = worker.visit(`10.2.${i >> 8}.${i & 255}`, i)
      worker.addBytes(ref, i, 1)
      assert.strictEqual(worker.claim(ref, i % 7), i % 7)
      refs.push(ref)
    }
    assert.deepStrictEqual(StickyMemory.check(memory), [])
    for (const [i, ref] of refs.entries()) {
      assert.deepStrictEqual(main.entry(ref), {
        address: `10.2.${i >> 8}.${i & 255}`,
        server: i % 7,
        lastSeen: i,
        connects: 1,
        bytesToClient: i,
        bytesFromClient: 1,
        slot: i
      })
      assert.strictEqual(worker.server(ref), i % 7)
    }
  })

  it("keeps addresses of up to 64 ASCII characters; refuses others on a visit, finds none on a lookup", () => {
    const table = StickyMemory.attach(StickyMemory.allocate({ capacity: 4, trackingMillis: 0, workers: 1 }), 0)
    const longest = "f".repeat(StickyMemory.ADDRESS_MAX)
    table.visit(longest, 0)
    assert.strictEqual(table.lookup(longest, 0)?.address, longest)
    assert.throws(() => table.visit(longest + "f", 0), RangeError)
    assert.throws(() => table.visit("10.0.0.é", 0), RangeError)
    assert.isUndefined(table.lookup(longest + "f", 0))
  })

  it.prop(
    "restore (an upgrade): another table's clients come back in their slots and LRU order, with every figure",
    {
      capacity: int(1, 10),
      visits: Schema.Array(
        Schema.Struct({ client: int(0, ADDRESSES.length - 1), server: int(0, 4), bytes: int(0, 99) })
      )
        .check(Schema.isMinLength(1), Schema.isMaxLength(40))
    },
    ({ capacity, visits }) => {
      const from = StickyMemory.attach(StickyMemory.allocate({ capacity, trackingMillis: 0, workers: 2 }), 1)
      let now = 1_000
      for (const visit of visits) {
        const ref = from.visit(ADDRESSES[visit.client]!, now++)
        if (visit.server > 0) from.pin(ref, visit.server)
        from.addBytes(ref, visit.bytes, 2 * visit.bytes)
      }
      const saved = from.recent(now).toReversed()
      // The new nib's table, the same size; its main thread (worker 0) takes the clients in.
      const memory = StickyMemory.allocate({ capacity, trackingMillis: 0, workers: 2 })
      const into = StickyMemory.attach(memory, 0)
      assert.strictEqual(into.restore(saved, now), saved.length)
      assert.deepStrictEqual(StickyMemory.check(memory), [])
      assert.deepStrictEqual(into.inOrder(now), from.inOrder(now))
      assert.deepStrictEqual(into.recent(now), from.recent(now))
      // And it goes on as the old table would: the next new client evicts the same one, into the same slot.
      const stranger = "203.0.113.9"
      from.visit(stranger, now)
      const ref = into.visit(stranger, now)
      assert.deepStrictEqual(into.inOrder(now), from.inOrder(now))
      assert.isDefined(into.entry(ref))
      // Another worker's bytes add to the restored ones (of the newest client, which the stranger did not evict).
      const newest = saved.at(-1)!
      if (capacity > 1) {
        const known = into.visit(newest.address, now)
        StickyMemory.attach(memory, 1).addBytes(known, 1, 1)
        assert.strictEqual(into.entry(known)!.bytesToClient, newest.bytesToClient + 1)
      }
    }
  )

  it("restore into a smaller table keeps the most recent clients, moving those past the end to free slots", () => {
    const from = StickyMemory.attach(StickyMemory.allocate({ capacity: 4, trackingMillis: 0, workers: 1 }), 0)
    for (const [i, address] of ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"].entries()) {
      from.pin(from.visit(address, i), i)
    }
    const into = StickyMemory.attach(StickyMemory.allocate({ capacity: 2, trackingMillis: 0, workers: 1 }), 0)
    assert.strictEqual(into.restore(from.recent(10).toReversed(), 10), 2)
    assert.deepStrictEqual(
      into.inOrder(10).map((e) => [e.address, e.slot, e.server]),
      [["10.0.0.3", 0, 2], ["10.0.0.4", 1, 3]]
    )
    assert.deepStrictEqual(into.violations(), [])
  })

  it("restore skips clients known already, and clients whose tracking time has run out", () => {
    const into = StickyMemory.attach(StickyMemory.allocate({ capacity: 4, trackingMillis: 1000, workers: 1 }), 0)
    into.pin(into.visit("10.0.0.1", 5000), 1)
    const entry = (address: string, lastSeen: number, slot: number) => ({
      address,
      server: 3,
      lastSeen,
      connects: 2,
      bytesToClient: 0,
      bytesFromClient: 0,
      slot
    })
    const taken = into.restore(
      [entry("10.0.0.2", 3000, 1), entry("10.0.0.1", 4500, 0), entry("10.0.0.3", 4800, 0)],
      5000
    )
    assert.strictEqual(taken, 1, "10.0.0.2 forgotten, 10.0.0.1 known: only 10.0.0.3")
    assert.deepStrictEqual(
      into.recent(5000).map((e) => [e.address, e.slot, e.server]),
      [["10.0.0.3", 1, 3], ["10.0.0.1", 0, 1]]
    )
    assert.deepStrictEqual(into.violations(), [])
  })

  it("allocate: at least one slot; a capacity past the limit, or a bad worker count, is refused", () => {
    const table = StickyMemory.attach(StickyMemory.allocate({ capacity: 0, trackingMillis: 0, workers: 1 }), 0)
    assert.strictEqual(table.capacity, 1)
    assert.strictEqual(table.capacityMax, StickyMemory.DEFAULT_CAPACITY_MAX)
    assert.throws(() => StickyMemory.allocate({ capacity: 2 ** 24 + 1, trackingMillis: 0, workers: 1 }), RangeError)
    assert.throws(() => StickyMemory.allocate({ capacity: Number.NaN, trackingMillis: 0, workers: 1 }), RangeError)
    assert.throws(() => StickyMemory.allocate({ capacity: 8, trackingMillis: 0, workers: 0 }), RangeError)
    assert.throws(() => StickyMemory.attach(StickyMemory.allocate({ capacity: 8, trackingMillis: 0, workers: 2 }), 2))
  })
})

const WORKER = new URL("./StickyMemoryWorker.ts", import.meta.url)

/** A worker thread running `task`, terminated when the scope closes. */
const spawn = (task: Task) =>
  Effect.acquireRelease(
    Effect.sync(() => new Worker(WORKER, { workerData: task })),
    (worker) => Effect.promise(() => worker.terminate())
  )

/** The worker's report; a defect if it fails or exits first. */
const reportOf = (worker: Worker) =>
  Effect.callback<Report>((resume) => {
    worker.once("message", (report: Report) => resume(Effect.succeed(report)))
    worker.once("error", (error) => resume(Effect.die(error)))
    worker.once("exit", (code) => resume(Effect.die(new Error(`the worker exited (${code}) without a report`))))
  })

/** The reports of all the workers, within `seconds`. */
const reportsOf = (workers: ReadonlyArray<Worker>, seconds: number) =>
  Effect.forEach(workers, reportOf, { concurrency: "unbounded" }).pipe(
    Effect.timeoutOrElse({
      duration: `${seconds} seconds`,
      orElse: () => Effect.die(new Error(`the workers did not report within ${seconds} s`))
    })
  )

const shared = (capacity: number, trackingMillis = 0) =>
  StickyMemory.attach(StickyMemory.allocate({ capacity, trackingMillis, workers: 1, shared: true }), 0)
const serversOf = (entries: ReadonlyArray<StickyTable.ClientEntry>) =>
  Object.fromEntries(entries.map((e) => [e.address, e.server]))

describe("StickyMemory for --peers: what changed, and a peer's pins", () => {
  it("changedSince: the clients whose server changed after the mark, and those seen after a time; not the rest", () => {
    const table = shared(8)
    const a = table.visit("10.0.0.1", 1000)
    table.claim(a, 1)
    const b = table.visit("10.0.0.2", 1100)
    table.claim(b, 0)
    const mark = table.changes
    assert.strictEqual(mark, 2)
    assert.deepStrictEqual(table.changedSince(mark, 2000, 3000), [])
    // Seen again (no change of server): found by its visit alone.
    table.visit("10.0.0.2", 2500)
    assert.deepStrictEqual(serversOf(table.changedSince(mark, 2000, 3000)), { "10.0.0.2": 0 })
    // A failover's pin moves a client seen long ago: found by its change, whatever its last visit.
    table.pin(a, 2)
    assert.deepStrictEqual(serversOf(table.changedSince(mark, 2600, 3000)), { "10.0.0.1": 2 })
    // Pinning the server it has is no change.
    const before = table.changes
    table.pin(a, 2)
    assert.strictEqual(table.changes, before)
    // From the start: everyone.
    assert.deepStrictEqual(serversOf(table.changedSince(-1, -1, 3000)), { "10.0.0.1": 2, "10.0.0.2": 0 })
  })

  it("adopt: a peer's pin is taken without a connection counted, and is no change of this table's", () => {
    const table = shared(4)
    const mark = table.changes
    assert.isTrue(table.adopt("10.0.0.1", 1, 900, 1000))
    assert.strictEqual(table.changes, mark)
    assert.deepStrictEqual(table.changedSince(mark, 950, 1000), [])
    const entry = table.lookup("10.0.0.1", 1000)!
    assert.strictEqual(entry.server, 1)
    assert.strictEqual(entry.connects, 0)
    assert.strictEqual(entry.lastSeen, 900)
    // A connection of the client now goes where the peer pinned it.
    const ref = table.visit("10.0.0.1", 1100)
    assert.strictEqual(table.server(ref), 1)
    // A peer's later pin moves it; an earlier visit does not move the last one back.
    assert.isTrue(table.adopt("10.0.0.1", 3, 1050, 1200))
    assert.strictEqual(table.lookup("10.0.0.1", 1200)!.server, 3)
    assert.strictEqual(table.lookup("10.0.0.1", 1200)!.lastSeen, 1100)
  })

  it("adopt keeps the table in last-visit order: a full table evicts its least recently seen, or refuses an older pin", () => {
    const memory = StickyMemory.allocate({ capacity: 3, trackingMillis: 0, workers: 1, shared: true })
    const table = StickyMemory.attach(memory, 0)
    table.visit("10.0.0.1", 100)
    table.visit("10.0.0.2", 300)
    // Older than the newest: placed behind it.
    assert.isTrue(table.adopt("10.0.0.3", 0, 200, 400))
    assert.deepStrictEqual(table.recent(400).map((e) => e.address), ["10.0.0.2", "10.0.0.3", "10.0.0.1"])
    // Full: a pin older than everyone is refused; a newer one evicts 10.0.0.1.
    assert.isFalse(table.adopt("10.0.0.4", 0, 50, 400))
    assert.isTrue(table.adopt("10.0.0.5", 1, 250, 400))
    assert.deepStrictEqual(table.recent(400).map((e) => e.address), ["10.0.0.2", "10.0.0.5", "10.0.0.3"])
    assert.deepStrictEqual(StickyMemory.check(memory), [])
    // Visits found from the newest back still see a visit made after an adopted older pin.
    const mark = table.changes
    table.visit("10.0.0.3", 500)
    assert.deepStrictEqual(table.changedSince(mark, 450, 600).map((e) => e.address), ["10.0.0.3"])
  })

  it("adopt: a pin whose tracking time ran out is not taken", () => {
    const table = shared(4, 1000)
    assert.isFalse(table.adopt("10.0.0.1", 0, 100, 1200))
    assert.isTrue(table.adopt("10.0.0.1", 0, 500, 1200))
    assert.isUndefined(table.lookup("10.0.0.1", 1600))
  })
})

describe("StickyMemory in worker threads", () => {
  const OPERATIONS = 20_000
  const RESERVED = 4096
  const POOL = 256

  /** 4 workers, 20,000 visits each, over 256 addresses, on a table of 1 to 4096 slots; time counts the visits. */
  const hammering = (trackingMillis: number) =>
    Effect.gen(function*() {
      const workers = 4
      const addresses = Array.from({ length: POOL }, (_, i) => i % 2 === 0 ? `10.9.0.${i}` : `2001:db8:9::${i}`)
      const memory = StickyMemory.allocate({ capacity: 24, trackingMillis, workers, capacityMax: RESERVED })
      const table = StickyMemory.attach(memory, 0)
      const clock = new SharedArrayBuffer(4)
      const now = () => Atomics.load(new Int32Array(clock), 0)
      const halfway = new SharedArrayBuffer(4)
      const deadline = Date.now() + 20_000
      const started = yield* Effect.forEach(
        Array.from({ length: workers }, (_, worker) => worker),
        (worker) => {
          const task: Hammer = {
            task: "hammer",
            memory,
            worker,
            addresses,
            clock,
            halfway,
            deadline,
            operations: OPERATIONS,
            seed: 7919 * (worker + 1)
          }
          return spawn(task)
        }
      )
      const reports = yield* Effect.forkScoped(reportsOf(started, 25))
      // Meanwhile the main thread resizes (every fourth time to a new most, so that the buffers grow under the
      // workers), sweeps and checks the structure. When the workers have all done half their visits, it sizes the table
      // for the whole pool and lets them go on, so that most refs are current at the end.
      const sizes = [24, 8, 40, 3, 64, 16, 31, 1, 48]
      const violations: Array<string> = []
      let resizes = 0
      for (; reports.pollUnsafe() === undefined && resizes < 100_000; resizes++) {
        if (Atomics.load(new Int32Array(halfway), 0) === 0) {
          const size = resizes % 4 === 3 ? Math.min(64 + resizes, RESERVED) : sizes[resizes % sizes.length]!
          assert.isTrue(table.resize(size))
          if (now() === (workers * OPERATIONS) / 2) {
            assert.isTrue(table.resize(POOL))
            Atomics.store(new Int32Array(halfway), 0, 1)
            Atomics.notify(new Int32Array(halfway), 0)
          }
        }
        table.sweep(now())
        if (violations.length === 0) violations.push(...StickyMemory.check(memory))
        yield* Effect.sleep("1 millis")
      }
      const reported = yield* Fiber.join(reports)
      assert.deepStrictEqual(violations, [])
      assert.deepStrictEqual(StickyMemory.check(memory), [])
      assert.isAbove(resizes, 3, "resizes while the workers ran")
      assert.strictEqual(now(), workers * OPERATIONS)
      // Bytes: what the workers added under each ref still current is what the table holds for its client.
      const added = new Map<number, [number, number]>()
      for (const report of reported) {
        for (const [ref, toClient, fromClient] of report.added) {
          const sums = added.get(ref) ?? [0, 0]
          added.set(ref, [sums[0] + toClient, sums[1] + fromClient])
        }
      }
      const counted = new Map<string, StickyMemory.ClientEntry>()
      for (const [ref, [toClient, fromClient]] of added) {
        const entry = table.entry(ref as StickyMemory.ClientRef)
        if (entry === undefined) continue
        assert.isFalse(counted.has(entry.address), `two current refs for ${entry.address}`)
        counted.set(entry.address, entry)
        assert.deepStrictEqual([entry.bytesToClient, entry.bytesFromClient], [toClient, fromClient], entry.address)
      }
      // Every client remembered was visited, and that visit's worker added bytes under the ref it got.
      const held = table.inOrder(now())
      assert.isAtMost(held.length, table.capacity)
      for (const entry of held) assert.deepStrictEqual(counted.get(entry.address), entry)
      if (trackingMillis === 0) {
        assert.strictEqual(held.length, addresses.length)
        assert.strictEqual(counted.size, addresses.length)
      } else {
        assert.isAbove(held.length, 0)
      }
    })

  it.live("4 workers hammer one table while it is resized: a sound structure, and every byte counted", () =>
    hammering(0))

  it.live("the same with a tracking time of 60 visits, and sweeps: clients forgotten and dropped meanwhile", () =>
    hammering(60))

  it.live("the sticky burst: 8 simultaneous first visits of a new client on 4 workers all end on one server", () =>
    Effect.gen(function*() {
      const workers = 4
      const visits = 2
      const rounds = 50
      const addresses = Array.from(
        { length: rounds },
        (_, round) => round % 2 === 0 ? `10.77.0.${round}` : `2001:db8:77::${round.toString(16)}`
      )
      const memory = StickyMemory.allocate({ capacity: 128, trackingMillis: 0, workers })
      const barrier = new SharedArrayBuffer(4)
      const results = new SharedArrayBuffer(rounds * workers * visits * 4)
      const deadline = Date.now() + 20_000
      const started = yield* Effect.forEach(
        Array.from({ length: workers }, (_, worker) => worker),
        (worker) => {
          const task: Burst = { task: "burst", memory, worker, workers, addresses, visits, barrier, results, deadline }
          return spawn(task)
        }
      )
      yield* reportsOf(started, 25)
      const table = StickyMemory.attach(memory, 0)
      const claims = new Int32Array(results)
      const perRound = workers * visits
      for (const [round, address] of addresses.entries()) {
        const answers = [...claims.subarray(round * perRound, (round + 1) * perRound)]
        const winner = answers[0]!
        assert.isTrue(winner >= 0 && winner < perRound, `round ${round}: ${answers}`)
        assert.deepStrictEqual(answers, Array.from({ length: perRound }, () => winner), `round ${round}`)
        const entry = table.lookup(address, Date.now())
        assert.strictEqual(entry?.server, winner)
        assert.strictEqual(entry?.connects, perRound)
      }
      assert.deepStrictEqual(StickyMemory.check(memory), [])
    }))
})

describe("StickyMemory.releaseLockOf", () => {
  it("frees the lock a dead worker held, and only that worker's", () => {
    const memory = StickyMemory.allocate({ capacity: 4, trackingMillis: 0, workers: 2 })
    const header = new Int32Array(memory.header)
    // Worker 1 died inside an operation: the lock is held (with a waiter) and names it.
    Atomics.store(header, 0, 2)
    header[13] = 2
    assert.isFalse(StickyMemory.releaseLockOf(memory, 0))
    assert.isTrue(StickyMemory.releaseLockOf(memory, 1))
    // The other threads go on: a visit takes the lock and gives it back.
    const table = StickyMemory.attach(memory, 0)
    table.visit("10.0.0.1", 1)
    assert.strictEqual(Atomics.load(header, 0), 0)
    assert.strictEqual(header[13], 0)
    assert.isFalse(StickyMemory.releaseLockOf(memory, 1))
    assert.deepStrictEqual(StickyMemory.check(memory), [])
  })
})
