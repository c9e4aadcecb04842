import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Layer, Logger, PubSub } from "effect"
import { TestClock } from "effect/testing"
import { LbConfig } from "../../src/Config.ts"
import * as Address from "../../src/domain/Address.ts"
import type * as HealthCheck from "../../src/domain/HealthCheck.ts"
import * as Selection from "../../src/domain/Selection.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"
import type * as Probe from "../../src/net/Probe.ts"
import { ProbeFailure } from "../../src/net/Probe.ts"
import { HealthChecker, Prober } from "../../src/services/HealthChecker.ts"
import { EMERGENCY_SERVER, ServerPool } from "../../src/services/ServerPool.ts"
import { StatsReporter } from "../../src/services/StatsReporter.ts"
import { SharedState } from "../../src/shared/SharedState.ts"

const spec = (host: string, port: number): ServerSpec.ServerSpec => ServerSpec.make(Address.tcp(host, port))

const servers = [spec("10.0.0.1", 8001), spec("10.0.0.2", 8002)]
const emergency = spec("10.9.9.9", 9999)
const policy = { roundrobin: false, hash: false, weight: false, prio: false, stubborn: false }

/** HealthChecker over a test pool and real stats, with the pool and stats reachable from the test. */
const passive = (blacklistSeconds: number) =>
  HealthChecker.layer.pipe(
    Layer.provideMerge(StatsReporter.layer),
    Layer.provideMerge(SharedState.layerLocal),
    Layer.provideMerge(ServerPool.layerTest({ servers, emergency, policy })),
    Layer.provideMerge(LbConfig.layer({ listen: Address.tcp("127.0.0.1", 0), servers, blacklistSeconds }))
  )

const blacklisted = Effect.gen(function*() {
  const snapshot = yield* (yield* ServerPool).snapshot
  return [...snapshot.servers.map((s) => s.blacklisted), snapshot.emergency!.blacklisted]
})

const refused = Object.assign(new Error("connect ECONNREFUSED 10.0.0.2:8002"), { code: "ECONNREFUSED" })

// Active checks: a stub prober answers for each server (by port), and the clock is the TestClock.
const tcp: HealthCheck.Check = { _tag: "Tcp" }
const INTERVAL = 2000

/** What the stub answers for each server (by port), and every probe it was asked for. */
const makeStub = () => {
  const outcomes = new Map<number, "pass" | "fail" | "own">()
  const probes: Array<{
    readonly port: number
    readonly at: number
    readonly check: HealthCheck.Check
    readonly options: Probe.Options
  }> = []
  const prober = Layer.succeed(Prober, {
    probe: (check, endpoint, options) =>
      Effect.gen(function*() {
        const port = endpoint._tag === "Tcp" ? endpoint.port : 0
        probes.push({ port, at: yield* Clock.currentTimeMillis, check, options })
        const outcome = outcomes.get(port) ?? "pass"
        if (outcome === "pass") return
        return yield* new ProbeFailure({
          reason: outcome === "fail" ? "stub: refused" : "stub: EMFILE",
          cause: outcome === "own" ? Object.assign(new Error("EMFILE"), { code: "EMFILE" }) : undefined
        })
      })
  })
  return { outcomes, probes, prober }
}

interface Options {
  readonly check?: HealthCheck.Check | undefined
  readonly slowStartMs?: number
  readonly random?: () => number
}

const active = (stub: ReturnType<typeof makeStub>, options: Options = {}, lines: Array<string> = []) => {
  const check = "check" in options ? options.check : tcp
  const capture = Logger.make((o) => {
    lines.push(`${o.logLevel}: ${String(o.message)}`)
  })
  return HealthChecker.layer.pipe(
    Layer.provideMerge(StatsReporter.layer),
    Layer.provideMerge(SharedState.layerLocal),
    Layer.provideMerge(
      ServerPool.layerTest({
        servers,
        emergency,
        policy,
        check,
        slowStartMs: options.slowStartMs ?? 0,
        random: options.random
      })
    ),
    Layer.provideMerge(
      LbConfig.layer({
        listen: Address.tcp("127.0.0.1", 0),
        servers,
        check,
        checkIntervalSeconds: INTERVAL / 1000,
        rise: 2,
        fall: 3
      })
    ),
    Layer.provide(stub.prober),
    Layer.provide(Logger.layer([capture]))
  )
}

