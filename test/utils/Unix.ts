/**
 * Unix-domain socket counterparts of Backend.ts and Client.ts: an identity server on a socket path, and client
 * connections to a path (with the same recording `Conn`). The Effect wrappers close them when the test's scope closes.
 */
import { Effect } from "effect"
import * as Net from "node:net"
import { identityHandler } from "./Backend.ts"
import * as Client from "./Client.ts"

const ignore = () => {}

/** A listening server on `path`; closing it destroys its open connections. */
export interface UnixBackend {
  readonly name: string
  readonly path: string
  /** Connections accepted so far. */
  readonly accepted: () => number
  readonly close: () => Promise<void>
}

/** Listens on `path` with the identity handler (the name and a newline, then an echo). */
export const listenIdentity = (name: string, path: string): Promise<UnixBackend> =>
  new Promise((resolve, reject) => {
    const sockets = new Set<Net.Socket>()
    let accepted = 0
    const server = Net.createServer((socket) => {
      accepted++
      sockets.add(socket)
      socket.on("error", ignore)
      socket.once("close", () => sockets.delete(socket))
      identityHandler(name)(socket)
    })
    let closing: Promise<void> | undefined
    const close = () => (closing ??= new Promise<void>((done) => {
      server.close(() => done())
      for (const socket of sockets) socket.destroy()
    }))
    server.once("error", reject)
    server.listen({ path }, () => {
      server.off("error", reject)
      server.on("error", ignore)
      resolve({ name, path, accepted: () => accepted, close })
    })
  })

/** An identity server on `path` for the length of the scope. */
export const identity = (name: string, path: string) =>
  Effect.acquireRelease(Effect.promise(() => listenIdentity(name, path)), (backend) => Effect.promise(backend.close))

/** Starts a connection to the socket at `path` (half-open allowed) and returns it at once, still connecting. */
export const dial = (path: string): Client.Conn => new Client.Conn(Net.connect({ path, allowHalfOpen: true }))

/** A connection to `path` for the length of the scope (it may fail to connect: see its `ending`). */
export const opening = (path: string) =>
  Effect.acquireRelease(Effect.sync(() => dial(path)), (conn) => Effect.sync(() => conn.close()))

/** One connection to `path`: the identity backend's first line (see {@link Client.nameOf}); closed afterwards. */
export const askName = async (path: string, timeoutMs = 5_000): Promise<string> => {
  const conn = dial(path)
  try {
    return Client.nameOf(await conn.firstLine(timeoutMs))
  } finally {
    conn.close()
  }
}

/** Effect version of {@link askName}. */
export const ask = (path: string, timeoutMs?: number) => Effect.promise(() => askName(path, timeoutMs))
