/**
 * The command lines of nib's log companions, `niblogd`, `niblog` and `nibmergelogs`, read as pen's `penlogd`,
 * `penlog` and `mergelogs` read theirs: glibc's getopt (clustered flags `-dfb`, attached values `-n50`, options
 * after operands, `--`), then each tool's settings decoded by a Schema, so that a bad value fails with one line that
 * names the argument.
 *
 * Where pen's tools printed their usage and exited 0 on a bad argument, or took `atoi` of anything (`-n abc` made
 * penlogd spin forever, port `99999` became 34463), these fail with a message; no argument at all, `-h` and `--help`
 * print the usage.
 */
import { Array as Arr, Result, Schema, SchemaIssue, SchemaTransformation } from "effect"
import { DEFAULT_JITTER, DEFAULT_RING_SIZE, parseServerArgument } from "./LogMerge.ts"

/** An option as getopt returns it. @category models */
export interface Option {
  readonly flag: string
  readonly value: string | undefined
}

/** Options in order, and the operands left, in order. @category models */
export interface Parsed {
  readonly options: ReadonlyArray<Option>
  readonly operands: ReadonlyArray<string>
}

/**
 * glibc's getopt for short options: `withValue` flags take the rest of their word or the next word (even one
 * starting with `-`), `flags` take none; operands may come before, between and after options; `--` ends them.
 *
 * @category parsing
 */
export const getopt = (
  args: ReadonlyArray<string>,
  spec: { readonly withValue: string; readonly flags: string }
): Result.Result<Parsed, string> => {
  const options: Array<Option> = []
  const operands: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      operands.push(...args.slice(i + 1))
      break
    }
    if (arg.startsWith("--")) return Result.fail(`unknown option ${arg}`)
    if (!arg.startsWith("-") || arg === "-") {
      operands.push(arg)
      continue
    }
    for (let j = 1; j < arg.length; j++) {
      const flag = arg[j]!
      if (spec.withValue.includes(flag)) {
        const value = j + 1 < arg.length ? arg.slice(j + 1) : args[++i]
        if (value === undefined) return Result.fail(`option -${flag} needs a value`)
        options.push({ flag, value })
        break
      }
      if (!spec.flags.includes(flag)) return Result.fail(`unknown option -${flag}`)
      options.push({ flag, value: undefined })
    }
  }
  return Result.succeed({ options, operands })
}

// ---------------------------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------------------------

const Integer = Schema.String.check(Schema.isPattern(/^[+-]?\d+$/, { message: "expected a whole number" })).pipe(
  Schema.decodeTo(Schema.Int, SchemaTransformation.numberFromString)
)
const Port = Integer.check(Schema.isBetween({ minimum: 1, maximum: 65535 }, { message: "expected a port, 1..65535" }))
const AtLeastOne = Integer.check(Schema.isGreaterThanOrEqualTo(1, { message: "expected a whole number of at least 1" }))
const AtLeastZero = Integer.check(Schema.isGreaterThanOrEqualTo(0, { message: "expected a whole number of seconds" }))
const Path = Schema.NonEmptyString.annotate({ message: "expected a file name" })

const formatIssue = SchemaIssue.makeFormatterStandardSchemaV1()

/**
 * Decodes `input` (argument texts keyed by setting) with `schema`; a failure names the first bad argument by its
 * label with its text: `-n 'abc': expected a whole number of at least 1`.
 */
const decode = <S extends Schema.Top & { readonly DecodingServices: never }>(
  schema: S,
  input: S["Encoded"],
  labels: Readonly<Record<string, string>>
): Result.Result<S["Type"], string> => {
  const result = Schema.decodeResult(schema)(input)
  if (Result.isSuccess(result)) return Result.succeed(result.success)
  const issue = formatIssue(result.failure.issue).issues[0]
  const key = String(issue?.path?.[0] ?? "")
  const raw = (input as Readonly<Record<string, unknown>>)[key]
  const label = labels[key] ?? key
  return Result.fail(`${label}${typeof raw === "string" ? ` '${raw}'` : ""}: ${issue?.message ?? "invalid"}`)
}

/** What a command line asks for: the usage, or a run with these settings. @category models */
export type Command<A> = { readonly _tag: "Help" } | { readonly _tag: "Run"; readonly settings: A }

const help = Result.succeed({ _tag: "Help" } as const)
const run = <A>(settings: A): Command<A> => ({ _tag: "Run", settings })
/** `--help` before any `--`. */
const longHelp = (args: ReadonlyArray<string>) => {
  const end = args.indexOf("--")
  return (end < 0 ? args : args.slice(0, end)).includes("--help")
}

