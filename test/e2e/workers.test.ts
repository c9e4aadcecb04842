/**
 * `--workers N` through the real CLI: N worker threads serve one listen address, and pen's semantics stay global —
 * one sticky table (simultaneous first connections of a new client land on one server), one `-x`, one set of counters
 * and connection numbers — while the control plane stays on the main thread. A worker made to fail (the test hook
 * `workers crash N`, on with NIB_TEST_HOOKS=1) is logged, its connections are closed and counted, it is started again,
 * and the others serve on meanwhile.
 *
 * The rest of pen's behaviour with workers is the whole end-to-end and side-by-side suites, which vitest.config.ts
 * runs a second time with NIB_WORKERS=2.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as AdminClient from "../utils/Admin.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"

// The test hook `workers crash N` (nib started by this file's tests inherits the environment).
process.env["NIB_TEST_HOOKS"] = "1"

const isRoot = process.getuid?.() === 0
// pen (and nib) will not open a control port as root without -u.
const AS_USER: ReadonlyArray<string> = isRoot ? ["-u", "root"] : []

/** `servers` as [conn, sx, rx] per server. */
const servers = (target: string) =>
  Effect.map(Nibctl.ask(target, "servers"), (text) =>
    text.trim().split("\n").map((line) => {
      const m = /conn (\d+) .* sx (\d+) rx (\d+)/.exec(line)!
      return [Number(m[1]), Number(m[2]), Number(m[3])]
    }))

/** `workers` as [worker, conn, restarts, thread id] per worker (worker 0 is the main thread, thread 0). */
const workers = (target: string) =>
  Effect.map(Nibctl.ask(target, "workers"), (text) =>
    text.trim().split("\n").map((line) => {
      const m = /^worker (\d+) thread (-?\d+) conn (-?\d+) restarts (\d+)$/.exec(line)
      assert.isNotNull(m, `a workers line: ${JSON.stringify(line)}`)
      return [Number(m![1]), Number(m![3]), Number(m![4]), Number(m![2])]
    }))

/** Runs `read` until `done` holds of its answer (at most 10 s, every 100 ms); the last answer. */
const eventually = <A>(read: Effect.Effect<A>, done: (a: A) => boolean) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 10_000
    let last = yield* read
    while (!done(last) && Date.now() < deadline) {
      yield* Effect.sleep(100)
      last = yield* read
    }
    return last
  })

/** Opens `n` connections at once from `from`, each writing a line first: the backend names they get. */
const burst = (port: number, from: string, n: number) =>
  Effect.promise(() => Promise.all(Array.from({ length: n }, () => Client.askName(port, from, 5_000))))

