/**
 * pen's command line, kept: `nib [options] [host:]port h1[:p1[:maxc[:hard[:weight[:prio]]]]] ...`, parsed with
 * `effect/cli` after a getopt-style pass (clustered flags `-rh`, attached values `-b30`, options after positionals,
 * `--`), decoded into `Settings` by the Config schema, then run as the `AppLive` layer.
 *
 * pen flags that nib does not implement yet are refused by name, never ignored.
 */
import { Console, Context, Effect, Layer, Option, References, Result } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { AppLive } from "../layers/Live.ts"
import * as Config from "./Config.ts"
import * as Daemon from "./Daemon.ts"
import * as Demo from "./Demo.ts"
import * as Address from "./domain/Address.ts"
import * as ServerSpec from "./domain/ServerSpec.ts"
import { Control } from "./services/Control.ts"
import { ControlPort } from "./services/ControlPort.ts"
import { Listener } from "./services/Listener.ts"
import { RequestLog } from "./services/RequestLog.ts"
import { ServerPool } from "./services/ServerPool.ts"
import * as Verbosity from "./services/Verbosity.ts"

/** nib's version. @category constants */
export const VERSION = "0.1.0"

/** A command-line error: printed as `nib: <message>`, exit code 1. @category errors */
export class UsageError extends Error {
  readonly _tag = "UsageError"
}

/** pen's flags that take a value (its getopt string `B:C:F:O:S:T:b:c:e:i:j:l:m:o:p:q:t:u:w:x:E:K:G:A:L:`). */
const WITH_VALUE = new Set("BCFOSTbceijlmopqtuwxEKGAL".split(""))
/** pen's flags without a value. */
const WITHOUT_VALUE = new Set("DHNPQWXUadfhnrsZR".split(""))

/** pen flags a later version of nib implements; until then they are refused with these words. */
const NOT_YET: Record<string, string> = {
  H: "-H (X-Forwarded-For)",
  E: "-E (TLS termination)",
  K: "-K (TLS key)",
  G: "-G (TLS CA file)",
  A: "-A (TLS CA directory)",
  Z: "-Z (TLS compatibility mode)",
  R: "-R (TLS client certificates)",
  L: "-L (TLS protocol)"
}

/** Flags pen keeps only to print that they are obsolete, with pen's notice; nib does the same. */
const OBSOLETE: Record<string, string> = {
  D: "Pen 0.26.0 removed the delayed forward feature,\nmaking the -D option obsolete",
  Q: "Since Pen 0.26.0, kqueue is already the default on supported systems,\nmaking the -Q option obsolete",
  S: "As of 0.28.1 the server table is expanded dynamically,\nmaking the -S option obsolete",
  n: "Pen 0.26.0 and up uses only nonblocking sockets,\nmaking the -n option obsolete"
}

/** Flags about pen's own event loop or debug dumps; meaningless on Node, accepted and without effect. */
const HARMLESS = new Set(["P", "a", "m"])

/** The result of the getopt pass: argv for effect/cli, plus pen's notices to print. @category models */
export interface Normalized {
  readonly argv: ReadonlyArray<string>
  readonly notices: ReadonlyArray<string>
}

/**
 * Rewrites pen-style argv into the form effect/cli parses: `-rb30` becomes `-r -b=30`, `-b 30` becomes `-b=30` (so
 * a value starting with `-` stays a value), obsolete and harmless flags are dropped with their notice, and flags nib
 * does not implement yet fail with a message that names them.
 *
 * @category parsing
 */
export const normalizeArgv = (args: ReadonlyArray<string>): Result.Result<Normalized, string> => {
  const argv: Array<string> = []
  const notices: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      argv.push(...args.slice(i))
      break
    }
    if (arg.startsWith("--") || arg === "-" || !arg.startsWith("-")) {
      argv.push(arg)
      continue
    }
    for (let j = 1; j < arg.length; j++) {
      const flag = arg[j]!
      if (flag === "N") return Result.fail("-N is not implemented (pen lists it but ignores it too); use -h")
      if (flag === "i") return Result.fail("-i (install as a Windows service) is for Windows only")
      if (flag === "j") {
        return Result.fail(
          "-j (chroot) is not available: Node cannot chroot; run nib in a container or under systemd's RootDirectory="
        )
      }
      if (!WITH_VALUE.has(flag) && !WITHOUT_VALUE.has(flag)) return Result.fail(`unknown option -${flag}`)
      const notYet = NOT_YET[flag]
      if (notYet !== undefined) return Result.fail(`${notYet} is not supported yet`)
      let value: string | undefined
      if (WITH_VALUE.has(flag)) {
        value = j + 1 < arg.length ? arg.slice(j + 1) : args[++i]
        if (value === undefined) return Result.fail(`option -${flag} needs a value`)
      }
      const obsolete = OBSOLETE[flag]
      if (obsolete !== undefined) notices.push(obsolete)
      else if (!HARMLESS.has(flag)) argv.push(value === undefined ? `-${flag}` : `-${flag}=${value}`)
      if (value !== undefined) break
    }
  }
  return Result.succeed({ argv, notices })
}

