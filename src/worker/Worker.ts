/**
 * The entry of a worker thread (`--workers N`): builds the worker's graph (layers/Worker.ts) from what the main thread
 * gave it, says it listens (or why it could not start), then answers the main thread's requests until told to stop,
 * when it closes its listener and every connection it serves, and ends.
 */
import { Cause, Context, Deferred, Effect, Exit, Layer, Logger, References, Scope } from "effect"
import { parentPort, workerData } from "node:worker_threads"
import { makeWorker } from "../../layers/Worker.ts"
import { Listener } from "../proxy/Listener.ts"
import * as Verbosity from "../services/Verbosity.ts"
import { Handover } from "../shared/Handover.ts"
import type { FromWorker, Request, WorkerInit } from "../shared/Messages.ts"
import { testHooks } from "../shared/Threads.ts"
import * as Agent from "./Agent.ts"

const init = workerData as WorkerInit
const port = parentPort!
const post = (message: FromWorker) => port.postMessage(message)
const level: Verbosity.Level = { debug: init.settings.debug }

const failureText = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

const program = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const built = yield* Effect.exit(Layer.buildWithScope(
    makeWorker(init, (client, server, bytes) => post({ _tag: "Chunk", client, server, bytes })),
    scope
  ))
  if (Exit.isFailure(built)) {
    post({ _tag: "StartFailed", message: failureText(built.cause) })
    return yield* Scope.close(scope, Exit.void)
  }
  const context = built.value
  const run = Effect.runForkWith(context)
  const done = yield* Deferred.make<void>()
  let stopping: Request | undefined
  port.on("message", (request: Request) => {
    if (request._tag === "Stop") {
      stopping = request
      return run(Deferred.succeed(done, undefined))
    }
    if (request._tag === "Crash") {
      // `workers crash N`: a defect thrown out of the event loop, as a bug would be.
      if (testHooks()) {
        setImmediate(() => {
          throw new Error(`test hook: worker ${init.worker} made to fail`)
        })
      }
      return
    }
    run(
      Agent.answer(request).pipe(
        Effect.match({
          onFailure: (error) => post({ _tag: "Failed", id: request.id, message: error.message }),
          onSuccess: (value) => post({ _tag: "Done", id: request.id, value })
        })
      )
    )
  })
  post({ _tag: "Listening", address: Context.get(context, Listener).address })
  yield* Deferred.await(done)
  // Closing the scope closes the listener and ends every connection fiber.
  yield* Scope.close(scope, Exit.void)
  if (stopping !== undefined) post({ _tag: "Done", id: stopping.id, value: undefined })
  port.close()
})

const fiber = Effect.runFork(
  program.pipe(
    // As the main thread logs: every level reaches the logger, which filters by `debug N`, on stderr (which a worker
    // thread's is piped to).
    Effect.provideService(Logger.LogToStderr, true),
    Effect.provideService(References.MinimumLogLevel, "All"),
    Effect.provideService(References.CurrentLoggers, new Set([Verbosity.logger(level)])),
    Effect.provideService(Verbosity.Verbosity, level),
    Effect.provideService(Handover, init.handover)
  )
)
fiber.addObserver((exit) => {
  // A defect in the worker's own start: the main thread hears of it by the thread's exit code and error.
  if (Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)) throw Cause.squash(exit.cause)
})
