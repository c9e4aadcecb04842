import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as Address from "../../src/domain/Address.ts"
import * as Backend from "../../src/domain/Backend.ts"
import * as Selection from "../../src/domain/Selection.ts"
import type { ServerSpec } from "../../src/domain/ServerSpec.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

const NOW = 1_000_000

interface Limits {
  readonly softLimit?: number
  readonly hardLimit?: number
  readonly weight?: number
  readonly prio?: number
}

const specOf = (index: number, limits: Limits = {}): ServerSpec => ({
  endpoint: Address.tcp("127.0.0.1", 9000 + index),
  softLimit: limits.softLimit ?? 0,
  hardLimit: limits.hardLimit ?? 0,
  weight: limits.weight ?? 0,
  prio: limits.prio ?? 0
})

const pool = (...limits: ReadonlyArray<Limits>): Array<Backend.Plain> =>
  limits.map((l, i) => Backend.make(i, specOf(i, l)))

const plain = (n: number) => pool(...Array.from({ length: n }, () => ({})))

const blacklist = (backend: Backend.Plain, until = NOW + 30_000) => {
  backend.blacklistedUntil = until
}

const policy = (flags: Partial<Selection.Policy> = {}): Selection.Policy => ({
  roundrobin: false,
  hash: false,
  weight: false,
  prio: false,
  stubborn: false,
  ...flags
})

// 3 servers: prio -> 1, weight -> 2, hash(127.0.0.2) -> 0, hash(127.0.0.1) -> 2, fresh roundrobin -> 1
const setup = () => ({ backends: pool({ prio: 1 }, { prio: 0 }, { prio: 1, weight: 1 }), at: Selection.cursor() })

const limited = (softLimit: number, hardLimit: number, connections: number) => {
  const backend = Backend.make(0, specOf(0, { softLimit, hardLimit }))
  backend.connections = connections
  return backend
}

/** Independent oracle for pen's IPv4 hash (§4.5), in BigInt arithmetic. */
const penHashV4 = (octets: ReadonlyArray<number>, port: number, n: number, withPort: boolean): number => {
  const [a, b, c, d] = octets.map(BigInt) as [bigint, bigint, bigint, bigint]
  let word = a | (b << 8n) | (c << 16n) | (d << 24n)
  if (withPort) word ^= BigInt(((port & 0xff) << 8) | (port >> 8))
  return Number(word % BigInt(n))
}

