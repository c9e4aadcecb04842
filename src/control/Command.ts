/**
 * pen's control language, decoded: one line of the control port, of a `-F` file, of `include`, or of `-O`, turned into
 * a typed command or into a message that says what was wrong. Sans-IO; `Control` executes what this decodes.
 *
 * The lexical rules are pen's: words are separated by spaces only (a tab is part of a word), case matters, an empty
 * line or one whose first word starts with `#` is nothing, and an unknown first word is answered with pen's
 * `do_cmd: ignoring command starting with '<word>'`. Unlike pen, a known command with a bad argument is not run with
 * `atoi`'s zero: it is refused with a message naming the argument.
 */
import { isIP } from "node:net"
import * as Acl from "../domain/Acl.ts"
import * as HealthCheck from "../domain/HealthCheck.ts"
import type { PolicyFlag, ServerChange } from "../domain/Pool.ts"
import * as SocketOptions from "../domain/SocketOptions.ts"
import * as TlsSettings from "../domain/TlsSettings.ts"

export type { ServerChange }

/** The numeric settings: `NAME` reads one, `NAME N` sets it. @category constants */
export const KNOBS = [
  "blacklist",
  "client_acl",
  "clients_max",
  "conn_max",
  "control_acl",
  "debug",
  "timeout",
  "tracking",
  "idle_timeout",
  "pending_max",
  "tarpit_acl",
  "idlers"
] as const

/** A numeric setting. @category models */
export type Knob = (typeof KNOBS)[number]

/** The selection flags: `NAME` sets one, `no NAME` clears it. @category constants */
export const FLAGS = ["hash", "roundrobin", "stubborn", "weight", "prio"] as const satisfies ReadonlyArray<PolicyFlag>

/** A selection flag. @category models */
export type Flag = (typeof FLAGS)[number]

/**
 * Switches pen has that change nothing nib does (event backends, dump formats): accepted and answered as pen answers
 * them, with nothing. @category constants
 */
export const IGNORED = ["abort_on_error", "ascii", "epoll", "kqueue", "poll", "select"] as const

/** A switch nib accepts and ignores. @category models */
export type Ignored = (typeof IGNORED)[number]

/** One decoded command. @category models */
export type Command =
  | { readonly _tag: "Nothing" }
  | { readonly _tag: "Get"; readonly knob: Knob }
  | { readonly _tag: "Set"; readonly knob: Knob; readonly value: number }
  | { readonly _tag: "Flag"; readonly flag: Flag; readonly on: boolean }
  /** pen's `http` / `no http`: X-Forwarded-For and X-Forwarded-Proto on the connections that start from now on. */
  | { readonly _tag: "Http"; readonly on: boolean }
  | { readonly _tag: "Ignored"; readonly name: Ignored }
  /** An `ssl_*` command without its argument: the setting is shown. */
  | { readonly _tag: "TlsGet"; readonly setting: TlsSettings.CommandName }
  /** An `ssl_*` command: TLS clients that connect from now on get the changed settings. */
  | { readonly _tag: "TlsSet"; readonly change: TlsSettings.Change }
  /** `keepalive`, `tcp_nodelay`, `tcp_fastclose MODE`, their `no` forms, and `no source`. */
  | { readonly _tag: "Sockets"; readonly change: SocketOptions.Change }
  /** `source ADDRESS`: server sockets are bound to it (resolved and checked when run); `source` alone shows it. */
  | { readonly _tag: "Source"; readonly address: string | undefined }
  | { readonly _tag: "Unsupported"; readonly name: string; readonly why: string }
  | { readonly _tag: "Acl"; readonly list: number; readonly entry: Acl.Entry }
  | { readonly _tag: "NoAcl"; readonly list: number }
  | { readonly _tag: "Close"; readonly connection: number }
  | { readonly _tag: "Connection"; readonly connection: number }
  | { readonly _tag: "Socket"; readonly fd: number }
  | { readonly _tag: "Control" }
  | { readonly _tag: "Exit" }
  | { readonly _tag: "Include"; readonly file: string }
  | { readonly _tag: "Listen"; readonly address: string | undefined }
  | { readonly _tag: "Log"; readonly target: string | undefined }
  | { readonly _tag: "NoLog" }
  | { readonly _tag: "Mode" }
  | { readonly _tag: "Pid" }
  | { readonly _tag: "Recent"; readonly seconds: number }
  | { readonly _tag: "Server"; readonly index: number; readonly changes: ReadonlyArray<ServerChange> }
  | { readonly _tag: "Servers" }
  | { readonly _tag: "Status" }
  | { readonly _tag: "WebStats"; readonly file: string | undefined }
  | { readonly _tag: "NoWebStats" }
  | { readonly _tag: "Write"; readonly file: string | undefined }
  /** nib's `explain IP`: the server a new connection from IP would get now, and why. */
  | { readonly _tag: "Explain"; readonly client: string }
  /** nib's `workers`: each worker thread, its live connections and restarts (`--workers`); `workers crash N` is a test hook. */
  | { readonly _tag: "Workers"; readonly crash: number | undefined }

