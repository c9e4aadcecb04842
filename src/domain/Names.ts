/**
 * Names that follow DNS, the rules without the I/O: the DNS server `--resolver` names, which address a server takes
 * when its name is resolved again, and the lines nib logs about it. `control/FollowDns.ts` runs them every
 * `--resolve-interval` seconds; `net/Resolve.ts` asks the questions.
 */
import { Result } from "effect"
import * as Acl from "./Acl.ts"

/** A DNS server to ask (`--resolver`): an IP address and a port. @category models */
export interface ResolverAddress {
  readonly host: string
  readonly port: number
}

/** DNS's port, when `--resolver` gives none. @category constants */
export const DNS_PORT = 53

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/

const isIpv6 = (text: string) => text.includes(":") && Acl.parseIpv6(text) !== undefined

/**
 * Parses `--resolver`: `IPV4[:PORT]`, `[IPV6][:PORT]` or a bare IPv6 address, the port 53 when not given. A host name
 * is refused: the resolver is what names are asked of, so it cannot be one.
 *
 * @category parsing
 */
export const parseResolver = (text: string): Result.Result<ResolverAddress, string> => {
  let host: string
  let portText: string | undefined
  if (text.startsWith("[")) {
    const close = text.indexOf("]")
    if (close < 0) return Result.fail(`missing ']' in '${text}'`)
    host = text.slice(1, close)
    const tail = text.slice(close + 1)
    if (tail !== "" && !tail.startsWith(":")) return Result.fail(`expected [address]:port in '${text}'`)
    portText = tail === "" ? undefined : tail.slice(1)
    if (!isIpv6(host)) return Result.fail(`'${host}' is not an IPv6 address`)
  } else if (isIpv6(text)) {
    host = text
  } else {
    const colon = text.lastIndexOf(":")
    host = colon < 0 ? text : text.slice(0, colon)
    portText = colon < 0 ? undefined : text.slice(colon + 1)
    if (!IPV4.test(host)) {
      return Result.fail(`'${host}' is not an IP address (the DNS server's address: HOST:PORT, HOST an IP address)`)
    }
  }
  if (portText === undefined) return Result.succeed({ host, port: DNS_PORT })
  const port = /^\d+$/.test(portText) ? Number(portText) : Number.NaN
  if (!(port >= 1 && port <= 65535)) return Result.fail(`port '${portText}' is not a port number (1-65535)`)
  return Result.succeed({ host, port })
}

/** A resolver's address as node:dns `setServers` takes it: `127.0.0.1:5353`, `[::1]:5353`. @category formatting */
export const formatResolver = (resolver: ResolverAddress): string =>
  resolver.host.includes(":") ? `[${resolver.host}]:${resolver.port}` : `${resolver.host}:${resolver.port}`

/** One resolution of a name: the addresses it gave (in the answer's order), or why it gave none. @category models */
export type Answer =
  | { readonly _tag: "Addresses"; readonly addresses: ReadonlyArray<string> }
  | { readonly _tag: "Failed"; readonly reason: string }

/**
 * The address a server takes after its name resolved to `addresses`: the one it has, while the name still gives it
 * (a name with several addresses, rotated by its DNS server, does not move its server at each resolution, as with
 * haproxy's resolvers), else the first.
 */
export const pick = (current: string, addresses: ReadonlyArray<string>): string | undefined =>
  addresses.includes(current) ? current : addresses[0]

/** What follows one resolution of a server's name. @category models */
export interface Step {
  /** The server's new address, or undefined: it keeps the one it has. */
  readonly address: string | undefined
  /** Whether the name fails to resolve now (its server keeps its last address). */
  readonly failing: boolean
  /** What to log: the name stopped or started resolving again (each said once), the address changed. */
  readonly lines: ReadonlyArray<string>
}

/**
 * The step after `answer`, for the server `label` (`server 0`, `emergency server`, `abuse server`) named `name`, at
 * address `current`, whose name `failing` or not at the last resolution. A name that stops resolving keeps its
 * server's address; nib says so once, and once again when it resolves again.
 */
export const step = (label: string, name: string, current: string, failing: boolean, answer: Answer): Step => {
  const addresses = answer._tag === "Addresses" ? answer.addresses : []
  const next = pick(current, addresses)
  if (next === undefined) {
    const reason = answer._tag === "Failed" ? answer.reason : "no address"
    return {
      address: undefined,
      failing: true,
      lines: failing ? [] : [`${label}: ${name} no longer resolves (${reason}); keeping its last address ${current}`]
    }
  }
  return {
    address: next === current ? undefined : next,
    failing: false,
    lines: [
      ...(failing ? [`${label}: ${name} resolves again`] : []),
      ...(next === current ? [] : [`${label}: ${name} changed address: ${current} -> ${next}`])
    ]
  }
}
