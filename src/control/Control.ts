/**
 * The control language at work: executes a decoded command (`control/Command.ts`) against the running balancer and
 * returns pen's reply, byte for byte where pen's is documented. The control port and `-O` go through `execute`, `-F`
 * and `include` through `loadFile`.
 *
 * Each setting is changed through the service that owns it: the selection flags and servers in ServerPool,
 * `blacklist` in HealthChecker, `tracking` and `clients_max` in ClientTable, `timeout`, `pending_max`, `idlers` and
 * the socket settings (`keepalive`, `tcp_nodelay`, `tcp_fastclose`, `source`) in TcpProxy, `conn_max`, `listen`,
 * `idle_timeout` (TCP connections or UDP sessions) and the connection table in Listener, the ACLs in Acls, `debug` in
 * Verbosity, `log` in RequestLog, `web_stats` in Status. Only pen's inert knob `tarpit_acl` lives here.
 */
import { Context, Deferred, Effect, Layer, Result } from "effect"
import * as Fs from "node:fs"
import { LbConfig, type Settings } from "../Config.ts"
import * as Acl from "../domain/Acl.ts"
import * as Address from "../domain/Address.ts"
import type { Backend } from "../domain/Backend.ts"
import * as Explain from "../domain/Explain.ts"
import * as HealthCheck from "../domain/HealthCheck.ts"
import * as SocketOptions from "../domain/SocketOptions.ts"
import * as StatusPage from "../domain/StatusPage.ts"
import * as TlsSettings from "../domain/TlsSettings.ts"
import * as Socket from "../net/Socket.ts"
import * as ProxyExplain from "../proxy/Explain.ts"
import { Listener } from "../proxy/Listener.ts"
import { TcpProxy } from "../proxy/TcpProxy.ts"
import { Acls } from "../services/Acls.ts"
import { ClientTable } from "../services/ClientTable.ts"
import { HealthChecker } from "../services/HealthChecker.ts"
import { RequestLog } from "../services/RequestLog.ts"
import * as ServerPool from "../services/ServerPool.ts"
import { Verbosity } from "../services/Verbosity.ts"
import * as Admission from "../shared/Admission.ts"
import { Broadcast } from "../shared/Broadcast.ts"
import { testHooks, Threads } from "../shared/Threads.ts"
import * as Command from "./Command.ts"
import { Status } from "./Status.ts"

/** A command that could not be carried out (a file that can't be read, a host that does not resolve, ...). */
export class ControlError extends Error {
  readonly _tag = "ControlError"
}

/** How deep `include` may nest (a file that includes itself stops there). @category constants */
export const MAX_INCLUDE_DEPTH = 8

