/**
 * The admin endpoint (`--admin`) through the real process: `/metrics` scraped, parsed as Prometheus' text format and
 * checked against the traffic the test sent and the failure it caused; the JSON API's reads; its changes behind the
 * token (none, a wrong one, the right one, read-only without a token file); requests that do not decode (400 naming
 * the field); the token file checked at start-up; shutdown with a dashboard's event stream open; and nothing of it
 * without `--admin`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import * as Admin from "../utils/Admin.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Poll from "../utils/Poll.ts"

const TOKEN = "tok-3f9a1c"

/** One connection through the balancer: reads the backend's name, sends `payload`, waits for its echo, closes. */
const exchange = (port: number, payload: string) =>
  Effect.promise(async () => {
    const conn = await Client.connect(port)
    try {
      const first = await conn.firstLine()
      if (first._tag !== "Line") throw new Error(`no name line: ${JSON.stringify(first)}`)
      conn.socket.write(payload)
      const expected = first.line.length + 1 + payload.length
      if (!(await conn.until(() => conn.received >= expected, 5_000))) throw new Error("the echo did not come back")
      return first.line
    } finally {
      conn.close()
    }
  })

/** Scrapes until `ready` holds (at most 5 s), and returns the last scrape: the assertions that follow say what failed. */
const scrapeUntil = (base: string, ready: (scrape: Admin.Scrape) => boolean) =>
  Effect.gen(function*() {
    let last = yield* Admin.scrape(base)
    const deadline = Date.now() + 5_000
    while (!ready(last) && Date.now() < deadline) {
      yield* Effect.sleep("50 millis")
      last = yield* Admin.scrape(base)
    }
    return last
  })

const tokenFile = (content: string) =>
  Effect.map(Nib.tempDir, (dir) => {
    const file = Path.join(dir, "token")
    Fs.writeFileSync(file, content)
    return file
  })

describe("admin endpoint: /metrics", () => {
  it.live("counts what the test sent: connections, bytes per server, then a failover and a server down", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start(["-r", "--admin", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const base = Admin.baseUrl(lb)
      const server = { a: { server: a.spec(), index: "0" }, b: { server: b.spec(), index: "1" } }

      // Six connections with payloads of different sizes; the roundrobin sends them to a and b in turn.
      const sent = { a: 0, b: 0 }
      const received = { a: 0, b: 0 }
      for (const size of [10, 200, 3_000, 45_000, 7, 1]) {
        const payload = "x".repeat(size)
        const name = (yield* exchange(lb.port, payload)) as "a" | "b"
        sent[name] += size
        received[name] += name.length + 1 + size
      }
      assert.isAbove(sent.a, 0)
      assert.isAbove(sent.b, 0)

      const m = yield* scrapeUntil(base, (s) =>
        Admin.valueOf(s, "nib_connections_active") === 0 &&
        Admin.valueOf(s, "nib_server_bytes_received_total", server.b) === received.b &&
        Admin.valueOf(s, "nib_server_bytes_received_total", server.a) === received.a)
      assert.strictEqual(Admin.valueOf(m, "nib_connections_accepted_total"), 6)
      assert.strictEqual(Admin.valueOf(m, "nib_connections_active"), 0)
      assert.strictEqual(Admin.valueOf(m, "nib_server_bytes_sent_total", server.a), sent.a)
      assert.strictEqual(Admin.valueOf(m, "nib_server_bytes_sent_total", server.b), sent.b)
      assert.strictEqual(Admin.valueOf(m, "nib_server_bytes_received_total", server.a), received.a)
      assert.strictEqual(Admin.valueOf(m, "nib_server_bytes_received_total", server.b), received.b)
      assert.strictEqual(Admin.valueOf(m, "nib_server_connections", server.a), 0)
      assert.strictEqual(Admin.valueOf(m, "nib_server_up", server.a), 1)
      assert.strictEqual(Admin.valueOf(m, "nib_server_up", server.b), 1)
      assert.strictEqual(Admin.valueOf(m, "nib_server_draining", server.b), 0)
      assert.strictEqual(Admin.valueOf(m, "nib_failovers_total"), 0)
      // Every connection came from 127.0.0.1: one client in the sticky table, of pen's 2048 slots.
      assert.strictEqual(Admin.valueOf(m, "nib_client_table_entries"), 1)
      assert.strictEqual(Admin.valueOf(m, "nib_client_table_slots"), 2048)
      assert.isAbove(Admin.valueOf(m, "nib_relay_buffer_bytes"), 0)

      // Prometheus' conventions: counters end in _total, every family has one TYPE and a HELP, labels as given.
      for (const [name, type] of m.types) {
        assert.strictEqual(type, name.endsWith("_total") ? "counter" : "gauge", name)
        assert.isTrue((m.help.get(name) ?? "").length > 0, `HELP for ${name}`)
        assert.isTrue(name.startsWith("nib_"), name)
      }
      for (const sample of m.samples) {
        assert.isTrue(m.types.has(sample.name), `TYPE for ${sample.name}`)
        if (sample.name.startsWith("nib_server_")) {
          assert.deepStrictEqual(Object.keys(sample.labels).toSorted(), ["index", "server"], sample.name)
        }
      }

      // b stops: the next connection it is given fails over to a, b is blacklisted and counted down.
      yield* Effect.promise(b.close)
      const names = [yield* exchange(lb.port, "ping"), yield* exchange(lb.port, "ping")]
      assert.deepStrictEqual(names, ["a", "a"])
      const after = yield* scrapeUntil(base, (s) => Admin.valueOf(s, "nib_failovers_total") === 1)
      assert.strictEqual(Admin.valueOf(after, "nib_failovers_total"), 1)
      assert.strictEqual(Admin.valueOf(after, "nib_blacklistings_total"), 1)
      assert.strictEqual(Admin.valueOf(after, "nib_connections_accepted_total"), 8)
      assert.strictEqual(Admin.valueOf(after, "nib_server_up", server.b), 0)
      assert.strictEqual(Admin.valueOf(after, "nib_server_blacklisted", server.b), 1)
      assert.strictEqual(Admin.valueOf(after, "nib_server_up", server.a), 1)
    }))
})

