import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger } from "effect"
import { TestClock } from "effect/testing"
import { LbConfig } from "../../src/Config.ts"
import * as Address from "../../src/domain/Address.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"
import { HealthChecker } from "../../src/services/HealthChecker.ts"
import { RelayBuffers } from "../../src/services/RelayBuffers.ts"
import { EMERGENCY_SERVER, ServerPool } from "../../src/services/ServerPool.ts"
import { StatsReporter } from "../../src/services/StatsReporter.ts"

const spec = (host: string, port: number): ServerSpec.ServerSpec => ServerSpec.make(Address.tcp(host, port))

const servers = [spec("10.0.0.1", 8001), spec("10.0.0.2", 8002)]
const emergency = spec("10.9.9.9", 9999)
const policy = { roundrobin: false, hash: false, weight: false, prio: false, stubborn: false }

/** HealthChecker over a test pool and real stats, with the pool and stats reachable from the test. */
const passive = (blacklistSeconds: number) =>
  HealthChecker.layer.pipe(
    Layer.provideMerge(StatsReporter.layer),
    Layer.provideMerge(RelayBuffers.layer),
    Layer.provideMerge(ServerPool.layerTest({ servers, emergency, policy })),
    Layer.provideMerge(LbConfig.layer({ listen: Address.tcp("127.0.0.1", 0), servers, blacklistSeconds }))
  )

const blacklisted = Effect.gen(function*() {
  const snapshot = yield* (yield* ServerPool).snapshot
  return [...snapshot.servers.map((s) => s.blacklisted), snapshot.emergency!.blacklisted]
})

const refused = Object.assign(new Error("connect ECONNREFUSED 10.0.0.2:8002"), { code: "ECONNREFUSED" })

