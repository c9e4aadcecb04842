/**
 * The servers: which exist (resolved at start-up, and when `server N address ...` changes one), their live state
 * (connections, blacklist deadlines, down, drained, slow start, byte counters) and which one a new connection tries
 * (pen's selection, from `domain/Selection.ts`). ServerPool never probes: health is written into it by HealthChecker
 * (`setDown`), which follows the changes `configure` makes (`changes`) to start, restart or stop each server's check.
 *
 * A server given by host name keeps the name in its spec (`ServerSpec.name`): with `--resolve-interval`, the main
 * thread resolves it again (`control/FollowDns.ts`) and a changed address comes in through `setResolved`, the same
 * path as `configure`'s (broadcast to the workers, published on `changes`), for new connections only.
 *
 * The live state, the roundrobin cursor and the selection flags are in memory every thread shares
 * (`shared/ServerMemory.ts`): with `--workers`, each thread's pool is a view of one set of servers. The settings
 * (address, limits, weight, prio, ACL, PROXY header, check) are each thread's copy: the main thread's `configure`
 * resolves and applies a change, and the worker threads `adopt` its result (`shared/Broadcast.ts`).
 *
 * The `*Unsafe` members are synchronous and meant for the per-connection path, which runs outside a fiber.
 */
import { Clock, Context, Effect, Layer, PubSub, Schema } from "effect"
import type { Scope } from "effect"
import { LbConfig } from "../Config.ts"
import * as Address from "../domain/Address.ts"
import * as Backend from "../domain/Backend.ts"
import * as HealthCheck from "../domain/HealthCheck.ts"
import type {
  ActionOrigin,
  PolicyFlag,
  PoolSnapshot,
  ServerAction,
  ServerChange,
  ServerStatus
} from "../domain/Pool.ts"
import * as Selection from "../domain/Selection.ts"
import * as ServerSpec from "../domain/ServerSpec.ts"
import * as Resolve from "../net/Resolve.ts"
import * as Socket from "../net/Socket.ts"
import { Broadcast, type BroadcastShape, type ServerSettings } from "../shared/Broadcast.ts"
import * as ServerMemory from "../shared/ServerMemory.ts"
import { SharedState } from "../shared/SharedState.ts"

export type {
  ActionOrigin,
  PolicyFlag,
  PoolSnapshot,
  ServerAction,
  ServerChange,
  ServerStatus
} from "../domain/Pool.ts"

/**
 * Who is changing servers in the current fiber: the control port and the admin API run their changes as the
 * `operator`, `--peers` applies a peer's as `peer`; anything else is the `configuration`. {@link ServerPool}'s
 * `actions` carry it, so that only the operator's changes are shared.
 *
 * @category references
 */
export const Origin = Context.Reference<ActionOrigin>("nib/services/ServerPool/Origin", {
  defaultValue: () => "configuration"
})

/** Index of the emergency server (`-e`), which never takes part in selection. @category constants */
export const EMERGENCY_SERVER = -2

/** Index of the abuse server (`-B`), where clients that `client_acl` denies go. @category constants */
export const ABUSE_SERVER = -3

/** A server that does not exist, or a name that does not resolve. @category errors */
export class ServerPoolError extends Schema.TaggedError<ServerPoolError>()("ServerPoolError", {
  message: Schema.String
}) {}

