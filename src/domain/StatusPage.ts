/**
 * pen's statistics in its two formats: the HTML status page that `-w file` receives on SIGUSR1 or the `status`
 * command (pen.c:webstats), and the debug lines written on SIGUSR1 without `-w` (pen.c:textstats).
 *
 * Pure: the caller gathers a {@link StatusPage} snapshot (time already formatted, ages already computed) and writes
 * the result wherever it goes. The HTML is pen's, line for line, with two deliberate differences:
 * - addresses (a Unix socket path can hold anything) are HTML-escaped (`&`, `<`, `>`, `"`); pen prints them raw and
 *   can emit broken HTML. Plain IP addresses contain none of these characters, so pen's pages are unchanged.
 * - the text form prints the client section properly; pen passes its client format strings as arguments (a
 *   format-string bug) and prints garbage such as `address sent  %llu` and a pointer as "last used".
 */

/** One server (pen's server table row). @category models */
export interface ServerRow {
  readonly index: number
  /** Host, IPv6 address or socket path, as pen prints it. */
  readonly address: string
  /** pen's status column: epoch seconds of the last failure, 0 = never. */
  readonly status: number
  readonly port: number
  readonly connections: number
  readonly softLimit: number
  readonly hardLimit: number
  readonly sent: number
  readonly received: number
  readonly weight: number
  readonly prio: number
}

/** One remembered client (pen's client table slot). @category models */
export interface ClientRow {
  readonly slot: number
  readonly address: string
  /** Seconds since the client's last connection. */
  readonly ageSeconds: number
  /** The server it used last (pen: -1 emergency, -2 abuse). */
  readonly lastServer: number
  readonly connects: number
  /** Bytes sent to the client, and received from it. */
  readonly sent: number
  readonly received: number
}

/** One live connection (pen's connection table slot with a client). @category models */
export interface ConnectionRow {
  readonly index: number
  readonly downfd: number
  readonly upfd: number
  /** Bytes waiting to be written to the client, and to the server. */
  readonly pendingDown: number
  readonly pendingUp: number
  readonly client: number
  readonly server: number
}

/** A snapshot of everything the status page shows. @category models */
export interface StatusPage {
  /** Local time of the page, already formatted "YYYY-MM-DD HH:MM:SS" (use {@link formatLocalTime}). */
  readonly time: string
  /** pen's "current": the last server used. */
  readonly current: number
  readonly servers: ReadonlyArray<ServerRow>
  readonly clientsMax: number
  readonly clients: ReadonlyArray<ClientRow>
  readonly connectionsMax: number
  readonly connectionsUsed: number
  readonly connectionsLast: number
  readonly connections: ReadonlyArray<ConnectionRow>
}

const pad = (n: number, width: number): string => String(n).padStart(width, "0")

/** Formats `date` as pen's `strftime("%Y-%m-%d %H:%M:%S")` in local time. @category formatting */
export const formatLocalTime = (date: Date): string =>
  `${pad(date.getFullYear(), 4)}-${pad(date.getMonth() + 1, 2)}-${pad(date.getDate(), 2)} `
  + `${pad(date.getHours(), 2)}:${pad(date.getMinutes(), 2)}:${pad(date.getSeconds(), 2)}`

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }

/** Escapes `&`, `<`, `>` and `"` (a deviation from pen, which prints addresses raw). @category formatting */
export const escapeHtml = (text: string): string => text.replace(/[&<>"]/g, (c) => HTML_ESCAPES[c]!)

const TABLE = "<table bgcolor=\"#c0c0c0\">\n"

const header = (names: ReadonlyArray<string>): string =>
  `<tr>\n${names.map((name) => `<td bgcolor="#80f080">${name}</td>\n`).join("")}</tr>\n`

const row = (cells: ReadonlyArray<string | number>): string =>
  `<tr>\n${cells.map((cell) => `<td>${typeof cell === "string" ? escapeHtml(cell) : cell}</td>\n`).join("")}</tr>\n`

const SERVER_HEADER = header([
  "server",
  "address",
  "status",
  "port",
  "connections",
  "max soft",
  "max hard",
  "sent",
  "received",
  "weight",
  "prio"
])

const CLIENT_HEADER = header(["client", "address", "age(secs)", "last server", "connects", "sent", "received"])

const CONNECTION_HEADER = header([
  "connection",
  "downfd",
  "upfd",
  "pending data down",
  "pending data up",
  "client",
  "server"
])

/**
 * Renders pen's HTML status page: the server table, the client table and the connection table, one `<tr>` per row,
 * each cell on its own line, ending with `</body>\n</html>\n`.
 *
 * @category formatting
 */
export const render = (page: StatusPage): string => {
  const out: Array<string> = [
    "<html>\n<head>\n<title>Pen status page</title>\n</head>\n",
    "<body bgcolor=\"#ffffff\"><h1>Pen status page</h1>\n",
    `Time ${escapeHtml(page.time)}, ${page.servers.length} servers, ${page.current} current<p>\n`,
    TABLE,
    SERVER_HEADER
  ]
  for (const s of page.servers) {
    out.push(row([
      s.index,
      s.address,
      s.status,
      s.port,
      s.connections,
      s.softLimit,
      s.hardLimit,
      s.sent,
      s.received,
      s.weight,
      s.prio
    ]))
  }
  out.push(
    "</table>\n",
    "<h2>Active clients</h2>",
    `Max number of clients: ${page.clientsMax}<p>`,
    TABLE,
    CLIENT_HEADER
  )
  for (const c of page.clients) {
    out.push(row([c.slot, c.address, c.ageSeconds, c.lastServer, c.connects, c.sent, c.received]))
  }
  out.push(
    "</table>\n",
    "<h2>Active connections</h2>",
    `Number of connections: ${page.connectionsMax} max, ${page.connectionsUsed} used, ${page.connectionsLast} last<p>`,
    TABLE,
    CONNECTION_HEADER
  )
  for (const c of page.connections) {
    out.push(row([c.index, c.downfd, c.upfd, c.pendingDown, c.pendingUp, c.client, c.server]))
  }
  out.push("</table>\n", "</body>\n</html>\n")
  return out.join("")
}

/**
 * Renders nib's version of pen's textstats: one element per debug message, without the timestamp prefix the logger
 * adds. Multi-line messages (a server, a client, a connection) end with `\n` as pen's do, which leaves the blank
 * line pen prints after each block. The server and connection blocks are pen's; the client block is what pen meant
 * to print (`Client N status:`, `address`, `last used <age> s ago`, `last server`, `connects`, `sent X, received Y`)
 * instead of its garbled output.
 *
 * @category formatting
 */
export const renderText = (page: StatusPage): Array<string> => {
  const out: Array<string> = [`Time ${page.time}, ${page.servers.length} servers, ${page.current} current`]
  for (const s of page.servers) {
    out.push(
      `Server ${s.index} status:\n`
        + `address ${s.address}\n`
        + `${s.status}\n`
        + `port ${s.port}\n`
        + `${s.connections} connections (${s.softLimit} soft, ${s.hardLimit} hard)\n`
        + `${s.sent} sent, ${s.received} received\n`
    )
  }
  out.push(`Max number of clients: ${page.clientsMax}`, "Active clients:")
  for (const c of page.clients) {
    out.push(
      `Client ${c.slot} status:\n`
        + `address ${c.address}\n`
        + `last used ${c.ageSeconds} s ago\n`
        + `last server ${c.lastServer}\n`
        + `connects ${c.connects}\n`
        + `sent ${c.sent}, received ${c.received}\n`
    )
  }
  out.push(`Max number of connections: ${page.connectionsMax}`, "Active connections:")
  for (const c of page.connections) {
    out.push(
      `Connection ${c.index} status:\n`
        + `downfd = ${c.downfd}, upfd = ${c.upfd}\n`
        + `pending data ${c.pendingDown} down, ${c.pendingUp} up\n`
        + `client ${c.client}, server ${c.server}\n`
    )
  }
  return out
}
