/**
 * Addresses as pen writes them: the listen address (`port`, `host:port` split at the last colon, `::1:8080`, a Unix
 * socket path) plus the bracketed `[::1]:8080` that pen cannot parse, and ports given as numbers or service names.
 *
 * Pure: service names are looked up through a table passed in, so nothing here reads `/etc/services`.
 */
import { Result } from "effect"

/** A TCP endpoint; `host` is an address or name, `0.0.0.0` meaning every IPv4 interface as in pen. */
export interface TcpEndpoint {
  readonly _tag: "Tcp"
  readonly host: string
  readonly port: number
}

/** A Unix-domain stream socket path. */
export interface UnixEndpoint {
  readonly _tag: "Unix"
  readonly path: string
}

/** Where to listen or connect. @category models */
export type Endpoint = TcpEndpoint | UnixEndpoint

/** Builds a TCP endpoint. @category constructors */
export const tcp = (host: string, port: number): TcpEndpoint => ({ _tag: "Tcp", host, port })

/** Builds a Unix socket endpoint. @category constructors */
export const unix = (path: string): UnixEndpoint => ({ _tag: "Unix", path })

/** Looks up a service name (`http`, `smtp`) to its TCP port, as getservbyname(3) does. */
export type ServiceNames = (name: string) => number | undefined

/** The services every Unix system knows, used when `/etc/services` cannot be read. @category constructors */
export const wellKnownServices: ServiceNames = (name) => WELL_KNOWN[name]

const WELL_KNOWN: Record<string, number> = {
  ftp: 21,
  ssh: 22,
  telnet: 23,
  smtp: 25,
  domain: 53,
  http: 80,
  pop3: 110,
  imap2: 143,
  imap: 143,
  https: 443,
  submission: 587,
  imaps: 993,
  pop3s: 995,
  mysql: 3306,
  postgresql: 5432
}

/** Parses `/etc/services` text into a lookup (tcp entries and their aliases). @category constructors */
export const parseServicesFile = (text: string): ServiceNames => {
  const table = new Map<string, number>()
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim()
    if (line === "") continue
    const [name, portProto, ...aliases] = line.split(/\s+/)
    const match = /^(\d+)\/tcp$/.exec(portProto ?? "")
    if (name === undefined || match === null) continue
    const port = Number(match[1])
    for (const n of [name, ...aliases]) if (!table.has(n)) table.set(n, port)
  }
  return (name) => table.get(name) ?? WELL_KNOWN[name]
}

/**
 * Parses a port: a decimal number in 1..65535 (0 too when `allowZero`: a listener's "any free port"), or a service
 * name.
 *
 * @category parsing
 */
export const parsePort = (
  text: string,
  services: ServiceNames,
  allowZero = false
): Result.Result<number, string> => {
  if (/^\d+$/.test(text)) {
    const port = Number(text)
    const min = allowZero ? 0 : 1
    return port >= min && port <= 65535
      ? Result.succeed(port)
      : Result.fail(`port ${text} is out of range (${min}-65535)`)
  }
  if (text === "") return Result.fail("the port is missing")
  const port = services(text)
  return port === undefined ? Result.fail(`unknown service name '${text}'`) : Result.succeed(port)
}

/**
 * Parses a listen address with pen's rules: a path containing `/` is a Unix socket; `[v6]:port` is nib's addition;
 * otherwise the text is split at its last colon, and a bare port listens on every IPv4 interface. Port 0 (nib's
 * addition) asks the system for a free port.
 *
 * @category parsing
 */
export const parseListen = (text: string, services: ServiceNames): Result.Result<Endpoint, string> => {
  if (text.includes("/")) return Result.succeed(unix(text))
  if (text.startsWith("[")) {
    const close = text.indexOf("]")
    if (close < 0 || text[close + 1] !== ":") return Result.fail(`expected [address]:port in '${text}'`)
    const host = text.slice(1, close)
    if (host === "") return Result.fail(`the address is empty in '${text}'`)
    return Result.map(parsePort(text.slice(close + 2), services, true), (port) => tcp(host, port))
  }
  const colon = text.lastIndexOf(":")
  const host = colon < 0 ? "0.0.0.0" : text.slice(0, colon)
  return Result.map(
    parsePort(text.slice(colon + 1), services, true),
    (port) => tcp(host === "" ? "0.0.0.0" : host, port)
  )
}

/** Formats an endpoint the way nib prints it: `host:port`, `[v6]:port` or the socket path. @category formatting */
export const format = (endpoint: Endpoint): string =>
  endpoint._tag === "Unix"
    ? endpoint.path
    : endpoint.host.includes(":")
    ? `[${endpoint.host}]:${endpoint.port}`
    : `${endpoint.host}:${endpoint.port}`
