/**
 * What the main thread and its worker threads say to each other, as structured-clone messages. None of it is on a
 * connection's path: the control plane asks and changes, a worker answers and (with `-l`) hands over its log lines.
 */
import type { Settings } from "../Config.ts"
import type { Endpoint } from "../domain/Address.ts"
import type { ConnectionInfo } from "../domain/Connection.ts"
import type { SettingChange } from "./Broadcast.ts"
import type { Inherited } from "./Handover.ts"
import type { Memory } from "./SharedState.ts"

/** What a worker thread is started with (`workerData`). @category models */
export interface WorkerInit {
  /** The configuration, with the listen address and limits as they are now. */
  readonly settings: Settings
  readonly memory: Memory
  /** This worker's number, 0..workers-1: its rows in the shared memory. */
  readonly worker: number
  /** The settings changed since start-up, last change of each first, applied before the worker listens. */
  readonly changes: ReadonlyArray<SettingChange>
  /** The listening sockets taken over in an upgrade (`Handover.none` otherwise, and for a worker started again). */
  readonly handover: Inherited
}

/** A request from the main thread; each is answered with a {@link Reply} of the same id. @category models */
export type Request =
  | { readonly _tag: "Change"; readonly id: number; readonly change: SettingChange }
  | { readonly _tag: "Connections"; readonly id: number }
  | { readonly _tag: "Close"; readonly id: number; readonly slot: number }
  /** A graceful stop: stop listening; live connections and clients waiting for a slot go on. */
  | { readonly _tag: "Drain"; readonly id: number }
  /** How many connections (UDP sessions) are open: served, or waiting for a slot. */
  | { readonly _tag: "Open"; readonly id: number }
  /** Answered (without a deadline) once the worker has drained and nothing is open on it any more. */
  | { readonly _tag: "Drained"; readonly id: number }
  | { readonly _tag: "Stop"; readonly id: number }
  /** Start serving the sockets taken over in an upgrade (`Listener.takeOver`). */
  | { readonly _tag: "TakeOver"; readonly id: number }
  /** The descriptors of the worker's listening sockets, to hand them over in an upgrade. */
  | { readonly _tag: "Descriptors"; readonly id: number }
  /** They were handed over: UDP stops reading them (`Listener.handOver`). */
  | { readonly _tag: "HandOver"; readonly id: number }
  /** The test hook of `workers crash N` (only with NIB_TEST_HOOKS=1): the worker fails with a defect. */
  | { readonly _tag: "Crash"; readonly id: number }

/** A worker's answer to request `id`: its value, or what went wrong. @category models */
export type Reply =
  | { readonly _tag: "Done"; readonly id: number; readonly value: ReplyValue }
  | { readonly _tag: "Failed"; readonly id: number; readonly message: string }

/**
/**
 * What a request answers: the bound address (Change Listen), the live connections, whether one was closed, how many
 * are open, the listening sockets' descriptors.
 */
export type ReplyValue = Endpoint | ReadonlyArray<ConnectionInfo> | boolean | number | ReadonlyArray<number> | undefined

/** What a worker says unasked. @category models */
export type Notice =
  /** It listens on `address` and serves. */
  | { readonly _tag: "Listening"; readonly address: Endpoint }
  /** It could not start: the reason, in one line. */
  | { readonly _tag: "StartFailed"; readonly message: string }
  /** A chunk for the request log (`-l`), which the main thread alone writes. */
  | { readonly _tag: "Chunk"; readonly client: string; readonly server: string; readonly bytes: Uint8Array }

/** Anything a worker posts. @category models */
export type FromWorker = Reply | Notice
