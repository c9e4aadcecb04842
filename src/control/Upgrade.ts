/**
 * An upgrade that drops no client (SIGUSR2, nginx's binary-upgrade signal; pen aborts on it). The nib running (the old
 * one) starts a new nib from the same executable, script and arguments, so that a version installed at that path
 * takes over, and hands it its listening sockets as descriptors (the `stdio` of `child_process.spawn`): every thread's
 * socket of the listen address (with `--workers`, each SO_REUSEPORT socket: the kernel resets what waits in the queue
 * of one that is closed), the control port's and the admin endpoint's. Nothing is bound again, so a client waiting in
 * an accept queue is never refused or reset: the queue passes to the new nib with its socket.
 *
 * The two talk over the IPC channel of `spawn`, each message decoded with the schemas of `shared/Handover.ts`:
 *
 * 1. old -> new `Offer`: the descriptors and the address they are bound to. The new nib builds its balancer over them
 *    (its listeners do not accept yet: clients wait in the kernel's queues, and the old nib still serves them), runs
 *    `-O` and `-F` as at any start, then
 * 2. new -> old `Ask`, old -> new `State`: the sticky table (client, server, last visit, in LRU order) and each server's
 *    blacklist deadline and drain. The new nib takes them in, writes the pid file (`-p`), starts accepting on every
 *    thread, and
 * 3. new -> old `Ready` (the new nib prints its start-up line). The old nib says so (`nib: SIGUSR2: pid N took over
 *    ADDR`), stops reading its UDP sockets (`Listener.handOver`), and stops accepting and drains, as on SIGQUIT
 *    (`Drain.ts`): its open connections finish, for up to `--grace` seconds, then it ends.
 *
 * If the new nib fails (it says `Failed`, with its error; it exits; it is not ready within {@link READY_MILLIS}), the
 * old one logs why in one line, stops it, writes its own pid file again, and serves on: nothing changed.
 *
 * Without `-f` the new nib is started detached with its stdio closed, as the daemon's child is (`Daemon.detach`); with
 * `-f` it shares the old one's stdin, stdout and stderr.
 */
import { Cause, Clock, Console, Context, Effect, Exit, Layer, Queue, Schema } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { LbConfig } from "../Config.ts"
import * as Address from "../domain/Address.ts"
import { Listener } from "../proxy/Listener.ts"
import { ClientTable } from "../services/ClientTable.ts"
import * as ServerPool from "../services/ServerPool.ts"
import * as Handover from "../shared/Handover.ts"
import { ControlPort } from "./ControlPort.ts"
import { Drain } from "./Drain.ts"

/** How long the new nib has to say it serves, from its start. @category constants */
export const READY_MILLIS = 30_000

/** How long the new nib waits for each answer of the old one. @category constants */
export const ANSWER_MILLIS = 10_000

/** How to start a new nib: the executable and its arguments (`undefined`: upgrades are off). @category models */
export interface Launch {
  readonly executable: string
  readonly args: ReadonlyArray<string>
}

/**
 * How this process starts the nib that replaces it: the CLI provides its own command line (the same executable,
 * Node options, script and arguments). Without it (nib embedded in another program) SIGUSR2 only says that upgrades
 * are the CLI's. @category services
 */
export const Command = Context.Reference<Launch | undefined>("nib/control/Upgrade/Command", {
  defaultValue: () => undefined
})

/** This process's own command line, for {@link Command}. @category constructors */
export const ownCommand = (): Launch => ({
  executable: process.execPath,
  args: [...process.execArgv, ...process.argv.slice(1)]
})

/** The upgrade did not happen: why, in one line. @category errors */
export class UpgradeError extends Schema.TaggedError<UpgradeError>()("UpgradeError", {
  message: Schema.String
}) {}

type Offer = typeof Handover.Offer.Type
type State = typeof Handover.State.Type

