/**
 * pen's socket settings side by side, where a client alone cannot see their effect: pen 0.34.1 (the oracle) and nib
 * start with the same argv (`-f [-u root] -C 127.0.0.1:CP 127.0.0.1:LP <servers>`), get the same control commands and
 * the same connections, and what the servers and the kernel saw is recorded:
 *
 * - `source ADDRESS`: the address each server connection comes from (the server writes it back, then closes, so
 *   that pen, which binds the same local port each time, can bind it again);
 * - `keepalive`: whether the balancer's client socket and server socket have SO_KEEPALIVE (`ss -tno` shows their
 *   keepalive timer);
 * - `tcp_fastclose up`: whether the server's close ends the whole connection while the client stays open (the
 *   server sees the balancer close its side), and the half-close without it; a live connection takes a change made
 *   while it is open (pen reads the setting at the close).
 *
 * The half-close cases a client sees (`down`, `both`, an unknown mode) are scenarios of test/compat/scenarios.ts;
 * `write`'s lines are test/compat/control.test.ts's. Without pen, pen's side is skipped, visibly; nib's side runs
 * against pen's recorded behaviour. Without `ss`, the keepalive case is skipped, visibly. Every wait is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import type * as Net from "node:net"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Kernel from "../utils/Kernel.ts"
import * as Pen from "../utils/Pen.ts"
import * as Poll from "../utils/Poll.ts"
import * as Harness from "./control-harness.ts"

const found = Pen.find()
const pen = found.path
if (pen === undefined) {
  console.warn(`compat/sockets: pen not found (${found.why}): pen's side of every case is SKIPPED.`)
}
const noSs = Kernel.missing().includes("ss")
if (noSs) console.warn("compat/sockets: `ss` (iproute2) not found: the keepalive case is SKIPPED.")

/** As root, both need -u to open the control port; `-u root` keeps root. */
const AS_ROOT: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

/** The balancer `which` with a control port, over `servers`, for the length of the scope. */
const balancer = (which: Harness.Which, servers: ReadonlyArray<string>) =>
  Harness.scoped(which, pen, (control) => [...AS_ROOT, "-C", `127.0.0.1:${control}`], servers)

/** One control command's reply. */
const command = (b: Harness.Instance, line: string) => Effect.promise(() => Harness.send(b.control, `${line}\n`))

/**
 * The first line a new connection through `b` to `server` receives; the connection is then closed, and this waits
 * until the balancer's socket to the server is gone in every state: pen binds its `source` address with the same
 * local port each time (pen-reference 5.5), which it cannot bind again while the last socket still holds it.
 */
const firstLine = (b: Harness.Instance, server: number) =>
  Effect.promise(async () => {
    const conn = Client.dial(b.listen)
    try {
      return Client.nameOf(await conn.firstLine(5_000))
    } finally {
      conn.close()
      await Poll.until(() => Kernel.established("peer", server, "all").length === 0, 5_000, 20)
    }
  })

/** A case: what it does on one balancer, and the record both must give (or each its own, on purpose). */
interface Case {
  readonly name: string
  readonly ref: string
  readonly skip?: boolean
  readonly run: (which: Harness.Which) => Effect.Effect<ReadonlyArray<string>, never, Scope.Scope>
  readonly expect?: ReadonlyArray<string>
  readonly differs?: { readonly pen: ReadonlyArray<string>; readonly nib: ReadonlyArray<string>; readonly why: string }
}

const UNABLE = (address: string) => `unable to set source address to '${address}'`

/** A server that writes back the address the connection came from, then closes. */
const whoServer = Backend.custom("who", (socket) => socket.end(`${socket.remoteAddress}\n`))

/** The server's side of one connection: what it received, and whether the balancer closed (EOF) or reset it. */
interface Served {
  readonly socket: Net.Socket
  received: string
  ended: boolean
}

/** A server that greets each connection ("s") and keeps it open, half-open allowed, recording it. */
const holdingServer = Effect.gen(function*() {
  const served: Array<Served> = []
  const backend = yield* Backend.custom("s", (socket) => {
    const s: Served = { socket, received: "", ended: false }
    served.push(s)
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => (s.received += chunk))
    socket.on("end", () => (s.ended = true))
    socket.on("close", () => (s.ended = true))
    socket.write("s\n")
  }, { allowHalfOpen: true })
  return { backend, served }
})

/**
 * A connection through `b` to the holding server that is then closed by the server (a FIN): whether the balancer
 * closed the server's side too while the client stays open ("closed by the balancer"), or kept the connection,
 * which then still carries the client's bytes to the server ("half-close: the server got the client's bytes").
 */
const serverCloses = (
  b: Harness.Instance,
  server: { readonly served: Array<Served> },
  between: Effect.Effect<unknown> = Effect.void
) =>
  Effect.gen(function*() {
    const before = server.served.length
    const conn = yield* Client.open(b.listen)
    const greeting = yield* Effect.promise(() => conn.firstLine(5_000))
    if (greeting._tag !== "Line") return `no greeting (${greeting._tag})`
    const served = server.served[before]
    if (served === undefined) return "the server has no connection"
    yield* between
    served.socket.end()
    if ((yield* Effect.promise(() => conn.ended(5_000))) !== "eof") return "the client saw no EOF"
    // The balancer has passed the server's close on. Did it close the server's side as well?
    if (yield* Poll.waitUntil(() => served.ended, 1_500)) return "closed by the balancer"
    conn.socket.write("more\n")
    const got = yield* Poll.waitUntil(() => served.received === "more\n", 5_000)
    return got ? "half-close: the server got the client's bytes" : `neither (${JSON.stringify(served.received)})`
  })