/** The pool's contents, for {@link ServerPool.make}; the policy defaults to pen's (all flags off). @category models */
export interface PoolOptions {
  readonly servers: ReadonlyArray<ServerSpec.ServerSpec>
  readonly emergency?: ServerSpec.ServerSpec | undefined
  readonly abuse?: ServerSpec.ServerSpec | undefined
  /** The PROXY protocol header every server gets (`--send-proxy`); `server N proxy` changes one server's. */
  readonly sendProxy?: Backend.ProxyHeader | undefined
  /** The active check every server gets (`--check`), slots added later too; `server N check` changes one server's. */
  readonly check?: HealthCheck.Check | undefined
  /** `--slow-start` in milliseconds: how long a server back up takes to reach its whole share of new clients. */
  readonly slowStartMs?: number | undefined
  /** How `server N address NAME` resolves a name: the system's resolver unless given (`--resolver`). */
  readonly lookup?: Resolve.Lookup | undefined
  /** Slow start's draws, uniform in [0, 1): `Math.random` unless given (tests pass their own). */
  readonly random?: (() => number) | undefined
  /** Sets the selection flags (the others off); without it they stay as the memory has them (all off when new). */
  readonly policy?: Partial<Omit<Selection.Policy, "hashMethod">> | undefined
  /** How `-h` hashes (`--hash-method`; pen's modulo unless given). Fixed at start, alike in every thread. */
  readonly hashMethod?: Selection.HashMethod | undefined
  /**
   * Where the servers' live state is kept: memory that worker threads share, seen from thread `worker` (the byte
   * counters it writes). Without it, the pool allocates memory of its own for one thread.
   */
  readonly memory?: { readonly memory: ServerMemory.Memory; readonly worker: number } | undefined
}

const defaultPolicy: Required<Omit<Selection.Policy, "hashMethod">> = {
  roundrobin: false,
  hash: false,
  weight: false,
  prio: false,
  stubborn: false
}

/** Why a server takes no connection: its own reason, no such server, or its slow start's draw. @category models */
export type Refusal = Backend.Refusal | "none" | "slow-start"

