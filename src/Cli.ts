/**
 * pen's command line, kept: `nib [options] [host:]port h1[:p1[:maxc[:hard[:weight[:prio]]]]] ...`, parsed with
 * `effect/cli` after a getopt-style pass (clustered flags `-rh`, attached values `-b30`, options after positionals,
 * `--`), decoded into `Settings` by the Config schema, then run as the `AppLive` layer.
 *
 * One table, `sections`, says what nib does with each of pen's options and how `--help` shows it; the getopt pass,
 * the help text and the error messages are all read from it, and the descriptions of the options that set something
 * come from `Config.descriptions`. pen flags that nib does not implement yet are refused by name, never ignored.
 */
import { Console, Context, Effect, Layer, Option, References, Result } from "effect"
import { Argument, CliConfig, CliError, CliOutput, Command, Flag, GlobalFlag } from "effect/cli"
import * as Os from "node:os"
import * as Config from "./Config.ts"
import * as Daemon from "./Daemon.ts"
import * as Address from "./domain/Address.ts"
import * as HealthCheck from "./domain/HealthCheck.ts"
import * as Peers from "./domain/Peers.ts"
import * as ServerSpec from "./domain/ServerSpec.ts"
import * as TlsSettings from "./domain/TlsSettings.ts"
import { Peers as PeersService } from "./peers/Peers.ts"
import * as Verbosity from "./services/Verbosity.ts"
import * as Handover from "./shared/Handover.ts"

/** nib's version. @category constants */
export const VERSION = "0.1.0"

/** The one-line usage, pen's synopsis with nib's name. @category constants */
export const SYNOPSIS = "usage: nib [options] [host:]port h1[:p1[:maxc[:hard[:weight[:prio]]]]] [h2 ...]"

/** The last line of every usage error. @category constants */
export const HELP_POINTER = "Try 'nib --help' for more information."

/** What `nib` alone prints under the synopsis. @category constants */
export const BARE_HINT = "Try 'nib --help' for the options, or 'nib --demo' to watch nib balance two demo servers."

/**
 * A command-line error: printed as `nib: <message>`, then the synopsis when the command line's shape is wrong (an
 * unknown option, no listen address, no server), then a pointer at `--help`; exit code 1. @category errors
 */
export class UsageError extends Error {
  readonly _tag = "UsageError"
  /** Whether the synopsis is printed under the message. */
  readonly synopsis: boolean
  /** The last line: `HELP_POINTER` unless told otherwise. */
  readonly hint: string
  constructor(message: string, options?: { readonly synopsis?: boolean; readonly hint?: string }) {
    super(message)
    this.synopsis = options?.synopsis ?? false
    this.hint = options?.hint ?? HELP_POINTER
  }
}

type Setting = keyof typeof Config.descriptions

/**
 * One option of nib's command line: how the getopt pass reads it, what nib does with it, how `--help` shows it.
 * @category models
 */
export interface OptionSpec {
  /** `b` for `-b`, `udp-idle-timeout` for `--udp-idle-timeout`. */
  readonly name: string
  /** The value's name in the help (pen's: `sec`, `N`, `host:port`); options without one take no value. */
  readonly value?: string
  /** The setting it sets: its description (and default) come from `Config.descriptions` and `Config.defaults`. */
  readonly setting?: Setting
  /** The description of an option that sets nothing. */
  readonly text?: string
  /** nib refuses the option with this message (exit 1). */
  readonly refused?: string
  /** Shown after the description, for an option that does not do what pen's does. */
  readonly mark?: string
  /** Obsolete in pen: dropped, printing pen's notice. */
  readonly notice?: string
  /** May be given more than once, each time counting (`-dd`, `-O a -O b`); otherwise the last one given wins. */
  readonly repeatable?: true
  /** Accepted and dropped: it concerns pen's own machinery. */
  readonly ignored?: true
  /** Left out of the help, as pen's usage leaves it out. */
  readonly hidden?: true
}

const NO_EFFECT = "(accepted; no effect in nib)"

/**
 * Every option, in the help's sections. pen's own options come in the order of pen's usage text (with `-m` and `-q`,
 * which only its man page lists, after `-l`), its TLS options after them, as pen lists them, then nib's long options.
 *
 * @category constants
 */
