/**
 * The balancer's counters (connections accepted, live, refused, failovers, ...) in memory that every thread sees: one
 * row per thread, each written by its own thread alone with plain adds (nothing atomic on the per-connection path), a
 * cache line apart so that threads never write one line, and summed by whoever reads them.
 */

/** The counters, in their order in a row. @category constants */
export const NAMES = [
  "accepted",
  "active",
  "refused",
  "failovers",
  "blacklistings",
  "localFailures",
  "healthTransitions",
  "idleClosed",
  "controlRefused"
] as const

/** One of the counters. @category models */
export type Counter = typeof NAMES[number]

/**
 * Figures a thread sets rather than adds to: its relay's buffers, owned and lent out, and its idle server connections
 * (`idlers`). @category constants
 */
export const GAUGES = ["relayBuffers", "relayBuffersInUse", "idlers"] as const

/** One of the gauges. @category models */
export type Gauge = typeof GAUGES[number]

/** Float64s per row: the counters and gauges, padded to 64-byte cache lines. */
const ROW = 16

const INDEX: Record<Counter | Gauge, number> = Object.fromEntries(
  [...NAMES, ...GAUGES].map((name, i) => [name, i])
) as Record<Counter | Gauge, number>

/** The buffer, as posted to a worker thread. @category models */
export interface Memory {
  readonly buffer: SharedArrayBuffer | ArrayBuffer
  readonly rows: number
}

/** Memory for `rows` threads, shared between threads or not. @category constructors */
export const allocate = (options: { readonly rows: number; readonly shared: boolean }): Memory => {
  const rows = Math.max(1, options.rows)
  const bytes = rows * ROW * 8
  return { buffer: options.shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes), rows }
}

/** One thread's handle: it adds to row `row`, and reads the sums of all rows. @category models */
export class Counters {
  private readonly values: Float64Array
  private readonly own: number
  readonly memory: Memory

  constructor(memory: Memory, row: number) {
    this.memory = memory
    this.values = new Float64Array(memory.buffer)
    this.own = Math.min(Math.max(0, row), memory.rows - 1) * ROW
  }

  /** Adds `delta` to `counter` in this thread's row. */
  add(counter: Counter, delta: number): void {
    this.values[this.own + INDEX[counter]] += delta
  }

  /** Sets `gauge` in this thread's row. */
  set(gauge: Gauge, value: number): void {
    this.values[this.own + INDEX[gauge]] = value
  }

  /** `counter` (or gauge) summed over every thread's row. */
  get(counter: Counter | Gauge): number {
    const values = this.values
    let total = 0
    for (let at = INDEX[counter]; at < values.length; at += ROW) total += values[at]!
    return total
  }

  /** `counter` in row `row` alone (one thread's share). */
  getRow(counter: Counter, row: number): number {
    return this.values[row * ROW + INDEX[counter]]!
  }

  /** Sets `counter` in row `row` to 0 (a worker that died: its live connections are gone); what it was. */
  clearRow(counter: Counter | Gauge, row: number): number {
    const at = row * ROW + INDEX[counter]
    const was = this.values[at]!
    this.values[at] = 0
    return was
  }

  /** Every counter (not the gauges), summed. */
  all(): Record<Counter, number> {
    return Object.fromEntries(NAMES.map((name) => [name, this.get(name)])) as Record<Counter, number>
  }
}
