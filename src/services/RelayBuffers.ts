/**
 * The buffers every relayed byte waits in between its read and the completion of its write (`net/BufferPool.ts`),
 * shared by all connections of a balancer. Its size is part of the balancer's statistics (StatsReporter).
 */
import { Context, Effect, Layer } from "effect"
import { BufferPool, type PoolStats } from "../net/BufferPool.ts"

/** The relay's buffer pool. @category services */
export class RelayBuffers extends Context.Service<RelayBuffers, {
  /** The pool itself, for the per-connection path (`Relay`). */
  readonly pool: BufferPool
  /** Buffers owned, lent out, and their bytes, now. */
  readonly stats: Effect.Effect<PoolStats>
}>()("nib/services/RelayBuffers") {
  /** A pool of 64 KiB buffers that keeps at most 256 free ones (16 MiB). */
  static readonly layer: Layer.Layer<RelayBuffers> = Layer.sync(RelayBuffers, () => make(new BufferPool()))
}

const make = (pool: BufferPool) => RelayBuffers.of({ pool, stats: Effect.sync(() => pool.stats()) })
