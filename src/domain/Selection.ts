/**
 * pen's server selection as pure functions: which server a new connection tries first (sticky table, prio, weight,
 * hash, roundrobin, in that precedence) and where the failover scan goes next. The caller owns the state (backends,
 * the roundrobin cursor) and passes the time in.
 */
import * as Backend from "./Backend.ts"
import { NO_SERVER } from "./StickyTable.ts"

export { NO_SERVER }

/** The selection flags of pen's command line. @category models */
export interface Policy {
  /** `-r`: ignore the sticky table (and mix the client port into the hash). */
  readonly roundrobin: boolean
  /** `-h`: hash the client address. */
  readonly hash: boolean
  /** How `-h` hashes (`--hash-method`): pen's modulo, or a consistent hash that moves few clients when servers change. */
  readonly hashMethod?: HashMethod | undefined
  /** `-W`: least load relative to weight. */
  readonly weight: boolean
  /** prio: lowest priority value first. */
  readonly prio: boolean
  /** `-s`: never fail over. */
  readonly stubborn: boolean
}

/** The roundrobin cursor: the last server it handed out (starts at 0, so the first new client gets server 1). */
export interface Cursor {
  last: number
}

/** A new roundrobin cursor, placed as pen's is at start-up. @category constructors */
export const cursor = (): Cursor => ({ last: 0 })

/**
 * Roundrobin: the next server after the cursor that is not blacklisted, down or drained, advancing the cursor. Servers at
 * their connection limit are not skipped here (pen leaves them to the failover scan).
 *
 * @category selection
 */
export const roundRobin = (backends: ReadonlyArray<Backend.Backend>, at: Cursor, now: number): number => {
  const n = backends.length
  if (n === 0) return NO_SERVER
  let i = at.last
  for (let k = 0; k < n; k++) {
    i = (i + 1) % n
    if (!Backend.isOutOfRotation(backends[i]!, now)) return (at.last = i)
  }
  return NO_SERVER
}

/**
 * Weight (`-W`): among servers that are not blacklisted, down or drained and have a weight, the smallest
 * `256 * connections / weight` (integer), ties to the lowest index. No weighted server means no server, as in pen.
 *
 * @category selection
 */
export const byWeight = (backends: ReadonlyArray<Backend.Backend>, now: number): number => {
  let best = NO_SERVER
  let bestLoad = Infinity
  for (const b of backends) {
    if (b.spec.weight === 0 || Backend.isOutOfRotation(b, now)) continue
    const load = Math.floor((256 * b.connections) / b.spec.weight)
    if (load < bestLoad) {
      best = b.index
      bestLoad = load
    }
  }
  return best
}

/**
 * Prio: the lowest prio value among servers that are not blacklisted, down or drained, ties to the lowest index.
 *
 * @category selection
 */
export const byPrio = (backends: ReadonlyArray<Backend.Backend>, now: number): number => {
  let best = NO_SERVER
  let bestPrio = Infinity
  for (const b of backends) {
    if (Backend.isOutOfRotation(b, now)) continue
    if (b.spec.prio < bestPrio) {
      best = b.index
      bestPrio = b.spec.prio
    }
  }
  return best
}

/**
 * pen's hash of a client address over `n` servers, bit for bit as pen computes it on x86: for IPv4 the address read
 * as a little-endian 32-bit word (`a | b<<8 | c<<16 | d<<24`), xor-ed with the byte-swapped port when `withPort`
 * (`-r`); for IPv6 its last byte; anything else hashes to 0.
 *
 * @category selection
 */
export const hash = (ip: string, port: number, n: number, withPort: boolean): number => {
  if (n <= 0) return NO_SERVER
  const v4 = parseIPv4(ip)
  if (v4 !== undefined) {
    const word = withPort ? (v4 ^ (((port & 0xff) << 8) | (port >> 8))) >>> 0 : v4
    return word % n
  }
  const last = ipv6LastByte(ip)
  return last === undefined ? 0 : last % n
}

const parseIPv4 = (ip: string): number | undefined => {
  const parts = ip.split(".")
  if (parts.length !== 4) return undefined
  let word = 0
  for (let i = 3; i >= 0; i--) {
    const part = parts[i]!
    if (!/^\d{1,3}$/.test(part)) return undefined
    const byte = Number(part)
    if (byte > 255) return undefined
    word = word * 256 + byte
  }
  return word
}

const ipv6LastByte = (ip: string): number | undefined => {
  if (!ip.includes(":")) return undefined
  const tail = ip.slice(ip.lastIndexOf(":") + 1)
  if (tail.includes(".")) {
    const last = Number(tail.slice(tail.lastIndexOf(".") + 1))
    return Number.isInteger(last) ? last & 0xff : undefined
  }
  if (tail === "") return 0
  const group = Number.parseInt(tail, 16)
  return Number.isNaN(group) ? undefined : group & 0xff
}

