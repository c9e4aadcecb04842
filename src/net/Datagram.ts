/**
 * UDP for the log companions: a bound receiver that hands each datagram and its source address to a synchronous
 * handler (niblogd), and a sender to one host and port, optionally from a chosen local address (niblog). Both are
 * scoped: the socket closes with the scope. Datagrams that arrive before the handler is attached are kept for it.
 */
import { Data, Effect } from "effect"
import type { Scope } from "effect"
import * as Dgram from "node:dgram"
import * as Dns from "node:dns"
import * as Net from "node:net"

/** A socket that could not be opened, a name that did not resolve, or a failed send. @category errors */
export class DatagramError extends Data.TaggedError("DatagramError")<{
  readonly reason: "Resolve" | "Bind" | "Send" | "Receive"
  /** The address or name concerned, as given. */
  readonly address: string
  readonly cause: unknown
}> {
  /** What went wrong, in a few words ("Name or service not known", "address already in use"). */
  get why(): string {
    return describe(this.cause)
  }

  override get message(): string {
    const why = this.why
    switch (this.reason) {
      case "Resolve":
        return `cannot resolve '${this.address}': ${why}`
      case "Bind":
        return `cannot bind ${this.address}: ${why}`
      case "Send":
        return `cannot send to ${this.address}: ${why}`
      case "Receive":
        return `receiving on ${this.address} failed: ${why}`
    }
  }
}

const describe = (cause: unknown): string => {
  const error = cause as NodeJS.ErrnoException | undefined
  if (error?.code === "ENOTFOUND") return "Name or service not known"
  if (error?.code === "EAI_AGAIN") return "Temporary failure in name resolution"
  if (error?.code === "EADDRINUSE") return "address already in use"
  if (error?.code === "EADDRNOTAVAIL") return "address not available"
  if (error?.code === "EACCES" || error?.code === "EPERM") return "permission denied"
  if (error?.code === "EINVAL") return "invalid argument"
  return error?.message ?? String(cause)
}

/** 4 or 6. @category models */
export type Family = 4 | 6

/**
 * Resolves a host name or address to its first address (getaddrinfo's order, only families configured on this
 * machine), of `family` if given.
 */
export const lookup = (
  host: string,
  family?: Family
): Effect.Effect<{ address: string; family: Family }, DatagramError> =>
  Effect.callback<{ address: string; family: Family }, DatagramError>((resume) => {
    const version = Net.isIP(host)
    if (version !== 0) {
      return resume(
        family === undefined || version === family
          ? Effect.succeed({ address: host, family: version as Family })
          : Effect.fail(
            new DatagramError({ reason: "Resolve", address: host, cause: new Error(`not an IPv${family} address`) })
          )
      )
    }
    Dns.lookup(host, { family: family ?? 0, hints: Dns.ADDRCONFIG }, (error, address, found) => {
      resume(
        error
          ? Effect.fail(new DatagramError({ reason: "Resolve", address: host, cause: error }))
          : Effect.succeed({ address, family: found as Family })
      )
    })
  })

const open = (family: Family, address: string, port: number): Effect.Effect<Dgram.Socket, DatagramError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Dgram.Socket, DatagramError>((resume) => {
      const socket = Dgram.createSocket(family === 6 ? "udp6" : "udp4")
      const label = family === 6 ? `[${address}]:${port}` : `${address}:${port}`
      const onError = (cause: Error) => {
        socket.close()
        resume(Effect.fail(new DatagramError({ reason: "Bind", address: label, cause })))
      }
      socket.once("error", onError)
      socket.bind({ address, port, exclusive: true }, () => {
        socket.off("error", onError)
        resume(Effect.succeed(socket))
      })
    }),
    (socket) =>
      Effect.sync(() => {
        try {
          socket.close()
        } catch {
          // already closed
        }
      })
  )

/** A bound UDP socket that receives. @category models */
export interface Receiver {
  /** The port it is bound to. */
  readonly port: number
  /**
   * Calls `onDatagram` with each datagram and its source address, in arrival order, until the scope closes (then it
   * never returns) or the socket fails.
   */
  readonly run: (onDatagram: (payload: Buffer, source: string) => void) => Effect.Effect<never, DatagramError>
}

/** Binds a UDP socket on `address:port` (port 0: any free port) for the scope. @category constructors */
export const receiver = (options: { readonly address: string; readonly port: number }) =>
  Effect.gen(function*() {
    const family: Family = Net.isIPv6(options.address) ? 6 : 4
    const socket = yield* open(family, options.address, options.port)
    const port = socket.address().port
    const early: Array<readonly [Buffer, string]> = []
    let handler: (payload: Buffer, source: string) => void = (payload, source) => {
      early.push([payload, source])
    }
    // A socket error before `run` is kept for it; one after ends `run`.
    let failure: Error | undefined
    let onFailure = (cause: Error) => {
      failure ??= cause
    }
    socket.on("message", (payload, info) => handler(payload, info.address))
    socket.on("error", (cause) => onFailure(cause))
    const run = (onDatagram: (payload: Buffer, source: string) => void) =>
      Effect.callback<never, DatagramError>((resume) => {
        const fail = (cause: Error) =>
          resume(Effect.fail(new DatagramError({ reason: "Receive", address: `port ${port}`, cause })))
        for (const [payload, source] of early.splice(0)) onDatagram(payload, source)
        handler = onDatagram
        if (failure !== undefined) return fail(failure)
        onFailure = fail
      })
    return { port, run } satisfies Receiver
  })

/** A UDP socket that sends to one destination. @category models */
export interface Sender {
  /** Sends one datagram; resolves once the kernel has taken it. */
  readonly send: (payload: Uint8Array) => Effect.Effect<void, DatagramError>
}

/**
 * A socket for sending to `host:port` (an address), bound to `localAddress` (an address of the same family) if
 * given, else to any; for the scope.
 *
 * @category constructors
 */
export const sender = (options: {
  readonly host: string
  readonly port: number
  readonly family: Family
  readonly localAddress?: string | undefined
}) =>
  Effect.gen(function*() {
    const socket = yield* open(options.family, options.localAddress ?? (options.family === 6 ? "::" : "0.0.0.0"), 0)
    const label = options.family === 6 ? `[${options.host}]:${options.port}` : `${options.host}:${options.port}`
    // Errors of an unconnected UDP socket come back through each send's callback; this one only keeps an 'error'
    // event from being unhandled.
    socket.on("error", () => {})
    const send = (payload: Uint8Array) =>
      Effect.callback<void, DatagramError>((resume) => {
        socket.send(payload, options.port, options.host, (cause) => {
          resume(cause ? Effect.fail(new DatagramError({ reason: "Send", address: label, cause })) : Effect.void)
        })
      })
    return { send } satisfies Sender
  })