describe("HealthChecker", () => {
  describe("layer (passive)", () => {
    it.effect("a failed connect blacklists that server for -b seconds and counts a blacklisting", () =>
      Effect.gen(function*() {
        const health = yield* HealthChecker
        const stats = yield* StatsReporter
        assert.deepStrictEqual(yield* blacklisted, [false, false, false])

        health.connectFailedUnsafe(1, "error", refused)
        assert.deepStrictEqual(yield* blacklisted, [false, true, false])
        assert.strictEqual((yield* stats.snapshot).blacklistings, 1)
        assert.strictEqual((yield* stats.snapshot).servers[1]!.blacklistedUntil, 7000)

        yield* TestClock.adjust("6 seconds")
        assert.deepStrictEqual(yield* blacklisted, [false, true, false])
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(yield* blacklisted, [false, false, false])
        // The blacklisting stays counted after the blacklist has lapsed.
        assert.strictEqual((yield* stats.snapshot).blacklistings, 1)
      }).pipe(Effect.provide(passive(7))))

    it.effect("a timed-out connect blacklists too, and each failure counts once", () =>
      Effect.gen(function*() {
        const health = yield* HealthChecker
        const stats = yield* StatsReporter
        health.connectFailedUnsafe(0, "timeout", undefined)
        assert.deepStrictEqual(yield* blacklisted, [true, false, false])
        yield* TestClock.adjust("3 seconds")
        health.connectFailedUnsafe(1, "error", refused)
        assert.deepStrictEqual(yield* blacklisted, [true, true, false])
        assert.strictEqual((yield* stats.snapshot).blacklistings, 2)
        yield* TestClock.adjust("2 seconds")
        assert.deepStrictEqual(yield* blacklisted, [false, true, false])
        yield* TestClock.adjust("3 seconds")
        assert.deepStrictEqual(yield* blacklisted, [false, false, false])
      }).pipe(Effect.provide(passive(5))))

    it.effect("a failed emergency server is blacklisted like any other", () =>
      Effect.gen(function*() {
        const health = yield* HealthChecker
        health.connectFailedUnsafe(EMERGENCY_SERVER, "error", refused)
        assert.deepStrictEqual(yield* blacklisted, [false, false, true])
        assert.isFalse((yield* ServerPool).admitsUnsafe(EMERGENCY_SERVER, false))
        assert.strictEqual((yield* (yield* StatsReporter).snapshot).blacklistings, 1)
      }).pipe(Effect.provide(passive(30))))

    it.effect("with blacklistSeconds 0 nothing is blacklisted and nothing counted", () =>
      Effect.gen(function*() {
        const health = yield* HealthChecker
        const pool = yield* ServerPool
        health.connectFailedUnsafe(0, "error", refused)
        health.connectFailedUnsafe(1, "timeout", undefined)
        health.connectFailedUnsafe(EMERGENCY_SERVER, "error", refused)
        assert.deepStrictEqual(yield* blacklisted, [false, false, false])
        assert.isTrue(pool.admitsUnsafe(0, false))
        assert.isTrue(pool.admitsUnsafe(1, false))
        assert.strictEqual((yield* (yield* StatsReporter).snapshot).blacklistings, 0)
      }).pipe(Effect.provide(passive(0))))

    it.effect("logs a warning naming the server, the time and the reason", () => {
      const lines: Array<string> = []
      const capture = Logger.make((options) => {
        lines.push(`${options.logLevel}: ${String(options.message)}`)
      })
      return Effect.gen(function*() {
        const health = yield* HealthChecker
        health.connectFailedUnsafe(1, "error", refused)
        health.connectFailedUnsafe(0, "timeout", undefined)
        for (let i = 0; i < 100 && lines.length < 2; i++) yield* Effect.yieldNow
        assert.strictEqual(lines.length, 2)
        assert.include(lines[0]!, "Warn")
        assert.include(lines[0]!, "server 1")
        assert.include(lines[0]!, "30 s")
        assert.include(lines[0]!, "ECONNREFUSED")
        assert.include(lines[1]!, "server 0")
        assert.include(lines[1]!, "timeout")
      }).pipe(Effect.provide(passive(30).pipe(Layer.provide(Logger.layer([capture])))))
    })
  })

  describe("failures that are nib's own", () => {
    const emfile = Object.assign(new Error("connect EMFILE 10.0.0.2:8002 - Local (undefined:undefined)"), {
      code: "EMFILE"
    })
    const noPort = Object.assign(new Error("connect EADDRNOTAVAIL 10.0.0.1:8001"), { code: "EADDRNOTAVAIL" })

    it.effect("blacklist no server, are counted as local failures, not blacklistings", () =>
      Effect.gen(function*() {
        const health = yield* HealthChecker
        const stats = yield* StatsReporter
        health.connectFailedUnsafe(1, "error", emfile)
        health.ownFailureUnsafe(emfile)
        health.ownFailureUnsafe(noPort)
        assert.deepStrictEqual(yield* blacklisted, [false, false, false])
        assert.isTrue((yield* ServerPool).admitsUnsafe(1, false))
        const snapshot = yield* stats.snapshot
        assert.strictEqual(snapshot.localFailures, 3)
        assert.strictEqual(snapshot.blacklistings, 0)
      }).pipe(Effect.provide(passive(30))))

    it.effect("are logged at once, then at most one line a second, counting the failures since the last line", () => {
      const lines: Array<string> = []
      const capture = Logger.make((options) => {
        lines.push(`${options.logLevel}: ${String(options.message)}`)
      })
      const settle = Effect.gen(function*() {
        for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      })
      return Effect.gen(function*() {
        const health = yield* HealthChecker
        health.ownFailureUnsafe(emfile)
        yield* settle
        assert.strictEqual(lines.length, 1)
        assert.include(lines[0]!, "Warn")
        assert.include(lines[0]!, "1 connection failed")
        assert.include(lines[0]!, "EMFILE")
        assert.include(lines[0]!, "no server blamed")

        // A burst within the second: no line until the second has passed, then one line counting all of them.
        for (let i = 0; i < 40; i++) health.ownFailureUnsafe(i % 2 === 0 ? emfile : noPort)
        yield* settle
        assert.strictEqual(lines.length, 1)
        yield* TestClock.adjust("999 millis")
        yield* settle
        assert.strictEqual(lines.length, 1)
        yield* TestClock.adjust("1 millis")
        yield* settle
        assert.strictEqual(lines.length, 2)
        assert.include(lines[1]!, "40 connections failed")
        assert.include(lines[1]!, "EMFILE")
        assert.include(lines[1]!, "EADDRNOTAVAIL")

        // A quiet second ends the period: the next failure is logged at once.
        yield* TestClock.adjust("1 second")
        yield* settle
        assert.strictEqual(lines.length, 2)
        yield* TestClock.adjust("5 seconds")
        health.ownFailureUnsafe(noPort)
        yield* settle
        assert.strictEqual(lines.length, 3)
        assert.include(lines[2]!, "1 connection failed")
        assert.notInclude(lines[2]!, "EMFILE")
        assert.strictEqual((yield* (yield* StatsReporter).snapshot).localFailures, 42)
      }).pipe(Effect.provide(passive(30).pipe(Layer.provide(Logger.layer([capture])))))
    })
  })

  describe("layerNoop", () => {
    const noop = HealthChecker.layerNoop.pipe(
      Layer.merge(StatsReporter.layer.pipe(Layer.provide(RelayBuffers.layer))),
      Layer.provideMerge(ServerPool.layerTest({ servers, emergency, policy }))
    )

    it.effect("changes nothing: no server blacklisted, nothing counted", () =>
      Effect.gen(function*() {
        const health = yield* HealthChecker
        const pool = yield* ServerPool
        health.connectFailedUnsafe(0, "error", refused)
        health.connectFailedUnsafe(1, "timeout", undefined)
        health.connectFailedUnsafe(EMERGENCY_SERVER, "error", refused)
        assert.deepStrictEqual(yield* blacklisted, [false, false, false])
        assert.isTrue(pool.admitsUnsafe(0, false))
        assert.isTrue(pool.admitsUnsafe(EMERGENCY_SERVER, false))
        assert.strictEqual((yield* (yield* StatsReporter).snapshot).blacklistings, 0)
      }).pipe(Effect.provide(noop)))
  })
})
