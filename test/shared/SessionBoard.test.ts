import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as SessionBoard from "../../src/shared/SessionBoard.ts"

const board = (places: number) => SessionBoard.allocate({ places, workers: 2 })

describe("SessionBoard", () => {
  it("counts every worker's sessions, and the least recently active one goes first, whoever holds it", () => {
    const memory = board(16)
    const [a, b] = [new SessionBoard.SessionBoard(memory, 0), new SessionBoard.SessionBoard(memory, 1)]
    const pa = a.take(100)
    const pb = b.take(50)
    const pa2 = a.take(200)
    assert.strictEqual(a.live(), 3)
    // b's session is the oldest: a asks b to end it, and does not count it any more.
    assert.deepStrictEqual(a.evictOldest(), { place: pb, mine: false })
    assert.strictEqual(a.live(), 2)
    assert.deepStrictEqual(b.asked(), [pb])
    assert.deepStrictEqual(a.asked(), [])
    // The next oldest is a's own, which a ends itself.
    assert.deepStrictEqual(a.evictOldest(), { place: pa, mine: true })
    a.release(pa)
    b.release(pb)
    assert.strictEqual(b.live(), 1)
    // Activity moves a session back: a's last one, touched now, is the only one left.
    a.touch(pa2, 300)
    assert.deepStrictEqual(b.evictOldest(), { place: pa2, mine: false })
    a.release(pa2)
    assert.strictEqual(a.live(), 0)
    assert.isUndefined(a.evictOldest())
  })

  it("a full board gives no place; the main thread grows it for a higher -x", () => {
    const memory = board(16)
    const a = new SessionBoard.SessionBoard(memory, 0)
    const places = Array.from({ length: 16 }, (_, i) => a.take(i))
    assert.strictEqual(new Set(places).size, 16)
    assert.strictEqual(a.take(99), -1)
    const other = new SessionBoard.SessionBoard(memory, 1)
    new SessionBoard.SessionBoard(memory, 0).ensure(40)
    // A handle made before the growth sees it.
    assert.isAtLeast(other.take(100), 16)
    assert.strictEqual(a.live(), 17)
  })

  it.live("a worker asked to end a session is woken, with no message", () =>
    Effect.promise(async () => {
      const memory = board(16)
      const [a, b] = [new SessionBoard.SessionBoard(memory, 0), new SessionBoard.SessionBoard(memory, 1)]
      const pb = b.take(1)
      a.take(2)
      let stopped = false
      const woken = new Promise<ReadonlyArray<number>>((resolve) => b.watch(() => resolve(b.asked()), () => stopped))
      assert.deepStrictEqual(a.evictOldest(), { place: pb, mine: false })
      const asked = await Promise.race([woken, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 3_000))])
      stopped = true
      assert.deepStrictEqual(asked, [pb])
    }))
})