/** The control service. @category services */
export class Control extends Context.Service<Control, {
  /** Runs one command line (without its line end) and returns the reply ("" when pen replies nothing). */
  readonly execute: (line: string) => Effect.Effect<string>
  /** Whether a client at `address` may use the control port (`control_acl`); `undefined` is a Unix socket peer. */
  readonly admitsControlClient: (address: string | undefined) => boolean
  /** Completes when `exit` was accepted (with `-X`): the program should stop. */
  readonly exitRequested: Effect.Effect<void>
  /**
   * Runs a file of commands (`-F`, `include`). Every line is decoded first: a bad one fails the whole file, naming
   * the file and line, and nothing of it is applied. The replies are returned, in order.
   */
  readonly loadFile: (file: string) => Effect.Effect<string, ControlError>
}>()("nib/control/Control") {
  static readonly layer: Layer.Layer<
    Control,
    never,
    LbConfig | ServerPool.ServerPool | ClientTable | HealthChecker | TcpProxy | Listener | RequestLog | Status | Acls
  > = Layer.effect(
    Control,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const pool = yield* ServerPool.ServerPool
      const clients = yield* ClientTable
      const health = yield* HealthChecker
      const proxy = yield* TcpProxy
      const explainContext = yield* Effect.context<ServerPool.ServerPool | Acls | ClientTable>()
      const listener = yield* Listener
      const log = yield* RequestLog
      const status = yield* Status
      const exit = yield* Deferred.make<void>()
      let listenText = config.listenText
      const verbosity = yield* Verbosity
      const broadcast = yield* Broadcast
      const threads = yield* Threads
      verbosity.debug = config.debug
      const access = yield* Acls
      const acls = access.table
      const knobs = {
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
            return Effect.map(access.clientAcl, line)
          case "control_acl":
            return Effect.map(access.controlAcl, line)
          case "debug":
            return Effect.succeed(line(verbosity.debug))
          case "idle_timeout":
            return Effect.map(listener.idleTimeoutSeconds, (seconds) => `Idle timeout: ${seconds} seconds\n`)
          case "pending_max":
            // pen answers nothing, set or not (`write` shows it when it is not pen's 100).
            return Effect.succeed("")
          case "tarpit_acl":
            return Effect.succeed(`tarpit_acl = ${knobs.tarpit_acl}`)
          case "idlers":
            return Effect.map(proxy.idlers, ({ open, wanted }) => `Idlers: ${open}/${wanted}\n`)
        }
      }

      /** Sets a knob and answers as pen does: the new value (nothing for pending_max), or why the value was refused. */
      const setKnob = (knob: Command.Knob, value: number): Effect.Effect<string> => {
        const taken = (effect: Effect.Effect<unknown>) => Effect.andThen(effect, Effect.suspend(() => getKnob(knob)))
        const set = (f: () => unknown) => taken(Effect.sync(f))
        switch (knob) {
          case "blacklist":
            return taken(health.setBlacklistSeconds(value))
          case "clients_max":
            return value < 1
              ? refuse("clients_max: the table needs at least 1 slot")
              : value > clients.capacityMax
              ? refuse(
                `clients_max: at most ${clients.capacityMax} slots (the table was made for -c ${clients.capacityMax})`
              )
              : taken(clients.resize(value))
          case "conn_max":
            return value < 1 ? refuse("conn_max: at least 1 connection") : taken(listener.setConnectionsMax(value))
          case "timeout":
            // pen takes 0 and then spins its event loop; a zero connect timeout would fail every dial.
            return value < 1 ? refuse("timeout: at least 1 second") : taken(proxy.setConnectTimeoutSeconds(value))
          case "tracking":
            return taken(clients.setTrackingSeconds(value))
          case "client_acl":
            return taken(access.setClientAcl(aclNumber(value)))
          case "control_acl":
            return taken(access.setControlAcl(aclNumber(value)))
          case "debug":
            return taken(
              Effect.andThen(
                Effect.sync(() => (verbosity.debug = value)),
                broadcast.send({ _tag: "Debug", level: value })
              )
            )
          case "idle_timeout":
            // Idle TCP connections are closed after it, or in UDP mode idle sessions end; pen takes < 0 as 0 (never).
            return taken(listener.setIdleTimeoutSeconds(Math.max(0, value)))
          case "pending_max":
            // pen: at most N connects to servers in progress (TCP); N <= 0 is 1.
            return taken(proxy.setPendingMax(Math.max(1, value)))
          case "tarpit_acl":
            return set(() => (knobs.tarpit_acl = value >= -1 && value < Acl.ACLS_MAX ? value : 0))
          case "idlers":
            return listener.udp && value > 0
              ? refuse("idlers: idle server connections are for TCP, not UDP mode (-U)")
              : Effect.flatMap(listener.connectionsMax, (max) =>
                value > max
                  ? refuse(`idlers: at most conn_max (${max}) idle server connections`)
                  : taken(proxy.setIdlers(value)))
        }
      }

      const run = (command: Command.Command, depth: number): Effect.Effect<string, ControlError> => {
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
          case "Http":
            return Effect.as(proxy.setHttp(command.on), "")
          case "TlsGet":
            return Effect.map(proxy.tlsTuning, (tuning) => TlsSettings.show(tuning, command.setting))
          case "TlsSet":
            return proxy.tlsTuning.pipe(
              Effect.flatMap((tuning) => proxy.setTlsTuning(TlsSettings.apply(tuning, command.change))),
              Effect.mapError((error) => new ControlError(error.message)),
              Effect.as("")
            )
          case "Sockets":
            return proxy.sockets.pipe(
              Effect.flatMap((options) => proxy.setSockets(SocketOptions.apply(options, command.change))),
              Effect.as("")
            )
          case "Source":
            if (command.address === undefined) {
              return Effect.map(proxy.sockets, ({ source }) => (source === undefined ? "" : line(source)))
            }
            // A name is resolved now, as pen does; an address this host does not have gets pen's reply (no line end).
            return Socket.localAddress(command.address).pipe(
              Effect.flatMap((source) => Effect.flatMap(proxy.sockets, (o) => proxy.setSockets({ ...o, source }))),
              Effect.as(""),
              Effect.catch((error) => Effect.succeed(error.message))
            )
          case "Unsupported":
            return Effect.succeed(line(`${command.name}: ${command.why}`))
          case "Acl":
            return Effect.as(access.add(command.list, command.entry), "")
          case "NoAcl":
            return Effect.as(access.clear(command.list), "")
          case "Control":
            return Effect.succeed(config.control === undefined ? "" : line(config.control.text))
          case "Exit":
            return config.exitEnabled
              ? Effect.as(Deferred.succeed(exit, undefined), "")
              : Effect.succeed("Exit is not enabled; restart with -X flag\n")
          case "Listen": {
            if (command.address === undefined) {
              return Effect.succeed(line(listenText ?? Address.format(listener.address)))
            }
            const text = command.address
            const endpoint = Address.parseListen(text, Address.wellKnownServices)
            if (Result.isFailure(endpoint)) {
              return Effect.fail(new ControlError(`listen: '${text}': ${endpoint.failure}`))
            }
            // pen closes its listener, then exits if the new address cannot be bound; nib binds the new address
            // first and keeps the old one when that fails.
            return listener.rebind(endpoint.success).pipe(
              Effect.tap(() => Effect.sync(() => (listenText = text))),
              Effect.as(""),
              Effect.mapError((error) => new ControlError(`listen: ${error.message}`))
            )
          }
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
            return Effect.map(clients.inOrder, (entries) => {
              const since = Date.now() - command.seconds * 1000
              return entries
                .filter((e) => e.lastSeen >= since)
                .map((e) => `${e.address} connects ${e.connects} sx ${e.bytesToClient} rx ${e.bytesFromClient}\n`)
                .join("")
            })
          case "Server":
            return pool.configure(command.index, command.changes).pipe(
              Effect.as(""),
              Effect.mapError((error) => new ControlError(error.message))
            )
          case "Servers":
            return Effect.sync(() => pool.backends.map(serverLine).join(""))
          case "Connection":
            return Effect.gen(function*() {
              const max = yield* listener.connectionsMax
              const n = command.connection
              if (n < 0 || n >= max) return `Connection ${n} out of range\n`
              const c = (yield* listener.connections).find((live) => live.slot === n)
              const clientSlot = c === undefined ? 0 : (yield* clientIndex(c.client))
              return [
                `Connection ${n}:`,
                `state = ${c?.state ?? 0}`,
                `downfd = ${c?.downfd ?? -1}, upfd = ${c?.upfd ?? -1}`,
                `client = ${clientSlot}, server = ${c?.server ?? 0}`,
                `pend = 0`,
                ""
              ].join("\n")
            })
          case "Close":
            return Effect.gen(function*() {
              const max = yield* listener.connectionsMax
              const n = command.connection
              if (n < 0 || n >= max) return `Connection ${n} out of range\n`
              // pen also "closes" an unused slot (and corrupts its count); nib closes only a live connection.
              return (yield* listener.close(n))
                ? `Forcibly closing connection ${n}\n`
                : `Connection ${n} is not in use\n`
            })
          case "Socket":
            return Effect.map(listener.connections, (connections) => {
              const c = connections.find((live) => live.downfd === command.fd || live.upfd === command.fd)
              return `Socket ${command.fd} belongs to connection ${c?.slot ?? -1}\n`
            })
          case "Status":
            return Effect.mapError(status.writeWebStats, (error) => new ControlError(error.message))
          case "WebStats":
            return command.file === undefined
              ? Effect.map(status.webStats, (file) => (file === undefined ? "" : line(file)))
              : Effect.as(status.setWebStats(command.file), line(command.file))
          case "NoWebStats":
            return Effect.as(status.setWebStats(undefined), "")
          case "Log":
            return command.target === undefined
              ? Effect.map(log.target, (target) => (target === undefined ? "" : line(target)))
              : Effect.as(
                Effect.mapError(log.open(command.target), (e) => new ControlError(e.message)),
                line(command.target)
              )
          case "NoLog":
            return Effect.as(log.close, "")
          case "Include":
            // As in pen, the included commands answer on nib's stdout, not to whoever asked for the include.
            return loadFile(command.file, depth + 1).pipe(
              Effect.flatMap((
                replies
              ) => (replies === "" ? Effect.void : Effect.sync(() => process.stdout.write(replies)))),
              Effect.as("")
            )
          case "Workers":
            if (command.crash !== undefined) {
              if (!testHooks()) return Effect.succeed("workers crash: a test hook, on only with NIB_TEST_HOOKS=1\n")
              const n = command.crash
              return Effect.map(threads.crash(n), (told) => told ? "" : `workers crash: no worker thread ${n}\n`)
            }
            return Effect.map(threads.status, (all) =>
              all.length === 0
                ? "workers: none (the main thread serves: --workers 1)\n"
                : all.map((w) => `worker ${w.worker} thread ${w.threadId} conn ${w.active} restarts ${w.restarts}\n`)
                  .join(""))
          case "Explain":
            return Effect.map(Effect.provide(ProxyExplain.explain(command.client), explainContext), Explain.format)
          case "Write":
            return Effect.gen(function*() {
              const file = command.file ?? config.configFile
              if (file === undefined) return yield* Effect.fail(new ControlError("write: no file"))
              const text = yield* renderConfig(file)
              yield* Effect.try({
                try: () => Fs.writeFileSync(file, text),
                catch: (error) => new ControlError(`write: can't write '${file}': ${message(error)}`)
              })
              return ""
            })
        }
      }

      /** `idle_timeout N` when N is not the default: 0 in TCP mode, --udp-idle-timeout's in UDP mode. */
      const idleTimeoutLine = (seconds: number): ReadonlyArray<string> =>
        seconds === (config.udp ? config.udpIdleSeconds : 0) ? [] : [`idle_timeout ${seconds}`]

      /** The slot of the client at `address` (pen's client index), -1 if it is not remembered. */
      const clientIndex = (address: string) =>
        Effect.map(clients.inOrder, (entries) => entries.find((e) => e.address === address)?.slot ?? -1)

      /** ` check X` when server `b` has a check of its own (`server N check`), not --check's. */
      const ownCheck = (b: Backend): string => {
        const check = b.check === undefined ? "none" : HealthCheck.format(b.check)
        return check === (config.check === undefined ? "none" : HealthCheck.format(config.check))
          ? ""
          : ` check ${check}`
      }

      /** pen's `write`: the running configuration as commands (pen-reference 6.4), headed by how nib was started. */
      const renderConfig = (file: string) =>
        Effect.gen(function*() {
          const p = pool.policy
          const servers = pool.backends.filter((b) => b.configured).map((b) => {
            const e = b.spec.endpoint
            const port = e._tag === "Unix" ? "" : ` port ${e.port}`
            // A server given by name is written by its name, so that the file read back follows DNS too.
            return `server ${b.index} acl ${b.acl} address ${
              b.spec.name ?? ServerPool.addressText(b)
            }${port} max ${b.spec.softLimit} hard ${b.spec.hardLimit}` +
              (p.weight ? ` weight ${b.spec.weight}` : "") + (p.prio ? ` prio ${b.spec.prio}` : "") +
              // nib's own key, written only when set, so that pen's lines stay pen's.
              (b.proxy === "none" ? "" : ` proxy ${b.proxy}`) + ownCheck(b)
          })
          const logTarget = yield* log.target
          const webStats = yield* status.webStats
          const sockets = yield* proxy.sockets
          return [
            `# Generated by nib ${StatusPage.formatLocalTime(new Date())}`,
            `# ${commandLine({ ...config, listenText }, file)}`,
            ...Acl.render(acls),
            "no ascii",
            `blacklist ${yield* health.blacklistSeconds}`,
            `client_acl ${yield* access.clientAcl}`,
            `control_acl ${yield* access.controlAcl}`,
            `debug ${verbosity.debug}`,
            flag(p.hash, "hash"),
            flag(yield* proxy.http, "http"),
            // pen's write leaves idle_timeout out; nib writes it when it is not the mode's default, so that a default
            // configuration's write stays pen's.
            ...idleTimeoutLine(yield* listener.idleTimeoutSeconds),
            logTarget === undefined ? "no log" : `log ${logTarget}`,
            flag(p.roundrobin, "roundrobin"),
            ...servers,
            flag(p.stubborn, "stubborn"),
            ...SocketOptions.penLines(sockets),
            `timeout ${yield* proxy.connectTimeoutSeconds}`,
            `tracking ${yield* clients.trackingSeconds}`,
            webStats === undefined ? "no web_stats" : `web_stats ${webStats}`,
            flag(p.weight, "weight"),
            flag(p.prio, "prio"),
            // nib's TLS settings (pen's write leaves them out, so a rewritten file lost them), when not pen's defaults.
            ...TlsSettings.commands(yield* proxy.tlsTuning),
            // nib's too: keepalive and source, which pen's write leaves out, when set.
            ...SocketOptions.ownLines(sockets),
            // pending_max and idlers likewise (pen's write leaves them out), when not pen's defaults.
            ...knobLines(yield* proxy.pendingMax, (yield* proxy.idlers).wanted),
            ""
          ].join("\n")
        })

      const loadFile = (file: string, depth: number): Effect.Effect<string, ControlError> =>
        Effect.gen(function*() {
          if (depth > MAX_INCLUDE_DEPTH) {
            return yield* Effect.fail(new ControlError(`${file}: includes nested more than ${MAX_INCLUDE_DEPTH} deep`))
          }
          const text = yield* Effect.try({
            try: () => Fs.readFileSync(file, "latin1"),
            catch: (error) => new ControlError(`can't read ${file}: ${message(error)}`)
          })
          const lines = text.split("\n").map((l) => l.replace(/\r$/, ""))
          const commands: Array<readonly [number, Command.Command]> = []
          const bad: Array<string> = []
          lines.forEach((l, i) => {
            const command = Command.parse(l)
            if (command._tag === "Invalid") bad.push(`${file}:${i + 1}: ${command.reply.trimEnd()}`)
            else commands.push([i + 1, command])
          })
          if (bad.length > 0) return yield* Effect.fail(new ControlError(bad.join("\n")))
          let replies = ""
          for (const [n, command] of commands) {
            replies += yield* Effect.mapError(
              run(command, depth),
              (e) => new ControlError(`${file}:${n}: ${e.message}`)
            )
          }
          return replies
        })

      return Control.of({
        execute: (text) =>
          Effect.suspend(() => {
            const command = Command.parse(text)
            if (command._tag === "Invalid") return Effect.succeed(command.reply)
            return run(command, 0).pipe(Effect.catch((error) => Effect.succeed(line(error.message))))
          }),
        loadFile: (file) => loadFile(file, 0),
        admitsControlClient: access.admitsControlUnsafe,
        exitRequested: Deferred.await(exit)
      })
    })
  )
}

