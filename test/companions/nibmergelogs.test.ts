/**
 * nibmergelogs against mergelogs on the same files: a `-l` file written with nib's own format (AccessLog.fileLine),
 * web-server logs in common and combined format with several UTC offsets, lines that match no record, lines that
 * cannot be read, and the jitter window, `-c` and `-t`; the same output, byte for byte, and the same exit codes. Where
 * nibmergelogs differs on purpose (mergelogs lost data there), both sides are shown. Without mergelogs the
 * side-by-side tests are skipped, visibly.
 *
 * mergelogs is run with TZ=UTC: it reads web-server times as local time. And every fixture starts with an "anchor"
 * log of one line, the oldest of all: as run here, mergelogs reads the first line after the first line it writes with
 * an uninitialised `tm_isdst`, and puts it one hour early (see the test of that bug below); a first line from a log
 * that then ends avoids that read.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as AccessLog from "../../src/domain/AccessLog.ts"
import * as LogMerge from "../../src/domain/LogMerge.ts"
import * as Companions from "./Companions.ts"

const mergelogs = Companions.findPen("mergelogs")
const nibmergelogs = Companions.nib("nibmergelogs")
const missing = mergelogs.command === undefined ? mergelogs.why : undefined
if (missing !== undefined) console.warn(`companions: mergelogs not found (${missing}): side-by-side tests SKIPPED`)
const sideBySide = (title: string) => missing === undefined ? title : `${title}: SKIPPED, ${missing}`

const bytes = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0))
const UTC = { TZ: "UTC" }

/** A small deterministic generator (an LCG), so that a failure can be reproduced from its seed. */
const random = (seed: number) => {
  let state = seed >>> 0
  return (n: number) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state % n
  }
}

const SERVERS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
const REQUESTS = ["GET / HTTP/1.0", "GET /a HTTP/1.1", "POST /form HTTP/1.1", "GET /b?x=1 HTTP/1.0", "HEAD / HTTP/1.0"]
const OFFSETS = [0, 3600, -18000, 19800]
const BASE = 1_000_000_000

const apacheTime = (t: number, offset: number) => {
  const local = LogMerge.formatApacheTime(t + offset).replace(" +0000", "")
  const a = Math.abs(offset)
  return `${local} ${offset < 0 ? "-" : "+"}${String(Math.floor(a / 3600)).padStart(2, "0")}${
    String((a % 3600) / 60).padStart(2, "0")
  }`
}

/**
 * Writes a fixture into `dir`: the balancer's `-l` file and one log per server, all generated from `seed`; returns
 * the `server:logfile` arguments (anchor first).
 */
const fixture = (dir: string, seed: number, requests = REQUESTS) => {
  const next = random(seed)
  const file: Array<string> = []
  const logs = new Map(SERVERS.map((server) => [server, [] as Array<string>]))
  let t = BASE
  for (let i = 0; i < 250; i++) {
    t += next(40)
    const server = SERVERS[next(SERVERS.length)]!
    const request = requests[next(requests.length)]!
    const client = `192.168.${next(4)}.${1 + next(9)}`
    if (next(10) < 9) file.push(AccessLog.fileLine(client, t, server, bytes(`${request}\r\nHost: x\r\n\r\n`)))
    if (next(30) === 0) file.push("a line that is not a record\n")
    const when = apacheTime(t + next(11) - 5, OFFSETS[next(OFFSETS.length)]!)
    const line = next(2) === 0
      ? `10.0.0.99 - - [${when}] "${request}" 200 ${1 + next(999)}`
      : `10.0.0.99 - user [${when}] "${request}" 404 - "http://ref/${i}" "Mozilla/5.0 (X11; ${i})"`
    const kind = next(40)
    logs.get(server)!.push(kind === 0 ? "garbage" : kind === 1 ? `10.0.0.99 - - [${when}] "" 400 -` : line)
  }
  Fs.writeFileSync(Path.join(dir, "pen.log"), file.join(""), "latin1")
  Fs.writeFileSync(
    Path.join(dir, "anchor.log"),
    `10.0.0.99 - - [${apacheTime(BASE - 100, 0)}] "GET /anchor HTTP/1.0" 200 1\n`
  )
  for (const [server, lines] of logs) {
    Fs.writeFileSync(Path.join(dir, `${server}.log`), `${lines.join("\n")}\n`, "latin1")
  }
  return [
    `10.0.0.50:${Path.join(dir, "anchor.log")}`,
    ...SERVERS.map((server) => `${server}:${Path.join(dir, `${server}.log`)}`)
  ]
}

