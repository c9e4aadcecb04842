/**
 * Listen addresses and pen's argv through the real process: a Unix socket path (with a Unix socket server, and a stale
 * socket file replaced on restart), IPv6 in both spellings (`[::1]:0` and pen's `::1:0`), `--demo ADDRESS`, and
 * pen's getopt habits (clustered flags with an attached value, options after the positionals, the obsolete `-D`,
 * `-q` under 50, the harmless `-P`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Unix from "../utils/Unix.ts"

const { ip } = Client

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Runs the built nib with `argv` as given (no `-f` added) until `ready` matches its output; stopped at scope end. */
const startMatching = (argv: ReadonlyArray<string>, ready: RegExp) =>
  Effect.acquireRelease(
    Effect.promise(() => Nib.spawnReady(Nib.NODE, [Nib.NIB, ...argv], ready)),
    ({ proc }) => Effect.promise(() => Nib.stop(proc))
  )

/** Waits (at most `timeoutMs`) for a process to exit; "timeout" if it has not. */
const exitWithin = (proc: Nib.Proc, timeoutMs = 5_000) =>
  Effect.promise(() =>
    Promise.race([
      proc.exited,
      new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), timeoutMs))
    ])
  )

/** Whether ::1 can be bound here (no IPv6 loopback in some containers). */
const canBindV6 = await new Promise<boolean>((resolve) => {
  const server = Net.createServer()
  server.once("error", () => resolve(false))
  server.listen({ host: "::1", port: 0 }, () => server.close(() => resolve(true)))
})
if (!canBindV6) console.warn("test/e2e/listen.test.ts: ::1 cannot be bound on this machine: the IPv6 tests are SKIPPED")

describe("a Unix socket listen path", () => {
  it.live("serves through a Unix socket server; the path works again after a clean stop and after a SIGKILL", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const listen = Path.join(dir, "nib.sock")
      const upstream = Path.join(dir, "backend.sock")
      yield* Unix.identity("u", upstream)
      const ready = new RegExp(`nib: listening on ${escape(listen)} \\(pid (\\d+)(?:, \\d+ workers)?\\)`)
      const start = startMatching(["-f", listen, upstream], ready)

      // First run: traffic flows both ways (the identity server's name, then an echo).
      const first = yield* start
      assert.strictEqual(Number(first.match[1]), first.proc.pid)
      assert.isTrue(Fs.statSync(listen).isSocket())
      const conn = yield* Unix.opening(listen)
      assert.deepStrictEqual(yield* Effect.promise(() => conn.firstLine()), { _tag: "Line", line: "u" })
      conn.socket.write("ping\n")
      assert.isTrue(yield* Effect.promise(() => conn.until(() => conn.text() === "u\nping\n", 5_000)), conn.text())
      conn.close()
      const status = yield* Effect.promise(() => Nib.stop(first.proc))
      assert.deepStrictEqual(status, { code: 0, signal: null }, first.proc.stderr())

      // Second run on the same path, then killed so that it cannot clean up: the socket file stays, stale.
      const second = yield* start
      assert.strictEqual(yield* Unix.ask(listen), "u")
      second.proc.child.kill("SIGKILL")
      yield* Effect.promise(() => second.proc.exited)
      assert.isTrue(Fs.statSync(listen).isSocket(), "the killed nib's socket file is gone")
      const refused = yield* Unix.opening(listen)
      assert.strictEqual(yield* Effect.promise(() => refused.ended()), "error")
      assert.strictEqual(refused.error?.code, "ECONNREFUSED")

      // Third run: the stale file is replaced.
      yield* start
      assert.strictEqual(yield* Unix.ask(listen), "u")
    }))
})

describe("IPv6 listen addresses", () => {
  for (const form of ["[::1]:0", "::1:0"]) {
    it.live.skipIf(!canBindV6)(
      `${form} listens on ::1 and serves (skipped when ::1 cannot be bound)`,
      () =>
        Effect.gen(function*() {
          const a = yield* Backend.identity("a")
          const lb = yield* Nib.start([form, a.spec()])
          assert.strictEqual(lb.host, "::1")
          assert.include(lb.stderr(), Nib.listeningLine(`[::1]:${lb.port}`, lb.pid))
          for (let i = 0; i < 2; i++) {
            const conn = yield* Client.open(lb.port, { host: "::1", from: "::1" })
            assert.deepStrictEqual(yield* Effect.promise(() => conn.firstLine()), { _tag: "Line", line: "a" })
            conn.close()
          }
          // Not on IPv4: nothing listens on 127.0.0.1 at that port (unless something else took it).
          const v4 = yield* Client.opening(lb.port)
          assert.strictEqual(yield* Effect.promise(() => v4.ended()), "error")
        })
    )
  }
})