export const sections: ReadonlyArray<{ readonly title: string; readonly options: ReadonlyArray<OptionSpec> }> = [
  {
    title: "pen's options:",
    options: [
      { name: "B", value: "host:port", setting: "abuse" },
      { name: "C", value: "[host:]port", setting: "control" },
      { name: "T", value: "sec", setting: "trackingSeconds" },
      { name: "H", setting: "http" },
      { name: "U", setting: "udp" },
      {
        name: "N",
        text: "use hash for initial server selection without save server",
        refused: "-N is not implemented (pen lists it but ignores it too); use -h",
        mark: "(not implemented, as in pen: use -h)"
      },
      { name: "O", value: "option", setting: "commands", repeatable: true },
      { name: "P", text: "use poll() rather than select()", ignored: true, mark: NO_EFFECT },
      {
        name: "Q",
        text: "use kqueue to manage events (BSD)",
        notice: "Since Pen 0.26.0, kqueue is already the default on supported systems,\nmaking the -Q option obsolete",
        mark: "(obsolete, as in pen)"
      },
      { name: "W", setting: "weight" },
      { name: "X", setting: "exitEnabled" },
      { name: "a", text: "debugging dumps in ascii format", ignored: true, mark: NO_EFFECT },
      { name: "b", value: "sec", setting: "blacklistSeconds" },
      { name: "c", value: "N", setting: "clientsMax" },
      { name: "d", setting: "debug", repeatable: true },
      { name: "e", value: "host:port", setting: "emergency" },
      { name: "f", setting: "foreground" },
      { name: "h", setting: "hash" },
      {
        name: "j",
        value: "dir",
        text: "run in chroot",
        refused:
          "-j (chroot) is not available: Node cannot chroot; run nib in a container or under systemd's RootDirectory=",
        mark: "(not available: Node cannot chroot)"
      },
      { name: "F", value: "file", setting: "configFile" },
      { name: "l", value: "file", setting: "logTarget" },
      { name: "m", value: "N", text: "accept up to N connections at a time", ignored: true, mark: NO_EFFECT },
      { name: "q", value: "N", setting: "backlog" },
      { name: "r", setting: "roundrobin" },
      { name: "s", setting: "stubborn" },
      { name: "t", value: "sec", setting: "connectTimeoutSeconds" },
      { name: "u", value: "user", setting: "user" },
      { name: "p", value: "file", setting: "pidFile" },
      { name: "x", value: "N", setting: "connectionsMax" },
      { name: "w", value: "file", setting: "webStats" },
      { name: "o", value: "option", setting: "commands", repeatable: true },
      {
        name: "D",
        notice: "Pen 0.26.0 removed the delayed forward feature,\nmaking the -D option obsolete",
        hidden: true
      },
      {
        name: "S",
        value: "N",
        notice: "As of 0.28.1 the server table is expanded dynamically,\nmaking the -S option obsolete",
        hidden: true
      },
      {
        name: "n",
        notice: "Pen 0.26.0 and up uses only nonblocking sockets,\nmaking the -n option obsolete",
        hidden: true
      },
      {
        name: "i",
        value: "service_name",
        refused: "-i (install as a Windows service) is for Windows only",
        hidden: true
      }
    ]
  },
  {
    title: "pen's TLS options:",
    options: [
      { name: "E", value: "certfile", setting: "tlsCert" },
      { name: "K", value: "keyfile", setting: "tlsKey" },
      { name: "G", value: "cacertfile", setting: "tlsCaFile" },
      { name: "A", value: "cacertdir", setting: "tlsCaDir" },
      { name: "Z", setting: "tlsCompat" },
      { name: "R", setting: "tlsRequireClientCert" },
      { name: "L", value: "protocol", setting: "tlsProtocol" }
    ]
  },
  {
    title: "nib's options:",
    options: [
      { name: "demo", text: "run a demo: two HTTP backends and nib on 127.0.0.1:8080 (or the listen address given)" },
      { name: "idle-timeout", value: "SEC", setting: "idleTimeoutSeconds" },
      { name: "udp-idle-timeout", value: "SEC", setting: "udpIdleSeconds" },
      { name: "send-proxy", value: "v1|v2", setting: "sendProxy" },
      { name: "accept-proxy", setting: "acceptProxy" },
      { name: "check", value: "CHECK", setting: "check" },
      { name: "check-interval", value: "SEC", setting: "checkIntervalSeconds" },
      { name: "rise", value: "N", setting: "rise" },
      { name: "fall", value: "N", setting: "fall" },
      { name: "slow-start", value: "SEC", setting: "slowStartSeconds" },
      { name: "on-down", value: "keep|close", setting: "onDown" },
      { name: "hash-method", value: "pen|consistent", setting: "hashMethod" },
      { name: "admin", value: "[host:]port", setting: "admin" },
      { name: "admin-token-file", value: "FILE", setting: "adminTokenFile" },
      { name: "workers", value: "N|auto", setting: "workers" },
      { name: "grace", value: "SEC", setting: "graceSeconds" },
      { name: "peers", value: "URL", setting: "peers" },
      { name: "peers-key", value: "NAME", setting: "peersKey" },
      { name: "help", text: "show this help" },
      { name: "version", text: "show nib's version" }
    ]
  }
]

