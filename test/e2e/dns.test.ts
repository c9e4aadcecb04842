/**
 * UDP mode with the peers a DNS site has: Debian's `dnsmasq` as the servers and `dig` as the client (both installed by
 * .ci/run). Each dnsmasq answers `nib.test` with an address of its own, so the answer tells which server took the query.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Dnsmasq from "../utils/Dnsmasq.ts"
import * as Nib from "../utils/Nib.ts"

const which = (name: string, dirs: ReadonlyArray<string>) =>
  dirs.map((dir) => `${dir}/${name}`).find((path) => Fs.existsSync(path))

const DIRS = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
const dnsmasq = which("dnsmasq", DIRS)
const dig = which("dig", DIRS)
const missing = [dnsmasq === undefined ? "dnsmasq" : "", dig === undefined ? "dig" : ""].filter((s) => s !== "")
if (missing.length > 0) {
  console.warn(`test/e2e/dns.test.ts: SKIPPED, not installed: ${missing.join(", ")} (.ci/run installs them)`)
}

/** `dig @127.0.0.1 -p PORT nib.test +short`, one try of `seconds`: the answer, or "" (timeout, exit 9). */
const query = (port: number, seconds = 2) =>
  Effect.promise(() =>
    new Promise<{ readonly answer: string; readonly code: number | null }>((resolve) => {
      ChildProcess.execFile(
        dig!,
        ["@127.0.0.1", "-p", String(port), "nib.test", "A", "+short", "+tries=1", `+time=${seconds}`],
        { timeout: (seconds + 5) * 1000 },
        (error, stdout) => {
          const code = error === null ? 0 : typeof error.code === "number" ? error.code : null
          resolve({ answer: stdout.trim(), code })
        }
      )
    })
  )

/**
 * A dnsmasq on 127.0.0.1 answering `nib.test` with `address`, stopped (by its PID) with the scope. dnsmasq binds
 * its port for TCP as well as UDP: the port is one found free for both (a port merely free for UDP is often taken for
 * TCP on a busy machine), but it may be taken by the time dnsmasq binds it, and dnsmasq then exits; it is started
 * again on another port, at most 3 times.
 */
const dnsServer = (address: string) =>
  Effect.gen(function*() {
    for (let attempt = 1; attempt <= 3; attempt++) {
      const port = yield* Effect.promise(Dnsmasq.freeForBoth)
      if (port === undefined) continue
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.spawn(dnsmasq!, [
            "-k",
            "-C",
            "/dev/null",
            `--port=${port}`,
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            `--address=/nib.test/${address}`,
            "--pid-file=",
            ...(process.getuid?.() === 0 ? ["--user=root"] : [])
          ], { stdio: ["ignore", "ignore", "pipe"] })
        ),
        (spawned) => Effect.promise(() => Nib.stopChild(spawned))
      )
      let stderr = ""
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
      // Ready when it answers (bounded: 100 tries of at most 1 s, 50 ms apart: a query before dnsmasq listens is
      // refused at once), unless it exits first.
      for (let i = 0; i < 100 && child.exitCode === null; i++) {
        if ((yield* query(port, 1)).answer === address) return { port, child, spec: `127.0.0.1:${port}` }
        yield* Effect.sleep(50)
      }
      if (child.exitCode === null || attempt === 3) {
        return yield* Effect.die(new Error(`dnsmasq on port ${port} never answered: ${stderr}`))
      }
    }
    return yield* Effect.die(new Error("no port free for dnsmasq in 3 tries"))
  })

describe.skipIf(missing.length > 0)("DNS through nib -U (dnsmasq servers, dig client)", () => {
  it.live("dig gets its answer through nib, and a server taken down fails over without dig retrying", () =>
    Effect.gen(function*() {
      const one = yield* dnsServer("10.0.0.1")
      const two = yield* dnsServer("10.0.0.2")
      const lb = yield* Nib.start(["-U", "127.0.0.1:0", one.spec, two.spec])
      // Every query comes from 127.0.0.1 (one sticky client): pen's cursor gives server 1 first, and it sticks.
      assert.deepStrictEqual(yield* query(lb.port), { answer: "10.0.0.2", code: 0 })
      assert.deepStrictEqual(yield* query(lb.port), { answer: "10.0.0.2", code: 0 })
      // Server 1 goes down: its ICMP port-unreachable blacklists it, and the query goes to server 0 at once (one try).
      yield* Effect.promise(() => Nib.stopChild(two.child))
      assert.deepStrictEqual(yield* query(lb.port), { answer: "10.0.0.1", code: 0 })
      yield* Nib.logged(lb, "blacklisting server 1")
      assert.deepStrictEqual(yield* query(lb.port), { answer: "10.0.0.1", code: 0 })
    }))

  it.live("every server down: dig times out (exit 9), as with pen", () =>
    Effect.gen(function*() {
      const one = yield* dnsServer("10.0.0.1")
      const lb = yield* Nib.start(["-U", "127.0.0.1:0", one.spec])
      assert.deepStrictEqual(yield* query(lb.port), { answer: "10.0.0.1", code: 0 })
      yield* Effect.promise(() => Nib.stopChild(one.child))
      const down = yield* query(lb.port, 1)
      assert.strictEqual(down.code, 9)
      assert.include(down.answer, "no servers could be reached")
    }))
})