// ---------------------------------------------------------------------------------------------------------------
// niblogd
// ---------------------------------------------------------------------------------------------------------------

/** niblogd's settings, decoded. @category models */
export const LogdSettings = Schema.Struct({
  /** `-d`, once per level. */
  debug: Schema.Int,
  /** `-f`: stay in the foreground. */
  foreground: Schema.Boolean,
  /** `-b`: penlogd's line buffering; niblogd always writes each line at once. */
  lineBuffered: Schema.Boolean,
  /** `-l`: the output file (else stdout). */
  logFile: Schema.UndefinedOr(Path),
  /** `-n`: records kept in the ring. */
  ringSize: AtLeastOne,
  /** `-p`: the pid file. */
  pidFile: Schema.UndefinedOr(Path),
  /** `-u`: the user to run as. */
  user: Schema.UndefinedOr(Schema.NonEmptyString),
  /** The UDP port to receive on (all IPv4 addresses). */
  port: Port
})
/** niblogd's settings. @category models */
export type LogdSettings = typeof LogdSettings.Type

/** niblogd's usage, penlogd's shape. @category constants */
export const LOGD_USAGE = `Usage:
  niblogd [options] port

  -d        debugging on (repeat for more)
  -f        stay in foreground
  -l file   write log to file (else stdout)
  -b        line-buffered output (niblogd always writes each line at once)
  -n N      number of balancer log entries to cache [${DEFAULT_RING_SIZE}]
  -p file   write pid to file
  -u user   run as alternative user
`

/** The message for penlogd's `-j`, which Node cannot do. */
export const CHROOT_REFUSED =
  "-j (chroot) is not available: Node cannot chroot; run niblogd in a container or under systemd's RootDirectory="

/**
 * Reads `niblogd [-d] [-f] [-b] [-j dir] [-l file] [-n N] [-p pidfile] [-u user] port`.
 *
 * @category parsing
 */
export const parseLogd = (args: ReadonlyArray<string>): Result.Result<Command<LogdSettings>, string> => {
  if (args.length === 0 || longHelp(args)) return help
  const parsed = getopt(args, { withValue: "jlnpu", flags: "dfbh" })
  if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
  const { operands, options } = parsed.success
  if (options.some((o) => o.flag === "h")) return help
  const last = (flag: string) => options.filter((o) => o.flag === flag).at(-1)?.value
  if (last("j") !== undefined) return Result.fail(CHROOT_REFUSED)
  if (operands.length === 0) return Result.fail("no port given")
  if (operands.length > 1) return Result.fail(`unexpected argument '${operands[1]}' after the port`)
  return decode(LogdSettings, {
    debug: options.filter((o) => o.flag === "d").length,
    foreground: options.some((o) => o.flag === "f"),
    lineBuffered: options.some((o) => o.flag === "b"),
    logFile: last("l"),
    ringSize: last("n") ?? String(DEFAULT_RING_SIZE),
    pidFile: last("p"),
    user: last("u"),
    port: operands[0]
  }, { logFile: "-l", ringSize: "-n", pidFile: "-p", user: "-u", port: "port" }).pipe(Result.map(run))
}

// ---------------------------------------------------------------------------------------------------------------
// niblog
// ---------------------------------------------------------------------------------------------------------------

/** niblog's settings, decoded; names are resolved by the program. @category models */
export const SendSettings = Schema.Struct({
  /** The niblogd (or penlogd) host. */
  host: Schema.NonEmptyString,
  /** Its UDP port. */
  port: Port,
  /** The local address to send from, if given. */
  localAddress: Schema.UndefinedOr(Schema.NonEmptyString)
})
/** niblog's settings. @category models */
export type SendSettings = typeof SendSettings.Type

/** niblog's usage line, penlog's words. @category constants */
export const SEND_USAGE = "Usage: niblog server_ip server_port [my_ip]"

/**
 * Reads `niblog server_ip server_port [my_ip]`; `udpServices` looks a port name up (`/etc/services`, UDP), as
 * getaddrinfo does for penlog.
 *
 * @category parsing
 */
