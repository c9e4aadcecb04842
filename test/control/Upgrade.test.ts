/**
 * The new nib's side of an upgrade without processes: the old nib's state taken in (the sticky table, the servers'
 * blacklist deadlines and drains, matched by index and address), and the conversation's schemas.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Schema } from "effect"
import { LbConfig } from "../../src/Config.ts"
import * as Upgrade from "../../src/control/Upgrade.ts"
import * as Address from "../../src/domain/Address.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"
import { ClientTable } from "../../src/services/ClientTable.ts"
import { ServerPool } from "../../src/services/ServerPool.ts"
import * as Handover from "../../src/shared/Handover.ts"
import { SharedState } from "../../src/shared/SharedState.ts"

const spec = (port: number) => ServerSpec.make(Address.tcp("127.0.0.1", port))

/** The pool and the sticky table of a nib with servers on ports 9001-9003 and an emergency server on 9009. */
const services = Layer.mergeAll(ClientTable.layer, ServerPool.layer).pipe(
  Layer.provideMerge(SharedState.layer),
  Layer.provideMerge(LbConfig.layer({
    listen: Address.tcp("127.0.0.1", 0),
    servers: [spec(9001), spec(9002), spec(9003)],
    emergency: spec(9009)
  }))
)

const client = (address: string, server: number, lastSeen: number, slot: number) => ({
  address,
  server,
  lastSeen,
  connects: 3,
  bytesToClient: 100,
  bytesFromClient: 10,
  slot
})

describe("Upgrade.restore", () => {
  it.effect("takes the clients in their LRU order and slots, and the state of each server with the same address", () =>
    Effect.gen(function*() {
      // TestClock: now is 0.
      const clients = [client("10.0.0.7", 2, -500, 1), client("10.0.0.3", 0, -100, 0)]
      const taken = yield* Upgrade.restore({
        _tag: "State",
        clients,
        servers: [
          { index: 0, address: "127.0.0.1:9001", blacklistedUntil: 60_000, draining: false },
          { index: 1, address: "127.0.0.1:9002", blacklistedUntil: 0, draining: true },
          // Server 2 has another address here: another server, which starts afresh.
          { index: 2, address: "127.0.0.1:7777", blacklistedUntil: 60_000, draining: true },
          { index: -2, address: "127.0.0.1:9009", blacklistedUntil: 5_000, draining: false },
          // No server 5 here.
          { index: 5, address: "127.0.0.1:9005", blacklistedUntil: 60_000, draining: true }
        ]
      })
      assert.deepStrictEqual(taken, { clients: 2, servers: 3 })
      const snapshot = yield* (yield* ServerPool).snapshot
      assert.deepStrictEqual(
        snapshot.servers.map((s) => [s.index, s.blacklistedUntil, s.draining]),
        [[0, 60_000, false], [1, 0, true], [2, 0, false]]
      )
      assert.strictEqual(snapshot.emergency?.blacklistedUntil, 5_000)
      assert.deepStrictEqual(yield* (yield* ClientTable).recent, clients.toReversed())
    }).pipe(Effect.provide(services)))
})

describe("the conversation's schemas", () => {
  const decode = Schema.decodeUnknownExit(Handover.FromOld)
  it("an offer names descriptors (0 and up) and an address; anything else is not an offer", () => {
    const offer = {
      _tag: "Offer",
      pid: 4100,
      listen: [4, 5],
      address: { _tag: "Tcp", host: "0.0.0.0", port: 80 },
      control: 6
    }
    assert.isTrue(Exit.isSuccess(decode(offer)))
    assert.isTrue(Exit.isFailure(decode({ ...offer, listen: [-1] })))
    assert.isTrue(Exit.isFailure(decode({ ...offer, address: "0.0.0.0:80" })))
    assert.isTrue(Exit.isFailure(decode({ ready: "0.0.0.0:80" })))
  })

  it("the new nib says Ask, Ready or Failed", () => {
    const decodeNew = Schema.decodeUnknownExit(Handover.FromNew)
    assert.isTrue(Exit.isSuccess(decodeNew({ _tag: "Ask" })))
    assert.isTrue(Exit.isSuccess(decodeNew({ _tag: "Ready", address: "0.0.0.0:80", pid: 4242 })))
    assert.isTrue(Exit.isSuccess(decodeNew({ _tag: "Failed", message: "-F nib.cfg:2: ..." })))
    assert.isTrue(Exit.isFailure(decodeNew({ _tag: "Ready", address: "0.0.0.0:80" })))
  })
})

describe("Handover.share", () => {
  it("thread t serves socket t; sockets past the threads go round them; a thread without one binds", () => {
    assert.deepStrictEqual([0, 1].map((t) => Handover.share([4, 5], 2, t)), [[4], [5]])
    assert.deepStrictEqual([0, 1].map((t) => Handover.share([4, 5, 6], 2, t)), [[4, 6], [5]])
    assert.deepStrictEqual([0, 1, 2].map((t) => Handover.share([4, 5], 3, t)), [[4], [5], []])
    assert.deepStrictEqual(Handover.share([], 1, 0), [])
  })
})
