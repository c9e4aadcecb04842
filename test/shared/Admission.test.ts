/**
 * pen's `pending_max` as `Dials` counts it: one thread's plain count, and every thread's in the shared admission
 * memory (handles of two "threads" over one SharedArrayBuffer here), a dead worker's dials given back, and the word a
 * waiting thread sleeps on bumped only when some thread waits.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Admission from "../../src/shared/Admission.ts"

const microtasks = () => new Promise<void>((resolve) => setImmediate(resolve))

describe("Dials, one thread", () => {
  it.live("reserves up to pending_max; a release after a refused reservation calls onFree once", () =>
    Effect.promise(async () => {
      const dials = new Admission.Dials(2)
      let freed = 0
      dials.onFree = () => freed++
      assert.isTrue(dials.reserve())
      assert.isTrue(dials.reserve())
      assert.isFalse(dials.free)
      assert.isFalse(dials.reserve())
      assert.strictEqual(dials.inProgress, 2)
      // A dial that starts without a place (after a TLS handshake, a failover) is counted over the limit.
      dials.add()
      assert.strictEqual(dials.inProgress, 3)
      dials.release()
      dials.release()
      await microtasks()
      assert.strictEqual(freed, 1, "one wake-up for the listener, however many places freed")
      assert.isTrue(dials.reserve())
      dials.release()
      await microtasks()
      assert.strictEqual(freed, 1, "no reservation was refused since: nothing to wake")
    }))

  it.live("pending_max below 1 is 1; raising it wakes a listener that waits", () =>
    Effect.promise(async () => {
      const dials = new Admission.Dials(1)
      let freed = 0
      dials.onFree = () => freed++
      dials.setMax(0)
      assert.strictEqual(dials.max, 1)
      assert.isTrue(dials.reserve())
      assert.isFalse(dials.reserve())
      dials.setMax(3)
      await microtasks()
      assert.strictEqual(freed, 1)
      assert.isTrue(dials.reserve())
      assert.strictEqual(dials.inProgress, 2)
    }))
})

describe("Dials, workers", () => {
  it("every thread's dials count against one pending_max; a dead worker's are given back", () => {
    const words = new Int32Array(Admission.allocate(2))
    const [a, b] = [new Admission.Dials(3, words, 0), new Admission.Dials(3, words, 1)]
    assert.isTrue(a.reserve())
    assert.isTrue(b.reserve())
    b.add()
    assert.strictEqual(a.inProgress, 3)
    assert.isFalse(a.reserve(), "b's dials fill the limit a sees")
    // Worker 1 dies holding two: they are given back; worker 0's stays.
    assert.strictEqual(Admission.reclaimDials(words, 1), 2)
    assert.strictEqual(a.inProgress, 1)
    assert.isTrue(a.reserve())
    a.release()
    a.release()
    assert.strictEqual(b.inProgress, 0)
    assert.strictEqual(Admission.reclaimDials(words, 1), 0)
  })

  it("a place freed bumps the word waiting threads sleep on, only while one waits", () => {
    const words = new Int32Array(Admission.allocate(2))
    const a = new Admission.Dials(1, words, 0)
    assert.isTrue(a.reserve())
    a.release()
    assert.strictEqual(Atomics.load(words, Admission.FREED), 0)
    Atomics.add(words, Admission.WAITING, 1)
    assert.isTrue(a.reserve())
    a.release()
    assert.strictEqual(Atomics.load(words, Admission.FREED), 1)
    a.setMax(5)
    assert.strictEqual(Atomics.load(words, Admission.FREED), 2, "a higher limit wakes waiting threads too")
  })

  it.live("a thread sleeping on the word is woken by another's release", () =>
    Effect.promise(async () => {
      const words = new Int32Array(Admission.allocate(2))
      const [a, b] = [new Admission.Dials(1, words, 0), new Admission.Dials(1, words, 1)]
      assert.isTrue(b.reserve())
      assert.isFalse(a.reserve())
      Atomics.add(words, Admission.WAITING, 1)
      const wait = Atomics.waitAsync(words, Admission.FREED, Atomics.load(words, Admission.FREED), 3_000)
      assert.isTrue(wait.async)
      b.release()
      assert.strictEqual(await wait.value, "ok")
      assert.isTrue(a.reserve())
    }))
})
