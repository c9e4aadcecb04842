/**
 * pen's control port (`-C`): one command per connection, the reply, then the connection is closed.
 *
 * pen reads each control client with one blocking `recv()` inside its only loop, so a client that connects and sends
 * nothing freezes all load balancing. Here each control client is its own fiber, started as the client is accepted:
 * it has `READ_TIMEOUT` to send a line, and while it waits (or while a long reply drains) the balancer and other
 * control clients go on. A burst of clients is served as it comes, none waiting for another, up to half the process's
 * descriptors ({@link maxClients}); past that a client is told so in one line and closed, and counted. None is ever
 * reset for being one too many. A line longer than pen's limit is refused with a message instead of being cut.
 * Whatever follows the line is read and dropped, so the connection closes as soon as the client has its reply (pen
 * leaves it unread and resets the connection). `control_acl` is checked first: a denied client is closed without a
 * word, as in pen.
 */
import { Context, Effect, Layer } from "effect"
import { LbConfig } from "../Config.ts"
import type * as Address from "../domain/Address.ts"
import type { Socket } from "../net/Socket.ts"
import * as TcpServer from "../net/TcpServer.ts"
import * as Common from "../proxy/Common.ts"
import { Origin } from "../services/ServerPool.ts"
import { StatsReporter } from "../services/StatsReporter.ts"
import { Handover } from "../shared/Handover.ts"
import * as Command from "./Command.ts"
import { Control } from "./Control.ts"

/** How long a control client has to send its command line. @category constants */
export const READ_TIMEOUT_MS = 10_000

/** How long a reply may take to drain to a control client that does not read it. @category constants */
export const WRITE_TIMEOUT_MS = 30_000

/**
 * The control clients served at once with `limit` descriptors (the process's limit; unknown: no bound but the
 * system's): half of them, so that a burst of control clients, or many silent ones, never takes the descriptors the
 * balancing needs. Each client has its own deadlines, so none waits for another however many there are.
 * @category constructors
 */
export const maxClients = (limit: number | undefined): number =>
  limit === undefined ? Number.POSITIVE_INFINITY : Math.max(1, Math.floor(limit / 2))

/** The line a control client past {@link maxClients} gets before nib closes it. @category constructors */
export const busyReply = (max: number): string => `too many control clients at once (at most ${max}): try again later\n`

/** The message pen prints when it will not open the control port as root. @category constants */
export const ROOT_REFUSAL = "Won't open control port running as root; use -u to run as different user"

/** The control port service: where it listens, if it does. @category services */
export class ControlPort extends Context.Service<ControlPort, {
  /** The bound address (with the real port when 0 was asked for); `undefined` without `-C` or when refused. */
  readonly address: Address.Endpoint | undefined
  /** The listening socket's descriptor, to hand it over in an upgrade; `undefined` without a control port. */
  readonly descriptor: () => number | undefined
  /**
   * The socket was handed over (an upgrade): this nib stops listening, so that every control client reaches the new
   * one; a client being served is answered.
   */
  readonly handOver: Effect.Effect<void>
}>()("nib/control/ControlPort") {
  static readonly layer: Layer.Layer<
    ControlPort,
    TcpServer.TcpServerError,
    LbConfig | Control | StatsReporter
  > = Layer.effect(
    ControlPort,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const control = yield* Control
      const none = ControlPort.of({ address: undefined, descriptor: () => undefined, handOver: Effect.void })
      if (config.control === undefined) return none
      if (process.getuid?.() === 0 && config.user === undefined) {
        // pen goes on without a control port; so does nib, saying why.
        yield* Effect.logWarning(ROOT_REFUSAL)
        return none
      }
      // After an upgrade, the socket of the nib this one replaces, taken over at once.
      const inherited = (yield* Handover).control
      const server = yield* TcpServer.make({
        endpoint: config.control.endpoint,
        // The data listener's `-q`: a burst waits in the kernel's queue until it is accepted, as in pen.
        backlog: config.backlog,
        // Every client is served as it is accepted; none waits, none is reset (those past the share are told why).
        maxConnections: Number.POSITIVE_INFINITY,
        maxWaiting: Number.POSITIVE_INFINITY,
        descriptors: inherited === undefined ? undefined : [inherited]
      })
      const limit = TcpServer.descriptorLimit()
      const max = maxClients(limit)
      const stats = yield* StatsReporter
      const warnUnsafe = Common.rateLimited(
        Effect.runForkWith(yield* Effect.context<never>()),
        (message) => Effect.logWarning(message).pipe(Effect.annotateLogs({ service: "ControlPort" }))
      )
      const share: Share = {
        // `active` counts the client being admitted: past `max`, it is one too many.
        full: () => server.active() > max,
        refuse: (socket) => {
          stats.addUnsafe("controlRefused", 1)
          warnUnsafe(
            `control port: refused a control client: ${max} at once already (half of nib's ${limit} descriptors)`
          )
          return reply(socket, busyReply(max))
        }
      }
      yield* server.adopt
      yield* Effect.forkScoped(server.run((socket) => serveClient(control, share, socket)))
      return ControlPort.of({
        address: server.address(),
        descriptor: () => server.descriptors()[0],
        handOver: Effect.sync(() => {
          server.handOver()
          server.drain()
        })
      })
    })
  )
}