const line = (value: string | number) => `${value}\n`

/** `write`'s lines for `pending_max` and `idlers`: only those not at pen's defaults (100, 0). */
const knobLines = (pendingMax: number, idlers: number): ReadonlyArray<string> => [
  ...(pendingMax === Admission.PENDING_MAX ? [] : [`pending_max ${pendingMax}`]),
  ...(idlers === 0 ? [] : [`idlers ${idlers}`])
]

/** pen maps an ACL number outside 0..9 to 0. */
const aclNumber = (n: number) => (n >= 0 && n < Acl.ACLS_MAX ? n : 0)

const no = (on: boolean) => (on ? "" : "no ")
const flag = (on: boolean, name: string) => `${no(on)}${name}`

/** A setter that refuses its value answers why, and changes nothing. */
const refuse = (message: string): Effect.Effect<string> => Effect.succeed(line(message))

const message = (error: unknown) => (error instanceof Error ? error.message : String(error))

const quote = (text: string) => `'${text.replaceAll("'", "'\\''")}'`

/**
 * The second comment line of `write`: the options that matter, in pen's order, then `-F` naming the file written (as
 * pen's does, so that the file reads itself back), `-C` and the listener.
 */
const commandLine = (config: Settings, file: string): string => {
  const parts = ["nib"]
  if (config.foreground) parts.push("-f")
  if (config.exitEnabled) parts.push("-X")
  if (config.clientsMax !== 2048) parts.push(`-c ${config.clientsMax}`)
  if (config.emergency !== undefined) parts.push(`-e ${Address.format(config.emergency.endpoint)}`)
  if (config.pidFile !== undefined) parts.push(`-p ${quote(config.pidFile)}`)
  if (config.user !== undefined) parts.push(`-u ${quote(config.user)}`)
  if (config.connectionsMax !== 500) parts.push(`-x ${config.connectionsMax}`)
  parts.push(`-F ${quote(file)}`)
  if (config.control !== undefined) parts.push(`-C ${config.control.text}`)
  parts.push(config.listenText ?? Address.format(config.listen))
  return parts.join(" ")
}

/** pen's `servers` line. */
export const serverLine = (b: Backend): string => {
  const { softLimit, hardLimit, weight, prio } = b.spec
  return `${b.index} addr ${ServerPool.addressText(b)} port ${
    ServerPool.portNumber(b)
  } conn ${b.connections} max ${softLimit} hard ${hardLimit} weight ${weight} prio ${prio} sx ${b.bytesSent} rx ${b.bytesReceived}\n`
}
