/**
 * Runs one scenario (test/compat/scenarios.ts) against pen or nib and returns what the clients observed: its record.
 *
 * Backends are started first (identity servers, dead ports, a server with a full accept queue, a late replier, HTTP
 * servers), then the balancer under test in the foreground with the scenario's argv (and a control port, for a
 * scenario that asks it something), then the steps, in order. Every process is
 * stopped by pid, and every socket closed, when the scope closes, whatever happened. Outcomes are classified with
 * generous margins: the harness never asserts a duration.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Pen from "../utils/Pen.ts"
import * as Poll from "../utils/Poll.ts"
import * as Control from "./control-harness.ts"
import { httpEntry, httpResponse, type RunRecord, type Scenario, type ServerDef, type Step } from "./scenarios.ts"

/** Which balancer runs the scenario. */
export type Which = "pen" | "nib"

/** How long a client waits for an answer before the harness moves on and calls the connection unanswered. */
export const PATIENCE_MS = 600
/** The longest any connection may stay unanswered before it is recorded as "silent". */
const LONGEST_MS = 15_000

/** What a run produced: the record, and the balancer's output for failure messages. */
export interface Run {
  readonly record: RunRecord
  /** The command line and what the balancer printed, for failure messages. */
  readonly log: string
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The connect timeout in milliseconds that `args` give the balancer (`-t`, default 3 s). */
const connectTimeoutMs = (args: ReadonlyArray<string>): number => {
  const i = args.indexOf("-t")
  return (i >= 0 ? Number(args[i + 1]) : 3) * 1000
}

/**
 * Freezes process `pid` (SIGSTOP) and waits (bounded) until it is stopped: the signal is only queued when kill
 * returns, and a balancer that still ran for a moment could read what the step means it to miss.
 */
const freeze = async (pid: number): Promise<void> => {
  process.kill(pid, "SIGSTOP")
  const stopped = await Poll.until(
    () => {
      try {
        return Fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("T") === true
      } catch {
        return true
      }
    },
    2_000,
    1
  )
  if (!stopped) throw new Error(`process ${pid} did not stop after SIGSTOP`)
}

// --- the late-reply backend ------------------------------------------------------------------------------------

/** A server that reads each request to its EOF, then waits for {@link LateReplier.replyAll} to answer and close. */
interface LateReplier {
  readonly backend: Backend.Backend
  /** Connections whose request has ended and that wait for their reply. */
  readonly waiting: () => number
  /** Sends each waiting connection its reply, then closes it; resolves once they are closed (bounded). */
  readonly replyAll: () => Promise<void>
  /** The reply to a request. */
  readonly reply: (request: string) => string
}

const lateReplier = (name: string, port = 0): Promise<LateReplier> => {
  const queue: Array<{ readonly socket: Net.Socket; readonly request: string }> = []
  const reply = (request: string) =>
    `${name}\n` + [0, 1, 2, 3, 4].map((i) => `part ${i} of ${name}'s reply to ${request.trim()}\n`).join("")
  return Backend.listen(name, (socket) => {
    let request = ""
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => (request += chunk))
    socket.once("end", () => queue.push({ socket, request }))
  }, { allowHalfOpen: true, port }).then((backend) => ({
    backend,
    waiting: () => queue.length,
    reply,
    replyAll: async () => {
      const closing = queue.splice(0).map(({ request, socket }) =>
        new Promise<void>((resolve) => {
          socket.once("close", () => resolve())
          socket.end(reply(request))
        })
      )
      await Promise.race([Promise.all(closing), sleep(5_000)])
    }
  }))
}

// --- the HTTP backend -------------------------------------------------------------------------------------------

/** One connection to an "http" server. */
interface HttpConnection {
  /** Every byte received, one character per byte (latin1). */
  received: string
  /** Requests answered, and the bytes of their responses. */
  answered: number
  sent: number
  closed: boolean
}

/** An "http" server (see scenarios.ts) and its connections, in the order it accepted them. */
interface HttpRecorder {
  readonly backend: Backend.Backend
  readonly connections: ReadonlyArray<HttpConnection>
}

