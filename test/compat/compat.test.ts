/**
 * The side-by-side suite: every scenario of test/compat/scenarios.ts runs on pen (the oracle) and on nib, with the
 * same argv, and both records must equal the scenario's expected record. In a scenario marked as a pen bug (or
 * another deliberate difference), pen's record must be pen's documented wrong one and nib's the one pen documents,
 * so the suite shows the difference. In a scenario marked as a nib bug (nib differs, pen is right, not fixed yet),
 * pen's record must be the expected one and nib's its own wrong one, so that a fix shows.
 *
 * Without pen (set $PEN to its path, or put it on $PATH), pen's side of each scenario is skipped, visibly: the test
 * is reported as skipped and a warning says why. nib's side always runs. COMPAT_LOG=1 prints every record.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Nib from "../utils/Nib.ts"
import * as Pen from "../utils/Pen.ts"
import * as Harness from "./harness.ts"
import { penHash, scenarios } from "./scenarios.ts"

const found = Pen.find()
const pen = found.path
const verbose = process.env["COMPAT_LOG"] !== undefined && process.env["COMPAT_LOG"] !== ""

if (found.path === undefined) {
  console.warn(
    `compat: pen not found (${found.why}): pen's side of all ${scenarios.length} side-by-side scenarios is ` +
      "SKIPPED, only nib's side runs. Install pen (apt-get install pen) or set $PEN to compare with it."
  )
}

/** The steps that each add an entry to the record. */
const RECORDED: ReadonlyArray<string> = ["connect", "halfClose", "exchange", "http", "control"]

describe("the scenarios", () => {
  it("compute pen's hash as the reference's examples, verified on pen, say (4.5)", () => {
    const picks = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.5.7", "127.1.2.3"].map((ip) => penHash(ip, 3))
    assert.deepStrictEqual(picks, [2, 0, 1, 1, 1])
    const withPort = ([["127.0.0.1", 40011], ["127.0.0.1", 40012], ["127.0.0.2", 40011]] as const).map(([ip, port]) =>
      penHash(ip, 3, port)
    )
    assert.deepStrictEqual(withPort, [0, 1, 1])
  })

  it("are well-formed: unique names, one expectation each, client addresses in 127.0.0.2-250", () => {
    assert.strictEqual(new Set(scenarios.map((s) => s.name)).size, scenarios.length)
    for (const s of scenarios) {
      assert.isTrue((s.expect === undefined) !== (s.penBug === undefined), `${s.name}: expect xor penBug`)
      assert.isTrue(s.nibBug === undefined || s.expect !== undefined, `${s.name}: nibBug only with expect`)
      const names = [...s.servers, ...(s.emergency ? [s.emergency] : []), ...(s.abuse ? [s.abuse] : [])].map((server) =>
        server.name
      )
      assert.strictEqual(new Set(names).size, names.length, `${s.name}: server names`)
      for (const step of s.steps) {
        if ("from" in step) assert.isTrue(step.from >= 2 && step.from <= 250, `${s.name}: from ${step.from}`)
        if ("server" in step) assert.include(names, step.server, `${s.name}: ${step.do} ${step.server}`)
      }
      const entries = s.steps.filter((step) => RECORDED.includes(step.do)).length
      const records = s.penBug ? [s.penBug.pen, s.penBug.nib] : [s.expect!, ...(s.nibBug ? [s.nibBug.nib] : [])]
      for (const record of records) {
        assert.strictEqual(record.length, entries, `${s.name}: one record entry per connection or control step`)
      }
    }
  })
})

for (const scenario of scenarios) {
  // Clients that arrive while the balancer is frozen are accepted together: with --workers, by several threads at once,
  // in no defined order between them. The servers they get must be the same, whichever client got which.
  const together = Nib.WORKERS.length > 0 && scenario.steps.some((step) => step.do === "pause")
  const inOrder = <A>(record: ReadonlyArray<A>): ReadonlyArray<A> =>
    together && record.every((entry) => typeof entry === "string") ? record.toSorted() : record

  const expected = scenario.penBug === undefined
    ? { pen: scenario.expect!, nib: scenario.nibBug?.nib ?? scenario.expect! }
    : { pen: scenario.penBug.pen, nib: scenario.penBug.nib }
  const label = scenario.penBug === undefined ? "" : " (differs on purpose)"
  const nibLabel = scenario.nibBug !== undefined ? " (NIB BUG, not fixed yet: differs from pen)" : label
  const penTitle = pen === undefined ? `pen${label}: SKIPPED, pen not found (${found.why})` : `pen${label}`
  const nibMessage = scenario.nibBug === undefined
    ? "nib's record"
    : "nib's record (a known nib bug: if nib now gives the expected record, the bug is fixed: drop nibBug)"

  describe(`${scenario.name} [ref ${scenario.ref}]`, () => {
    it.live.skipIf(pen === undefined)(penTitle, () =>
      Effect.gen(function*() {
        const { log, record } = yield* Harness.run(scenario, "pen", pen)
        if (verbose) console.log(`compat: ${scenario.name}: pen ${JSON.stringify(record)}`)
        assert.deepStrictEqual(record, expected.pen, `pen's record\n${log}`)
      }), 30_000)

    it.live(`nib${nibLabel}`, () =>
      Effect.gen(function*() {
        const { log, record } = yield* Harness.run(scenario, "nib")
        if (verbose) console.log(`compat: ${scenario.name}: nib ${JSON.stringify(record)}`)
        assert.deepStrictEqual(inOrder(record), inOrder(expected.nib), `${nibMessage}\n${log}`)
      }), 30_000)
  })
}