/** Moves the clock on, 50 ms at a time, until server `port` has been probed `n` more times (bounded). */
const probed = (stub: ReturnType<typeof makeStub>, port: number, n: number) =>
  Effect.gen(function*() {
    const count = () => stub.probes.filter((p) => p.port === port).length
    const target = count() + n
    for (let i = 0; i < 10_000 && count() < target; i++) yield* TestClock.adjust("50 millis")
    assert.strictEqual(count(), target, `server on port ${port} probed`)
  })

const down = Effect.gen(function*() {
  return (yield* (yield* ServerPool).snapshot).servers.map((s) => s.down)
})

const transitions = Effect.gen(function*() {
  return (yield* (yield* StatsReporter).snapshot).healthTransitions
})

/** Draws 0.005, 0.015, ..., 0.995, then again: a share s admits 100 * s of each hundred new clients. */
const evenDraws = () => {
  let i = 0
  return () => ((i++ % 100) + 0.5) / 100
}

/**
 * Takes server 1 down and brings it back up; returns when it is up, with a function that sets the clock to a
 * time since then.
 */
const bounce = (stub: ReturnType<typeof makeStub>) =>
  Effect.gen(function*() {
    stub.outcomes.set(8002, "fail")
    yield* probed(stub, 8002, 3)
    stub.outcomes.set(8002, "pass")
    yield* probed(stub, 8002, 2)
    assert.deepStrictEqual(yield* down, [false, false])
    const upAt = (yield* ServerPool).backends[1]!.upSince
    return (sinceUp: number) => TestClock.setTime(upAt + sinceUp)
  })

