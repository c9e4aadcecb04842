/**
 * `--peers` at work: one fiber of the main thread keeps this nib's sticky table and operator's actions in step with
 * the other nibs on the same Redis key, through Effect's Redis service over node-redis (`@effect/platform-node`'s
 * NodeRedis). The names in Redis and the rules of a merge are `domain/Peers.ts`'s.
 *
 * A session is one connection to Redis, from its first synchronization to its failure:
 *
 * 1. subscribe to the channel (so that nothing published from now on is missed);
 * 2. send the whole local table, each client with the server this nib last told Redis it had: Redis keeps the first
 *    writer's pin, or ours where we moved the client off the server it has (a failover during an outage); where
 *    another server won, this nib takes it;
 * 3. take in Redis's table, and the operator's state of each server;
 * 4. then, every {@link FLUSH_MILLIS}: send the clients pinned or moved since, and visits worth telling; apply what
 *    the peers publish as it arrives; write a heartbeat every {@link BEAT_MILLIS}; drop stale entries every minute.
 *
 * Any failure (Redis gone, a command failing or taking over {@link COMMAND_MILLIS}) ends the session: the local
 * table goes on serving, nib says so in one line (then at most one a minute), and a new session starts after a
 * backoff. No connection waits for any of it.
 */
import { NodeRedis } from "@effect/platform-node"
import { Clock, Context, Deferred, Duration, Effect, Layer, PubSub, Queue, References, Schedule, Schema } from "effect"
import { Metric } from "effect"
import * as Redis from "effect/persistence/Redis"
import * as Os from "node:os"
import * as P from "../domain/Peers.ts"
import * as ServerSpec from "../domain/ServerSpec.ts"
import { ClientTable } from "../services/ClientTable.ts"
import { Origin, ServerPool } from "../services/ServerPool.ts"
import { FLUSH_MILLIS, LOAD_WAIT_MILLIS, MetricNames, type PeersStatus, type PeerView } from "./Peers.ts"
import { claim, prune, serverChange } from "./Scripts.ts"

/** How often a heartbeat is written, and the peers read. */
const BEAT_MILLIS = 2000

/** A peer whose heartbeat is older is not live (and is removed from the hash after a minute). */
const LIVE_MILLIS = 10_000
const GONE_MILLIS = 60_000

/** The longest a command may take before the session is given up. */
const COMMAND_MILLIS = 3000

/** Lines per script call. */
const BATCH = 500

/** How often stale entries are dropped from Redis. */
const PRUNE_MILLIS = 60_000

/** The most entries Redis keeps per slot of this nib's table (`-c`): a bound, for tables whose clients never expire. */
const KEEP_PER_SLOT = 2

/** At most one line a minute about an outage that goes on. */
const LOG_EVERY_MILLIS = 60_000

const decodeState = Schema.decodeUnknownOption(Schema.fromJsonString(P.ServerState))
const decodeBeat = Schema.decodeUnknownOption(Schema.fromJsonString(P.PeerBeat))

/** Why a session ended, in words: the cause's message, never the URL it was given. */
const reasonOf = (error: unknown): string => {
  const cause = error instanceof Redis.RedisError ? error.cause : error
  if (cause instanceof AggregateError && cause.errors.length > 0) return reasonOf(cause.errors[0])
  if (cause instanceof Error) return cause.message || cause.name
  return String(cause)
}

/** A `HGETALL` reply (RESP2's flat list, or RESP3's map) as pairs. */
const pairsOf = (reply: unknown): ReadonlyArray<readonly [string, string]> => {
  if (Array.isArray(reply)) {
    const pairs: Array<readonly [string, string]> = []
    for (let i = 0; i + 1 < reply.length; i += 2) pairs.push([String(reply[i]), String(reply[i + 1])])
    return pairs
  }
  if (reply instanceof Map) return Array.from(reply, ([k, v]) => [String(k), String(v)] as const)
  if (typeof reply === "object" && reply !== null) {
    return Object.entries(reply).map(([k, v]) => [k, String(v)] as const)
  }
  return []
}

class SessionError extends Schema.TaggedError<SessionError>()("SessionError", {
  reason: Schema.String
}) {}

