import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as HealthCheck from "../../src/domain/HealthCheck.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))
const unit = Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 0.999999 }))

const parsed = (text: string): HealthCheck.Check => {
  const check = HealthCheck.parse(text)
  assert.isTrue(typeof check !== "string", `parse('${text}'): ${String(check)}`)
  return check as HealthCheck.Check
}

const refused = (text: string): string => {
  const check = HealthCheck.parse(text)
  assert.isTrue(typeof check === "string", `parse('${text}') should fail, got ${JSON.stringify(check)}`)
  return check as string
}

describe("HealthCheck.parse and format", () => {
  it("reads the three kinds", () => {
    assert.deepStrictEqual(parsed("tcp"), { _tag: "Tcp" })
    assert.deepStrictEqual(parsed("http"), { _tag: "Http", path: "/" })
    assert.deepStrictEqual(parsed("http:/health?full=1"), { _tag: "Http", path: "/health?full=1" })
    assert.deepStrictEqual(parsed("send:PING\\r\\n,expect:^\\+PONG"), {
      _tag: "Send",
      send: "PING\r\n",
      expect: "^\\+PONG"
    })
    // An empty TEXT sends nothing: the server speaks first (SMTP's banner).
    assert.deepStrictEqual(parsed("send:,expect:^220"), { _tag: "Send", send: "", expect: "^220" })
  })

  it("TEXT: escapes for a comma, a backslash, control bytes and any byte; a space as it is", () => {
    assert.deepStrictEqual(parsed("send:a\\,b\\\\c\\t\\x00\\xFF d,expect:x,y"), {
      _tag: "Send",
      send: "a,b\\c\t\x00\xff d",
      expect: "x,y"
    })
    // The first comma not escaped ends TEXT; REGEX may hold commas.
    assert.strictEqual(HealthCheck.format(parsed("send:a\\,b,expect:x,y")), "send:a\\,b,expect:x,y")
    // format writes a space and other bytes as \xHH, so that the text is one word of a control line.
    assert.strictEqual(
      HealthCheck.format(parsed("send:HELO a b\\r\\n,expect:^250")),
      "send:HELO\\x20a\\x20b\\r\\n,expect:^250"
    )
  })

  it("refuses what is not a check, saying why", () => {
    assert.include(refused("udp"), "is not tcp, http[:/path] or send:TEXT,expect:REGEX")
    assert.include(refused("http:health"), "must start with /")
    assert.include(refused("http:/a b"), "without spaces")
    assert.include(refused("send:PING"), "send:TEXT,expect:REGEX")
    assert.include(refused("send:PING,expect:"), "send:TEXT,expect:REGEX")
    assert.include(refused("send:a\\q,expect:x"), "'\\q' is not")
    assert.include(refused("send:a\\x4,expect:x"), "'\\x' is not")
    assert.include(refused("send:é,expect:x"), "not printable ASCII")
    assert.include(refused("send:a,expect:("), "expect:")
    assert.include(refused("send:a,expect:a b"), "\\x20 or \\s")
  })

  it.prop(
    "parse(format(c)) is c, for every check the schema allows",
    [HealthCheck.CheckSchema],
    ([check]) => {
      const text = HealthCheck.format(check)
      assert.notMatch(text, /\s/, "one word of a control line")
      assert.deepStrictEqual(HealthCheck.parse(text), check)
    }
  )

  it.prop(
    "what parse reads, the schema accepts",
    [Schema.String],
    ([text]) => {
      const check = HealthCheck.parse(`send:${text},expect:.`)
      if (typeof check !== "string") assert.isTrue(Schema.is(HealthCheck.CheckSchema)(check))
    }
  )
})

/** Runs `outcomes` from `state`, returning every state on the way. */
const states = (state: HealthCheck.State, outcomes: ReadonlyArray<boolean>, rise: number, fall: number) => {
  const all = [state]
  for (const passed of outcomes) all.push(HealthCheck.next(all.at(-1)!, passed, rise, fall))
  return all
}

describe("HealthCheck.next (rise and fall)", () => {
  const results = Schema.Array(Schema.Boolean)

  it("fall failures in a row take a server down; rise passes bring it back", () => {
    const all = states(HealthCheck.initial, [false, false, true, false, false, false, true, true], 2, 3)
    assert.deepStrictEqual(all.map((s) => s.up), [true, true, true, true, true, true, false, false, true])
  })

  it.prop(
    "the state flips only after rise passes (down) or fall failures (up) in a row, and then it does",
    { outcomes: results, rise: int(1, 5), fall: int(1, 5), up: Schema.Boolean },
    ({ fall, outcomes, rise, up }) => {
      let state: HealthCheck.State = { up, streak: 0 }
      let run = 0
      for (const passed of outcomes) {
        const next = HealthCheck.next(state, passed, rise, fall)
        // Results against the state, in a row, since the last flip or the last result that agreed.
        run = passed === state.up ? 0 : run + 1
        const needed = state.up ? fall : rise
        assert.strictEqual(next.up !== state.up, run === needed, JSON.stringify({ state, passed, run, needed }))
        if (next.up !== state.up) run = 0
        assert.isTrue(next.streak >= 0 && next.streak < needed)
        state = next
      }
    }
  )
})

describe("HealthCheck.slowStartShare", () => {
  it("grows linearly from 0 to 1 over the slow start, and is 1 without one", () => {
    assert.strictEqual(HealthCheck.slowStartShare(0, 10_000), 0)
    assert.strictEqual(HealthCheck.slowStartShare(2_500, 10_000), 0.25)
    assert.strictEqual(HealthCheck.slowStartShare(10_000, 10_000), 1)
    assert.strictEqual(HealthCheck.slowStartShare(5_000, 0), 1)
  })

  it.prop(
    "is in [0, 1] and never decreases with time",
    { a: int(-1_000_000, 1_000_000), b: int(-1_000_000, 1_000_000), slowStart: int(0, 600_000) },
    ({ a, b, slowStart }) => {
      const [early, late] = a <= b ? [a, b] : [b, a]
      const x = HealthCheck.slowStartShare(early, slowStart)
      const y = HealthCheck.slowStartShare(late, slowStart)
      assert.isTrue(x >= 0 && x <= 1 && y >= 0 && y <= 1, `${x} ${y}`)
      assert.isTrue(x <= y, `${early} -> ${x}, ${late} -> ${y}`)
    }
  )
})

describe("HealthCheck.delay", () => {
  it.prop(
    "stays within the jitter of the interval",
    { interval: int(50, 3_600_000), random: unit },
    ({ interval, random }) => {
      const d = HealthCheck.delay(interval, random)
      assert.isTrue(d >= Math.floor(interval * 0.9) && d <= Math.ceil(interval * 1.1), `${interval} -> ${d}`)
    }
  )

  it("spans the whole jitter: the lowest draw gives 0.9 of the interval, the highest almost 1.1", () => {
    assert.strictEqual(HealthCheck.delay(2000, 0), 1800)
    assert.strictEqual(HealthCheck.delay(2000, 0.5), 2000)
    assert.strictEqual(HealthCheck.delay(2000, 0.999999), 2200)
  })
})