describe("Selection.roundRobin", () => {
  it("a fresh cursor starts at server 1: 3 servers give 1,2,0,1", () => {
    const backends = plain(3)
    const at = Selection.cursor()
    const picks = [0, 1, 2, 3].map(() => Selection.roundRobin(backends, at, NOW))
    assert.deepStrictEqual(picks, [1, 2, 0, 1])
  })

  it("2 servers give 1,0,1,0", () => {
    const backends = plain(2)
    const at = Selection.cursor()
    assert.deepStrictEqual([0, 1, 2, 3].map(() => Selection.roundRobin(backends, at, NOW)), [1, 0, 1, 0])
  })

  it("a single server is always picked", () => {
    const backends = plain(1)
    const at = Selection.cursor()
    assert.deepStrictEqual([0, 1].map(() => Selection.roundRobin(backends, at, NOW)), [0, 0])
  })

  it("skips a blacklisted server, and uses it again once the blacklist has expired", () => {
    const backends = plain(3)
    blacklist(backends[1]!, NOW + 10)
    const at = Selection.cursor()
    assert.deepStrictEqual([0, 1, 2].map(() => Selection.roundRobin(backends, at, NOW)), [2, 0, 2])
    assert.strictEqual(Selection.roundRobin(backends, at, NOW + 10), 0)
    assert.strictEqual(Selection.roundRobin(backends, at, NOW + 10), 1)
  })

  it("does not skip a server at its connection limit (pen leaves that to the failover scan)", () => {
    const backends = pool({}, { softLimit: 1 }, {})
    backends[1]!.connections = 5
    assert.strictEqual(Selection.roundRobin(backends, Selection.cursor(), NOW), 1)
  })

  it("no server, or every server blacklisted, is NO_SERVER", () => {
    assert.strictEqual(Selection.roundRobin([], Selection.cursor(), NOW), Selection.NO_SERVER)
    const backends = plain(3)
    backends.forEach((b) => blacklist(b))
    const at = Selection.cursor()
    assert.strictEqual(Selection.roundRobin(backends, at, NOW), Selection.NO_SERVER)
  })

  it.prop(
    "over the available servers, consecutive picks are a permutation, repeated, and never blacklisted",
    { n: int(1, 8), mask: int(0, 255), warmup: int(0, 20) },
    ({ mask, n, warmup }) => {
      const backends = plain(n)
      backends.forEach((b, i) => {
        if ((mask >> i) & 1) blacklist(b)
      })
      const available = backends.filter((b) => !Backend.isBlacklisted(b, NOW)).map((b) => b.index)
      const at = Selection.cursor()
      for (let k = 0; k < warmup; k++) Selection.roundRobin(backends, at, NOW)
      const m = available.length
      const picks = Array.from({ length: 2 * Math.max(m, 1) }, () => Selection.roundRobin(backends, at, NOW))
      if (m === 0) {
        assert.isTrue(picks.every((p) => p === Selection.NO_SERVER))
        return
      }
      const round = picks.slice(0, m)
      assert.deepStrictEqual(round.toSorted((a, b) => a - b), available)
      assert.deepStrictEqual(picks.slice(m), round)
      // in index order, wrapping: each pick is the next available index after the previous one
      for (let k = 1; k < picks.length; k++) {
        const next = available.find((i) => i > picks[k - 1]!) ?? available[0]
        assert.strictEqual(picks[k], next)
      }
    }
  )
})

