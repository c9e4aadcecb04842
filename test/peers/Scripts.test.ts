/**
 * `--peers`'s Lua scripts in a real redis-server, through Effect's Redis service over NodeRedis as nib runs them: the
 * merge of pins agrees with its model (`domain/Peers.merge`), what was kept is published, a pin past the tracking
 * time counts as none, an operator's change is merged and published, and pruning drops what is stale.
 */
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Queue } from "effect"
import * as Redis from "effect/persistence/Redis"
import * as P from "../../src/domain/Peers.ts"
import { claim, prune, serverChange } from "../../src/peers/Scripts.ts"
import * as Backend from "../utils/Backend.ts"
import * as RedisServer from "../utils/Redis.ts"

RedisServer.warnIfMissing("test/peers/Scripts.test.ts")

/** A redis-server for the test, and Effect's Redis service connected to it. */
const redis = Effect.gen(function*() {
  const port = yield* Backend.freePort
  yield* RedisServer.start(port)
  const context = yield* Layer.build(NodeRedis.layer({ url: `redis://127.0.0.1:${port}` }))
  return Context.get(context, Redis.Redis)
})

const keys = P.keys("t")
const line = (c: P.Change) => [c.client, c.server, c.previous, String(c.seen)]

describe.skipIf(RedisServer.path === undefined)("--peers's Lua scripts in Redis", () => {
  it.live("claim: the first writer wins; the same server, or a move from the server Redis has, is kept", () =>
    Effect.gen(function*() {
      const r = yield* redis
      const messages = yield* r.subscribe(keys.channel)
      const run = (from: string, changes: ReadonlyArray<P.Change>, now = 1000, tracking = 0) =>
        r.eval(claim)(keys, from, now, tracking, changes.flatMap(line))

      // Two nibs pin the same new client to different servers: the second gets the first's pin back.
      assert.deepStrictEqual(yield* run("a", [{ client: "c1", server: "s1:80", previous: "", seen: 100 }]), [])
      assert.deepStrictEqual(yield* run("b", [{ client: "c1", server: "s2:80", previous: "", seen: 101 }]), [
        "c1",
        "100|s1:80"
      ])
      // The second nib's visit, told as a visit of s1, is kept: the last visit moves on.
      assert.deepStrictEqual(yield* run("b", [{ client: "c1", server: "s1:80", previous: "s1:80", seen: 150 }]), [])
      // A failover moves the client off s1: kept. A stale move (from s1 again) is not.
      assert.deepStrictEqual(yield* run("a", [{ client: "c1", server: "s3:80", previous: "s1:80", seen: 160 }]), [])
      assert.deepStrictEqual(yield* run("b", [{ client: "c1", server: "s2:80", previous: "s1:80", seen: 170 }]), [
        "c1",
        "160|s3:80"
      ])
      assert.strictEqual(yield* r.send("HGET", keys.sticky, "c1"), "160|s3:80")

      // What was kept was published, with its writer; what was refused was not.
      const published: Array<P.Message> = []
      for (let i = 0; i < 3; i++) published.push(P.decodeMessage((yield* Queue.take(messages)).message)!)
      assert.deepStrictEqual(published.map((m) => m._tag === "Pins" ? [m.from, m.pins] : []), [
        ["a", [["c1", "s1:80", 100]]],
        ["b", [["c1", "s1:80", 150]]],
        ["a", [["c1", "s3:80", 160]]]
      ])
      assert.strictEqual(yield* Queue.size(messages), 0)
    }))

  it.live("claim agrees with Peers.merge on random batches", () =>
    Effect.gen(function*() {
      const r = yield* redis
      const model = new Map<string, P.Pin>()
      let seed = 7
      const random = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31
        return seed % n
      }
      const servers = ["s1:80", "s2:80", "s3:80"]
      for (let round = 0; round < 40; round++) {
        const batch: Array<P.Change> = []
        const clients = new Set<string>()
        for (let i = 0; i < 20; i++) {
          const client = `c${random(12)}`
          if (clients.has(client)) continue
          clients.add(client)
          const previous = random(3) === 0 ? "" : servers[random(3)]!
          batch.push({ client, server: servers[random(3)]!, previous, seen: round * 100 + i })
        }
        const expected: Array<string> = []
        for (const change of batch) {
          const { kept, won } = P.merge(change, model.get(change.client))
          if (!won) expected.push(change.client, P.encodePin(kept.server, kept.seen))
          model.set(change.client, kept)
        }
        assert.deepStrictEqual(yield* r.eval(claim)(keys, "x", 0, 0, batch.flatMap(line)), expected, `round ${round}`)
      }
    }))

  it.live("claim: a pin past the tracking time counts as none", () =>
    Effect.gen(function*() {
      const r = yield* redis
      yield* r.eval(claim)(keys, "a", 1000, 0, line({ client: "c", server: "s1:80", previous: "", seen: 1000 }))
      // 5 s later with a 10 s tracking time: still s1's.
      assert.deepStrictEqual(
        yield* r.eval(claim)(keys, "b", 6000, 10_000, line({ client: "c", server: "s2:80", previous: "", seen: 6000 })),
        ["c", "1000|s1:80"]
      )
      // 10 s later: forgotten, so the new pin is kept.
      assert.deepStrictEqual(
        yield* r.eval(claim)(
          keys,
          "b",
          11_000,
          10_000,
          line({ client: "c", server: "s2:80", previous: "", seen: 11_000 })
        ),
        []
      )
      assert.strictEqual(yield* r.send("HGET", keys.sticky, "c"), "11000|s2:80")
    }))

  it.live("serverChange merges into the server's state and publishes the change alone", () =>
    Effect.gen(function*() {
      const r = yield* redis
      const messages = yield* r.subscribe(keys.channel)
      yield* r.eval(serverChange)(keys, "a", 5, "s1:80", JSON.stringify({ draining: true }))
      yield* r.eval(serverChange)(keys, "b", 6, "s1:80", JSON.stringify({ weight: 3, blacklistedUntil: 9000 }))
      const state = JSON.parse(String(yield* r.send("HGET", keys.servers, "s1:80")))
      assert.deepStrictEqual(state, { draining: true, weight: 3, blacklistedUntil: 9000 })
      const second = [
        P.decodeMessage((yield* Queue.take(messages)).message),
        P.decodeMessage((yield* Queue.take(messages)).message)
      ][1]
      assert.deepStrictEqual(second, {
        _tag: "Server",
        from: "b",
        at: 6,
        server: "s1:80",
        state: { weight: 3, blacklistedUntil: 9000 }
      })
    }))

  it.live("prune: drops the pins past the tracking time, then the oldest beyond the bound", () =>
    Effect.gen(function*() {
      const r = yield* redis
      for (let i = 0; i < 10; i++) {
        yield* r.send("HSET", keys.sticky, `c${i}`, P.encodePin("s1:80", i * 1000))
      }
      // At 10 s with a 5.5 s tracking time, c0-c4 are forgotten (seen at 0-4 s); then keep 3 of the 5 left.
      assert.strictEqual(yield* r.eval(prune)(keys, 10_000, 5_500, 3), 7)
      assert.deepStrictEqual(
        ((yield* r.send<Array<string>>("HKEYS", keys.sticky)) as Array<string>).toSorted(),
        ["c7", "c8", "c9"]
      )
      // Without a tracking time, the bound alone.
      assert.strictEqual(yield* r.eval(prune)(keys, 10_000, 0, 1), 2)
      assert.deepStrictEqual(yield* r.send("HKEYS", keys.sticky), ["c9"])
    }))
})