/** Where the first blank line of `text` ends (CRLF CRLF, or LF LF, whichever comes first), or -1. */
const headEnd = (text: string): number => {
  const crlf = text.indexOf("\r\n\r\n")
  const lf = text.indexOf("\n\n")
  if (crlf < 0) return lf < 0 ? -1 : lf + 2
  return lf >= 0 && lf < crlf ? lf + 2 : crlf + 4
}

const httpRecorder = (name: string): Promise<HttpRecorder> => {
  const connections: Array<HttpConnection> = []
  return Backend.listen(name, (socket) => {
    const connection: HttpConnection = { received: "", answered: 0, sent: 0, closed: false }
    connections.push(connection)
    let pending = ""
    socket.on("data", (chunk: Buffer) => {
      const text = chunk.toString("latin1")
      connection.received += text
      pending += text
      for (let end = headEnd(pending); end >= 0; end = headEnd(pending)) {
        const head = pending.slice(0, end)
        const length = /(?:^|\n)content-length:[ \t]*(\d+)/i.exec(head)
        const size = end + (length === null ? 0 : Number(length[1]))
        if (pending.length < size) break
        pending = pending.slice(size)
        const response = Buffer.from(httpResponse(name, head), "latin1")
        connection.answered++
        connection.sent += response.length
        socket.write(response)
      }
    })
    socket.once("close", () => (connection.closed = true))
  }).then((backend) => ({ backend, connections }))
}

/** As root, pen (and nib, which copies the rule) opens a control port only with -u; `-u root` keeps root. */
const AS_ROOT: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

// --- one connection ----------------------------------------------------------------------------------------------

/** A client connection the harness started, and what became of it. */
interface Tracked {
  readonly conn: Client.Conn
  /** When the client started waiting for an answer (reset when a frozen balancer is thawed). */
  since: number
  /** Its position in the record. */
  readonly slot: number
  /** Held open until a `release` step. */
  readonly hold: string | undefined
  /** Its entry in the record, once known. */
  result: string | undefined
  /** Resolves when `result` is known. */
  readonly done: Promise<void>
}

/** What a connection's first line says: a backend's name, or how the connection ended without one. */
const base = (first: Client.FirstLine): string => {
  switch (first._tag) {
    case "Line":
      return first.line
    case "Timeout":
      return "silent"
    case "Closed":
      if (first.received !== "") return `garbled(${JSON.stringify(first.received)})`
      return first.ending === "eof" ? "closed" : first.ending === "reset" ? "reset" : "error"
  }
}

// --- the balancer ------------------------------------------------------------------------------------------------

/**
 * Starts the balancer for the length of the scope; stopped by pid (thawed first if frozen) when the scope closes.
 * With a `control` port among the flags, pen is also waited for until it listens there.
 */
const startBalancer = (
  which: Which,
  pen: string | undefined,
  flags: ReadonlyArray<string>,
  specs: Array<string>,
  control: number | undefined
) =>
  Effect.acquireRelease(
    Effect.promise(async (): Promise<Nib.Balancer> => {
      if (which === "nib") return Nib.spawnNib([...flags, "127.0.0.1:0", ...specs])
      if (pen === undefined) throw new Error("pen is not installed")
      const balancer = await Pen.spawnPen(pen, flags, specs)
      if (control !== undefined) {
        try {
          await Pen.waitForListen(control)
        } catch (error) {
          await Nib.stop(balancer)
          throw error
        }
      }
      return balancer
    }),
    (balancer) =>
      Effect.promise(() => {
        try {
          process.kill(balancer.pid, "SIGCONT")
        } catch {
          // already gone
        }
        return Nib.stop(balancer)
      })
  )

/**
 * Runs `scenario` on `which` (pen at path `pen`) and returns its record. The scope owns every process and socket.
 */
