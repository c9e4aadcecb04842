import { assert, describe, it } from "@effect/vitest"
import type { ServerState } from "../../src/admin/Api.ts"
import * as History from "../../src/admin/History.ts"

const server = (
  index: number,
  state: ServerState,
  bytesSent = 0,
  bytesReceived = 0,
  connections = 0,
  blacklistedUntil = 0
) => ({
  index,
  address: `10.0.0.${index + 1}:80`,
  state,
  blacklistedUntil,
  connections,
  bytesSent,
  bytesReceived
})

const reading = (
  time: number,
  counters: { accepted?: number; failovers?: number; refused?: number; active?: number },
  servers: History.Reading["servers"]
): History.Reading => ({
  time,
  accepted: counters.accepted ?? 0,
  active: counters.active ?? 0,
  failovers: counters.failovers ?? 0,
  refused: counters.refused ?? 0,
  servers
})

describe("History", () => {
  it("the first reading is the baseline; later ones give per-second rates from the counters", () => {
    const h = History.make()
    assert.isUndefined(History.record(h, reading(1_000, { accepted: 10 }, [server(0, "up", 100, 1000)])))
    assert.deepStrictEqual(h.samples.items, [])
    // Two seconds later: 20 more connections, 600 bytes sent and 4000 received.
    const sample = History.record(h, reading(3_000, { accepted: 30, active: 2 }, [server(0, "up", 700, 5000, 2)]))
    assert.deepStrictEqual(sample, {
      time: 3_000,
      active: 2,
      acceptedPerSecond: 10,
      failoversPerSecond: 0,
      refusedPerSecond: 0,
      servers: [{ index: 0, connections: 2, sentPerSecond: 300, receivedPerSecond: 2000 }]
    })
    assert.deepStrictEqual(h.samples.items, [sample])
    assert.deepStrictEqual(h.events.items, [])
  })

  it("a server whose state changed is an event; a server added since has no rate yet", () => {
    const h = History.make()
    History.record(h, reading(0, {}, [server(0, "up"), server(1, "up")]))
    History.record(h, reading(1_000, {}, [server(0, "up"), server(1, "down"), server(2, "up", 50)]))
    History.record(h, reading(2_000, {}, [server(0, "draining"), server(1, "up"), server(2, "up", 50)]))
    assert.deepStrictEqual(
      h.events.items.map((e) => [e.time, e.kind, e.server, e.from, e.to, e.text]),
      [
        [1_000, "state", 1, "up", "down", "server 1 (10.0.0.2:80) down (its check failed)"],
        [2_000, "state", 0, "up", "draining", "server 0 (10.0.0.1:80) draining"],
        [2_000, "state", 1, "down", "up", "server 1 (10.0.0.2:80) up"]
      ]
    )
    assert.strictEqual(h.samples.items[0]!.servers[2]!.sentPerSecond, 0)
  })

  it("failovers are an event naming the server blacklisted in the same interval", () => {
    const h = History.make()
    History.record(h, reading(0, {}, [server(0, "up"), server(1, "up")]))
    History.record(h, reading(1_000, { failovers: 3 }, [server(0, "up"), server(1, "blacklisted", 0, 0, 0, 3_000)]))
    // Failovers with no server newly down or blacklisted name none.
    History.record(h, reading(2_000, { failovers: 4 }, [server(0, "up"), server(1, "blacklisted", 0, 0, 0, 3_000)]))
    // A blacklist that lapsed and was renewed between two readings: the same state, a later deadline.
    History.record(h, reading(3_000, { failovers: 5 }, [server(0, "up"), server(1, "blacklisted", 0, 0, 0, 5_500)]))
    const failovers = h.events.items.filter((e) => e.kind === "failover")
    assert.deepStrictEqual(failovers.map((e) => [e.time, e.count, e.server, e.text]), [
      [1_000, 3, 1, "3 connections failed over from server 1 (10.0.0.2:80)"],
      [2_000, 1, -1, "1 connection failed over"],
      [3_000, 1, 1, "1 connection failed over from server 1 (10.0.0.2:80)"]
    ])
    assert.strictEqual(h.samples.items[0]!.failoversPerSecond, 3)
  })

  it("the rings keep the newest items only", () => {
    const h = History.make(3, 2)
    for (let t = 0; t <= 6; t++) {
      History.record(h, reading(t * 1000, {}, [server(0, t % 2 === 0 ? "up" : "blacklisted")]))
    }
    assert.deepStrictEqual(h.samples.items.map((s) => s.time), [4_000, 5_000, 6_000])
    assert.deepStrictEqual(h.events.items.map((e) => e.time), [5_000, 6_000])
  })
})
