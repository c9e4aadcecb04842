/**
 * niblogd against penlogd: the same datagrams into both (nib's and pen's `-l host:port` records, web-server lines),
 * the same rewritten lines out; penlogd's signals, pid file, arguments and exit codes; and where niblogd differs on
 * purpose (penlogd lost data there), both sides shown. Without penlogd the side-by-side tests are skipped, visibly.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as AccessLog from "../../src/domain/AccessLog.ts"
import * as Nib from "../utils/Nib.ts"
import * as Pen from "../utils/Pen.ts"
import * as Poll from "../utils/Poll.ts"
import * as Companions from "./Companions.ts"

const penlogd = Companions.findPen("penlogd")
const pen = Pen.find()
const niblogd = Companions.nib("niblogd")
const missing = penlogd.command === undefined ? penlogd.why : undefined
if (missing !== undefined) console.warn(`companions: penlogd not found (${missing}): side-by-side tests SKIPPED`)
const sideBySide = (title: string) => missing === undefined ? title : `${title}: SKIPPED, ${missing}`

const bytes = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0))
const latin1 = (data: Uint8Array) => String.fromCharCode(...data)
const webLine = (request: string) => `127.0.0.1 - - [${Companions.APACHE_TIME}] "${request}" 200 2\n`

/** Both daemons, fed the same datagrams through a tee; each writes its own file. */
const pair = (flags: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const dir = yield* Companions.tempDir
    const nib = yield* Companions.logd(niblogd, Path.join(dir, "nib.log"), flags)
    const penSide = yield* Companions.logd(penlogd.command!, Path.join(dir, "pen.log"), flags)
    const relay = yield* Companions.tee(() => [nib.port, penSide.port])
    return { nib, pen: penSide, relay }
  })

/** Sends each datagram through the relay, in order, and waits until both daemons wrote `expected` lines. */
const feed = (
  daemons: Effect.Success<ReturnType<typeof pair>>,
  datagrams: ReadonlyArray<string>,
  expected: number
) =>
  Effect.gen(function*() {
    const sender = yield* Companions.udp()
    for (const datagram of datagrams) yield* Effect.promise(() => sender.send(datagram, daemons.relay.port))
    const nibLines = yield* Companions.waitForLines(daemons.nib, expected)
    const penLines = yield* Companions.waitForLines(daemons.pen, expected)
    return { nib: nibLines, pen: penLines }
  })

describe("niblogd with a balancer's -l host:port, side by side with penlogd", () => {
  for (const balancer of ["nib", "pen"] as const) {
    const skip = missing ?? (balancer === "pen" && pen.path === undefined ? pen.why : undefined)
    const title = `${balancer}'s records and a web server's lines give the same rewritten lines in both`
    it.live.skipIf(skip !== undefined)(
      skip === undefined ? title : `${title}: SKIPPED, ${skip}`,
      () =>
        Effect.gen(function*() {
          const daemons = yield* pair()
          const web = yield* Companions.webServer(
            daemons.relay.port,
            (requestLine, n) => Companions.records(daemons.relay.received, requestLine) >= n
          )
          const lb = balancer === "nib"
            ? yield* Nib.start(["-l", `127.0.0.1:${daemons.relay.port}`, "127.0.0.1:0", web.spec()])
            : yield* Effect.acquireRelease(
              Effect.promise(() => Pen.spawnPen(pen.path!, ["-l", `127.0.0.1:${daemons.relay.port}`], [web.spec()])),
              (proc) => Effect.promise(() => Nib.stop(proc))
            )
          const requests = [
            [2, "/a"],
            [3, "/b?x=1"],
            [4, "/a"],
            [5, `/${"long".repeat(20)}`]
          ] as const
          for (const [from, path] of requests) {
            assert.include(yield* Companions.request(lb.port, `127.0.0.${from}`, path), "ok")
          }
          // A line for a request the balancer never saw: written as it came.
          const stray = yield* Companions.udp()
          yield* Effect.promise(() => stray.send(webLine("GET /never HTTP/1.0"), daemons.relay.port))
          const expected = [
            ...requests.map(([from, path]) => `127.0.0.${from}${webLine(`GET ${path} HTTP/1.0`).slice(9, -1)}`),
            webLine("GET /never HTTP/1.0").slice(0, -1)
          ]
          const nibLines = yield* Companions.waitForLines(daemons.nib, expected.length)
          const penLines = yield* Companions.waitForLines(daemons.pen, expected.length)
          assert.deepStrictEqual(nibLines, expected)
          assert.deepStrictEqual(penLines, expected)
        })
    )
  }
})

