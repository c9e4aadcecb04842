/**
 * The buffers every relayed byte waits in between its read and the completion of its write (`net/BufferPool.ts`),
 * shared by all connections of a balancer. Its size is part of the balancer's statistics (StatsReporter).
 */
import { Context, Effect, Layer } from "effect"
import { BufferPool, DEFAULT_MAX_FREE } from "../net/BufferPool.ts"
import { Counters } from "../shared/CounterMemory.ts"
import { SharedState } from "../shared/SharedState.ts"

/** The relay's buffer pool. @category services */
export class RelayBuffers extends Context.Service<RelayBuffers, {
  /** The pool itself, for the per-connection path (`Relay`); its counters are read through StatsReporter. */
  readonly pool: BufferPool
}>()("nib/services/RelayBuffers") {
  /**
   * A pool of 64 KiB buffers that keeps at most 256 free ones (16 MiB), its size kept in this thread's row of the
   * shared counters (so that, with workers, the main thread reports every worker's).
   */
  static readonly layer: Layer.Layer<RelayBuffers, never, SharedState> = Layer.effect(
    RelayBuffers,
    Effect.gen(function*() {
      const shared = yield* SharedState
      const counters = new Counters(shared.memory.counters, shared.worker)
      return RelayBuffers.of({
        pool: new BufferPool(DEFAULT_MAX_FREE, (owned, lent) => {
          counters.set("relayBuffers", owned)
          counters.set("relayBuffersInUse", lent)
        })
      })
    })
  )
}