const describe = (key: keyof typeof Config.descriptions): string => Config.descriptions[key]

const flags = {
  blacklist: Flag.Int("b").pipe(Flag.withDescription(describe("blacklistSeconds")), Flag.withDefault(30)),
  clients: Flag.Int("c").pipe(Flag.withDescription(describe("clientsMax")), Flag.withDefault(2048)),
  emergency: Flag.String("e").pipe(Flag.withDescription(describe("emergency")), Flag.optional),
  abuse: Flag.String("B").pipe(Flag.withDescription(describe("abuse")), Flag.optional),
  udp: Flag.Boolean("U").pipe(Flag.withDescription(describe("udp")), Flag.withDefault(false)),
  udpIdle: Flag.Finite("udp-idle-timeout").pipe(
    Flag.withDescription(describe("udpIdleSeconds")),
    Flag.withDefault(Config.defaults.udpIdleSeconds)
  ),
  foreground: Flag.Boolean("f").pipe(Flag.withDescription(describe("foreground")), Flag.withDefault(false)),
  hash: Flag.Boolean("h").pipe(Flag.withDescription(describe("hash")), Flag.withDefault(false)),
  roundrobin: Flag.Boolean("r").pipe(Flag.withDescription(describe("roundrobin")), Flag.withDefault(false)),
  stubborn: Flag.Boolean("s").pipe(Flag.withDescription(describe("stubborn")), Flag.withDefault(false)),
  timeout: Flag.Finite("t").pipe(Flag.withDescription(describe("connectTimeoutSeconds")), Flag.withDefault(3)),
  tracking: Flag.Int("T").pipe(Flag.withDescription(describe("trackingSeconds")), Flag.withDefault(0)),
  weight: Flag.Boolean("W").pipe(Flag.withDescription(describe("weight")), Flag.withDefault(false)),
  connections: Flag.Int("x").pipe(Flag.withDescription(describe("connectionsMax")), Flag.withDefault(500)),
  backlog: Flag.Int("q").pipe(Flag.withDescription(describe("backlog")), Flag.withDefault(500)),
  pidFile: Flag.String("p").pipe(Flag.withDescription(describe("pidFile")), Flag.optional),
  debug: Flag.Boolean("d").pipe(Flag.withDescription(describe("debug")), Flag.atLeast(0)),
  control: Flag.String("C").pipe(Flag.withDescription(describe("control")), Flag.optional),
  exitEnabled: Flag.Boolean("X").pipe(Flag.withDescription(describe("exitEnabled")), Flag.withDefault(false)),
  commandsO: Flag.String("O").pipe(Flag.withDescription(describe("commands")), Flag.atLeast(0)),
  commandso: Flag.String("o").pipe(Flag.withDescription(describe("commands")), Flag.atLeast(0)),
  user: Flag.String("u").pipe(Flag.withDescription(describe("user")), Flag.optional),
  logTarget: Flag.String("l").pipe(Flag.withDescription(describe("logTarget")), Flag.optional),
  webStats: Flag.String("w").pipe(Flag.withDescription(describe("webStats")), Flag.optional),
  configFile: Flag.String("F").pipe(Flag.withDescription(describe("configFile")), Flag.optional),
  demo: Flag.Boolean("demo").pipe(
    Flag.withDescription("run a demo: two HTTP backends and nib on 127.0.0.1:8080 (or the listen address given)"),
    Flag.withDefault(false)
  )
}

const args = {
  listen: Argument.String("listen").pipe(
    Argument.withDescription("[host:]port, [v6]:port or /path/to/socket to listen on"),
    Argument.optional
  ),
  servers: Argument.String("server").pipe(
    Argument.withDescription("host[:port[:maxc[:hard[:weight[:prio]]]]], [v6]:port... or /path"),
    Argument.atLeast(0)
  )
}

