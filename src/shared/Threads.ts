/**
 * The threads that serve, as the control plane asks about them: nib's `workers` command (each worker, its live
 * connections and restarts) and, for tests, a worker made to fail. With one thread (no `--workers`) there is none to
 * list; the main thread of a balancer with workers provides its own (src/control/Workers.ts).
 */
import { Context, Effect } from "effect"

/** One worker thread, as `workers` lists it. @category models */
export interface WorkerStatus {
  readonly worker: number
  /** Its thread id; 0 until it listens (while it starts, or after it died). */
  readonly threadId: number
  /** Connections (UDP sessions) it serves now. */
  readonly active: number
  /** Times it died and was started again. */
  readonly restarts: number
}

/** The threads service. @category services */
export interface ThreadsShape {
  /** Each worker now; none with one thread. */
  readonly status: Effect.Effect<ReadonlyArray<WorkerStatus>>
  /**
   * A test hook: makes worker `worker` fail with a defect, as a bug would (only when nib runs with NIB_TEST_HOOKS=1).
   * Whether it was told.
   */
  readonly crash: (worker: number) => Effect.Effect<boolean>
}

/** The threads: none unless the main thread of a balancer with workers provides them. @category services */
export const Threads = Context.Reference<ThreadsShape>("nib/shared/Threads", {
  defaultValue: () => ({ status: Effect.succeed([]), crash: () => Effect.succeed(false) })
})

/** Whether the test hooks are on (NIB_TEST_HOOKS=1 in the environment). @category constants */
export const testHooks = (): boolean => process.env["NIB_TEST_HOOKS"] === "1"