const admitted = (pool: ServerPool["Service"], index: number, sticky = false) =>
  Array.from({ length: 100 }, () => pool.admitsUnsafe(index, sticky)).filter(Boolean).length

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
      Layer.merge(StatsReporter.layer.pipe(Layer.provide(SharedState.layerLocal))),
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

  describe("active checks (TestClock, a stub prober)", () => {
    it.effect("fall failures in a row take a server down, rise passes bring it back; each change counted and logged", () => {
      const stub = makeStub()
      const lines: Array<string> = []
      return Effect.gen(function*() {
        const pool = yield* ServerPool
        stub.outcomes.set(8002, "fail")
        yield* probed(stub, 8002, 2)
        assert.deepStrictEqual(yield* down, [false, false], "two failures of three: still up")
        yield* probed(stub, 8002, 1)
        assert.deepStrictEqual(yield* down, [false, true])
        assert.strictEqual(yield* transitions, 1)
        assert.isTrue(lines.includes("Warn: server 1 (10.0.0.2:8002) is down: stub: refused"), lines.join("\n"))
        // Down is as blacklisted for new clients: roundrobin passes it over, admission refuses it (sticky or not).
        assert.isFalse(pool.admitsUnsafe(1, false))
        assert.isFalse(pool.admitsUnsafe(1, true))
        const picks = Array.from({ length: 4 }, () => pool.chooseUnsafe(Selection.NO_SERVER, "10.1.1.1", 1))
        assert.deepStrictEqual(picks, [0, 0, 0, 0])

        // More failures change nothing; one pass of two does not bring it back.
        yield* probed(stub, 8002, 3)
        stub.outcomes.set(8002, "pass")
        yield* probed(stub, 8002, 1)
        assert.deepStrictEqual(yield* down, [false, true])
        yield* probed(stub, 8002, 1)
        assert.deepStrictEqual(yield* down, [false, false])
        assert.strictEqual(yield* transitions, 2)
        assert.isTrue(lines.includes("Warn: server 1 (10.0.0.2:8002) is up again"), lines.join("\n"))
        assert.isTrue(pool.admitsUnsafe(1, false))
        // Server 0 passed all along: never down, never logged.
        assert.isFalse(lines.some((l) => l.includes("server 0")), lines.join("\n"))
        // Each probe had the interval to pass (TCP mode: no datagrams); the emergency server is never checked.
        assert.isTrue(stub.probes.every((p) => p.options.timeoutMs === INTERVAL && p.options.datagram === false))
        assert.isFalse(stub.probes.some((p) => p.port === 9999))
      }).pipe(Effect.provide(active(stub, {}, lines)))
    })

    it.effect("a pass between failures starts the count again", () => {
      const stub = makeStub()
      return Effect.gen(function*() {
        for (let i = 0; i < 4; i++) {
          stub.outcomes.set(8001, "fail")
          yield* probed(stub, 8001, 2)
          stub.outcomes.set(8001, "pass")
          yield* probed(stub, 8001, 1)
        }
        assert.deepStrictEqual(yield* down, [false, false])
        assert.strictEqual(yield* transitions, 0)
      }).pipe(Effect.provide(active(stub)))
    })

    it.effect("a check that fails on nib's own resources is counted and blames no server", () => {
      const stub = makeStub()
      const lines: Array<string> = []
      return Effect.gen(function*() {
        stub.outcomes.set(8002, "own")
        yield* probed(stub, 8002, 6)
        assert.deepStrictEqual(yield* down, [false, false])
        const stats = yield* (yield* StatsReporter).snapshot
        assert.strictEqual(stats.healthTransitions, 0)
        assert.strictEqual(stats.localFailures, 6)
        const warnings = lines.filter((l) => l.includes("nib's own resources"))
        assert.isAbove(warnings.length, 0)
        assert.include(warnings[0]!, "server 1 (10.0.0.2:8002)")
        assert.include(warnings[0]!, "EMFILE")
      }).pipe(Effect.provide(active(stub, {}, lines)))
    })

    it.effect("each server's checks are 0.9 to 1.1 intervals apart, the first within the first interval", () => {
      const stub = makeStub()
      return Effect.gen(function*() {
        yield* probed(stub, 8001, 30)
        for (const port of [8001, 8002]) {
          const times = stub.probes.filter((p) => p.port === port).map((p) => p.at)
          assert.isBelow(times[0]!, INTERVAL)
          for (let i = 1; i < times.length; i++) {
            const gap = times[i]! - times[i - 1]!
            // The clock moves 50 ms at a time: a probe is seen at most 50 ms after it was due.
            assert.isTrue(gap >= INTERVAL * 0.9 - 50 && gap <= INTERVAL * 1.1 + 50, `${port}: gap ${gap}`)
          }
        }
        // Jittered: the gaps are not all the same.
        const gaps = stub.probes.filter((p) => p.port === 8001).map((p, i, all) => i === 0 ? 0 : p.at - all[i - 1]!.at)
        assert.isAbove(new Set(gaps.slice(1)).size, 1)
      }).pipe(Effect.provide(active(stub)))
    })

    it.effect("without a check nothing is probed, and nothing is ever down", () => {
      const stub = makeStub()
      return Effect.gen(function*() {
        yield* TestClock.adjust("1 minute")
        assert.strictEqual(stub.probes.length, 0)
        assert.deepStrictEqual(yield* down, [false, false])
      }).pipe(Effect.provide(active(stub, { check: undefined })))
    })

    it.effect("server N check at run time: started, changed, stopped (a down server no longer checked is up)", () => {
      const stub = makeStub()
      const lines: Array<string> = []
      return Effect.gen(function*() {
        const pool = yield* ServerPool
        yield* pool.configure(1, [{ key: "check", value: { _tag: "Http", path: "/health" } }])
        yield* TestClock.adjust("10 seconds")
        assert.deepStrictEqual(stub.probes.map((p) => p.port).toSorted(), Array(stub.probes.length).fill(8002))
        assert.deepStrictEqual(stub.probes.at(-1)!.check, { _tag: "Http", path: "/health" })

        stub.outcomes.set(8002, "fail")
        yield* probed(stub, 8002, 3)
        assert.deepStrictEqual(yield* down, [false, true])

        // Another check keeps what is known: the server stays down until its new check passes twice.
        yield* pool.configure(1, [{ key: "check", value: tcp }])
        stub.outcomes.set(8002, "pass")
        yield* probed(stub, 8002, 1)
        assert.deepStrictEqual(stub.probes.at(-1)!.check, tcp)
        assert.deepStrictEqual(yield* down, [false, true])
        stub.outcomes.set(8002, "fail")
        yield* probed(stub, 8002, 1)

        // No check: nothing probes it any more, and it takes clients again.
        yield* pool.configure(1, [{ key: "check", value: undefined }])
        assert.deepStrictEqual(yield* down, [false, false])
        assert.isTrue(lines.some((l) => l.includes("server 1 (10.0.0.2:8002) is no longer checked")), lines.join("\n"))
        const before = stub.probes.length
        yield* TestClock.adjust("1 minute")
        assert.strictEqual(stub.probes.length, before)
      }).pipe(Effect.provide(active(stub, { check: undefined }, lines)))
    })

    it.effect("a server added by server N address gets --check; a new address is checked afresh", () => {
      const stub = makeStub()
      return Effect.gen(function*() {
        const pool = yield* ServerPool
        yield* pool.configure(3, [{ key: "address", value: "10.0.0.4" }, { key: "port", value: 8004 }])
        yield* probed(stub, 8004, 2)
        assert.deepStrictEqual(stub.probes.at(-1)!.check, tcp)

        stub.outcomes.set(8004, "fail")
        yield* probed(stub, 8004, 3)
        assert.isTrue(pool.backends[3]!.down)
        // Server 3 moves to another port: another server, taken as up, checked there from now on.
        yield* pool.configure(3, [{ key: "port", value: 8005 }])
        assert.isFalse(pool.backends[3]!.down)
        yield* probed(stub, 8005, 1)
        const after = stub.probes.filter((p) => p.port === 8004).length
        yield* probed(stub, 8005, 3)
        assert.strictEqual(stub.probes.filter((p) => p.port === 8004).length, after, "the old address is not probed")
        // Slot 2, which has no address, is never probed.
        assert.isFalse(stub.probes.some((p) => p.port === 0))
      }).pipe(Effect.provide(active(stub)))
    })

    it.effect("downs: each server a check takes down, once", () => {
      const stub = makeStub()
      return Effect.gen(function*() {
        const downs = yield* (yield* HealthChecker).downs
        stub.outcomes.set(8001, "fail")
        yield* probed(stub, 8001, 6)
        stub.outcomes.set(8001, "pass")
        yield* probed(stub, 8001, 2)
        stub.outcomes.set(8001, "fail")
        yield* probed(stub, 8001, 3)
        assert.deepStrictEqual(yield* PubSub.takeAll(downs), [0, 0])
      }).pipe(Effect.provide(active(stub)))
    })

    describe("slow start", () => {
      it.effect("a server back up takes a share of new clients growing linearly, all of its sticky ones", () => {
        const stub = makeStub()
        return Effect.gen(function*() {
          const pool = yield* ServerPool
          // Before it ever went down: no slow start.
          assert.strictEqual(admitted(pool, 1), 100)
          const sinceUp = yield* bounce(stub)
          const upAt = pool.backends[1]!.upSince
          assert.isAbove(upAt, 0)
          assert.isAtMost(upAt, yield* Clock.currentTimeMillis)
          yield* sinceUp(0)
          assert.strictEqual(admitted(pool, 1), 0)
          assert.strictEqual(admitted(pool, 1, true), 100)
          yield* sinceUp(2500)
          assert.strictEqual(admitted(pool, 1), 25)
          yield* sinceUp(7500)
          assert.strictEqual(admitted(pool, 1), 75)
          yield* sinceUp(10_000)
          assert.strictEqual(admitted(pool, 1), 100)
          // Server 0 was never down: it takes every client all along.
          assert.strictEqual(admitted(pool, 0), 100)
        }).pipe(Effect.provide(active(stub, { slowStartMs: 10_000, random: evenDraws() })))
      })

      it.effect("a starting server takes every client when no other server is up and past its slow start", () => {
        const stub = makeStub()
        return Effect.gen(function*() {
          const pool = yield* ServerPool
          const sinceUp = yield* bounce(stub)
          yield* sinceUp(0)
          assert.strictEqual(admitted(pool, 1), 0)
          // Server 0 blacklisted: server 1 is the only one left, it takes everyone rather than see them refused.
          yield* pool.blacklist(0, 60)
          assert.strictEqual(admitted(pool, 1), 100)
        }).pipe(Effect.provide(active(stub, { slowStartMs: 10_000, random: evenDraws() })))
      })

      it.effect("without --slow-start a server back up takes every new client at once", () => {
        const stub = makeStub()
        return Effect.gen(function*() {
          const pool = yield* ServerPool
          yield* bounce(stub)
          assert.strictEqual(pool.backends[1]!.upSince, 0)
          assert.strictEqual(admitted(pool, 1), 100)
        }).pipe(Effect.provide(active(stub, { random: evenDraws() })))
      })
    })
  })
})