/** One HTTP GET on a fresh connection (no keep-alive agent); the status and the body. */
const httpGet = (port: number) =>
  Effect.promise(() =>
    new Promise<{ readonly status: number | undefined; readonly body: string }>((resolve, reject) => {
      const request = Http.get({ host: "127.0.0.1", port, path: "/", agent: false, timeout: 5_000 }, (response) => {
        let body = ""
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => (body += chunk))
        response.on("end", () => resolve({ status: response.statusCode, body }))
        response.on("error", reject)
      })
      request.on("timeout", () => request.destroy(new Error("no answer within 5 s")))
      request.on("error", reject)
    })
  )

describe("--demo ADDRESS", () => {
  it.live("prints its banner on stderr, answers from both built-in backends in turn, exits 0 on SIGINT", () =>
    Effect.gen(function*() {
      const banner = /nib demo: balancing 127\.0\.0\.1:(\d+) over two HTTP backends/
      const { match, proc } = yield* startMatching(["--demo", "127.0.0.1:0"], banner)
      assert.match(proc.stderr(), banner)
      const port = Number(match[1])
      assert.notStrictEqual(port, 0)

      const answers = [yield* httpGet(port), yield* httpGet(port)]
      assert.deepStrictEqual(answers.map((answer) => answer.status), [200, 200])
      const who = answers.map((answer) => /^hello from (backend \d)/.exec(answer.body)?.[1]).toSorted()
      assert.deepStrictEqual(who, ["backend 1", "backend 2"], answers.map((answer) => answer.body).join(""))

      proc.child.kill("SIGINT")
      assert.deepStrictEqual(yield* exitWithin(proc), { code: 0, signal: null }, proc.stderr())
    }))
})

/** Four connections from one client address: roundrobin alternates, the sticky default would not. */
const assertAlternates = (port: number, names: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const seen = yield* Client.askAll(port, [ip(2), ip(2), ip(2), ip(2)])
    assert.deepStrictEqual([...new Set(seen)].toSorted(), names.toSorted(), seen.join(","))
    assert.deepStrictEqual(seen, [seen[0], seen[1], seen[0], seen[1]], seen.join(","))
  })

describe("pen's argv through the process", () => {
  it.live("-rb1: clustered flags with an attached value", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start(["-rb1", "127.0.0.1:0", a.spec(), b.spec()])
      yield* assertAlternates(lb.port, ["a", "b"])
    }))

  it.live("options after the positionals: nib 127.0.0.1:0 a b -f -r -p FILE", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const pidPath = Path.join(dir, "nib.pid")
      // Should -f be missed, nib would detach: stop the detached child by the pid it wrote.
      yield* Effect.addFinalizer(() =>
        Effect.promise(async () => {
          const text = Fs.existsSync(pidPath) ? Fs.readFileSync(pidPath, "utf8") : ""
          if (/^\d+$/.test(text)) await Nib.stopPid(Number(text))
        })
      )
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const { match, proc } = yield* startMatching(
        ["127.0.0.1:0", a.spec(), b.spec(), "-f", "-r", "-p", pidPath],
        Nib.LISTENING
      )
      assert.strictEqual(Number(match[3]), proc.pid)
      assert.strictEqual(Fs.readFileSync(pidPath, "utf8"), String(proc.pid))
      yield* assertAlternates(Number(match[2]), ["a", "b"])
    }))

  it.live("-D prints pen's obsolete notice and still serves", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["-D", "127.0.0.1:0", a.spec()])
      assert.include(lb.stderr(), "Pen 0.26.0 removed the delayed forward feature,\nmaking the -D option obsolete")
      assert.strictEqual(yield* Client.ask(lb.port), "a")
    }))

  it.live("-q 10 prints \"listen_queue bumped to 50\" and still serves", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["-q", "10", "127.0.0.1:0", a.spec()])
      assert.include(lb.stderr(), "listen_queue bumped to 50")
      assert.strictEqual(yield* Client.ask(lb.port), "a")
    }))

  it.live("-P is accepted silently: nothing on stderr but the listening line, and it serves", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["-P", "127.0.0.1:0", a.spec()])
      assert.strictEqual(yield* Client.ask(lb.port), "a")
      assert.strictEqual(lb.stderr(), `${Nib.listeningLine(`127.0.0.1:${lb.port}`, lb.pid)}\n`)
      assert.strictEqual(lb.stdout(), "")
    }))
})