/** The client of each merged line but the first (the anchor's). */
const clients = (stdout: string) => stdout.trimEnd().split("\n").slice(1).map((line) => line.split(" ")[0])

/** The time of each merged line (`w - - [time]` lines). */
const times = (stdout: string) => stdout.trimEnd().split("\n").map((l) => LogMerge.parseApacheTime(l.slice(15, 41)))

describe("nibmergelogs, side by side with mergelogs", () => {
  const optionSets = [[], ["-c"], ["-j", "0"], ["-j", "30"], ["-j", "5", "-t", "7"], ["-t", "-40"]]

  it.live.skipIf(missing !== undefined)(
    sideBySide("the same merged log for the same files: matches, misses, unreadable lines, jitter, -c, -t"),
    () =>
      Effect.gen(function*() {
        const dir = yield* Companions.tempDir
        const runs = [1, 2, 3].flatMap((seed) => {
          const seedDir = Path.join(dir, String(seed))
          Fs.mkdirSync(seedDir)
          const logs = fixture(seedDir, seed)
          return optionSets.map((options) => ({
            label: `seed ${seed}, ${options.join(" ") || "no options"}`,
            args: [...options, "-p", Path.join(seedDir, "pen.log"), ...logs]
          }))
        })
        yield* Effect.forEach(runs, ({ args, label }) =>
          Effect.gen(function*() {
            const [pen, nib] = yield* Effect.all([
              Companions.run(mergelogs.command!, args, "", UTC),
              Companions.run(nibmergelogs, args)
            ], { concurrency: 2 })
            assert.strictEqual(pen.code, 0, label)
            assert.strictEqual(nib.code, 0, label)
            assert.strictEqual(nib.stderr, "", label)
            assert.isAbove(pen.stdout.split("\n").length, 200, label)
            assert.strictEqual(nib.stdout, pen.stdout, label)
          }), { concurrency: 2 })
      }),
    60_000
  )

  it.live.skipIf(missing !== undefined)(
    sideBySide("the jitter window, line by line: what each option finds for the same lines"),
    () =>
      Effect.gen(function*() {
        const dir = yield* Companions.tempDir
        const penLog = Path.join(dir, "pen.log")
        Fs.writeFileSync(
          penLog,
          [
            AccessLog.fileLine("1.1.1.1", BASE, "10.0.0.1", bytes("GET /x HTTP/1.0\r\n")),
            AccessLog.fileLine("2.2.2.2", BASE + 50, "10.0.0.1", bytes("GET /y HTTP/1.0\r\n")),
            AccessLog.fileLine("3.3.3.3", BASE + 5000, "10.0.0.1", bytes("GET /z HTTP/1.0\r\n"))
          ].join("")
        )
        Fs.writeFileSync(
          Path.join(dir, "anchor.log"),
          `a - - [${apacheTime(BASE - 100, 0)}] "GET /anchor HTTP/1.0" 200 1\n`
        )
        Fs.writeFileSync(
          Path.join(dir, "web.log"),
          [
            `w - - [${apacheTime(BASE + 20, 0)}] "GET /x HTTP/1.0" 200 1`,
            `w - - [${apacheTime(BASE + 60, 0)}] "GET /x HTTP/1.0" 200 2`,
            `w - - [${apacheTime(BASE + 61, 0)}] "GET /y HTTP/1.0" 200 3`,
            `w - - [${apacheTime(BASE + 4990, 0)}] "GET /y HTTP/1.0" 200 4`,
            `w - - [${apacheTime(BASE + 4991, 0)}] "GET /z HTTP/1.0" 200 5`
          ].join("\n") + "\n"
        )
        const expected: ReadonlyArray<readonly [ReadonlyArray<string>, ReadonlyArray<string>]> = [
          [[], ["1.1.1.1", "1.1.1.1", "2.2.2.2", "10.0.0.1", "3.3.3.3"]],
          [["-j", "30"], ["1.1.1.1", "10.0.0.1", "2.2.2.2", "10.0.0.1", "3.3.3.3"]],
          [["-j", "30", "-c"], ["1.1.1.1", "1.1.1.1", "2.2.2.2", "2.2.2.2", "3.3.3.3"]],
          // The balancer's clock 4940 s behind: the cache, read ahead, still holds far records.
          [["-j", "30", "-t", "-4940"], ["1.1.1.1", "1.1.1.1", "10.0.0.1", "2.2.2.2", "3.3.3.3"]]
        ]
        for (const [options, want] of expected) {
          const args = [
            ...options,
            "-p",
            penLog,
            `10.0.0.50:${Path.join(dir, "anchor.log")}`,
            `10.0.0.1:${Path.join(dir, "web.log")}`
          ]
          const pen = yield* Companions.run(mergelogs.command!, args, "", UTC)
          const nib = yield* Companions.run(nibmergelogs, args)
          assert.deepStrictEqual(clients(pen.stdout), want, `mergelogs ${options.join(" ")}`)
          assert.deepStrictEqual(clients(nib.stdout), want, `nibmergelogs ${options.join(" ")}`)
          assert.strictEqual(nib.stdout, pen.stdout)
        }
      })
  )

  it.live.skipIf(missing !== undefined)(
    sideBySide("differs on purpose: requests over 100 bytes match, lines over 1023 bytes stay whole"),
    () =>
      Effect.gen(function*() {
        const dir = yield* Companions.tempDir
        const long = `GET /${"L".repeat(150)} HTTP/1.1`
        const logs = fixture(dir, 4, [...REQUESTS, long])
        const args = ["-p", Path.join(dir, "pen.log"), ...logs]
        const pen = yield* Companions.run(mergelogs.command!, args, "", UTC)
        const nib = yield* Companions.run(nibmergelogs, args)
        const penLines = pen.stdout.split("\n")
        const nibLines = nib.stdout.split("\n")
        assert.strictEqual(nibLines.length, penLines.length)
        let differ = 0
        nibLines.forEach((line, i) => {
          if (line === penLines[i]) return
          differ++
          // Only long requests differ: mergelogs gave them the server's address, nibmergelogs the client.
          assert.include(line, long)
          assert.match(penLines[i]!, /^10\.0\.0\.[123] /)
          assert.match(line, /^192\.168\.\d\.\d /)
        })
        assert.isAbove(differ, 0)

        const ua = `Mozilla/5.0 ${"U".repeat(1500)}`
        Fs.writeFileSync(
          Path.join(dir, "long.log"),
          `w - - [${apacheTime(BASE + 1, 0)}] "GET / HTTP/1.0" 200 5 "http://ref/" "${ua}"\n`
            + `w - - [${apacheTime(BASE + 2, 0)}] "GET / HTTP/1.0" 200 6\n`
        )
        const longArgs = ["-p", Path.join(dir, "pen.log"), logs[0]!, `10.0.0.1:${Path.join(dir, "long.log")}`]
        const whole = (yield* Companions.run(nibmergelogs, longArgs)).stdout.trimEnd().split("\n")
        const cut = (yield* Companions.run(mergelogs.command!, longArgs, "", UTC)).stdout.trimEnd().split("\n")
        assert.strictEqual(whole.length, 3)
        assert.isTrue(whole[1]!.endsWith(`"${ua}"`))
        // mergelogs read 1023 bytes of it, wrote them as a line, and skipped the rest as a line it could not read.
        assert.strictEqual(cut.length, 3)
        assert.isTrue(whole[1]!.startsWith(cut[1]!) && cut[1]!.length < whole[1]!.length)
      })
  )

  it.live.skipIf(missing !== undefined)(
    sideBySide("differs on purpose: every line keeps its time (mergelogs put one an hour early)"),
    () =>
      Effect.gen(function*() {
        const dir = yield* Companions.tempDir
        const web = Path.join(dir, "web.log")
        Fs.writeFileSync(Path.join(dir, "pen.log"), "")
        Fs.writeFileSync(
          web,
          [0, 7, 8].map((s) => `w - - [${apacheTime(BASE + s, 0)}] "GET /${s} HTTP/1.0" 200 5`).join("\n") + "\n"
        )
        const args = ["-p", Path.join(dir, "pen.log"), `10.0.0.1:${web}`]
        const nib = yield* Companions.run(nibmergelogs, args)
        assert.deepStrictEqual(times(nib.stdout), [BASE, BASE + 7, BASE + 8])
        const pen = yield* Companions.run(mergelogs.command!, args, "", UTC)
        const penTimes = times(pen.stdout)
        // As run here, mergelogs printed the second line one hour early; whatever it does, the others are right.
        assert.oneOf(penTimes[1], [BASE + 7, BASE + 7 - 3600])
        assert.deepStrictEqual([penTimes[0], penTimes[2]], [BASE, BASE + 8])
      })
  )

  it.live.skipIf(missing !== undefined)(
    sideBySide("usage and errors: the same exit codes, nothing on stdout"),
    () =>
      Effect.gen(function*() {
        const dir = yield* Companions.tempDir
        const penLog = Path.join(dir, "pen.log")
        Fs.writeFileSync(penLog, "")
        const cases: ReadonlyArray<readonly [ReadonlyArray<string>, number, string]> = [
          [["-p", "/nonexistent/pen.log", "10.0.0.1:x"], 1, "nibmergelogs: can't open penlog '/nonexistent/pen.log'"],
          [["-p", penLog, "10.0.0.1:/nonexistent/a.log"], 1, "nibmergelogs: can't open logfile '/nonexistent/a.log'"],
          [["-p", penLog, "access_log"], 1, "nibmergelogs: 'access_log' is not server:logfile"],
          [["10.0.0.1:x"], 1, "nibmergelogs: no -p penlog given"]
        ]
        const results = yield* Effect.forEach(
          cases,
          ([args]) =>
            Effect.all([Companions.run(mergelogs.command!, args, "", UTC), Companions.run(nibmergelogs, args)]),
          { concurrency: 3 }
        )
        for (const [i, [args, code, message]] of cases.entries()) {
          const [pen, nib] = results[i]!
          assert.deepStrictEqual([pen.code, pen.stdout], [code, ""], `mergelogs ${args.join(" ")}`)
          assert.deepStrictEqual([nib.code, nib.stdout], [code, ""], `nibmergelogs ${args.join(" ")}`)
          assert.match(nib.stderr, /^nibmergelogs: [^\n]*\n$/)
          assert.isTrue(nib.stderr.startsWith(message), nib.stderr)
        }
        for (const command of [mergelogs.command!, nibmergelogs]) {
          const usage = yield* Companions.run(command, [])
          assert.strictEqual(usage.code, 0)
          assert.match(usage.stdout, /^Usage: \w+ -p penlog \[/)
        }
      })
  )
})

describe("nibmergelogs on its own", () => {
  it.live("gives the same output in any time zone (mergelogs read web-server times as local time)", () =>
    Effect.gen(function*() {
      const dir = yield* Companions.tempDir
      const logs = fixture(dir, 5)
      const args = ["-p", Path.join(dir, "pen.log"), ...logs]
      const utc = yield* Companions.run(nibmergelogs, args, "", UTC)
      const helsinki = yield* Companions.run(nibmergelogs, args, "", { TZ: "Europe/Helsinki" })
      assert.strictEqual(utc.code, 0)
      assert.strictEqual(helsinki.stdout, utc.stdout)
    }))

  it.live("-d notes unreadable lines on stderr, and a bad argument is one line with exit code 1", () =>
    Effect.gen(function*() {
      const dir = yield* Companions.tempDir
      Fs.writeFileSync(Path.join(dir, "pen.log"), "")
      Fs.writeFileSync(Path.join(dir, "web.log"), `garbage\nw - - [${apacheTime(BASE, 0)}] "GET / HTTP/1.0" 200 1\n`)
      const debug = yield* Companions.run(nibmergelogs, [
        "-d",
        "-p",
        Path.join(dir, "pen.log"),
        `10.0.0.3:${Path.join(dir, "web.log")}`
      ])
      assert.strictEqual(debug.code, 0)
      assert.strictEqual(debug.stdout, `10.0.0.3 - - [${apacheTime(BASE, 0)}] "GET / HTTP/1.0" 200 1\n`)
      assert.match(debug.stderr, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d: Read 1 fields from 10\.0\.0\.3: garbage\n$/)
      const bad = yield* Companions.run(nibmergelogs, ["-p", "x", "-j", "soon", "a:b"])
      assert.deepStrictEqual([bad.code, bad.stdout, bad.stderr], [
        1,
        "",
        "nibmergelogs: -j 'soon': expected a whole number\n"
      ])
    }))
})