describe("admin endpoint: the JSON API", () => {
  it.live("reads servers, clients, connections and settings without a token", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const file = yield* tokenFile(`${TOKEN}\n`)
      const lb = yield* Nib.start([
        "--admin",
        "127.0.0.1:0",
        "--admin-token-file",
        file,
        "-c",
        "100",
        "127.0.0.1:0",
        a.spec(),
        b.spec(":10:20:3")
      ])
      const base = Admin.baseUrl(lb)
      const held = yield* Client.hold(lb.port, Client.ip(2))

      const servers = yield* Admin.call(base, "GET", "/api/servers")
      assert.strictEqual(servers.status, 200)
      assert.deepStrictEqual(
        servers.json.servers.map((s: any) => [s.index, s.address, s.state, s.softLimit, s.hardLimit, s.weight]),
        [[0, a.spec(), "up", 0, 0, 0], [1, b.spec(), "up", 10, 20, 3]]
      )
      assert.strictEqual(servers.json.emergency, null)
      const held1 = servers.json.servers.find((s: any) => s.address === (held.name === "a" ? a.spec() : b.spec()))
      assert.strictEqual(held1.connections, 1)

      const clients = yield* Admin.call(base, "GET", "/api/clients")
      assert.strictEqual(clients.json.total, 1)
      assert.strictEqual(clients.json.capacity, 100)
      assert.strictEqual(clients.json.clients[0].address, Client.ip(2))
      assert.strictEqual(clients.json.clients[0].connects, 1)

      const connections = yield* Admin.call(base, "GET", "/api/connections")
      assert.strictEqual(connections.json.connections.length, 1)
      assert.strictEqual(connections.json.connections[0].client, Client.ip(2))
      assert.strictEqual(connections.json.connections[0].state, "relaying")

      const settings = yield* Admin.call(base, "GET", "/api/settings")
      assert.strictEqual(settings.json.listen, `127.0.0.1:${lb.port}`)
      assert.strictEqual(settings.json.mode, "tcp")
      assert.strictEqual(settings.json.clientsMax, 100)
      assert.strictEqual(settings.json.readOnly, false)

      assert.strictEqual((yield* Admin.call(base, "GET", "/api/nothing")).status, 404)
      const page = yield* Admin.call(base, "GET", "/")
      assert.strictEqual(page.status, 200)
      assert.include(page.headers.get("content-type") ?? "", "text/html")
      assert.include(page.headers.get("content-security-policy") ?? "", "default-src 'none'")
    }))

  it.live("changes need the token: none or a wrong one is 401, the right one changes the server", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const file = yield* tokenFile(`${TOKEN}\n`)
      const lb = yield* Nib.start([
        "-r",
        "--admin",
        "127.0.0.1:0",
        "--admin-token-file",
        file,
        "127.0.0.1:0",
        a.spec(),
        b.spec()
      ])
      const base = Admin.baseUrl(lb)

      const none = yield* Admin.call(base, "POST", "/api/servers/0/drain")
      assert.strictEqual(none.status, 401)
      assert.strictEqual(none.headers.get("www-authenticate"), "Bearer")
      assert.match(none.json.error, /Bearer/)
      const wrong = yield* Admin.call(base, "POST", "/api/servers/0/drain", { token: "not-it" })
      assert.strictEqual(wrong.status, 401)
      assert.strictEqual(wrong.json.error, "wrong token")
      // The token's prefix is not the token either.
      assert.strictEqual(
        (yield* Admin.call(base, "POST", "/api/servers/0/drain", { token: TOKEN.slice(0, 5) })).status,
        401
      )
      assert.isFalse((yield* Admin.call(base, "GET", "/api/servers/0")).json.draining, "a refused change changed it")

      const drained = yield* Admin.call(base, "POST", "/api/servers/0/drain", { token: TOKEN })
      assert.strictEqual(drained.status, 200)
      assert.strictEqual(drained.json.state, "draining")
      // A drained server takes no new client: roundrobin now gives every one to b.
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [Client.ip(2), Client.ip(3), Client.ip(4)]), ["b", "b", "b"])
      const back = yield* Admin.call(base, "POST", "/api/servers/0/drain", { token: TOKEN, body: { draining: false } })
      assert.strictEqual(back.json.state, "up")

      const patched = yield* Admin.call(base, "PATCH", "/api/servers/1", {
        token: TOKEN,
        body: { weight: 5, max: 10, hard: 12 }
      })
      assert.strictEqual(patched.status, 200)
      assert.deepStrictEqual([patched.json.weight, patched.json.softLimit, patched.json.hardLimit], [5, 10, 12])

      const blacklisted = yield* Admin.call(base, "POST", "/api/servers/1/blacklist", {
        token: TOKEN,
        body: { seconds: 60 }
      })
      assert.strictEqual(blacklisted.json.state, "blacklisted")
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [Client.ip(5), Client.ip(6)]), ["a", "a"])
      const lifted = yield* Admin.call(base, "POST", "/api/servers/1/blacklist", { token: TOKEN, body: { seconds: 0 } })
      assert.strictEqual(lifted.json.state, "up")
    }))

  it.live("a request that does not decode is a 400 naming the field; an unknown server a 404", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const file = yield* tokenFile(TOKEN)
      const lb = yield* Nib.start(["--admin", "127.0.0.1:0", "--admin-token-file", file, "127.0.0.1:0", a.spec()])
      const base = Admin.baseUrl(lb)
      const patch = (path: string, body: unknown) => Admin.call(base, "PATCH", path, { token: TOKEN, body })

      const cases: ReadonlyArray<readonly [Effect.Effect<Admin.Reply>, number, string | undefined]> = [
        [patch("/api/servers/0", { weight: -1 }), 400, "weight"],
        [patch("/api/servers/0", { weight: "heavy" }), 400, "weight"],
        [patch("/api/servers/0", { port: 70000 }), 400, "port"],
        [patch("/api/servers/0", { wieght: 2 }), 400, "wieght"],
        [patch("/api/servers/x", { weight: 1 }), 400, "index"],
        [patch("/api/servers/0", {}), 400, undefined],
        [patch("/api/servers/9", { weight: 1 }), 404, "index"],
        [patch("/api/servers/0", { address: "nonexistent.invalid" }), 422, "address"],
        [Admin.call(base, "PATCH", "/api/servers/0", { token: TOKEN, raw: "{weight" }), 400, undefined],
        [
          Admin.call(base, "POST", "/api/servers/0/blacklist", { token: TOKEN, body: { seconds: "ten" } }),
          400,
          "seconds"
        ],
        [
          Admin.call(base, "POST", "/api/servers/0/drain", { token: TOKEN, body: { draining: "yes" } }),
          400,
          "draining"
        ],
        [Admin.call(base, "GET", "/api/clients?limit=0"), 400, "limit"],
        [Admin.call(base, "GET", "/api/servers/-1"), 400, "index"]
      ]
      for (const [request, status, field] of cases) {
        const reply = yield* request
        assert.strictEqual(reply.status, status, reply.text)
        assert.strictEqual(reply.json.field, field, reply.text)
        assert.isString(reply.json.error)
        if (field !== undefined && status === 400) assert.include(reply.json.error, field)
      }
      // Nothing was changed by the refused requests.
      const server = (yield* Admin.call(base, "GET", "/api/servers/0")).json
      assert.deepStrictEqual([server.weight, server.address, server.state], [0, a.spec(), "up"])
    }))

  it.live("read-only without --admin-token-file: reads work, every change is 403", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["--admin", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      assert.match(
        lb.stderr(),
        /nib: admin endpoint on http:\/\/127\.0\.0\.1:\d+\/ \(read-only: no --admin-token-file\)/
      )
      const base = Admin.baseUrl(lb)
      assert.strictEqual((yield* Admin.call(base, "GET", "/api/servers")).status, 200)
      assert.isTrue((yield* Admin.call(base, "GET", "/api/settings")).json.readOnly)
      for (
        const [method, path, body] of [
          ["POST", "/api/servers/0/drain", {}],
          ["POST", "/api/servers/0/blacklist", { seconds: 5 }],
          ["PATCH", "/api/servers/0", { weight: 2 }]
        ] as const
      ) {
        // Even with a token: there is none to match.
        const reply = yield* Admin.call(base, method, path, { token: TOKEN, body })
        assert.strictEqual(reply.status, 403, `${method} ${path}`)
        assert.match(reply.json.error, /read-only/)
      }
      assert.strictEqual((yield* Admin.call(base, "GET", "/api/servers/0")).json.state, "up")
    }))
})

