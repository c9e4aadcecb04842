/**
 * The connection table's numbering (src/proxy/Slots.ts) against pen's store_conn (conn.c): a new connection takes the
 * first free slot from the last one taken, wrapping at the table's size.
 */
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { type ConnectionInfo, Slots, type Slotted } from "../../src/proxy/Slots.ts"

const entry = (name: string): Slotted => ({
  info: (slot): ConnectionInfo => ({
    slot,
    state: 2,
    downfd: -1,
    upfd: -1,
    pendingDown: 0,
    pendingUp: 0,
    client: name,
    server: 0
  }),
  abort: () => {}
})

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

const listed = (slots: Slots) => slots.list().map((c) => `${c.slot} ${c.client}`)

describe("Slots", () => {
  it("numbers connections as pen does: the first free slot from the last one taken", () => {
    const slots = new Slots(5)
    assert.deepStrictEqual(["a", "b", "c"].map((name) => slots.take(entry(name))), [0, 1, 2])
    slots.release(0)
    // pen scans from its last slot (2): taken, so 3; the slot freed first (0) waits for the scan to wrap.
    assert.strictEqual(slots.take(entry("d")), 3)
    assert.deepStrictEqual(listed(slots), ["1 b", "2 c", "3 d"])
    // A short connection after d: its slot is free again at once, and the next one takes it too.
    slots.release(slots.take(entry("e")))
    assert.strictEqual(slots.take(entry("f")), 4)
    // The scan wraps at the table's size.
    assert.strictEqual(slots.take(entry("g")), 0)
    assert.deepStrictEqual(listed(slots), ["0 g", "1 b", "2 c", "3 d", "4 f"])
    // Every slot taken (the limit raised at run time): the table grows by one.
    assert.strictEqual(slots.take(entry("h")), 5)
    slots.release(2)
    assert.strictEqual(slots.take(entry("i")), 2)
    assert.strictEqual(slots.get(2)?.info(2).client, "i")
  })

  it("without a size, the scan wraps at the end of the table, which grows when it is full", () => {
    const slots = new Slots()
    assert.deepStrictEqual(["a", "b"].map((name) => slots.take(entry(name))), [0, 1])
    slots.release(0)
    assert.strictEqual(slots.take(entry("c")), 0)
    assert.strictEqual(slots.take(entry("d")), 2)
  })

  it.prop(
    "is pen's store_conn for any sequence of connections opening and closing within the size",
    { size: int(1, 8), ops: Schema.Array(int(-8, 8)).check(Schema.isMaxLength(80)) },
    ({ ops, size }) => {
      const slots = new Slots(size)
      // pen's table: state per slot, and connections_last.
      const used = Array.from({ length: size }, () => false)
      let last = 0
      let n = 0
      for (const op of ops) {
        const live = used.flatMap((u, i) => (u ? [i] : []))
        if (op >= 0 && live.length < size) {
          let i = last
          while (used[i]) i = (i + 1) % size
          last = i
          used[i] = true
          assert.strictEqual(slots.take(entry(`c${n++}`)), i)
        } else if (live.length > 0) {
          const slot = live[Math.abs(op) % live.length]!
          used[slot] = false
          slots.release(slot)
        }
        assert.deepStrictEqual(slots.list().map((c) => c.slot), used.flatMap((u, i) => (u ? [i] : [])))
      }
    }
  )
})