/** The upgrade service: the old nib's side. @category services */
export class Upgrade extends Context.Service<Upgrade, {
  /**
   * SIGUSR2: starts the new nib and hands it over the sockets and the state; once it serves, this one stops accepting
   * and drains (`Drain`), then ends. A failure is logged, and this nib serves on. One upgrade at a time; none once a
   * drain has begun.
   */
  readonly start: Effect.Effect<void>
}>()("nib/control/Upgrade") {
  /**
   * The upgrade of this balancer; `admin` is the admin endpoint's socket: its descriptor, and how it stops listening once
   * handed over (admin/ is not imported from here).
   */
  static readonly layer = (
    admin: { readonly descriptor: () => number | undefined; readonly handOver: Effect.Effect<void> }
  ): Layer.Layer<Upgrade, never, LbConfig | Listener | ClientTable | ServerPool.ServerPool | ControlPort | Drain> =>
    Layer.effect(
      Upgrade,
      Effect.gen(function*() {
        const config = yield* LbConfig
        const listener = yield* Listener
        const clients = yield* ClientTable
        const pool = yield* ServerPool.ServerPool
        const control = yield* ControlPort
        const drain = yield* Drain
        const launch = yield* Command
        let busy = false

        const snapshot: Effect.Effect<State> = Effect.gen(function*() {
          const remembered = yield* clients.recent
          const servers = yield* pool.snapshot
          const saved = [...servers.servers, ...(servers.emergency === undefined ? [] : [servers.emergency])]
          return {
            _tag: "State" as const,
            clients: remembered.toReversed(),
            servers: saved.map((s) => ({
              index: s.index,
              address: s.address,
              blacklistedUntil: s.blacklistedUntil,
              draining: s.draining
            }))
          }
        })

        const attempt = (command: Launch) =>
          Effect.gen(function*() {
            const listen = yield* listener.descriptors.pipe(
              Effect.mapError((error) => new UpgradeError({ message: `listening sockets: ${error.message}` }))
            )
            if (listen.length === 0 || listen.some((fd) => fd < 0)) {
              return yield* new UpgradeError({ message: "the listening sockets' descriptors are not known" })
            }
            return yield* handOver(config, command, {
              listen,
              address: listener.address,
              control: control.descriptor(),
              admin: admin.descriptor()
            }, snapshot)
          })

        const start = Effect.gen(function*() {
          if (launch === undefined) {
            return yield* Effect.logWarning("SIGUSR2: no upgrade: nib runs embedded (upgrades are the nib command's)")
          }
          if (yield* drain.draining) return yield* Effect.logWarning("SIGUSR2: nib is stopping (draining): no upgrade")
          if (busy) return yield* Effect.logWarning("SIGUSR2: an upgrade is under way already; this one is ignored")
          busy = true
          const exit = yield* Effect.exit(attempt(launch))
          if (Exit.isSuccess(exit)) {
            yield* Console.error(`nib: SIGUSR2: pid ${exit.value} took over ${Address.format(listener.address)}`)
            // The control port and the admin endpoint are the new nib's alone; UDP: no datagram is read here any more
            // (the live sessions still reply); then the graceful stop.
            yield* control.handOver
            yield* admin.handOver
            yield* listener.handOver
            return yield* drain.begin("SIGUSR2")
          }
          busy = false
          // The new nib may have written the pid file before it failed: it names this one again.
          if (config.pidFile !== undefined) yield* Effect.ignore(writePid(config.pidFile))
          const error = Cause.squash(exit.cause)
          yield* Effect.logError(
            `SIGUSR2: upgrade failed: ${error instanceof UpgradeError ? error.message : describe(error)}; ` +
              `pid ${process.pid} serves on`
          )
        }).pipe(Effect.annotateLogs({ service: "Upgrade" }))

        return Upgrade.of({ start })
      })
    )
}

const writePid = (path: string) => Effect.try(() => Fs.writeFileSync(path, String(process.pid)))