describe("Selection.hash", () => {
  const cases: ReadonlyArray<readonly [string, number]> = [
    ["127.0.0.1", 2],
    ["127.0.0.2", 0],
    ["127.0.0.3", 1],
    ["127.0.5.7", 1],
    ["127.1.2.3", 1]
  ]
  for (const [ip, expected] of cases) {
    it(`pen's verified example: ${ip} over 3 servers -> ${expected}`, () => {
      assert.strictEqual(Selection.hash(ip, 40000, 3, false), expected)
    })
  }

  const withPort: ReadonlyArray<readonly [string, number, number]> = [
    ["127.0.0.1", 40011, 0],
    ["127.0.0.1", 40012, 1],
    ["127.0.0.2", 40011, 1]
  ]
  for (const [ip, port, expected] of withPort) {
    it(`pen's verified example with -r: ${ip}:${port} over 3 servers -> ${expected}`, () => {
      assert.strictEqual(Selection.hash(ip, port, 3, true), expected)
    })
  }

  it("without -r the port does not matter", () => {
    assert.strictEqual(Selection.hash("127.0.0.1", 40011, 3, false), Selection.hash("127.0.0.1", 40012, 3, false))
  })

  it("IPv6 uses the last byte only", () => {
    assert.strictEqual(Selection.hash("::1", 0, 3, false), 1)
    assert.strictEqual(Selection.hash("fe80::abcd", 0, 7, false), 0xcd % 7)
    assert.strictEqual(Selection.hash("2001:db8::1:ff05", 0, 4, false), 0x05 % 4)
    assert.strictEqual(Selection.hash("2001:db8::1:ff05", 1, 4, true), 0x05 % 4)
    assert.strictEqual(Selection.hash("2001:db8::1:ff05", 65535, 4, true), 0x05 % 4)
    assert.strictEqual(Selection.hash("::", 0, 3, false), 0)
    assert.strictEqual(Selection.hash("2001:db8::", 0, 3, false), 0)
  })

  it("an IPv4-mapped client is an IPv6 key: ::ffff:127.0.0.2 hashes its last byte", () => {
    // 127.0.0.2 as IPv4 hashes to 0; as AF_INET6 pen uses addr[15] = 2
    assert.strictEqual(Selection.hash("::ffff:127.0.0.2", 0, 3, false), 2)
    assert.strictEqual(Selection.hash("::ffff:127.0.0.2", 40011, 3, true), 2)
    assert.strictEqual(Selection.hash("::ffff:127.0.0.1", 0, 3, false), 1)
  })

  it("anything else (a Unix socket client) hashes to 0", () => {
    assert.strictEqual(Selection.hash("", 0, 3, false), 0)
    assert.strictEqual(Selection.hash("/tmp/x.sock", 0, 3, false), 0)
  })

  const octet = int(0, 255)
  it.prop(
    "IPv4 is the little-endian word (xor the byte-swapped port with -r) modulo n",
    { octets: Schema.Tuple([octet, octet, octet, octet]), port: int(0, 65535), n: int(1, 16), r: Schema.Boolean },
    ({ n, octets, port, r }) => {
      const ip = octets.join(".")
      const h = Selection.hash(ip, port, n, r)
      assert.strictEqual(h, penHashV4(octets, port, n, r), `${ip}:${port} over ${n}`)
      assert.isTrue(h >= 0 && h < n)
    }
  )

  it.prop(
    "IPv6 is the last byte modulo n, with or without the port",
    {
      groups: Schema.Array(int(0, 0xffff)).check(Schema.isMinLength(8), Schema.isMaxLength(8)),
      port: int(0, 65535),
      n: int(1, 16),
      r: Schema.Boolean
    },
    ({ groups, n, port, r }) => {
      const ip = groups.map((g) => g.toString(16)).join(":")
      assert.strictEqual(Selection.hash(ip, port, n, r), (groups[7]! & 0xff) % n, ip)
    }
  )
})

describe("Selection.byWeight", () => {
  it("weights 1 and 3 with connections held give pen's sequence 0,1,1,1,0,1,1,1", () => {
    const backends = pool({ weight: 1 }, { weight: 3 })
    const picks: Array<number> = []
    for (let k = 0; k < 8; k++) {
      const pick = Selection.byWeight(backends, NOW)
      picks.push(pick)
      backends[pick]!.connections++
    }
    assert.deepStrictEqual(picks, [0, 1, 1, 1, 0, 1, 1, 1])
  })

  it("no weighted server is NO_SERVER", () => {
    assert.strictEqual(Selection.byWeight(plain(3), NOW), Selection.NO_SERVER)
    assert.strictEqual(Selection.byWeight([], NOW), Selection.NO_SERVER)
  })

  it("skips servers without a weight and blacklisted servers", () => {
    const backends = pool({ weight: 0 }, { weight: 5 }, { weight: 1 })
    assert.strictEqual(Selection.byWeight(backends, NOW), 1)
    blacklist(backends[1]!)
    assert.strictEqual(Selection.byWeight(backends, NOW), 2)
    blacklist(backends[2]!)
    assert.strictEqual(Selection.byWeight(backends, NOW), Selection.NO_SERVER)
  })

  it("integer load 256*c/weight: equal loads tie to the lowest index", () => {
    // one connection each: 256/3 = 85, 256/3 = 85, 256/4 = 64 -> server 2 is the lightest
    const backends = pool({ weight: 3 }, { weight: 3 }, { weight: 4 })
    backends.forEach((b) => (b.connections = 1))
    assert.strictEqual(Selection.byWeight(backends, NOW), 2)
    // 512/4 = 128: servers 0 and 1 tie at 85 -> the lowest index
    backends[2]!.connections = 2
    assert.strictEqual(Selection.byWeight(backends, NOW), 0)
    // 768/9 = 85 and 256/3 = 85: tie -> 0
    const tie = pool({ weight: 9 }, { weight: 3 })
    tie[0]!.connections = 3
    tie[1]!.connections = 1
    assert.strictEqual(Selection.byWeight(tie, NOW), 0)
    const floor = pool({ weight: 3 }, { weight: 1000 })
    floor[0]!.connections = 1 // floor(85.33) = 85
    floor[1]!.connections = 333 // floor(85.248) = 85: tie, 0 wins
    assert.strictEqual(Selection.byWeight(floor, NOW), 0)
    floor[0]!.connections = 2 // 170
    assert.strictEqual(Selection.byWeight(floor, NOW), 1)
  })
})