describe("admin endpoint: start-up and shutdown", () => {
  it.live("a missing or empty token file stops nib at start-up with one line naming the file", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const free = yield* Backend.freePort
      const empty = Path.join(dir, "empty")
      Fs.writeFileSync(empty, "  \n")
      const missing = Path.join(dir, "missing")
      for (const [file, why] of [[missing, /no such file/], [empty, /empty/]] as const) {
        const run = yield* Nib.run([
          "-f",
          "--admin",
          "127.0.0.1:0",
          "--admin-token-file",
          file,
          "127.0.0.1:0",
          `127.0.0.1:${free}`
        ])
        assert.strictEqual(run.code, 1, run.stderr)
        const lines = run.stderr.split("\n").filter((line) => line !== "")
        assert.strictEqual(lines.length, 1, run.stderr)
        assert.include(lines[0], `nib: --admin-token-file ${file}`)
        assert.match(lines[0]!, why)
      }
    }))

  it.live("an admin address already in use stops nib at start-up with one line", () =>
    Effect.gen(function*() {
      const taken = yield* Backend.identity("taken")
      const free = yield* Backend.freePort
      const run = yield* Nib.run(["-f", "--admin", taken.spec(), "127.0.0.1:0", `127.0.0.1:${free}`])
      assert.strictEqual(run.code, 1, run.stderr)
      assert.match(run.stderr, new RegExp(`^nib: --admin '${taken.spec()}': cannot listen: .*EADDRINUSE.*\\n$`))
    }))

  it.live("SIGTERM with a dashboard's event stream open: the stream ends and nib exits 0", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Effect.promise(() => Nib.spawnNib(["--admin", "127.0.0.1:0", "127.0.0.1:0", a.spec()]))
      yield* Effect.addFinalizer(() => Effect.promise(() => Nib.stop(lb)))
      const base = Admin.baseUrl(lb)
      const stream = yield* Effect.promise(() =>
        new Promise<{ data: () => string; ended: () => boolean }>((resolve, reject) => {
          const request = Http.get(`${base}/api/events`, (response) => {
            let data = ""
            let ended = false
            response.setEncoding("utf8")
            response.on("data", (chunk: string) => {
              data += chunk
            })
            response.on("end", () => (ended = true))
            response.on("error", () => (ended = true))
            response.on("close", () => (ended = true))
            assert.strictEqual(response.headers["content-type"], "text/event-stream")
            resolve({ data: () => data, ended: () => ended })
          })
          request.on("error", reject)
        })
      )
      // The first event comes at once, with the servers and the whole history.
      assert.isTrue(yield* Poll.waitUntil(() => stream.data().includes("\n\n")), "no first event")
      const first = JSON.parse(stream.data().slice("data: ".length, stream.data().indexOf("\n\n")))
      assert.isTrue(first.reset)
      assert.strictEqual(first.servers[0].address, a.spec())

      const exit = yield* Effect.promise(() => Nib.stop(lb))
      assert.deepStrictEqual(exit, { code: 0, signal: null })
      assert.isTrue(yield* Poll.waitUntil(() => stream.ended()), "the event stream outlived nib")
    }))

  it.live("without --admin nothing of it starts", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["127.0.0.1:0", a.spec()])
      assert.notInclude(lb.stderr(), "admin")
      assert.strictEqual(yield* Client.ask(lb.port), "a")
    }))
})