/** The control port's share of descriptors: whether it is taken, and how a client past it is refused. */
interface Share {
  readonly full: () => boolean
  readonly refuse: (socket: Socket) => Effect.Effect<void>
}

type Read =
  | { readonly _tag: "Line"; readonly line: string }
  | { readonly _tag: "TooLong" }
  | { readonly _tag: "Gone" }

/** Reads up to the first line end (or EOF), at most `Command.MAX_LINE` bytes, within `READ_TIMEOUT_MS`. */
const readLine = (socket: Socket): Effect.Effect<Read> =>
  Effect.callback<Read>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const finish = (read: Read) => {
      clearTimeout(timer)
      socket.off("data", onData)
      socket.off("end", onEnd)
      socket.off("close", onGone)
      socket.pause()
      resume(Effect.succeed(read))
    }
    const text = () => Buffer.concat(chunks, size).toString("latin1")
    const onData = (chunk: Buffer) => {
      chunks.push(chunk)
      size += chunk.length
      const eol = chunk.findIndex((b) => b === 10 || b === 13)
      const before = size - chunk.length + (eol < 0 ? chunk.length : eol)
      if (before > Command.MAX_LINE) return finish({ _tag: "TooLong" })
      if (eol >= 0) finish({ _tag: "Line", line: Command.firstLine(text()) })
    }
    const onEnd = () => finish({ _tag: "Line", line: text() })
    const onGone = () => finish({ _tag: "Gone" })
    const timer = setTimeout(onGone, READ_TIMEOUT_MS)
    socket.on("data", onData)
    socket.once("end", onEnd)
    socket.once("close", onGone)
    socket.resume()
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

const discard = () => {}

/**
 * Sends the reply and closes; a client that does not read it is dropped after `WRITE_TIMEOUT_MS`. Whatever else the
 * client sends (the rest of an overlong line, more lines) is read and dropped, as pen ignores it: left unread, it
 * would stop the client's writes and keep the connection from closing (nib's FIN sent, the client's never read) until
 * the timeout.
 */
const reply = (socket: Socket, text: string): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const timer = setTimeout(() => socket.destroy(), WRITE_TIMEOUT_MS)
    socket.once("close", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    socket.on("data", discard)
    socket.resume()
    socket.end(Buffer.from(text, "latin1"))
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

const serveClient = (control: Control["Service"], share: Share, socket: Socket): Effect.Effect<void> =>
  Effect.gen(function*() {
    socket.on("error", () => socket.destroy())
    if (!control.admitsControlClient(socket.remoteAddress)) return socket.destroy()
    if (share.full()) return yield* share.refuse(socket)
    const read = yield* readLine(socket)
    switch (read._tag) {
      case "Gone":
        return socket.destroy()
      case "TooLong":
        return yield* reply(socket, `command line too long: at most ${Command.MAX_LINE} bytes\n`)
      case "Line":
        yield* Effect.logDebug(`${socket.remoteAddress ?? "unix"}: ${read.line}`).pipe(
          Effect.annotateLogs({ service: "ControlPort" })
        )
        // What the operator changes here is shared with the peers (`--peers`); -O and -F are the configuration.
        return yield* reply(socket, yield* control.execute(read.line).pipe(Effect.provideService(Origin, "operator")))
    }
  }).pipe(Effect.ensuring(Effect.sync(() => socket.destroy())))