/** A line that could not be decoded; `reply` is the line the control client gets. @category models */
export interface Invalid {
  readonly _tag: "Invalid"
  readonly reply: string
}

/** The longest command line nib reads, as pen (one `recv` of at most 4095 bytes). @category constants */
export const MAX_LINE = 4095

const oneOf = <T extends string>(words: ReadonlyArray<T>) => (word: string): word is T =>
  (words as ReadonlyArray<string>).includes(word)
const isKnob = oneOf(KNOBS)
const isFlag = oneOf(FLAGS)
const isIgnored = oneOf(IGNORED)
const isTls = oneOf(TlsSettings.COMMANDS)
const isTlsOption = oneOf(TlsSettings.OPTIONS)
/** Why nib has no direct server return (pen's `dsr_if`, `dsr_ip`, and its `tarpit_acl`, which DSR serves). */
const DSR = "direct server return needs raw Ethernet frames, which Node cannot send: nib relays through its own sockets"
const TARPIT = "the tarpit of direct server return answers ARP and SYNs with raw packets, which Node cannot send"
/** pen features nib does not have (yet), with what to say when asked for them. */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  transparent: "transparent proxying is not available on Node: --send-proxy v1|v2 passes client addresses to servers",
  dsr_if: DSR,
  dsr_ip: DSR,
  dummy: "the built-in test server is not supported",
  peek: "pen's unfinished peek feature is not supported"
}
/** Knobs whose setting may be negative (pen clamps or maps those values itself). */
const SIGNED: ReadonlySet<string> = new Set(["tarpit_acl", "idle_timeout", "pending_max", "client_acl", "control_acl"])
const SERVER_KEYS: ReadonlySet<string> = new Set([
  "address",
  "port",
  "max",
  "hard",
  "weight",
  "prio",
  "blacklist",
  "acl",
  "proxy",
  "check"
])

const invalid = (reply: string): Invalid => ({ _tag: "Invalid", reply: reply.endsWith("\n") ? reply : reply + "\n" })

const INTEGER = /^-?\d+$/
const integer = (text: string | undefined): number | undefined =>
  text !== undefined && INTEGER.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : undefined

const needInteger = (command: string, what: string, text: string | undefined, signed = false) => {
  const n = integer(text)
  if (n === undefined) {
    return invalid(
      text === undefined ? `${command}: ${what} is missing` : `${command}: ${what} '${text}' is not a whole number`
    )
  }
  if (!signed && n < 0) return invalid(`${command}: ${what} '${text}' must not be negative`)
  return n
}

/** Splits a line as pen's `strtok(line, " ")` does: on spaces only, empty words dropped. @category parsing */
export const words = (line: string): Array<string> => line.split(" ").filter((w) => w !== "")

/** The command of a line: the text before its first CR or LF (later lines are ignored, as pen does). */
export const firstLine = (text: string): string => {
  const end = text.search(/[\r\n]/)
  return end < 0 ? text : text.slice(0, end)
}

/** Decodes one line (without its line end). @category parsing */
export const parse = (line: string): Command | Invalid => {
  const [head, ...args] = words(line)
  if (head === undefined || head.startsWith("#")) return { _tag: "Nothing" }
  if (head === "no") return parseNo(args)
  // The tarpit answers ARP and SYNs with raw packets, for DSR: only its query (and -1, none) is pen's.
  if (head === "tarpit_acl" && args[0] !== undefined && args[0] !== "-1") {
    return { _tag: "Unsupported", name: head, why: TARPIT }
  }
  if (isKnob(head)) {
    const knob = head
    if (args[0] === undefined) return { _tag: "Get", knob }
    const value = needInteger(head, "the value", args[0], SIGNED.has(head))
    return typeof value === "number" ? { _tag: "Set", knob, value } : value
  }
  if (isFlag(head)) return { _tag: "Flag", flag: head, on: true }
  if (head === "http") return { _tag: "Http", on: true }
  if (isIgnored(head)) return { _tag: "Ignored", name: head }
  if (head in UNSUPPORTED) return { _tag: "Unsupported", name: head, why: UNSUPPORTED[head]! }
  if (isTls(head)) return parseTls(head, args[0])
  switch (head) {
    case "acl": {
      const result = Acl.parseCommand(args)
      return result._tag === "Ok" ? { _tag: "Acl", list: result.list, entry: result.entry } : invalid(result.message)
    }
    case "close":
    case "connection": {
      const n = needInteger(head, "the connection number", args[0], true)
      if (typeof n !== "number") return n
      return head === "close" ? { _tag: "Close", connection: n } : { _tag: "Connection", connection: n }
    }
    case "socket": {
      const n = needInteger(head, "the file descriptor", args[0], true)
      return typeof n === "number" ? { _tag: "Socket", fd: n } : n
    }
    case "keepalive":
    case "tcp_nodelay":
      return { _tag: "Sockets", change: { setting: head, on: true } }
    case "tcp_fastclose":
      // pen takes a word it does not know as off, and only a missing one as a mistake.
      return args[0] === undefined
        ? invalid("do_cmd: ignoring tcp_fastclose without argument")
        : { _tag: "Sockets", change: { setting: head, value: SocketOptions.parseFastClose(args[0]) } }
    case "source":
      return { _tag: "Source", address: args[0] }
    case "control":
      return { _tag: "Control" }
    case "exit":
      return { _tag: "Exit" }
    case "include":
      return args[0] === undefined ? invalid("Usage: include filename") : { _tag: "Include", file: args[0] }
    case "listen":
      return { _tag: "Listen", address: args[0] }
    case "log":
      return { _tag: "Log", target: args[0] }
    case "mode":
      return { _tag: "Mode" }
    case "pid":
      return { _tag: "Pid" }
    case "recent": {
      if (args[0] === undefined) return { _tag: "Recent", seconds: 300 }
      const n = needInteger(head, "the number of seconds", args[0])
      return typeof n === "number" ? { _tag: "Recent", seconds: n } : n
    }
    case "server":
      return parseServer(args)
    case "servers":
      return { _tag: "Servers" }
    case "status":
      return { _tag: "Status" }
    case "web_stats":
      return { _tag: "WebStats", file: args[0] }
    case "write":
      return { _tag: "Write", file: args[0] }
    case "workers": {
      if (args[0] === undefined) return { _tag: "Workers", crash: undefined }
      if (args[0] !== "crash") return invalid(`workers: '${args[0]}' is not a subcommand (workers alone lists them)`)
      const n = needInteger("workers crash", "the worker number", args[1], true)
      return typeof n === "number" ? { _tag: "Workers", crash: n } : n
    }
    case "explain":
      if (args[0] === undefined) return invalid("explain: the client's IP address is missing")
      return isIP(args[0]) === 0
        ? invalid(`explain: '${args[0]}' is not an IP address`)
        : { _tag: "Explain", client: args[0] }
  }
  return invalid(`do_cmd: ignoring command starting with '${head}'`)
}