const byName = new Map(sections.flatMap((section) => section.options.map((option) => [option.name, option] as const)))

const isLong = (option: OptionSpec) => option.name.length > 1
const flagOf = (option: OptionSpec) => `${isLong(option) ? "--" : "-"}${option.name}`

/** An option's description, without the `-b: ` that `Config.descriptions` starts with. */
const describeOption = (option: OptionSpec): string =>
  option.setting === undefined ? option.text ?? "" : Config.descriptions[option.setting].replace(/^-[^\s:]*: /, "")

/** An option as errors name it: `-x (live connections before nib stops accepting)`, as Config's errors do. */
const labelOf = (name: string): string => {
  const option = byName.get(name)
  const flag = option === undefined ? (name.length > 1 ? `--${name}` : `-${name}`) : flagOf(option)
  const text = option === undefined ? "" : describeOption(option)
  return text === "" ? flag : `${flag} (${text})`
}

const describe = (key: Setting): string => Config.descriptions[key]

/** The result of the getopt pass: argv for effect/cli, plus pen's notices to print. @category models */
export interface Normalized {
  readonly argv: ReadonlyArray<string>
  readonly notices: ReadonlyArray<string>
}

/**
 * Rewrites pen-style argv into the form effect/cli parses: `-rb30` becomes `-r -b=30`, `-b 30` becomes `-b=30` (so
 * a value starting with `-` stays a value), a flag given again replaces the earlier one (getopt's last wins), obsolete
 * and ignored flags are dropped with their notice, and flags nib refuses or does not know fail with a message that
 * names them.
 *
 * @category parsing
 */
export const normalizeArgv = (args: ReadonlyArray<string>): Result.Result<Normalized, UsageError> => {
  const argv: Array<string | undefined> = []
  const notices: Array<string> = []
  // Where each flag given once at most was last put: as with getopt, the last of `-b 5 -b 10` wins.
  const given = new Map<string, number>()
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      argv.push(...args.slice(i))
      break
    }
    if (arg.startsWith("--") || arg === "-" || !arg.startsWith("-")) {
      // A negative number after a long option that takes a value is its value (`--grace -1` is out of range), not
      // an unknown option -1.
      const next = args[i + 1]
      if (byName.get(arg.slice(2))?.value !== undefined && next !== undefined && /^-\d/.test(next)) {
        argv.push(`${arg}=${next}`)
        i++
        continue
      }
      argv.push(arg)
      continue
    }
    for (let j = 1; j < arg.length; j++) {
      const flag = arg[j]!
      const option = byName.get(flag)
      if (option === undefined) return Result.fail(new UsageError(`unknown option -${flag}`, { synopsis: true }))
      if (option.refused !== undefined) return Result.fail(new UsageError(option.refused))
      let value: string | undefined
      if (option.value !== undefined) {
        value = j + 1 < arg.length ? arg.slice(j + 1) : args[++i]
        if (value === undefined) return Result.fail(new UsageError(`${labelOf(flag)}: needs a value`))
      }
      if (option.notice !== undefined) notices.push(option.notice)
      else if (option.ignored !== true) {
        const earlier = given.get(flag)
        if (earlier !== undefined) argv[earlier] = undefined
        if (option.repeatable !== true) given.set(flag, argv.length)
        argv.push(value === undefined ? `-${flag}` : `-${flag}=${value}`)
      }
      if (value !== undefined) break
    }
  }
  return Result.succeed({ argv: argv.filter((arg) => arg !== undefined), notices })
}

const WIDTH = 80
const COLUMN = 18
/** Joins the words of a mark, so that wrapping keeps "(not supported yet)" on one line. */
const KEEP = "\u00a0"

const wrap = (text: string, width: number): Array<string> => {
  const lines: Array<string> = []
  for (const word of text.split(" ")) {
    const last = lines.length - 1
    if (last >= 0 && lines[last]!.length + 1 + word.length <= width) lines[last] += ` ${word}`
    else lines.push(word)
  }
  return lines
}

/** `  label   text`, the text wrapped at 80 columns under itself; a long label gets a line of its own. */
const entry = (label: string, text: string): Array<string> => {
  const [first = "", ...rest] = wrap(text, WIDTH - COLUMN).map((line) =>
    " ".repeat(COLUMN) + line.replaceAll(KEEP, " ")
  )
  const head = `  ${label}`
  return head.length + 2 <= COLUMN ? [head + first.slice(head.length), ...rest] : [head, first, ...rest]
}

