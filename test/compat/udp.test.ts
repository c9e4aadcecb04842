/**
 * UDP mode (`-U`) side by side with pen 0.34.1 (reference section 9): the same argv on both, UDP identity servers
 * that answer with their name, and clients on loopback addresses 127.0.0.N. Each scenario's record is the name of
 * the server that answered each client datagram ("none" when nothing answered within the patience).
 *
 * Without pen, pen's side is skipped visibly and nib's side still runs against the expected record.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Nib from "../utils/Nib.ts"
import * as Pen from "../utils/Pen.ts"
import * as Udp from "../utils/Udp.ts"

const found = Pen.find()
const pen = found.path
if (pen === undefined) console.warn(`compat/udp: pen not found (${found.why}): pen's side is SKIPPED`)

/** A client datagram: a new socket from 127.0.0.`from`, or (`again`) the socket of an earlier step of the same label. */
interface Step {
  readonly from: number
  /** Keep this socket open under this label, or reuse the socket kept under it. */
  readonly socket?: string
}

interface Scenario {
  readonly name: string
  readonly servers: ReadonlyArray<"identity" | "down">
  readonly emergency?: boolean
  readonly args: ReadonlyArray<string>
  readonly steps: ReadonlyArray<Step>
  readonly expect?: ReadonlyArray<string>
  /** A pen bug nib fixes: each one's record. */
  readonly penBug?: { readonly pen: ReadonlyArray<string>; readonly nib: ReadonlyArray<string>; readonly why: string }
  /** Extra check on the servers after the run, on both balancers. */
  readonly check?: (servers: ReadonlyArray<Udp.Server | undefined>) => void
}

const NAMES = "abcdefgh"

const scenarios: ReadonlyArray<Scenario> = [
  {
    name: "sticky by client IP; new clients by the roundrobin cursor (starting at server 1)",
    servers: ["identity", "identity"],
    args: [],
    steps: [2, 3, 2, 4, 3, 5].map((from) => ({ from })),
    expect: ["b", "a", "b", "b", "a", "a"]
  },
  {
    name: "-r: every session takes the next server, whatever its IP",
    servers: ["identity", "identity", "identity"],
    args: ["-r"],
    steps: [2, 2, 2, 3].map((from) => ({ from })),
    expect: ["b", "c", "a", "b"]
  },
  {
    name: "a second client socket from the same IP: the same server, through a new upstream socket",
    servers: ["identity", "identity"],
    args: [],
    steps: [{ from: 2, socket: "one" }, { from: 2, socket: "two" }, { from: 2, socket: "one" }],
    expect: ["b", "b", "b"],
    check: (servers) => {
      const from = servers[1]!.received.map((r) => r.from)
      assert.strictEqual(from.length, 3)
      assert.strictEqual(from[0], from[2], "the same client socket keeps its upstream socket")
      assert.notStrictEqual(from[0], from[1], "a second client socket has its own upstream socket")
    }
  },
  {
    name: "-W with no weight set: every session goes to the emergency server",
    servers: ["identity", "identity"],
    emergency: true,
    args: ["-W"],
    steps: [2, 3, 2].map((from) => ({ from })),
    expect: ["e", "e", "e"]
  },
  {
    name: "pen bug: a server that answers ICMP port-unreachable: pen drops the session, nib fails over",
    servers: ["identity", "down"],
    args: [],
    steps: [2, 3].map((from) => ({ from })),
    penBug: {
      pen: ["none", "a"],
      nib: ["a", "a"],
      why: "pen closes a session whose upstream recv fails and neither blacklists the server nor fails over " +
        "(reference 9); nib counts the ICMP error as the server's failure and sends the datagram to the next server."
    }
  }
]

/** Runs `scenario` on `balancer` ("pen" or "nib"): its record, and the servers for `check`. */
const run = (scenario: Scenario, balancer: "pen" | "nib") =>
  Effect.gen(function*() {
    const servers: Array<Udp.Server | undefined> = []
    const specs: Array<string> = []
    for (const kind of scenario.servers) {
      if (kind === "identity") {
        const server = yield* Udp.identity(NAMES[servers.length]!)
        servers.push(server)
        specs.push(server.spec())
      } else {
        servers.push(undefined)
        specs.push(`127.0.0.1:${yield* Udp.freePort}`)
      }
    }
    const extra = scenario.emergency ? ["-e", (yield* Udp.identity("e")).spec()] : []
    const flags = ["-U", ...extra, ...scenario.args]
    const penPort = yield* Udp.freePort
    const lb = balancer === "nib"
      ? yield* Nib.start([...flags, "127.0.0.1:0", ...specs])
      : yield* Effect.acquireRelease(
        Effect.promise(async () => {
          const { proc } = await Nib.spawnReady(pen!, ["-f", ...flags, `127.0.0.1:${penPort}`, ...specs], Pen.READY)
          return { ...proc, port: penPort }
        }),
        (proc) => Effect.promise(() => Nib.stop(proc))
      )
    const sockets = new Map<string, Udp.Client>()
    const record: Array<string> = []
    for (const [i, step] of scenario.steps.entries()) {
      let client = step.socket === undefined ? undefined : sockets.get(step.socket)
      if (client === undefined) {
        client = yield* Udp.client(lb.port, `127.0.0.${step.from}`)
        if (step.socket !== undefined) sockets.set(step.socket, client)
      }
      const before = client.replies.length
      client.send(`step${i}`)
      const replies = yield* Effect.promise(() => client.waitReplies(before + 1, 1_500))
      const reply = replies[before]
      record.push(reply === undefined ? "none" : reply.slice(0, reply.indexOf(":")))
    }
    return { record, servers }
  })

describe("UDP mode side by side with pen (reference 9)", () => {
  for (const scenario of scenarios) {
    const expected = scenario.penBug ?? { pen: scenario.expect!, nib: scenario.expect! }
    describe(scenario.name, () => {
      it.live.skipIf(pen === undefined)(
        `pen${scenario.penBug ? " (differs on purpose)" : ""}`,
        () =>
          Effect.gen(function*() {
            const { record, servers } = yield* run(scenario, "pen")
            assert.deepStrictEqual(record, expected.pen, "pen's record")
            scenario.check?.(servers)
          }),
        30_000
      )
      it.live(`nib${scenario.penBug ? " (differs on purpose)" : ""}`, () =>
        Effect.gen(function*() {
          const { record, servers } = yield* run(scenario, "nib")
          assert.deepStrictEqual(record, expected.nib, "nib's record")
          scenario.check?.(servers)
        }), 30_000)
    })
  }
})