describe("Selection.byPrio", () => {
  it("prio 5/1/1 picks the lowest value, ties to the lowest index", () => {
    const backends = pool({ prio: 5 }, { prio: 1 }, { prio: 1 })
    assert.strictEqual(Selection.byPrio(backends, NOW), 1)
    backends[1]!.connections = 100 // load is ignored
    assert.strictEqual(Selection.byPrio(backends, NOW), 1)
  })

  it("skips blacklisted servers", () => {
    const backends = pool({ prio: 5 }, { prio: 1 }, { prio: 1 })
    blacklist(backends[1]!)
    assert.strictEqual(Selection.byPrio(backends, NOW), 2)
    blacklist(backends[2]!)
    assert.strictEqual(Selection.byPrio(backends, NOW), 0)
    blacklist(backends[0]!)
    assert.strictEqual(Selection.byPrio(backends, NOW), Selection.NO_SERVER)
  })

  it.prop(
    "is the first index holding the minimum prio among available servers",
    { prios: Schema.Array(int(0, 4)).check(Schema.isMinLength(1), Schema.isMaxLength(8)), mask: int(0, 255) },
    ({ mask, prios }) => {
      const backends = pool(...prios.map((prio) => ({ prio })))
      backends.forEach((b, i) => {
        if ((mask >> i) & 1) blacklist(b)
      })
      const available = backends.filter((b) => !Backend.isBlacklisted(b, NOW))
      const pick = Selection.byPrio(backends, NOW)
      if (available.length === 0) return assert.strictEqual(pick, Selection.NO_SERVER)
      const min = Math.min(...available.map((b) => b.spec.prio))
      assert.strictEqual(pick, available.find((b) => b.spec.prio === min)!.index)
    }
  )
})