type Parsed = Command.Command.Config.Infer<typeof flags & typeof args>

const usageError = (message: string) => Effect.fail(new UsageError(message))

/** Turns parsed argv into encoded settings (pen's string formats decoded here), then decodes them. */
export const toSettings = (parsed: Parsed, services: Address.ServiceNames) =>
  Effect.gen(function*() {
    if (Option.isNone(parsed.listen)) return yield* usageError("no listen address given")
    const listen = Address.parseListen(parsed.listen.value, services)
    if (Result.isFailure(listen)) return yield* usageError(`listen address '${parsed.listen.value}': ${listen.failure}`)
    // With -F the servers may all come from the file (`server 0 address ... port ...`), as with pen.
    if (parsed.servers.length === 0 && Option.isNone(parsed.configFile)) {
      return yield* usageError("no server given: nib [options] [host:]port h1 [h2 ...]")
    }
    if (parsed.udp && listen.success._tag === "Unix") {
      return yield* usageError(`listen address '${parsed.listen.value}': UDP mode (-U) listens on a [host:]port`)
    }
    const defaultPort = listen.success._tag === "Tcp" ? listen.success.port : undefined
    const servers: Array<ServerSpec.ServerSpec> = []
    for (const text of parsed.servers) {
      const spec = ServerSpec.parse(text, defaultPort, services)
      if (Result.isFailure(spec)) return yield* usageError(`server '${text}': ${spec.failure}`)
      if (parsed.udp && spec.success.endpoint._tag === "Unix") {
        return yield* usageError(`server '${text}': UDP mode (-U) cannot send datagrams to a Unix socket`)
      }
      servers.push(spec.success)
    }
    let emergency: ServerSpec.ServerSpec | undefined
    if (Option.isSome(parsed.emergency)) {
      const spec = ServerSpec.parse(parsed.emergency.value, defaultPort, services)
      if (Result.isFailure(spec)) return yield* usageError(`-e '${parsed.emergency.value}': ${spec.failure}`)
      emergency = spec.success
    }
    let abuse: ServerSpec.ServerSpec | undefined
    if (Option.isSome(parsed.abuse)) {
      const spec = ServerSpec.parse(parsed.abuse.value, defaultPort, services)
      if (Result.isFailure(spec)) return yield* usageError(`-B '${parsed.abuse.value}': ${spec.failure}`)
      abuse = spec.success
    }
    let control: { endpoint: Address.Endpoint; text: string } | undefined
    if (Option.isSome(parsed.control)) {
      const text = parsed.control.value
      const endpoint = Address.parseListen(text, services)
      if (Result.isFailure(endpoint)) return yield* usageError(`-C '${text}': ${endpoint.failure}`)
      // Unlike pen, a port alone binds the loopback address: the control port has no authentication.
      const loopback = endpoint.success._tag === "Tcp" && !/:/.test(text) && !text.includes("/")
      control = {
        endpoint: loopback
          ? Address.tcp("127.0.0.1", (endpoint.success as Address.TcpEndpoint).port)
          : endpoint.success,
        text
      }
    }
    if (parsed.backlog < 50) yield* Console.error("listen_queue bumped to 50")
    return yield* Config.decode({
      listen: listen.success,
      servers,
      emergency,
      abuse,
      udp: parsed.udp,
      udpIdleSeconds: parsed.udpIdle,
      blacklistSeconds: parsed.blacklist,
      clientsMax: parsed.clients,
      connectTimeoutSeconds: parsed.timeout,
      trackingSeconds: parsed.tracking,
      connectionsMax: parsed.connections,
      // pen raises a backlog under 50 to 50 ("listen_queue bumped to 50")
      backlog: Math.max(50, parsed.backlog),
      roundrobin: parsed.roundrobin,
      hash: parsed.hash,
      weight: parsed.weight,
      prio: false,
      stubborn: parsed.stubborn,
      foreground: parsed.foreground,
      pidFile: Option.getOrUndefined(parsed.pidFile),
      debug: parsed.debug.length,
      listenText: parsed.listen.value,
      control,
      exitEnabled: parsed.exitEnabled,
      commands: ordered(parsed.commandsO, parsed.commandso),
      user: Option.getOrUndefined(parsed.user),
      logTarget: Option.getOrUndefined(parsed.logTarget),
      webStats: Option.getOrUndefined(parsed.webStats),
      configFile: Option.getOrUndefined(parsed.configFile)
    }).pipe(Effect.mapError((error) => new UsageError(error.message)))
  })

