/**
 * pen's request log (`-l`): a line per chunk a client sends, to a file or, as a datagram, to a penlogd at host:port.
 * Formats are in `domain/AccessLog.ts`.
 *
 * Unlike pen, which buffers through stdio so that lines appear only at SIGHUP or exit, each line is handed to the file
 * at once (a reader tailing the log sees it promptly). HUP (`reopen`) closes and reopens the file, so that a log moved
 * aside by logrotate is followed by a new file. The per-chunk cost is paid only while a log is open: TcpProxy asks
 * `enabledUnsafe` when a connection starts relaying.
 */
import { Context, Effect, Layer } from "effect"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import * as Net from "node:net"
import { LbConfig } from "../Config.ts"
import * as AccessLog from "../domain/AccessLog.ts"
import { Broadcast } from "../shared/Broadcast.ts"

/** A log target that could not be opened or parsed. @category errors */
export class RequestLogError extends Error {
  readonly _tag = "RequestLogError"
}

/** The request log service. @category services */
export class RequestLog extends Context.Service<RequestLog, {
  /** Whether chunks are logged now (per-connection path). */
  readonly enabledUnsafe: () => boolean
  /** Logs one chunk from `clientIp` relayed to `serverIp` (per-connection path). */
  readonly chunkUnsafe: (clientIp: string, serverIp: string, chunk: Buffer) => void
  /** The target as given (`log` shows it), or undefined when nothing is logged. */
  readonly target: Effect.Effect<string | undefined>
  /** Opens `target` (a file or host:port) instead of the current one. */
  readonly open: (target: string) => Effect.Effect<void, RequestLogError>
  /** Stops logging (`no log`). */
  readonly close: Effect.Effect<void>
  /** Closes and reopens a log file (HUP); a datagram target is left as it is. */
  readonly reopen: Effect.Effect<void, RequestLogError>
}>()("nib/services/RequestLog") {
  /** The log of `-l`, if given; closed with the scope. */
  static readonly layer: Layer.Layer<RequestLog, RequestLogError, LbConfig> = Layer.effect(
    RequestLog,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const log = new Sink()
      yield* Effect.addFinalizer(() => Effect.sync(() => log.close()))
      // With -u the log is opened once privileges are dropped (the CLI calls `open`), as pen does, so that the file
      // belongs to the user nib runs as and HUP can reopen it.
      if (config.logTarget !== undefined && config.user === undefined) {
        yield* Effect.try({ try: () => log.open(config.logTarget!), catch: asError })
      }
      // Worker threads send their chunks here while a log is open.
      const broadcast = yield* Broadcast
      return RequestLog.of({
        enabledUnsafe: () => log.enabled,
        chunkUnsafe: (clientIp, serverIp, chunk) => log.write(clientIp, serverIp, chunk),
        target: Effect.sync(() => log.label),
        open: (target) =>
          Effect.try({ try: () => log.open(target), catch: asError }).pipe(
            Effect.andThen(broadcast.send({ _tag: "Log", on: true }))
          ),
        close: Effect.andThen(Effect.sync(() => log.close()), broadcast.send({ _tag: "Log", on: false })),
        reopen: Effect.try({ try: () => log.reopen(), catch: asError })
      })
    })
  )

  /**
   * A worker thread's log: its chunks go to `send` (the main thread, the log's one writer) while the main thread has a
   * log open; `open` and `close` only say whether it has (the target is the main thread's).
   */
  static readonly layerForward = (
    send: (clientIp: string, serverIp: string, chunk: Uint8Array) => void
  ): Layer.Layer<RequestLog, never, LbConfig> =>
    Layer.effect(
      RequestLog,
      Effect.gen(function*() {
        const config = yield* LbConfig
        let target = config.user === undefined ? config.logTarget : undefined
        return RequestLog.of({
          enabledUnsafe: () => target !== undefined,
          // A copy of the chunk alone: the relay's buffer is reused as soon as this returns.
          chunkUnsafe: (clientIp, serverIp, chunk) => send(clientIp, serverIp, new Uint8Array(chunk)),
          target: Effect.sync(() => target),
          open: (next) =>
            Effect.sync(() => {
              target = next
            }),
          close: Effect.sync(() => {
            target = undefined
          }),
          reopen: Effect.void
        })
      })
    )
}

const asError = (error: unknown) =>
  error instanceof RequestLogError ? error : new RequestLogError(error instanceof Error ? error.message : String(error))

/** The open log: a file descriptor or a datagram socket, and the target's text. */
class Sink {
  label: string | undefined
  enabled = false
  private fd: number | undefined
  private path: string | undefined
  private udp: { readonly socket: Dgram.Socket; readonly host: string; readonly port: number } | undefined

  open(text: string): void {
    const target = AccessLog.parseTarget(text)
    if (target._tag === "Error") throw new RequestLogError(`log: ${target.message}`)
    if (target._tag === "File") {
      const fd = openAppend(target.path)
      this.close()
      this.fd = fd
      this.path = target.path
    } else {
      const socket = Dgram.createSocket(Net.isIPv6(target.host) ? "udp6" : "udp4")
      socket.on("error", () => {})
      socket.unref()
      this.close()
      this.udp = { socket, host: target.host, port: target.port }
    }
    this.label = text
    this.enabled = true
  }

  reopen(): void {
    if (this.path === undefined || this.fd === undefined) return
    const fd = openAppend(this.path)
    Fs.closeSync(this.fd)
    this.fd = fd
  }

  close(): void {
    if (this.fd !== undefined) Fs.closeSync(this.fd)
    this.udp?.socket.close()
    this.fd =
      this.path =
      this.udp =
      this.label =
        undefined
    this.enabled = false
  }

  write(clientIp: string, serverIp: string, chunk: Buffer): void {
    if (this.fd !== undefined) {
      // One write(2) per line on an O_APPEND descriptor: whole lines, in order, visible at once.
      const line = AccessLog.fileLine(clientIp, Math.floor(Date.now() / 1000), serverIp, chunk)
      try {
        Fs.writeSync(this.fd, line, null, "latin1")
      } catch {
        // A full disk must not stop the relay; the next HUP reopens the file.
      }
    } else if (this.udp !== undefined) {
      this.udp.socket.send(AccessLog.datagram(clientIp, serverIp, chunk), this.udp.port, this.udp.host)
    }
  }
}

const openAppend = (path: string): number => {
  try {
    return Fs.openSync(path, "a")
  } catch (error) {
    throw new RequestLogError(`log: can't open '${path}': ${error instanceof Error ? error.message : error}`)
  }
}
