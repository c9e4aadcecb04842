import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Layer, PubSub } from "effect"
import { TestClock } from "effect/testing"
import * as Net from "node:net"
import { LbConfig } from "../../src/Config.ts"
import * as Address from "../../src/domain/Address.ts"
import { NO_SERVER } from "../../src/domain/Selection.ts"
import type { ServerSpec } from "../../src/domain/ServerSpec.ts"
import * as Resolve from "../../src/net/Resolve.ts"
import { ABUSE_SERVER, EMERGENCY_SERVER, Origin, ServerPool, ServerPoolError } from "../../src/services/ServerPool.ts"
import { Broadcast, type SettingChange } from "../../src/shared/Broadcast.ts"
import { SharedState } from "../../src/shared/SharedState.ts"

/** What the relay does as a connection moves bytes: it adds them to the server's counters. */
const moved = (pool: ServerPool["Service"], index: number, sent: number, received: number) =>
  pool.countUnsafe(index, sent, received)

/** Takes a connection on `index` as a sticky client would (up to the hard limit): it must be taken. */
const take = (pool: ServerPool["Service"], index: number) => assert.isTrue(pool.tryAcquireUnsafe(index, true))

const spec = (host: string, port: number, limits: Partial<Omit<ServerSpec, "endpoint">> = {}): ServerSpec => ({
  endpoint: Address.tcp(host, port),
  softLimit: 0,
  hardLimit: 0,
  weight: 0,
  prio: 0,
  ...limits
})

const policy = {
  hashMethod: "pen" as const,
  roundrobin: false,
  hash: false,
  weight: false,
  prio: false,
  stubborn: false
}

const three = [spec("10.0.0.1", 8001), spec("10.0.0.2", 8002), spec("10.0.0.3", 8003)]

const withPool = <A, E>(
  body: (pool: ServerPool["Service"]) => Effect.Effect<A, E>,
  options: { readonly servers?: ReadonlyArray<ServerSpec>; readonly emergency?: ServerSpec } = {}
) =>
  Effect.gen(function*() {
    return yield* body(yield* ServerPool)
  }).pipe(
    Effect.provide(
      ServerPool.layerTest({ servers: options.servers ?? three, emergency: options.emergency, policy })
    )
  )

/** A TCP dial target's host and port. */
const tcpTarget = (pool: ServerPool["Service"], index: number) => {
  const target = pool.dialTarget(index) as Net.TcpNetConnectOpts
  return { host: target.host, port: target.port }
}

const isBlacklisted = (pool: ServerPool["Service"], index: number) =>
  Effect.map(pool.snapshot, (s) => s.servers[index]!.blacklisted)

/** A resolver that knows `web.test` (at `address.current`) and `db.test`, and fails for any other name. */
const fakeDns = (address: { current: string }): Resolve.Lookup => (host) =>
  host === "web.test"
    ? Effect.succeed([address.current])
    : host === "db.test"
    ? Effect.succeed(["10.0.1.1", "10.0.1.2"])
    : Effect.fail(new Resolve.ResolveError({ host, cause: new Error("ENOTFOUND") }))

/** A pool over `servers` (with an emergency and an abuse server), its Broadcast recorded in `sent`. */
const withNamedPool = <A, E>(
  body: (pool: ServerPool["Service"], sent: Array<SettingChange>) => Effect.Effect<A, E>,
  address = { current: "10.0.0.1" }
) => {
  const sent: Array<SettingChange> = []
  return Effect.gen(function*() {
    const pool = yield* ServerPool.make({
      servers: three,
      emergency: { ...spec("10.0.0.8", 80), name: "web.test" },
      abuse: spec("10.0.0.9", 80),
      policy,
      lookup: fakeDns(address)
    })
    return yield* body(pool, sent)
  }).pipe(Effect.provideService(Broadcast, { send: (change) => Effect.sync(() => void sent.push(change)) }))
}

