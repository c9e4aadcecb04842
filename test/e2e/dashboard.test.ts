/**
 * The dashboard in a real browser: Debian's headless Chromium driven by playwright-core, against the built nib. It
 * shows the servers; a server taken down (stopped, then blacklisted by a failed connect) turns red and comes back
 * green without a reload; the actions ask for the token and send it (a wrong one is refused, the right one drains a
 * server and sets a weight); after SIGQUIT the header says draining.
 *
 * With NIB_DASHBOARD_SCREENSHOT=FILE the first test also sends traffic all along and saves the page, one server down,
 * to FILE (the README's docs/dashboard.png is made this way). Without Chromium the tests are skipped.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type * as Playwright from "playwright-core"
import * as Admin from "../utils/Admin.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Redis from "../utils/Redis.ts"

const CHROMIUM = "/usr/bin/chromium"
const hasChromium = Fs.existsSync(CHROMIUM)
if (!hasChromium) console.warn(`dashboard tests skipped: ${CHROMIUM} not found (apt-get install chromium)`)

const TOKEN = "dash-7e21"
const RED = "rgb(220, 38, 38)"
const GREEN = "rgb(22, 163, 74)"
const AMBER = "rgb(217, 119, 6)"
/** Every wait for the page is bounded by this. */
const WAIT = { timeout: 10_000 }

/** Headless Chromium (Debian's, never a downloaded one), closed with the scope. */
const browser = Effect.acquireRelease(
  Effect.promise(async () => {
    const { chromium } = await import("playwright-core")
    return chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync"
      ]
    })
  }),
  (b) => Effect.promise(() => b.close())
)

const page = (url: string) =>
  Effect.gen(function*() {
    const b = yield* browser
    const p = yield* Effect.promise(() => b.newPage({ viewport: { width: 1280, height: 820 } }))
    const errors: Array<string> = []
    p.on("pageerror", (error) => errors.push(error.message))
    let navigations = 0
    p.on("framenavigated", (frame) => {
      if (frame === p.mainFrame()) navigations++
    })
    yield* Effect.promise(() => p.goto(url))
    return { page: p, errors, navigations: () => navigations }
  })

const row = (index: number, state?: string) =>
  `tr[data-server="${index}"]${state === undefined ? "" : `[data-state="${state}"]`}`

const badgeColor = (p: Playwright.Page, index: number) =>
  Effect.promise(() =>
    p.locator(`${row(index)} .badge`).evaluate((el) => (globalThis as any).getComputedStyle(el).backgroundColor)
  )

const waitFor = (p: Playwright.Page, selector: string) =>
  Effect.promise(() => p.waitForSelector(selector, WAIT).then(() => undefined))

/**
 * Connections from a dozen clients, each sending up to 512 KiB and reading its echo, until the scope closes (which
 * waits for the round in flight).
 */
const traffic = (port: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const state = { running: true }
      const loop = (async () => {
        // At most 1000 rounds (a few minutes), should the scope never close.
        for (let round = 0; state.running && round < 1000; round++) {
          await Promise.all([2, 3, 5, 8, 13].map(async (n) => {
            const conn = await Client.connect(port, { from: Client.ip(n + (round % 3)) })
            const size = (n * 37_000 + round * 9_000) % (512 * 1024)
            await conn.firstLine()
            conn.socket.write(Buffer.alloc(size, 120))
            await conn.until(() => conn.received > size, 5_000)
            conn.close()
          }))
          await new Promise((resolve) => setTimeout(resolve, 150))
        }
      })()
      return () => {
        state.running = false
        return loop
      }
    }),
    (stop) => Effect.promise(stop)
  )

