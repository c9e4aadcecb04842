import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { TestClock } from "effect/testing"
import { LbConfig } from "../../src/Config.ts"
import * as Address from "../../src/domain/Address.ts"
import { NO_SERVER } from "../../src/domain/Selection.ts"
import { ClientTable } from "../../src/services/ClientTable.ts"
import { SharedState } from "../../src/shared/SharedState.ts"

const addresses = (entries: ReadonlyArray<{ readonly address: string }>) => entries.map((e) => e.address)

describe("ClientTable", () => {
  it.effect("a full table evicts the least recently used client", () =>
    Effect.gen(function*() {
      const table = yield* ClientTable
      assert.strictEqual(yield* table.capacity, 2)
      table.visitUnsafe("10.0.0.1")
      table.visitUnsafe("10.0.0.2")
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.2", "10.0.0.1"])

      table.visitUnsafe("10.0.0.3")
      assert.isTrue(Option.isNone(yield* table.lookup("10.0.0.1")))
      assert.isTrue(Option.isSome(yield* table.lookup("10.0.0.2")))
      assert.isTrue(Option.isSome(yield* table.lookup("10.0.0.3")))
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.3", "10.0.0.2"])
    }).pipe(Effect.provide(ClientTable.layerTest({ capacity: 2 }))))

  it.effect("a visit makes a client the most recently used, so the other one is evicted", () =>
    Effect.gen(function*() {
      const table = yield* ClientTable
      table.visitUnsafe("10.0.0.1")
      table.visitUnsafe("10.0.0.2")
      table.visitUnsafe("10.0.0.1")
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.1", "10.0.0.2"])
      table.visitUnsafe("10.0.0.3")
      assert.isTrue(Option.isNone(yield* table.lookup("10.0.0.2")))
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.3", "10.0.0.1"])
      // lookup does not count as a visit.
      yield* table.lookup("10.0.0.1")
      table.visitUnsafe("10.0.0.4")
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.4", "10.0.0.3"])
    }).pipe(Effect.provide(ClientTable.layerTest({ capacity: 2 }))))

  it.effect("an entry remembers its server and counts connections; the port is not part of the key", () =>
    Effect.gen(function*() {
      const table = yield* ClientTable
      const first = table.visitUnsafe("10.0.0.1")
      const entry = Option.getOrThrow(yield* table.lookup("10.0.0.1"))
      assert.deepStrictEqual([entry.address, entry.server, entry.connects], ["10.0.0.1", NO_SERVER, 1])
      assert.strictEqual(table.serverUnsafe(first), -1)
      table.pinUnsafe(first, 1)
      yield* TestClock.adjust("5 seconds")
      const again = table.visitUnsafe("10.0.0.1")
      assert.strictEqual(table.serverUnsafe(again), 1)
      const found = Option.getOrThrow(yield* table.lookup("10.0.0.1"))
      assert.deepStrictEqual([found.server, found.connects, found.lastSeen], [1, 2, 5000])
      assert.isTrue(Option.isNone(yield* table.lookup("10.0.0.9")))
    }).pipe(Effect.provide(ClientTable.layerTest({ capacity: 4 }))))

  it.effect("claim pins a client with no server, once: later claims get the server pinned first", () =>
    Effect.gen(function*() {
      const table = yield* ClientTable
      const a = table.visitUnsafe("10.0.0.1")
      const b = table.visitUnsafe("10.0.0.1")
      assert.strictEqual(table.claimUnsafe(a, 2), 2)
      assert.strictEqual(table.claimUnsafe(b, 0), 2)
      assert.strictEqual(table.serverUnsafe(b), 2)
      // A failover re-pins with pinUnsafe, as pen does.
      table.pinUnsafe(b, 0)
      assert.strictEqual(table.serverUnsafe(a), 0)
    }).pipe(Effect.provide(ClientTable.layerTest({ capacity: 4 }))))

  it.effect("bytes count on the client's entry; a connection of an evicted client counts nowhere", () =>
    Effect.gen(function*() {
      const table = yield* ClientTable
      const a = table.visitUnsafe("10.0.0.1")
      table.countUnsafe(a, 100, 7)
      table.countUnsafe(a, 5, 0)
      const entry = Option.getOrThrow(yield* table.lookup("10.0.0.1"))
      assert.deepStrictEqual([entry.bytesToClient, entry.bytesFromClient], [105, 7])
      table.visitUnsafe("10.0.0.2")
      table.visitUnsafe("10.0.0.3")
      // 10.0.0.1 was evicted; its slot went to 10.0.0.3, whose counters start at 0 and stay there.
      table.countUnsafe(a, 1000, 1000)
      const other = Option.getOrThrow(yield* table.lookup("10.0.0.3"))
      assert.deepStrictEqual([other.bytesToClient, other.bytesFromClient], [0, 0])
      assert.strictEqual(table.serverUnsafe(a), NO_SERVER)
    }).pipe(Effect.provide(ClientTable.layerTest({ capacity: 2 }))))

  it.effect("without a tracking time, clients are remembered however long ago they came", () =>
    Effect.gen(function*() {
      const table = yield* ClientTable
      table.pinUnsafe(table.visitUnsafe("10.0.0.1"), 0)
      yield* TestClock.adjust("365 days")
      const entry = yield* table.lookup("10.0.0.1")
      assert.strictEqual(Option.getOrThrow(entry).server, 0)
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.1"])
    }).pipe(Effect.provide(ClientTable.layerTest({ capacity: 4 }))))

  it.effect("with trackingSeconds 10, a client is kept at 9 s and forgotten at 10 s", () =>
    Effect.gen(function*() {
      const table = yield* ClientTable
      table.pinUnsafe(table.visitUnsafe("10.0.0.1"), 1)

      yield* TestClock.adjust("9 seconds")
      const kept = yield* table.lookup("10.0.0.1")
      assert.isTrue(Option.isSome(kept))
      assert.strictEqual(Option.getOrThrow(kept).server, 1)
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.1"])

      yield* TestClock.adjust("1 second")
      assert.isTrue(Option.isNone(yield* table.lookup("10.0.0.1")))
      assert.deepStrictEqual(addresses(yield* table.recent), [])

      const fresh = table.visitUnsafe("10.0.0.1")
      assert.strictEqual(table.serverUnsafe(fresh), NO_SERVER)
      const entry = Option.getOrThrow(yield* table.lookup("10.0.0.1"))
      assert.deepStrictEqual([entry.server, entry.connects, entry.lastSeen], [-1, 1, 10_000])
    }).pipe(Effect.provide(ClientTable.layerTest({ capacity: 4, trackingSeconds: 10 }))))

  it.effect("a visit within the tracking time restarts it", () =>
    Effect.gen(function*() {
      const table = yield* ClientTable
      table.pinUnsafe(table.visitUnsafe("10.0.0.1"), 2)
      yield* TestClock.adjust("9 seconds")
      table.visitUnsafe("10.0.0.1")
      yield* TestClock.adjust("9 seconds")
      const entry = yield* table.lookup("10.0.0.1")
      assert.strictEqual(Option.getOrThrow(entry).server, 2)
      assert.strictEqual(Option.getOrThrow(entry).connects, 2)
      yield* TestClock.adjust("1 second")
      assert.isTrue(Option.isNone(yield* table.lookup("10.0.0.1")))
    }).pipe(Effect.provide(ClientTable.layerTest({ capacity: 4, trackingSeconds: 10 }))))

  // `recent` and `lookup` filter expired clients themselves, so the sweep is not observable through the service (it only
  // frees memory): this pins what callers see across sweeps, and that the table keeps working after them.
  it.effect("across periodic sweeps, clients leave recent once the tracking interval has passed", () =>
    Effect.gen(function*() {
      const table = yield* ClientTable
      table.visitUnsafe("10.0.0.1")
      yield* TestClock.adjust("4 seconds")
      table.visitUnsafe("10.0.0.2")
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.2", "10.0.0.1"])

      // t = 10 s: the sweep runs; 10.0.0.1 (seen at 0) is gone, 10.0.0.2 (seen at 4 s) stays.
      yield* TestClock.adjust("6 seconds")
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.2"])
      assert.isTrue(Option.isNone(yield* table.lookup("10.0.0.1")))

      // t = 20 s: the next sweep; everyone is forgotten.
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(addresses(yield* table.recent), [])
      assert.isTrue(Option.isNone(yield* table.lookup("10.0.0.2")))

      // The table still works after sweeping, and its slots are free again.
      table.visitUnsafe("10.0.0.3")
      table.visitUnsafe("10.0.0.4")
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.4", "10.0.0.3"])
    }).pipe(Effect.provide(ClientTable.layerTest({ capacity: 2, trackingSeconds: 10 }))))

  it.effect("layer takes capacity (-c) and tracking time (-T) from LbConfig", () =>
    Effect.gen(function*() {
      const table = yield* ClientTable
      assert.strictEqual(yield* table.capacity, 3)
      for (const a of ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]) table.visitUnsafe(a)
      assert.deepStrictEqual(addresses(yield* table.recent), ["10.0.0.4", "10.0.0.3", "10.0.0.2"])
      yield* TestClock.adjust("7 seconds")
      assert.deepStrictEqual(addresses(yield* table.recent), [])
    }).pipe(
      Effect.provide(
        ClientTable.layer.pipe(
          Layer.provide(SharedState.layer),
          Layer.provide(
            LbConfig.layer({ listen: Address.tcp("127.0.0.1", 0), servers: [], clientsMax: 3, trackingSeconds: 7 })
          )
        )
      )
    ))
})