describe("Selection.initialServer", () => {
  const all = { prio: true, weight: true, hash: true }

  it("the sticky server wins over every algorithm", () => {
    const { at, backends } = setup()
    assert.strictEqual(Selection.initialServer(policy(all), backends, 0, "127.0.0.1", 40011, at, NOW), 0)
    assert.strictEqual(Selection.initialServer(policy(), backends, 2, "127.0.0.1", 40011, at, NOW), 2)
    assert.strictEqual(at.last, 0, "a sticky pick does not move the roundrobin cursor")
  })

  it("a sticky server is returned even when blacklisted", () => {
    const { at, backends } = setup()
    blacklist(backends[2]!)
    assert.strictEqual(Selection.initialServer(policy(), backends, 2, "127.0.0.1", 40011, at, NOW), 2)
    assert.strictEqual(Selection.initialServer(policy(all), backends, 2, "127.0.0.1", 40011, at, NOW), 2)
  })

  it("-r ignores the sticky server", () => {
    const { at, backends } = setup()
    assert.strictEqual(Selection.initialServer(policy({ roundrobin: true }), backends, 2, "10.0.0.1", 1, at, NOW), 1)
    assert.strictEqual(Selection.initialServer(policy({ roundrobin: true }), backends, 2, "10.0.0.1", 1, at, NOW), 2)
    assert.strictEqual(Selection.initialServer(policy({ roundrobin: true }), backends, 1, "10.0.0.1", 1, at, NOW), 0)
  })

  it("-r with -h hashes with the port", () => {
    const { at, backends } = setup()
    const rh = policy({ roundrobin: true, hash: true })
    assert.strictEqual(Selection.initialServer(rh, backends, 2, "127.0.0.1", 40011, at, NOW), 0)
    assert.strictEqual(Selection.initialServer(rh, backends, 2, "127.0.0.1", 40012, at, NOW), 1)
    assert.strictEqual(Selection.initialServer(rh, backends, 2, "127.0.0.2", 40011, at, NOW), 1)
  })

  it("prio > weight > hash > roundrobin for a new client", () => {
    const { at, backends } = setup()
    const none = Selection.NO_SERVER
    const ip = "127.0.0.2" // hashes to 0
    assert.strictEqual(Selection.initialServer(policy(all), backends, none, ip, 1, at, NOW), 1)
    assert.strictEqual(Selection.initialServer(policy({ weight: true, hash: true }), backends, none, ip, 1, at, NOW), 2)
    assert.strictEqual(Selection.initialServer(policy({ hash: true }), backends, none, ip, 1, at, NOW), 0)
    assert.strictEqual(at.last, 0, "prio, weight and hash picks do not move the roundrobin cursor")
    assert.strictEqual(Selection.initialServer(policy(), backends, none, ip, 1, at, NOW), 1)
    assert.strictEqual(Selection.initialServer(policy(), backends, none, ip, 1, at, NOW), 2)
    assert.strictEqual(at.last, 2)
  })

  it("the hash pick is not checked for availability", () => {
    const { at, backends } = setup()
    blacklist(backends[0]!)
    assert.strictEqual(
      Selection.initialServer(policy({ hash: true }), backends, Selection.NO_SERVER, "127.0.0.2", 1, at, NOW),
      0
    )
  })

  it("weight mode without weights is NO_SERVER, even when hash is set too", () => {
    const backends = plain(3)
    const pick = Selection.initialServer(
      policy({ weight: true, hash: true }),
      backends,
      Selection.NO_SERVER,
      "127.0.0.1",
      1,
      Selection.cursor(),
      NOW
    )
    assert.strictEqual(pick, Selection.NO_SERVER)
  })
})

describe("Backend.admits", () => {
  it("max 2 hard 4: others refused at 2, a sticky client allowed up to 3 and refused at 4", () => {
    assert.isTrue(Backend.admits(limited(2, 4, 0), false, NOW))
    assert.isTrue(Backend.admits(limited(2, 4, 1), false, NOW))
    assert.isFalse(Backend.admits(limited(2, 4, 2), false, NOW))
    assert.isTrue(Backend.admits(limited(2, 4, 2), true, NOW))
    assert.isTrue(Backend.admits(limited(2, 4, 3), true, NOW))
    assert.isFalse(Backend.admits(limited(2, 4, 4), true, NOW))
    assert.isFalse(Backend.admits(limited(2, 4, 5), true, NOW))
  })

  it("hard 0 refuses sticky clients too once the soft limit is reached", () => {
    assert.isTrue(Backend.admits(limited(2, 0, 1), true, NOW))
    assert.isFalse(Backend.admits(limited(2, 0, 2), true, NOW))
  })

  it("a hard limit not above maxc means nothing", () => {
    assert.isFalse(Backend.admits(limited(3, 2, 3), true, NOW))
    assert.isFalse(Backend.admits(limited(3, 3, 3), true, NOW))
  })

  it("maxc 0 is unlimited, whatever hard says", () => {
    assert.isTrue(Backend.admits(limited(0, 0, 1_000_000), false, NOW))
    assert.isTrue(Backend.admits(limited(0, 1, 1_000_000), true, NOW))
  })

  it("a blacklisted server refuses everyone until its blacklist ends", () => {
    const backend = limited(0, 0, 0)
    blacklist(backend, NOW + 1)
    assert.isTrue(Backend.isBlacklisted(backend, NOW))
    assert.isFalse(Backend.admits(backend, false, NOW))
    assert.isFalse(Backend.admits(backend, true, NOW))
    assert.isFalse(Backend.isBlacklisted(backend, NOW + 1))
    assert.isTrue(Backend.admits(backend, false, NOW + 1))
  })

  it.prop(
    "is pen's try_server test: refused iff maxc != 0 && c >= maxc && (!sticky || c >= hard)",
    { soft: int(0, 6), hard: int(0, 8), c: int(0, 10), sticky: Schema.Boolean },
    ({ c, hard, soft, sticky }) => {
      const refused = soft !== 0 && c >= soft && (!sticky || c >= hard)
      assert.strictEqual(Backend.admits(limited(soft, hard, c), sticky, NOW), !refused)
    }
  )
})

