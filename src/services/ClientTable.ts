/**
 * pen's sticky client table as a service: whom nib has seen, and which server each client used last. Keyed by the
 * client's IP address (the port is ignored), `-c` slots with least-recently-used eviction, `-T` seconds of memory.
 * Live connections are not kept here (see the connection registry); this is memory, not state.
 */
import { Clock, Context, Effect, Layer, Option, Schedule } from "effect"
import { LbConfig } from "../Config.ts"
import * as StickyTable from "../domain/StickyTable.ts"

export type { ClientEntry } from "../domain/StickyTable.ts"

/** The key of clients without an address (Unix socket clients share one entry, as in pen). @category constants */
export const UNIX_CLIENT = "unix"

/** The sticky client table service. @category services */
export class ClientTable extends Context.Service<ClientTable, {
  /** Records a connection from `address` now and returns its entry (per-connection path). */
  readonly visitUnsafe: (address: string) => StickyTable.ClientEntry
  /** The entry of a remembered client. */
  readonly lookup: (address: string) => Effect.Effect<Option.Option<StickyTable.ClientEntry>>
  /** Remembered clients, most recent first. */
  readonly recent: Effect.Effect<ReadonlyArray<StickyTable.ClientEntry>>
  /** Remembered clients in table order, by slot (`StickyTable.inOrder`): pen's order for `recent` and the page. */
  readonly inOrder: Effect.Effect<ReadonlyArray<StickyTable.ClientEntry>>
  /** Slots in the table (`-c`, the `clients_max` command). */
  readonly capacity: Effect.Effect<number>
  readonly resize: (capacity: number) => Effect.Effect<void>
  /** Seconds a client is remembered, 0 = forever (`-T`, the `tracking` command). */
  readonly trackingSeconds: Effect.Effect<number>
  readonly setTrackingSeconds: (seconds: number) => Effect.Effect<void>
}>()("nib/services/ClientTable") {
  /** A table of `capacity` slots remembering clients for `trackingSeconds` (0 = forever). */
  static readonly make = (capacity: number, trackingSeconds: number) =>
    Effect.gen(function*() {
      const clock = yield* Clock.Clock
      const table = StickyTable.make(capacity, trackingSeconds * 1000)
      const now = () => clock.currentTimeMillisUnsafe()
      if (trackingSeconds > 0) {
        // Forgotten clients would keep their slots until evicted; sweeping frees them for `recent` and memory.
        yield* Effect.sync(() => StickyTable.sweep(table, now())).pipe(
          Effect.repeat(Schedule.spaced(`${trackingSeconds} seconds`)),
          Effect.forkScoped
        )
      }
      return ClientTable.of({
        visitUnsafe: (address) => StickyTable.visit(table, address, now()),
        lookup: (address) => Effect.sync(() => Option.fromUndefinedOr(StickyTable.lookup(table, address, now()))),
        recent: Effect.sync(() => StickyTable.recent(table, now())),
        inOrder: Effect.sync(() => StickyTable.inOrder(table, now())),
        capacity: Effect.sync(() => table.capacity),
        resize: (slots) => Effect.sync(() => StickyTable.resize(table, slots)),
        trackingSeconds: Effect.sync(() => table.trackingMillis / 1000),
        setTrackingSeconds: (seconds) =>
          Effect.sync(() => {
            table.trackingMillis = Math.max(0, seconds * 1000)
          })
      })
    })

  /** The table of the running configuration (`-c`, `-T`). */
  static readonly layer: Layer.Layer<ClientTable, never, LbConfig> = Layer.effect(
    ClientTable,
    Effect.gen(function*() {
      const config = yield* LbConfig
      return yield* ClientTable.make(config.clientsMax, config.trackingSeconds)
    })
  )

  /** A table with explicit size and tracking time, for tests. */
  static readonly layerTest = (options: { readonly capacity: number; readonly trackingSeconds?: number }) =>
    Layer.effect(ClientTable, ClientTable.make(options.capacity, options.trackingSeconds ?? 0))
}
