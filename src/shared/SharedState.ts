/**
 * The memory a balancer's threads share, and which part of it this thread writes: the servers' live state
 * (`ServerMemory`), the counters (`CounterMemory`), the sticky client table (`StickyMemory`) and pen's connection
 * numbers (`SlotMemory`). ServerPool and StatsReporter are built over it, so that with
 * worker threads every thread counts into one set of figures and takes connections against one set of limits.
 *
 * With one thread the memory is plain `ArrayBuffer`s; the main thread of a balancer with workers allocates
 * `SharedArrayBuffer`s and posts them to each worker, which attaches to them with {@link SharedState.layerAttach}.
 */
import { Context, Effect, Layer } from "effect"
import { LbConfig } from "../Config.ts"
import * as Admission from "./Admission.ts"
import * as CounterMemory from "./CounterMemory.ts"
import * as ServerMemory from "./ServerMemory.ts"
import * as SessionBoard from "./SessionBoard.ts"
import * as SlotMemory from "./SlotMemory.ts"
import * as StickyMemory from "./StickyMemory.ts"

/** Everything a worker thread is given, as posted in `workerData`. @category models */
export interface Memory {
  readonly servers: ServerMemory.Memory
  readonly counters: CounterMemory.Memory
  /** pen's sticky client table (`-c`, `-T`), one for all threads. */
  readonly clients: StickyMemory.Memory
  /** pen's connection numbers, one table for all workers; undefined with one thread (its proxy numbers its own). */
  readonly slots: SlotMemory.Memory | undefined
  /**
   * The live connections of all workers, counted against `-x` together, and their connects to servers in progress,
   * against `pending_max` (`Admission.ts`); undefined with one thread.
   */
  readonly admission: SharedArrayBuffer | undefined
  /** UDP sessions of all workers, bounded by `-x` together (`-U`); undefined with one thread. */
  readonly sessions: SessionBoard.Memory | undefined
  /** Threads that serve: the main thread and the worker threads. */
  readonly workers: number
}

/**
 * Memory for `workers` threads that serve (the main thread and `workers - 1` worker threads), one row of counters
 * each; shared when there are workers. @category constructors
 */
export const allocate = (options: {
  readonly workers: number
  readonly servers: number
  readonly connections: number
  readonly clientsMax: number
  readonly trackingSeconds: number
}): Memory => {
  const workers = Math.max(1, options.workers)
  const shared = workers > 1
  return {
    servers: ServerMemory.allocate({ rows: options.servers + 2, workers, shared }),
    counters: CounterMemory.allocate({ rows: workers, shared }),
    clients: StickyMemory.allocate({
      capacity: options.clientsMax,
      trackingMillis: options.trackingSeconds * 1000,
      workers,
      shared,
      capacityMax: Math.min(
        StickyMemory.CAPACITY_LIMIT,
        Math.max(StickyMemory.DEFAULT_CAPACITY_MAX, options.clientsMax)
      )
    }),
    slots: shared ? SlotMemory.allocate({ size: options.connections, shared }) : undefined,
    admission: shared ? Admission.allocate(workers) : undefined,
    sessions: shared ? SessionBoard.allocate({ places: placesFor(options.connections), workers }) : undefined,
    workers
  }
}

/**
 * Places on the UDP session board for `-x` sessions: room for the limit, and for the sessions asked to end that have
 * not yet. @category constructors
 */
export const placesFor = (connections: number): number => 2 * connections + 64

/** The shared memory and this thread's place in it. @category services */
export class SharedState extends Context.Service<SharedState, {
  readonly memory: Memory
  /** This thread's number, 0..workers-1 (the main thread is 0): the rows of the shared memory it writes. */
  readonly worker: number
}>()("nib/shared/SharedState") {
  /**
   * The memory of the running configuration, as the main thread (worker 0) sees it: shared for `--workers` above 1,
   * otherwise memory of its own.
   */
  static readonly layer: Layer.Layer<SharedState, never, LbConfig> = Layer.effect(
    SharedState,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const memory = allocate({
        workers: config.workers,
        servers: config.servers.length,
        connections: config.connectionsMax,
        clientsMax: config.clientsMax,
        trackingSeconds: config.trackingSeconds
      })
      return SharedState.of({ memory, worker: 0 })
    })
  )

  /** Memory of its own for one thread that serves, without a configuration (tests). */
  static readonly layerLocal: Layer.Layer<SharedState> = Layer.sync(
    SharedState,
    () =>
      SharedState.of({
        memory: allocate({ workers: 1, servers: 0, connections: 0, clientsMax: 2048, trackingSeconds: 0 }),
        worker: 0
      })
  )

  /** Worker `worker`'s view of the memory its main thread allocated. */
  static readonly layerAttach = (memory: Memory, worker: number): Layer.Layer<SharedState> =>
    Layer.succeed(SharedState, SharedState.of({ memory, worker }))
}
