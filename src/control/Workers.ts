/**
 * The worker threads of `--workers N`, seen from the main thread: it starts them, tells them every setting that
 * changes (the {@link Broadcast} of the main thread's services), asks them about their connections, and starts again
 * one that dies.
 *
 * The main thread serves too, as worker 0 (as haproxy's first thread does, besides the control plane); workers 1 to
 * N-1 are threads. Each binds the listen address itself with SO_REUSEPORT, and the kernel spreads the clients among
 * them: no connection passes between threads. The main thread binds first, so that a port 0 becomes one port the
 * worker threads bind too. The state connections change is in the shared memory (`SharedState`); what is sent here are settings, and each
 * command that changes one is answered once every worker has applied it.
 *
 * A worker that dies (a defect) is logged with its cause; the connections it served are gone, so its share of the
 * shared state (connections held on servers, connection numbers, its live count) is given back and counted, and it is
 * started again with the settings as they are now. The others serve on meanwhile, and the listen address stays bound
 * while one of them lives.
 */
import { Cause, Context, Effect, Exit, FiberSet, Layer, Scope } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import { LbConfig, type Settings } from "../Config.ts"
import type * as Address from "../domain/Address.ts"
import type { ConnectionInfo } from "../domain/Connection.ts"
import { Listener, ListenerError } from "../proxy/Listener.ts"
import type { TcpProxy } from "../proxy/TcpProxy.ts"
import type { UdpProxy } from "../proxy/UdpProxy.ts"
import { RequestLog } from "../services/RequestLog.ts"
import * as Admission from "../shared/Admission.ts"
import { keyOf, type SettingChange } from "../shared/Broadcast.ts"
import * as CounterMemory from "../shared/CounterMemory.ts"
import * as Handover from "../shared/Handover.ts"
import type { FromWorker, ReplyValue, Request, WorkerInit } from "../shared/Messages.ts"
import * as ServerMemory from "../shared/ServerMemory.ts"
import * as SessionBoard from "../shared/SessionBoard.ts"
import { placesFor, SharedState } from "../shared/SharedState.ts"
import * as SlotMemory from "../shared/SlotMemory.ts"
import * as StickyMemory from "../shared/StickyMemory.ts"
import type { WorkerStatus } from "../shared/Threads.ts"

/** A worker could not start (it could not bind the listen address, ...), or did not answer. @category errors */
export class WorkersError extends Error {
  readonly _tag = "WorkersError"
}

/** How long a worker has to start or to answer a request before it is taken for dead. @category constants */
export const ANSWER_MILLIS = 10_000

/** The workers service. @category services */
export class Workers extends Context.Service<Workers, {
  /** Every worker thread applies `change`; the Effect ends once each has (one that is starting gets it at start). */
  readonly send: (change: SettingChange) => Effect.Effect<void>
  /** Starts the worker threads on `address` (the main thread's, bound); fails if one cannot start. Once. */
  readonly start: (address: Address.Endpoint) => Effect.Effect<void, WorkersError>
  /** `listen ADDRESS`: every worker thread binds `endpoint` (the main thread's new address, bound). */
  readonly rebind: (endpoint: Address.Endpoint) => Effect.Effect<void, WorkersError>
  /** The worker threads' live connections, by slot. */
  readonly connections: Effect.Effect<ReadonlyArray<ConnectionInfo>>
  /** The thread serving connection `slot` (0: the main thread), or -1 when none does. */
  readonly ownerOf: (slot: number) => number
  /** Closes connection `slot` in the worker thread that serves it; false when none does. */
  readonly close: (slot: number) => Effect.Effect<boolean>
  /** Where the workers' request log chunks go (the main thread's RequestLog). */
  readonly setLogSink: (sink: (clientIp: string, serverIp: string, chunk: Buffer) => void) => void
  /** Each thread that serves, the main thread first. */
  readonly status: Effect.Effect<ReadonlyArray<WorkerStatus>>
  /** Stops every worker thread (its listener closed, its connections ended) and waits for them; once. */
  readonly stop: Effect.Effect<void>
  /**
   * A graceful stop: every worker thread stops listening, its live connections going on; a worker that dies from
   * then on is not started again (it would listen).
   */
  readonly drain: Effect.Effect<void>
  /** Connections open on the worker threads: served, or waiting for a slot (UDP: live sessions). */
  readonly open: Effect.Effect<number>
  /** Completes once every worker thread has drained and has nothing open (or has died). */
  readonly drained: Effect.Effect<void>
  /** The test hook of `workers crash N`: tells worker `worker` to fail (it does with NIB_TEST_HOOKS=1). */
  readonly crash: (worker: number) => Effect.Effect<boolean>
  /** Every worker thread starts serving the sockets it took over in an upgrade (`Listener.takeOver`). */
  readonly takeOver: Effect.Effect<void, WorkersError>
  /** The descriptors of the worker threads' listening sockets, worker 1 first. */
  readonly descriptors: Effect.Effect<ReadonlyArray<number>, WorkersError>
  /** The worker threads' listening sockets were handed over (`Listener.handOver`). */
  readonly handOver: Effect.Effect<void>
}>()("nib/control/Workers") {
  /** `config.workers` workers over the shared memory of `SharedState`, stopped (and waited for) with the scope. */
  static readonly layer: Layer.Layer<Workers, never, LbConfig | SharedState> = Layer.effect(
    Workers,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const shared = yield* SharedState
      const scope = yield* Effect.scope
      const handover = yield* Handover.Handover
      return yield* make(config, shared.memory, scope, handover)
    })
  )
}

