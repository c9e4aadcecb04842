/**
 * nib's state as the admin API shows it, read from the running services: the servers, the sticky table's clients,
 * the live connections, the settings, and the per-second reading the dashboard's history is built from; and the
 * changes the API makes (blacklist, drain, a server's address, limits and weight).
 *
 * Everything here runs when a request or the admin's one-second timer asks; nothing is on the per-connection path.
 */
import { Effect } from "effect"
import type { Settings } from "../Config.ts"
import * as Address from "../domain/Address.ts"
import type * as Explain from "../domain/Explain.ts"
import * as HealthCheck from "../domain/HealthCheck.ts"
import type { Peers, PeersStatus } from "../peers/Peers.ts"
import type { Listener } from "../proxy/Listener.ts"
import type { TcpProxy } from "../proxy/TcpProxy.ts"
import type { ClientTable } from "../services/ClientTable.ts"
import type { HealthChecker } from "../services/HealthChecker.ts"
import { type ServerChange, type ServerPool, type ServerStatus } from "../services/ServerPool.ts"
import type { StatsReporter } from "../services/StatsReporter.ts"
import * as Api from "./Api.ts"
import type * as History from "./History.ts"

/** The services the admin endpoint reads and changes. @category models */
export interface Services {
  readonly config: Settings
  readonly pool: ServerPool["Service"]
  readonly clients: ClientTable["Service"]
  readonly stats: StatsReporter["Service"]
  readonly listener: Listener["Service"]
  readonly health: HealthChecker["Service"]
  readonly proxy: TcpProxy["Service"]
  /** `--peers`: the nibs sharing the sticky table. */
  readonly peers: Peers["Service"]
  /** `explain`: the decision nib would make now for a new client from this address, and why. */
  readonly explain: (client: string) => Effect.Effect<Explain.Explanation>
}

/** `GET /api/servers`. @category models */
export interface ServersView {
  readonly servers: ReadonlyArray<Api.ServerView>
  /** The emergency server (`-e`), or null. */
  readonly emergency: Api.ServerView | null
}

/** `GET /api/clients`. @category models */
export interface ClientsView {
  /** Clients the sticky table remembers, and its slots (`-c`). */
  readonly total: number
  readonly capacity: number
  /** Most recent first (at most `limit`). */
  readonly clients: ReadonlyArray<Api.ClientView>
}

/** `GET /api/settings`: the settings in force now (the control port may have changed them). @category models */
export interface SettingsView {
  readonly listen: string
  readonly mode: "tcp" | "udp"
  readonly policy: {
    readonly roundrobin: boolean
    readonly hash: boolean
    readonly weight: boolean
    readonly prio: boolean
    readonly stubborn: boolean
  }
  readonly blacklistSeconds: number
  readonly connectTimeoutSeconds: number
  readonly clientsMax: number
  readonly trackingSeconds: number
  readonly connectionsMax: number
  readonly check: {
    readonly text: string | null
    readonly intervalSeconds: number
    readonly rise: number
    readonly fall: number
  }
  /** Whether the API takes changes (a token file was given). */
  readonly readOnly: boolean
}

/** `GET /api/state`: whether nib serves or drains (a graceful stop, SIGQUIT), and the connections open. @category models */
export interface StateView {
  readonly state: "serving" | "draining"
  /** Connections (UDP sessions) open on every thread: served, or waiting for a slot. */
  readonly open: number
}

/** Serving, or draining: its listeners closed, the open connections finishing before nib stops. @category getters */
export const state = (s: Services): Effect.Effect<StateView> =>
  Effect.gen(function*() {
    return { state: (yield* s.listener.draining) ? "draining" : "serving", open: yield* s.listener.open }
  })

/** The servers now. @category getters */
export const servers = (s: Services): Effect.Effect<ServersView> =>
  Effect.map(s.pool.snapshot, (snapshot) => ({
    servers: snapshot.servers.map((status) => view(s, status)),
    emergency: snapshot.emergency === undefined ? null : Api.serverView(snapshot.emergency, true)
  }))

const view = (s: Services, status: ServerStatus): Api.ServerView =>
  Api.serverView(status, s.pool.backends[status.index]?.configured ?? true)

/** Server `index` now, or a 404. @category getters */
export const server = (s: Services, index: number): Effect.Effect<Api.ServerView, Api.ApiError> =>
  Effect.flatMap(s.pool.snapshot, (snapshot) => {
    const status = snapshot.servers[index]
    return status === undefined
      ? Effect.fail(new Api.ApiError({ status: 404, message: `no server ${index}`, field: "index" }))
      : Effect.succeed(view(s, status))
  })

/** The sticky table's clients, most recent first. @category getters */
export const clients = (s: Services, limit?: number): Effect.Effect<ClientsView> =>
  Effect.gen(function*() {
    const recent = yield* s.clients.recent
    return {
      total: recent.length,
      capacity: yield* s.clients.capacity,
      clients: (limit === undefined ? recent : recent.slice(0, limit)).map(Api.clientView)
    }
  })