describe("Selection.failoverOrder", () => {
  it("scans from the failed server + 1 up to and including the initial one", () => {
    assert.deepStrictEqual(Selection.failoverOrder(0, 0, 3), [1, 2, 0])
    assert.deepStrictEqual(Selection.failoverOrder(1, 1, 3), [2, 0, 1])
    assert.deepStrictEqual(Selection.failoverOrder(1, 0, 3), [2, 0])
    assert.deepStrictEqual(Selection.failoverOrder(2, 0, 4), [3, 0])
    assert.deepStrictEqual(Selection.failoverOrder(0, 3, 5), [1, 2, 3])
  })

  it("is empty with a single server or no server", () => {
    assert.deepStrictEqual(Selection.failoverOrder(0, 0, 1), [])
    assert.deepStrictEqual(Selection.failoverOrder(Selection.NO_SERVER, Selection.NO_SERVER, 3), [])
    assert.deepStrictEqual(Selection.failoverOrder(Selection.NO_SERVER, 1, 3), [])
  })

  it.prop(
    "never longer than n, starts after the failed server, ends at the initial one, no duplicates",
    { n: int(2, 12), failed: int(0, 11), initial: int(0, 11) },
    ({ failed, initial, n }) => {
      const f = failed % n
      const i = initial % n
      const order = Selection.failoverOrder(f, i, n)
      assert.isAtMost(order.length, n)
      assert.isAtLeast(order.length, 1)
      assert.strictEqual(order[0], (f + 1) % n)
      assert.strictEqual(order[order.length - 1], i)
      assert.strictEqual(new Set(order).size, order.length)
      for (let k = 1; k < order.length; k++) assert.strictEqual(order[k], (order[k - 1]! + 1) % n)
      assert.strictEqual(order.length, f === i ? n : (i - f + n) % n)
    }
  )
})

/** A server as the consistent hash knows it: its address. */
const key = (e: Address.Endpoint) => (e._tag === "Tcp" ? `${e.host}:${e.port}` : e.path)
/** How many clients map to another server after than before. */
const moved = (before: ReadonlyArray<Address.Endpoint>, after: ReadonlyArray<Address.Endpoint>) =>
  before.filter((e, i) => key(e) !== key(after[i]!)).length

/** Five servers, server 2 at `address` (given by `name`, when one is given). */
const withServer2 = (address: string, name?: string) =>
  plain(5).map((b) => b.index === 2 ? Backend.make(2, { ...b.spec, endpoint: Address.tcp(address, 80), name }) : b)