/**
 * The worker thread's script: in the bundle (rolldown.config.ts), `worker.js` beside `nib.js`, this module being in
 * one of them or in a chunk under them; otherwise `src/worker/Worker` next to this module, compiled or not.
 */
const script = (): URL => {
  const candidates = [
    new URL("./worker.js", import.meta.url),
    new URL("../worker.js", import.meta.url),
    new URL(`../worker/Worker${Path.extname(fileURLToPath(import.meta.url))}`, import.meta.url)
  ]
  return candidates.find((url) => Fs.existsSync(url)) ?? candidates[2]!
}

const ignoreChunk = () => {}

interface Pending {
  readonly done: (reply: Exit.Exit<ReplyValue, WorkersError>) => void
}

/** One running worker thread. */
class Handle {
  readonly pending = new Map<number, Pending>()
  listening = false
  stopping = false
  constructor(readonly worker: number, readonly thread: Worker) {}
}

const make = Effect.fnUntraced(function*(
  config: Settings,
  memory: SharedState["Service"]["memory"],
  scope: Scope.Scope,
  handover: Handover.Inherited
) {
  const count = config.workers
  // Restarts run in the layer's scope: none outlives it.
  const run = yield* FiberSet.makeRuntime<never>()
  const servers = new ServerMemory.ServerState(memory.servers, 0)
  // The main thread's handles (it is worker 0): it reads every row, and gives back a dead worker's.
  const counters = new CounterMemory.Counters(memory.counters, 0)
  const slots = memory.slots === undefined ? undefined : new SlotMemory.SlotTable(memory.slots, 0)
  const board = memory.sessions === undefined ? undefined : new SessionBoard.SessionBoard(memory.sessions, 0)
  const admission = memory.admission === undefined ? undefined : new Int32Array(memory.admission)
  // The last change of each setting, in the order they were last changed: what a worker started later is told.
  const changes = new Map<string, SettingChange>()
  const handles: Array<Handle | undefined> = Array.from({ length: count }, () => undefined)
  const restarts = Array.from({ length: count }, () => 0)
  // When each worker last started listening, and how many times in a row it died soon after (the restart backoff).
  const startedAt = Array.from({ length: count }, () => 0)
  const quickDeaths = Array.from({ length: count }, () => 0)
  let address: Address.Endpoint = config.listen
  let started = false
  /** Worker thread numbers: 1 to count - 1 (0 is the main thread). */
  const threads = Array.from({ length: count - 1 }, (_, i) => i + 1)
  let closing = false
  // A graceful stop began: workers stop listening, and one that dies is not started again.
  let draining = false
  let nextId = 1
  let logSink: (clientIp: string, serverIp: string, chunk: Buffer) => void = ignoreChunk
  // The sockets taken over in an upgrade go to each worker's first start; one started again binds the address (its
  // share closed with the thread that died).
  const firstStart = Array.from({ length: count }, () => true)

  /** Asks `handle` and waits for its answer, at most `millis` (undefined: until it answers or exits). */
  const request = (
    handle: Handle,
    build: (id: number) => Request,
    millis: number | undefined = ANSWER_MILLIS
  ): Effect.Effect<ReplyValue, WorkersError> =>
    Effect.callback<ReplyValue, WorkersError>((resume) => {
      const id = nextId++
      const timer = millis === undefined ? undefined : setTimeout(() => {
        handle.pending.delete(id)
        resume(Effect.fail(new WorkersError(`worker ${handle.worker} did not answer within ${millis / 1000} s`)))
      }, millis)
      handle.pending.set(id, {
        done: (exit) => {
          clearTimeout(timer)
          resume(exit)
        }
      })
      handle.thread.postMessage(build(id))
      return Effect.sync(() => {
        clearTimeout(timer)
        handle.pending.delete(id)
      })
    })

  const live = () => handles.filter((h): h is Handle => h !== undefined && h.listening)

  /** The configuration a worker starts with: the listener's settings as they are now. */
  const settingsNow = (): Settings => {
    let settings: Settings = { ...config, listen: address }
    for (const change of changes.values()) {
      if (change._tag === "ConnectionsMax") settings = { ...settings, connectionsMax: change.n }
      if (change._tag === "IdleTimeout") settings = { ...settings, idleTimeoutSeconds: change.seconds }
    }
    return settings
  }

  /**
   * Worker `worker`'s share of the shared state, given back after it died: connections held on servers, connection
   * numbers, its places under `-x` and `pending_max` (TCP) or on the session board (UDP), its idle server connections
   * (`idlers`), and the sticky table's lock if it died holding it. The connections it served.
   */
  const reclaim = (worker: number) =>
    Effect.gen(function*() {
      servers.releaseAllOf(worker)
      slots?.releaseAllOf(worker)
      board?.releaseAllOf(worker)
      const closed = counters.clearRow("active", worker)
      counters.clearRow("idlers", worker)
      if (admission !== undefined) {
        Atomics.sub(admission, Admission.LIVE, Math.min(closed, Atomics.load(admission, Admission.LIVE)))
        Admission.reclaimDials(admission, worker)
        Admission.wake(admission)
      }
      if (StickyMemory.releaseLockOf(memory.clients, worker)) {
        const problems = StickyMemory.check(memory.clients)
        yield* Effect.logError(
          `worker ${worker} died holding the sticky table's lock: released; ` +
            (problems.length === 0 ? "the table is sound" : `the table has ${problems.length} problems: ${problems[0]}`)
        )
      }
      return closed
    })

  /** Starts worker `worker`; resolves once it listens, fails if it cannot start. */
  const spawn = (worker: number): Effect.Effect<void, WorkersError> =>
    Effect.callback<void, WorkersError>((resume) => {
      const init: WorkerInit = {
        settings: settingsNow(),
        memory,
        worker,
        changes: [...changes.values()].filter((c) => c._tag !== "Listen"),
        handover: firstStart[worker] ? { ...handover, control: undefined, admin: undefined } : Handover.none
      }
      firstStart[worker] = false
      const thread = new Worker(script(), { workerData: init, name: `nib worker ${worker}` })
      const handle = new Handle(worker, thread)
      handles[worker] = handle
      let settled = false
      const settle = (exit: Exit.Exit<void, WorkersError>) => {
        if (settled) return
        settled = true
        resume(exit)
      }
      let failure: string | undefined
      thread.on("message", (message: FromWorker) => {
        switch (message._tag) {
          case "Listening":
            handle.listening = true
            startedAt[worker] = Date.now()
            return settle(Exit.void)
          case "StartFailed":
            failure = message.message
            return settle(Exit.fail(new WorkersError(message.message)))
          case "Chunk":
            return logSink(message.client, message.server, Buffer.from(message.bytes.buffer, 0, message.bytes.length))
          case "Done":
            return handle.pending.get(message.id)?.done(Exit.succeed(message.value))
          case "Failed":
            return handle.pending.get(message.id)?.done(Exit.fail(new WorkersError(message.message)))
        }
      })
      thread.on("error", (error) => {
        // One line: the error's name and message (its stack is the worker's, at the debug level).
        failure = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
        if (error instanceof Error && error.stack !== undefined) {
          run(Effect.logDebug(`worker ${worker}: ${error.stack}`).pipe(Effect.annotateLogs({ service: "Workers" })))
        }
      })
      thread.on("exit", (code) => {
        if (handles[worker] === handle) handles[worker] = undefined
        for (const pending of handle.pending.values()) {
          pending.done(Exit.fail(new WorkersError(`worker ${worker} exited`)))
        }
        handle.pending.clear()
        if (!settled) return settle(Exit.fail(new WorkersError(failure ?? `worker ${worker} exited with code ${code}`)))
        if (handle.stopping || closing) return
        run(died(worker, code, failure))
      })
      return Effect.sync(() => {
        if (!settled) void thread.terminate()
      })
    })

  /** Worker `worker` died while serving: its cause logged, its share given back, and it is started again. */
  const died = (worker: number, code: number, cause: string | undefined) =>
    Effect.gen(function*() {
      const closed = yield* reclaim(worker)
      // A worker that dies within a minute of its start is started again later each time (at most 10 s later).
      quickDeaths[worker] = Date.now() - startedAt[worker]! < 60_000 ? quickDeaths[worker]! + 1 : 1
      // During a drain it is not started again: it would listen.
      const next = draining ? "not started again (draining)" : "starting it again"
      yield* Effect.logError(
        `worker ${worker} died (exit code ${code}${cause === undefined ? "" : `: ${cause}`}); ` +
          `${closed} connection${closed === 1 ? "" : "s"} closed; ${next}`
      )
      if (!draining) yield* restart(worker)
    }).pipe(Effect.annotateLogs({ service: "Workers" }))

  /**
   * Starts worker `worker` again: at once after a first failure, then less and less soon while it keeps failing (100
   * ms, 200 ms, ... at most 10 s), until it starts or the balancer stops.
   */
  const restart = (worker: number): Effect.Effect<void> =>
    Effect.gen(function*() {
      yield* Effect.sleep(quickDeaths[worker]! <= 1 ? 0 : Math.min(10_000, 100 * 2 ** (quickDeaths[worker]! - 2)))
      if (closing || draining) return
      restarts[worker]!++
      const exit = yield* Effect.exit(spawn(worker))
      // A drain that began while it started: it stops listening too.
      if (Exit.isSuccess(exit) && draining) return yield* drainOne(handles[worker])
      if (Exit.isFailure(exit)) {
        quickDeaths[worker]!++
        const error = Cause.squash(exit.cause)
        yield* Effect.logError(
          `worker ${worker} could not start again: ${error instanceof Error ? error.message : String(error)}`
        )
        return yield* restart(worker)
      }
    })

  const stop = (handle: Handle) =>
    Effect.gen(function*() {
      handle.stopping = true
      yield* Effect.ignore(Effect.timeout(request(handle, (id) => ({ _tag: "Stop", id })), 5_000))
      yield* Effect.promise(() => handle.thread.terminate())
    })

  const stopAll = Effect.suspend(() => {
    closing = true
    return Effect.forEach(handles.filter((h): h is Handle => h !== undefined && !h.stopping), stop, {
      concurrency: "unbounded",
      discard: true
    })
  })
  yield* Scope.addFinalizer(scope, stopAll)

  /** Worker `handle` stops listening (a worker that does not answer is logged; the drain goes on). */
  const drainOne = (handle: Handle | undefined): Effect.Effect<void> =>
    handle === undefined ? Effect.void : request(handle, (id) => ({ _tag: "Drain", id })).pipe(
      Effect.asVoid,
      Effect.catch((error) =>
        Effect.logWarning(`worker ${handle.worker}: drain: ${error.message}`).pipe(
          Effect.annotateLogs({ service: "Workers" })
        )
      )
    )

  const send = (change: SettingChange): Effect.Effect<void> =>
    Effect.suspend(() => {
      const key = keyOf(change)
      if (key !== undefined) {
        changes.delete(key)
        changes.set(key, change)
      }
      return Effect.forEach(live(), (handle) =>
        request(handle, (id) => ({ _tag: "Change", id, change })).pipe(
          Effect.catch((error) =>
            Effect.logWarning(`worker ${handle.worker}: ${change._tag}: ${error.message}`).pipe(
              Effect.annotateLogs({ service: "Workers" })
            )
          )
        ), { concurrency: "unbounded", discard: true })
    })

  return Workers.of({
    stop: stopAll,
    drain: Effect.suspend(() => {
      draining = true
      return Effect.forEach(live(), drainOne, { concurrency: "unbounded", discard: true })
    }),
    open: Effect.map(
      Effect.suspend(() =>
        Effect.forEach(live(), (handle) =>
          request(handle, (id) => ({ _tag: "Open", id })).pipe(
            Effect.map((value) => value as number),
            Effect.orElseSucceed(() => 0)
          ), { concurrency: "unbounded" })
      ),
      (counts) => counts.reduce((a, b) => a + b, 0)
    ),
    // A worker that exits meanwhile has nothing open any more: its request fails, and counts as drained.
    drained: Effect.suspend(() =>
      Effect.forEach(
        live(),
        (handle) => Effect.ignore(request(handle, (id) => ({ _tag: "Drained", id }), undefined)),
        { concurrency: "unbounded", discard: true }
      )
    ),
    send,
    start: (bound) =>
      Effect.suspend(() => {
        if (started) return Effect.void
        address = bound
        return Effect.forEach(threads, spawn, { concurrency: "unbounded", discard: true }).pipe(
          Effect.tap(() => Effect.sync(() => (started = true)))
        )
      }),
    rebind: (endpoint) =>
      Effect.suspend(() => {
        const change: SettingChange = { _tag: "Listen", endpoint }
        return Effect.forEach(live(), (handle) => request(handle, (id) => ({ _tag: "Change", id, change })), {
          concurrency: "unbounded",
          discard: true
        }).pipe(Effect.tap(() => Effect.sync(() => (address = endpoint))))
      }),
    connections: Effect.map(
      Effect.suspend(() =>
        Effect.forEach(live(), (handle) =>
          request(handle, (id) => ({ _tag: "Connections", id })).pipe(
            Effect.map((value) => value as ReadonlyArray<ConnectionInfo>),
            Effect.orElseSucceed((): ReadonlyArray<ConnectionInfo> => [])
          ), { concurrency: "unbounded" })
      ),
      (lists) => lists.flat().toSorted((a, b) => a.slot - b.slot)
    ),
    ownerOf: (slot) => slots?.owner(slot) ?? -1,
    close: (slot) =>
      Effect.suspend(() => {
        const owner = slots?.owner(slot) ?? -1
        const handle = owner > 0 ? handles[owner] : undefined
        if (handle === undefined) return Effect.succeed(false)
        return request(handle, (id) => ({ _tag: "Close", id, slot })).pipe(
          Effect.map((value) => value === true),
          Effect.orElseSucceed(() => false)
        )
      }),
    setLogSink: (sink) => {
      logSink = sink
    },
    crash: (worker) =>
      Effect.sync(() => {
        const handle = worker > 0 ? handles[worker] : undefined
        handle?.thread.postMessage({ _tag: "Crash", id: nextId++ } satisfies Request)
        return handle !== undefined
      }),
    takeOver: Effect.suspend(() =>
      Effect.forEach(live(), (handle) => request(handle, (id) => ({ _tag: "TakeOver", id })), {
        concurrency: "unbounded",
        discard: true
      })
    ),
    descriptors: Effect.map(
      Effect.suspend(() =>
        Effect.forEach(live(), (handle) => request(handle, (id) => ({ _tag: "Descriptors", id })), {
          concurrency: "unbounded"
        })
      ),
      (lists) => lists.flatMap((list) => list as ReadonlyArray<number>)
    ),
    handOver: Effect.suspend(() =>
      Effect.forEach(live(), (handle) => Effect.ignore(request(handle, (id) => ({ _tag: "HandOver", id }))), {
        concurrency: "unbounded",
        discard: true
      })
    ),
    status: Effect.sync(() =>
      Array.from({ length: count }, (_, worker) => {
        const handle = handles[worker]
        return {
          worker,
          // The main thread is Node's thread 0; a worker thread shows -1 until it listens.
          threadId: worker === 0 ? 0 : handle?.listening === true ? handle.thread.threadId : -1,
          active: counters.getRow("active", worker),
          restarts: restarts[worker]!
        }
      })
    )
  })
})

