/**
 * The active checks' probes on Node sockets: a TCP connect (`tcp`), an HTTP GET whose status line is read (`http`),
 * and a send-then-expect exchange (`send:TEXT,expect:REGEX`) over TCP or, in UDP mode, as one datagram and its reply.
 * Each probe opens one socket and destroys it however the probe ends: passed, failed, timed out or interrupted.
 * HealthChecker runs them (through its `Prober`); `domain/HealthCheck.ts` has what a check is.
 */
import { Data, Effect } from "effect"
import * as Dgram from "node:dgram"
import * as Net from "node:net"
import type { Endpoint } from "../domain/Address.ts"
import type { Check } from "../domain/HealthCheck.ts"

/**
 * A check that did not pass; `reason` is what the log line says after "is down: " (`http GET /health answered 500`).
 * `cause` is the socket error, if any: `Socket.isOwnFailure(cause)` tells nib's own failures (EMFILE, ...) apart.
 *
 * @category errors
 */
export class ProbeFailure extends Data.TaggedError("ProbeFailure")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return this.reason
  }
}

/** How a probe is made. @category models */
export interface Options {
  /** The probe fails if it has not passed within this many milliseconds (nib uses the check interval). */
  readonly timeoutMs: number
  /** UDP mode (`-U`): `send:` goes as a datagram and the reply datagram must match. */
  readonly datagram?: boolean | undefined
}

/** The most bytes read from a server before a probe gives up on finding what it expects. @category constants */
export const READ_LIMIT = 64 * 1024

/**
 * Checks the server at `endpoint` once: succeeds when it passes, fails with a {@link ProbeFailure} saying why when it
 * does not (or not within `timeoutMs`). The socket is destroyed in every case, interruption included.
 *
 * @category probes
 */
export const probe = (check: Check, endpoint: Endpoint, options: Options): Effect.Effect<void, ProbeFailure> =>
  (check._tag === "Send" && options.datagram === true ? datagram(check, endpoint) : stream(check, endpoint)).pipe(
    Effect.timeoutOrElse({
      duration: options.timeoutMs,
      orElse: () =>
        Effect.fail(
          new ProbeFailure({ reason: `${label(check)}: no ${what(check)} within ${seconds(options.timeoutMs)} s` })
        )
    })
  )

/** How a check names itself in a reason: `tcp connect`, `http GET /health`, `send`. @category formatting */
export const label = (check: Check): string =>
  check._tag === "Tcp" ? "tcp connect" : check._tag === "Http" ? `http GET ${check.path}` : "send"

const what = (check: Check): string =>
  check._tag === "Tcp" ? "connection" : check._tag === "Http" ? "answer" : `answer matching /${check.expect}/`

const seconds = (ms: number): string => String(Math.round(ms) / 1000)

/** `ECONNREFUSED`, or the message when the error has no code. */
const codeOf = (error: Error): string => (error as NodeJS.ErrnoException).code ?? error.message

/** The Host header for `endpoint`: `host:port` (bracketed IPv6; no port for 80), `localhost` for a Unix socket. */
export const hostHeader = (endpoint: Endpoint): string => {
  if (endpoint._tag === "Unix") return "localhost"
  const host = endpoint.host.includes(":") ? `[${endpoint.host}]` : endpoint.host
  return endpoint.port === 80 ? host : `${host}:${endpoint.port}`
}

/** The HTTP status of a status line (`HTTP/1.1 200 OK`), or undefined when it is not one. */
const STATUS_LINE = /^HTTP\/\d(?:\.\d)? (\d{3})(?: |$)/

