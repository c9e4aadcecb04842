/**
 * pen's settings for the sockets of the connections it relays, as its control language names them: `keepalive`,
 * `tcp_nodelay`, `tcp_fastclose` and `source`. Pure: the control language decodes them (`control/Command.ts`), the TCP
 * proxy holds them, and `net/Socket.ts` (the dial) and `net/Relay.ts` (the close) carry them out.
 */

/** `tcp_fastclose`'s values: which side's close ends the whole connection (`up` the server's, `down` the client's). */
export const FAST_CLOSES = ["off", "up", "down", "both"] as const

/** A `tcp_fastclose` value. @category models */
export type FastClose = (typeof FAST_CLOSES)[number]

/** The settings. @category models */
export interface SocketOptions {
  /** `keepalive`: SO_KEEPALIVE on the sockets to servers dialed from then on (client sockets always have it). */
  readonly keepalive: boolean
  /** `tcp_nodelay`: TCP_NODELAY from their first byte on the sockets dialed or accepted from then on. */
  readonly nodelay: boolean
  /** `tcp_fastclose`: whose close ends the whole connection, once nothing read is left to write. */
  readonly fastclose: FastClose
  /** `source`: the local IP address the sockets to servers are bound to (undefined: the system's choice). */
  readonly source: string | undefined
}

/** pen's defaults: all off. @category constructors */
export const defaults: SocketOptions = { keepalive: false, nodelay: false, fastclose: "off", source: undefined }

/** `tcp_fastclose WORD`: pen takes any word it does not know as `off`. @category parsing */
export const parseFastClose = (word: string): FastClose =>
  (FAST_CLOSES as ReadonlyArray<string>).includes(word) ? word as FastClose : "off"

/**
 * Whether the close of one side (the client's, `fromClient`, or the server's) ends the whole connection under
 * `fastclose`; otherwise it is a half-close, passed on to the other side while the other direction goes on.
 *
 * @category rules
 */
export const closesAll = (fastclose: FastClose, fromClient: boolean): boolean =>
  fastclose !== "off" && (fastclose === "both" || fastclose === (fromClient ? "down" : "up"))

/** One command that changes a setting, decoded (`source` with its address resolved). @category models */
export type Change =
  | { readonly setting: "keepalive"; readonly on: boolean }
  | { readonly setting: "tcp_nodelay"; readonly on: boolean }
  | { readonly setting: "tcp_fastclose"; readonly value: FastClose }
  | { readonly setting: "source"; readonly address: string | undefined }

/** `options` with `change` made. @category rules */
export const apply = (options: SocketOptions, change: Change): SocketOptions => {
  switch (change.setting) {
    case "keepalive":
      return { ...options, keepalive: change.on }
    case "tcp_nodelay":
      return { ...options, nodelay: change.on }
    case "tcp_fastclose":
      return { ...options, fastclose: change.value }
    case "source":
      return { ...options, source: change.address }
  }
}

/**
 * The two lines pen's `write` always has, in its place (after the servers and `stubborn`): `tcp_fastclose MODE` and
 * `tcp_nodelay` or `no tcp_nodelay`.
 *
 * @category encoding
 */
export const penLines = (options: SocketOptions): Array<string> => [
  `tcp_fastclose ${options.fastclose}`,
  options.nodelay ? "tcp_nodelay" : "no tcp_nodelay"
]

/**
 * The lines nib's `write` adds for what pen's leaves out (so that a rewritten file loses it): `keepalive` and
 * `source ADDRESS`, each only when set.
 *
 * @category encoding
 */
export const ownLines = (options: SocketOptions): Array<string> => [
  ...(options.keepalive ? ["keepalive"] : []),
  ...(options.source === undefined ? [] : [`source ${options.source}`])
]