const helpEntry = (option: OptionSpec): Array<string> => {
  const defaultValue = option.setting === undefined
    ? undefined
    : (Config.defaults as Partial<Record<Setting, unknown>>)[option.setting]
  const text = [
    describeOption(option),
    option.value !== undefined && typeof defaultValue === "number" ? `[${defaultValue}]` : "",
    option.mark?.replaceAll(" ", KEEP) ?? ""
  ].filter((part) => part !== "").join(" ")
  return entry(option.value === undefined ? flagOf(option) : `${flagOf(option)} ${option.value}`, text)
}

const LISTEN_TEXT = `${Config.descriptions.listen}; a port alone listens on every address`
const SERVER_TEXT = "a server: host, [v6] or /path/to/socket; its port (default: the listen port); maxc, its limit " +
  "of live connections, and hard, the limit for its returning clients (0 = unlimited); weight (for -W) and prio"

/** What `nib --help` prints, rendered from `sections`. @category constants */
export const helpText: string = [
  SYNOPSIS,
  "       nib --demo [[host:]port]",
  "",
  ...wrap(
    "nib balances TCP connections (UDP datagrams with -U) over the servers h1, h2, ... as pen does. The " +
      "options are pen's: they may be clustered (-rh) and take attached values (-b30).",
    WIDTH
  ),
  ...sections.flatMap((section) => [
    "",
    section.title,
    ...section.options.filter((option) => option.hidden !== true).flatMap(helpEntry)
  ]),
  "",
  "arguments:",
  ...entry("[host:]port", LISTEN_TEXT),
  ...entry("h1[:p1[:maxc[:hard[:weight[:prio]]]]]", SERVER_TEXT),
  "",
  "example:",
  "  nib -r 8080 10.0.0.1:80 10.0.0.2:80"
].join("\n")

const firstLine = (text: string) => text.split("\n")[0]!

/** An effect/cli parse error as one line in pen's words: `-x` rather than `--x`, the option's description. */
const cliErrorMessage = (error: CliError.CliError): { readonly message: string; readonly synopsis: boolean } => {
  switch (error._tag) {
    case "InvalidValue": {
      if (error.kind === "argument") break
      const problem = error.value === ""
        ? "needs a value"
        : error.expected.startsWith("at most 1 value")
        ? "given more than once"
        : /integer/.test(error.expected)
        ? `'${error.value}' is not a whole number`
        : /number/.test(error.expected)
        ? `'${error.value}' is not a number`
        : /^(?:Expected:? )?"[^"]*"(?: \| "[^"]*")+$/.test(error.expected)
        ? `'${error.value}' is not one of ${
          error.expected.replace(/^Expected:? /, "").replaceAll("\"", "").split(" | ").join(", ")
        }`
        : `'${error.value}': ${error.expected.replace(/^Expected:? /, "expected ")}`
      return { message: `${labelOf(error.option)}: ${problem}`, synopsis: false }
    }
    case "UnrecognizedOption": {
      const suggestions = error.suggestions.map(penFlag)
      return {
        message: `unknown option ${penFlag(error.option)}` +
          (suggestions.length > 0 ? ` (did you mean ${suggestions.join(" or ")}?)` : ""),
        synopsis: true
      }
    }
  }
  return { message: penFlag(firstLine(error.message)), synopsis: true }
}

// effect/cli names a one-letter flag `--b`; pen users know it as `-b`.
const penFlag = (text: string) => text.replace(/--([A-Za-z])\b/g, "-$1")

/**
 * What nib prints on stderr when `run` fails with `error`: `nib: <what was wrong>` on one line, then for a usage error
 * the synopsis (when the command line's shape is wrong) and a pointer at `--help`. Run-time errors (a port that
 * cannot be bound, an unknown host) are their message alone.
 *
 * @category errors
 */
export const errorLines = (error: unknown): ReadonlyArray<string> => {
  if (error instanceof UsageError) {
    return [
      ...(error.message === "" ? [] : [`nib: ${error.message}`]),
      ...(error.synopsis ? [SYNOPSIS] : []),
      error.hint
    ]
  }
  if (error instanceof CliError.ShowHelp) {
    if (error.errors.length === 0) return []
    const reports = error.errors.map(cliErrorMessage)
    return [
      ...reports.map((report) => `nib: ${report.message}`),
      ...(reports.some((report) => report.synopsis) ? [SYNOPSIS] : []),
      HELP_POINTER
    ]
  }
  return [`nib: ${error instanceof Error ? error.message : String(error)}`]
}

