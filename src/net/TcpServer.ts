/**
 * A scoped TCP (or Unix socket) listener on `node:net`. It binds, reports a bind failure as a typed error, runs one
 * fiber per connection in a scope of its own, and applies pen's admission control: at `maxConnections` live
 * connections, or with `pending_max` connects to servers in progress, new ones wait, accepted but unread and not yet
 * sent to a server, and are served in arrival order as connections (or connects) end. Connections that arrive before
 * a handler is attached wait the same way.
 */
import { Context, Data, Effect, Exit, Fiber, Scope } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Address from "../domain/Address.ts"
import * as Admission from "../shared/Admission.ts"
import { IdleWaiters } from "./IdleWaiters.ts"
import type { Socket } from "./Socket.ts"
import * as UnixPath from "./UnixPath.ts"

/** Why the listener could not be opened. @category errors */
export class TcpServerError extends Data.TaggedError("TcpServerError")<{
  readonly address: string
  readonly cause: unknown
}> {
  override get message(): string {
    return `can't bind local address ${this.address}: ${this.cause instanceof Error ? this.cause.message : this.cause}`
  }
}

/** What to bind, and pen's admission limits. @category models */
export interface Options {
  readonly endpoint: Address.Endpoint
  /** Kernel accept backlog (`-q`). */
  readonly backlog: number
  /** Live connections at which nib stops serving new ones until one ends (`-x`). */
  readonly maxConnections: number
  /** How many waiting connections are held before further ones are refused; defaults to `backlog`. */
  readonly maxWaiting?: number
  /** SO_REUSEPORT: worker threads each bind the address, and the kernel spreads connections among them (TCP only). */
  readonly reusePort?: boolean | undefined
  /**
   * The live connections of every worker thread, counted against `maxConnections` together (`-x` is one limit for
   * the balancer), in the admission memory (`shared/Admission.ts`), over a SharedArrayBuffer.
   */
  readonly shared?: Int32Array | undefined
  /**
   * `pending_max`: a connection is taken only with a place among the connects in progress, which it holds when it is
   * handed to the handler; the handler passes it on to its dial or gives it back (`Dials.release`).
   */
  readonly dials?: Admission.Dials | undefined
  /**
   * Listening sockets inherited from the nib this one replaces (an upgrade), served instead of binding `endpoint`:
   * none is accepted from until {@link TcpServer.adopt}, so that until then their clients wait in the kernel's queue.
   */
  readonly descriptors?: ReadonlyArray<number> | undefined
}

/** A bound listener. @category models */
export interface TcpServer {
  /** The bound address, with the real port when 0 was asked for (it changes with `rebind`). */
  readonly address: () => Address.Endpoint
  /**
   * Listens on `endpoint` instead (pen's `listen ADDR`): the new address is bound first, then the old one closed, so
   * a failure leaves the listener as it was. Live and waiting connections are not touched.
   */
  readonly rebind: (endpoint: Address.Endpoint) => Effect.Effect<Address.Endpoint, TcpServerError>
  /** Connections being handled now. */
  readonly active: () => number
  /** Connections accepted and waiting for a free slot (or for `run`). */
  readonly waiting: () => number
  /** The live connections at which new ones wait (`-x`); raising it serves waiting ones at once. */
  readonly maxConnections: () => number
  readonly setMaxConnections: (n: number) => void
  /**
   * Stops listening for a graceful stop: the listening socket closes, so new clients are refused (or go to another
   * process bound with SO_REUSEPORT). Connections being handled go on, and those waiting for a slot are still served
   * as slots free. Once; `rebind` must not follow.
   */
  readonly drain: () => void
  /** Completes once the listener has drained and no connection is open any more, handled or waiting. */
  readonly idle: Effect.Effect<void>
  /** Starts accepting on the inherited sockets (`descriptors`); nothing to do for a listener that bound its address. */
  readonly adopt: Effect.Effect<void, TcpServerError>
  /** The descriptors of the sockets it listens on (to hand them to the nib that replaces this one). */
  readonly descriptors: () => ReadonlyArray<number>
  /** The sockets were handed over (an upgrade): a socket path stays when they close, the new nib's now. */
  readonly handOver: () => void
  /** Handles every connection, one fiber each, until interrupted; interruption ends every connection fiber. */
  readonly run: <R>(handler: (socket: Socket) => Effect.Effect<void, never, R>) => Effect.Effect<never, never, R>
}

