/**
 * A live connection (or UDP session) as pen's connection table shows it: the control port's `connection N`, the
 * status page, the admin API. Types only: the proxies (proxy/Slots.ts) describe their connections with it, on
 * whichever thread serves them.
 */

/** One live connection as pen's `connection N` and status page show it. @category models */
export interface ConnectionInfo {
  readonly slot: number
  /** pen's state bits: 1 while the server is being dialed, 2 once relaying. */
  readonly state: 1 | 2
  /** The client's and the server's socket descriptors (-1 when there is none). */
  readonly downfd: number
  readonly upfd: number
  /** Bytes queued towards the client and towards the server. */
  readonly pendingDown: number
  readonly pendingUp: number
  readonly client: string
  readonly server: number
}