const flags = {
  blacklist: Flag.Int("b").pipe(Flag.withDescription(describe("blacklistSeconds")), Flag.withDefault(30)),
  clients: Flag.Int("c").pipe(Flag.withDescription(describe("clientsMax")), Flag.withDefault(2048)),
  emergency: Flag.String("e").pipe(Flag.withDescription(describe("emergency")), Flag.optional),
  abuse: Flag.String("B").pipe(Flag.withDescription(describe("abuse")), Flag.optional),
  udp: Flag.Boolean("U").pipe(Flag.withDescription(describe("udp")), Flag.withDefault(false)),
  idleTimeout: Flag.Int("idle-timeout").pipe(Flag.withDescription(describe("idleTimeoutSeconds")), Flag.optional),
  udpIdle: Flag.Finite("udp-idle-timeout").pipe(
    Flag.withDescription(describe("udpIdleSeconds")),
    Flag.withDefault(Config.defaults.udpIdleSeconds)
  ),
  sendProxy: Flag.Literals("send-proxy", ["v1", "v2"]).pipe(
    Flag.withDescription(describe("sendProxy")),
    Flag.optional
  ),
  http: Flag.Boolean("H").pipe(Flag.withDescription(describe("http")), Flag.withDefault(false)),
  tlsCert: Flag.String("E").pipe(Flag.withDescription(describe("tlsCert")), Flag.optional),
  tlsKey: Flag.String("K").pipe(Flag.withDescription(describe("tlsKey")), Flag.optional),
  tlsCaFile: Flag.String("G").pipe(Flag.withDescription(describe("tlsCaFile")), Flag.optional),
  tlsCaDir: Flag.String("A").pipe(Flag.withDescription(describe("tlsCaDir")), Flag.optional),
  tlsRequire: Flag.Boolean("R").pipe(Flag.withDescription(describe("tlsRequireClientCert")), Flag.withDefault(false)),
  tlsProtocol: Flag.String("L").pipe(Flag.withDescription(describe("tlsProtocol")), Flag.optional),
  tlsCompat: Flag.Boolean("Z").pipe(Flag.withDescription(describe("tlsCompat")), Flag.withDefault(false)),
  acceptProxy: Flag.Boolean("accept-proxy").pipe(
    Flag.withDescription(describe("acceptProxy")),
    Flag.withDefault(false)
  ),
  check: Flag.String("check").pipe(Flag.withDescription(describe("check")), Flag.optional),
  checkInterval: Flag.Finite("check-interval").pipe(
    Flag.withDescription(describe("checkIntervalSeconds")),
    Flag.withDefault(Config.defaults.checkIntervalSeconds)
  ),
  rise: Flag.Int("rise").pipe(Flag.withDescription(describe("rise")), Flag.withDefault(Config.defaults.rise)),
  fall: Flag.Int("fall").pipe(Flag.withDescription(describe("fall")), Flag.withDefault(Config.defaults.fall)),
  slowStart: Flag.Finite("slow-start").pipe(
    Flag.withDescription(describe("slowStartSeconds")),
    Flag.withDefault(Config.defaults.slowStartSeconds)
  ),
  onDown: Flag.Literals("on-down", ["keep", "close"]).pipe(
    Flag.withDescription(describe("onDown")),
    Flag.withDefault(Config.defaults.onDown)
  ),
  hashMethod: Flag.Literals("hash-method", ["pen", "consistent"]).pipe(
    Flag.withDescription(describe("hashMethod")),
    Flag.withDefault(Config.defaults.hashMethod)
  ),
  admin: Flag.String("admin").pipe(Flag.withDescription(describe("admin")), Flag.optional),
  adminTokenFile: Flag.String("admin-token-file").pipe(
    Flag.withDescription(describe("adminTokenFile")),
    Flag.optional
  ),
  workers: Flag.String("workers").pipe(Flag.withDescription(describe("workers")), Flag.optional),
  grace: Flag.Finite("grace").pipe(
    Flag.withDescription(describe("graceSeconds")),
    Flag.withDefault(Config.defaults.graceSeconds)
  ),
  peers: Flag.String("peers").pipe(Flag.withDescription(describe("peers")), Flag.optional),
  peersKey: Flag.String("peers-key").pipe(
    Flag.withDescription(describe("peersKey")),
    Flag.withDefault(Config.defaults.peersKey)
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
    Flag.withDescription(describeOption(byName.get("demo")!)),
    Flag.withDefault(false)
  )
}

const args = {
  listen: Argument.String("listen").pipe(
    Argument.withDescription(LISTEN_TEXT),
    Argument.optional
  ),
  servers: Argument.String("server").pipe(
    Argument.withDescription(SERVER_TEXT),
    Argument.atLeast(0)
  )
}

type Parsed = Command.Command.Config.Infer<typeof flags & typeof args>