describe("ServerPool", () => {
  it.effect("a fresh pool shows every server as configured, none blacklisted, no current server", () =>
    withPool((pool) =>
      Effect.gen(function*() {
        const snapshot = yield* pool.snapshot
        assert.deepStrictEqual(
          snapshot.servers.map((s) => [s.index, s.address, s.connections, s.blacklisted, s.blacklistedUntil]),
          [[0, "10.0.0.1:8001", 0, false, 0], [1, "10.0.0.2:8002", 0, false, 0], [2, "10.0.0.3:8003", 0, false, 0]]
        )
        assert.isUndefined(snapshot.emergency)
        assert.strictEqual(snapshot.current, -1)
        assert.strictEqual(pool.backends.length, 3)
        assert.deepStrictEqual(pool.policy, policy)
        assert.deepStrictEqual(tcpTarget(pool, 1), { host: "10.0.0.2", port: 8002 })
      })
    ))

  it.effect("blacklist lasts exactly the given seconds on the clock the pool was built with", () =>
    withPool((pool) =>
      Effect.gen(function*() {
        yield* pool.blacklist(0, 30)
        assert.isTrue(yield* isBlacklisted(pool, 0))
        assert.isFalse(yield* isBlacklisted(pool, 1))
        assert.isFalse(yield* isBlacklisted(pool, 2))
        assert.isFalse(pool.admitsUnsafe(0, false))
        assert.isFalse(pool.admitsUnsafe(0, true))

        yield* TestClock.adjust("29 seconds")
        assert.isTrue(yield* isBlacklisted(pool, 0))
        assert.isFalse(pool.admitsUnsafe(0, false))

        yield* TestClock.adjust("1 second")
        assert.isFalse(yield* isBlacklisted(pool, 0))
        assert.isTrue(pool.admitsUnsafe(0, false))
      })
    ))

  it.effect("blacklistUntil keeps a deadline to the millisecond (a peer's); one past lifts it; the operator's is announced", () =>
    withPool((pool) =>
      Effect.gen(function*() {
        const actions = yield* pool.actions
        const now = yield* Clock.currentTimeMillis
        yield* pool.blacklistUntil(1, now + 12_345).pipe(Effect.provideService(Origin, "operator"))
        assert.strictEqual((yield* pool.snapshot).servers[1]!.blacklistedUntil, now + 12_345)
        assert.deepStrictEqual(yield* PubSub.take(actions), {
          index: 1,
          origin: "operator",
          blacklistedUntil: now + 12_345
        })
        yield* pool.blacklistUntil(1, now - 1)
        assert.strictEqual((yield* pool.snapshot).servers[1]!.blacklistedUntil, 0)
        assert.deepStrictEqual(yield* PubSub.take(actions), { index: 1, origin: "configuration", blacklistedUntil: 0 })
        assert.isTrue(Exit.isFailure(yield* Effect.exit(pool.blacklistUntil(9, now))))
      }).pipe(Effect.scoped)
    ))

  it.effect("blacklist(i, 0) lifts a blacklist at once", () =>
    withPool((pool) =>
      Effect.gen(function*() {
        yield* pool.blacklist(2, 60)
        yield* TestClock.adjust("10 seconds")
        assert.isTrue(yield* isBlacklisted(pool, 2))
        yield* pool.blacklist(2, 0)
        const status = (yield* pool.snapshot).servers[2]!
        assert.isFalse(status.blacklisted)
        assert.strictEqual(status.blacklistedUntil, 0)
        assert.isTrue(pool.admitsUnsafe(2, false))
      })
    ))

  it.effect("a later blacklist replaces an earlier one", () =>
    withPool((pool) =>
      Effect.gen(function*() {
        yield* pool.blacklist(1, 5)
        yield* TestClock.adjust("3 seconds")
        yield* pool.blacklist(1, 5)
        yield* TestClock.adjust("4 seconds")
        assert.isTrue(yield* isBlacklisted(pool, 1))
        yield* TestClock.adjust("1 second")
        assert.isFalse(yield* isBlacklisted(pool, 1))
      })
    ))

  it.effect("blacklisting a server that does not exist fails with ServerPoolError and changes nothing", () =>
    withPool((pool) =>
      Effect.gen(function*() {
        for (const index of [9, 3, -1, EMERGENCY_SERVER]) {
          const exit = yield* Effect.exit(pool.blacklist(index, 5))
          assert.isTrue(Exit.isFailure(exit), `blacklist(${index}) should fail`)
          const error = yield* Effect.flip(pool.blacklist(index, 5))
          assert.instanceOf(error, ServerPoolError)
          assert.strictEqual(error._tag, "ServerPoolError")
          assert.include(error.message, String(index))
        }
        const snapshot = yield* pool.snapshot
        assert.isTrue(snapshot.servers.every((s) => !s.blacklisted))
      })
    ))

  it.effect("default policy: new clients go roundrobin from server 1, skipping blacklisted servers", () =>
    withPool((pool) =>
      Effect.gen(function*() {
        const next = () => pool.chooseUnsafe(NO_SERVER, "192.0.2.1", 40000)
        assert.deepStrictEqual([next(), next(), next(), next()], [1, 2, 0, 1])
        yield* pool.blacklist(2, 10)
        assert.deepStrictEqual([next(), next(), next()], [0, 1, 0])
        yield* TestClock.adjust("10 seconds")
        assert.deepStrictEqual([next(), next(), next()], [1, 2, 0])
      })
    ))

  it.effect("default policy: a sticky client keeps its server, even a blacklisted one (admission refuses it)", () =>
    withPool((pool) =>
      Effect.gen(function*() {
        assert.strictEqual(pool.chooseUnsafe(2, "192.0.2.1", 40000), 2)
        assert.strictEqual(pool.chooseUnsafe(2, "192.0.2.1", 40001), 2)
        yield* pool.blacklist(2, 10)
        assert.strictEqual(pool.chooseUnsafe(2, "192.0.2.1", 40000), 2)
        assert.isFalse(pool.admitsUnsafe(2, true))
        // A sticky server that no longer exists falls back to roundrobin.
        assert.strictEqual(pool.chooseUnsafe(7, "192.0.2.1", 40000), 1)
      })
    ))

  it.effect("every server blacklisted: no server is chosen", () =>
    withPool((pool) =>
      Effect.gen(function*() {
        for (const i of [0, 1, 2]) yield* pool.blacklist(i, 10)
        assert.strictEqual(pool.chooseUnsafe(NO_SERVER, "192.0.2.1", 40000), NO_SERVER)
      })
    ))

  it.effect("acquire and release move connections, byte counters and current", () =>
    withPool((pool) =>
      Effect.gen(function*() {
        take(pool, 1)
        take(pool, 1)
        let snapshot = yield* pool.snapshot
        assert.strictEqual(snapshot.current, 1)
        assert.deepStrictEqual(snapshot.servers.map((s) => s.connections), [0, 2, 0])

        take(pool, 0)
        snapshot = yield* pool.snapshot
        assert.strictEqual(snapshot.current, 0)
        assert.deepStrictEqual(snapshot.servers.map((s) => s.connections), [1, 2, 0])

        moved(pool, 1, 100, 2000)
        pool.releaseUnsafe(1)
        moved(pool, 1, 5, 7)
        pool.releaseUnsafe(1)
        pool.releaseUnsafe(0)
        snapshot = yield* pool.snapshot
        assert.deepStrictEqual(snapshot.servers.map((s) => s.connections), [0, 0, 0])
        assert.deepStrictEqual(snapshot.servers.map((s) => [s.bytesSent, s.bytesReceived]), [[0, 0], [105, 2007], [
          0,
          0
        ]])
        // current is the server that last took a connection; releasing does not move it.
        assert.strictEqual(snapshot.current, 0)
      })
    ))

  it.effect("admission honours the soft limit, and the hard limit for sticky clients", () =>
    withPool(
      (pool) =>
        Effect.gen(function*() {
          // Server 0: maxc 1, hard 2.
          assert.isTrue(pool.admitsUnsafe(0, false))
          take(pool, 0)
          assert.isFalse(pool.admitsUnsafe(0, false))
          assert.isTrue(pool.admitsUnsafe(0, true))
          take(pool, 0)
          assert.isFalse(pool.admitsUnsafe(0, false))
          assert.isFalse(pool.admitsUnsafe(0, true))
          pool.releaseUnsafe(0)
          assert.isTrue(pool.admitsUnsafe(0, true))
          pool.releaseUnsafe(0)
          assert.isTrue(pool.admitsUnsafe(0, false))

          // Server 1: maxc 2, hard below it: the hard limit means nothing.
          take(pool, 1)
          assert.isTrue(pool.admitsUnsafe(1, false))
          take(pool, 1)
          assert.isFalse(pool.admitsUnsafe(1, false))
          assert.isFalse(pool.admitsUnsafe(1, true))

          // Taking a connection checks the same limits, in one atomic step.
          assert.isFalse(pool.tryAcquireUnsafe(1, false))
          assert.isFalse(pool.tryAcquireUnsafe(1, true))
          pool.releaseUnsafe(1)
          assert.isTrue(pool.tryAcquireUnsafe(1, false))
          assert.isFalse(pool.tryAcquireUnsafe(0, false) && pool.tryAcquireUnsafe(0, false))
          pool.releaseUnsafe(0)
          assert.strictEqual(pool.backendUnsafe(0)!.connections, 0)

          // Server 2: unlimited.
          for (let i = 0; i < 100; i++) take(pool, 2)
          assert.isTrue(pool.admitsUnsafe(2, false))

          // Limits show in the snapshot.
          const snapshot = yield* pool.snapshot
          assert.deepStrictEqual(snapshot.servers.map((s) => [s.softLimit, s.hardLimit]), [[1, 2], [2, 1], [0, 0]])

          // No such server.
          assert.isFalse(pool.admitsUnsafe(3, false))
          assert.isFalse(pool.admitsUnsafe(NO_SERVER, false))
        }),
      {
        servers: [
          spec("10.0.0.1", 8001, { softLimit: 1, hardLimit: 2 }),
          spec("10.0.0.2", 8002, { softLimit: 2, hardLimit: 1 }),
          spec("10.0.0.3", 8003)
        ]
      }
    ))

  it.effect("the emergency server is admitted while not blacklisted and never chosen", () =>
    withPool(
      (pool) =>
        Effect.gen(function*() {
          assert.isDefined(pool.emergency)
          assert.strictEqual(pool.emergency!.index, EMERGENCY_SERVER)
          assert.deepStrictEqual(tcpTarget(pool, EMERGENCY_SERVER), { host: "10.9.9.9", port: 9999 })
          let snapshot = yield* pool.snapshot
          assert.strictEqual(snapshot.emergency?.address, "10.9.9.9:9999")
          assert.strictEqual(snapshot.emergency?.index, EMERGENCY_SERVER)
          assert.isFalse(snapshot.emergency?.blacklisted)
          assert.isTrue(pool.admitsUnsafe(EMERGENCY_SERVER, false))

          yield* pool.blacklist(EMERGENCY_SERVER, 10)
          assert.isFalse(pool.admitsUnsafe(EMERGENCY_SERVER, false))
          snapshot = yield* pool.snapshot
          assert.isTrue(snapshot.emergency?.blacklisted)
          assert.isTrue(snapshot.servers.every((s) => !s.blacklisted))
          yield* TestClock.adjust("10 seconds")
          assert.isTrue(pool.admitsUnsafe(EMERGENCY_SERVER, false))

          take(pool, EMERGENCY_SERVER)
          moved(pool, EMERGENCY_SERVER, 3, 4)
          pool.releaseUnsafe(EMERGENCY_SERVER)
          snapshot = yield* pool.snapshot
          assert.strictEqual(snapshot.emergency?.bytesSent, 3)
          assert.strictEqual(snapshot.emergency?.bytesReceived, 4)
          assert.isTrue(snapshot.servers.every((s) => s.bytesSent === 0 && s.connections === 0))

          // Even with every regular server blacklisted, selection never hands out the emergency server.
          yield* pool.blacklist(0, 10)
          assert.strictEqual(pool.chooseUnsafe(NO_SERVER, "192.0.2.1", 40000), NO_SERVER)
        }),
      { servers: [spec("10.0.0.1", 8001)], emergency: spec("10.9.9.9", 9999) }
    ))

  it.effect("without an emergency server, EMERGENCY_SERVER is not admitted", () =>
    withPool((pool) =>
      Effect.sync(() => {
        assert.isUndefined(pool.emergency)
        assert.isFalse(pool.admitsUnsafe(EMERGENCY_SERVER, false))
      })
    ))

  describe("layer", () => {
    const listen = Address.tcp("127.0.0.1", 0)

    it.effect("resolves host names from LbConfig to addresses, once, at start-up", () =>
      Effect.gen(function*() {
        const pool = yield* ServerPool
        const snapshot = yield* pool.snapshot
        const [named, literal] = snapshot.servers
        const { host, port } = tcpTarget(pool, 0)
        assert.isDefined(host)
        assert.notStrictEqual(Net.isIP(host!), 0, `dial target host ${host} should be an address`)
        assert.include(["127.0.0.1", "::1"], host)
        assert.strictEqual(port, 8080)
        assert.strictEqual(named!.address, Address.format(Address.tcp(host!, 8080)))
        assert.strictEqual(literal!.address, "192.0.2.7:81")
        assert.strictEqual(named!.softLimit, 3)
        assert.strictEqual(snapshot.emergency?.address, Address.format(Address.tcp(host!, 9000)))
        // The names are kept, to be resolved again (--resolve-interval); an address has none.
        assert.strictEqual(named!.name, "localhost")
        assert.isUndefined(literal!.name)
        assert.strictEqual(snapshot.emergency?.name, "localhost")
      }).pipe(
        Effect.provide(
          ServerPool.layer.pipe(
            Layer.provide(SharedState.layerLocal),
            Layer.provide(
              LbConfig.layer({
                listen,
                servers: [spec("localhost", 8080, { softLimit: 3, hardLimit: 4 }), spec("192.0.2.7", 81)],
                emergency: spec("localhost", 9000)
              })
            )
          )
        )
      ))

    it.effect("takes its policy from LbConfig", () =>
      Effect.gen(function*() {
        const pool = yield* ServerPool
        assert.deepStrictEqual(pool.policy, { ...policy, roundrobin: true, stubborn: true })
      }).pipe(
        Effect.provide(
          ServerPool.layer.pipe(
            Layer.provide(SharedState.layerLocal),
            Layer.provide(
              LbConfig.layer({ listen, servers: [spec("127.0.0.1", 1)], roundrobin: true, stubborn: true })
            )
          )
        )
      ))

    it.effect("fails with ServerPoolError when a server name does not resolve", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Effect.scoped(Layer.build(
            ServerPool.layer.pipe(
              Layer.provide(SharedState.layerLocal),
              Layer.provide(
                LbConfig.layer({ listen, servers: [spec("127.0.0.1", 80), spec("nonexistent.invalid", 80)] })
              )
            )
          ))
        )
        assert.instanceOf(error, ServerPoolError)
        assert.strictEqual(error._tag, "ServerPoolError")
        assert.include(error.message, "nonexistent.invalid")
      }))

    it.effect("a worker thread's pool resolves nothing: the main thread tells it its servers", () =>
      Effect.gen(function*() {
        const pool = yield* ServerPool
        assert.deepStrictEqual(pool.backends.map((b) => b.spec.endpoint), [Address.tcp("nonexistent.invalid", 80)])
      }).pipe(
        Effect.provide(
          ServerPool.layerWorker.pipe(
            Layer.provide(SharedState.layerLocal),
            Layer.provide(
              LbConfig.layer({
                listen,
                servers: [spec("nonexistent.invalid", 80)],
                emergency: spec("nonexistent.invalid", 81)
              })
            )
          )
        )
      ))

    it.effect("fails with ServerPoolError when the emergency server's name does not resolve", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Effect.scoped(Layer.build(
            ServerPool.layer.pipe(
              Layer.provide(SharedState.layerLocal),
              Layer.provide(
                LbConfig.layer({
                  listen,
                  servers: [spec("127.0.0.1", 80)],
                  emergency: spec("nonexistent.invalid", 80)
                })
              )
            )
          ))
        )
        assert.instanceOf(error, ServerPoolError)
        assert.include(error.message, "nonexistent.invalid")
      }))
  })

  describe("names that follow DNS", () => {
    it.effect("the main thread's pool tells the workers every server, the emergency and abuse ones too", () =>
      withNamedPool((_, sent) =>
        Effect.sync(() => {
          assert.deepStrictEqual(sent.map((c) => c._tag === "Server" ? c.index : c._tag), [0, 1, 2, -2, -3])
          const emergency = sent[3] as Extract<SettingChange, { _tag: "Server" }>
          assert.strictEqual(emergency.settings.spec.name, "web.test")
        })
      ))

    it.effect("server N address NAME keeps the name, asked of the pool's resolver; an address given drops it", () =>
      withNamedPool((pool) =>
        Effect.gen(function*() {
          yield* pool.configure(1, [{ key: "address", value: "db.test" }])
          assert.strictEqual(pool.backends[1]!.spec.name, "db.test")
          assert.deepStrictEqual(tcpTarget(pool, 1), { host: "10.0.1.1", port: 8002 })
          assert.deepStrictEqual(ServerPool.specChanges(pool.backends[1]!.spec)[0], {
            key: "address",
            value: "db.test"
          })
          const error = yield* Effect.flip(pool.configure(1, [{ key: "address", value: "nope.test" }]))
          assert.include(error.message, "server 1: unknown or invalid address [nope.test]")
          assert.strictEqual(pool.backends[1]!.spec.name, "db.test")
          yield* pool.configure(1, [{ key: "address", value: "10.0.0.7" }])
          assert.isUndefined(pool.backends[1]!.spec.name)
          assert.isFalse(yield* pool.setResolved(1, "db.test", "10.0.1.2"))
          assert.deepStrictEqual(tcpTarget(pool, 1), { host: "10.0.0.7", port: 8002 })
        })
      ))

    it.effect("setResolved moves new connections to the new address, tells the workers and publishes the change", () =>
      withNamedPool((pool, sent) =>
        Effect.scoped(Effect.gen(function*() {
          yield* pool.configure(0, [{ key: "address", value: "web.test" }])
          assert.deepStrictEqual(tcpTarget(pool, 0), { host: "10.0.0.1", port: 8001 })
          const changes = yield* pool.changes
          sent.length = 0
          assert.isTrue(yield* pool.setResolved(0, "web.test", "10.0.0.5"))
          assert.deepStrictEqual(tcpTarget(pool, 0), { host: "10.0.0.5", port: 8001 })
          const status = (yield* pool.snapshot).servers[0]!
          assert.deepStrictEqual([status.address, status.name], ["10.0.0.5:8001", "web.test"])
          assert.strictEqual(yield* PubSub.take(changes), 0)
          assert.deepStrictEqual(sent.map((c) => c._tag === "Server" ? [c.index, c.settings.spec.endpoint] : c), [
            [0, Address.tcp("10.0.0.5", 8001)]
          ])
          // The same address again, or a name the server no longer has: nothing changes, nothing is sent.
          assert.isFalse(yield* pool.setResolved(0, "web.test", "10.0.0.5"))
          assert.isFalse(yield* pool.setResolved(0, "other.test", "10.0.0.6"))
          assert.isFalse(yield* pool.setResolved(7, "web.test", "10.0.0.6"))
          assert.strictEqual(sent.length, 1)
          assert.deepStrictEqual(tcpTarget(pool, 0), { host: "10.0.0.5", port: 8001 })
        }))
      ))

    it.effect("the emergency server follows its name too; an abuse server given as an address has none", () =>
      withNamedPool((pool) =>
        Effect.gen(function*() {
          assert.isTrue(yield* pool.setResolved(EMERGENCY_SERVER, "web.test", "10.0.0.6"))
          const target = pool.dialTarget(EMERGENCY_SERVER) as Net.TcpNetConnectOpts
          assert.deepStrictEqual([target.host, target.port], ["10.0.0.6", 80])
          assert.strictEqual((yield* pool.snapshot).emergency?.address, "10.0.0.6:80")
          assert.isFalse(yield* pool.setResolved(ABUSE_SERVER, "web.test", "10.0.0.6"))
          const abuse = pool.dialTarget(ABUSE_SERVER) as Net.TcpNetConnectOpts
          assert.deepStrictEqual([abuse.host, abuse.port], ["10.0.0.9", 80])
        })
      ))

    it.effect("a worker thread's pool adopts the emergency server as the main thread announces it", () =>
      withNamedPool((main, sent) =>
        Effect.gen(function*() {
          yield* main.setResolved(EMERGENCY_SERVER, "web.test", "10.0.0.6")
          const told = [...sent]
          const worker = yield* ServerPool.make({
            servers: three,
            emergency: spec("web.test", 80),
            abuse: spec("10.0.0.9", 80),
            policy
          })
          for (const change of told) {
            if (change._tag === "Server") yield* worker.adopt(change.index, change.settings)
          }
          const target = worker.dialTarget(EMERGENCY_SERVER) as Net.TcpNetConnectOpts
          assert.deepStrictEqual([target.host, target.port], ["10.0.0.6", 80])
          assert.strictEqual(worker.emergency!.spec.name, "web.test")
        })
      ))
  })
})
