/**
 * Helpers for the side-by-side control-port suite (test/compat/control.test.ts): start pen and nib with the same argv
 * (only the ports differ), one control command per connection over a raw TCP socket, and expectations that are exact
 * bytes, or a shape where a value legitimately differs between the two (a number that is each balancer's own).
 *
 * pen cannot be asked for a free port (port 0) in a form it prints back, so both balancers get ports picked just
 * before they start; a start whose ports were taken meanwhile is retried with new ones. Every wait is bounded.
 */
import { Effect } from "effect"
import * as Net from "node:net"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Pen from "../utils/Pen.ts"

/** Which balancer. */
export type Which = "pen" | "nib"

/** A running balancer with its control port. */
export interface Instance {
  readonly which: Which
  readonly proc: Nib.Proc
  /** The listen port (`127.0.0.1:LP`). */
  readonly listen: number
  /** The control port (`-C 127.0.0.1:CP`). */
  readonly control: number
  /** The whole command line, for failure messages. */
  readonly command: string
}

/**
 * Starts `which` in the foreground with `-f <flags(CP)> 127.0.0.1:LP <servers>` on fresh free ports and waits until
 * both ports listen (pen: polling /proc/net/tcp, never connecting; nib: its start-up lines). pen is at `pen`.
 */
export const start = async (
  which: Which,
  pen: string | undefined,
  flags: (control: number) => ReadonlyArray<string>,
  servers: ReadonlyArray<string>
): Promise<Instance> => {
  let lastError: unknown
  for (let attempt = 0; attempt < 3; attempt++) {
    const control = await Backend.listenFreePort()
    const listen = await Backend.listenFreePort()
    const args = [...flags(control), `127.0.0.1:${listen}`, ...servers]
    try {
      if (which === "pen") {
        if (pen === undefined) throw new Error("pen is not installed")
        const { proc } = await Nib.spawnReady(pen, ["-f", ...args], Pen.READY)
        try {
          await Pen.waitForListen(listen)
          await Pen.waitForListen(control)
        } catch (error) {
          await Nib.stop(proc)
          throw error
        }
        return { which, proc, listen, control, command: `pen -f ${args.join(" ")}` }
      }
      const nib = await Nib.spawnNib(args)
      if (nib.port !== listen || nib.control?.port !== control) {
        await Nib.stop(nib)
        throw new Error(`nib listens on ${nib.port} (control ${nib.control?.port}), not ${listen} (${control})`)
      }
      return { which, proc: nib, listen, control, command: `nib -f ${args.join(" ")}` }
    } catch (error) {
      lastError = error
    }
  }
  throw lastError
}

/** A balancer for the length of the scope, stopped by pid (SIGTERM, then SIGKILL) when it closes. */
export const scoped = (
  which: Which,
  pen: string | undefined,
  flags: (control: number) => ReadonlyArray<string>,
  servers: ReadonlyArray<string>
) =>
  Effect.acquireRelease(
    Effect.promise(() => start(which, pen, flags, servers)),
    (instance) => Effect.promise(() => Nib.stop(instance.proc))
  )

/** What a control connection returned. */
export interface Reply {
  /** Every byte received, as latin1 (one character per byte). */
  readonly text: string
  /** How it ended: the balancer closed it (the end of a reply), reset it, or nothing came in time. */
  readonly ending: "eof" | "reset" | "error" | "timeout"
}

/**
 * One control command: connect to 127.0.0.1:`port`, write `bytes` (half-closing after them with `halfClose`), read
 * to the balancer's EOF, at most `timeoutMs`.
 */
export const send = (
  port: number,
  bytes: string,
  options: { readonly halfClose?: boolean; readonly timeoutMs?: number } = {}
): Promise<Reply> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    const socket = Net.connect({ host: "127.0.0.1", port })
    let done = false
    const finish = (ending: Reply["ending"]) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ text: Buffer.concat(chunks).toString("latin1"), ending })
    }
    const timer = setTimeout(() => finish("timeout"), options.timeoutMs ?? 5_000)
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.once("end", () => finish("eof"))
    socket.once("close", () => finish("eof"))
    socket.once("error", (error: NodeJS.ErrnoException) => finish(error.code === "ECONNRESET" ? "reset" : "error"))
    socket.once("connect", () => {
      const data = Buffer.from(bytes, "latin1")
      if (options.halfClose) socket.end(data)
      else socket.write(data)
    })
  })

// --- expectations ------------------------------------------------------------------------------------------------

/** The values an expectation may name: `{CP}`, `{LP}`, `{B1}`, `{B2}` (ports) and `{PID}`. */
export type Values = Readonly<Record<string, string | number>>

