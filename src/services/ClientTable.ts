/**
 * pen's sticky client table as a service: whom nib has seen, and which server each client used last. Keyed by the
 * client's IP address (the port is ignored), `-c` slots with least-recently-used eviction, `-T` seconds of memory.
 * Live connections are not kept here (see proxy/Slots.ts); this is memory, not state.
 *
 * The table lives in memory every thread of the balancer shares (`shared/StickyMemory.ts`, whose answers are
 * domain/StickyTable's): with `--workers`, one table for all of them. A connection holds a {@link ClientRef}, a
 * number, and reaches its client's entry through the `*Unsafe` members.
 */
import { Clock, Context, Effect, Layer, Option, Schedule } from "effect"
import type * as StickyTable from "../domain/StickyTable.ts"
import { SharedState } from "../shared/SharedState.ts"
import * as StickyMemory from "../shared/StickyMemory.ts"

export type { ClientEntry } from "../domain/StickyTable.ts"
export type { ClientRef } from "../shared/StickyMemory.ts"

/** The key of clients without an address (Unix socket clients share one entry, as in pen). @category constants */
export const UNIX_CLIENT = "unix"

/** The sticky client table service. @category services */
export class ClientTable extends Context.Service<ClientTable, {
  /** Records a connection from `address` now and returns its handle (per-connection path). */
  readonly visitUnsafe: (address: string) => StickyMemory.ClientRef
  /** The server the client last used, or NO_SERVER (also for a client since evicted or forgotten). */
  readonly serverUnsafe: (client: StickyMemory.ClientRef) => number
  /** Pins the client to `server` (a connection's attempt, a failover). */
  readonly pinUnsafe: (client: StickyMemory.ClientRef, server: number) => void
  /**
   * Pins a client that has no server yet to `server`, unless another connection of its pinned it first: the server it
   * is pinned to now. Simultaneous first connections of one client, on several threads, end on one server.
   */
  readonly claimUnsafe: (client: StickyMemory.ClientRef, server: number) => number
  /** Counts bytes sent to the client and received from it (per-chunk path). */
  readonly countUnsafe: (client: StickyMemory.ClientRef, toClient: number, fromClient: number) => void
  /** The entry of a remembered client. */
  readonly lookup: (address: string) => Effect.Effect<Option.Option<StickyTable.ClientEntry>>
  /** Remembered clients, most recent first. */
  readonly recent: Effect.Effect<ReadonlyArray<StickyTable.ClientEntry>>
  /** Remembered clients in table order, by slot (`StickyTable.inOrder`): pen's order for `recent` and the page. */
  readonly inOrder: Effect.Effect<ReadonlyArray<StickyTable.ClientEntry>>
  /**
   * Takes in the clients the nib this one replaces remembered (an upgrade), given least recently seen first, each in
   * its slot with its server, last visit, connects and bytes (`StickyMemory.restore`); how many were taken.
   */
  readonly restore: (entries: ReadonlyArray<StickyTable.ClientEntry>) => Effect.Effect<number>
  /** Slots in the table (`-c`, the `clients_max` command). */
  readonly capacity: Effect.Effect<number>
  /** Changes the number of slots; false (nothing changed) beyond the most the table was made for. */
  readonly resize: (capacity: number) => Effect.Effect<boolean>
  /**
   * What changed since a mark (`--peers`): how many times a client's server changed here up to now, and the clients
   * remembered whose server changed after change count `since`, or who were seen after `seenAfter` (milliseconds).
   */
  readonly changedSince: (
    since: number,
    seenAfter: number
  ) => Effect.Effect<{ readonly changes: number; readonly entries: ReadonlyArray<StickyTable.ClientEntry> }>
  /**
   * Takes in a client a peer pinned to `server` (`--peers`), with its last visit: no connection is counted, and the
   * change is not one of {@link changedSince}'s. Whether the table took it (not when it was forgotten already).
   */
  readonly adopt: (address: string, server: number, lastSeen: number) => Effect.Effect<boolean>
  /** The most slots `resize` can give the table. */
  readonly capacityMax: number
  /** Seconds a client is remembered, 0 = forever (`-T`, the `tracking` command). */
  readonly trackingSeconds: Effect.Effect<number>
  readonly setTrackingSeconds: (seconds: number) => Effect.Effect<void>
}>()("nib/services/ClientTable") {
  /**
   * The table over `memory`, as thread `worker` (its byte-counter row) sees it. With `sweep`, clients whose tracking
   * time ran out are dropped every `-T` seconds (one thread sweeps: the main one).
   */
  static readonly make = (memory: StickyMemory.Memory, worker: number, sweep: boolean) =>
    Effect.gen(function*() {
      const clock = yield* Clock.Clock
      const table = StickyMemory.attach(memory, worker)
      const now = () => clock.currentTimeMillisUnsafe()
      const trackingSeconds = table.trackingMillis / 1000
      if (sweep && trackingSeconds > 0) {
        // Forgotten clients would keep their slots until evicted; sweeping frees them for `recent` and memory.
        yield* Effect.sync(() => table.sweep(now())).pipe(
          Effect.repeat(Schedule.spaced(`${trackingSeconds} seconds`)),
          Effect.forkScoped
        )
      }
      return ClientTable.of({
        visitUnsafe: (address) => table.visit(keyOf(address), now()),
        serverUnsafe: (ref) => table.server(ref),
        pinUnsafe: (ref, server) => table.pin(ref, server),
        claimUnsafe: (ref, server) => table.claim(ref, server),
        countUnsafe: (ref, toClient, fromClient) => table.addBytes(ref, toClient, fromClient),
        lookup: (address) => Effect.sync(() => Option.fromUndefinedOr(table.lookup(keyOf(address), now()))),
        recent: Effect.sync(() => table.recent(now())),
        inOrder: Effect.sync(() => table.inOrder(now())),
        restore: (entries) => Effect.sync(() => table.restore(entries, now())),
        changedSince: (since, seenAfter) =>
          Effect.sync(() => {
            // The count first: a change made during the walk is found again next time, never lost.
            const changes = table.changes
            return { changes, entries: table.changedSince(since, seenAfter, now()) }
          }),
        adopt: (address, server, lastSeen) => Effect.sync(() => table.adopt(keyOf(address), server, lastSeen, now())),
        capacity: Effect.sync(() => table.capacity),
        capacityMax: table.capacityMax,
        resize: (slots) => Effect.sync(() => table.resize(Math.max(1, Math.floor(slots)))),
        trackingSeconds: Effect.sync(() => table.trackingMillis / 1000),
        setTrackingSeconds: (seconds) =>
          Effect.sync(() => {
            table.trackingMillis = Math.max(0, seconds * 1000)
          })
      })
    })

  /** The table of the running configuration (`-c`, `-T`), in the shared memory; this thread sweeps it. */
  static readonly layer: Layer.Layer<ClientTable, never, SharedState> = Layer.effect(
    ClientTable,
    Effect.gen(function*() {
      const shared = yield* SharedState
      return yield* ClientTable.make(shared.memory.clients, shared.worker, true)
    })
  )

  /** A worker thread's view of the shared table: the main thread sweeps it. */
  static readonly layerWorker: Layer.Layer<ClientTable, never, SharedState> = Layer.effect(
    ClientTable,
    Effect.gen(function*() {
      const shared = yield* SharedState
      return yield* ClientTable.make(shared.memory.clients, shared.worker, false)
    })
  )

  /** A table with explicit size and tracking time, for tests. */
  static readonly layerTest = (options: { readonly capacity: number; readonly trackingSeconds?: number }) =>
    Layer.effect(
      ClientTable,
      Effect.suspend(() =>
        ClientTable.make(
          StickyMemory.allocate({
            capacity: Math.max(1, Math.floor(options.capacity)),
            trackingMillis: (options.trackingSeconds ?? 0) * 1000,
            workers: 1,
            shared: false
          }),
          0,
          true
        )
      )
    )
}

/**
 * The table's key for a client address: the address itself (IPv4 or IPv6 text, `unix`); one longer than the table
 * keeps (no address Node reports is) is cut to its last characters.
 */
const keyOf = (address: string): string =>
  address.length <= StickyMemory.ADDRESS_MAX ? address : address.slice(-StickyMemory.ADDRESS_MAX)