/** What the old nib hands over: descriptors in this process, and the address the listen sockets are bound to. */
interface Sockets {
  readonly listen: ReadonlyArray<number>
  readonly address: Address.Endpoint
  readonly control: number | undefined
  readonly admin: number | undefined
}

type Event =
  | { readonly _tag: "Message"; readonly message: unknown }
  | { readonly _tag: "Exit"; readonly code: number | null; readonly signal: NodeJS.Signals | null }
  | { readonly _tag: "Error"; readonly error: Error }

const decodeFromNew = Schema.decodeUnknownExit(Handover.FromNew)

/** The new nib's descriptor of the `i`th socket passed: after stdin, stdout, stderr and the IPC channel. */
const at = (i: number) => 4 + i

/**
 * Starts the new nib with the sockets, answers its `Ask` with `state`, and succeeds with its pid once it is `Ready`;
 * fails with the reason otherwise, the new nib stopped.
 */
const handOver = (config: LbConfig["Service"], launch: Launch, sockets: Sockets, state: Effect.Effect<State>) =>
  Effect.scoped(Effect.gen(function*() {
    // The descriptors the new nib gets: stdin, stdout, stderr and the IPC channel first, then the sockets in order.
    const passed = [
      ...sockets.listen,
      ...(sockets.control === undefined ? [] : [sockets.control]),
      ...(sockets.admin === undefined ? [] : [sockets.admin])
    ]
    const offer: Offer = {
      _tag: "Offer",
      pid: process.pid,
      listen: sockets.listen.map((_, i) => at(i)),
      address: sockets.address,
      control: sockets.control === undefined ? undefined : at(sockets.listen.length),
      admin: sockets.admin === undefined
        ? undefined
        : at(sockets.listen.length + (sockets.control === undefined ? 0 : 1))
    }
    const events = yield* Queue.unbounded<Event>()
    const std = config.foreground ? "inherit" : "ignore"
    let ready = false
    const child = yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          ChildProcess.spawn(launch.executable, launch.args, {
            stdio: [std, std, std, "ipc", ...passed],
            detached: !config.foreground,
            env: { ...process.env, [Handover.UPGRADE_ENV]: String(process.pid) }
          }),
        catch: (error) => new UpgradeError({ message: `cannot start ${launch.executable}: ${describe(error)}` })
      }).pipe(Effect.tap((spawned) =>
        Effect.sync(() => {
          spawned.on("message", (message: unknown) => Queue.offerUnsafe(events, { _tag: "Message", message }))
          spawned.on("exit", (code, signal) => Queue.offerUnsafe(events, { _tag: "Exit", code, signal }))
          spawned.on("error", (error) => Queue.offerUnsafe(events, { _tag: "Error", error }))
        })
      )),
      (spawned) =>
        Effect.sync(() => {
          spawned.removeAllListeners()
          if (spawned.connected) spawned.disconnect()
          // A new nib that failed or hung is stopped: it must not keep the sockets (nor accept on them).
          if (!ready && spawned.exitCode === null && spawned.signalCode === null) spawned.kill("SIGKILL")
          spawned.unref()
        })
    )
    child.send(offer)
    let said: string | undefined
    const converse: Effect.Effect<number, UpgradeError> = Effect.gen(function*() {
      while (true) {
        const event = yield* Queue.take(events)
        switch (event._tag) {
          case "Error":
            return yield* new UpgradeError({ message: `the new nib: ${event.error.message}` })
          case "Exit": {
            const how = event.code === null ? `was killed (${event.signal})` : `exited with code ${event.code}`
            return yield* new UpgradeError({ message: said ?? `the new nib ${how} before it was ready` })
          }
          case "Message": {
            const decoded = decodeFromNew(event.message)
            if (Exit.isFailure(decoded)) {
              return yield* new UpgradeError({ message: "the new nib said something that is not nib's" })
            }
            const message = decoded.value
            switch (message._tag) {
              case "Ask":
                child.send(yield* state)
                break
              case "Ready":
                ready = true
                return message.pid
              case "Failed":
                // Its exit follows; its own words are the reason.
                said = message.message
                break
            }
          }
        }
      }
    })
    return yield* converse.pipe(
      Effect.timeoutOrElse({
        duration: READY_MILLIS,
        orElse: () =>
          Effect.fail(
            new UpgradeError({
              message: said ?? `the new nib did not say it was ready within ${READY_MILLIS / 1000} s`
            })
          )
      })
    )
  }))