/** The `n` clients that moved the most bytes, then connected most. @category getters */
export const busiest = (s: Services, n: number): Effect.Effect<ReadonlyArray<Api.ClientView>> =>
  Effect.map(s.clients.recent, (recent) =>
    recent
      .map(Api.clientView)
      .toSorted((a, b) =>
        b.bytesToClient + b.bytesFromClient - (a.bytesToClient + a.bytesFromClient) || b.connects - a.connects
      )
      .slice(0, n))

/** The live connections (pen's connection table). @category getters */
export const connections = (s: Services): Effect.Effect<ReadonlyArray<Api.ConnectionView>> =>
  Effect.map(s.listener.connections, (all) => all.map(Api.connectionView))

/** The settings in force. @category getters */
export const settings = (s: Services, readOnly: boolean): Effect.Effect<SettingsView> =>
  Effect.gen(function*() {
    const policy = s.pool.policy
    return {
      listen: Address.format(s.listener.address),
      mode: s.listener.udp ? "udp" : "tcp",
      policy: {
        roundrobin: policy.roundrobin,
        hash: policy.hash,
        weight: policy.weight,
        prio: policy.prio,
        stubborn: policy.stubborn
      },
      blacklistSeconds: yield* s.health.blacklistSeconds,
      connectTimeoutSeconds: yield* s.proxy.connectTimeoutSeconds,
      clientsMax: yield* s.clients.capacity,
      trackingSeconds: yield* s.clients.trackingSeconds,
      connectionsMax: yield* s.listener.connectionsMax,
      check: {
        text: s.config.check === undefined ? null : HealthCheck.format(s.config.check),
        intervalSeconds: s.config.checkIntervalSeconds,
        rise: s.config.rise,
        fall: s.config.fall
      },
      readOnly
    }
  })

/** The counters and each server's state and counters at `time`, for the history. @category getters */
export const reading = (s: Services, time: number): Effect.Effect<History.Reading> =>
  Effect.map(s.stats.snapshot, (snapshot) => ({
    time,
    accepted: snapshot.accepted,
    active: snapshot.active,
    failovers: snapshot.failovers,
    refused: snapshot.refused,
    servers: snapshot.servers.map((status) => ({
      index: status.index,
      address: status.address,
      state: view(s, status).state,
      blacklistedUntil: status.blacklistedUntil,
      connections: status.connections,
      bytesSent: status.bytesSent,
      bytesReceived: status.bytesReceived
    }))
  }))

const existing = (s: Services, index: number): Effect.Effect<void, Api.ApiError> =>
  index < s.pool.backends.length
    ? Effect.void
    : Effect.fail(new Api.ApiError({ status: 404, message: `no server ${index}`, field: "index" }))

/** Blacklists server `index` for `seconds` (0 lifts it; undefined: the `-b` time). @category mutations */
export const blacklist = (s: Services, index: number, seconds: number | undefined): Effect.Effect<void, Api.ApiError> =>
  Effect.gen(function*() {
    yield* existing(s, index)
    const time = seconds ?? (yield* s.health.blacklistSeconds)
    yield* s.pool.blacklist(index, time).pipe(
      Effect.mapError((error) => new Api.ApiError({ status: 404, message: error.message, field: "index" }))
    )
  })

/** Drains server `index` (no new clients; live connections go on), or takes it back. @category mutations */
export const drain = (s: Services, index: number, draining: boolean): Effect.Effect<void, Api.ApiError> =>
  Effect.flatMap(existing(s, index), () => s.pool.setDraining(index, draining))

/**
 * Applies a PATCH: the address first (as pen requires), then the port, limits, weight and prio, through the pool's
 * own `server N ...` (which resolves and checks the address). An address that does not resolve is a 422 naming it,
 * and leaves the later changes unapplied. @category mutations
 */
export const patch = (s: Services, index: number, body: Api.ServerPatch): Effect.Effect<void, Api.ApiError> =>
  Effect.gen(function*() {
    yield* existing(s, index)
    const changes: Array<ServerChange> = []
    if (body.address !== undefined) changes.push({ key: "address", value: body.address })
    if (body.port !== undefined) changes.push({ key: "port", value: body.port })
    if (body.max !== undefined) changes.push({ key: "max", value: body.max })
    if (body.hard !== undefined) changes.push({ key: "hard", value: body.hard })
    if (body.weight !== undefined) changes.push({ key: "weight", value: body.weight })
    if (body.prio !== undefined) changes.push({ key: "prio", value: body.prio })
    if (changes.length === 0) {
      return yield* new Api.ApiError({
        status: 400,
        message: "nothing to change: give address, port, max, hard, weight or prio"
      })
    }
    yield* s.pool.configure(index, changes).pipe(
      Effect.mapError((error) => new Api.ApiError({ status: 422, message: error.message, field: "address" }))
    )
  })

/** `GET /api/peers`: the nibs sharing this one's sticky table (`--peers`), or `enabled: false`. @category models */
export type PeersView = { readonly enabled: false } | ({ readonly enabled: true } & PeersStatus)

/** Where this nib stands with its peers. @category getters */
export const peers = (s: Services): Effect.Effect<PeersView> =>
  Effect.map(s.peers.status, (status) => (status === undefined ? { enabled: false } : { enabled: true, ...status }))
