#!/usr/bin/env node
/**
 * The `nibctl` executable, pen's `penctl` for nib's control port (`-C`): `nibctl host:port|/path command words...`
 * sends the words as one line, copies every byte of the reply to stdout until the server closes, and exits 0. Errors
 * are one line on stderr and exit code 1, with penctl's messages.
 *
 * Plain node:net rather than Effect: a client this small gains nothing from it, and loading Effect would triple its
 * start-up time.
 */
import * as Dns from "node:dns"
import * as Fs from "node:fs"
import * as Net from "node:net"

/** penctl builds the line in a 1024-byte buffer with a terminating NUL: 1023 bytes, newline included. */
const MAX_LINE = 1023

/**
 * penctl has no timeout, so a server that never answers hangs it (and the script calling it) forever. nibctl gives
 * up after this long without receiving a byte, name resolution and connecting included; the wait is suspended while
 * stdout is full, so a slow reader of the reply is not mistaken for a silent server.
 */
const IDLE_TIMEOUT_MS = 30_000

let finished = false
let socket: Net.Socket | undefined
let timer: NodeJS.Timeout | undefined

/** Ends the run: the message on stderr, exit code 1. Only the first call counts. */
const fail = (message: string) => {
  if (finished) return
  finished = true
  clearTimeout(timer)
  socket?.destroy()
  process.stderr.write(`${message}\n`, () => process.exit(1))
}

/** (Re)starts the wait for the server. */
const rearm = () => {
  clearTimeout(timer)
  timer = setTimeout(() => fail("timeout waiting for the server"), IDLE_TIMEOUT_MS)
}

/** A TCP port as getaddrinfo(3) takes it: a number, or a service name from /etc/services. */
const portOf = (text: string): number | undefined => {
  if (/^\d+$/.test(text)) return Number(text) >= 1 && Number(text) <= 65535 ? Number(text) : undefined
  try {
    for (const line of Fs.readFileSync("/etc/services", "utf8").split("\n")) {
      const [name, portProto, ...aliases] = line.replace(/#.*/, "").trim().split(/\s+/)
      const match = /^(\d+)\/tcp$/.exec(portProto ?? "")
      if (match !== null && (name === text || aliases.includes(text))) return Number(match[1])
    }
  } catch {
    // no /etc/services: numbers only
  }
  return undefined
}

// gai_strerror's words for what Node reports as error codes.
const lookupError = (error: NodeJS.ErrnoException) =>
  error.code === "ENOTFOUND"
    ? "Name or service not known"
    : error.code === "EAI_AGAIN"
    ? "Temporary failure in name resolution"
    : error.message

const converse = (options: Net.NetConnectOpts, line: string) => {
  let phase: "connecting" | "writing" | "reading" = "connecting"
  const connection = Net.connect(options)
  socket = connection
  connection.once("connect", () => {
    phase = "writing"
    connection.write(line, (error) => {
      if (error) fail("error writing to socket")
      else phase = "reading"
    })
  })
  connection.on("data", (chunk: Buffer) => {
    if (process.stdout.write(chunk)) return rearm()
    clearTimeout(timer)
    connection.pause()
    process.stdout.once("drain", () => {
      rearm()
      connection.resume()
    })
  })
  // Exit 0 once the event loop is empty, that is after stdout has taken every byte.
  connection.once("end", () => {
    finished = true
    clearTimeout(timer)
  })
  connection.on("error", () =>
    fail(
      phase === "connecting"
        ? "error connecting to server"
        : phase === "writing"
        ? "error writing to socket"
        : "error reading from socket"
    ))
}

const main = (args: ReadonlyArray<string>) => {
  const [target, ...words] = args
  if (target === undefined || words.length === 0) {
    process.stdout.write("usage: nibctl host:port command\n")
    return
  }
  const colon = target.lastIndexOf(":")
  const isPath = target.includes("/")
  if (!isPath && colon < 0) return fail("no port given")
  const line = `${words.join(" ")}\n`
  if (Buffer.byteLength(line) > MAX_LINE) return fail("Overlong argument list")
  rearm()
  process.stdout.on("error", () => fail("error writing to stdout"))
  if (isPath) return converse({ path: target }, line)

  // Split at the last colon, so `::1:10080` works; `[::1]:10080` is accepted as well.
  const host = target.slice(0, colon).replace(/^\[(.*)\]$/, "$1")
  const port = portOf(target.slice(colon + 1))
  if (port === undefined) return fail("getaddrinfo: Servname not supported for ai_socktype")
  if (host === "") return fail("getaddrinfo: Name or service not known")
  Dns.lookup(host, { hints: Dns.ADDRCONFIG }, (error, address, family) => {
    if (finished) return
    if (error) return fail(`getaddrinfo: ${lookupError(error)}`)
    converse({ host: address, port, family }, line)
  })
}

main(process.argv.slice(2))
