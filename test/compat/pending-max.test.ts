/**
 * `pending_max` side by side: pen 0.34.1 (the oracle) and nib start with the same argv (apart from their ports),
 *
 *   -f -u root -C 127.0.0.1:CP -t 30 [-O "pending_max 1"] -e 127.0.0.1:E 127.0.0.1:LP 127.0.0.1:S
 *
 * where S is a server whose connects hang (its accept queue is full, test/utils/Backend.ts `unresponsive`) and E an
 * identity backend "e". A first client's connect to S is in progress; a second client arrives and sends a line. What
 * is recorded is what clients and the control port see, on both: the second client's connection in pen's table
 * (`connection 1`'s state: 0 while it waits unaccepted, 1 once its own connect is in progress), what it received
 * after a second, the replies to `server 0 blacklist 60` and `close 0` (which ends the first connect), and what the
 * second client received then: with pending_max 1 it is taken now, refused by the blacklisted S, and served by "e"
 * (with the line it sent while it waited, unread); by default its own connect to S still hangs (-t 30). Then
 * `pending_max`'s replies (none, set or not, on both) and `write`: pen's leaves pending_max out, nib's writes it when
 * it is not pen's 100 (README, "Idle server connections and pending_max"), the one difference, asserted as each one's.
 *
 * `idlers N` is not here: pen 0.34.1 segfaults on it (pen-reference.md §6.2).
 *
 * Without pen (set $PEN, or put pen on $PATH), pen's side is skipped, visibly; nib's side still runs against pen's
 * record, verified on the pen 0.34.1 binary.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Pen from "../utils/Pen.ts"
import * as Poll from "../utils/Poll.ts"
import * as Harness from "./control-harness.ts"

const found = Pen.find()
const pen = found.path
if (pen === undefined) {
  console.warn(`compat pending_max: pen not found (${found.why}): pen's side is SKIPPED, only nib's side runs`)
}

/** As root, pen (and nib) open the control port only with -u; `-u root` keeps root. */
const AS_ROOT: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

/** The state line of `connection N`'s reply. */
const stateOf = (reply: string) => /state = (\d+)/.exec(reply)?.[0] ?? reply

/** Polls `connection 0` on control port `control` until its state is 1 (at most 5 s); whether it was. */
const connecting = (control: number) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 5_000
    for (;;) {
      if (stateOf((await Harness.send(control, "connection 0\n")).text) === "state = 1") return true
      if (Date.now() > deadline) return false
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })

/** The record of one run: what the second client and the control port saw, in order. */
const run = (which: Harness.Which, pendingMax: boolean) =>
  Effect.gen(function*() {
    const e = yield* Backend.identity("e")
    const stuck = yield* Backend.unresponsive
    assert.isTrue(yield* stuck.fill(), "the unresponsive server's accept queue never filled")
    const dir = yield* Nib.tempDir
    const b = yield* Harness.scoped(
      which,
      pen,
      (control) => [
        ...AS_ROOT,
        "-C",
        `127.0.0.1:${control}`,
        "-t",
        "30",
        ...(pendingMax ? ["-O", "pending_max 1"] : []),
        "-e",
        e.spec()
      ],
      [stuck.spec()]
    )
    const ask = (command: string) => Effect.promise(() => Harness.send(b.control, `${command}\n`))
    const record: Array<string> = []

    const first = yield* Client.opening(b.listen, { from: Client.ip(2) })
    first.socket.write("one\n")
    // The first client's connect is in progress (pen's state 1, "connecting"; nib's too).
    assert.isTrue(yield* connecting(b.control), `${which}: the first client's connect never started`)

    const second = yield* Client.opening(b.listen, { from: Client.ip(3) })
    second.socket.write("two\n")
    yield* Effect.sleep("1 second")
    record.push(`connection 1: ${stateOf((yield* ask("connection 1")).text)}`)
    record.push(`second, after 1 s: ${JSON.stringify(second.text())}`)
    record.push(`blacklist: ${JSON.stringify((yield* ask("server 0 blacklist 60")).text)}`)
    record.push(`close 0: ${JSON.stringify((yield* ask("close 0")).text)}`)
    yield* Effect.promise(() => second.until(() => second.text() === "e\ntwo\n", 3_000))
    record.push(`second, then: ${JSON.stringify(second.text())}`)
    record.push(`first: ${JSON.stringify(first.text())}, ended: ${first.ending !== undefined}`)
    for (const command of ["pending_max", "pending_max 0", "pending_max 5"]) {
      record.push(`${command}: ${JSON.stringify((yield* ask(command)).text)}`)
    }
    const file = Path.join(dir, "written.cfg")
    yield* ask(`write ${file}`)
    yield* Poll.waitUntil(() => Fs.existsSync(file))
    const written = Fs.readFileSync(file, "utf8").split("\n").filter((line) => line.startsWith("pending_max"))
    return { record, written }
  })

/** What both record (verified on pen 0.34.1). */
const EXPECTED = {
  limited: [
    "connection 1: state = 0",
    `second, after 1 s: ""`,
    `blacklist: ""`,
    `close 0: "Forcibly closing connection 0\\n"`,
    `second, then: "e\\ntwo\\n"`,
    `first: "", ended: true`,
    `pending_max: ""`,
    `pending_max 0: ""`,
    `pending_max 5: ""`
  ],
  unlimited: [
    "connection 1: state = 1",
    `second, after 1 s: ""`,
    `blacklist: ""`,
    `close 0: "Forcibly closing connection 0\\n"`,
    `second, then: ""`,
    `first: "", ended: true`,
    `pending_max: ""`,
    `pending_max 0: ""`,
    `pending_max 5: ""`
  ]
}

/** What `write` says of pending_max (5 by then): nothing on pen, the command on nib. */
const WRITTEN: Record<Harness.Which, ReadonlyArray<string>> = { pen: [], nib: ["pending_max 5"] }

describe("pending_max side by side", () => {
  for (const [name, limited] of [["pending_max 1", true], ["the default (100)", false]] as const) {
    for (const which of ["pen", "nib"] as const) {
      const title = which === "pen" && pen === undefined ? `pen: SKIPPED, pen not found (${found.why})` : which
      it.live.skipIf(which === "pen" && pen === undefined)(`${name}: ${title}`, () =>
        Effect.gen(function*() {
          const { record, written } = yield* run(which, limited)
          assert.deepStrictEqual(record, limited ? EXPECTED.limited : EXPECTED.unlimited, `${which}'s record`)
          assert.deepStrictEqual(written, WRITTEN[which], `${which}'s write`)
        }), 30_000)
    }
  }
})
