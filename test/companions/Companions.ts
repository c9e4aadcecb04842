/**
 * Running the log companions side by side with pen's: the built `niblogd`, `niblog` and `nibmergelogs`, pen's
 * `penlogd`, `penlog` and `mergelogs` (found as test/utils/Pen.ts finds pen), UDP sockets on 127.0.0.1, and a web
 * server stand-in that logs each request it serves as Apache would, through UDP.
 *
 * Every process is stopped by pid when the test's scope closes; every wait is bounded.
 */
import { Effect } from "effect"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Nib from "../utils/Nib.ts"
import { isExecutable } from "../utils/Pen.ts"
import * as Poll from "../utils/Poll.ts"

/** The built programs. */
export const NIBLOGD = Path.join(Nib.ROOT, "dist", "src", "niblogd.js")
export const NIBLOG = Path.join(Nib.ROOT, "dist", "src", "niblog.js")
export const NIBMERGELOGS = Path.join(Nib.ROOT, "dist", "src", "nibmergelogs.js")

/** A command: the program and the arguments that come before the caller's. */
export interface Command {
  readonly file: string
  readonly args: ReadonlyArray<string>
}

/** nib's companion `name`, run with Node 24. */
export const nib = (name: "niblogd" | "niblog" | "nibmergelogs"): Command => ({
  file: Nib.NODE,
  args: [name === "niblogd" ? NIBLOGD : name === "niblog" ? NIBLOG : NIBMERGELOGS]
})

/** pen's companion `name` (on $PATH, or in /usr/bin or /usr/sbin where Debian's `pen` package puts it), or why not. */
export const findPen = (
  name: "penlogd" | "penlog" | "mergelogs"
): { readonly command: Command } | { readonly command: undefined; readonly why: string } => {
  const dirs = (process.env["PATH"] ?? "").split(":").filter((dir) => dir !== "")
  for (const candidate of [...dirs.map((dir) => Path.join(dir, name)), `/usr/bin/${name}`, `/usr/sbin/${name}`]) {
    if (isExecutable(candidate)) return { command: { file: candidate, args: [] } }
  }
  return { command: undefined, why: `no ${name} on $PATH or in /usr/bin, /usr/sbin (apt-get install pen)` }
}

/**
 * Runs `command args` to completion (killed after `timeoutMs`), with `stdin` written to it (latin1) and `env` added to
 * the environment; stdout is read as latin1, one character per byte.
 */
export const run = (
  command: Command,
  args: ReadonlyArray<string>,
  stdin = "",
  env: Readonly<Record<string, string>> = {},
  timeoutMs = 15_000
) =>
  Effect.promise(async (): Promise<Nib.Completed> => {
    const done = await Nib.runBytes(command.file, [...command.args, ...args], timeoutMs, {
      input: Buffer.from(stdin, "latin1"),
      extraEnv: env
    })
    return { ...done, stdout: done.stdout.toString("latin1") }
  })

/** A free UDP port on every IPv4 address (bound on port 0, noted, closed). */
export const freeUdpPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const socket = Dgram.createSocket("udp4")
    socket.once("error", reject)
    socket.bind({ address: "0.0.0.0", port: 0 }, () => {
      const { port } = socket.address()
      socket.close(() => resolve(port))
    })
  })

/** A running log daemon (niblogd or penlogd) and the file it writes. */
export interface Logd extends Nib.Proc {
  readonly port: number
  readonly file: string
  /** The lines of its file so far. */
  readonly lines: () => Array<string>
}

const linesOf = (file: string): Array<string> => {
  try {
    const text = Fs.readFileSync(file, "latin1")
    return text === "" ? [] : text.replace(/\n$/, "").split("\n")
  } catch {
    return []
  }
}

/**
 * Starts a log daemon in the foreground with `-d -b -l file` and `flags`, on a free UDP port (penlogd cannot take
 * port 0: a port is picked just before, and picked again if the daemon could not bind it); ready once it prints
 * penlogd's "Enter main loop". Stopped (SIGTERM, then SIGKILL) when the scope closes.
 */
export const logd = (command: Command, file: string, flags: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.promise(async (): Promise<Logd> => {
      let lastError: unknown
      for (let attempt = 0; attempt < 3; attempt++) {
        const port = await freeUdpPort()
        try {
          const args = [...command.args, "-f", "-d", "-b", "-l", file, ...flags, String(port)]
          const { proc } = await Nib.spawnReady(command.file, args, /Enter main loop/)
          return { ...proc, port, file, lines: () => linesOf(file) }
        } catch (error) {
          lastError = error
        }
      }
      throw lastError
    }),
    (proc) => Effect.promise(() => Nib.stop(proc))
  )

