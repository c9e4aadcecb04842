/**
 * The byte path, on Node's native streams: dialing a server with a connect timeout, and relaying two sockets with
 * `pipe()` and half-close in both directions. Plain callbacks, no Effect: this runs once per connection and must stay
 * as cheap as a hand-written Node proxy. The only module of nib, with TcpServer, that touches `node:net` sockets.
 */
import * as Net from "node:net"
import type { Endpoint } from "../domain/Address.ts"

/** A connected stream socket (client or server side). @category models */
export type Socket = Net.Socket

/** Why a dial failed: the server refused or errored, or did not accept within the timeout. @category models */
export type DialFailure = "error" | "timeout"

/** Connect options computed once per server, so dialing allocates nothing else. @category models */
export type DialTarget = Net.NetConnectOpts

/** The options to reach `endpoint` (already resolved to an address). @category constructors */
export const dialTarget = (endpoint: Endpoint): DialTarget =>
  endpoint._tag === "Unix"
    ? { path: endpoint.path, allowHalfOpen: true }
    : { host: endpoint.host, port: endpoint.port, allowHalfOpen: true }

/**
 * Starts a connection to `target` and calls `onResult` exactly once: with the socket when it is connected, or with
 * the failure and its error. A timed-out or failed socket is destroyed before `onResult` runs.
 */
export const dial = (
  target: DialTarget,
  timeoutMillis: number,
  onResult: (socket: Socket | undefined, failure: DialFailure | undefined, error: Error | undefined) => void
): Socket => {
  const socket = Net.connect(target)
  // A socket timeout dies with the socket, so a dial abandoned by destroy() leaves no timer behind.
  socket.setTimeout(timeoutMillis)
  socket.once("connect", onConnect)
  socket.once("error", onError)
  socket.once("timeout", onTimeout)
  function onConnect() {
    socket.setTimeout(0)
    socket.off("error", onError)
    socket.off("timeout", onTimeout)
    onResult(socket, undefined, undefined)
  }
  function onError(error: Error) {
    socket.off("connect", onConnect)
    socket.off("timeout", onTimeout)
    onResult(undefined, "error", error)
  }
  function onTimeout() {
    socket.off("connect", onConnect)
    socket.off("error", onError)
    socket.on("error", ignore)
    socket.destroy()
    onResult(undefined, "timeout", undefined)
  }
  return socket
}

const ignore = () => {}

/** Byte counts of a finished relay. @category models */
export interface RelayTotals {
  /** Bytes read from the client (and sent on to the server). */
  readonly fromClient: number
  /** Bytes read from the server (and sent on to the client). */
  readonly fromServer: number
}

/**
 * Relays `client` and `server` both ways until both are closed, then calls `onDone` once. Each side's EOF becomes a
 * half-close (FIN) towards the other while the other direction keeps flowing; an error or reset on either side
 * resets the other and ends both. Both sockets must have been created with `allowHalfOpen`.
 */
export const relay = (client: Socket, server: Socket, onDone: (totals: RelayTotals) => void): void => {
  let open = 2
  const onClose = () => {
    if (--open === 0) onDone({ fromClient: client.bytesRead, fromServer: server.bytesRead })
  }
  const onClientError = () => {
    if (!server.destroyed) server.resetAndDestroy()
  }
  const onServerError = () => {
    if (!client.destroyed) client.resetAndDestroy()
  }
  client.on("error", onClientError)
  server.on("error", onServerError)
  client.once("close", onClose)
  server.once("close", onClose)
  client.pipe(server)
  server.pipe(client)
}

/**
 * Closes a socket at once: a FIN, or a reset if bytes it received were never read (the kernel's rule for close, the
 * same as pen's). Idempotent.
 */
export const destroy = (socket: Socket): void => {
  if (!socket.destroyed) socket.destroy()
}
