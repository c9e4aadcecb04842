/**
 * `--peers`: several nibs sharing one sticky table and the operator's actions through Redis. The pure part: the
 * Redis URL (its password kept `Redacted`), the key names, the values kept in Redis, the messages peers publish, and
 * what a batch of local changes sends.
 *
 * In Redis, under the key prefix (`--peers-key`, `nib` by default):
 *
 * - `PREFIX:sticky`, a hash: client address -> `SEEN|SERVER` (its last visit, in milliseconds since the epoch, and the
 *   server's address:port). The first writer of a client wins; a nib that moved the client off the server Redis has
 *   (a failover) replaces it.
 * - `PREFIX:servers`, a hash: server address:port -> the operator's state of it (a JSON {@link ServerState}).
 * - `PREFIX:peers`, a hash: peer id -> the peer's last heartbeat (a JSON {@link PeerBeat}).
 * - `PREFIX:changes`, the channel every change is published on (a JSON {@link Message}).
 *
 * Servers are named by address:port, never by index: two nibs may list them in other orders.
 */
import { Redacted, Result, Schema } from "effect"

/** Where the peers meet: `redis://[[user]:password@]host[:port][/db]`, or `rediss://` (TLS). @category models */
export interface PeersUrl {
  readonly tls: boolean
  readonly host: string
  readonly port: number
  readonly db: number
  readonly username: string | undefined
  readonly password: Redacted.Redacted<string> | undefined
}

/** The `--peers` setting: the URL decoded. @category schemas */
export const PeersUrlSchema = Schema.Struct({
  tls: Schema.Boolean,
  host: Schema.NonEmptyString,
  port: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65535 })),
  db: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  username: Schema.UndefinedOr(Schema.String),
  password: Schema.UndefinedOr(Schema.Redacted(Schema.String))
})

/** Redis's port when the URL names none. @category constants */
export const DEFAULT_PORT = 6379

/** A key prefix: letters, digits and `_ . : -`, at most 64 (`--peers-key`). @category constants */
export const KEY_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/

/** Parses `--peers`: what is wrong with it, in words, or the URL. @category parsing */
export const parseUrl = (text: string): Result.Result<PeersUrl, string> => {
  const scheme = /^(rediss?):\/\//.exec(text)
  if (scheme === null) return Result.fail("not a Redis URL: redis://HOST[:PORT][/DB] or rediss://...")
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return Result.fail("not a Redis URL: redis://HOST[:PORT][/DB] or rediss://...")
  }
  if (url.hostname === "") return Result.fail("no host: redis://HOST[:PORT][/DB]")
  if (url.search !== "" || url.hash !== "") {
    return Result.fail("no query or fragment is taken: redis://HOST[:PORT][/DB]")
  }
  const port = url.port === "" ? DEFAULT_PORT : Number(url.port)
  const path = url.pathname.replace(/^\//, "")
  if (path !== "" && !/^\d{1,5}$/.test(path)) return Result.fail(`'/${path}' is not a database number`)
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname
  let username: string | undefined
  let password: string | undefined
  try {
    username = url.username === "" ? undefined : decodeURIComponent(url.username)
    password = url.password === "" ? undefined : decodeURIComponent(url.password)
  } catch {
    return Result.fail("the user or password is not URL-encoded (write % as %25)")
  }
  return Result.succeed({
    tls: scheme[1] === "rediss",
    host,
    port,
    db: path === "" ? 0 : Number(path),
    username,
    password: password === undefined ? undefined : Redacted.make(password)
  })
}

const hostText = (host: string) => (host.includes(":") ? `[${host}]` : host)

/** The URL as logs, `/api/peers` and errors show it: the password as `***`, never itself. @category formatting */
export const display = (url: PeersUrl): string => {
  const user = url.username ?? ""
  const auth = url.password !== undefined ? `${user}:***@` : user !== "" ? `${user}@` : ""
  return `${url.tls ? "rediss" : "redis"}://${auth}${hostText(url.host)}:${url.port}${url.db === 0 ? "" : `/${url.db}`}`
}

/** The URL the Redis client is given, with the password: for the client only. @category formatting */
export const connectionUrl = (url: PeersUrl): string => {
  const user = encodeURIComponent(url.username ?? "")
  const auth = url.password !== undefined
    ? `${user}:${encodeURIComponent(Redacted.value(url.password))}@`
    : user !== ""
    ? `${user}@`
    : ""
  return `${url.tls ? "rediss" : "redis"}://${auth}${hostText(url.host)}:${url.port}/${url.db}`
}

/** The Redis names under a prefix. @category models */
export interface Keys {
  readonly sticky: string
  readonly servers: string
  readonly peers: string
  readonly channel: string
}

