/**
 * A graceful stop (nginx's SIGQUIT): the listener of every thread closes, so new clients are refused (or reach another
 * process bound to the address with SO_REUSEPORT), and the connections already open may finish for up to `--grace`
 * seconds: those being relayed or dialed, and those accepted but waiting for a slot under `-x`, served as slots free
 * (UDP: the live sessions, until they go idle). Then the program stops, closing whatever is left. Health checks, the
 * control port and the admin endpoint go on meanwhile: only the listeners close.
 *
 * `Signals.ts` begins a drain on SIGQUIT; the old process of an upgrade begins one once the new process listens. The
 * drain's fiber runs in this layer's scope, so SIGTERM, SIGINT or the control port's `exit` during a drain stops at
 * once, as they do at any time.
 */
import { Console, Context, Deferred, Duration, Effect, Layer, Option } from "effect"
import { LbConfig } from "../Config.ts"
import { Listener } from "../proxy/Listener.ts"

/** How a drain ended. @category models */
export interface Outcome {
  /** Connections (UDP sessions) open when the listeners closed. */
  readonly open: number
  /** Those still open when the grace was over, closed as the program stops; 0 when every one had ended. */
  readonly left: number
}

/** The drain service. @category services */
export class Drain extends Context.Service<Drain, {
  /**
   * Begins the drain: closes the listeners, says in one line how many connections are open (`reason`, `SIGQUIT`,
   * opens it), and returns while they finish. Once: while a drain runs, or after it, this does nothing.
   */
  readonly begin: (reason: string) => Effect.Effect<void>
  /** Whether a drain has begun. */
  readonly draining: Effect.Effect<boolean>
  /** Completes once a drain has ended (every connection done, or the grace over): the program should stop now. */
  readonly finished: Effect.Effect<Outcome>
}>()("nib/control/Drain") {
  static readonly layer: Layer.Layer<Drain, never, LbConfig | Listener> = Layer.effect(
    Drain,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const listener = yield* Listener
      const scope = yield* Effect.scope
      const done = yield* Deferred.make<Outcome>()
      let begun = false
      const noun = config.udp ? "session" : "connection"
      const count = (n: number) => `${n} ${noun}${n === 1 ? "" : "s"}`

      // Every thread drained and nothing open. A worker thread restarted just as the drain began may be missed by
      // `drained`: the count is read again, and the wait repeated while something is open.
      const allDone: Effect.Effect<void> = Effect.gen(function*() {
        yield* listener.drained
        if ((yield* listener.open) > 0) yield* Effect.andThen(Effect.sleep(100), allDone)
      })

      /** Waits for the connections open when the listeners closed (`open` of them) to end, or for the grace. */
      const wait = (open: number) =>
        Effect.gen(function*() {
          const ended = yield* Effect.timeoutOption(allDone, Duration.seconds(config.graceSeconds))
          if (Option.isSome(ended)) {
            yield* Console.error(`nib: all ${noun}s done, exiting`)
            return { open, left: 0 }
          }
          const left = yield* listener.open
          yield* Console.error(`nib: grace over (${config.graceSeconds} s), closing ${count(left)}, exiting`)
          return { open, left }
        }).pipe(Effect.flatMap((outcome) => Deferred.succeed(done, outcome)))

      return Drain.of({
        begin: (reason) =>
          Effect.suspend(() => {
            if (begun) return Effect.void
            begun = true
            return Effect.gen(function*() {
              yield* listener.drain
              const open = yield* listener.open
              yield* Console.error(
                `nib: ${reason}: listeners closed, ${count(open)} open, waiting up to ${config.graceSeconds} s`
              )
              yield* Effect.forkIn(wait(open), scope)
            })
          }),
        draining: Effect.sync(() => begun),
        finished: Deferred.await(done)
      })
    }).pipe(Effect.annotateLogs({ service: "Drain" }))
  )
}
