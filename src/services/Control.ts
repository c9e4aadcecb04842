/**
 * The control language at work: executes a decoded command (`control/Command.ts`) against the running balancer and
 * returns pen's reply, byte for byte where pen's is documented. The control port, `-O` and (later) `-F` files all go
 * through `execute`.
 *
 * Settings owned by a service are changed through it (the selection flags and servers in ServerPool, `blacklist` in
 * HealthChecker, `tracking` and `clients_max` in ClientTable, `timeout` in TcpProxy, `conn_max` in Listener); the
 * settings only the control language has (the ACL table and which lists apply, `debug`, pen's inert knobs) live here.
 */
import { Context, Deferred, Effect, Layer } from "effect"
import { LbConfig } from "../Config.ts"
import * as Command from "../control/Command.ts"
import * as Acl from "../domain/Acl.ts"
import * as Address from "../domain/Address.ts"
import type { Backend } from "../domain/Backend.ts"
import { TcpProxy } from "../proxy/TcpProxy.ts"
import { ClientTable } from "./ClientTable.ts"
import { HealthChecker } from "./HealthChecker.ts"
import { Listener } from "./Listener.ts"
import { ServerPool } from "./ServerPool.ts"

/** The control service. @category services */
export class Control extends Context.Service<Control, {
  /** Runs one command line (without its line end) and returns the reply ("" when pen replies nothing). */
  readonly execute: (line: string) => Effect.Effect<string>
  /** Whether a client at `address` may use the control port (`control_acl`); `undefined` is a Unix socket peer. */
  readonly admitsControlClient: (address: string | undefined) => boolean
  /** Completes when `exit` was accepted (with `-X`): the program should stop. */
  readonly exitRequested: Effect.Effect<void>
}>()("nib/services/Control") {
  static readonly layer: Layer.Layer<
    Control,
    never,
    LbConfig | ServerPool | ClientTable | HealthChecker | TcpProxy | Listener
  > = Layer.effect(
    Control,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const pool = yield* ServerPool
      const clients = yield* ClientTable
      const health = yield* HealthChecker
      const proxy = yield* TcpProxy
      const listener = yield* Listener
      const exit = yield* Deferred.make<void>()
      const acls = Acl.makeTable()
      const knobs = {
        client_acl: 0,
        control_acl: 0,
        debug: config.debug,
        idle_timeout: 0,
        pending_max: 100,
        tarpit_acl: -1
      }

      const getKnob = (knob: Command.Knob): Effect.Effect<string> => {
        switch (knob) {
          case "blacklist":
            return Effect.map(health.blacklistSeconds, line)
          case "clients_max":
            return Effect.map(clients.capacity, line)
          case "conn_max":
            return Effect.map(listener.connectionsMax, line)
          case "timeout":
            return Effect.map(proxy.connectTimeoutSeconds, line)
          case "tracking":
            return Effect.map(clients.trackingSeconds, line)
          case "client_acl":
          case "control_acl":
          case "debug":
            return Effect.succeed(line(knobs[knob]))
          case "idle_timeout":
            return Effect.succeed(`Idle timeout: ${knobs.idle_timeout} seconds\n`)
          case "pending_max":
            return Effect.succeed("")
          case "tarpit_acl":
            return Effect.succeed(`tarpit_acl = ${knobs.tarpit_acl}`)
          case "idlers":
            return Effect.succeed("Idlers: 0/0\n")
        }
      }

      /** Sets a knob and answers as pen does: the new value (nothing for pending_max), or why the value was refused. */
      const setKnob = (knob: Command.Knob, value: number): Effect.Effect<string> => {
        const taken = (effect: Effect.Effect<unknown>) => Effect.andThen(effect, getKnob(knob))
        const set = (f: () => unknown) => taken(Effect.sync(f))
        switch (knob) {
          case "blacklist":
            return taken(health.setBlacklistSeconds(value))
          case "clients_max":
            return value < 1 ? refuse("clients_max: the table needs at least 1 slot") : taken(clients.resize(value))
          case "conn_max":
            return value < 1 ? refuse("conn_max: at least 1 connection") : taken(listener.setConnectionsMax(value))
          case "timeout":
            // pen takes 0 and then spins its event loop; a zero connect timeout would fail every dial.
            return value < 1 ? refuse("timeout: at least 1 second") : taken(proxy.setConnectTimeoutSeconds(value))
          case "tracking":
            return taken(clients.setTrackingSeconds(value))
          case "client_acl":
          case "control_acl":
            return set(() => (knobs[knob] = aclNumber(value)))
          case "debug":
            return set(() => (knobs.debug = value))
          case "idle_timeout":
            return value > 0
              ? refuse("idle_timeout: closing idle connections is not supported yet")
              : set(() => (knobs.idle_timeout = 0))
          case "pending_max":
            return set(() => (knobs.pending_max = Math.max(1, value)))
          case "tarpit_acl":
            return set(() => (knobs.tarpit_acl = value >= -1 && value < Acl.ACLS_MAX ? value : 0))
          case "idlers":
            return value > 0
              ? refuse("idlers: keeping idle server connections is not supported yet")
              : taken(Effect.void)
        }
      }

      const run = (command: Command.Command): Effect.Effect<string> => {
        switch (command._tag) {
          case "Nothing":
          case "Ignored":
            return Effect.succeed("")
          case "Get":
            return getKnob(command.knob)
          case "Set":
            return setKnob(command.knob, command.value)
          case "Flag":
            return Effect.as(pool.setFlag(command.flag, command.on), "")
          case "Unsupported":
            return Effect.succeed(line(`${command.name}: ${command.why}`))
          case "Acl":
            return Effect.sync(() => {
              Acl.add(acls, command.list, command.entry)
              return ""
            })
          case "NoAcl":
            return Effect.sync(() => {
              Acl.clear(acls, command.list)
              return ""
            })
          case "Control":
            return Effect.succeed(config.control === undefined ? "" : line(config.control.text))
          case "Exit":
            return config.exitEnabled
              ? Effect.as(Deferred.succeed(exit, undefined), "")
              : Effect.succeed("Exit is not enabled; restart with -X flag\n")
          case "Listen":
            return command.address === undefined
              ? Effect.succeed(line(config.listenText ?? Address.format(listener.address)))
              : Effect.succeed("listen: moving the listener at runtime is not supported yet\n")
          case "Mode":
            return Effect.sync(() => {
              const p = pool.policy
              return `${no(p.hash)}hash ${no(p.roundrobin)}roundrobin ${no(p.stubborn)}stubborn ${no(p.weight)}weight ${
                no(p.prio)
              }prio\n`
            })
          case "Pid":
            return Effect.succeed(line(process.pid))
          case "Recent":
            return Effect.map(clients.recent, (entries) => {
              const since = Date.now() - command.seconds * 1000
              return entries
                .filter((e) => e.lastSeen >= since)
                .toReversed()
                .map((e) => `${e.address} connects ${e.connects} sx ${e.bytesToClient} rx ${e.bytesFromClient}\n`)
                .join("")
            })
          case "Server":
            return pool.configure(command.index, command.changes).pipe(
              Effect.as(""),
              Effect.catch((error) => Effect.succeed(line(error.message)))
            )
          case "Servers":
            return Effect.sync(() => pool.backends.map(serverLine).join(""))
          case "Close":
          case "Connection":
          case "Socket":
            return Effect.succeed(line(`${command._tag.toLowerCase()}: the connection table is not available yet`))
          case "Include":
          case "Log":
          case "NoLog":
          case "Status":
          case "WebStats":
          case "NoWebStats":
          case "Write":
            return Effect.succeed(line(`${commandName(command._tag)}: not supported yet`))
        }
      }

      return Control.of({
        execute: (text) =>
          Effect.suspend(() => {
            const command = Command.parse(text)
            return command._tag === "Invalid" ? Effect.succeed(command.reply) : run(command)
          }),
        admitsControlClient: (address) => Acl.matches(acls, knobs.control_acl, address),
        exitRequested: Deferred.await(exit)
      })
    })
  )
}