/** `--hash-method`: pen's modulo (`pen`), or weighted rendezvous hashing (`consistent`). @category models */
export type HashMethod = "pen" | "consistent"

/** 32-bit FNV-1a of a string's UTF-16 code units. */
const fnv1a = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/** A 32-bit mix of two hashes (murmur3's finalizer over their combination), uniform enough for rendezvous scores. */
const mix = (a: number, b: number): number => {
  let h = (a ^ Math.imul(b, 0x9e3779b1)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

/**
 * The hash of the key a server is hashed by: its address and port, so that every nib with the same servers agrees on
 * them; for a server given by host name, that name and port, so that its address changing (`--resolve-interval`)
 * moves none of its clients. Kept per spec (a spec is replaced, not changed, when the server is), so that a new
 * client makes no string.
 */
const serverKeys = new WeakMap<Backend.Backend["spec"], number>()
const serverKey = (b: Backend.Backend): number => {
  let key = serverKeys.get(b.spec)
  if (key === undefined) {
    const endpoint = b.spec.endpoint
    key = fnv1a(endpoint._tag === "Tcp" ? `${b.spec.name ?? endpoint.host}:${endpoint.port}` : endpoint.path)
    serverKeys.set(b.spec, key)
  }
  return key
}

/**
 * A consistent hash of a client address over the servers (weighted rendezvous hashing): each server scores the
 * client by a hash of both, scaled by its weight (`-ln(u) / weight`, the lowest wins). Adding or removing one of N
 * servers moves only the clients that server wins or held, about 1/N of them, and every nib with the same servers
 * (the same addresses, in any order) maps a client alike. A weight of 0 counts as 1, as in pen's `-W`. With `-r`
 * the client's port is hashed too. Servers without an address (a slot `server N` made) are skipped.
 *
 * @category selection
 */
export const consistentHash = (
  backends: ReadonlyArray<Backend.Backend>,
  ip: string,
  port: number,
  withPort: boolean
): number => {
  const client = fnv1a(withPort ? `${ip}#${port}` : ip)
  let best = NO_SERVER
  let bestScore = Number.POSITIVE_INFINITY
  for (const b of backends) {
    if (!b.configured) continue
    // u in (0, 1]: never 0, so that the logarithm is finite.
    const u = (mix(client, serverKey(b)) + 1) / 4294967296
    const score = -Math.log(u) / Math.max(1, b.spec.weight)
    if (score < bestScore) {
      bestScore = score
      best = b.index
    }
  }
  return best
}

/** How a new connection's first server is chosen. @category models */
export type Rule = "sticky" | "prio" | "weight" | "hash" | "roundrobin"

/**
 * pen's precedence: the client's sticky server (unless `-r`, even when that server is blacklisted: admission then
 * fails and the failover scan runs), prio, weight, hash, roundrobin.
 *
 * @category selection
 */
export const rule = (policy: Policy, stickyServer: number, servers: number): Rule =>
  !policy.roundrobin && stickyServer >= 0 && stickyServer < servers
    ? "sticky"
    : policy.prio
    ? "prio"
    : policy.weight
    ? "weight"
    : policy.hash
    ? "hash"
    : "roundrobin"

/** The first server a new connection tries, by {@link rule}. @category selection */
export const initialServer = (
  policy: Policy,
  backends: ReadonlyArray<Backend.Backend>,
  stickyServer: number,
  ip: string,
  port: number,
  at: Cursor,
  now: number
): number => {
  switch (rule(policy, stickyServer, backends.length)) {
    case "sticky":
      return stickyServer
    case "prio":
      return byPrio(backends, now)
    case "weight":
      return byWeight(backends, now)
    case "hash":
      return policy.hashMethod === "consistent"
        ? consistentHash(backends, ip, port, policy.roundrobin)
        : hash(ip, port, backends.length, policy.roundrobin)
    case "roundrobin":
      return roundRobin(backends, at, now)
  }
}

/**
 * The failover scan after `failed` was rejected or failed: the servers after it in index order, wrapping, up to and
 * including `initial` (the server the connection tried first). Empty with fewer than two servers or no server.
 *
 * @category selection
 */
export const failoverOrder = (failed: number, initial: number, n: number): Array<number> => {
  const order: Array<number> = []
  if (n <= 1 || failed === NO_SERVER) return order
  const stop = initial === NO_SERVER ? failed : initial
  let s = failed
  do {
    s = (s + 1) % n
    order.push(s)
  } while (s !== stop && order.length < n)
  return order
}
