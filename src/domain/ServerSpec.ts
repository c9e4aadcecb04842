/**
 * A server as pen's command line gives it: `host[:port[:maxc[:hard[:weight[:prio]]]]]`, with IPv6 hosts in brackets
 * and Unix socket paths, a missing port meaning the listen port. Also the `-e` emergency server's syntax.
 */
import { Result } from "effect"
import * as Address from "./Address.ts"

/** One configured server and its limits. @category models */
export interface ServerSpec {
  readonly endpoint: Address.Endpoint
  /** Soft limit on live connections; 0 means unlimited. */
  readonly softLimit: number
  /** Limit for the server's sticky clients once the soft limit is reached. */
  readonly hardLimit: number
  /** Weight for `-W` selection; 0 means never chosen by weight. */
  readonly weight: number
  /** Priority for prio selection; lower wins. */
  readonly prio: number
  /**
   * The host name the endpoint's address was resolved from (`web1` of `web1:80`), kept so that it can be resolved
   * again (`--resolve-interval`); undefined for an IP address or a socket path, and before resolution.
   */
  readonly name?: string | undefined
}

const FIELDS = ["maxc", "hard", "weight", "prio"] as const

/**
 * Parses a server spec. `defaultPort` is the listen port, used when the spec has none (`undefined` when nib listens on
 * a Unix socket, in which case a TCP server must name its port).
 *
 * @category parsing
 */
export const parse = (
  text: string,
  defaultPort: number | undefined,
  services: Address.ServiceNames
): Result.Result<ServerSpec, string> => {
  let host: string
  let rest: Array<string>
  if (text.startsWith("[")) {
    const close = text.indexOf("]")
    if (close < 0) return Result.fail(`missing ']' in '${text}'`)
    host = text.slice(1, close)
    const tail = text.slice(close + 1)
    if (tail !== "" && !tail.startsWith(":")) return Result.fail(`expected ':' after ']' in '${text}'`)
    rest = tail === "" ? [] : tail.slice(1).split(":")
  } else {
    ;[host = "", ...rest] = text.split(":")
  }
  if (host === "") return Result.fail(`the address is empty in '${text}'`)
  if (rest.length > 5) return Result.fail(`too many ':' fields in '${text}' (host:port:maxc:hard:weight:prio)`)
  const [portText, ...numbers] = rest
  const values = [0, 0, 0, 0]
  for (let i = 0; i < numbers.length; i++) {
    const field = numbers[i]!
    if (!/^\d+$/.test(field)) return Result.fail(`${FIELDS[i]} '${field}' is not a whole number in '${text}'`)
    values[i] = Number(field)
  }
  const limits = { softLimit: values[0]!, hardLimit: values[1]!, weight: values[2]!, prio: values[3]! }
  if (host.includes("/")) return Result.succeed({ endpoint: Address.unix(host), ...limits })
  if (portText === undefined || portText === "") {
    return defaultPort === undefined
      ? Result.fail(`'${text}' needs a port (nib listens on a Unix socket)`)
      : Result.succeed({ endpoint: Address.tcp(host, defaultPort), ...limits })
  }
  return Result.match(Address.parsePort(portText, services), {
    onFailure: (message) => Result.fail(`${message} in '${text}'`),
    onSuccess: (port) => Result.succeed({ endpoint: Address.tcp(host, port), ...limits })
  })
}

/** A server at `endpoint` with no limits, weight or priority, unless given. @category constructors */
export const make = (endpoint: Address.Endpoint, limits: Partial<Omit<ServerSpec, "endpoint">> = {}): ServerSpec => ({
  endpoint,
  softLimit: 0,
  hardLimit: 0,
  weight: 0,
  prio: 0,
  ...limits
})

/**
 * How nibs sharing one table name a server to each other (`--peers`): `name:port` for a server given by host name
 * (its address may change, and may differ from one nib's resolver to another's), its address otherwise
 * (`host:port`, `[v6]:port`, a socket path). Never its index: two nibs may list their servers in other orders.
 *
 * @category formatting
 */
export const identity = (spec: ServerSpec): string =>
  spec.name !== undefined && spec.endpoint._tag === "Tcp"
    ? Address.format(Address.tcp(spec.name, spec.endpoint.port))
    : Address.format(spec.endpoint)