const ignore = () => {}

/** The descriptor of a listening server, read from Node's handle (Unix); -1 when it has none. */
export const fdOf = (server: Net.Server): number => {
  const fd = (server as unknown as { readonly _handle?: { readonly fd?: unknown } | null })._handle?.fd
  return typeof fd === "number" ? fd : -1
}

/** Closes an inherited descriptor that will not be served. */
const closeDescriptor = (fd: number): void => {
  try {
    Fs.closeSync(fd)
  } catch {
    // already closed
  }
}

/**
 * The process's descriptor limit (the soft `RLIMIT_NOFILE`, which Node raises to the hard limit as it starts), from
 * /proc/self/limits; `undefined` where that cannot be read (not Linux, no /proc) or says "unlimited".
 */
export const descriptorLimit = (): number | undefined => {
  let limits: string
  try {
    limits = Fs.readFileSync("/proc/self/limits", "latin1")
  } catch {
    return undefined
  }
  const soft = /^Max open files\s+(\d+)\s/m.exec(limits)?.[1]
  return soft === undefined ? undefined : Number(soft)
}

/** The address `server` is bound to: the real port for TCP, `endpoint` itself for a Unix socket. */
const boundAddress = (server: Net.Server, endpoint: Address.Endpoint): Address.Endpoint => {
  const bound = server.address()
  return typeof bound === "string" || bound === null ? endpoint : Address.tcp(bound.address, bound.port)
}