describe("--hash-method consistent (weighted rendezvous hashing)", () => {
  const clients = Array.from({ length: 1000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.${(i * 7) & 255}`)
  const mapping = (backends: ReadonlyArray<Backend.Backend>) =>
    clients.map((ip) => backends[Selection.consistentHash(backends, ip, 40000, false)]!.spec.endpoint)

  it("going from 10 to 11 servers moves at most 15% of 1,000 clients; pen's modulo moves about 90%", () => {
    const ten = plain(10)
    const eleven = plain(11)
    const consistent = moved(mapping(ten), mapping(eleven))
    assert.isAtMost(consistent, 150, `consistent hashing moved ${consistent} of 1000`)
    assert.isAbove(consistent, 30, `the new server took almost no client (${consistent})`)
    const pen = clients.filter((ip) => Selection.hash(ip, 0, 10, false) !== Selection.hash(ip, 0, 11, false)).length
    assert.isAbove(pen, 800, `pen's modulo moved ${pen} of 1000`)
  })

  it("removing one server moves only its own clients", () => {
    const all = plain(8)
    const before = mapping(all)
    const gone = key(all[3]!.spec.endpoint)
    const without = all.filter((b) => b.index !== 3).map((b, i) => Backend.make(i, b.spec))
    const after = mapping(without)
    before.forEach((e, i) => {
      if (key(e) !== gone) assert.strictEqual(key(after[i]!), key(e), `client ${clients[i]} moved`)
    })
  })

  it("depends on the servers' addresses, not their order: every nib with the same servers maps a client alike", () => {
    const forward = plain(6)
    const reversed = forward.toReversed().map((b, i) => Backend.make(i, b.spec))
    assert.deepStrictEqual(mapping(forward).map(key), mapping(reversed).map(key))
  })

  const indexes = (backends: ReadonlyArray<Backend.Backend>) =>
    clients.map((ip) => Selection.consistentHash(backends, ip, 0, false))

  it("a server given by name is hashed by its name: its address changing (DNS) moves none of the clients", () => {
    const named = (address: string) => withServer2(address, "web.test")
    const before = indexes(named("10.9.0.1"))
    assert.deepStrictEqual(indexes(named("10.9.0.2")), before)
    assert.isAbove(before.filter((i) => i === 2).length, 100, "the named server takes its share")
    // Without its name, the address is the key: another address, other clients.
    assert.notDeepEqual(indexes(withServer2("10.9.0.1")), indexes(withServer2("10.9.0.2")))
  })

  it("honours weights (0 counts as 1), skips unconfigured slots, and mixes the port in with -r", () => {
    const backends = pool({ weight: 1 }, { weight: 3 }, { weight: 0 })
    const counts = [0, 0, 0]
    for (const ip of clients) counts[Selection.consistentHash(backends, ip, 0, false)]!++
    // Expected shares 1/5, 3/5, 1/5.
    assert.isTrue(counts[1]! > 500 && counts[1]! < 700, `weight 3 took ${counts[1]} of 1000`)
    assert.isTrue(counts[0]! > 120 && counts[2]! > 120, `weights 1 and 0 took ${counts[0]} and ${counts[2]}`)
    const slot = plain(3)
    slot[1]!.configured = false
    for (const ip of clients.slice(0, 100)) assert.notStrictEqual(Selection.consistentHash(slot, ip, 0, false), 1)
    const ports = new Set(Array.from({ length: 50 }, (_, p) => Selection.consistentHash(plain(4), "10.0.0.1", p, true)))
    assert.isAbove(ports.size, 1, "-r: the client's port takes no part")
  })

  it("initialServer uses it when -h and --hash-method consistent; pen's modulo otherwise", () => {
    const backends = plain(5)
    const at = Selection.cursor()
    for (const ip of clients.slice(0, 50)) {
      assert.strictEqual(
        Selection.initialServer(
          { ...policy({ hash: true }), hashMethod: "consistent" },
          backends,
          Selection.NO_SERVER,
          ip,
          1,
          at,
          NOW
        ),
        Selection.consistentHash(backends, ip, 1, false)
      )
      assert.strictEqual(
        Selection.initialServer(policy({ hash: true }), backends, Selection.NO_SERVER, ip, 1, at, NOW),
        Selection.hash(ip, 1, 5, false)
      )
    }
  })
})