/** Exact bytes, after `{NAME}` placeholders are replaced. */
export interface Exact {
  readonly _tag: "Exact"
  readonly template: string
}

/** A shape: the template with `#` standing for a decimal number (the rest exact, placeholders replaced). */
export interface Shape {
  readonly _tag: "Shape"
  readonly template: string
}

/** Any reply that matches the regular expression (for nib's own messages). */
export interface Matches {
  readonly _tag: "Matches"
  readonly pattern: RegExp
}

/** Lines in any order, each an exact line or a shape (for `recent`, whose order is each table's own). */
export interface Unordered {
  readonly _tag: "Unordered"
  readonly lines: ReadonlyArray<Exact | Shape>
}

/** What a reply must be. */
export type Expect = Exact | Shape | Matches | Unordered

export const exact = (template: string): Exact => ({ _tag: "Exact", template })
export const shape = (template: string): Shape => ({ _tag: "Shape", template })
export const matches = (pattern: RegExp): Matches => ({ _tag: "Matches", pattern })
export const unordered = (...lines: ReadonlyArray<string | Exact | Shape>): Unordered => ({
  _tag: "Unordered",
  lines: lines.map((line) => (typeof line === "string" ? exact(line) : line))
})

/** `template` with each `{NAME}` that `values` names replaced by its value. */
export const fill = (template: string, values: Values): string =>
  template.replace(/\{([A-Z0-9]+)\}/g, (whole, name: string) => (name in values ? String(values[name]) : whole))

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

const shapeRegExp = (template: string, values: Values): RegExp =>
  new RegExp(`^${fill(template, values).split("#").map(escape).join("\\d+")}$`)

const one = (expect: Exact | Shape, text: string, values: Values): boolean =>
  expect._tag === "Exact" ? fill(expect.template, values) === text : shapeRegExp(expect.template, values).test(text)

/** Whether `text` is what `expect` says. */
export const satisfies = (expect: Expect, text: string, values: Values): boolean => {
  switch (expect._tag) {
    case "Exact":
    case "Shape":
      return one(expect, text, values)
    case "Matches":
      return expect.pattern.test(text)
    case "Unordered": {
      if (text !== "" && !text.endsWith("\n")) return false
      const lines = text === "" ? [] : text.slice(0, -1).split("\n").map((line) => `${line}\n`)
      if (lines.length !== expect.lines.length) return false
      const left = [...expect.lines]
      for (const line of lines) {
        const i = left.findIndex((e) => one(e, line, values))
        if (i < 0) return false
        left.splice(i, 1)
      }
      return true
    }
  }
}

/** An expectation, readable in a failure message. */
export const describe = (expect: Expect, values: Values): string => {
  switch (expect._tag) {
    case "Exact":
      return JSON.stringify(fill(expect.template, values))
    case "Shape":
      return `shape ${JSON.stringify(fill(expect.template, values))} (# = a number)`
    case "Matches":
      return `matching ${String(expect.pattern)}`
    case "Unordered":
      return `these lines in any order: ${expect.lines.map((line) => describe(line, values)).join(", ")}`
  }
}

// --- traffic -----------------------------------------------------------------------------------------------------

/** The request a client from `from` sends (an identity backend echoes it after its name line). */
export const requestText = (from: string) => `request from ${from}\n`

/** A client connection through a balancer that has exchanged one request with an identity backend. */
export interface Exchanged {
  readonly conn: Client.Conn
  /** The backend that answered (its name line), or how the connection ended instead. */
  readonly name: string
  /** Ends the client's side and waits (bounded) for the balancer's end, then closes the socket. */
  readonly finish: () => Promise<void>
}

/**
 * Connects from `from` to the balancer on `port`, reads the backend's name line, sends {@link requestText} and waits
 * (bounded) for its echo. The connection stays open until `finish`.
 */
export const exchange = async (port: number, from: string): Promise<Exchanged> => {
  const conn = Client.dial(port, { from })
  const first = await conn.firstLine(5_000)
  const name = Client.nameOf(first)
  const finish = async () => {
    if (conn.ending === undefined) {
      conn.socket.end()
      await conn.ended(5_000)
    }
    conn.close()
  }
  if (first._tag === "Line") {
    const request = requestText(from)
    conn.socket.write(request)
    await conn.until(() => conn.text() === `${name}\n${request}` || conn.ending !== undefined, 5_000)
  }
  return { conn, name, finish }
}

/** One whole request from `from` (see {@link exchange}): the name of the backend that answered. */
export const request = async (port: number, from: string): Promise<string> => {
  const exchanged = await exchange(port, from)
  await exchanged.finish()
  return exchanged.name
}