/** The keys of `--peers-key prefix`. @category constructors */
export const keys = (prefix: string): Keys => ({
  sticky: `${prefix}:sticky`,
  servers: `${prefix}:servers`,
  peers: `${prefix}:peers`,
  channel: `${prefix}:changes`
})

/** A sticky entry as Redis keeps it. @category models */
export interface Pin {
  readonly client: string
  /** The server's address:port. */
  readonly server: string
  /** The client's last visit, in milliseconds since the epoch. */
  readonly seen: number
}

/** `SEEN|SERVER`, the value of a client in `PREFIX:sticky`. @category encoding */
export const encodePin = (server: string, seen: number): string => `${Math.floor(seen)}|${server}`

/** The server and last visit of a `PREFIX:sticky` value, or undefined for one nib did not write. @category decoding */
export const decodePin = (client: string, value: string): Pin | undefined => {
  const bar = value.indexOf("|")
  if (bar <= 0 || bar === value.length - 1) return undefined
  const seen = Number(value.slice(0, bar))
  return Number.isFinite(seen) ? { client, server: value.slice(bar + 1), seen } : undefined
}

/** The operator's state of one server, as the peers share it. @category schemas */
export const ServerState = Schema.Struct({
  /** When the operator's blacklist ends (milliseconds since the epoch); 0 or absent: none. */
  blacklistedUntil: Schema.optional(Schema.Finite),
  draining: Schema.optional(Schema.Boolean),
  weight: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)))
})
/** @category models */
export type ServerState = typeof ServerState.Type

/** A peer's heartbeat, in `PREFIX:peers`. @category schemas */
export const PeerBeat = Schema.Struct({
  host: Schema.String,
  pid: Schema.Int,
  startedAt: Schema.Finite,
  /** When it wrote this beat (ms since the epoch). */
  at: Schema.Finite,
  /** When it last synchronized with Redis (pushed its changes and had its batch answered), or 0. */
  lastSync: Schema.Finite,
  /** Milliseconds between a change's publication by a peer and its application here: the last one seen. */
  lagMs: Schema.Finite,
  /** Clients in its table. */
  clients: Schema.Int
})
/** @category models */
export type PeerBeat = typeof PeerBeat.Type

/** What a peer publishes: clients pinned (or seen again), or an operator's action on a server. @category schemas */
export const Message = Schema.Union([
  Schema.TaggedStruct("Pins", {
    from: Schema.String,
    at: Schema.Finite,
    pins: Schema.Array(Schema.Tuple([Schema.String, Schema.String, Schema.Finite]))
  }),
  Schema.TaggedStruct("Server", {
    from: Schema.String,
    at: Schema.Finite,
    server: Schema.String,
    state: ServerState
  })
])
/** @category models */
export type Message = typeof Message.Type

const decodeMessageJson = Schema.decodeUnknownResult(Schema.fromJsonString(Message))

/** A message off the channel, or undefined for one that is not a peer's (garbage is ignored). @category decoding */
export const decodeMessage = (text: string): Message | undefined => {
  const decoded = decodeMessageJson(text)
  return Result.isSuccess(decoded) ? decoded.success : undefined
}

/** The JSON of a message. @category encoding */
export const encodeMessage = (message: Message): string => JSON.stringify(message)

/** What a nib remembers it last told Redis of a client: the server, and the visit. @category models */
export interface Told {
  readonly server: string
  readonly seen: number
}

/** One line of a batch: the client's pin now, and the server this nib last told Redis it had ("" for none). */
export interface Change extends Pin {
  readonly previous: string
}

/**
 * What a batch sends of a client's entry now, given what was last told of it: a new pin or a move (`previous` is the
 * server told before), a visit at least `touchMillis` after the last one told, or nothing.
 *
 * @category rules
 */
export const changeOf = (pin: Pin, told: Told | undefined, touchMillis: number): Change | undefined => {
  if (told === undefined || told.server !== pin.server) return { ...pin, previous: told?.server ?? "" }
  return pin.seen - told.seen >= touchMillis ? { ...pin, previous: pin.server } : undefined
}

/**
 * What Redis keeps when a batch line meets the value it has (`current`, undefined for none): the line, when Redis
 * has no pin, the same server, or the server the line moves the client from; otherwise the pin Redis has, which the
 * nib takes (the first writer wins). The Lua script applies the same rule in Redis; this is its model, for tests.
 *
 * @category rules
 */
export const merge = (change: Change, current: Pin | undefined): { readonly kept: Pin; readonly won: boolean } => {
  if (current === undefined || current.server === change.server || current.server === change.previous) {
    return {
      kept: { client: change.client, server: change.server, seen: Math.max(change.seen, current?.seen ?? 0) },
      won: true
    }
  }
  return { kept: current, won: false }
}
