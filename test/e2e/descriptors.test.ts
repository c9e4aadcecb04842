/**
 * nib out of file descriptors, through the real process: a failure that is nib's own (here EMFILE) is never blamed
 * on a server. The built nib runs with a descriptor limit set on the running process (`prlimit --pid`) just above
 * what it holds when idle, so that a burst of clients exhausts it; then the clients close and the next one must be
 * served at once, with the server never blacklisted (and, where nib saw the failures, a warning on stderr).
 *
 * The limit is set on the running process, from its own list of open descriptors, rather than at spawn time: the
 * count is then exact, and it decides where the wall is hit. With an odd number free, the last descriptor goes to an
 * accepted client, whose dial to the server then fails with EMFILE: nib's own failure. With an even number, the
 * next accept fails instead, and libuv sheds such clients itself (it closes a spare descriptor, accepts and closes
 * every pending connection, and reopens it; Node emits nothing and keeps listening).
 *
 * Every wait is bounded; no assertion is about timing.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Fd from "../utils/Fd.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"

const { ip } = Client

/** As root, nib opens the control port only with `-u` (pen's rule). */
const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

const { prlimit } = Fd
if (prlimit === undefined) {
  console.warn("test/e2e/descriptors.test.ts: prlimit not found (util-linux): the descriptor-limit test is SKIPPED")
}

/** Clients served while the limit holds: each takes two descriptors (its own and its server's). */
const SERVED = 4
/** Clients in the burst: those that fit, and more that cannot. */
const BURST = SERVED + 12

/** The server's cell in the status column of `status`'s page (pen's time of its last failure; 0 = never). */
const statusOf = (page: string, index: number): string | undefined =>
  new RegExp(`<tr>\\n<td>${index}</td>\\n<td>[^<]*</td>\\n<td>(-?\\d+)</td>\\n`).exec(page)?.[1]

/** The warning HealthChecker logs for failures that are nib's own. */
const OWN_FAILURE = /(\d+) connections? failed on nib's own resources since the last report \(EMFILE[^)]*\)/

describe("failures that are nib's own", () => {
  /**
   * Where the last free descriptor goes: with an odd number free, to an accepted client, whose dial to the server
   * then fails with EMFILE (nib's own failure, warned about); with an even number, the next accept fails, and libuv
   * closes the clients it cannot take before nib sees them.
   */
  const cases = [
    { wall: "the dial to the server", free: 2 * SERVED + 1, warns: true },
    { wall: "the accept", free: 2 * SERVED, warns: false }
  ] as const

  for (const { free, wall, warns } of cases) {
    it.live.skipIf(prlimit === undefined)(
      `out of descriptors at ${wall}: the clients that do not fit are closed, the server is not blacklisted, the next client is served`,
      () =>
        Effect.gen(function*() {
          const a = yield* Backend.identity("a")
          const lb = yield* Nib.start([...AS_USER, "-b", "30", "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
          const target = Nibctl.targetOf(lb)
          // Served once without a limit: whatever nib opens lazily on its first connection is open from now on.
          assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")

          const idle = yield* Effect.promise(() => Fd.stable(lb.pid))
          const open = Fd.numbers(lb.pid)
          assert.strictEqual(open.length, idle, "the descriptor count moved while it was read")
          // New descriptors take the lowest free numbers below the limit; descriptors inherited above it (a test
          // runner's) stay open and do not count.
          Fd.setLimit(lb.pid, Fd.limitLeaving(open, free))

          // The burst: every client connects at once and holds its connection.
          const conns = Array.from({ length: BURST }, (_, i) => Client.dial(lb.port, { from: ip(3 + (i % 4)) }))
          const firsts = yield* Effect.promise(() => Promise.all(conns.map((conn) => conn.firstLine(10_000))))
          const served = firsts.filter((first) => first._tag === "Line")
          const closed = firsts.filter((first) => first._tag === "Closed")
          assert.deepStrictEqual(
            { served: served.length, closed: closed.length },
            { served: SERVED, closed: BURST - SERVED },
            JSON.stringify(firsts)
          )
          assert.isTrue(served.every((first) => first._tag === "Line" && first.line === "a"), JSON.stringify(firsts))

          if (warns) {
            // nib said why, on stderr, counting the failures.
            const warned = yield* Poll.waitUntil(() => OWN_FAILURE.test(lb.stderr()), 5_000)
            assert.isTrue(warned, `no warning about nib's own failures on stderr:\n${lb.stderr()}`)
          }

          // The clients close; once nib's descriptors are back to where they were, the next client is served at
          // once: nib still listens, and no server was blamed.
          for (const conn of conns) conn.close()
          const after = yield* Effect.promise(() => Fd.settle(lb.pid, idle, 10_000))
          assert.isAtMost(after, idle, `descriptors not given back: ${Fd.describe(lb.pid).join(", ")}`)
          assert.strictEqual(yield* Client.ask(lb.port, ip(7)), "a")
          assert.strictEqual(yield* Client.ask(lb.port, ip(3)), "a")
          assert.notMatch(lb.stderr(), /blacklisting/, lb.stderr())
          // The status page's status column is the time of the server's last failure: 0, never failed.
          assert.strictEqual(statusOf(yield* Nibctl.ask(target, "status"), 0), "0")

          if (warns) {
            // Every own failure was counted in some warning line (one a second at most: wait for the last one).
            const total = () =>
              [...lb.stderr().matchAll(new RegExp(OWN_FAILURE, "g"))].reduce((sum, m) => sum + Number(m[1]), 0)
            // With --workers, threads accept at the same time, and some clients that do not fit are shed at the
            // accept (libuv closes them: nothing to count, no server blamed) rather than at the dial.
            const counted = yield* Poll.waitUntil(
              () => Nib.WORKERS.length > 0 ? total() > 0 && total() <= BURST - SERVED : total() === BURST - SERVED,
              5_000
            )
            assert.isTrue(counted, `${total()} failures in the warnings, not ${BURST - SERVED}:\n${lb.stderr()}`)
          }
        })
    )
  }
})
