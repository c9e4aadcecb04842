/**
 * The buffers every relayed byte waits in between its read and the completion of its write (`net/BufferPool.ts`),
 * shared by all connections of a balancer. Its size is part of the balancer's statistics (StatsReporter).
 */
import { Context, Layer } from "effect"
import { BufferPool } from "../net/BufferPool.ts"

/** The relay's buffer pool. @category services */
export class RelayBuffers extends Context.Service<RelayBuffers, {
  /** The pool itself, for the per-connection path (`Relay`); its counters are read through StatsReporter. */
  readonly pool: BufferPool
}>()("nib/services/RelayBuffers") {
  /** A pool of 64 KiB buffers that keeps at most 256 free ones (16 MiB). */
  static readonly layer: Layer.Layer<RelayBuffers> = Layer.sync(
    RelayBuffers,
    () => RelayBuffers.of({ pool: new BufferPool() })
  )
}
