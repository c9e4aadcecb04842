/**
 * Names that follow DNS (`--resolve-interval SEC`): every SEC seconds the main thread resolves again the host name of
 * each server that was given one (the emergency and abuse servers too), asking `--resolver`'s DNS server or the
 * system's resolver. A changed address reaches new connections through `ServerPool.setResolved`, the path of
 * `server N address ...` (the worker threads are told, an active check moves to the new address); live connections go
 * on. A name that stops resolving keeps its server's last address. Each change, and a name that stops or starts
 * resolving again, is logged once, in the words of `domain/Names.ts`.
 *
 * Never on a connection's path: one fiber in this layer's scope, in the main thread alone, and none with an interval
 * of 0 (pen's way: names resolved at start only).
 */
import { Effect, Layer } from "effect"
import type { Scope } from "effect"
import { LbConfig } from "../Config.ts"
import type { Backend } from "../domain/Backend.ts"
import * as Names from "../domain/Names.ts"
import * as Resolve from "../net/Resolve.ts"
import { ABUSE_SERVER, EMERGENCY_SERVER, ServerPool } from "../services/ServerPool.ts"

/** The longest one name's resolution may take before it counts as failed (the resolver's own timeouts are shorter). */
export const RESOLVE_TIMEOUT_MS = 10_000

/** How the log lines name a server. */
const label = (index: number) =>
  index === EMERGENCY_SERVER ? "emergency server" : index === ABUSE_SERVER ? "abuse server" : `server ${index}`

/** The servers that follow a name now, with that name. */
const named = (pool: ServerPool["Service"]) =>
  [...pool.backends, pool.emergency, pool.abuse].flatMap((b: Backend | undefined) =>
    b !== undefined && b.configured && b.spec.name !== undefined && b.spec.endpoint._tag === "Tcp"
      ? [{ index: b.index, name: b.spec.name }]
      : []
  )

/** One resolution of `name`, as `Names.step` takes it. */
const answer = (lookup: Resolve.Lookup, name: string): Effect.Effect<Names.Answer> =>
  lookup(name).pipe(
    Effect.timeoutOrElse({
      duration: RESOLVE_TIMEOUT_MS,
      orElse: () => Effect.fail(new Resolve.ResolveError({ host: name, cause: new Error("timed out") }))
    }),
    Effect.match({
      onFailure: (error): Names.Answer => ({ _tag: "Failed", reason: error.reason }),
      onSuccess: (addresses): Names.Answer => ({ _tag: "Addresses", addresses })
    })
  )

/**
 * Resolves the servers' names again every `intervalMs`, with `lookup`, for as long as the scope lasts (the first time
 * one interval from now: start-up has just resolved them).
 */
export const follow = (
  lookup: Resolve.Lookup,
  intervalMs: number
): Effect.Effect<void, never, ServerPool | Scope.Scope> =>
  Effect.gen(function*() {
    const pool = yield* ServerPool
    // The servers whose name failed at the last resolution, with that name (a server given another name starts over).
    const failing = new Map<number, string>()

    const round = Effect.gen(function*() {
      const servers = named(pool)
      const names = [...new Set(servers.map((s) => s.name))]
      const answers = new Map(
        yield* Effect.forEach(names, (name) => Effect.map(answer(lookup, name), (a) => [name, a] as const), {
          concurrency: "unbounded"
        })
      )
      for (const { index, name } of servers) {
        const b = pool.backendUnsafe(index)
        // Given another address while its name was being resolved: the new one stands.
        if (b === undefined || b.spec.name !== name || b.spec.endpoint._tag !== "Tcp") continue
        const next = Names.step(
          label(index),
          name,
          b.spec.endpoint.host,
          failing.get(index) === name,
          answers.get(name)!
        )
        if (next.failing) failing.set(index, name)
        else failing.delete(index)
        // (read just above, with nothing run in between: the server still has this name and its old address)
        if (next.address !== undefined) yield* pool.setResolved(index, name, next.address)
        for (const line of next.lines) {
          yield* Effect.logWarning(line).pipe(Effect.annotateLogs({ service: "FollowDns", server: index }))
        }
      }
    })

    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(intervalMs), round)))
  })

/** `--resolve-interval` (nothing runs when it is 0), asking `--resolver`'s DNS server or the system's resolver. */
export const layer: Layer.Layer<never, never, LbConfig | ServerPool> = Layer.effectDiscard(
  Effect.gen(function*() {
    const config = yield* LbConfig
    if (config.resolveIntervalSeconds <= 0) return
    yield* follow(Resolve.lookupOf(config.resolver), config.resolveIntervalSeconds * 1000)
  })
)