const usageError = (message: string, options?: { readonly synopsis?: boolean }) =>
  Effect.fail(new UsageError(message, options))

/** Turns parsed argv into encoded settings (pen's string formats decoded here), then decodes them. */
export const toSettings = (parsed: Parsed, services: Address.ServiceNames) =>
  Effect.gen(function*() {
    if (Option.isNone(parsed.listen)) return yield* usageError("no listen address given", { synopsis: true })
    const listen = Address.parseListen(parsed.listen.value, services)
    if (Result.isFailure(listen)) return yield* usageError(`listen address '${parsed.listen.value}': ${listen.failure}`)
    // With -F the servers may all come from the file (`server 0 address ... port ...`), as with pen.
    if (parsed.servers.length === 0 && Option.isNone(parsed.configFile)) {
      return yield* usageError("no server given", { synopsis: true })
    }
    if (parsed.udp && (Option.isSome(parsed.sendProxy) || parsed.acceptProxy || parsed.http)) {
      const flag = parsed.http ? "-H" : parsed.acceptProxy ? "--accept-proxy" : "--send-proxy"
      return yield* usageError(`${flag} is for TCP: not with -U`)
    }
    if (Option.isSome(parsed.tlsKey) && Option.isNone(parsed.tlsCert)) {
      return yield* usageError("-K needs -E (the certificate the key belongs to)")
    }
    if (parsed.udp && Option.isSome(parsed.tlsCert)) return yield* usageError("-E is for TCP: not with -U")
    if (Option.isNone(parsed.tlsCert)) {
      const needsE = parsed.tlsRequire
        ? "-R"
        : Option.isSome(parsed.tlsCaFile)
        ? "-G"
        : Option.isSome(parsed.tlsCaDir)
        ? "-A"
        : Option.isSome(parsed.tlsProtocol)
        ? "-L"
        : parsed.tlsCompat
        ? "-Z"
        : undefined
      if (needsE !== undefined) return yield* usageError(`${needsE} needs -E`)
    }
    const tlsProtocol = Option.getOrElse(parsed.tlsProtocol, () => "ssl23")
    if (!(TlsSettings.PROTOCOLS as ReadonlyArray<string>).includes(tlsProtocol)) {
      return yield* usageError(
        `-L '${tlsProtocol}': protocol version not known (${TlsSettings.PROTOCOLS.join(", ")})`
      )
    }
    if (parsed.tlsRequire && Option.isNone(parsed.tlsCaFile) && Option.isNone(parsed.tlsCaDir)) {
      return yield* usageError("-R needs -G or -A: the CA that client certificates must come from")
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
    const control = yield* localEndpoint("-C", parsed.control, services)
    let check: HealthCheck.Check | undefined
    if (Option.isSome(parsed.check)) {
      const decoded = HealthCheck.parse(parsed.check.value)
      if (typeof decoded === "string") return yield* usageError(`--check ${decoded}`)
      check = decoded
    }
    const admin = yield* localEndpoint("--admin", parsed.admin, services)
    // Without a token the API is read-only, but the page and the metrics are still for the operators' eyes only.
    if (
      admin?.endpoint._tag === "Tcp" && Option.isNone(parsed.adminTokenFile) && !isLoopback(admin.endpoint.host)
    ) {
      return yield* usageError(
        `--admin '${admin.text}': not a loopback address: give --admin-token-file too (the endpoint can change servers)`
      )
    }
    if (Option.isSome(parsed.adminTokenFile) && admin === undefined) {
      return yield* usageError("--admin-token-file needs --admin")
    }
    const workers = yield* workerCount(parsed.workers, listen.success)
    let peers: Peers.PeersUrl | undefined
    if (Option.isSome(parsed.peers)) {
      const url = Peers.parseUrl(parsed.peers.value)
      // The URL may hold a password: the message shows what was wrong, never the text given.
      if (Result.isFailure(url)) return yield* usageError(`--peers: ${url.failure}`)
      peers = url.success
    }
    if (!Peers.KEY_PATTERN.test(parsed.peersKey)) {
      return yield* usageError(
        `--peers-key '${parsed.peersKey}': letters, digits and _ . : - only, 1 to 64 of them`
      )
    }
    if (parsed.peersKey !== Config.defaults.peersKey && peers === undefined) {
      return yield* usageError("--peers-key needs --peers")
    }
    if (parsed.backlog < 50) yield* Console.error("listen_queue bumped to 50")
    return yield* Config.decode({
      listen: listen.success,
      servers,
      emergency,
      abuse,
      udp: parsed.udp,
      udpIdleSeconds: parsed.udpIdle,
      idleTimeoutSeconds: Option.getOrUndefined(parsed.idleTimeout),
      sendProxy: Option.getOrUndefined(parsed.sendProxy),
      acceptProxy: parsed.acceptProxy,
      http: parsed.http,
      tlsCert: Option.getOrUndefined(parsed.tlsCert),
      tlsKey: Option.getOrUndefined(parsed.tlsKey),
      tlsCaFile: Option.getOrUndefined(parsed.tlsCaFile),
      tlsCaDir: Option.getOrUndefined(parsed.tlsCaDir),
      tlsRequireClientCert: parsed.tlsRequire,
      tlsProtocol,
      tlsCompat: parsed.tlsCompat,
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
      configFile: Option.getOrUndefined(parsed.configFile),
      check,
      checkIntervalSeconds: parsed.checkInterval,
      rise: parsed.rise,
      fall: parsed.fall,
      slowStartSeconds: parsed.slowStart,
      onDown: parsed.onDown,
      hashMethod: parsed.hashMethod,
      admin,
      adminTokenFile: Option.getOrUndefined(parsed.adminTokenFile),
      workers,
      graceSeconds: parsed.grace,
      peers,
      peersKey: parsed.peersKey
    }).pipe(Effect.mapError((error) => new UsageError(error.message)))
  })

/**
 * `--workers N|auto`: N worker threads, or one per core nib may run on (`auto`). A Unix socket cannot be bound by
 * several threads at once (SO_REUSEPORT is for TCP and UDP ports): nib says so and runs one.
 */
const workerCount = (given: Option.Option<string>, listen: Address.Endpoint) =>
  Effect.gen(function*() {
    if (Option.isNone(given)) return Config.defaults.workers
    const text = given.value
    const n = text === "auto" ? Os.availableParallelism() : /^\d+$/.test(text) ? Number(text) : Number.NaN
    if (!Number.isSafeInteger(n) || n < 1) {
      return yield* usageError(`--workers '${text}': not a number of threads (1, 2, ... or auto)`)
    }
    if (n > 1 && listen._tag === "Unix") {
      yield* Console.error(
        `nib: --workers ${text}: a Unix socket listener is served by one worker (SO_REUSEPORT is for ports)`
      )
      return 1
    }
    return n
  })

/**
 * The endpoint of `-C` or `--admin`: `[host:]port` or a socket path, where (unlike pen's `-C`) a port alone binds the
 * loopback address, since what listens there changes the balancer.
 */
const localEndpoint = (flag: string, given: Option.Option<string>, services: Address.ServiceNames) =>
  Effect.gen(function*() {
    if (Option.isNone(given)) return undefined
    const text = given.value
    const endpoint = Address.parseListen(text, services)
    if (Result.isFailure(endpoint)) return yield* usageError(`${flag} '${text}': ${endpoint.failure}`)
    const portAlone = endpoint.success._tag === "Tcp" && !/:/.test(text) && !text.includes("/")
    return {
      endpoint: portAlone ? Address.tcp("127.0.0.1", (endpoint.success as Address.TcpEndpoint).port) : endpoint.success,
      text
    }
  })

/** Whether `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`. */
const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host) || /^::ffff:127\./i.test(host)

