/**
 * The admin service inside the process (the layer graph of `layers/Test.ts`, real sockets on 127.0.0.1): what an
 * active check's verdict looks like through the API, the metrics and the event stream (the test sets `down` as a check
 * would), the layer's start-up errors, and its scope: no socket outlives it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { makeAppTest } from "../../layers/Test.ts"
import { Admin } from "../../src/admin/Admin.ts"
import * as Address from "../../src/domain/Address.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"
import { ServerPool } from "../../src/services/ServerPool.ts"
import * as AdminClient from "../utils/Admin.ts"
import * as Backend from "../utils/Backend.ts"
import * as Poll from "../utils/Poll.ts"

const spec = (backend: Backend.Backend) => ServerSpec.make(Address.tcp("127.0.0.1", backend.port))

const settings = (servers: ReadonlyArray<Backend.Backend>, extra: { adminTokenFile?: string } = {}) => ({
  listen: Address.tcp("127.0.0.1", 0),
  servers: servers.map(spec),
  admin: { endpoint: Address.tcp("127.0.0.1", 0), text: "127.0.0.1:0" },
  ...extra
})

const baseOf = (admin: Admin["Service"]) => {
  const address = admin.address
  if (address === undefined || address._tag !== "Tcp") throw new Error("the admin endpoint does not listen")
  return `http://127.0.0.1:${address.port}`
}

/** An open `/api/events` stream: the updates received so far, and whether it ended. */
const events = (base: string) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly updates: () => ReadonlyArray<any>; readonly ended: () => boolean; close: () => void }>(
      (resume) => {
        let text = ""
        let ended = false
        const request = Http.get(`${base}/api/events`, (response) => {
          response.setEncoding("utf8")
          response.on("data", (chunk: string) => (text += chunk))
          response.on("close", () => (ended = true))
          resume(Effect.succeed({
            updates: () => text.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => JSON.parse(e.slice(6))),
            ended: () => ended,
            close: () => request.destroy()
          }))
        })
        request.on("error", () => (ended = true))
      }
    ),
    (stream) => Effect.sync(() => stream.close())
  )

const refused = (port: number) =>
  Effect.callback<boolean>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(false))
    })
    socket.once("error", () => resume(Effect.succeed(true)))
  })

describe("Admin", () => {
  it.live("without --admin it has no address and starts nothing", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const admin = yield* Admin.pipe(
        Effect.provide(makeAppTest({ listen: Address.tcp("127.0.0.1", 0), servers: [spec(a)] }))
      )
      assert.isUndefined(admin.address)
    }))

  it.live("a server down by its check is down in the API, in /metrics and in the event stream, then up again", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      yield* Effect.gen(function*() {
        const base = baseOf(yield* Admin)
        const pool = yield* ServerPool
        const stream = yield* events(base)
        const labels = { server: b.spec(), index: "1" }

        // What the active check does when server 1 fails it `--fall` times.
        yield* pool.setDown(1, true)
        const servers = (yield* AdminClient.call(base, "GET", "/api/servers")).json.servers
        assert.deepStrictEqual(servers.map((s: any) => [s.state, s.down]), [["up", false], ["down", true]])
        assert.strictEqual(AdminClient.valueOf(yield* AdminClient.scrape(base), "nib_server_up", labels), 0)
        // Down wins over blacklisted and draining: the check's verdict is what the operator must see.
        yield* pool.setDraining(1, true)
        yield* pool.blacklist(1, 30)
        assert.strictEqual((yield* AdminClient.call(base, "GET", "/api/servers/1")).json.state, "down")
        yield* pool.setDraining(1, false)
        yield* pool.blacklist(1, 0)

        const sawEvent = (to: string) =>
          stream.updates().some((u) => u.events.some((e: any) => e.kind === "state" && e.server === 1 && e.to === to))
        assert.isTrue(yield* Poll.waitUntil(() => sawEvent("down"), 5_000), "no 'down' event in the stream")
        const last = stream.updates().at(-1)
        assert.strictEqual(last.servers[1].state, "down")
        assert.isTrue(stream.updates()[0].reset)

        yield* pool.setDown(1, false)
        assert.isTrue(yield* Poll.waitUntil(() => sawEvent("up"), 5_000), "no 'up' event in the stream")
        assert.strictEqual(AdminClient.valueOf(yield* AdminClient.scrape(base), "nib_server_up", labels), 1)
      }).pipe(Effect.provide(makeAppTest(settings([a, b]))))
    }))

  it.live("a token file that cannot be read fails the layer with one line naming it", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const missing = Path.join(Os.tmpdir(), `nib-no-such-token-${process.pid}`)
      const error = yield* Effect.flip(Layer.build(makeAppTest(settings([a], { adminTokenFile: missing }))))
      assert.strictEqual(
        (error as { message: string }).message,
        `--admin-token-file ${missing}: cannot read it: ENOENT: no such file or directory`
      )
      assert.isFalse(Fs.existsSync(missing))
    }))

  it.live("closing its scope ends the event streams and closes the admin socket", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(makeAppTest(settings([a])), scope)
      const base = baseOf(Context.get(context, Admin))
      const port = Number(base.split(":")[2])
      const stream = yield* events(base)
      assert.isTrue(yield* Poll.waitUntil(() => stream.updates().length > 0), "no first update")
      assert.isFalse(yield* refused(port))

      yield* Scope.close(scope, Exit.void)
      assert.isTrue(yield* Poll.waitUntil(() => stream.ended()), "the event stream outlived the scope")
      assert.isTrue(yield* refused(port), "the admin port still accepts")
    }))
})