/** The server pool service. @category services */
export class ServerPool extends Context.Service<ServerPool, {
  /** The regular servers, by index (the control port can add slots, never remove them). */
  readonly backends: ReadonlyArray<Backend.Backend>
  /** The emergency server, if any. */
  readonly emergency: Backend.Backend | undefined
  /** The abuse server (`-B`), if any. */
  readonly abuse: Backend.Backend | undefined
  /** The selection flags now (the control port switches them). */
  readonly policy: Selection.Policy
  /** Switches a selection flag (`roundrobin`, `no hash`, ...). */
  readonly setFlag: (flag: PolicyFlag, on: boolean) => Effect.Effect<void>
  /**
   * pen's `server N ...`: applies the changes left to right, adding slots up to `index` when it is new. An `address`
   * that does not resolve fails and leaves the later changes unapplied (as in pen); a `port` on a slot with no address
   * yet is ignored (as in pen: give the address first).
   */
  readonly configure: (index: number, changes: ReadonlyArray<ServerChange>) => Effect.Effect<void, ServerPoolError>
  /**
   * The name server `index` (or {@link EMERGENCY_SERVER}, {@link ABUSE_SERVER}) was given resolves to `address` now
   * (`--resolve-interval`): new connections go there, live ones go on, and the change goes where `configure`'s go
   * (worker threads, `changes`). Nothing changes when the server has no longer that name (given another address
   * meanwhile). Whether the address changed.
   */
  readonly setResolved: (index: number, name: string, address: string) => Effect.Effect<boolean>
  /** The server (by index) a new connection tries first, given the client's sticky server. */
  readonly chooseUnsafe: (stickyServer: number, ip: string, port: number) => number
  /** What {@link chooseUnsafe} would answer now, leaving the roundrobin cursor where it is (`explain`). */
  readonly previewUnsafe: (stickyServer: number, ip: string, port: number) => number
  /**
   * Server `index`, the emergency server for {@link EMERGENCY_SERVER}, the abuse server for {@link ABUSE_SERVER};
   * undefined when there is none.
   */
  readonly backendUnsafe: (index: number) => Backend.Backend | undefined
  /** Whether server `index` (or {@link EMERGENCY_SERVER}) takes a connection now. */
  readonly admitsUnsafe: (index: number, sticky: boolean) => boolean
  /**
   * Why server `index` takes no connection now ({@link admitsUnsafe}'s answer, explained): "none" for no such server,
   * "slow-start" for a new client its slow start's draw sent on. Without `draw` (explain), no draw is made: a server
   * in its slow start takes the client (its share says how likely that is: {@link slowStartShareUnsafe}).
   */
  readonly refusalUnsafe: (index: number, sticky: boolean, draw: boolean) => Refusal | undefined
  /** The share of new clients server `index` takes now: below 1 during its slow start (`--slow-start`). */
  readonly slowStartShareUnsafe: (index: number) => number
  /**
   * Counts a connection to `index` as live if the server is under its limit (its hard limit for a `sticky` client):
   * one atomic step, so that threads never take more than the limit between them. Whether it was taken.
   */
  readonly tryAcquireUnsafe: (index: number, sticky: boolean) => boolean
  /** Ends a live connection to `index` (its bytes were counted as they moved). */
  readonly releaseUnsafe: (index: number) => void
  /** Counts bytes sent to server `index` and received from it (per-chunk path). */
  readonly countUnsafe: (index: number, sent: number, received: number) => void
  /** Blacklists `index` for `seconds` from now (0 lifts it). */
  readonly blacklistUnsafe: (index: number, seconds: number) => void
  /** How to connect to `index`. */
  readonly dialTarget: (index: number) => Socket.DialTarget
  /** Blacklists server `index` for `seconds` (0 lifts the blacklist). */
  readonly blacklist: (index: number, seconds: number) => Effect.Effect<void, ServerPoolError>
  /** Blacklists server `index` until `until` (milliseconds since the epoch; past or 0 lifts it): a peer's deadline. */
  readonly blacklistUntil: (index: number, until: number) => Effect.Effect<void, ServerPoolError>
  /**
   * Marks server `index` down or up by its active check (HealthChecker). Back up with `--slow-start`, its slow start
   * begins now.
   */
  readonly setDown: (index: number, down: boolean) => Effect.Effect<void>
  /** Drains server `index` (no new clients; its live connections go on), or takes it back. */
  readonly setDraining: (index: number, draining: boolean) => Effect.Effect<void>
  /**
   * The blacklists, drains and weight changes made from now on through {@link blacklist}, {@link setDraining} and
   * {@link configure}, each with its {@link Origin}: what `--peers` shares. Subscribed until the scope closes.
   */
  readonly actions: Effect.Effect<PubSub.Subscription<ServerAction>, never, Scope.Scope>
  /** The live state's memory, and the thread's view of it, as worker threads are given it. */
  readonly memory: ServerMemory.Memory
  /**
   * The servers `configure` changes from now on, by index, once per `configure` (even one that failed part way):
   * HealthChecker follows them to start, restart or stop checks. Subscribed until the scope closes.
   */
  readonly changes: Effect.Effect<PubSub.Subscription<number>, never, Scope.Scope>
  /**
   * A worker thread takes server `index`'s settings as the main thread's `configure` left them (the address resolved
   * there), adding slots up to it.
   */
  readonly adopt: (index: number, settings: ServerSettings) => Effect.Effect<void, ServerPoolError>
  /** The servers' state now. */
  readonly snapshot: Effect.Effect<PoolSnapshot>
}>()("nib/services/ServerPool") {
  /** Builds a pool over servers whose endpoints are already addresses. */
  static readonly make = (options: PoolOptions): Effect.Effect<ServerPool["Service"]> =>
    Effect.gen(function*() {
      const changes = yield* PubSub.unbounded<number>()
      const actions = yield* PubSub.unbounded<ServerAction>()
      const clock = yield* Clock.Clock
      const broadcast = yield* Broadcast
      const pool = makeWith(options, clock, changes, actions, broadcast)
      // Worker threads resolve nothing: they are told each server, resolved here (the emergency and abuse ones too).
      const all = [...pool.backends, ...(pool.emergency === undefined ? [] : [pool.emergency])]
      if (pool.abuse !== undefined) all.push(pool.abuse)
      yield* Effect.forEach(all, (b) => broadcast.send(serverChange(b)), { discard: true })
      return pool
    })

  /** The pool of the running configuration, host names resolved at start-up, its state in the shared memory. */
  static readonly layer: Layer.Layer<ServerPool, ServerPoolError, LbConfig | SharedState> = Layer.effect(
    ServerPool,
    Effect.suspend(() => fromConfig(true))
  )

  /**
   * A worker thread's pool: its servers (the emergency and abuse ones too) as the main thread announces them, resolved
   * there (`adopt`; the configuration's names are never looked up here), the selection flags as the shared memory has
   * them.
   */
  static readonly layerWorker: Layer.Layer<ServerPool, ServerPoolError, LbConfig | SharedState> = Layer.effect(
    ServerPool,
    Effect.suspend(() => fromConfig(false))
  )

  /** The `server N ...` changes that make a slot `spec` (address first, as pen requires). */
  static readonly specChanges = (spec: ServerSpec.ServerSpec): ReadonlyArray<ServerChange> => [
    spec.endpoint._tag === "Unix"
      ? { key: "address", value: spec.endpoint.path }
      : { key: "address", value: spec.name ?? spec.endpoint.host },
    ...(spec.endpoint._tag === "Tcp" ? [{ key: "port", value: spec.endpoint.port } as const] : []),
    { key: "max", value: spec.softLimit },
    { key: "hard", value: spec.hardLimit },
    { key: "weight", value: spec.weight },
    { key: "prio", value: spec.prio }
  ]

  /** A pool over the given servers (IP addresses or socket paths), independent of LbConfig. */
  static readonly layerTest = (options: PoolOptions): Layer.Layer<ServerPool> =>
    Layer.effect(ServerPool, ServerPool.make(options))
}

