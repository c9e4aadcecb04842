/**
 * Test clients: connections from a chosen 127.0.0.0/8 source address (Linux lets a socket bind any of them), that
 * record what they receive and how they end, and ask an identity backend its name through the balancer.
 */
import { Effect } from "effect"
import * as Net from "node:net"

/** How a connection ended from the client's side. */
export type Ending = "eof" | "reset" | "error"

/** What the first line of a connection turned out to be. */
export type FirstLine =
  | { readonly _tag: "Line"; readonly line: string }
  | { readonly _tag: "Closed"; readonly ending: Ending; readonly received: string }
  | { readonly _tag: "Timeout"; readonly received: string }

/** A client connection that buffers what it receives and remembers how it ended. */
export class Conn {
  private readonly chunks: Array<Buffer> = []
  private readonly waiters = new Set<() => void>()
  /** Bytes received so far. */
  received = 0
  /** How the connection ended (EOF from the peer, a reset, another error), once it has. */
  ending: Ending | undefined
  /** The error that ended it, if any. */
  error: NodeJS.ErrnoException | undefined
  /** Whether the socket is fully closed. */
  closed = false
  /** Whether the connection was ever established. */
  connected = false

  constructor(readonly socket: Net.Socket) {
    socket.once("connect", () => (this.connected = true))
    socket.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk)
      this.received += chunk.length
      this.notify()
    })
    socket.on("end", () => {
      this.ending ??= "eof"
      this.notify()
    })
    socket.on("error", (error: NodeJS.ErrnoException) => {
      this.error = error
      this.ending ??= error.code === "ECONNRESET" ? "reset" : "error"
      this.notify()
    })
    socket.on("close", () => {
      this.closed = true
      this.ending ??= "eof"
      this.notify()
    })
  }

  private notify(): void {
    // A waiter that is satisfied removes itself; deleting the current entry of a Set during iteration is safe.
    for (const waiter of this.waiters) waiter()
  }

  /** Everything received so far. */
  data(): Buffer {
    return Buffer.concat(this.chunks)
  }

  /** Everything received so far, as UTF-8. */
  text(): string {
    return this.data().toString("utf8")
  }

  /** Waits until `condition` holds (true) or `timeoutMs` passes (false). */
  until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
    if (condition()) return Promise.resolve(true)
    return new Promise((resolve) => {
      const check = () => {
        if (!condition()) return
        finish(true)
      }
      const finish = (value: boolean) => {
        clearTimeout(timer)
        this.waiters.delete(check)
        resolve(value)
      }
      const timer = setTimeout(() => finish(false), timeoutMs)
      this.waiters.add(check)
    })
  }

  /** The first line received (without its newline), or how the connection ended or timed out before one arrived. */
  async firstLine(timeoutMs = 5_000): Promise<FirstLine> {
    const hasLine = () => this.text().includes("\n")
    await this.until(() => hasLine() || this.ending !== undefined, timeoutMs)
    const text = this.text()
    if (hasLine()) return { _tag: "Line", line: text.slice(0, text.indexOf("\n")) }
    if (this.ending !== undefined) return { _tag: "Closed", ending: this.ending, received: text }
    return { _tag: "Timeout", received: text }
  }

  /** Waits until the peer has ended or the connection failed; the ending, or "timeout". */
  async ended(timeoutMs = 5_000): Promise<Ending | "timeout"> {
    await this.until(() => this.ending !== undefined, timeoutMs)
    return this.ending ?? "timeout"
  }

  /** Closes the connection at once. */
  close(): void {
    this.socket.destroy()
  }
}

/** Where to connect and from which source address. */
export interface ConnectOptions {
  readonly host?: string
  /** Source address, e.g. "127.0.0.2"; default 127.0.0.1. */
  readonly from?: string
  /** Source port; default any (the system picks one). */
  readonly fromPort?: number
  /** Keep the client's writable side open after the peer's EOF (default true, so a test sees every byte). */
  readonly allowHalfOpen?: boolean
}

/**
 * Starts a connection to `port` and returns it at once, still connecting. A connect that fails (refused, or reset by
 * a balancer that closes the connection before this side saw it established) shows as the connection's ending.
 */
export const dial = (port: number, options: ConnectOptions = {}): Conn =>
  new Conn(Net.connect({
    host: options.host ?? "127.0.0.1",
    port,
    localAddress: options.from ?? "127.0.0.1",
    ...(options.fromPort === undefined ? {} : { localPort: options.fromPort }),
    allowHalfOpen: options.allowHalfOpen ?? true
  }))

/** Connects to `port`; resolves once connected, rejects if the connect fails. */
export const connect = (port: number, options: ConnectOptions = {}): Promise<Conn> =>
  new Promise((resolve, reject) => {
    const conn = dial(port, options)
    const onError = (error: Error) => reject(error)
    conn.socket.once("error", onError)
    conn.socket.once("connect", () => {
      conn.socket.off("error", onError)
      resolve(conn)
    })
  })

/** What {@link askName} gives for a connection that ended before a line arrived. */
export const CLOSED = "(closed)"
/** What {@link askName} gives for a connection that got no line within the time allowed. */
export const SILENT = "(silent)"

/** The name in a first line, or {@link CLOSED} / {@link SILENT}. */
export const nameOf = (first: FirstLine): string =>
  first._tag === "Line" ? first.line : first._tag === "Closed" ? CLOSED : SILENT

/**
 * One connection from `from` to the balancer on `port`: the identity backend's name that answered, or {@link CLOSED}
 * if the balancer closed the connection first, or {@link SILENT} if nothing came within `timeoutMs`. The connection
 * is closed afterwards.
 */
export const askName = async (port: number, from = "127.0.0.1", timeoutMs = 5_000): Promise<string> => {
  const conn = dial(port, { from })
  try {
    return nameOf(await conn.firstLine(timeoutMs))
  } finally {
    conn.close()
  }
}

/** Asks, one after the other, from each source address in turn. */
export const askNames = async (port: number, sources: ReadonlyArray<string>): Promise<Array<string>> => {
  const names: Array<string> = []
  for (const from of sources) names.push(await askName(port, from))
  return names
}

/** Effect version of {@link askName}. */
export const ask = (port: number, from?: string, timeoutMs?: number) =>
  Effect.promise(() => askName(port, from, timeoutMs))

/** Effect version of {@link askNames}. */
export const askAll = (port: number, sources: ReadonlyArray<string>) => Effect.promise(() => askNames(port, sources))

/** A connection open for the length of the scope (destroyed when it closes). */
export const open = (port: number, options?: ConnectOptions) =>
  Effect.acquireRelease(Effect.promise(() => connect(port, options)), (conn) => Effect.sync(() => conn.close()))

/** A connection started (see {@link dial}) for the length of the scope: it may fail to connect. */
export const opening = (port: number, options?: ConnectOptions) =>
  Effect.acquireRelease(Effect.sync(() => dial(port, options)), (conn) => Effect.sync(() => conn.close()))

/** A connection held open for the length of the scope, with the name of the backend that answered it. */
export const hold = (port: number, from?: string, timeoutMs?: number) =>
  Effect.gen(function*() {
    const conn = yield* open(port, from === undefined ? {} : { from })
    const name = nameOf(yield* Effect.promise(() => conn.firstLine(timeoutMs)))
    return { conn, name }
  })

/** `127.0.0.N`: a distinct client address for each N (2..254). */
export const ip = (n: number): string => `127.0.0.${n}`