const log = (message: string) => Effect.logWarning(`peers: ${message}`).pipe(Effect.annotateLogs({ service: "Peers" }))
const info = (message: string) => Effect.logInfo(`peers: ${message}`).pipe(Effect.annotateLogs({ service: "Peers" }))

/** How long after the last visit told a new visit is worth telling: it keeps the client alive in the others. */
const touchMillis = (tracking: number) => (tracking > 0 ? Math.min(5000, Math.max(250, tracking / 4)) : 5000)

const every = <E>(millis: number, effect: Effect.Effect<void, E>) =>
  Effect.repeat(effect, Schedule.spaced(Duration.millis(millis)))

const noop = () => {}

/** The peers of `--peers url --peers-key prefix`, kept in step until the scope closes. @category constructors */
export const make = (url: P.PeersUrl, prefix: string) =>
  Effect.gen(function*() {
    const clients = yield* ClientTable
    const pool = yield* ServerPool
    const clock = yield* Clock.Clock
    const now = () => clock.currentTimeMillisUnsafe()
    const keys = P.keys(prefix)
    const shown = P.display(url)
    const id = `${Os.hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`
    const startedAt = now()

    const status = {
      up: false,
      lastSync: 0,
      lagMs: 0,
      syncErrors: 0,
      peers: [] as ReadonlyArray<PeerView>
    }
    /** What this nib last told Redis of each client (or took from it): the `previous` of its next change. */
    const told = new Map<string, P.Told>()
    /** The operator's changes not yet in Redis, by server: sent by the next flush, kept through an outage. */
    const pending = new Map<string, P.ServerState>()
    const loaded = yield* Deferred.make<void>()

    const trackingMillis = () => Effect.map(clients.trackingSeconds, (seconds) => seconds * 1000)

    const remember = (client: string, told_: P.Told) => {
      told.delete(client)
      told.set(client, told_)
    }
    /** `told` stays within a few tables' worth: the entries told longest ago go first. */
    const trim = (capacity: number) => {
      const most = capacity * KEEP_PER_SLOT + 1024
      if (told.size <= most) return
      let excess = told.size - most
      for (const client of told.keys()) {
        if (excess-- <= 0) break
        told.delete(client)
      }
    }

    /** Server identity (`ServerSpec.identity`) <-> index, as the pool has them now (the control port may readdress one). */
    const names = () => {
      const byIndex: Array<string | undefined> = []
      const byName = new Map<string, number>()
      for (const b of pool.backends) {
        const name = b.configured ? ServerSpec.identity(b.spec) : undefined
        byIndex[b.index] = name
        if (name !== undefined && !byName.has(name)) byName.set(name, b.index)
      }
      return { byIndex, byName }
    }

    const take = (pin: P.Pin, byName: ReadonlyMap<string, number>): Effect.Effect<void> => {
      const index = byName.get(pin.server)
      remember(pin.client, { server: pin.server, seen: pin.seen })
      return index === undefined ? Effect.void : Effect.asVoid(clients.adopt(pin.client, index, pin.seen))
    }

    /** The operator's state of each server as the peers share it: what a start's configuration must not undo. */
    const shared = new Map<string, P.ServerState>()
    const share = (server: string, state: P.ServerState) => shared.set(server, { ...shared.get(server), ...state })

    /** Applies an operator's change a peer made, as a peer's: it is not shared again. */
    const applyServer = (server: string, state: P.ServerState): Effect.Effect<void> => {
      share(server, state)
      const index = names().byName.get(server)
      if (index === undefined) return Effect.void
      return Effect.gen(function*() {
        if (state.blacklistedUntil !== undefined) {
          yield* Effect.ignore(pool.blacklistUntil(index, state.blacklistedUntil))
        }
        if (state.draining !== undefined) yield* pool.setDraining(index, state.draining)
        if (state.weight !== undefined) {
          yield* Effect.ignore(pool.configure(index, [{ key: "weight", value: state.weight }]))
        }
      }).pipe(Effect.provideService(Origin, "peer"))
    }

    /** How this nib's own messages start their `from`: they come back on the channel, and are not read again. */
    const own = `"from":${JSON.stringify(id)}`
    const apply = (text: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        // Exact: a quote inside any string of the message is escaped, so only a `from` field can hold this text.
        if (text.includes(own)) return Effect.void
        const message = P.decodeMessage(text)
        if (message === undefined || message.from === id) return Effect.void
        status.lagMs = Math.max(0, now() - message.at)
        if (message._tag === "Server") return applyServer(message.server, message.state)
        const { byName } = names()
        return Effect.forEach(message.pins, ([client, server, seen]) => take({ client, server, seen }, byName), {
          discard: true
        })
      })

    // The operator's changes, kept until a flush sends them (peers' and the configuration's stay here).
    const actions = yield* pool.actions
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(PubSub.take(actions), (action) =>
      Effect.sync(() => {
        if (action.origin !== "operator") return
        const server = names().byIndex[action.index]
        if (server === undefined) return
        const change: { -readonly [K in keyof P.ServerState]: P.ServerState[K] } = { ...pending.get(server) }
        if (action.blacklistedUntil !== undefined) change.blacklistedUntil = action.blacklistedUntil
        if (action.draining !== undefined) change.draining = action.draining
        if (action.weight !== undefined) change.weight = action.weight
        pending.set(server, change)
        share(server, change)
      }))))

    const session = Effect.gen(function*() {
      // node-redis reconnects by itself; here a broken connection ends the session instead, which starts over with
      // a whole synchronization. Commands fail at once while the client is down rather than queue.
      const context = yield* Layer.build(
        NodeRedis.layer({
          url: P.connectionUrl(url),
          socket: { connectTimeout: COMMAND_MILLIS, reconnectStrategy: false },
          disableOfflineQueue: true
        })
      ).pipe(
        // NodeRedis logs each client error; nib says what matters itself, once.
        Effect.provideService(References.MinimumLogLevel, "Error"),
        Effect.mapError((error) => new SessionError({ reason: reasonOf(error) }))
      )
      const redis = Context.get(context, Redis.Redis)
      const redisClient = Context.get(context, NodeRedis.NodeRedis).client
      // A session that fails destroys its client first: closing waits for commands in flight, which a Redis that
      // stopped answering never answers.
      yield* Effect.addFinalizer(() => Effect.sync(() => redisClient.isOpen && redisClient.destroy()))
      const timed = <A>(effect: Effect.Effect<A, Redis.RedisError>): Effect.Effect<A, SessionError> =>
        effect.pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(COMMAND_MILLIS),
            orElse: () => Effect.fail(new SessionError({ reason: `no answer within ${COMMAND_MILLIS} ms` }))
          }),
          Effect.mapError((
            error
          ) => (error instanceof SessionError ? error : new SessionError({ reason: reasonOf(error) })))
        )

      // A nib that stops leaves the peers at once (its heartbeat removed), not when its heartbeat grows stale.
      yield* Effect.addFinalizer((exit) =>
        exit._tag === "Failure" && exit.cause.reasons.some((r) => r._tag === "Fail")
          ? Effect.void
          : Effect.ignore(Effect.timeout(redis.send("HDEL", keys.peers, id), Duration.millis(500)))
      )
      const messages = yield* redis.subscribe(keys.channel)

      /** Sends what changed since the mark (everything, with `whole`); takes the pins Redis kept instead. */
      let mark = { changes: 0, seen: 0 }
      const flush = (whole: boolean) =>
        Effect.gen(function*() {
          const walked = now()
          const { changes, entries } = yield* clients.changedSince(whole ? -1 : mark.changes, whole ? -1 : mark.seen)
          const tracking = yield* trackingMillis()
          const touch = touchMillis(tracking)
          const { byIndex, byName } = names()
          const lines: Array<P.Change> = []
          for (const entry of entries) {
            const server = entry.server >= 0 ? byIndex[entry.server] : undefined
            if (server === undefined) continue
            const pin = { client: entry.address, server, seen: entry.lastSeen }
            const change = whole ?
              { ...pin, previous: told.get(pin.client)?.server ?? "" } :
              P.changeOf(pin, told.get(pin.client), touch)
            if (change !== undefined) lines.push(change)
          }
          for (let at = 0; at < lines.length; at += BATCH) {
            const batch = lines.slice(at, at + BATCH)
            const args = batch.flatMap((c) => [c.client, c.server, c.previous, String(Math.floor(c.seen))])
            const lost = yield* timed(redis.eval(claim)(keys, id, now(), tracking, args))
            const taken = new Set<string>()
            for (let i = 0; i + 1 < lost.length; i += 2) {
              const pin = P.decodePin(String(lost[i]), String(lost[i + 1]))
              if (pin === undefined) continue
              taken.add(pin.client)
              yield* take(pin, byName)
            }
            for (const c of batch) if (!taken.has(c.client)) remember(c.client, { server: c.server, seen: c.seen })
          }
          for (const [server, state] of pending) {
            yield* timed(redis.eval(serverChange)(keys, id, now(), server, JSON.stringify(state)))
            if (pending.get(server) === state) pending.delete(server)
          }
          // A little back: a visit that read the clock before the walk and took the table after it is found next time.
          mark = { changes, seen: walked - 100 }
          trim(yield* clients.capacity)
          status.lastSync = now()
        })

      /** Takes in Redis's table and the operator's state of the servers. */
      const load = Effect.gen(function*() {
        const { byName } = names()
        const pins = pairsOf(yield* timed(redis.send("HGETALL", keys.sticky)))
          .flatMap(([client, value]) => {
            const pin = P.decodePin(client, value)
            return pin === undefined ? [] : [pin]
          })
          .toSorted((a, b) => a.seen - b.seen)
        const capacity = yield* clients.capacity
        // The most recent ones, oldest first: the table's least recently used end is where they belong.
        for (const pin of pins.slice(Math.max(0, pins.length - capacity))) yield* take(pin, byName)
        for (const [server, text] of pairsOf(yield* timed(redis.send("HGETALL", keys.servers)))) {
          const state = decodeState(text)
          if (state._tag === "Some") {
            const until = state.value.blacklistedUntil
            // A blacklist already over is not news.
            const live = until !== undefined && until > now()
              ? state.value
              : { ...state.value, blacklistedUntil: undefined }
            yield* applyServer(server, live)
          }
        }
        return pins.length
      })

      const beat = Effect.gen(function*() {
        const own: P.PeerBeat = {
          host: Os.hostname(),
          pid: process.pid,
          startedAt,
          at: now(),
          lastSync: status.lastSync,
          lagMs: status.lagMs,
          clients: yield* clients.size
        }
        yield* timed(redis.send("HSET", keys.peers, id, JSON.stringify(own)))
        const at = now()
        const peers: Array<PeerView> = []
        for (const [peer, text] of pairsOf(yield* timed(redis.send("HGETALL", keys.peers)))) {
          const decoded = decodeBeat(text)
          if (decoded._tag === "None") continue
          const b = decoded.value
          if (at - b.at > GONE_MILLIS) yield* timed(redis.send("HDEL", keys.peers, peer))
          if (at - b.at > LIVE_MILLIS) continue
          peers.push({
            id: peer,
            self: peer === id,
            host: b.host,
            pid: b.pid,
            startedAt: b.startedAt,
            lastBeat: b.at,
            lastSync: b.lastSync,
            lagMs: b.lagMs,
            clients: b.clients
          })
        }
        status.peers = peers.toSorted((a, b) => a.id.localeCompare(b.id))
      })

      const pruneOnce = Effect.gen(function*() {
        const capacity = yield* clients.capacity
        yield* timed(redis.eval(prune)(keys, now(), yield* trackingMillis(), capacity * KEEP_PER_SLOT))
      })

      yield* flush(true)
      const count = yield* load
      yield* beat
      // A session after a failed one ends an outage: that is worth a line; the first synchronization is not.
      const wasDown = status.syncErrors > 0
      status.up = true
      yield* (wasDown ? log : info)(`synchronized with ${shown} (key ${prefix}: ${count} clients in Redis)`)
      yield* Deferred.succeed(loaded, undefined)

      const receive = Effect.forever(
        Effect.flatMap(
          Queue.take(messages).pipe(Effect.mapError((error) => new SessionError({ reason: reasonOf(error) }))),
          (message) => apply(message.message)
        )
      )
      // Four loops that end only by failing: the first failure ends the session, and interrupts the others.
      return yield* Effect.all([
        receive,
        every(FLUSH_MILLIS, flush(false)),
        every(BEAT_MILLIS, beat),
        Effect.andThen(Effect.sleep(Duration.millis(PRUNE_MILLIS)), every(PRUNE_MILLIS, pruneOnce))
      ], { concurrency: "unbounded", discard: true }).pipe(
        Effect.andThen(Effect.fail(new SessionError({ reason: "the session ended" })))
      )
    }).pipe(Effect.scoped)

    // Sessions one after another, for as long as the scope lasts; a failed one is said once, then once a minute.
    let starting = true
    let lastLine = 0
    let reason = ""
    const supervise = Effect.gen(function*() {
      let backoff = 250
      for (;;) {
        const started = now()
        const exit = yield* Effect.exit(session)
        if (exit._tag === "Success") continue
        const error = exit.cause.reasons.find((r) => r._tag === "Fail")
        reason = error?._tag === "Fail" && error.error instanceof SessionError ? error.error.reason : "a defect"
        status.syncErrors++
        const at = now()
        // While nib starts, the line that says it serves without the table carries the reason.
        if (!starting && (status.up || at - lastLine >= LOG_EVERY_MILLIS)) {
          yield* log(
            status.up
              ? `${shown} unreachable (${reason}); serving from the local table, retrying`
              : `${shown} still unreachable (${reason}); serving from the local table`
          )
          lastLine = at
        }
        status.up = false
        // A session that lasted is a new outage: the backoff starts over.
        backoff = at - started > 10_000 ? 250 : Math.min(backoff * 2, 10_000)
        yield* Effect.sleep(Duration.millis(backoff + Math.floor(Math.random() * 100)))
      }
    })
    yield* Effect.forkScoped(supervise)

    // The table first: a peer that starts waits for it, a bounded time.
    const ready = yield* Deferred.await(loaded).pipe(
      Effect.as(true),
      Effect.timeoutOrElse({ duration: Duration.millis(LOAD_WAIT_MILLIS), orElse: () => Effect.succeed(false) })
    )
    starting = false
    if (!ready) {
      yield* log(
        `${shown} did not answer within ${LOAD_WAIT_MILLIS} ms${
          reason === "" ? "" : ` (${reason})`
        }; serving from the local table until it does`
      )
      lastLine = now()
    }

    const peersStatus = Effect.sync((): PeersStatus => ({
      url: shown,
      key: prefix,
      id,
      up: status.up,
      lastSync: status.lastSync,
      lagMs: status.lagMs,
      syncErrors: status.syncErrors,
      peers: status.peers
    }))
    yield* registerMetrics(status)
    const reapply = Effect.suspend(() =>
      Effect.forEach(shared, ([server, state]) => {
        const until = state.blacklistedUntil
        return applyServer(
          server,
          until !== undefined && until > now() ? state : { ...state, blacklistedUntil: undefined }
        )
      }, { discard: true })
    )
    return { status: peersStatus, reapply }
  })