// -O and -o are the same option in pen; effect/cli sees two flags, so their order between them is lost (each keeps
// its own order). Scripts use one or the other.
const ordered = (upper: ReadonlyArray<string>, lower: ReadonlyArray<string>) => [...upper, ...lower]

/**
 * Runs the balancer with `settings` until interrupted (SIGTERM/SIGINT) or until the control port's `exit` (with
 * `-X`). Start-up follows pen's order: listeners bound, `-O` commands run, then the `-F` file (their replies on
 * stdout; a bad line in the file is fatal, naming its line), the servers of the command line written over any
 * `server N` those gave, privileges dropped (`-u`), then the `-l` log opened and the pid file written.
 */
export const serve = (
  settings: Config.Settings,
  onReady: (address: Address.Endpoint, control?: Address.Endpoint) => Effect.Effect<void>
) => {
  const level: Verbosity.Level = { debug: settings.debug }
  return Effect.scoped(Effect.gen(function*() {
    const context = yield* Layer.build(AppLive.pipe(Layer.provide(Config.LbConfig.layerSettings(settings))))
    const listener = Context.get(context, Listener)
    const control = Context.get(context, Control)
    for (const command of settings.commands) {
      const reply = yield* control.execute(command)
      if (reply !== "") yield* Effect.sync(() => process.stdout.write(reply))
    }
    if (settings.configFile !== undefined) {
      const replies = yield* control.loadFile(settings.configFile).pipe(
        Effect.mapError((error) => new Config.ConfigError({ message: `-F ${error.message}` }))
      )
      if (replies !== "") yield* Effect.sync(() => process.stdout.write(replies))
    }
    if (settings.commands.length > 0 || settings.configFile !== undefined) {
      const pool = Context.get(context, ServerPool)
      yield* Effect.forEach(settings.servers, (spec, i) => pool.configure(i, ServerPool.specChanges(spec)), {
        discard: true
      })
    }
    if (settings.user !== undefined) {
      yield* Daemon.dropPrivileges(settings.user)
      if (settings.logTarget !== undefined) yield* Context.get(context, RequestLog).open(settings.logTarget)
    }
    if (settings.pidFile !== undefined) yield* Daemon.pidFile(settings.pidFile)
    yield* onReady(listener.address, Context.get(context, ControlPort).address)
    return yield* control.exitRequested
  })).pipe(
    // Every level reaches the logger, which filters by the level `debug N` can change while nib runs.
    Effect.provideService(References.MinimumLogLevel, "All"),
    Effect.provideService(References.CurrentLoggers, new Set([Verbosity.logger(level)])),
    Effect.provideService(Verbosity.Verbosity, level)
  )
}

const main = (services: Address.ServiceNames) =>
  Command.make("nib", { ...flags, ...args }, (parsed) =>
    Effect.gen(function*() {
      if (parsed.demo || (Option.isNone(parsed.listen) && parsed.servers.length === 0)) {
        if (parsed.servers.length > 0) return yield* usageError("--demo brings its own servers: give none")
        const listen = Option.isSome(parsed.listen)
          ? Address.parseListen(parsed.listen.value, services)
          : Result.succeed(Demo.defaultListen)
        if (Result.isFailure(listen)) return yield* usageError(`listen address: ${listen.failure}`)
        return yield* Demo.run(listen.success, serve)
      }
      const settings = yield* toSettings(parsed, services)
      if (!settings.foreground && !Daemon.isDaemonChild()) return yield* Daemon.detach
      return yield* serve(settings, Daemon.notifyReady)
    })).pipe(
      Command.withDescription(
        "A TCP load balancer, drop-in successor of pen. Example: nib -r 8080 10.0.0.1:80 10.0.0.2:80"
      )
    )

/** Parses `args` (argv without node and script) and runs nib. */
export const run = (argv: ReadonlyArray<string>, services: Address.ServiceNames) => {
  const normalized = normalizeArgv(argv)
  if (Result.isFailure(normalized)) return Effect.fail(new UsageError(normalized.failure))
  return Effect.gen(function*() {
    for (const notice of normalized.success.notices) yield* Console.error(notice)
    return yield* Command.runWith(main(services), { version: VERSION, renderErrors: false })(normalized.success.argv)
  })
}
