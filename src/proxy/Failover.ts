/**
 * pen's failover_server, shared by the TCP and UDP sessions: after `failed` was rejected or failed, the servers after
 * it in index order, wrapping, up to the one the connection tried first, then the emergency server. Unlike pen, a
 * connection tries each server at most once: with `-b 0` (nothing is ever blacklisted) pen would go round the ring
 * for as long as every server refuses. The emergency and abuse servers have no failover; `-s` (stubborn) has none.
 */
import * as Selection from "../domain/Selection.ts"
import type { Acls } from "../services/Acls.ts"
import type { ClientRef, ClientTable } from "../services/ClientTable.ts"
import type * as ServerPool from "../services/ServerPool.ts"
import { ABUSE_SERVER, EMERGENCY_SERVER } from "../services/ServerPool.ts"

/** A connection or session that can fail over. @category models */
export interface Failing {
  /** The server it tried first (NO_SERVER when selection found none). */
  readonly initial: number
  /** The servers it has tried, made on its first failover only. */
  tried: Set<number> | undefined
  /** Tries server `index` (admission, then a dial): whether it took the connection. */
  readonly tryServer: (index: number) => boolean
}

/** A connection that knows its client's pinned server as it stood before the attempt in hand. */
export interface Pinned {
  /** The server the client was pinned to when this connection chose (NO_SERVER for a new client). */
  pinned: number
}

/**
 * The first server a new connection of client `ref` tries (pen's selection), and the client's pin as the connection
 * sees it (`connection.pinned`). A client with no server yet is claimed for the chosen server in one atomic step: when
 * simultaneous first connections of one client (on several worker threads) race, the one that pins first wins, and the
 * others go where it went, as sticky connections that came after it would.
 */
export const firstServer = (
  pool: ServerPool.ServerPool["Service"],
  clients: ClientTable["Service"],
  ref: ClientRef,
  ip: string,
  port: number,
  connection: Pinned
): number => {
  const sticky = clients.serverUnsafe(ref)
  const first = pool.chooseUnsafe(sticky, ip, port)
  connection.pinned = sticky
  if (sticky !== Selection.NO_SERVER || first < 0 || pool.policy.roundrobin) return first
  const winner = clients.claimUnsafe(ref, first)
  if (winner === first || winner < 0) return first
  connection.pinned = winner
  return winner
}

/** Tries the next servers for `connection` after `failed`: whether one took it. */
export const scan = (pool: ServerPool.ServerPool["Service"], connection: Failing, failed: number): boolean => {
  if (pool.policy.stubborn || failed === EMERGENCY_SERVER || failed === ABUSE_SERVER) return false
  const tried = (connection.tried ??= new Set([connection.initial]))
  tried.add(failed)
  for (const s of Selection.failoverOrder(failed, connection.initial, pool.backends.length)) {
    if (!tried.has(s) && connection.tryServer(s)) return true
  }
  return pool.emergency !== undefined && connection.tryServer(EMERGENCY_SERVER)
}

/** Why a server does not take a client: the pool's reason (admission, slow start), or its ACL. @category models */
export type Refusal = ServerPool.Refusal | "acl"

/**
 * Why server `index` does not take the client at `address` (pinned to `stickyServer`) now, or undefined when it takes
 * it: the server's admission (address, health, drain, blacklist, limits, and with `draw` its slow start's draw), then
 * the server's ACL (`server N acl A`; the abuse server takes the clients client_acl denies).
 */
export const refusalUnsafe = (
  pool: ServerPool.ServerPool["Service"],
  acls: Acls["Service"],
  index: number,
  stickyServer: number,
  address: string | undefined,
  draw = true
): Refusal | undefined => {
  if (index === Selection.NO_SERVER) return "none"
  const refused = pool.refusalUnsafe(index, stickyServer === index, draw)
  if (refused !== undefined) return refused
  return index !== ABUSE_SERVER && !acls.admitsUnsafe(pool.backendUnsafe(index)!.acl, address) ? "acl" : undefined
}
