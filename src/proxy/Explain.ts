/**
 * "Why this server?" answered by the code that serves clients: client_acl and the abuse server, the sticky table
 * (read, not touched), `ServerPool.previewUnsafe` (the selection rules, the roundrobin cursor left where it is),
 * `Failover.refusalUnsafe` (admission and the server's ACL) and `Failover.scan` (the failover order and the emergency
 * server), as `TcpProxy` and `UdpProxy` run them for a new client. What it cannot foresee is what happens on the
 * wire: a server that takes the client here may still refuse the connect, and the scan then goes on as shown.
 */
import { Clock, Effect, Option } from "effect"
import * as Address from "../domain/Address.ts"
import type * as Backend from "../domain/Backend.ts"
import type * as Explain from "../domain/Explain.ts"
import * as Selection from "../domain/Selection.ts"
import { Acls } from "../services/Acls.ts"
import { ClientTable } from "../services/ClientTable.ts"
import { ABUSE_SERVER, ServerPool } from "../services/ServerPool.ts"
import * as Failover from "./Failover.ts"

/** The decision nib would make now for a new connection from `ip` (port 0: `-r -h` mixes the port in). */

/** pen's selection flags, in the order its `mode` lists them. */
const FLAGS = ["roundrobin", "hash", "weight", "prio", "stubborn"] as const satisfies ReadonlyArray<
  keyof Selection.Policy
>

export const explain = (ip: string): Effect.Effect<Explain.Explanation, never, ServerPool | Acls | ClientTable> =>
  Effect.gen(function*() {
    const pool = yield* ServerPool
    const acls = yield* Acls
    const entry = Option.getOrUndefined(yield* (yield* ClientTable).lookup(ip))
    const now = yield* Clock.currentTimeMillis
    const stickyServer = entry?.server ?? Selection.NO_SERVER
    const server = (index: number): Explain.Server => {
      const b = pool.backendUnsafe(index)
      return { index, address: b === undefined ? "-" : Address.format(b.spec.endpoint) }
    }
    const tries: Array<Explain.Try> = []
    const attempt = (index: number): boolean => {
      if (index === Selection.NO_SERVER) return false
      // No draw: a server in its slow start takes the client here, and its share says how likely that is.
      const reason = Failover.refusalUnsafe(pool, acls, index, stickyServer, ip, false)
      const share = reason === undefined && stickyServer !== index ? pool.slowStartShareUnsafe(index) : 1
      tries.push({
        server: server(index),
        reason,
        detail: share < 1
          ? `in its slow start: it takes ${Math.round(share * 100)}% of new clients now, the others go on`
          : detail(pool.backendUnsafe(index), reason, now)
      })
      return reason === undefined
    }
    const policy = pool.policy
    const mode = FLAGS.filter((flag) => policy[flag]).map((flag) =>
      flag === "hash" && policy.hashMethod === "consistent" ? "hash (consistent)" : flag
    )
    const sticky = entry === undefined || entry.server === Selection.NO_SERVER
      ? undefined
      : { server: entry.server, seenSecondsAgo: Math.max(0, Math.round((now - entry.lastSeen) / 1000)) }
    const chosen = (taken: boolean) => taken ? tries.at(-1)!.server : undefined
    if (!acls.admitsClientUnsafe(ip)) {
      const taken = pool.abuse !== undefined && attempt(ABUSE_SERVER)
      return { client: ip, denied: true, sticky, rule: undefined, first: undefined, mode, tries, chosen: chosen(taken) }
    }
    const first = pool.previewUnsafe(stickyServer, ip, 0)
    const failing: Failover.Failing = { initial: first, tried: undefined, tryServer: attempt }
    const taken = attempt(first) || Failover.scan(pool, failing, first)
    return {
      client: ip,
      denied: false,
      sticky,
      rule: Selection.rule(pool.policy, stickyServer, pool.backends.length),
      first: first === Selection.NO_SERVER ? undefined : server(first),
      mode,
      tries,
      chosen: chosen(taken)
    }
  })

/** The figures behind a reason: how long the blacklist lasts, the connections against the limits, the ACL. */
const detail = (b: Backend.Backend | undefined, reason: Failover.Refusal | undefined, now: number) => {
  if (b === undefined) return undefined
  if (reason === "blacklisted") return `for ${Math.ceil((b.blacklistedUntil - now) / 1000)} s more`
  if (reason === "full") return `conn ${b.connections}, max ${b.spec.softLimit}, hard ${b.spec.hardLimit}`
  if (reason === "acl") return `acl ${b.acl}`
  return undefined
}
