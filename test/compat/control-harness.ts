/**
 * Helpers for the side-by-side control-port suite (test/compat/control.test.ts): start pen and nib with the same argv
 * (only the ports differ), one control command per connection over a raw TCP socket, and expectations that are exact
 * bytes, or a shape where the value legitimately differs between the two (a pid, a byte counter of a live connection).
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

const fill = (template: string, values: Values): string =>
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