describe("niblogd, datagram by datagram, side by side with penlogd", () => {
  it.live.skipIf(missing !== undefined)(
    sideBySide("records, matches by server address and request prefix, bogus records, unmatched lines"),
    () =>
      Effect.gen(function*() {
        const daemons = yield* pair()
        const datagrams = [
          latin1(AccessLog.datagram("1.1.1.1", "127.0.0.1", bytes("GET / HTTP/1.0\r\nHost: a\r\n\r\n"))),
          "+ 2.2.2.2 127.0.0.2 GET / HTTP/1.0\n",
          webLine("GET / HTTP/1.0"),
          "127.0.0.1 - - [x] \"GET /nomatch HTTP/1.0\" 200 5\n",
          "+ bad\n",
          "+ 3.3.3.3 1.2.3.4 \n",
          "x \"GET /\" y\n",
          "x \"\" empty\n",
          "+ 6.6.6.6 127.1 GET /short\n",
          "x \"GET /short\" y\n",
          "nospace\"GET /short\"\n",
          "+  8.8.8.8   127.0.0.1  GET /ws \n",
          "x \"GET /ws \" y\n",
          "+ 9.9.9.9 127.0.0.1 GET /crlf\r\n",
          "x \"GET /crlf\" y\n",
          "127.0.0.1 - - [x] \"GET /caf\xe9 HTTP/1.0\" 200 1\n",
          "+ 10.0.0.1 127.0.0.1 GET /caf\xe9 HTTP/1.0\n",
          "127.0.0.1 - - [x] \"GET /caf\xe9 HTTP/1.0\" 200 1\n"
        ]
        const { nib, pen: penLines } = yield* feed(daemons, datagrams, 10)
        assert.deepStrictEqual(nib, penLines)
        assert.deepStrictEqual(nib, [
          `1.1.1.1${webLine("GET / HTTP/1.0").slice(9, -1)}`,
          "127.0.0.1 - - [x] \"GET /nomatch HTTP/1.0\" 200 5",
          "1.1.1.1 \"GET /\" y",
          "1.1.1.1 \"\" empty",
          "6.6.6.6 \"GET /short\" y",
          "6.6.6.6 /short\"",
          "8.8.8.8 \"GET /ws \" y",
          "9.9.9.9 \"GET /crlf\" y",
          "127.0.0.1 - - [x] \"GET /caf\xe9 HTTP/1.0\" 200 1",
          "10.0.0.1 - - [x] \"GET /caf\xe9 HTTP/1.0\" 200 1"
        ])
        // penlogd's notes for bogus records, printed without -d: the same in both. They come through a pipe of their
        // own, which may be read after the log file was (seen under load): waited for, a bounded time.
        for (const proc of [daemons.nib, daemons.pen]) {
          yield* Nib.logged(proc, ": discarding bogus pen line + bad\n", 5_000)
          yield* Nib.logged(proc, ": discarding bogus pen line + 3.3.3.3 1.2.3.4 \n", 5_000)
        }
      })
  )

  it.live.skipIf(missing !== undefined)(
    sideBySide("differs on purpose: -n N searches N records (penlogd N-1), long requests match, no line is lost"),
    () =>
      Effect.gen(function*() {
        const daemons = yield* pair(["-n", "2"])
        const long = `GET /${"q".repeat(120)} HTTP/1.1`
        const datagrams = [
          "+ 1.1.1.1 127.0.0.1 GET /1\n",
          "+ 2.2.2.2 127.0.0.1 GET /2\n",
          "x \"GET /1\" y\n", // the older of the two records: penlogd never looks at it
          latin1(AccessLog.datagram("3.3.3.3", "127.0.0.1", bytes(`${long}\r\n\r\n`))),
          `x "${long}" y\n`, // penlogd matches no request of 100 characters or more
          "garbage without a request\n", // penlogd dropped it
          "noeol \"GET /nothing\"", // penlogd wrote it without a newline, glued to the next line
          "last \"GET /2\" y\n" // penlogd cannot see 2.2.2.2 any more: it is now the oldest of its two records
        ]
        const sender = yield* Companions.udp()
        for (const datagram of datagrams) yield* Effect.promise(() => sender.send(datagram, daemons.relay.port))
        const nib = yield* Companions.waitForLines(daemons.nib, 5)
        assert.deepStrictEqual(nib, [
          "1.1.1.1 \"GET /1\" y",
          `3.3.3.3 "${long}" y`,
          "garbage without a request",
          "noeol \"GET /nothing\"",
          "2.2.2.2 \"GET /2\" y"
        ])
        const penLines = yield* Companions.waitForLines(daemons.pen, 3)
        assert.deepStrictEqual(penLines, ["x \"GET /1\" y", `x "${long}" y`, "noeol \"GET /nothing\"last \"GET /2\" y"])
      })
  )
})