/**
 * The main thread's listener with workers: its own (it serves as worker 0), bound first, then the worker threads
 * started on the address it bound; it answers for all of them, so that the control port, the status page and the
 * admin API see one listener as before.
 * @category layers
 */
export const layerListener: Layer.Layer<
  Listener,
  ListenerError,
  Workers | LbConfig | SharedState | RequestLog | TcpProxy | UdpProxy
> = Layer.effect(
  Listener,
  Effect.gen(function*() {
    const workers = yield* Workers
    const log = yield* RequestLog
    const memory = (yield* SharedState).memory
    const counters = new CounterMemory.Counters(memory.counters, 0)
    const board = memory.sessions === undefined ? undefined : new SessionBoard.SessionBoard(memory.sessions, 0)
    const local = yield* Listener.make
    // Stopping (this finalizer runs before the main thread's own listener closes): no thread admits a waiting
    // client any more, then the worker threads stop, then the main thread's listener and connections close.
    const admission = memory.admission === undefined ? undefined : new Int32Array(memory.admission)
    yield* Effect.addFinalizer(() =>
      Effect.andThen(
        Effect.sync(() => admission !== undefined && Atomics.store(admission, Admission.STOPPED, 1)),
        workers.stop
      )
    )
    workers.setLogSink(log.chunkUnsafe)
    yield* workers.start(local.address).pipe(Effect.mapError((error) => new ListenerError({ message: error.message })))
    return Listener.of({
      get address() {
        return local.address
      },
      udp: local.udp,
      // The main thread binds first (a port 0 becomes a port), then every worker thread binds the same address.
      rebind: (endpoint) =>
        Effect.flatMap(local.rebind(endpoint), (bound) =>
          workers.rebind(bound).pipe(
            Effect.as(bound),
            Effect.mapError((error) => new ListenerError({ message: `worker threads: ${error.message}` }))
          )),
      active: Effect.sync(() => counters.get("active")),
      waiting: local.waiting,
      connectionsMax: local.connectionsMax,
      setConnectionsMax: (n) =>
        local.setConnectionsMax(n).pipe(
          Effect.tap(() => Effect.sync(() => board?.ensure(placesFor(n)))),
          Effect.andThen(workers.send({ _tag: "ConnectionsMax", n }))
        ),
      connections: Effect.map(
        Effect.all([local.connections, workers.connections], { concurrency: "unbounded" }),
        ([mine, theirs]) => [...mine, ...theirs].toSorted((a, b) => a.slot - b.slot)
      ),
      close: (slot) => workers.ownerOf(slot) === 0 ? local.close(slot) : workers.close(slot),
      idleTimeoutSeconds: local.idleTimeoutSeconds,
      setIdleTimeoutSeconds: (seconds) =>
        Effect.andThen(local.setIdleTimeoutSeconds(seconds), workers.send({ _tag: "IdleTimeout", seconds })),
      // The main thread's listener first, then every worker thread's; `rebind` is refused by the main's from then on.
      drain: Effect.andThen(local.drain, workers.drain),
      draining: local.draining,
      open: Effect.map(
        Effect.all([local.open, workers.open], { concurrency: "unbounded" }),
        ([mine, theirs]) => mine + theirs
      ),
      drained: Effect.all([local.drained, workers.drained], { concurrency: "unbounded", discard: true }),
      // The main thread's sockets first, then every worker thread's.
      takeOver: Effect.andThen(
        local.takeOver,
        workers.takeOver.pipe(
          Effect.mapError((error) => new ListenerError({ message: `worker threads: ${error.message}` }))
        )
      ),
      descriptors: Effect.zipWith(
        local.descriptors,
        workers.descriptors.pipe(
          Effect.mapError((error) => new ListenerError({ message: `worker threads: ${error.message}` }))
        ),
        (mine, theirs) => [...mine, ...theirs]
      ),
      handOver: Effect.andThen(local.handOver, workers.handOver)
    })
  })
)