const line = (value: string | number) => `${value}\n`

/** pen maps an ACL number outside 0..9 to 0. */
const aclNumber = (n: number) => (n >= 0 && n < Acl.ACLS_MAX ? n : 0)

const no = (on: boolean) => (on ? "" : "no ")

/** A setter that refuses its value answers why, and changes nothing. */
const refuse = (message: string): Effect.Effect<string> => Effect.succeed(line(message))

const commandName = (tag: string) => tag.startsWith("No") ? `no ${snake(tag.slice(2))}` : snake(tag)
const snake = (tag: string) => tag.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase())

/** pen's `servers` line. A slot without an address prints as pen's does, including its missing parenthesis. */
export const serverLine = (b: Backend): string => {
  const { endpoint, softLimit, hardLimit, weight, prio } = b.spec
  const addr = !b.configured && endpoint._tag === "Tcp" && endpoint.port === 0
    ? "(unknown address family 0"
    : endpoint._tag === "Unix"
    ? endpoint.path
    : endpoint.host
  // pen prints port 1 for a Unix socket server (what its sockaddr conversion gives), 0 for an empty slot.
  const port = endpoint._tag === "Unix" ? 1 : endpoint.port
  return `${b.index} addr ${addr} port ${port} conn ${b.connections} max ${softLimit} hard ${hardLimit} weight ${weight} prio ${prio} sx ${b.bytesSent} rx ${b.bytesReceived}\n`
}
