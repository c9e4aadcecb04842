/**
 * UDP peers for tests: identity servers that answer each datagram with their name and what they got, and clients
 * bound to a chosen loopback address that send datagrams and collect the replies, every wait bounded.
 */
import { Effect } from "effect"
import * as Dgram from "node:dgram"
import * as Net from "node:net"

/** A UDP identity server on loopback. */
export interface Server {
  readonly name: string
  readonly host: string
  readonly port: number
  /** `host:port` as a server argument (`[v6]:port` for IPv6). */
  readonly spec: () => string
  /** Datagrams it received, in order, with the address:port they came from. */
  readonly received: Array<{ readonly text: string; readonly from: string }>
  readonly close: () => Promise<void>
}

const typeOf = (host: string): Dgram.SocketType => Net.isIPv6(host) ? "udp6" : "udp4"

/** Binds `host:port` (0: a free port) and answers each datagram with `name:` and the datagram. */
export const listenIdentity = (name: string, port = 0, host = "127.0.0.1"): Promise<Server> =>
  new Promise((resolve, reject) => {
    const socket = Dgram.createSocket(typeOf(host))
    const received: Array<{ text: string; from: string }> = []
    socket.on("message", (datagram, rinfo) => {
      received.push({ text: datagram.toString(), from: `${rinfo.address}:${rinfo.port}` })
      socket.send(Buffer.concat([Buffer.from(`${name}:`), datagram]), rinfo.port, rinfo.address)
    })
    socket.once("error", reject)
    socket.bind(port, host, () => {
      const bound = socket.address().port
      let closed = false
      resolve({
        name,
        host,
        port: bound,
        spec: () => (host.includes(":") ? `[${host}]:${bound}` : `${host}:${bound}`),
        received,
        close: () =>
          new Promise((done) => {
            if (closed) return done()
            closed = true
            socket.close(() => done())
          })
      })
    })
  })

/** An identity server closed with the test's scope. */
export const identity = (name: string, port = 0, host = "127.0.0.1") =>
  Effect.acquireRelease(Effect.promise(() => listenIdentity(name, port, host)), (s) => Effect.promise(s.close))

/** A free UDP port on 127.0.0.1 (bound, then released). */
export const freePort = Effect.promise(() =>
  new Promise<number>((resolve, reject) => {
    const socket = Dgram.createSocket("udp4")
    socket.once("error", reject)
    socket.bind(0, "127.0.0.1", () => {
      const port = socket.address().port
      socket.close(() => resolve(port))
    })
  })
)

/** A client socket bound to `from` (a loopback address), talking to `host:port`. */
export interface Client {
  readonly port: number
  /** Sends each text as one datagram. */
  readonly send: (...texts: ReadonlyArray<string>) => void
  /** Replies received so far, in order. */
  readonly replies: Array<string>
  /** Waits until `n` replies in all have arrived, at most `timeoutMs`; returns them (fewer on timeout). */
  readonly waitReplies: (n: number, timeoutMs?: number) => Promise<Array<string>>
  /** Where the replies came from (`address:port`), in order. */
  readonly sources: Array<string>
  readonly close: () => Promise<void>
}

export const openClient = (port: number, from = "127.0.0.1", host = "127.0.0.1"): Promise<Client> =>
  new Promise((resolve, reject) => {
    const socket = Dgram.createSocket(typeOf(host))
    const replies: Array<string> = []
    const sources: Array<string> = []
    let waiters: Array<() => void> = []
    socket.on("message", (datagram, rinfo) => {
      replies.push(datagram.toString())
      sources.push(`${rinfo.address}:${rinfo.port}`)
      const ready = waiters
      waiters = []
      for (const wake of ready) wake()
    })
    socket.once("error", reject)
    socket.bind(0, from, () => {
      let closed = false
      resolve({
        port: socket.address().port,
        send: (...texts) => {
          for (const text of texts) socket.send(text, port, host)
        },
        replies,
        sources,
        waitReplies: async (n, timeoutMs = 3_000) => {
          const deadline = Date.now() + timeoutMs
          while (replies.length < n && Date.now() < deadline) {
            await new Promise<void>((wake) => {
              const timer = setTimeout(wake, Math.max(1, deadline - Date.now()))
              waiters.push(() => {
                clearTimeout(timer)
                wake()
              })
            })
          }
          return replies.slice()
        },
        close: () =>
          new Promise((done) => {
            if (closed) return done()
            closed = true
            socket.close(() => done())
          })
      })
    })
  })

/** A client closed with the test's scope. */
export const client = (port: number, from = "127.0.0.1", host = "127.0.0.1") =>
  Effect.acquireRelease(Effect.promise(() => openClient(port, from, host)), (c) => Effect.promise(c.close))

/**
 * One exchange from a new client socket at `from`: sends `text`, waits for one reply (at most `timeoutMs`), and
 * returns the replying server's name (the text before `:`), or "none".
 */
export const ask = (port: number, from: string, text = "ping", timeoutMs = 3_000) =>
  Effect.promise(async () => {
    const c = await openClient(port, from)
    try {
      c.send(text)
      const [reply] = await c.waitReplies(1, timeoutMs)
      return reply === undefined ? "none" : reply.slice(0, reply.indexOf(":"))
    } finally {
      await c.close()
    }
  })

/** {@link ask} for each address in turn. */
export const askAll = (port: number, froms: ReadonlyArray<string>) => Effect.forEach(froms, (from) => ask(port, from))