/** Waits (at most `timeoutMs`) until the daemon's file has `count` lines; returns its lines. */
export const waitForLines = (daemon: Logd, count: number, timeoutMs = 10_000) =>
  Effect.promise(async () => {
    await Poll.until(() => daemon.lines().length >= count, timeoutMs)
    return daemon.lines()
  })

/** A UDP socket on `address` (port 0) for the scope, that sends and records what it receives. */
export interface Udp {
  readonly port: number
  /** Sends `payload` (latin1 text or bytes) to `address:port` from this socket; resolves once the kernel took it. */
  readonly send: (payload: string | Uint8Array, port: number, address?: string) => Promise<void>
  /** Datagrams received so far: payload as latin1 text, and source address. */
  readonly received: Array<{ readonly text: string; readonly address: string }>
}

/** A {@link Udp} socket for the scope, bound on `address` port 0. */
export const udp = (address = "127.0.0.1") =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<Udp & { readonly socket: Dgram.Socket }>((resolve, reject) => {
        const socket = Dgram.createSocket("udp4")
        const received: Array<{ text: string; address: string }> = []
        socket.on("message", (payload, info) =>
          received.push({ text: payload.toString("latin1"), address: info.address }))
        socket.once("error", reject)
        socket.bind({ address, port: 0 }, () => {
          socket.on("error", () => {})
          resolve({
            socket,
            port: socket.address().port,
            received,
            send: (payload, port, to = "127.0.0.1") =>
              new Promise<void>((done, fail) => {
                const bytes = typeof payload === "string" ? Buffer.from(payload, "latin1") : payload
                socket.send(bytes, port, to, (error) => (error ? fail(error) : done()))
              })
          })
        })
      })
    ),
    ({ socket }) =>
      Effect.sync(() => socket.close())
  )

/**
 * A UDP relay on 127.0.0.1 that sends every datagram it receives, in order and from 127.0.0.1, to each port of
 * `targets()`: the balancer's records and the web server's lines reach two daemons as one identical stream.
 */
export const tee = (targets: () => ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const relay = yield* udp()
    const socket = (relay as Udp & { readonly socket: Dgram.Socket }).socket
    socket.on("message", (payload) => {
      for (const port of targets()) socket.send(payload, port, "127.0.0.1")
    })
    return relay
  })

/** A fixed Apache time, so that two daemons' outputs can be compared byte for byte. */
export const APACHE_TIME = "30/Nov/2026:10:00:00 +0000"

/**
 * A web server stand-in on 127.0.0.1: for the n-th request with a given request line it waits until
 * `seen(requestLine, n)` (the balancer's n-th record of it has gone by, so a daemon stores the record before it gets
 * the line), sends its Apache common-format line (`127.0.0.1 - - [time] "request" 200 2`) from 127.0.0.1 to `logPort`,
 * then answers `ok` and closes.
 */
export const webServer = (logPort: number, seen: (requestLine: string, occurrence: number) => boolean) =>
  Effect.gen(function*() {
    const logger = yield* udp()
    const served = new Map<string, number>()
    return yield* Backend.custom("web", (socket: Net.Socket) => {
      let head = ""
      socket.setEncoding("latin1")
      socket.on("data", async (chunk: string) => {
        head += chunk
        if (!head.includes("\r\n\r\n")) return
        const requestLine = head.slice(0, head.indexOf("\r\n"))
        const occurrence = (served.get(requestLine) ?? 0) + 1
        served.set(requestLine, occurrence)
        await Poll.until(() => seen(requestLine, occurrence), 5_000)
        await logger.send(`127.0.0.1 - - [${APACHE_TIME}] "${requestLine}" 200 2\n`, logPort)
        socket.end("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
      })
    })
  })

/** How many of `received` are balancer records for `requestLine`. */
export const records = (received: Udp["received"], requestLine: string): number =>
  received.filter(({ text }) => text.startsWith("+ ") && text.endsWith(` ${requestLine}\n`)).length

/** One HTTP/1.0 request from `from` to the balancer on `port`; resolves with the whole answer. */
export const request = (port: number, from: string, path: string) =>
  Effect.promise(() =>
    new Promise<string>((resolve, reject) => {
      const socket = Net.connect({ host: "127.0.0.1", port, localAddress: from })
      let answer = ""
      socket.setEncoding("latin1")
      socket.on("data", (chunk: string) => (answer += chunk))
      socket.once("error", reject)
      socket.once("close", () => resolve(answer))
      const timer = setTimeout(() => socket.destroy(new Error(`no answer to ${path} from ${from}`)), 10_000)
      socket.once("close", () => clearTimeout(timer))
      socket.write(`GET ${path} HTTP/1.0\r\n\r\n`)
    })
  )

/** A temporary directory for the scope. */
export const tempDir = Nib.tempDir