/** Sends `command` until its reply satisfies `expect` (every 50 ms, at most `timeoutMs`); the last reply. */
export const eventually = async (
  port: number,
  command: string,
  expect: Expect,
  values: Values,
  timeoutMs = 5_000
): Promise<Reply> => {
  let reply = await send(port, command)
  const deadline = Date.now() + timeoutMs
  while (!satisfies(expect, reply.text, values) && Date.now() < deadline) {
    await new Promise<void>((resolve) => setTimeout(resolve, 50))
    reply = await send(port, command)
  }
  return reply
}

// --- the status page and write's file ------------------------------------------------------------------------------

const LOCAL_TIME = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)$/

/**
 * Problems with `text` as pen's `YYYY-MM-DD HH:MM:SS` (strftime of localtime): not that shape, or not within 10 s of
 * the test's own local time now (both balancers inherit the test's TZ).
 */
export const checkLocalTime = (text: string, what: string): Array<string> => {
  const m = LOCAL_TIME.exec(text)
  if (m === null) return [`${what}: ${JSON.stringify(text)} is not YYYY-MM-DD HH:MM:SS`]
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number
  ]
  const at = new Date(year, month - 1, day, hour, minute, second).getTime()
  return Math.abs(at - Date.now()) <= 10_000
    ? []
    : [`${what}: ${text} is not the local time now (${new Date().toString()})`]
}

/** The page's three tables, in order: the servers (1, compared as they are), the clients, the connections. */
const CLIENTS_TABLE = 2
const CONNECTIONS_TABLE = 3

const td = (cell: string | number) => `<td>${cell}</td>`
const headerCell = (name: string) => `<td bgcolor="#80f080">${name}</td>`
const rowLines = (cells: ReadonlyArray<string>): Array<string> => ["<tr>", ...cells, "</tr>"]
/** Data rows as lines, in the page's order. */
const dataRows = (rows: ReadonlyArray<ReadonlyArray<string | number>>): Array<string> =>
  rows.flatMap((cells) => rowLines(cells.map(td)))

/**
 * pen's status page (pen-reference 7.1) with what legitimately differs between two balancers already replaced by
 * tokens: `<time>`, `<last>` ("N last"), a client's `<age>`, a connection's `<fd>`s. The rest stays as it is: the
 * rows in the page's order, the client and connection slot numbers (a connection's client cell is its client's
 * slot), and the byte counts, an open connection's too (its server's row and its client's row): both count bytes as
 * they relay them.
 */
export interface PageTemplate {
  readonly current: number
  readonly servers: ReadonlyArray<ReadonlyArray<string | number>>
  readonly clientsMax: number
  readonly clients: ReadonlyArray<ReadonlyArray<string | number>>
  readonly connectionsMax: number
  readonly connections: ReadonlyArray<ReadonlyArray<string | number>>
}

/** The lines of a {@link PageTemplate}, normalized as {@link normalizePage} normalizes a real page. */
export const pageLines = (p: PageTemplate): Array<string> => [
  "<html>",
  "<head>",
  "<title>Pen status page</title>",
  "</head>",
  "<body bgcolor=\"#ffffff\"><h1>Pen status page</h1>",
  `Time <time>, ${p.servers.length} servers, ${p.current} current<p>`,
  "<table bgcolor=\"#c0c0c0\">",
  ...rowLines(
    ["server", "address", "status", "port", "connections", "max soft", "max hard", "sent", "received", "weight", "prio"]
      .map(headerCell)
  ),
  ...dataRows(p.servers),
  "</table>",
  `<h2>Active clients</h2>Max number of clients: ${p.clientsMax}<p><table bgcolor="#c0c0c0">`,
  ...rowLines(["client", "address", "age(secs)", "last server", "connects", "sent", "received"].map(headerCell)),
  ...dataRows(p.clients),
  "</table>",
  `<h2>Active connections</h2>Number of connections: ${p.connectionsMax} max, ${p.connections.length} used, <last> last<p><table bgcolor="#c0c0c0">`,
  ...rowLines(
    ["connection", "downfd", "upfd", "pending data down", "pending data up", "client", "server"].map(headerCell)
  ),
  ...dataRows(p.connections),
  "</table>",
  "</body>",
  "</html>",
  ""
]

/** A status page with what legitimately differs replaced by tokens, and what was wrong with the replaced values. */
export interface NormalizedPage {
  readonly lines: ReadonlyArray<string>
  readonly problems: ReadonlyArray<string>
}

type PageItem =
  | { readonly _tag: "Line"; readonly line: string }
  | { readonly _tag: "Row"; readonly table: number; readonly cells: Array<string> }

