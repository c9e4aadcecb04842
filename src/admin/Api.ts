/**
 * The admin API's typed edges: the Schemas that decode path parameters, query strings and request bodies, the error a
 * bad request becomes (a status and a JSON body naming the field), and the JSON views of nib's state that the
 * endpoints and the dashboard's event stream send.
 *
 * A request that does not decode gets `400 {"error": "...", "field": "weight"}`: the first bad field, by its path.
 */
import { Data, Effect, Schema, SchemaIssue } from "effect"
import { isIP } from "node:net"
import type { ConnectionInfo } from "../domain/Connection.ts"
import type { ServerStatus } from "../domain/Pool.ts"
import type * as StickyTable from "../domain/StickyTable.ts"

/** A request the API refuses: HTTP `status`, a message, and the field at fault when there is one. @category errors */
export class ApiError extends Data.TaggedError("ApiError")<{
  readonly status: 400 | 401 | 403 | 404 | 413 | 422
  readonly message: string
  readonly field?: string | undefined
}> {}

/** The JSON body of an error response. @category models */
export interface ErrorBody {
  readonly error: string
  readonly field?: string
}

/** An error's JSON body. @category conversions */
export const errorBody = (error: ApiError): ErrorBody =>
  error.field === undefined ? { error: error.message } : { error: error.message, field: error.field }

const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const IntFromString = Schema.FiniteFromString.pipe(Schema.decodeTo(NonNegativeInt))

/** `:index` in `/api/servers/:index/...`: pen's server number. @category schemas */
export const ServerPath = Schema.Struct({
  index: IntFromString.annotate({ description: "the server's number (0, 1, ...)" })
})

/** `GET /api/clients?limit=N`: at most N clients, most recent first. @category schemas */
export const ClientsQuery = Schema.Struct({
  limit: Schema.optional(
    Schema.FiniteFromString.pipe(Schema.decodeTo(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))))
  )
})

/** `GET /api/explain?client=IP`: an IPv4 or IPv6 address. @category schemas */
export const ExplainQuery = Schema.Struct({
  client: Schema.String.check(Schema.makeFilter((text) => isIP(text) !== 0 || "not an IP address"))
})

/** `POST /api/servers/N/blacklist`: for `seconds` (0 lifts it; default: the `-b` time). @category schemas */
export const BlacklistBody = Schema.Struct({
  seconds: Schema.optional(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)))
})

/** `POST /api/servers/N/drain`: `draining` true (the default) takes no new clients; false takes them again. */
export const DrainBody = Schema.Struct({
  draining: Schema.optional(Schema.Boolean)
})

/**
 * `PATCH /api/servers/N`: what pen's `server N address A port P max M hard H weight W prio P` changes, any of them,
 * at least one. An address is a host name, an IP address or a Unix socket path. @category schemas
 */
export const ServerPatch = Schema.Struct({
  address: Schema.optional(Schema.NonEmptyString),
  port: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65535 }))),
  max: Schema.optional(NonNegativeInt),
  hard: Schema.optional(NonNegativeInt),
  weight: Schema.optional(NonNegativeInt),
  prio: Schema.optional(NonNegativeInt)
})

/** The decoded PATCH body. @category models */
export type ServerPatch = typeof ServerPatch.Type

const formatIssue = SchemaIssue.makeFormatterStandardSchemaV1()

/**
 * Decodes `input` with `schema`; unknown fields are refused too. A failure is a 400 naming the first bad field (its
 * path, dot-separated) and saying what was wrong. @category decoding
 */
export const decode = <S extends Schema.Decoder<unknown>>(
  schema: S,
  input: unknown
): Effect.Effect<S["Type"], ApiError, S["DecodingServices"]> =>
  Schema.decodeUnknownEffect(schema)(input, { onExcessProperty: "error" }).pipe(
    Effect.mapError((error) => {
      const issue = formatIssue(error.issue).issues[0]
      const path = (issue?.path ?? []).map((p) => String(typeof p === "object" ? p.key : p))
      const field = path.length > 0 ? path.join(".") : undefined
      const message = issue?.message ?? "invalid request"
      return new ApiError({
        status: 400,
        message: field === undefined ? message : `${field}: ${message}`,
        field
      })
    })
  )

/** What the dashboard colours a server by. @category models */
export type ServerState = "up" | "down" | "blacklisted" | "draining" | "unconfigured"

/** One server as the API shows it. @category models */
export interface ServerView {
  readonly index: number
  readonly address: string
  /** The host name the address was resolved from (and follows, with `--resolve-interval`), or null. */
  readonly name: string | null
  /** down (its check) wins over blacklisted, which wins over draining. */
  readonly state: ServerState
  readonly connections: number
  readonly softLimit: number
  readonly hardLimit: number
  readonly weight: number
  readonly prio: number
  readonly blacklisted: boolean
  /** When the blacklist ends (milliseconds since the epoch), or null. */
  readonly blacklistedUntil: number | null
  readonly down: boolean
  readonly draining: boolean
  /** The active check (`--check`), or null when the server is not checked. */
  readonly check: string | null
  readonly bytesSent: number
  readonly bytesReceived: number
}

/** A server's state, from its status and whether its slot has an address. @category conversions */
export const serverState = (status: ServerStatus, configured: boolean): ServerState =>
  !configured
    ? "unconfigured"
    : status.down
    ? "down"
    : status.blacklisted
    ? "blacklisted"
    : status.draining
    ? "draining"
    : "up"

/** The view of one server. @category conversions */
export const serverView = (status: ServerStatus, configured: boolean): ServerView => ({
  index: status.index,
  address: status.address,
  name: status.name ?? null,
  state: serverState(status, configured),
  connections: status.connections,
  softLimit: status.softLimit,
  hardLimit: status.hardLimit,
  weight: status.weight,
  prio: status.prio,
  blacklisted: status.blacklisted,
  blacklistedUntil: status.blacklisted ? status.blacklistedUntil : null,
  down: status.down,
  draining: status.draining,
  check: status.check ?? null,
  bytesSent: status.bytesSent,
  bytesReceived: status.bytesReceived
})

/** One client of the sticky table. @category models */
export interface ClientView {
  readonly address: string
  /** The server it used last, or -1. */
  readonly server: number
  /** Its last connection (milliseconds since the epoch). */
  readonly lastSeen: number
  readonly connects: number
  readonly bytesToClient: number
  readonly bytesFromClient: number
}

/** The view of a sticky-table entry. @category conversions */
export const clientView = (entry: StickyTable.ClientEntry): ClientView => ({
  address: entry.address,
  server: entry.server,
  lastSeen: entry.lastSeen,
  connects: entry.connects,
  bytesToClient: entry.bytesToClient,
  bytesFromClient: entry.bytesFromClient
})

/** One live connection (pen's connection table). @category models */
export interface ConnectionView {
  readonly slot: number
  readonly client: string
  readonly server: number
  readonly state: "connecting" | "relaying"
  /** Bytes queued towards the client and towards the server. */
  readonly pendingToClient: number
  readonly pendingToServer: number
}

/** The view of a live connection. @category conversions */
export const connectionView = (c: ConnectionInfo): ConnectionView => ({
  slot: c.slot,
  client: c.client,
  server: c.server,
  state: c.state === 1 ? "connecting" : "relaying",
  pendingToClient: c.pendingDown,
  pendingToServer: c.pendingUp
})