/** Binds and listens; the listener is closed, and waiting connections dropped, when the scope closes. */
export const make = (options: Options): Effect.Effect<TcpServer, TcpServerError, Scope.Scope> =>
  Effect.gen(function*() {
    const maxWaiting = options.maxWaiting ?? options.backlog
    let maxConnections = options.maxConnections
    const queue: Array<Socket> = []
    let head = 0
    let active = 0
    let dispatch: ((socket: Socket) => void) | undefined
    const shared = options.shared
    const dials = options.dials
    // With workers: whether this thread waits for another's connection (or connect) to end (Atomics.waitAsync).
    let watching = false
    let closed = false
    // A graceful stop: not listening any more; `idle` waits for the last connection. Read once per connection end.
    let draining = false
    const idleWaiters = new IdleWaiters(() => active === 0 && head >= queue.length)

    /** A place under `maxConnections`: here, or, with workers, in the count they share. */
    const takeLive = (): boolean => {
      if (shared === undefined) return active < maxConnections
      if (Atomics.load(shared, Admission.STOPPED) !== 0) return false
      for (let live = Atomics.load(shared, Admission.LIVE); live < maxConnections;) {
        const seen = Atomics.compareExchange(shared, Admission.LIVE, live, live + 1)
        if (seen === live) return true
        live = seen
      }
      return false
    }

    /**
     * Takes a place for one more connection: under `maxConnections`, and among the connects in progress
     * (`pending_max`). With workers each is one compare-and-swap on the counts they share, so that threads never
     * admit more than a limit between them.
     */
    const take = (): boolean => {
      if (!takeLive()) return false
      if (dials === undefined || dials.reserve()) return true
      giveBack()
      return false
    }

    /** Gives a place under `maxConnections` back; a thread waiting for one (its connections waiting) is woken. */
    const giveBack = () => {
      if (shared === undefined) return
      Atomics.sub(shared, Admission.LIVE, 1)
      Admission.wake(shared)
    }

    /** Whether {@link take} would find places now (with workers; another thread may take them first). */
    const placesFree = (words: Int32Array) =>
      Atomics.load(words, Admission.STOPPED) === 0 && Atomics.load(words, Admission.LIVE) < maxConnections &&
      (dials === undefined || dials.free)

    /**
     * With workers, a connection (or a connect) ending on another thread frees the place this one's waiting connections
     * need: wait (without blocking) until a thread says it freed one, then drain. This thread says it waits before it
     * looks again, so that a place freed meanwhile is either seen or wakes it. Bounded, so that nothing waits on past
     * the listener.
     */
    const watch = () => {
      if (shared === undefined || watching || closed || head >= queue.length) return
      watching = true
      Atomics.add(shared, Admission.WAITING, 1)
      const freed = Atomics.load(shared, Admission.FREED)
      const done = () => {
        watching = false
        Atomics.sub(shared, Admission.WAITING, 1)
        admit()
      }
      if (placesFree(shared)) return queueMicrotask(done)
      const result = Atomics.waitAsync(shared, Admission.FREED, freed, 1_000)
      if (result.async) void result.value.then(done)
      else queueMicrotask(done)
    }

    /** Serves waiting connections while there are places for them. */
    const admit = () => {
      serveWaiting()
      if (draining) idleWaiters.check()
    }

    const serveWaiting = () => {
      // `run` may start a connection that ends at once: `active`, `head` and `dispatch` change under the loop.
      while (true) {
        const run = dispatch
        if (run === undefined || head >= queue.length) return
        if (!take()) return watch()
        const socket = queue[head]!
        queue[head++] = undefined as never
        if (head > 1024 && head * 2 > queue.length) {
          queue.splice(0, head)
          head = 0
        }
        socket.off("close", onWaitingClose)
        if (!socket.destroyed) run(socket)
        else {
          giveBack()
          dials?.release()
        }
      }
    }
    function onWaitingClose(this: Socket) {
      const i = queue.indexOf(this, head)
      if (i >= 0) queue.splice(i, 1)
      if (draining) idleWaiters.check()
    }
    const onConnection = (socket: Socket) => {
      if (dispatch !== undefined && head === queue.length && take()) {
        dispatch(socket)
        return
      }
      if (queue.length - head >= maxWaiting) {
        socket.on("error", ignore)
        socket.resetAndDestroy()
        return
      }
      socket.on("error", ignore)
      socket.once("close", onWaitingClose)
      queue.push(socket)
      watch()
    }

    // The socket path each server holds (Unix), removed when it stops listening unless the socket was handed over.
    const claims = new Map<Net.Server, UnixPath.Claim | undefined>()
    let handedOver = false
    /** Stops listening: the servers close, and their paths go (unless a nib took the sockets over). */
    const closeServers = (closing: ReadonlyArray<Net.Server>) => {
      for (const server of closing) {
        server.close()
        if (!handedOver) UnixPath.release(claims.get(server))
        claims.delete(server)
      }
    }

    /** A server feeding `onConnection`, listening on `endpoint`, or on the inherited socket `fd`. */
    const listen = (endpoint: Address.Endpoint, fd?: number) =>
      Effect.callback<Net.Server, TcpServerError>((resume) => {
        // SO_KEEPALIVE on every client socket, with the system's timers: pen's listener has it, and the sockets it
        // accepts inherit it. (Node sets it on each accepted socket; a Unix socket has none.)
        const server = Net.createServer({ allowHalfOpen: true, pauseOnConnect: true, keepAlive: true }, onConnection)
        const onError = (error: Error) => {
          server.close()
          resume(Effect.fail(new TcpServerError({ address: Address.format(endpoint), cause: error })))
        }
        server.once("error", onError)
        const onListening = () => {
          server.off("error", onError)
          // Out of descriptors, accept() fails with EMFILE (or ENFILE). libuv sheds the load itself: it closes a
          // spare descriptor it keeps for this, accepts and closes every pending connection (their clients see an
          // EOF), and opens the spare again; Node emits nothing and the server keeps listening. Only if that fails
          // does the server emit 'error' ("accept"), and it still listens: nothing here needs doing, and no server
          // is blamed (test/e2e/descriptors.test.ts).
          server.on("error", ignore)
          resume(Effect.succeed(server))
        }
        if (fd !== undefined) {
          // Bound and listening already (in the nib this one replaces): its accept queue is served as it is.
          server.listen({ fd, backlog: options.backlog }, onListening)
        } else if (endpoint._tag === "Unix") {
          // Bound under a temporary name, then moved to the path: see UnixPath.
          let name: string
          try {
            name = UnixPath.bindName(endpoint.path)
          } catch (error) {
            return onError(error as Error)
          }
          server.listen({ path: name, backlog: options.backlog }, () => {
            try {
              claims.set(server, UnixPath.claim(name, endpoint.path))
            } catch (error) {
              return onError(error as Error)
            }
            onListening()
          })
        } else {
          server.listen(
            {
              host: endpoint.host,
              port: endpoint.port,
              backlog: options.backlog,
              reusePort: options.reusePort === true
            },
            onListening
          )
        }
      })

    // One thread: a connect that ends frees the place a waiting connection needs.
    if (dials !== undefined && shared === undefined) dials.onFree = () => admit()

    const inherited = options.descriptors ?? []
    // Inherited sockets are listened on by `adopt`; until then the address is the one they were given under.
    let servers: ReadonlyArray<Net.Server> = inherited.length > 0 ? [] : [yield* listen(options.endpoint)]
    let address = servers.length > 0 ? boundAddress(servers[0]!, options.endpoint) : options.endpoint
    let opened = inherited.length === 0
    yield* Effect.addFinalizer(() =>
      Effect.callback<void>((resume) => {
        dispatch = undefined
        closed = true
        for (let i = head; i < queue.length; i++) queue[i]!.destroy()
        queue.length = head = 0
        // Nothing is left open: whoever waits for the drain to end is told.
        draining = true
        idleWaiters.wakeAll()
        // Stop listening now; connections already handed to handlers end with their own fibers (interrupted
        // before this runs), so there is nothing to wait for here (close's callback would wait for all of them).
        closeServers(servers)
        setImmediate(() => resume(Effect.void))
      })
    )

    const adopt = Effect.suspend(() => {
      if (opened) return Effect.void
      opened = true
      return Effect.forEach(inherited, (fd) =>
        Effect.map(listen(options.endpoint, fd), (server) => {
          if (closed || draining) return server.close()
          if (options.endpoint._tag === "Unix" && servers.length === 0) {
            claims.set(server, UnixPath.adopt(options.endpoint.path))
          }
          servers = [...servers, server]
          if (servers.length === 1) address = boundAddress(server, options.endpoint)
        }), { discard: true })
    })

    const rebind = (endpoint: Address.Endpoint) =>
      Effect.suspend(() => {
        if (!opened) {
          // Before `adopt`, the inherited sockets are what the replaced nib's own `listen` left: the same address again
          // (its -F read again) keeps them; another one is bound, and they are closed, never served.
          if (Address.format(endpoint) === Address.format(address)) return Effect.succeed(address)
          return Effect.map(listen(endpoint), (next) => {
            opened = true
            for (const fd of inherited) closeDescriptor(fd)
            servers = [next]
            address = boundAddress(next, endpoint)
            return address
          })
        }
        return Effect.map(listen(endpoint), (next) => {
          const previous = servers
          servers = [next]
          address = boundAddress(next, endpoint)
          // Stop accepting on the old address; its connections go on (close's callback would wait for them).
          closeServers(previous)
          return address
        })
      })

    const run = <R>(handler: (socket: Socket) => Effect.Effect<void, never, R>) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const context = Context.omit(Scope.Scope)(yield* Effect.context<R>()) as Context.Context<R>
        const track = Fiber.runIn(scope)
        const fork = Effect.runForkWith(context)
        const onEnd = () => {
          active--
          giveBack()
          admit()
        }
        dispatch = (socket) => {
          active++
          const fiber = fork(handler(socket))
          fiber.addObserver(onEnd)
          track(fiber)
        }
        admit()
        return yield* Effect.never.pipe(
          Effect.onInterrupt(() => Effect.sync(() => (dispatch = undefined))),
          Effect.ensuring(Scope.close(scope, Exit.void))
        )
      })

    return {
      address: () => address,
      rebind,
      adopt,
      descriptors: () => servers.map(fdOf),
      handOver: () => {
        handedOver = true
      },
      active: () => active,
      waiting: () => queue.length - head,
      maxConnections: () => maxConnections,
      setMaxConnections: (n) => {
        maxConnections = n
        admit()
      },
      drain: () => {
        if (draining) return
        draining = true
        closeServers(servers)
        idleWaiters.check()
      },
      idle: idleWaiters.wait(() => draining),
      run
    }
  })
