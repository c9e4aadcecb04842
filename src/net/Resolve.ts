/**
 * Resolves server host names: at start-up, as pen does (the first address, like getaddrinfo), so that no connection
 * pays for a DNS lookup, when `server N address NAME` changes one, and every `--resolve-interval` seconds
 * (`control/FollowDns.ts`). Names are asked of the system's resolver (getaddrinfo: /etc/hosts, then DNS), or with
 * `--resolver` of that DNS server alone: its A records, then its AAAA records when it has no A record.
 */
import { Data, Effect } from "effect"
import * as Dns from "node:dns"
import * as Net from "node:net"
import * as Address from "../domain/Address.ts"
import * as Names from "../domain/Names.ts"

/** A host name that does not resolve. @category errors */
export class ResolveError extends Data.TaggedError("ResolveError")<{ readonly host: string; readonly cause: unknown }> {
  override get message(): string {
    return `unknown or invalid address [${this.host}]`
  }

  /** Why, in a word where DNS gives one (`ENOTFOUND`, `ETIMEOUT`, `ECONNREFUSED`, ...). */
  get reason(): string {
    const code = (this.cause as NodeJS.ErrnoException | undefined)?.code
    return typeof code === "string" ? code : this.cause instanceof Error ? this.cause.message : String(this.cause)
  }
}

/** Every address of a host name, in the answer's order (never empty). @category models */
export type Lookup = (host: string) => Effect.Effect<ReadonlyArray<string>, ResolveError>

/** How long the DNS server of `--resolver` has to answer one query, and how many times it is asked. */
const QUERY_TIMEOUT_MS = 2000
const QUERY_TRIES = 2

/** The system's resolver (getaddrinfo), as pen's. @category constructors */
export const system: Lookup = (host) =>
  Effect.tryPromise({
    try: () => Dns.promises.lookup(host, { all: true }),
    catch: (cause) => new ResolveError({ host, cause })
  }).pipe(
    Effect.flatMap((found) =>
      found.length > 0
        ? Effect.succeed(found.map((a) => a.address))
        : Effect.fail(new ResolveError({ host, cause: new Error("no address") }))
    )
  )

/** A name with no record of the type asked (it may have the other). */
const noData = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code === Dns.NODATA

/**
 * The DNS server at `server` alone, with no cache (each resolution asks it): A records, then AAAA records when the
 * name has no A record. A resolution interrupted cancels its queries. @category constructors
 */
export const fromServer = (server: Names.ResolverAddress): Lookup => {
  const address = Names.formatResolver(server)
  return (host) =>
    Effect.tryPromise({
      try: async (signal) => {
        const resolver = new Dns.promises.Resolver({ timeout: QUERY_TIMEOUT_MS, tries: QUERY_TRIES })
        resolver.setServers([address])
        signal.addEventListener("abort", () => resolver.cancel(), { once: true })
        const v4 = await resolver.resolve4(host).catch((error: unknown) => noData(error) ? [] : Promise.reject(error))
        const found = v4.length > 0 ? v4 : await resolver.resolve6(host)
        if (found.length === 0) throw Object.assign(new Error(`no address for ${host}`), { code: Dns.NODATA })
        return found
      },
      catch: (cause) => new ResolveError({ host, cause })
    })
}

/** `--resolver`'s DNS server when given, the system's resolver otherwise. @category constructors */
export const lookupOf = (server: Names.ResolverAddress | undefined): Lookup =>
  server === undefined ? system : fromServer(server)

/** Whether `host` is an IP address (an address passes through resolution as it is). */
export const isAddress = (host: string): boolean => Net.isIP(host) !== 0

/**
 * The endpoint with its host replaced by its first address (Unix paths and IP literals pass through), asked of
 * `lookup` (the system's resolver unless given).
 */
export const resolve = (
  endpoint: Address.Endpoint,
  lookup: Lookup = system
): Effect.Effect<Address.Endpoint, ResolveError> => {
  if (endpoint._tag === "Unix" || isAddress(endpoint.host)) return Effect.succeed(endpoint)
  return lookup(endpoint.host).pipe(Effect.map((addresses) => Address.tcp(addresses[0]!, endpoint.port)))
}
