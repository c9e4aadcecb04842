/**
 * What the dashboard draws over time: per-second samples (connections accepted, failovers, each server's live
 * connections and throughput) and recent events (a server going down, blacklisted, drained or back up; connections
 * failing over), each kept in a small bounded ring.
 *
 * Sans-IO and off the per-connection path: the admin service feeds it one stats snapshot a second from a timer, and
 * everything here is derived from the difference between two snapshots (rates from counters, events from changed
 * states). A failover is known by the failover counter moving, so an event names the servers that went down or were
 * blacklisted in the same second, not each client that moved.
 */
import type { ServerState } from "./Api.ts"

/** A fixed-size ring: pushing past `capacity` drops the oldest. @category models */
export interface Ring<A> {
  readonly capacity: number
  readonly items: Array<A>
}

/** An empty ring of `capacity` items. @category constructors */
export const ring = <A>(capacity: number): Ring<A> => ({ capacity, items: [] })

/** Adds `item`, dropping the oldest when full. @category operations */
export const push = <A>(r: Ring<A>, item: A): void => {
  r.items.push(item)
  if (r.items.length > r.capacity) r.items.splice(0, r.items.length - r.capacity)
}

/** One server in a sample: live connections, and bytes per second each way since the previous sample. */
export interface ServerSample {
  readonly index: number
  readonly connections: number
  readonly sentPerSecond: number
  readonly receivedPerSecond: number
}

/** One second of the balancer. @category models */
export interface Sample {
  /** Milliseconds since the epoch. */
  readonly time: number
  readonly active: number
  readonly acceptedPerSecond: number
  readonly failoversPerSecond: number
  readonly refusedPerSecond: number
  readonly servers: ReadonlyArray<ServerSample>
}

/** Something the operator should see in the "recent events" list. @category models */
export interface Event {
  readonly time: number
  readonly kind: "state" | "failover"
  /** The server concerned (state events), or -1. */
  readonly server: number
  readonly address: string
  /** For state events: the state before and after. */
  readonly from?: ServerState
  readonly to?: ServerState
  /** For failover events: connections that moved to another server in that interval. */
  readonly count?: number
  readonly text: string
}

/** What one sample reads: the counters and each server's state and counters. @category models */
export interface Reading {
  readonly time: number
  readonly accepted: number
  readonly active: number
  readonly failovers: number
  readonly refused: number
  readonly servers: ReadonlyArray<{
    readonly index: number
    readonly address: string
    readonly state: ServerState
    /** When its blacklist ends (milliseconds), 0 when it was never blacklisted: a later one is a new blacklisting. */
    readonly blacklistedUntil: number
    readonly connections: number
    readonly bytesSent: number
    readonly bytesReceived: number
  }>
}

/** The samples, the events and the last reading they are measured from. @category models */
export interface History {
  readonly samples: Ring<Sample>
  readonly events: Ring<Event>
  last: Reading | undefined
}

/** Samples kept: two minutes at one a second. @category constants */
export const SAMPLES = 120

/** Events kept. @category constants */
export const EVENTS = 50

/** An empty history. @category constructors */
export const make = (samples = SAMPLES, events = EVENTS): History => ({
  samples: ring(samples),
  events: ring(events),
  last: undefined
})

const rate = (now: number, before: number, seconds: number) => seconds > 0 ? Math.max(0, now - before) / seconds : 0

const describe = (state: ServerState): string => {
  switch (state) {
    case "up":
      return "up"
    case "down":
      return "down (its check failed)"
    case "blacklisted":
      return "blacklisted"
    case "draining":
      return "draining"
    case "unconfigured":
      return "without an address"
  }
}

/**
 * Records `reading`: a sample of the rates since the previous reading, and an event for each server whose state
 * changed and for connections that failed over. The first reading only sets the baseline. Returns the new sample.
 *
 * @category operations
 */
export const record = (history: History, reading: Reading): Sample | undefined => {
  const last = history.last
  history.last = reading
  if (last === undefined) return undefined
  const seconds = (reading.time - last.time) / 1000
  const before = new Map(last.servers.map((s) => [s.index, s]))
  const sample: Sample = {
    time: reading.time,
    active: reading.active,
    acceptedPerSecond: rate(reading.accepted, last.accepted, seconds),
    failoversPerSecond: rate(reading.failovers, last.failovers, seconds),
    refusedPerSecond: rate(reading.refused, last.refused, seconds),
    servers: reading.servers.map((s) => {
      const b = before.get(s.index)
      return {
        index: s.index,
        connections: s.connections,
        sentPerSecond: b === undefined ? 0 : rate(s.bytesSent, b.bytesSent, seconds),
        receivedPerSecond: b === undefined ? 0 : rate(s.bytesReceived, b.bytesReceived, seconds)
      }
    })
  }
  push(history.samples, sample)
  for (const s of reading.servers) {
    const b = before.get(s.index)
    if (b === undefined || b.state === s.state) continue
    push(history.events, {
      time: reading.time,
      kind: "state",
      server: s.index,
      address: s.address,
      from: b.state,
      to: s.state,
      text: `server ${s.index} (${s.address}) ${describe(s.state)}`
    })
  }
  const moved = reading.failovers - last.failovers
  if (moved > 0) {
    // The servers that failed in this interval: gone down, or blacklisted (again: a blacklist that lapsed and was
    // renewed within the interval shows as a later deadline).
    const lost = reading.servers.filter((s) => {
      const b = before.get(s.index)
      return (s.state === "down" && b?.state !== "down") ||
        (s.state === "blacklisted" && (b?.state !== "blacklisted" || s.blacklistedUntil > b.blacklistedUntil))
    })
    const from = lost.length === 0 ? "" : ` from ${lost.map((s) => `server ${s.index} (${s.address})`).join(", ")}`
    push(history.events, {
      time: reading.time,
      kind: "failover",
      server: lost.length === 1 ? lost[0]!.index : -1,
      address: lost.length === 1 ? lost[0]!.address : "",
      count: moved,
      text: `${moved} connection${moved === 1 ? "" : "s"} failed over${from}`
    })
  }
  return sample
}