/** The timer of the one socket in `sockets` ("none" when it has none). */
const timer = (sockets: ReadonlyArray<Kernel.Established>) =>
  sockets.length === 1 ? sockets[0]!.timer ?? "none" : `${sockets.length} sockets`

/** The keepalive timers of the balancer's client socket and server socket for one connection held open. */
const timers = (b: Harness.Instance, backendPort: number) =>
  Effect.scoped(Effect.gen(function*() {
    const held = yield* Client.hold(b.listen)
    if (held.name !== "a") return [`no answer (${held.name})`]
    const clientSide = yield* Effect.promise(() => Kernel.settled("local", b.listen, 1))
    const serverSide = yield* Effect.promise(() => Kernel.settled("peer", backendPort, 1))
    return [`client socket: ${timer(clientSide)}`, `server socket: ${timer(serverSide)}`]
  })).pipe(
    // The connection is closed: wait until the balancer's server socket is gone, for the next phase.
    Effect.tap(() => Poll.waitUntil(() => Kernel.established("peer", backendPort).length === 0))
  )

const cases: ReadonlyArray<Case> = [
  {
    name: "source ADDRESS: the server sees connections from it; a name that does not resolve gets pen's reply",
    ref: "5.5, 6.2 (source), 13",
    run: (which) =>
      Effect.gen(function*() {
        const who = yield* whoServer
        const b = yield* balancer(which, [who.spec()])
        const record: Array<string> = []
        record.push((yield* command(b, "source 127.0.0.2")).text)
        for (let i = 0; i < 3; i++) record.push(yield* firstLine(b, who.port))
        record.push((yield* command(b, "source no-such-host.invalid")).text)
        return record
      }),
    expect: ["", "127.0.0.2", "127.0.0.2", "127.0.0.2", UNABLE("no-such-host.invalid")]
  },
  {
    name: "deliberate difference: a source that cannot be set is refused and changes nothing",
    ref: "6.2 (source), 13; README: source",
    run: (which) =>
      Effect.gen(function*() {
        const who = yield* whoServer
        const b = yield* balancer(which, [who.spec()])
        const record: Array<string> = []
        record.push((yield* command(b, "source 127.0.0.2")).text)
        record.push(yield* firstLine(b, who.port))
        // Not an address of this host.
        record.push((yield* command(b, "source 192.0.2.1")).text)
        record.push(yield* firstLine(b, who.port))
        record.push((yield* command(b, "source 127.0.0.2")).text)
        record.push((yield* command(b, "source no-such-host.invalid")).text)
        record.push(yield* firstLine(b, who.port))
        return record
      }),
    differs: {
      pen: ["", "127.0.0.2", "", "127.0.0.1", "", UNABLE("no-such-host.invalid"), "127.0.0.1"],
      nib: ["", "127.0.0.2", UNABLE("192.0.2.1"), "127.0.0.2", "", UNABLE("no-such-host.invalid"), "127.0.0.2"],
      why: "pen takes any address its resolver knows, and when its bind fails dials from the system's choice without " +
        "a word; a name it cannot resolve clears the setting. nib checks that the address is this host's and refuses " +
        "one that is not, with pen's reply; a refused value changes nothing (README: Bad control arguments)."
    }
  },
  {
    name: "keepalive: client sockets always have SO_KEEPALIVE; server sockets from `keepalive` to `no keepalive`",
    ref: "5.5, 6.2 (keepalive)",
    skip: noSs,
    run: (which) =>
      Effect.gen(function*() {
        const a = yield* Backend.identity("a")
        const b = yield* balancer(which, [a.spec()])
        const record = [...yield* timers(b, a.port)]
        record.push((yield* command(b, "keepalive")).text)
        record.push(...yield* timers(b, a.port))
        record.push((yield* command(b, "no keepalive")).text)
        record.push(...yield* timers(b, a.port))
        return record
      }),
    expect: [
      "client socket: keepalive",
      "server socket: none",
      "",
      "client socket: keepalive",
      "server socket: keepalive",
      "",
      "client socket: keepalive",
      "server socket: none"
    ]
  },
  {
    name:
      "tcp_fastclose up: the server's close ends the whole connection while the client stays open; off, it is a half-close",
    ref: "5.2 (tcp_fastclose), 6.2",
    run: (which) =>
      Effect.gen(function*() {
        const server = yield* holdingServer
        const b = yield* balancer(which, [server.backend.spec()])
        const record: Array<string> = []
        record.push(`off: ${yield* serverCloses(b, server)}`)
        record.push((yield* command(b, "tcp_fastclose up")).text)
        record.push(`up: ${yield* serverCloses(b, server)}`)
        record.push((yield* command(b, "tcp_fastclose off")).text)
        // Set while the connection is open: the balancer reads it at the close.
        const change = command(b, "tcp_fastclose up")
        record.push(`up, set while open: ${yield* serverCloses(b, server, change)}`)
        return record
      }),
    expect: [
      "off: half-close: the server got the client's bytes",
      "",
      "up: closed by the balancer",
      "",
      "up, set while open: closed by the balancer"
    ]
  }
]

for (const c of cases) {
  const expected = c.differs ?? { pen: c.expect!, nib: c.expect! }
  const label = c.differs === undefined ? "" : " (differs on purpose)"
  describe(`${c.name} [ref ${c.ref}]`, () => {
    it.live.skipIf(pen === undefined || c.skip === true)(`pen${label}`, () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(yield* c.run("pen"), expected.pen, "pen's record")
      }), 30_000)
    it.live.skipIf(c.skip === true)(`nib${label}`, () =>
      Effect.gen(function*() {
        assert.deepStrictEqual(
          yield* c.run("nib"),
          expected.nib,
          c.differs === undefined ? "nib's record" : `nib's record (${c.differs.why})`
        )
      }), 30_000)
  })
}