export const run = (scenario: Scenario, which: Which, pen?: string) =>
  Effect.gen(function*() {
    // Backends, by name.
    const ports = new Map<string, number>()
    const live = new Map<string, Backend.Backend>()
    const late = new Map<string, LateReplier>()
    const httpServers = new Map<string, HttpRecorder>()
    const defs: Array<ServerDef> = [
      ...scenario.servers,
      ...(scenario.emergency ? [scenario.emergency] : []),
      ...(scenario.abuse ? [scenario.abuse] : [])
    ]
    for (const def of defs) {
      switch (def.kind) {
        case "identity": {
          const backend = yield* Backend.identity(def.name)
          ports.set(def.name, backend.port)
          live.set(def.name, backend)
          break
        }
        case "down":
          ports.set(def.name, yield* Backend.freePort)
          break
        case "unresponsive": {
          const stuck = yield* Backend.unresponsive
          if (!(yield* stuck.fill())) {
            return yield* Effect.die(new Error("the unresponsive server's queue never filled"))
          }
          ports.set(def.name, stuck.port)
          break
        }
        case "resetter": {
          const backend = yield* Backend.custom(def.name, (socket) => {
            socket.write(`${def.name}\n`)
            socket.once("data", () => socket.resetAndDestroy())
          })
          ports.set(def.name, backend.port)
          break
        }
        case "late-reply": {
          const replier = yield* Effect.acquireRelease(
            Effect.promise(() => lateReplier(def.name)),
            (r) => Effect.promise(r.backend.close)
          )
          ports.set(def.name, replier.backend.port)
          late.set(def.name, replier)
          break
        }
        case "http": {
          const recorder = yield* Effect.acquireRelease(
            Effect.promise(() => httpRecorder(def.name)),
            (r) => Effect.promise(r.backend.close)
          )
          ports.set(def.name, recorder.backend.port)
          httpServers.set(def.name, recorder)
          break
        }
      }
    }
    const spec = (def: ServerDef) => `127.0.0.1:${ports.get(def.name)!}${def.limits ?? ""}`

    // A control port for `control` steps, on a port picked now (pen cannot be given port 0).
    const control = scenario.steps.some((step) => step.do === "control") ? yield* Backend.freePort : undefined
    const flags = [
      ...(control === undefined ? [] : [...AS_ROOT, "-C", `127.0.0.1:${control}`]),
      ...(which === "pen" ? scenario.penOnlyArgs ?? [] : []),
      ...scenario.args,
      ...(scenario.emergency ? ["-e", spec(scenario.emergency)] : []),
      ...(scenario.abuse ? ["-B", spec(scenario.abuse)] : [])
    ]
    const specs = scenario.servers.map(spec)
    const balancer = yield* startBalancer(which, pen, flags, specs, control)
    const command = `${which} -f ${flags.join(" ")} 127.0.0.1:${which === "pen" ? balancer.port : 0} ${specs.join(" ")}`

    const timeoutMs = connectTimeoutMs(scenario.args)
    const record: Array<string | undefined> = []
    /** Connections of `connect` (and `exchange`) steps, whose outcome comes when it comes. */
    const tracked: Array<Tracked> = []
    const held = new Map<string, Tracked>()
    /** Every client connection, closed when the scope closes. */
    const opened: Array<Client.Conn> = []
    const releases: Array<number> = []
    let paused = false

    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const conn of opened) conn.close()
      })
    )

    /** Classifies a connection's outcome by when it came: at once, after a release, after the connect timeout. */
    const classify = (t: Tracked, first: Client.FirstLine, at: number): string => {
      const what = base(first)
      const elapsed = at - t.since
      if (elapsed < PATIENCE_MS) return what
      if (releases.some((r) => r >= t.since && r <= at)) return `waited:${what}`
      if (elapsed >= Math.max(PATIENCE_MS, timeoutMs / 2)) return `timeout:${what}`
      return `slow:${what}`
    }

    const start = (step: Extract<Step, { do: "connect" }>): Tracked => {
      const conn = Client.dial(balancer.port, {
        from: Client.ip(step.from),
        ...(step.port === undefined ? {} : { fromPort: step.port })
      })
      opened.push(conn)
      if (step.send !== undefined) conn.socket.write(step.send)
      const slot = record.length
      record.push(undefined)
      const t: Tracked = {
        conn,
        since: Date.now(),
        slot,
        hold: step.hold,
        result: undefined,
        done: conn.firstLine(LONGEST_MS).then((first) => {
          if (t.result !== undefined) return
          t.result = classify(t, first, Date.now())
          record[slot] = t.result
          if (t.hold === undefined) conn.close()
        })
      }
      tracked.push(t)
      if (step.hold !== undefined) held.set(step.hold, t)
      return t
    }

    const release = (t: Tracked) => {
      releases.push(Date.now())
      t.conn.close()
    }

    /** Waits for every connection's outcome, at most `ms`; one still unknown then is "silent", and closed. */
    const settle = async (ms = LONGEST_MS + 1_000) => {
      await Promise.race([Promise.all(tracked.map((t) => t.done)), sleep(ms)])
      for (const t of tracked) {
        if (t.result !== undefined) continue
        t.result = "silent"
        record[t.slot] = t.result
        t.conn.close()
      }
    }

    const exchange = async (step: Extract<Step, { do: "exchange" }>) => {
      const label = `exchange ${record.length}`
      const t = start({ do: "connect", from: step.from, hold: label })
      held.delete(label)
      await t.done
      if (t.conn.ending === undefined) {
        t.conn.socket.write(step.send)
        await t.conn.ended(2_000)
      }
      const ending = t.conn.ending === undefined ? "open" : t.conn.ending
      record[t.slot] = `${t.result}/${ending}`
      t.conn.close()
    }

    const halfClose = async (step: Extract<Step, { do: "halfClose" }>) => {
      const replier = [...late.values()][0]
      if (replier === undefined) throw new Error(`${scenario.name}: halfClose needs a late-reply server`)
      const slot = record.length
      record.push(undefined)
      const request = `request from 127.0.0.${step.from}`
      const conn = Client.dial(balancer.port, { from: Client.ip(step.from) })
      opened.push(conn)
      conn.socket.end(`${request}\n`)
      // The server has the whole request and the client's EOF: it may reply.
      await Poll.until(() => replier.waiting() > 0 || conn.ending !== undefined, 5_000)
      if (step.pause) await freeze(balancer.pid)
      try {
        await replier.replyAll()
        if (step.pause) await sleep(200)
      } finally {
        if (step.pause) process.kill(balancer.pid, "SIGCONT")
      }
      await conn.ended(5_000)
      const text = conn.text()
      const name = replier.backend.name
      record[slot] = text === replier.reply(request)
        ? name
        : text !== ""
        ? `partial:${name}`
        : conn.ending === "eof"
        ? "closed"
        : conn.ending === "reset"
        ? "reset"
        : conn.ending === undefined
        ? "silent"
        : "error"
      conn.close()
    }

    const http = async (step: Extract<Step, { do: "http" }>) => {
      const slot = record.length
      record.push(undefined)
      const before = new Map([...httpServers].map(([name, r]) => [name, r.connections.length]))
      const conn = Client.dial(balancer.port, { from: Client.ip(step.from) })
      opened.push(conn)
      /** The connection the balancer opened to an "http" server for this client, once there is one. */
      const upstream = () => {
        for (const [name, r] of httpServers) {
          const connection = r.connections[before.get(name)!]
          if (connection !== undefined) return { name, connection }
        }
        return undefined
      }
      /** Waits (at most 2 s) until the server has answered `n` requests and the client has every byte of them. */
      const answered = (n: number) =>
        Poll.until(() => {
          const up = upstream()
          return conn.ending !== undefined ||
            (up !== undefined && up.connection.answered >= n && conn.received >= up.connection.sent)
        }, 2_000)
      const write = (text: string) => conn.socket.write(Buffer.from(text, "latin1"))
      if (step.pipelined) {
        write(step.requests.join(""))
        await answered(step.requests.length)
      } else {
        for (const [i, request] of step.requests.entries()) {
          if (conn.ending !== undefined) break
          write(request)
          await answered(i + 1)
        }
      }
      if (conn.ending === undefined) conn.socket.end()
      await conn.ended(2_000)
      // The server's side closes after the client's: then it has received all it will.
      await Poll.until(() => upstream()?.connection.closed === true, 2_000)
      const up = upstream()
      record[slot] = httpEntry(
        up?.name ?? "no server",
        up?.connection.received ?? "",
        conn.data().toString("latin1"),
        conn.ending ?? "open"
      )
      conn.close()
    }

    const ask = async (step: Extract<Step, { do: "control" }>) => {
      if (control === undefined) throw new Error(`${scenario.name}: no control port`)
      const slot = record.length
      record.push(undefined)
      // Counters settle once the balancer has seen every connection close.
      const deadline = Date.now() + 5_000
      for (;;) {
        const servers = await Control.send(control, "servers\n")
        const lines = servers.text.split("\n").filter((line) => line !== "")
        if (lines.length > 0 && lines.every((line) => / conn 0 /.test(line))) break
        if (Date.now() > deadline) break
        await sleep(50)
      }
      let text = (await Control.send(control, `${step.command}\n`)).text
      for (const [name, port] of ports) text = text.replaceAll(`port ${port} `, `port {${name}} `)
      record[slot] = text
    }

    for (const step of scenario.steps) {
      switch (step.do) {
        case "connect": {
          const t = start(step)
          if (paused) {
            // Frozen balancer: the kernel completes the handshake; wait for that, so the accept queue keeps the
            // order of the steps.
            yield* Poll.waitUntil(() => t.conn.connected || t.conn.ending !== undefined, 2_000)
          } else {
            yield* Effect.promise(() => Promise.race([t.done, sleep(PATIENCE_MS)]))
          }
          break
        }
        case "release": {
          const t = held.get(step.conn)
          if (t === undefined) return yield* Effect.die(new Error(`${scenario.name}: no held connection ${step.conn}`))
          held.delete(step.conn)
          release(t)
          yield* Effect.sleep("100 millis")
          break
        }
        case "releaseAll":
          for (const t of held.values()) release(t)
          held.clear()
          yield* Effect.sleep("100 millis")
          break
        case "stop": {
          const backend = live.get(step.server)
          if (backend === undefined) return yield* Effect.die(new Error(`${scenario.name}: ${step.server} not up`))
          live.delete(step.server)
          yield* Effect.promise(backend.close)
          break
        }
        case "start": {
          const port = ports.get(step.server)!
          const backend = yield* Backend.identity(step.server, port)
          live.set(step.server, backend)
          break
        }
        case "wait":
          yield* Effect.sleep(`${step.ms} millis`)
          break
        case "settle":
          yield* Effect.promise(() => settle(step.ms))
          break
        case "exchange":
          yield* Effect.promise(() => exchange(step))
          break
        case "pause":
          yield* Effect.promise(() => freeze(balancer.pid))
          paused = true
          break
        case "resume": {
          process.kill(balancer.pid, "SIGCONT")
          paused = false
          const now = Date.now()
          for (const t of tracked) if (t.result === undefined && t.since < now) t.since = now
          break
        }
        case "halfClose":
          yield* Effect.promise(() => halfClose(step))
          break
        case "http":
          yield* Effect.promise(() => http(step))
          break
        case "control":
          yield* Effect.promise(() => ask(step))
          break
      }
    }
    yield* Effect.promise(() => settle())

    const exited = balancer.child.exitCode !== null || balancer.child.signalCode !== null
    const log = `${command}\n${exited ? `(exited: code ${balancer.child.exitCode}) ` : ""}stderr:\n${
      balancer.stderr().split("\n").slice(-30).join("\n")
    }`
    return { record: record.map((r) => r ?? "silent"), log } satisfies Run
  })