describe.skipIf(!hasChromium)("dashboard in Chromium", () => {
  it.live(
    "shows the servers; a server taken down turns red and comes back green, without a reload",
    () =>
      Effect.gen(function*() {
        const a = yield* Backend.identity("a")
        const dir = yield* Nib.tempDir
        Fs.writeFileSync(Path.join(dir, "token"), TOKEN)
        // b is stopped and started again on its port during the test: whichever is running is closed at the end.
        let b = yield* Effect.promise(() => Backend.listenIdentity("b", 0))
        yield* Effect.addFinalizer(() => Effect.promise(() => b.close()))
        const lb = yield* Nib.start([
          "-r",
          "-b",
          "2",
          "--admin",
          "127.0.0.1:0",
          "--admin-token-file",
          Path.join(dir, "token"),
          "127.0.0.1:0",
          a.spec(),
          b.spec()
        ])
        const base = Admin.baseUrl(lb)
        const screenshot = process.env["NIB_DASHBOARD_SCREENSHOT"]
        const { errors, navigations, page: p } = yield* page(`${base}/`)

        yield* waitFor(p, row(0, "up"))
        yield* waitFor(p, row(1, "up"))
        assert.strictEqual(yield* Effect.promise(() => p.locator(`${row(0)} td.address`).textContent()), a.spec())
        assert.strictEqual(yield* Effect.promise(() => p.locator(`${row(1)} td.address`).textContent()), b.spec())
        assert.strictEqual(yield* badgeColor(p, 1), GREEN)
        yield* waitFor(p, `#live[data-live="true"]`)
        yield* Effect.promise(() => p.evaluate(() => ((globalThis as any).nibMarker = "same page")))

        // For the README's picture only: traffic all along, so the graphs and the clients have something to show.
        if (screenshot !== undefined) {
          yield* traffic(lb.port)
          yield* Effect.sleep("20 seconds")
        }

        // b stops; of two connections (roundrobin), one is given to b, fails over to a, and b is blacklisted for 2 s.
        const port = b.port
        yield* Effect.promise(() => b.close())
        assert.deepStrictEqual(yield* Client.askAll(lb.port, [Client.ip(2), Client.ip(2)]), ["a", "a"])
        yield* waitFor(p, row(1, "blacklisted"))
        assert.strictEqual(yield* badgeColor(p, 1), RED)
        assert.strictEqual(yield* badgeColor(p, 0), GREEN)
        yield* waitFor(p, `#events li[data-kind="failover"]`)
        if (screenshot !== undefined) {
          yield* Effect.sleep("3 seconds")
          yield* Effect.promise(() => p.screenshot({ path: screenshot }))
        }

        // b comes back on its port; once the blacklist lapses the page shows it up again, by itself.
        b = yield* Effect.promise(() => Backend.listenIdentity("b", port))
        yield* waitFor(p, row(1, "up"))
        assert.strictEqual(yield* badgeColor(p, 1), GREEN)
        assert.strictEqual(yield* Effect.promise(() => p.evaluate(() => (globalThis as any).nibMarker)), "same page")
        assert.strictEqual(navigations(), 1, "the page was reloaded")
        assert.deepStrictEqual(errors, [])
      }),
    { timeout: 60_000 }
  )

  it.live("actions ask for the token: a wrong one is refused, the right one drains a server and sets a weight", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const dir = yield* Nib.tempDir
      Fs.writeFileSync(Path.join(dir, "token"), `${TOKEN}\n`)
      const lb = yield* Nib.start([
        "--admin",
        "127.0.0.1:0",
        "--admin-token-file",
        Path.join(dir, "token"),
        "127.0.0.1:0",
        a.spec(),
        b.spec()
      ])
      const base = Admin.baseUrl(lb)
      const { errors, page: p } = yield* page(`${base}/`)
      yield* waitFor(p, row(0, "up"))

      // No token yet: the page asks for it and sends nothing.
      yield* Effect.promise(() => p.click(`${row(0)} button[data-action="drain"]`))
      yield* waitFor(p, "#message.error")
      assert.include(yield* Effect.promise(() => p.textContent("#message")), "token")

      // A wrong token: nib answers 401 and the server is unchanged.
      yield* Effect.promise(() => p.fill("#token", "not-the-token"))
      yield* Effect.promise(() => p.click("#token-form button"))
      yield* Effect.promise(() => p.click(`${row(0)} button[data-action="drain"]`))
      yield* Effect.promise(() =>
        p.waitForFunction(
          () => (globalThis as any).document.querySelector("#message").textContent.includes("401"),
          WAIT
        )
      )
      assert.strictEqual((yield* Admin.call(base, "GET", "/api/servers/0")).json.state, "up")

      // The right one: server 0 drains (amber), and the page follows without a reload.
      yield* Effect.promise(() => p.fill("#token", TOKEN))
      yield* Effect.promise(() => p.click("#token-form button"))
      yield* Effect.promise(() => p.click(`${row(0)} button[data-action="drain"]`))
      yield* waitFor(p, row(0, "draining"))
      assert.strictEqual(yield* badgeColor(p, 0), AMBER)
      assert.isTrue((yield* Admin.call(base, "GET", "/api/servers/0")).json.draining)
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [Client.ip(2), Client.ip(3)]), ["b", "b"])

      yield* Effect.promise(() => p.fill(`${row(1)} input[data-action="weight-value"]`, "7"))
      yield* Effect.promise(() => p.click(`${row(1)} button[data-action="weight"]`))
      yield* Effect.promise(() =>
        p.waitForFunction(
          () => (globalThis as any).document.querySelector(`tr[data-server="1"] td.weight`).textContent === "7",
          WAIT
        )
      )
      assert.strictEqual((yield* Admin.call(base, "GET", "/api/servers/1")).json.weight, 7)

      // And back: Undrain.
      yield* Effect.promise(() => p.click(`${row(0)} button[data-action="drain"]`))
      yield* waitFor(p, row(0, "up"))
      assert.deepStrictEqual(errors, [])
    }))

  it.live("SIGQUIT: the header says draining (amber) while the connections finish", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["--admin", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      const { errors, page: p } = yield* page(`${Admin.baseUrl(lb)}/`)
      yield* waitFor(p, `#state[data-state="serving"]`)
      const held = yield* Client.hold(lb.port)
      assert.strictEqual(held.name, "a")

      lb.child.kill("SIGQUIT")
      yield* waitFor(p, `#state[data-state="draining"]`)
      assert.strictEqual(yield* Effect.promise(() => p.textContent("#state")), "draining")
      const color = yield* Effect.promise(() =>
        p.locator("#state").evaluate((el) => (globalThis as any).getComputedStyle(el).backgroundColor)
      )
      assert.strictEqual(color, AMBER)
      assert.deepStrictEqual(errors, [])
      held.conn.close()
      const exit = yield* Effect.promise(() => lb.exited).pipe(Effect.timeout("10 seconds"))
      assert.deepStrictEqual(exit, { code: 0, signal: null })
    }))

  it.live.skipIf(Redis.path === undefined)(
    "--peers: the Peers panel lists both nibs, and says so when Redis goes away",
    () =>
      Effect.gen(function*() {
        const port = yield* Backend.freePort
        const redis = yield* Redis.start(port)
        const a = yield* Backend.identity("a")
        const peers = ["--peers", `redis://127.0.0.1:${port}`, "--admin", "127.0.0.1:0", "127.0.0.1:0", a.spec()]
        const one = yield* Nib.start(peers)
        const two = yield* Nib.start(peers)
        const { errors, page: p } = yield* page(`${Admin.baseUrl(one)}/`)
        yield* waitFor(p, `#peers-where[data-up="true"]`)
        // Heartbeats every 2 s: both nibs are listed once each has written one.
        const ids = yield* Effect.promise(async () => {
          await p.waitForFunction(
            () => (globalThis as any).document.querySelectorAll("#peers tbody tr").length === 2,
            undefined,
            WAIT
          )
          return p.locator("#peers tbody tr").evaluateAll((rows) => rows.map((r) => r.textContent ?? ""))
        })
        assert.isTrue(ids.some((text) => text.includes(`${one.pid}`) && text.includes("(this nib)")), ids.join(" | "))
        assert.isTrue(ids.some((text) => text.includes(`${two.pid}`) && !text.includes("(this nib)")), ids.join(" | "))
        yield* Effect.promise(() => Nib.stop(redis.proc))
        yield* waitFor(p, `#peers-where[data-up="false"]`)
        assert.include(yield* Effect.promise(() => p.textContent("#peers-where")), "Redis unreachable")
        assert.deepStrictEqual(errors, [])
      })
  )

  it.live("read-only: no token box, no actions", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["--admin", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      const { page: p } = yield* page(`${Admin.baseUrl(lb)}/`)
      yield* waitFor(p, row(0, "up"))
      yield* waitFor(p, "body.read-only")
      assert.isFalse(yield* Effect.promise(() => p.isVisible("#token-form")))
      assert.isFalse(yield* Effect.promise(() => p.isVisible(`${row(0)} button[data-action="drain"]`)))
    }))
})