export const parseSend = (
  args: ReadonlyArray<string>,
  udpServices: (name: string) => number | undefined
): Result.Result<Command<SendSettings>, string> => {
  if (args.length === 1 && (args[0] === "--help" || args[0] === "-h")) return help
  if (args.length < 2) return Result.fail(SEND_USAGE)
  if (args.length > 3) return Result.fail(`unexpected argument '${args[3]}' after my_ip`)
  const [host, portText, localAddress] = args as [string, string, string | undefined]
  let port = portText
  if (!/^[+-]?\d+$/.test(portText)) {
    const named = udpServices(portText)
    if (named === undefined) return Result.fail(`server_port '${portText}': not a port number or a UDP service name`)
    port = String(named)
  }
  return decode(SendSettings, { host, port, localAddress }, {
    host: "server_ip",
    port: "server_port",
    localAddress: "my_ip"
  }).pipe(Result.map(run))
}

/**
 * A lookup of UDP service names in the text of `/etc/services` (lines `name port/udp aliases...`).
 *
 * @category parsing
 */
export const udpServices = (text: string) => {
  const table = new Map<string, number>()
  for (const raw of text.split("\n")) {
    const [name, portProto, ...aliases] = raw.replace(/#.*/, "").trim().split(/\s+/)
    const match = /^(\d+)\/udp$/.exec(portProto ?? "")
    if (name === undefined || name === "" || match === null) continue
    for (const n of [name, ...aliases]) if (!table.has(n)) table.set(n, Number(match[1]))
  }
  return (name: string): number | undefined => table.get(name)
}

// ---------------------------------------------------------------------------------------------------------------
// nibmergelogs
// ---------------------------------------------------------------------------------------------------------------

/** nibmergelogs' settings, decoded. @category models */
export const MergeSettings = Schema.Struct({
  /** `-p`: the balancer's `-l` file. */
  fileLog: Path,
  /** Not `-c`: records are cached within the jitter window. */
  cache: Schema.Boolean,
  /** `-d`, once per level: notes on stderr. */
  debug: Schema.Int,
  /** `-j`: the jitter window, in seconds. */
  jitter: AtLeastZero,
  /** `-t`: seconds subtracted from the balancer's timestamps (its clock minus UTC). */
  tzOffset: Integer,
  /** `server:logfile` arguments, in order. */
  logs: Schema.NonEmptyArray(Schema.Struct({ server: Schema.NonEmptyString, path: Path }))
})
/** nibmergelogs' settings. @category models */
export type MergeSettings = typeof MergeSettings.Type

/** nibmergelogs' usage, mergelogs' shape (with the default jitter it really has). @category constants */
export const MERGE_USAGE = `Usage: nibmergelogs -p penlog [-c] [-d] [-j jitter] [-t seconds] \\
        server1:logfile1 [server2:logfile2 ...]

  -c                Do not use penlog cache
  -d                Debugging (repeat for more)
  -p penlog         Log file from pen or nib (-l file)
  -j jitter         Jitter in seconds [${DEFAULT_JITTER}]
  -t seconds        Seconds the balancer's clock is ahead of UTC
  server:logfile    Web server address and name of logfile ([v6addr]:logfile for IPv6)
`

/**
 * Reads `nibmergelogs -p penlog [-c] [-d] [-j jitter] [-t tzoffset] server:logfile ...`.
 *
 * @category parsing
 */
export const parseMerge = (args: ReadonlyArray<string>): Result.Result<Command<MergeSettings>, string> => {
  if (args.length === 0 || longHelp(args)) return help
  const parsed = getopt(args, { withValue: "pjt", flags: "cdh" })
  if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
  const { operands, options } = parsed.success
  if (options.some((o) => o.flag === "h")) return help
  const last = (flag: string) => options.filter((o) => o.flag === flag).at(-1)?.value
  const fileLog = last("p")
  if (fileLog === undefined) return Result.fail("no -p penlog given")
  const logs: Array<{ readonly server: string; readonly path: string }> = []
  for (const operand of operands) {
    const log = parseServerArgument(operand)
    if (log === undefined || log.server === "" || log.path === "") {
      return Result.fail(`'${operand}' is not server:logfile`)
    }
    logs.push(log)
  }
  if (!Arr.isArrayNonEmpty(logs)) return Result.fail("no server:logfile given")
  return decode(MergeSettings, {
    fileLog,
    cache: !options.some((o) => o.flag === "c"),
    debug: options.filter((o) => o.flag === "d").length,
    jitter: last("j") ?? String(DEFAULT_JITTER),
    tzOffset: last("t") ?? "0",
    logs
  }, { fileLog: "-p", jitter: "-j", tzOffset: "-t" }).pipe(Result.map(run))
}