describe("--workers", () => {
  it.live("2 workers: the start-up line says so, both serve, metrics and `workers` count each one's connections", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start([
        ...AS_USER,
        "--workers",
        "2",
        "-C",
        "127.0.0.1:0",
        "--admin",
        "0",
        "127.0.0.1:0",
        a.spec()
      ])
      assert.include(lb.stderr(), `nib: listening on 127.0.0.1:${lb.port} (pid ${lb.pid}, 2 workers)`)
      const target = Nibctl.targetOf(lb)
      // 24 connections held from distinct source ports: the kernel spreads them over both workers' sockets.
      const held = yield* Effect.forEach(Array.from({ length: 24 }, (_, i) => i), () => Client.hold(lb.port))
      assert.isTrue(held.every((h) => h.name === "a"))
      const each = yield* workers(target)
      assert.deepStrictEqual(each.map(([w]) => w), [0, 1])
      assert.strictEqual(each.reduce((sum, [, conn]) => sum + conn!, 0), 24)
      assert.isTrue(each.every(([, conn]) => conn! > 0), `both workers serve: ${JSON.stringify(each)}`)
      // One set of figures for the balancer: pen's `servers` and /metrics, summed over the workers.
      assert.strictEqual((yield* servers(target))[0]![0], 24)
      const base = AdminClient.baseUrl(lb)
      const metrics = yield* AdminClient.scrape(base)
      assert.strictEqual(AdminClient.valueOf(metrics, "nib_workers"), 2)
      assert.strictEqual(
        AdminClient.valueOf(metrics, "nib_worker_connections", { worker: "0" }) +
          AdminClient.valueOf(metrics, "nib_worker_connections", { worker: "1" }),
        24
      )
      assert.strictEqual(AdminClient.valueOf(metrics, "nib_connections_active"), 24)
      // pen's connection numbers are one table: 24 distinct slots, 0..23.
      const page = yield* Nibctl.ask(target, "status")
      assert.include(page, "Number of connections: 500 max, 24 used")
    }))

  it.live(
    "4 workers, 50 new clients: 8 simultaneous first connections of each land on one server",
    () =>
      Effect.gen(function*() {
        const backends = yield* Effect.forEach(["a", "b", "c", "d"], (name) => Backend.identity(name))
        const lb = yield* Nib.start(["--workers", "4", "127.0.0.1:0", ...backends.map((b) => b.spec())])
        for (let client = 0; client < 50; client++) {
          const from = `127.0.1.${client + 1}`
          const names = yield* burst(lb.port, from, 8)
          assert.strictEqual(new Set(names).size, 1, `client ${from} got ${names.join(" ")}`)
          assert.notInclude(names, Client.CLOSED)
        }
      }),
    60_000
  )

  it.live("-x is one limit for all workers: with -x 2 a third client waits until one of the first two ends", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["--workers", "2", "-x", "2", "127.0.0.1:0", a.spec()])
      const first = yield* Client.hold(lb.port, Client.ip(2))
      const second = yield* Client.hold(lb.port, Client.ip(3))
      assert.deepStrictEqual([first.name, second.name], ["a", "a"])
      // Several tries from new source ports: whichever worker's socket they reach, the limit holds.
      for (let i = 0; i < 4; i++) {
        const third = yield* Client.opening(lb.port, { from: Client.ip(4 + i) })
        const line = yield* Effect.promise(() => third.firstLine(300))
        assert.strictEqual(line._tag, "Timeout", `client ${i} was served past -x 2`)
        third.close()
      }
      const waiting = yield* Client.opening(lb.port, { from: Client.ip(9) })
      assert.strictEqual((yield* Effect.promise(() => waiting.firstLine(300)))._tag, "Timeout")
      first.conn.close()
      const served = yield* Effect.promise(() => waiting.firstLine(5_000))
      assert.deepStrictEqual(served, { _tag: "Line", line: "a" })
    }))

  it.live("a worker thread that fails is logged, its connections closed and counted, and started again; the others serve on", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start([...AS_USER, "--workers", "2", "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      const target = Nibctl.targetOf(lb)
      const held = yield* Effect.forEach(Array.from({ length: 16 }, (_, i) => i), () => Client.hold(lb.port))
      const before = yield* workers(target)
      const onOne = before[1]![1]!
      assert.isTrue(onOne > 0 && before[0]![1]! > 0, `both threads hold some: ${JSON.stringify(before)}`)
      // The main thread is worker 0, and cannot be made to fail.
      assert.strictEqual(yield* Nibctl.ask(target, "workers crash 0"), "workers crash: no worker thread 0\n")

      assert.strictEqual(yield* Nibctl.ask(target, "workers crash 1"), "")
      // Worker 1's clients are cut; the main thread's stay up.
      assert.isTrue(
        yield* Poll.waitUntil(() => held.filter((h) => h.conn.ending !== undefined).length === onOne, 5_000),
        "worker 1's connections were not closed"
      )
      yield* Nib.logged(
        lb,
        `worker 1 died (exit code 1: Error: test hook: worker 1 made to fail); ${onOne} connection${
          onOne === 1 ? "" : "s"
        } closed; starting it again`
      )
      // New clients are served throughout, by whichever thread their connection reaches.
      for (let i = 0; i < 10; i++) assert.strictEqual(yield* Client.ask(lb.port), "a")
      // Started again, with one restart; the shared counts no longer hold the dead worker's connections.
      const after = yield* eventually(workers(target), (all) => all[1]![2] === 1 && all[1]![3]! > 0)
      assert.deepStrictEqual(after.map(([w, , restarts]) => [w, restarts]), [[0, 0], [1, 1]], JSON.stringify(after))
      const live = 16 - onOne
      assert.strictEqual(after.reduce((sum, [, conn]) => sum + conn!, 0), live)
      assert.strictEqual((yield* servers(target))[0]![0], live)
      // The restarted worker serves again: enough new connections reach both sockets.
      const more = yield* Effect.forEach(Array.from({ length: 16 }, (_, i) => i), () => Client.hold(lb.port))
      assert.isTrue(more.every((h) => h.name === "a"))
      const spread = yield* workers(target)
      assert.isTrue(spread[1]![1]! > 0, `the restarted worker serves: ${JSON.stringify(spread)}`)
      held.forEach((h) => h.conn.close())
    }))
})