/** Starts a daemon with a pid file, feeds it, rotates its file with HUP, stops it with TERM; what was seen. */
const lifecycle = (command: Companions.Command) =>
  Effect.gen(function*() {
    const dir = yield* Companions.tempDir
    const file = Path.join(dir, "access.log")
    const pidFile = Path.join(dir, "logd.pid")
    const daemon = yield* Companions.logd(command, file, ["-p", pidFile])
    const pid = yield* Effect.promise(() => Nib.readPidFile(pidFile))
    const sender = yield* Companions.udp()
    const send = (text: string) => Effect.promise(() => sender.send(text, daemon.port))
    yield* send("+ 1.1.1.1 127.0.0.1 GET /1\n")
    yield* send("a \"GET /1\" b\n")
    const before = yield* Companions.waitForLines(daemon, 1)
    // logrotate: move the file aside, HUP, and the next lines go to a new file.
    Fs.renameSync(file, `${file}.1`)
    process.kill(daemon.pid, "SIGHUP")
    yield* Effect.promise(() => Poll.until(() => Fs.existsSync(file), 5_000))
    yield* send("c \"GET /1\" d\n")
    const after = yield* Companions.waitForLines(daemon, 1)
    const exit = yield* Effect.promise(() => Nib.stop(daemon))
    return {
      pid,
      before,
      rotated: Fs.readFileSync(`${file}.1`, "latin1"),
      after,
      exit,
      pidFileLeft: Fs.existsSync(pidFile),
      stderr: daemon.stderr()
    }
  })

