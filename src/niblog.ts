#!/usr/bin/env -S node --max-semi-space-size=4
/**
 * The `niblog` executable, pen's `penlog`: `niblog server_ip server_port [my_ip]` reads log lines on stdin (Apache's
 * `CustomLog "|niblog host port" common`) and sends each line, newline included, as one UDP datagram to `niblogd` (or
 * `penlogd`) at `server_ip:server_port`, from `my_ip` if given: niblogd tells web servers apart by that source
 * address, which must be the address the balancer knows the server by. At the end of stdin it exits 0.
 *
 * As penlog: too few arguments print `Usage: niblog server_ip server_port [my_ip]` on stderr and exit 1; a name that
 * does not resolve, a bad port or a local address that cannot be bound: one line on stderr, exit 1. A failed send is
 * reported on stderr (penlog sent it to syslog) and the next line is sent. Deviations: a line is sent whole (penlog
 * cut lines at 1023 bytes into several datagrams, and penlogd took the pieces for separate lines); port 0 or above
 * 65535 is refused (penlog sent to nowhere, or to the port modulo 65536); a fourth argument is refused (penlog ignored
 * it).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeStdio from "@effect/platform-node/NodeStdio"
import { Cause, Console, Data, Effect, Result, Stdio, Stream } from "effect"
import * as Fs from "node:fs"
import * as CompanionArgs from "./domain/CompanionArgs.ts"
import * as Datagram from "./net/Datagram.ts"

/** A failure printed as it is (`message`), exit code 1. */
class SendError extends Data.TaggedError("SendError")<{ readonly message: string }> {}

/** The largest UDP payload for each family; a longer line is sent in pieces of this size. */
const MAX_PAYLOAD = { 4: 65507, 6: 65527 } as const

const services = (() => {
  try {
    return CompanionArgs.udpServices(Fs.readFileSync("/etc/services", "utf8"))
  } catch {
    return () => undefined
  }
})()

const NEWLINE = 0x0a

/** Cuts stdin into lines, each with its newline; the last line is sent as it is, with or without one. */
const lines = (input: Stream.Stream<Uint8Array, unknown>) => {
  let carry: Buffer = Buffer.alloc(0)
  return input.pipe(
    Stream.map((chunk): Array<Buffer> => {
      const data = carry.length === 0 ? Buffer.from(chunk) : Buffer.concat([carry, chunk])
      const out: Array<Buffer> = []
      let start = 0
      for (let end = data.indexOf(NEWLINE); end >= 0; end = data.indexOf(NEWLINE, start)) {
        out.push(data.subarray(start, end + 1))
        start = end + 1
      }
      carry = Buffer.from(data.subarray(start))
      return out
    }),
    Stream.concat(Stream.suspend(() => Stream.succeed(carry.length > 0 ? [carry] : []))),
    Stream.flatMap((batch) => Stream.fromIterable(batch))
  )
}

/** A lookup or bind failure, naming the argument: `niblog: server_ip 'x': Name or service not known`. */
const fail = (argument: string) => (error: Datagram.DatagramError) =>
  new SendError({ message: `niblog: ${argument}: ${error.reason === "Resolve" ? error.why : error.message}` })

const main = (args: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const command = CompanionArgs.parseSend(args, services)
    if (Result.isFailure(command)) {
      const message = command.failure
      return yield* new SendError({ message: message === CompanionArgs.SEND_USAGE ? message : `niblog: ${message}` })
    }
    if (command.success._tag === "Help") return yield* Console.log(CompanionArgs.SEND_USAGE)
    const { host, localAddress, port } = command.success.settings

    const server = yield* Datagram.lookup(host).pipe(Effect.mapError(fail(`server_ip '${host}'`)))
    const local = localAddress === undefined
      ? undefined
      : yield* Datagram.lookup(localAddress, server.family).pipe(Effect.mapError(fail(`my_ip '${localAddress}'`)))
    const socket = yield* Datagram.sender({
      host: server.address,
      port,
      family: server.family,
      localAddress: local?.address
    }).pipe(Effect.mapError(fail(`my_ip '${localAddress}'`)))
    const max = MAX_PAYLOAD[server.family]

    const stdio = yield* Stdio.Stdio
    yield* lines(stdio.stdin).pipe(
      Stream.runForEach((line) =>
        Effect.forEach(
          Array.from({ length: Math.ceil(line.length / max) }, (_, i) => line.subarray(i * max, (i + 1) * max)),
          (piece) => socket.send(piece).pipe(Effect.catch((error) => Console.error(`niblog: ${error.message}`))),
          { discard: true }
        )
      )
    )
  })

main(process.argv.slice(2)).pipe(
  Effect.scoped,
  Effect.tapCause((cause) => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.void
    const error = Cause.squash(cause)
    return Console.error(error instanceof SendError ? error.message : `niblog: ${String(error)}`)
  }),
  Effect.provide(NodeStdio.layer),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