/** The probes over a stream socket: connect, then (http, send) write and read until the answer is decided. */
const stream = (check: Check, endpoint: Endpoint): Effect.Effect<void, ProbeFailure> =>
  Effect.callback<void, ProbeFailure>((resume) => {
    const socket = endpoint._tag === "Unix"
      ? Net.connect({ path: endpoint.path })
      : Net.connect({ host: endpoint.host, port: endpoint.port })
    const name = label(check)
    const expect = check._tag === "Send" ? new RegExp(check.expect) : undefined
    let received = ""
    let done = false
    const finish = (reason?: string, cause?: unknown) => {
      if (done) return
      done = true
      socket.destroy()
      resume(reason === undefined ? Effect.void : Effect.fail(new ProbeFailure({ reason, cause })))
    }
    // Decides on what was read so far: undefined while more is needed.
    const decide = (): { readonly failed: string | undefined } | undefined => {
      if (check._tag === "Http") {
        const end = received.indexOf("\r\n")
        if (end < 0) return received.length > READ_LIMIT ? { failed: `${name}: not an HTTP answer` } : undefined
        const status = STATUS_LINE.exec(received.slice(0, end))
        if (status === null) return { failed: `${name}: not an HTTP answer (${JSON.stringify(received.slice(0, 40))})` }
        const code = Number(status[1])
        return { failed: code >= 200 && code < 400 ? undefined : `${name} answered ${code}` }
      }
      if (expect!.test(received)) return { failed: undefined }
      return received.length > READ_LIMIT
        ? { failed: `${name}: no answer matching /${expect!.source}/ in ${READ_LIMIT} bytes` }
        : undefined
    }
    let connected = false
    socket.on("error", (error) =>
      finish(
        connected ?
          `${name}: ${codeOf(error)}` :
          `${check._tag === "Tcp" ? name : `${name}: connect`} failed (${codeOf(error)})`,
        error
      ))
    socket.on("connect", () => {
      connected = true
      if (check._tag === "Tcp") return finish()
      if (check._tag === "Http") {
        socket.write(
          `GET ${check.path} HTTP/1.1\r\nHost: ${hostHeader(endpoint)}\r\nUser-Agent: nib-check\r\nAccept: */*\r\n` +
            "Connection: close\r\n\r\n"
        )
      } else if (check.send !== "") {
        socket.write(Buffer.from(check.send, "latin1"))
      }
    })
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1")
      const decided = decide()
      if (decided !== undefined) finish(decided.failed)
    })
    socket.on("end", () => {
      const decided = decide()
      finish(decided === undefined ? `${name}: closed before an ${what(check)}` : decided.failed)
    })
    return Effect.sync(() => {
      done = true
      socket.destroy()
    })
  })

/** The `send:` probe in UDP mode: one datagram to the server, and a reply datagram that matches. */
const datagram = (check: Check & { readonly _tag: "Send" }, endpoint: Endpoint): Effect.Effect<void, ProbeFailure> =>
  Effect.callback<void, ProbeFailure>((resume) => {
    if (endpoint._tag !== "Tcp") {
      resume(Effect.fail(new ProbeFailure({ reason: `send: ${endpoint.path} is not a UDP address` })))
      return
    }
    let socket: Dgram.Socket
    try {
      socket = Dgram.createSocket({ type: Net.isIPv6(endpoint.host) ? "udp6" : "udp4" })
    } catch (error) {
      resume(Effect.fail(new ProbeFailure({ reason: `send failed (${codeOf(error as Error)})`, cause: error })))
      return
    }
    const expect = new RegExp(check.expect)
    let done = false
    const close = () => {
      try {
        socket.close()
      } catch {
        // already closed
      }
    }
    const finish = (reason?: string, cause?: unknown) => {
      if (done) return
      done = true
      close()
      resume(reason === undefined ? Effect.void : Effect.fail(new ProbeFailure({ reason, cause })))
    }
    socket.on("error", (error) => {
      const code = codeOf(error)
      // An ICMP port unreachable comes back as ECONNREFUSED on a connected datagram socket.
      finish(code === "ECONNREFUSED" ? "send: port unreachable" : `send failed (${code})`, error)
    })
    socket.on("connect", () => socket.send(Buffer.from(check.send, "latin1")))
    // Each reply is judged on its own; one that does not match may be followed by one that does.
    socket.on("message", (reply: Buffer) => {
      if (expect.test(reply.toString("latin1"))) finish()
    })
    socket.connect(endpoint.port, endpoint.host)
    return Effect.sync(() => {
      done = true
      close()
    })
  })