const parseTls = (setting: TlsSettings.CommandName, value: string | undefined): Command | Invalid => {
  if (value === undefined) return { _tag: "TlsGet", setting }
  switch (setting) {
    case "ssl_option":
      return isTlsOption(value)
        ? { _tag: "TlsSet", change: { setting, value } }
        : invalid(`ssl_option: '${value}' is not one of ${TlsSettings.OPTIONS.join(", ")}`)
    case "ssl_client_renegotiation_interval": {
      const n = needInteger(setting, "the number of seconds", value)
      return typeof n === "number" ? { _tag: "TlsSet", change: { setting, value: n } } : n
    }
    default:
      return { _tag: "TlsSet", change: { setting, value } }
  }
}

const parseNo = (args: ReadonlyArray<string>): Command | Invalid => {
  const [what, ...rest] = args
  if (what === undefined) return { _tag: "Nothing" }
  if (isFlag(what)) return { _tag: "Flag", flag: what, on: false }
  if (what === "http") return { _tag: "Http", on: false }
  if (isIgnored(what) || what in UNSUPPORTED) return { _tag: "Nothing" }
  switch (what) {
    case "acl": {
      const result = Acl.parseNoAcl(rest)
      return result._tag === "Ok" ? { _tag: "NoAcl", list: result.list } : invalid(result.message)
    }
    case "log":
      return { _tag: "NoLog" }
    case "web_stats":
      return { _tag: "NoWebStats" }
    case "keepalive":
    case "tcp_nodelay":
      return { _tag: "Sockets", change: { setting: what, on: false } }
    // nib's own (pen has no way back to the system's choice of address).
    case "source":
      return { _tag: "Sockets", change: { setting: what, address: undefined } }
  }
  // pen ignores an unknown `no X` silently.
  return { _tag: "Nothing" }
}

const parseServer = (args: ReadonlyArray<string>): Command | Invalid => {
  const index = needInteger("server", "the server number", args[0])
  if (typeof index !== "number") return index
  const changes: Array<ServerChange> = []
  for (let i = 1; i < args.length; i += 2) {
    const key = args[i]!
    const value = args[i + 1]
    // pen skips keys it does not know, with their value.
    if (!SERVER_KEYS.has(key)) continue
    if (value === undefined) return invalid(`server ${index}: ${key} needs a value`)
    if (key === "address") {
      changes.push({ key, value })
      continue
    }
    // nib's own: the PROXY protocol header this server gets.
    if (key === "proxy") {
      if (value !== "v1" && value !== "v2" && value !== "none") {
        return invalid(`server ${index}: proxy '${value}' is not v1, v2 or none`)
      }
      changes.push({ key, value })
      continue
    }
    // nib's own: the server's active check (`none`: not checked).
    if (key === "check") {
      const check = value === "none" ? undefined : HealthCheck.parse(value)
      if (typeof check === "string") return invalid(`server ${index}: check ${check}, or none`)
      changes.push({ key, value: check })
      continue
    }
    const n = needInteger(`server ${index}`, key, value)
    if (typeof n !== "number") return n
    if (key === "port" && (n < 1 || n > 65535)) return invalid(`server ${index}: port '${value}' is not 1-65535`)
    changes.push({ key: key as Exclude<ServerChange["key"], "address" | "proxy" | "check">, value: n })
  }
  return { _tag: "Server", index, changes }
}