/** The pool of the configuration: in the main thread (`main`) its names resolved; a worker's is told them after. */
const fromConfig = (main: boolean) =>
  Effect.gen(function*() {
    const config = yield* LbConfig
    const shared = yield* SharedState
    const lookup = Resolve.lookupOf(config.resolver)
    const resolve = (spec: ServerSpec.ServerSpec) => main ? resolveSpec(spec, lookup) : Effect.succeed(spec)
    const servers = yield* Effect.forEach(config.servers, resolve)
    const emergency = config.emergency === undefined ? undefined : yield* resolve(config.emergency)
    const abuse = config.abuse === undefined ? undefined : yield* resolve(config.abuse)
    return yield* ServerPool.make({
      servers,
      emergency,
      abuse,
      lookup,
      sendProxy: config.sendProxy,
      check: config.check,
      slowStartMs: config.slowStartSeconds * 1000,
      hashMethod: config.hashMethod,
      memory: { memory: shared.memory.servers, worker: shared.worker },
      policy: main
        ? {
          roundrobin: config.roundrobin,
          hash: config.hash,
          weight: config.weight,
          prio: config.prio,
          stubborn: config.stubborn
        }
        : undefined
    })
  })

/** Server `b`'s settings, as worker threads are told them. */
const serverChange = (b: Backend.Backend) => ({
  _tag: "Server" as const,
  index: b.index,
  settings: { spec: b.spec, configured: b.configured, acl: b.acl, proxy: b.proxy, check: b.check }
})

/** The name an endpoint gives to be resolved (again): its host when that is not an address. */
const nameOf = (endpoint: Address.Endpoint): string | undefined =>
  endpoint._tag === "Tcp" && !Resolve.isAddress(endpoint.host) ? endpoint.host : undefined

const resolveSpec = (spec: ServerSpec.ServerSpec, lookup: Resolve.Lookup) =>
  Resolve.resolve(spec.endpoint, lookup).pipe(
    Effect.map((endpoint): ServerSpec.ServerSpec => ({ ...spec, endpoint, name: nameOf(spec.endpoint) })),
    Effect.mapError((error) => new ServerPoolError({ message: error.message }))
  )