describe("niblogd as a daemon, as penlogd", () => {
  it.live.skipIf(missing !== undefined)(
    sideBySide("pid file, HUP reopens the file, TERM exits 0 and removes the pid file"),
    () =>
      Effect.gen(function*() {
        for (const command of [niblogd, penlogd.command!]) {
          const result = yield* lifecycle(command)
          assert.match(result.pid, /^\d+$/)
          assert.deepStrictEqual(result.before, ["1.1.1.1 \"GET /1\" b"])
          assert.strictEqual(result.rotated, "1.1.1.1 \"GET /1\" b\n")
          assert.deepStrictEqual(result.after, ["1.1.1.1 \"GET /1\" d"])
          assert.deepStrictEqual(result.exit, { code: 0, signal: null })
          assert.isFalse(result.pidFileLeft)
          // penlogd's -d lines, with its timestamp: YYYY-MM-DD HH:MM:SS: message
          assert.match(result.stderr, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d: Logging to .*access\.log\n/)
          assert.match(result.stderr, /: Writing pid \d+ to .*logd\.pid\n/)
          assert.match(result.stderr, /: Enter main loop\n\n/)
          assert.match(result.stderr, /: Reopen log file .*access\.log\n/)
          assert.match(result.stderr, /: Exit main loop\n$/)
        }
      })
  )

  it.live("without -f it detaches: the parent exits 0 once the child receives, the child runs until TERM", () =>
    Effect.gen(function*() {
      const dir = yield* Companions.tempDir
      const file = Path.join(dir, "bg.log")
      const pidFile = Path.join(dir, "bg.pid")
      const port = yield* Effect.promise(Companions.freeUdpPort)
      const parent = yield* Companions.run(niblogd, ["-l", file, "-p", pidFile, String(port)])
      assert.deepStrictEqual([parent.code, parent.stdout, parent.stderr], [0, "", ""])
      const pid = Number(yield* Effect.promise(() => Nib.readPidFile(pidFile)))
      yield* Nib.killOnClose(pid)
      const sender = yield* Companions.udp()
      yield* Effect.promise(() => sender.send("+ 4.4.4.4 127.0.0.1 GET /bg\n", port))
      yield* Effect.promise(() => sender.send("w \"GET /bg\" z\n", port))
      yield* Effect.promise(() =>
        Poll.until(() => Fs.existsSync(file) && Fs.readFileSync(file, "latin1") !== "", 5_000)
      )
      assert.strictEqual(Fs.readFileSync(file, "latin1"), "4.4.4.4 \"GET /bg\" z\n")
      process.kill(pid, "SIGTERM")
      assert.isTrue(yield* Effect.promise(() => Nib.waitGone(pid)))
      assert.isFalse(Fs.existsSync(pidFile))
    }))

  it.live("without -f, a child that cannot start makes the parent fail with its message (penlogd's parent exited 0)", () =>
    Effect.gen(function*() {
      const busy = yield* Companions.udp("0.0.0.0")
      const result = yield* Companions.run(niblogd, [String(busy.port)])
      assert.strictEqual(result.code, 1)
      assert.strictEqual(result.stderr, `niblogd: cannot bind 0.0.0.0:${busy.port}: address already in use\n`)
    }))
})

describe("niblogd's arguments", () => {
  it.live("a bad argument: one line naming it, exit 1 (penlogd printed its usage and exited 0)", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["-x", "10000"], "niblogd: unknown option -x"],
        [["-f", "0"], "niblogd: port '0': expected a port, 1..65535"],
        [["-f", "99999"], "niblogd: port '99999': expected a port, 1..65535"],
        [["-f", "-n", "0", "10000"], "niblogd: -n '0': expected a whole number of at least 1"],
        [["-f", "-n", "abc", "10000"], "niblogd: -n 'abc': expected a whole number"],
        [["-f", "-n"], "niblogd: option -n needs a value"],
        [["-f", "1", "2"], "niblogd: unexpected argument '2' after the port"],
        [["-f", "-j", "/var/empty", "10000"], `niblogd: ${"-j (chroot) is not available"}`],
        [["-f", "-u", "no-such-user-here", "10000"], "niblogd: -u: no such user 'no-such-user-here'"],
        [["-f", "-l", "/nonexistent/dir/x.log", "10000"], "niblogd: -l: can't open logfile /nonexistent/dir/x.log"]
      ]
      const results = yield* Effect.forEach(cases, ([args]) => Companions.run(niblogd, args), { concurrency: 3 })
      results.forEach((result, i) => {
        const [args, message] = cases[i]!
        assert.strictEqual(result.code, 1, args.join(" "))
        assert.strictEqual(result.stdout, "")
        assert.match(result.stderr, /^niblogd: [^\n]*\n$/, args.join(" "))
        assert.isTrue(result.stderr.startsWith(message), `${result.stderr} should start with ${message}`)
      })
    }))

  it.live.skipIf(missing !== undefined)(
    sideBySide("no argument prints the usage on stdout and exits 0, as penlogd"),
    () =>
      Effect.gen(function*() {
        const nib = yield* Companions.run(niblogd, [])
        const penResult = yield* Companions.run(penlogd.command!, [])
        for (const result of [nib, penResult]) {
          assert.strictEqual(result.code, 0)
          assert.match(result.stdout, /^Usage:\n {2}\w+ \[options\] port\n\n/)
          for (const flag of ["-d", "-f", "-l file", "-b", "-n N", "-p file", "-u user"]) {
            assert.include(result.stdout, `  ${flag}`)
          }
        }
      })
  )
})