/**
 * Normalizes a status page line by line (see {@link PageTemplate} for the tokens). Every other line stays as it
 * was: tags, header cells, the server rows, every byte count (an open connection's too). A replaced value that is not what its
 * token allows (an age outside 0..2, a time that is not now, a non-number) is a problem.
 */
export const normalizePage = (html: string, maxAgeSeconds = 2): NormalizedPage => {
  const problems: Array<string> = []
  const lines = html.split("\n")
  const items: Array<PageItem> = []
  let table = 0
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    if (line.includes("<table")) table++
    if (line === "<tr>") {
      const end = lines.indexOf("</tr>", i)
      const cells = end < 0 ? [] : lines.slice(i + 1, end).map((cell) => /^<td>(.*)<\/td>$/.exec(cell)?.[1])
      // A data row: every line a plain <td>. Header rows (and anything else) stay line by line.
      if (end > i + 1 && cells.every((cell) => cell !== undefined)) {
        items.push({ _tag: "Row", table, cells: cells as Array<string> })
        i = end
        continue
      }
    }
    items.push({ _tag: "Line", line })
  }
  const rows = (t: number) =>
    items.filter((item) => item._tag === "Row" && item.table === t) as Array<PageItem & { _tag: "Row" }>
  const number = (value: string | undefined, what: string) => {
    if (value === undefined || !/^\d+$/.test(value)) problems.push(`${what}: ${JSON.stringify(value)} is not a number`)
  }
  const clientSlots = new Set(rows(CLIENTS_TABLE).map((row) => row.cells[0]))
  for (const row of rows(CLIENTS_TABLE)) {
    const c = row.cells
    if (c.length !== 7) continue
    number(c[0], `client ${c[1]} slot`)
    const age = Number(c[2])
    if (!/^\d+$/.test(c[2]!) || age > maxAgeSeconds) {
      problems.push(`client ${c[1]} age(secs) ${c[2]} is not 0..${maxAgeSeconds}`)
    }
    c[2] = "<age>"
  }
  for (const row of rows(CONNECTIONS_TABLE)) {
    const c = row.cells
    if (c.length !== 7) continue
    number(c[0], "connection slot")
    number(c[1], `connection ${c[0]} downfd`)
    number(c[2], `connection ${c[0]} upfd`)
    if (!clientSlots.has(c[5])) problems.push(`connection ${c[0]}: client ${c[5]} is not a row of the client table`)
    c[1] = c[2] = "<fd>"
  }
  const out: Array<string> = []
  let pending: Array<PageItem & { _tag: "Row" }> = []
  const flush = () => {
    out.push(...dataRows(pending.map((row) => row.cells)))
    pending = []
  }
  for (const item of items) {
    if (item._tag === "Row") {
      if (pending.length > 0 && pending[0]!.table !== item.table) flush()
      pending.push(item)
      continue
    }
    flush()
    const time = /^Time (.*?), (\d+ servers, -?\d+ current<p>)$/.exec(item.line)
    const connections =
      /^(<h2>Active connections<\/h2>Number of connections: \d+ max, -?\d+ used, )(-?\d+)( last<p>.*)$/
        .exec(item.line)
    if (time !== null) {
      problems.push(...checkLocalTime(time[1]!, "Time"))
      out.push(`Time <time>, ${time[2]}`)
    } else if (connections !== null) {
      number(connections[2], "N last")
      out.push(`${connections[1]}<last>${connections[3]}`)
    } else out.push(item.line)
  }
  flush()
  return { lines: out, problems }
}

/** The client slots of a status page and their addresses. */
export const clientSlots = (html: string): Map<string, string> => {
  const slots = new Map<string, string>()
  const section = html.slice(html.indexOf("<h2>Active clients</h2>"), html.indexOf("<h2>Active connections</h2>"))
  for (const m of section.matchAll(/<tr>\n<td>(\d+)<\/td>\n<td>([^<]*)<\/td>\n/g)) slots.set(m[1]!, m[2]!)
  return slots
}

/** Line-by-line differences between `got` and `want` (at most 12, then how many more), as problems. */
export const diffLines = (what: string, got: ReadonlyArray<string>, want: ReadonlyArray<string>): Array<string> => {
  const problems: Array<string> = []
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    if (got[i] !== want[i]) {
      problems.push(`${what} line ${i + 1}: got ${JSON.stringify(got[i])}, expected ${JSON.stringify(want[i])}`)
    }
  }
  if (got.length !== want.length) problems.push(`${what}: ${got.length} lines, expected ${want.length}`)
  return problems.length > 13
    ? [...problems.slice(0, 12), `${what}: ${problems.length - 12} more differences`]
    : problems
}