const status = (b: Backend.Backend, now: number): ServerStatus => ({
  index: b.index,
  address: Address.format(b.spec.endpoint),
  name: b.spec.name,
  connections: b.connections,
  softLimit: b.spec.softLimit,
  hardLimit: b.spec.hardLimit,
  weight: b.spec.weight,
  prio: b.spec.prio,
  blacklistedUntil: b.blacklistedUntil,
  blacklisted: Backend.isBlacklisted(b, now),
  bytesSent: b.bytesSent,
  bytesReceived: b.bytesReceived,
  check: b.check === undefined ? undefined : HealthCheck.format(b.check),
  down: b.down,
  draining: b.draining
})

/**
 * A server's address as pen's `servers` and status page print it: the host or socket path, or, for a slot with no
 * address yet, pen's "(unknown address family 0" (its missing parenthesis included). @category formatting
 */
export const addressText = (b: Backend.Backend): string => {
  const endpoint = b.spec.endpoint
  if (!b.configured && endpoint._tag === "Tcp" && endpoint.port === 0) return "(unknown address family 0"
  return endpoint._tag === "Unix" ? endpoint.path : endpoint.host
}

/** A server's port as pen prints it: 1 for a Unix socket (what pen's conversion gives), 0 for an empty slot. */
export const portNumber = (b: Backend.Backend): number => b.spec.endpoint._tag === "Unix" ? 1 : b.spec.endpoint.port

/** The spec of a slot with no address: pen shows it as an unknown address family, and never connects to it. */
const UNCONFIGURED = ServerSpec.make(Address.tcp("0.0.0.0", 0))

/**
 * A server of the pool: its settings in fields of its own (each thread keeps its copy), its live state read from the
 * pool's memory, which every thread shares. @category models
 */
class Server implements Backend.Backend {
  configured = true
  acl = 0
  check: HealthCheck.Check | undefined = undefined
  /** The row of the pool's memory that holds this server's state. */
  readonly row: number

  constructor(
    readonly index: number,
    public spec: ServerSpec.ServerSpec,
    public proxy: Backend.ProxyHeader,
    private readonly state: ServerMemory.ServerState
  ) {
    this.row = ServerMemory.rowOf(index)
  }

  get connections(): number {
    return this.state.connections(this.row)
  }
  get blacklistedUntil(): number {
    return this.state.blacklistedUntil(this.row)
  }
  get bytesSent(): number {
    return this.state.sent(this.row)
  }
  get bytesReceived(): number {
    return this.state.received(this.row)
  }
  get down(): boolean {
    return this.state.down(this.row)
  }
  get upSince(): number {
    return this.state.upSince(this.row)
  }
  get draining(): boolean {
    return this.state.draining(this.row)
  }
}

