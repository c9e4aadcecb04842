/**
 * pen's request log (`-l`): one record per chunk read from a client, written to a file (pen.c:log_request) or sent
 * as a UDP datagram to penlogd (pen.c:netlog), and the rule that tells the two targets apart.
 *
 * Pure: the caller passes the time, the addresses and the chunk, and does the writing or sending.
 *
 * Byte rules, as in pen: the chunk is cut at its first CR or LF (so a record is always exactly one line: a chunk can
 * never inject a newline), bytes >= 0x80 become `.`, and other control bytes are written raw. Deviation: pen applies
 * the `.` rule only to the file; nib applies it to the datagram as well, so both records carry the same text.
 */

/** pen's KEEP_MAX: the file record keeps at most this many bytes of the chunk. @category constants */
export const FILE_CHUNK_MAX = 100

/** pen's netlog buffer size: a datagram, final newline included, is at most this many bytes. @category constants */
export const DATAGRAM_MAX = 1024

const CR = 0x0d
const LF = 0x0a
const DOT = 0x2e

/** Number of leading bytes of `chunk` (at most `max`) before the first CR or LF. */
const lineLength = (chunk: Uint8Array, max: number): number => {
  const limit = Math.min(chunk.length, Math.max(0, max))
  let n = 0
  while (n < limit && chunk[n] !== CR && chunk[n] !== LF) n++
  return n
}

const printable = (byte: number): number => (byte >= 0x80 ? DOT : byte)

/**
 * The file record: `<client_ip> <unix_time> <server_ip> <up to 100 bytes of the chunk, stopping at the first CR or
 * LF>\n`. Each chunk byte is one char of the result (all below 0x80), so it can be written as latin1 or UTF-8 alike.
 *
 * @category formatting
 */
export const fileLine = (clientIp: string, unixSeconds: number, serverIp: string, chunk: Uint8Array): string => {
  const n = lineLength(chunk, FILE_CHUNK_MAX)
  let text = ""
  for (let i = 0; i < n; i++) text += String.fromCharCode(printable(chunk[i]!))
  return `${clientIp} ${Math.trunc(unixSeconds)} ${serverIp} ${text}\n`
}

const encoder = new TextEncoder()

/**
 * The datagram for penlogd: `+ <client_ip> <server_ip> <chunk up to CR/LF>\n`, at most {@link DATAGRAM_MAX} bytes:
 * the chunk is cut so that the whole datagram, final newline included, fits (pen.c:netlog).
 *
 * @category formatting
 */
export const datagram = (clientIp: string, serverIp: string, chunk: Uint8Array): Uint8Array => {
  // Addresses are short; the cut only guards the size invariant against an absurd one.
  const head = encoder.encode(`+ ${clientIp} ${serverIp} `).subarray(0, DATAGRAM_MAX - 1)
  const n = lineLength(chunk, DATAGRAM_MAX - 1 - head.length)
  const out = new Uint8Array(head.length + n + 1)
  out.set(head, 0)
  for (let i = 0; i < n; i++) out[head.length + i] = printable(chunk[i]!)
  out[head.length + n] = LF
  return out
}

/** Where `-l` sends the log. @category models */
export type Target =
  | { readonly _tag: "File"; readonly path: string }
  | { readonly _tag: "Udp"; readonly host: string; readonly port: number }

/** A `-l` argument that names a UDP target nib cannot use. @category models */
export interface TargetError {
  readonly _tag: "Error"
  readonly message: string
}

/**
 * Reads a `-l` argument with pen's rule: `host:port` (UDP to penlogd) if it contains `:` and does not start with
 * `/`, else a file path (relative paths such as `pen.log` included). The port must be 1..65535, where pen would take
 * `atoi` of anything (port 0 for `host:abc`). pen splits at the first colon; nib splits at the last one, so
 * `host:port` reads the same, `::1:514` and `[::1]:514` name an IPv6 host, and `host:514:x` is an error.
 *
 * @category parsing
 */
export const parseTarget = (text: string): Target | TargetError => {
  if (!text.includes(":") || text.startsWith("/")) return { _tag: "File", path: text }
  const colon = text.lastIndexOf(":")
  let host = text.slice(0, colon)
  const portText = text.slice(colon + 1)
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1)
  if (host === "") return { _tag: "Error", message: `log target "${text}" has no host` }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN
  if (!(port >= 1 && port <= 65535)) {
    return { _tag: "Error", message: `bad log port "${portText}" in "${text}" (expected 1..65535)` }
  }
  return { _tag: "Udp", host, port }
}