/** `nib_peers_up`, `nib_peers`, `nib_peers_sync_errors_total` and `nib_peers_lag_seconds`, read when exported. */
const registerMetrics = (status: {
  readonly up: boolean
  readonly lagMs: number
  readonly syncErrors: number
  readonly peers: ReadonlyArray<PeerView>
}) =>
  Effect.gen(function*() {
    const context = yield* Effect.context<never>()
    const register = <S>(metric: Metric.Metric<number, S>, get: () => S) =>
      Metric.registerUnsafe(metric, context, { get, update: noop, modify: noop })
    const gauge = (name: string, description: string, read: () => number) =>
      register(Metric.gauge(name, { description }), () => ({ value: read() }))
    const registrations = [
      gauge(MetricNames.peersUp, "1 while this nib is connected to its peers' Redis and synchronized", () =>
        status.up ? 1 : 0),
      gauge(MetricNames.peers, "nibs live on the --peers key (this one included)", () =>
        status.peers.length),
      gauge(
        MetricNames.peersLagSeconds,
        "seconds between a peer's change and its application here (the last one)",
        () =>
          status.lagMs / 1000
      ),
      register(
        Metric.counter(MetricNames.peersSyncErrors, {
          description: "Redis connections or commands that failed",
          incremental: true
        }),
        () => ({
          count: status.syncErrors,
          incremental: true
        })
      )
    ]
    yield* Effect.addFinalizer(() => Effect.sync(() => registrations.forEach((r) => r.remove())))
  })