const makeWith = (
  options: PoolOptions,
  clock: Clock.Clock,
  changes: PubSub.PubSub<number>,
  actions: PubSub.PubSub<ServerAction>,
  broadcast: BroadcastShape
): ServerPool["Service"] => {
  const proxy = options.sendProxy ?? "none"
  const check = options.check
  const slowStartMs = options.slowStartMs ?? 0
  const random = options.random ?? Math.random
  const lookup = options.lookup ?? Resolve.system
  const memory = options.memory?.memory ??
    ServerMemory.allocate({ rows: options.servers.length + 2, workers: 1, shared: false })
  const state = new ServerMemory.ServerState(memory, options.memory?.worker ?? 0)
  if (!state.ensure(options.servers.length + 2)) throw new RangeError(`at most ${ServerMemory.ROWS_MAX - 2} servers`)
  const regular = (index: number, spec: ServerSpec.ServerSpec) => {
    const b = new Server(index, spec, proxy, state)
    b.check = check
    return b
  }
  const backends = options.servers.map((spec, i) => regular(i, spec))
  const emergency = options.emergency === undefined
    ? undefined
    : new Server(EMERGENCY_SERVER, options.emergency, proxy, state)
  const targets = backends.map((b) => Socket.dialTarget(b.spec.endpoint))
  let emergencyTarget = emergency === undefined ? undefined : Socket.dialTarget(emergency.spec.endpoint)
  const abuse = options.abuse === undefined ? undefined : new Server(ABUSE_SERVER, options.abuse, proxy, state)
  let abuseTarget = abuse === undefined ? undefined : Socket.dialTarget(abuse.spec.endpoint)
  // The roundrobin cursor and the selection flags live in the shared memory too: every thread moves one cursor.
  const cursor: Selection.Cursor = {
    get last() {
      return state.cursor
    },
    set last(server: number) {
      state.cursor = server
    }
  }
  // The flags given set the memory's; a worker attaching to the memory gives none and takes them as they are.
  if (options.policy !== undefined) {
    const initial = { ...defaultPolicy, ...options.policy }
    for (const name of Object.keys(initial) as Array<PolicyFlag>) state.setFlag(ServerMemory.Flag[name], initial[name])
  }
  const policy: Selection.Policy = {
    hashMethod: options.hashMethod ?? "pen",
    get roundrobin() {
      return state.flag(ServerMemory.Flag.roundrobin)
    },
    get hash() {
      return state.flag(ServerMemory.Flag.hash)
    },
    get weight() {
      return state.flag(ServerMemory.Flag.weight)
    },
    get prio() {
      return state.flag(ServerMemory.Flag.prio)
    },
    get stubborn() {
      return state.flag(ServerMemory.Flag.stubborn)
    }
  }

  const get = (index: number): Server | undefined =>
    index >= 0 ? backends[index] : index === EMERGENCY_SERVER ? emergency : index === ABUSE_SERVER ? abuse : undefined

  const blacklistUnsafe = (index: number, seconds: number) => {
    const b = get(index)
    if (b !== undefined) {
      state.setBlacklistedUntil(b.row, seconds > 0 ? clock.currentTimeMillisUnsafe() + seconds * 1000 : 0)
    }
  }

  const setSpec = (b: Server, spec: ServerSpec.ServerSpec) => {
    const target = b.spec.endpoint === spec.endpoint ? undefined : Socket.dialTarget(spec.endpoint)
    b.spec = spec
    if (target === undefined) return
    if (b.index >= 0) targets[b.index] = target
    else if (b.index === EMERGENCY_SERVER) emergencyTarget = target
    else abuseTarget = target
  }

  const grow = (index: number): Effect.Effect<Server, ServerPoolError> =>
    Effect.suspend(() => {
      if (index < backends.length) return Effect.succeed(backends[index]!)
      if (!state.ensure(index + 3)) {
        return Effect.fail(
          new ServerPoolError({ message: `server ${index}: at most ${ServerMemory.ROWS_MAX - 2} servers` })
        )
      }
      while (backends.length <= index) {
        const b = regular(backends.length, UNCONFIGURED)
        b.configured = false
        backends.push(b)
        targets.push(Socket.dialTarget(UNCONFIGURED.endpoint))
      }
      return Effect.succeed(backends[index]!)
    })

  const setAddress = (b: Server, text: string) => {
    const endpoint = text.includes("/")
      ? Address.unix(text)
      : Address.tcp(text, b.configured && b.spec.endpoint._tag === "Tcp" ? b.spec.endpoint.port : 0)
    return Resolve.resolve(endpoint, lookup).pipe(
      Effect.mapError((error) => new ServerPoolError({ message: `server ${b.index}: ${error.message}` })),
      Effect.map((resolved) => {
        setSpec(b, { ...b.spec, endpoint: resolved, name: nameOf(endpoint) })
        // pen: 0.0.0.0 is how a slot is switched off.
        b.configured = !(resolved._tag === "Tcp" && resolved.host === "0.0.0.0")
      })
    )
  }

  const change = (b: Server, c: ServerChange): Effect.Effect<void, ServerPoolError> => {
    switch (c.key) {
      case "address":
        return setAddress(b, c.value)
      case "port":
        return Effect.sync(() => {
          if (b.configured && b.spec.endpoint._tag === "Tcp") {
            setSpec(b, { ...b.spec, endpoint: Address.tcp(b.spec.endpoint.host, c.value) })
          }
        })
      case "max":
        return Effect.sync(() => setSpec(b, { ...b.spec, softLimit: c.value }))
      case "hard":
        return Effect.sync(() => setSpec(b, { ...b.spec, hardLimit: c.value }))
      case "weight":
        return Effect.sync(() => setSpec(b, { ...b.spec, weight: c.value }))
      case "prio":
        return Effect.sync(() => setSpec(b, { ...b.spec, prio: c.value }))
      case "blacklist":
        return Effect.sync(() => blacklistUnsafe(b.index, c.value))
      case "acl":
        return Effect.sync(() => {
          b.acl = c.value
        })
      case "proxy":
        return Effect.sync(() => {
          b.proxy = c.value
        })
      case "check":
        return Effect.sync(() => {
          b.check = c.value
        })
    }
  }

  /** The operator's (or a peer's) blacklist of server `index` until `until`; one past, or 0, lifts it. */
  const blacklistUntil = (index: number, until: number): Effect.Effect<void, ServerPoolError> =>
    Effect.suspend(() => {
      const b = get(index)
      if (b === undefined) return Effect.fail(new ServerPoolError({ message: `no server ${index}` }))
      state.setBlacklistedUntil(b.row, until > clock.currentTimeMillisUnsafe() ? until : 0)
      return index >= 0 ? announce({ index, blacklistedUntil: b.blacklistedUntil }) : Effect.void
    })

  /** Tells `actions` of a change of server `index`'s shared state, with the fiber's {@link Origin}. */
  const announce = (action: Omit<ServerAction, "origin">): Effect.Effect<void> =>
    Effect.flatMap(Effect.service(Origin), (origin) => PubSub.publish(actions, { ...action, origin }))

  /** What a `server N ...` command changed of the state the peers share, if anything. */
  const announceChanges = (b: Server, list: ReadonlyArray<ServerChange>): Effect.Effect<void> => {
    let weight: number | undefined
    let blacklisted = false
    for (const c of list) {
      if (c.key === "weight") weight = c.value
      if (c.key === "blacklist") blacklisted = true
    }
    if (weight === undefined && !blacklisted) return Effect.void
    return announce({
      index: b.index,
      weight,
      blacklistedUntil: blacklisted ? b.blacklistedUntil : undefined
    })
  }

  /** Whether `b` is in its slow start at `now` (`--slow-start`, after its check brought it back up). */
  const starting = (b: Backend.Backend, now: number): boolean => b.upSince !== 0 && now - b.upSince < slowStartMs

  /**
   * A new client's draw for `b` in its slow start: taken with the server's share of new clients now. A server loses
   * a draw only when some other server is up, past its slow start and under its limit to take the client instead:
   * when every server is starting, or the others are full, it takes the client rather than see it refused.
   */
  const slowStartDraw = (b: Backend.Backend, now: number): boolean =>
    random() < HealthCheck.slowStartShare(now - b.upSince, slowStartMs) ||
    !backends.some((o) => o !== b && !starting(o, now) && Backend.admits(o, false, now))

  const refusal = (index: number, sticky: boolean, draw: boolean): Refusal | undefined => {
    const b = get(index)
    if (b === undefined) return "none"
    const now = clock.currentTimeMillisUnsafe()
    const refused = Backend.refusal(b, sticky, now)
    if (refused !== undefined) return refused
    // --slow-start: a new client may be sent on. Without it upSince stays 0, and this is one field test.
    return sticky || b.upSince === 0 || !draw || !starting(b, now) || slowStartDraw(b, now) ? undefined : "slow-start"
  }

  return ServerPool.of({
    backends,
    emergency,
    abuse,
    policy,
    setFlag: (name, on) => Effect.sync(() => state.setFlag(ServerMemory.Flag[name], on)),
    configure: (index, list) =>
      Effect.flatMap(grow(index), (b) =>
        Effect.forEach(list, (c) => change(b, c), { discard: true }).pipe(
          Effect.ensuring(
            Effect.andThen(Effect.suspend(() => broadcast.send(serverChange(b))), PubSub.publish(changes, index))
          ),
          Effect.andThen(Effect.suspend(() => announceChanges(b, list)))
        )),
    setResolved: (index, name, address) =>
      Effect.suspend(() => {
        const b = get(index)
        const endpoint = b?.spec.endpoint
        if (b === undefined || b.spec.name !== name || endpoint?._tag !== "Tcp" || endpoint.host === address) {
          return Effect.succeed(false)
        }
        setSpec(b, { ...b.spec, endpoint: Address.tcp(address, endpoint.port) })
        return Effect.as(
          Effect.andThen(broadcast.send(serverChange(b)), PubSub.publish(changes, index)),
          true
        )
      }),
    adopt: (index, settings) =>
      Effect.flatMap(index < 0 ? Effect.succeed(get(index)) : grow(index), (b) =>
        Effect.sync(() => {
          // (an emergency or abuse server this thread's configuration lacks: none, as the main thread's is the same)
          if (b === undefined) return
          setSpec(b, settings.spec)
          b.configured = settings.configured
          b.acl = settings.acl
          b.proxy = settings.proxy
          b.check = settings.check
        })),
    changes: PubSub.subscribe(changes),
    actions: PubSub.subscribe(actions),
    setDown: (index, down) =>
      Effect.sync(() => {
        const b = get(index)
        if (b === undefined || b.down === down) return
        state.setDown(b.row, down)
        if (!down && slowStartMs > 0) state.setUpSince(b.row, clock.currentTimeMillisUnsafe())
      }),
    setDraining: (index, draining) =>
      Effect.suspend(() => {
        const b = get(index)
        if (b === undefined) return Effect.void
        state.setDraining(b.row, draining)
        return index >= 0 ? announce({ index, draining }) : Effect.void
      }),
    memory,
    backendUnsafe: get,
    chooseUnsafe: (stickyServer, ip, port) =>
      Selection.initialServer(policy, backends, stickyServer, ip, port, cursor, clock.currentTimeMillisUnsafe()),
    previewUnsafe: (stickyServer, ip, port) =>
      Selection.initialServer(policy, backends, stickyServer, ip, port, { ...cursor }, clock.currentTimeMillisUnsafe()),
    admitsUnsafe: (index, sticky) => refusal(index, sticky, true) === undefined,
    refusalUnsafe: refusal,
    slowStartShareUnsafe: (index) => {
      const b = get(index)
      const now = clock.currentTimeMillisUnsafe()
      return b === undefined || !starting(b, now) ? 1 : HealthCheck.slowStartShare(now - b.upSince, slowStartMs)
    },
    tryAcquireUnsafe: (index, sticky) => {
      const b = get(index)!
      if (!state.tryAcquire(b.row, Backend.limit(b, sticky))) return false
      if (index >= 0) state.current = index
      return true
    },
    releaseUnsafe: (index) => state.release(ServerMemory.rowOf(index)),
    countUnsafe: (index, sent, received) => state.count(ServerMemory.rowOf(index), sent, received),
    blacklistUnsafe,
    dialTarget: (index) => index >= 0 ? targets[index]! : index === EMERGENCY_SERVER ? emergencyTarget! : abuseTarget!,
    blacklist: (index, seconds) =>
      Effect.suspend(() => blacklistUntil(index, seconds > 0 ? clock.currentTimeMillisUnsafe() + seconds * 1000 : 0)),
    blacklistUntil,
    snapshot: Effect.sync(() => {
      const now = clock.currentTimeMillisUnsafe()
      return {
        servers: backends.map((b) => status(b, now)),
        emergency: emergency === undefined ? undefined : status(emergency, now),
        current: state.current
      }
    })
  })
}