// -O and -o are the same option in pen; effect/cli sees two flags, so their order between them is lost (each keeps
// its own order). Scripts use one or the other.
const ordered = (upper: ReadonlyArray<string>, lower: ReadonlyArray<string>) => [...upper, ...lower]

/**
 * The balancer's modules, loaded once a command line is known to run it: `--version`, `--help` and a usage error load
 * the parser alone.
 */
const loadBalancer = Effect.promise(async () => {
  const [{ AppLive }, { Control }, { ControlPort }, { Drain }, Upgrade, { Listener }, { RequestLog }, { ServerPool }] =
    await Promise.all([
      import("../layers/Live.ts"),
      import("./control/Control.ts"),
      import("./control/ControlPort.ts"),
      import("./control/Drain.ts"),
      import("./control/Upgrade.ts"),
      import("./proxy/Listener.ts"),
      import("./services/RequestLog.ts"),
      import("./services/ServerPool.ts")
    ])
  return { AppLive, Control, ControlPort, Drain, Upgrade, Listener, RequestLog, ServerPool }
})

/**
 * Runs the balancer with `settings` until interrupted (SIGTERM/SIGINT), until the control port's `exit` (with `-X`),
 * until a graceful stop (SIGQUIT) has ended, or until a new nib took its place (SIGUSR2) and this one has drained.
 * Start-up follows pen's order: listeners bound, `-O` commands run, then the `-F` file (their replies on stdout; a bad
 * line in the file is fatal, naming its line), the servers of the command line written over any `server N` those gave,
 * privileges dropped (`-u`), then the `-l` log opened and the pid file written.
 *
 * A nib started by an upgrade (`control/Upgrade.ts`) builds its listeners over the sockets the old nib hands over,
 * and, once configured, takes in the old nib's state, writes the pid file and starts accepting, on every thread.
 */