const describe = (error: unknown) => (error instanceof Error ? error.message : String(error))

// The new nib's side.

/** The first message of the old nib, within {@link ANSWER_MILLIS}. */
const receive = <A>(what: string, decode: (message: unknown) => Exit.Exit<A, unknown>) =>
  Effect.callback<A, UpgradeError>((resume) => {
    const done = (effect: Effect.Effect<A, UpgradeError>) => {
      cleanup()
      resume(effect)
    }
    const onMessage = (message: unknown) => {
      const decoded = decode(message)
      done(
        Exit.isSuccess(decoded)
          ? Effect.succeed(decoded.value)
          : Effect.fail(new UpgradeError({ message: `the old nib's ${what} is not one` }))
      )
    }
    const onDisconnect = () => done(Effect.fail(new UpgradeError({ message: `the old nib went before its ${what}` })))
    const timer = setTimeout(
      () => done(Effect.fail(new UpgradeError({ message: `no ${what} from the old nib within ${ANSWER_MILLIS} ms` }))),
      ANSWER_MILLIS
    )
    const cleanup = () => {
      clearTimeout(timer)
      process.off("message", onMessage)
      process.off("disconnect", onDisconnect)
    }
    process.on("message", onMessage)
    process.once("disconnect", onDisconnect)
    return Effect.sync(cleanup)
  })

const decodeOffer = Schema.decodeUnknownExit(Handover.Offer)
const decodeState = Schema.decodeUnknownExit(Handover.State)

/** The new nib: the old one's offer of its sockets, as this process's `Handover`. */
export const receiveOffer: Effect.Effect<Handover.Inherited & { readonly pid: number }, UpgradeError> = Effect.map(
  receive("offer", decodeOffer),
  (offer) => ({
    pid: offer.pid,
    listen: offer.listen,
    address: offer.address,
    control: offer.control,
    admin: offer.admin
  })
)

/** The new nib, configured: asks the old one for its state and takes it in (sticky table, servers' state). */
export const takeState: Effect.Effect<
  { readonly clients: number; readonly servers: number },
  UpgradeError,
  ClientTable | ServerPool.ServerPool
> = Effect.gen(function*() {
  const ask: typeof Handover.FromNew.Type = { _tag: "Ask" }
  const answer = receive("state", decodeState)
  yield* Effect.sync(() => process.send?.(ask))
  return yield* restore(yield* answer)
})

/**
 * Takes in the old nib's state: its remembered clients, and the blacklist deadline and drain of each server that has
 * the same address here (a server the new configuration changed starts afresh). How many of each were taken.
 * @category operations
 */
export const restore = (state: State) =>
  Effect.gen(function*() {
    const clients = yield* (yield* ClientTable).restore(state.clients)
    const pool = yield* ServerPool.ServerPool
    const now = yield* Clock.currentTimeMillis
    const snapshot = yield* pool.snapshot
    const here = new Map(
      [...snapshot.servers, ...(snapshot.emergency === undefined ? [] : [snapshot.emergency])].map((s) => [
        s.index,
        s.address
      ])
    )
    let servers = 0
    for (const saved of state.servers) {
      if (here.get(saved.index) !== saved.address) continue
      servers++
      if (saved.blacklistedUntil > now) {
        yield* Effect.ignore(pool.blacklist(saved.index, (saved.blacklistedUntil - now) / 1000))
      }
      if (saved.draining) yield* pool.setDraining(saved.index, true)
    }
    return { clients, servers }
  })
