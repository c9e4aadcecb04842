/**
 * Resolves server host names once, at start-up, as pen does (first address, like getaddrinfo), so no connection
 * pays for a DNS lookup.
 */
import { Data, Effect } from "effect"
import * as Dns from "node:dns"
import * as Net from "node:net"
import * as Address from "../domain/Address.ts"

/** A host name that does not resolve. @category errors */
export class ResolveError extends Data.TaggedError("ResolveError")<{ readonly host: string; readonly cause: unknown }> {
  override get message(): string {
    return `unknown or invalid address [${this.host}]`
  }
}

/** The endpoint with its host replaced by an IP address (Unix paths and IP literals pass through). */
export const resolve = (endpoint: Address.Endpoint): Effect.Effect<Address.Endpoint, ResolveError> => {
  if (endpoint._tag === "Unix" || Net.isIP(endpoint.host) !== 0) return Effect.succeed(endpoint)
  return Effect.tryPromise({
    try: () => Dns.promises.lookup(endpoint.host),
    catch: (cause) => new ResolveError({ host: endpoint.host, cause })
  }).pipe(Effect.map(({ address }) => Address.tcp(address, endpoint.port)))
}
