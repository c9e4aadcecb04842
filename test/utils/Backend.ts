/**
 * Test backends on 127.0.0.1: identity servers (each connection first receives the server's name and a newline, then
 * an echo of what it sends), servers with a custom handler, and ports where nothing listens. Every server tracks its
 * sockets so closing it closes them too; the Effect wrappers close it when the test's scope closes.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Nib from "./Nib.ts"

/** A listening test server. */
export interface Backend {
  readonly name: string
  readonly host: string
  readonly port: number
  /** `name:port`-style spec for a balancer's command line: `127.0.0.1:PORT` plus `suffix` (e.g. `:2:4`). */
  readonly spec: (suffix?: string) => string
  /** Connections accepted so far. */
  readonly accepted: () => number
  /** Connections open now. */
  readonly open: () => number
  /** Stops listening and destroys every open connection. Idempotent. */
  readonly close: () => Promise<void>
}

/** What a server does with each connection. */
export type Handler = (socket: Net.Socket) => void

const ignore = () => {}

/**
 * Listens on `127.0.0.1:port` (0 = any free port; another 127.0.0.0/8 address with `host`) and runs `handler` for each
 * connection. Server sockets allow half open connections when `allowHalfOpen` is set (the handler then ends its side
 * itself).
 */
export const listen = (
  name: string,
  handler: Handler,
  options: { readonly port?: number; readonly allowHalfOpen?: boolean; readonly host?: string } = {}
): Promise<Backend> =>
  new Promise((resolve, reject) => {
    const sockets = new Set<Net.Socket>()
    let accepted = 0
    const server = Net.createServer({ allowHalfOpen: options.allowHalfOpen ?? false }, (socket) => {
      accepted++
      sockets.add(socket)
      socket.on("error", ignore)
      socket.once("close", () => sockets.delete(socket))
      handler(socket)
    })
    let closing: Promise<void> | undefined
    const close = () => (closing ??= new Promise<void>((done) => {
      server.close(() => done())
      for (const socket of sockets) socket.destroy()
    }))
    server.once("error", reject)
    const host = options.host ?? "127.0.0.1"
    server.listen({ host, port: options.port ?? 0 }, () => {
      server.off("error", reject)
      server.on("error", ignore)
      const port = (server.address() as Net.AddressInfo).port
      resolve({
        name,
        host,
        port,
        spec: (suffix = "") => `${host}:${port}${suffix}`,
        accepted: () => accepted,
        open: () => sockets.size,
        close
      })
    })
  })

/** The identity handler: the server's name and a newline, then an echo until the client ends. */
export const identityHandler = (name: string): Handler => (socket) => {
  socket.write(`${name}\n`)
  socket.pipe(socket)
}

/** An identity server named `name`, on `port` (0 = any free port) of `host` (127.0.0.1 unless given). */
export const listenIdentity = (name: string, port = 0, host?: string): Promise<Backend> =>
  listen(name, identityHandler(name), host === undefined ? { port } : { port, host })

/**
 * A port on 127.0.0.1 where nothing listens: bound on port 0, noted, closed. Connections to it are refused (unless
 * something else takes the port meanwhile, which is unlikely on a test machine).
 */
export const listenFreePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const port = (server.address() as Net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

/** A backend for the length of the scope. */
export const scoped = (acquire: () => Promise<Backend>) =>
  Effect.acquireRelease(Effect.promise(acquire), (backend) => Effect.promise(backend.close))

/** An identity server for the length of the scope (on 127.0.0.1 unless `host` is given). */
export const identity = (name: string, port = 0, host?: string) => scoped(() => listenIdentity(name, port, host))

/** A server with a custom handler for the length of the scope. */
export const custom = (name: string, handler: Handler, options: { readonly allowHalfOpen?: boolean } = {}) =>
  scoped(() => listen(name, handler, options))

/** A port where nothing listens (see {@link listenFreePort}). */
export const freePort = Effect.promise(listenFreePort)

/**
 * How many connections wait in the accept queue of the TCP listener on 127.0.0.1:`port` (Linux: the `rx_queue` of
 * its LISTEN line in /proc/net/tcp), or undefined if there is no such listener.
 */
export const acceptQueue = (port: number): number | undefined => {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`
  for (const line of Fs.readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/)
    if (fields[1] === local && fields[3] === "0A") return Number.parseInt(fields[4]!.split(":")[1]!, 16)
  }
  return undefined
}

/**
 * A server that never accepts: a separate Node process that listens with backlog 1 and then blocks its event loop
 * before it could accept anything.
 * `fill` opens connections until the kernel's accept queue is full (Linux holds backlog + 1), read from /proc, not
 * guessed from timing; after that, SYNs to the port are dropped and connects hang. The connections stay open until
 * the scope closes; the process is killed then.
 */
export const unresponsive = Effect.gen(function*() {
  const backlog = 1
  const script = [
    "const s = require('node:net').createServer()",
    `s.listen({ host: '127.0.0.1', port: 0, backlog: ${backlog} }, () => {`,
    "  require('node:fs').writeSync(1, 'port ' + s.address().port + '\\n')",
    // Blocks at once, in the listen callback: a turn of the event loop in between would accept early connections.
    "  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000)",
    "  process.exit(0)",
    "})"
  ].join("\n")
  const { match, proc } = yield* Effect.acquireRelease(
    Effect.promise(() => Nib.spawnReady(Nib.NODE, ["-e", script], /^port (\d+)$/m)),
    (started) => Effect.promise(() => Nib.stop(started.proc, 1_000))
  )
  const port = Number(match[1])
  const sockets: Array<Net.Socket> = []
  yield* Effect.addFinalizer(() => Effect.sync(() => sockets.forEach((socket) => socket.destroy())))
  // Resolves when the connection is established (or failed, or `timeoutMs` passed).
  const attempt = (timeoutMs: number) =>
    new Promise<void>((resolve) => {
      const socket = Net.connect({ host: "127.0.0.1", port })
      sockets.push(socket)
      socket.on("error", () => resolve())
      const timer = setTimeout(resolve, timeoutMs)
      socket.once("connect", () => {
        clearTimeout(timer)
        resolve()
      })
    })
  const full = () => (acceptQueue(port) ?? 0) > backlog
  /** Fills the accept queue; true once it is full (at most `max` connections). */
  const fill = (max = 8) =>
    Effect.promise(async () => {
      for (let i = 0; i < max && !full(); i++) await attempt(2_000)
      return full()
    })
  return { name: "unresponsive", port, pid: proc.pid, spec: (suffix = "") => `127.0.0.1:${port}${suffix}`, fill }
})