export const serve = (
  settings: Config.Settings,
  onReady: (address: Address.Endpoint, control?: Address.Endpoint, workers?: number) => Effect.Effect<void>
) => {
  const level: Verbosity.Level = { debug: settings.debug }
  return Effect.scoped(Effect.gen(function*() {
    const { AppLive, Control, ControlPort, Drain, Listener, RequestLog, ServerPool, Upgrade } = yield* loadBalancer
    const upgrading = Daemon.upgradeOf() !== undefined
    const handover = upgrading ? yield* Upgrade.receiveOffer : Handover.none
    const context = yield* Layer.build(AppLive.pipe(Layer.provide(Config.LbConfig.layerSettings(settings)))).pipe(
      Effect.provideService(Handover.Handover, handover),
      // SIGUSR2 starts this same command again.
      Effect.provideService(Upgrade.Command, Upgrade.ownCommand())
    )
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
    // --peers: the operator's shared state of the servers wins over what the configuration just set.
    yield* Context.get(context, PeersService).reapply
    if (settings.user !== undefined) {
      yield* Daemon.dropPrivileges(settings.user)
      if (settings.logTarget !== undefined) yield* Context.get(context, RequestLog).open(settings.logTarget)
    }
    if (upgrading) yield* Effect.provide(Upgrade.takeState, context)
    if (settings.pidFile !== undefined) yield* Daemon.pidFile(settings.pidFile)
    if (upgrading) yield* listener.takeOver
    yield* onReady(listener.address, Context.get(context, ControlPort).address, settings.workers)
    // Until `exit` (with -X), or until a graceful stop (SIGQUIT, or SIGUSR2 once the new nib serves) has let the
    // connections finish.
    return yield* Effect.raceFirst(control.exitRequested, Effect.asVoid(Context.get(context, Drain).finished))
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
      if (parsed.demo) {
        if (parsed.servers.length > 0) return yield* usageError("--demo brings its own servers: give none")
        // (loaded only for --demo: its backends' `node:http`, imported as ESM, loads Node's undici, about 14 MB)
        const Demo = yield* Effect.promise(() => import("./Demo.ts"))
        const listen = Option.isSome(parsed.listen)
          ? Address.parseListen(parsed.listen.value, services)
          : Result.succeed(Demo.defaultListen)
        if (Result.isFailure(listen)) return yield* usageError(`listen address: ${listen.failure}`)
        return yield* Demo.run(listen.success, serve)
      }
      const settings = yield* toSettings(parsed, services)
      if (!settings.foreground && !Daemon.isDaemonChild()) return yield* Daemon.detach
      return yield* serve(settings, Daemon.notifyReady)
    }))

// effect/cli's built-in --help and --version, without their -h and -v (pen's -h is hash; pen has no -v), printing
// nib's help; its --wizard, --completions and --log-level are left out.
const builtIns: ReadonlyArray<GlobalFlag.BuiltIn> = [
  GlobalFlag.Action({
    flag: Flag.Boolean("help").pipe(Flag.withDefault(false)),
    run: () => Console.log(helpText)
  }),
  GlobalFlag.Action({
    flag: Flag.Boolean("version").pipe(Flag.withDefault(false)),
    run: () => Console.log(`nib v${VERSION}`)
  })
]

// A parse error fails `run` with effect/cli's ShowHelp, and `errorLines` reports it; effect/cli's own presenter would
// print its whole help first.
const silent: CliOutput.Presenter = { present: () => Effect.void }

/**
 * Parses `args` (argv without node and script) and runs nib. A bad command line fails with a `UsageError` or
 * effect/cli's `ShowHelp`, printed by `errorLines`; `nib` alone is a usage error, as it is for pen.
 */
export const run = (argv: ReadonlyArray<string>, services: Address.ServiceNames) => {
  if (argv.length === 0) return Effect.fail(new UsageError("", { synopsis: true, hint: BARE_HINT }))
  const normalized = normalizeArgv(argv)
  if (Result.isFailure(normalized)) return Effect.fail(normalized.failure)
  return Effect.gen(function*() {
    for (const notice of normalized.success.notices) yield* Console.error(notice)
    return yield* Command.runWith(main(services), { version: VERSION, renderErrors: false })(normalized.success.argv)
  }).pipe(
    Effect.provideService(CliConfig.CliConfig, CliConfig.make({ builtIns })),
    Effect.provideService(CliOutput.Presenter, silent)
  )
}
