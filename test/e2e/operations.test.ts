/**
 * Operating the real process (pen-reference.md §6.2, §6.4, §7, §8, §14): the `-w` status page on SIGUSR1 and through
 * `status`, the text statistics on stderr without `-w`, the request log (`-l FILE` with HUP rotation, `-l host:port`
 * as datagrams), the `-F` file at start-up and on HUP, `include` and `write`, the connection table (`connection`,
 * `socket`, `close`), and the pid file and `-j`.
 *
 * The built CLI runs with `-f` (`npm run -s build` first); nibctl drives the control port. Backends answer each
 * connection with their name and then echo (test/utils/Backend.ts); distinct clients are distinct 127.0.0.N source
 * addresses. Every wait is bounded; no assertion is about timing (a Unix time is only checked to lie within the
 * test's own window).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"

const { ip } = Client

/** The built client. */

/** Whether this process runs as root (the tests do, on this machine and in CI). */
const isRoot = process.getuid?.() === 0
/** As root, nib opens the control port only with `-u` (pen's rule); `-u root` is the documented escape hatch. */
const AS_USER: ReadonlyArray<string> = isRoot ? ["-u", "root"] : []

/** pen's `mode` replies. */
const MODE_DEFAULT = "no hash no roundrobin no stubborn no weight no prio\n"
const MODE_ROUNDROBIN = "no hash roundrobin no stubborn no weight no prio\n"

/** pen's local time stamp, `YYYY-MM-DD HH:MM:SS`. */
const STAMP = String.raw`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`

/** Escapes `text` for use inside a RegExp. */
const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

// ---------------------------------------------------------------------------------------------------------------
// nibctl

/** nibctl's reply to `line` through `lb`'s control port. */
const ctlPromise = (lb: Nib.Balancer, line: string): Promise<string> => Nibctl.askPromise(Nibctl.targetOf(lb), line)
const ctl = (lb: Nib.Balancer, line: string) => Effect.promise(() => ctlPromise(lb, line))

/** pen's `servers` reply as records. */
const serversOf = (reply: string) =>
  reply.split("\n").filter((l) => l !== "").map((l) => {
    const match =
      /^(\d+) addr (\S+) port (\d+) conn (\d+) max (\d+) hard (\d+) weight (\d+) prio (\d+) sx (\d+) rx (\d+)$/
        .exec(l)
    assert.isNotNull(match, `not a servers line: ${JSON.stringify(l)}`)
    const [, index, addr, port, conn, max, hard] = match!
    return { index: Number(index), addr, port: Number(port), conn: Number(conn), max: Number(max), hard: Number(hard) }
  })

/** Polls `servers` (at most `timeoutMs`) until `condition` holds; the last reply. */
const pollServers = (lb: Nib.Balancer, condition: (reply: string) => boolean, timeoutMs = 10_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const reply = await ctlPromise(lb, "servers")
      if (condition(reply) || Date.now() > deadline) return reply
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// The HTML status page, read as a pen script would: with regular expressions.

interface Table {
  readonly header: ReadonlyArray<string>
  /** Each row as column name → cell text. */
  readonly rows: ReadonlyArray<Readonly<Record<string, string>>>
}

interface Page {
  readonly title: string
  readonly time: string
  readonly servers: number
  readonly current: number
  readonly clientsMax: number
  readonly connectionsMax: number
  readonly connectionsUsed: number
  readonly serverTable: Table
  readonly clientTable: Table
  readonly connectionTable: Table
}

const SERVER_COLUMNS = [
  "server",
  "address",
  "status",
  "port",
  "connections",
  "max soft",
  "max hard",
  "sent",
  "received",
  "weight",
  "prio"
]
const CLIENT_COLUMNS = ["client", "address", "age(secs)", "last server", "connects", "sent", "received"]
const CONNECTION_COLUMNS = ["connection", "downfd", "upfd", "pending data down", "pending data up", "client", "server"]

/** The cells of one `<tr>`: green header cells or plain ones, as `header` says. */
const cellsOf = (row: string, header: boolean) =>
  [...row.matchAll(/<td( bgcolor="#80f080")?>([^<]*)<\/td>\n/g)].map((cell) => {
    assert.strictEqual(cell[1] !== undefined, header, `header and body cells: ${row}`)
    return cell[2]!
  })

/** The table bodies of the page: the first row (green cells) is the header, each other `<tr>` a row. */
const tablesOf = (html: string): Array<Table> =>
  [...html.matchAll(/<table bgcolor="#c0c0c0">\n([\s\S]*?)<\/table>\n/g)].map((table) => {
    const rows = [...table[1]!.matchAll(/<tr>\n((?:<td[^>]*>[^<]*<\/td>\n)*)<\/tr>\n/g)]
    assert.isAtLeast(rows.length, 1, "a table without its header row")
    const header = cellsOf(rows[0]![1]!, true)
    return {
      header,
      rows: rows.slice(1).map((row) => {
        const values = cellsOf(row[1]!, false)
        assert.strictEqual(values.length, header.length, `a row with ${values.length} cells: ${row[0]}`)
        return Object.fromEntries(header.map((name, i) => [name, values[i]!]))
      })
    }
  })

const parsePage = (html: string): Page => {
  assert.match(html, /^<html>\n<head>\n/)
  assert.match(html, /<\/body>\n<\/html>\n$/)
  const title = /<title>([^<]*)<\/title>/.exec(html)
  const time = new RegExp(`^Time (${STAMP}), (\\d+) servers, (-?\\d+) current<p>$`, "m").exec(html)
  const clients = /<h2>Active clients<\/h2>Max number of clients: (\d+)<p>/.exec(html)
  const connections = /<h2>Active connections<\/h2>Number of connections: (\d+) max, (\d+) used(?:, \d+ last)?<p>/.exec(
    html
  )
  assert.isNotNull(title, html)
  assert.isNotNull(time, html)
  assert.isNotNull(clients, html)
  assert.isNotNull(connections, html)
  const tables = tablesOf(html)
  assert.strictEqual(tables.length, 3, html)
  assert.deepStrictEqual(tables[0]!.header, SERVER_COLUMNS)
  assert.deepStrictEqual(tables[1]!.header, CLIENT_COLUMNS)
  assert.deepStrictEqual(tables[2]!.header, CONNECTION_COLUMNS)
  return {
    title: title![1]!,
    time: time![1]!,
    servers: Number(time![2]),
    current: Number(time![3]),
    clientsMax: Number(clients![1]),
    connectionsMax: Number(connections![1]),
    connectionsUsed: Number(connections![2]),
    serverTable: tables[0]!,
    clientTable: tables[1]!,
    connectionTable: tables[2]!
  }
}

/** The columns of a server row that do not change with traffic. */
const serverCells = (row: Readonly<Record<string, string>>) => ({
  server: row["server"],
  address: row["address"],
  status: row["status"],
  port: row["port"],
  "max soft": row["max soft"],
  "max hard": row["max hard"],
  weight: row["weight"],
  prio: row["prio"]
})

const idleServer = (index: number, port: number, soft = 0, hard = 0) => ({
  server: String(index),
  address: "127.0.0.1",
  status: "0",
  port: String(port),
  "max soft": String(soft),
  "max hard": String(hard),
  weight: "0",
  prio: "0"
})

/**
 * What the page should show after 127.0.0.2 made two connections (to server 1) and 127.0.0.3 holds one open (to
 * server 0), with servers `a` (no limits) and `b` (10/20).
 */
const checkPage = (page: Page, a: Backend.Backend, b: Backend.Backend) => {
  assert.strictEqual(page.title, "Pen status page")
  assert.strictEqual(page.servers, 2)
  assert.strictEqual(page.current, 0)
  assert.deepStrictEqual(page.serverTable.rows.map(serverCells), [idleServer(0, a.port), idleServer(1, b.port, 10, 20)])
  assert.deepStrictEqual(page.serverTable.rows.map((row) => row["connections"]), ["1", "0"])
  assert.strictEqual(page.clientsMax, 2048)
  const clients = page.clientTable.rows
  assert.sameMembers(clients.map((row) => row["address"]!), [ip(2), ip(3)])
  const byAddress = Object.fromEntries(clients.map((row) => [row["address"]!, row]))
  assert.deepStrictEqual(
    [ip(2), ip(3)].map((address) => [byAddress[address]!["connects"], byAddress[address]!["last server"]]),
    [["2", "1"], ["1", "0"]]
  )
  assert.sameMembers(clients.map((row) => row["client"]!), ["0", "1"])
  assert.strictEqual(page.connectionsMax, 500)
  assert.strictEqual(page.connectionsUsed, 1)
  assert.strictEqual(page.connectionTable.rows.length, 1)
  const connection = page.connectionTable.rows[0]!
  assert.match(connection["downfd"]!, /^\d+$/)
  assert.match(connection["upfd"]!, /^\d+$/)
  assert.notStrictEqual(connection["downfd"], connection["upfd"])
  // The slot number depends on when nib finished the two connections before (pen's does too): any slot will do.
  assert.match(connection["connection"]!, /^\d+$/)
  assert.deepStrictEqual(
    {
      client: connection["client"],
      server: connection["server"],
      pending: [connection["pending data down"], connection["pending data up"]]
    },
    { client: byAddress[ip(3)]!["client"], server: "0", pending: ["0", "0"] }
  )
}

/** The traffic {@link checkPage} expects: 127.0.0.2 twice (server 1), then 127.0.0.3 held open (server 0). */
const traffic = (lb: Nib.Balancer) =>
  Effect.gen(function*() {
    assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2), ip(2)]), ["b", "b"])
    const held = yield* Client.hold(lb.port, ip(3))
    assert.strictEqual(held.name, "a")
    return held
  })

// ---------------------------------------------------------------------------------------------------------------
// Files and requests

/** Polls (at most `timeoutMs`) until `path` exists; its content then (latin1), or undefined. */
const waitForFile = (path: string, timeoutMs = 5_000) =>
  Effect.promise(async () => {
    const ok = await Poll.until(() => Fs.existsSync(path), timeoutMs)
    return ok ? Fs.readFileSync(path, "latin1") : undefined
  })

/** The content of `path` (latin1), or "" while it does not exist. */
const readOrEmpty = (path: string) => (Fs.existsSync(path) ? Fs.readFileSync(path, "latin1") : "")

/** Polls (at most `timeoutMs`) until the file at `path` matches `pattern`; its content then ("" if missing). */
const waitForContent = (path: string, pattern: RegExp, timeoutMs = 5_000) =>
  Effect.promise(async () => {
    await Poll.until(() => pattern.test(readOrEmpty(path)), timeoutMs)
    return readOrEmpty(path)
  })

/**
 * One request from `from`: connects, sends `bytes` in one write, waits until the identity backend has echoed all of
 * it (so nib relayed it), closes. The backend's name.
 */
const send = (port: number, from: string, bytes: Buffer | string) =>
  Effect.promise(async () => {
    const data = typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes
    const conn = await Client.connect(port, { from })
    try {
      const first = await conn.firstLine()
      assert.strictEqual(first._tag, "Line", `no name from the backend: ${JSON.stringify(first)}`)
      const name = (first as { readonly line: string }).line
      conn.socket.write(data)
      const echoed = await conn.until(() => conn.received >= name.length + 1 + data.length, 5_000)
      assert.isTrue(echoed, `the request was not echoed: ${JSON.stringify(conn.text())}`)
      return name
    } finally {
      conn.close()
    }
  })

const nowSeconds = () => Math.floor(Date.now() / 1000)

/** The file log lines of `text` as [client, time, server, request]. */
const logLines = (text: string) =>
  text.split("\n").filter((l) => l !== "").map((l) => {
    const match = /^(\S+) (\d+) (\S+) (.*)$/.exec(l)
    assert.isNotNull(match, `not a log line: ${JSON.stringify(l)}`)
    return { client: match![1]!, time: Number(match![2]), server: match![3]!, request: match![4]! }
  })

/** A UDP socket on 127.0.0.1 that collects the datagrams it receives, for the length of the scope. */
const udpSink = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ readonly port: number; readonly received: Array<Buffer>; readonly socket: Dgram.Socket }>(
      (resolve, reject) => {
        const socket = Dgram.createSocket("udp4")
        const received: Array<Buffer> = []
        socket.on("message", (message) => received.push(message))
        socket.once("error", reject)
        socket.bind({ address: "127.0.0.1", port: 0 }, () => {
          socket.off("error", reject)
          resolve({ port: socket.address().port, received, socket })
        })
      }
    )
  ),
  (sink) => Effect.sync(() => sink.socket.close())
)

// ---------------------------------------------------------------------------------------------------------------

describe("the status page (-w, SIGUSR1, status)", () => {
  it.live("-w FILE: nothing before SIGUSR1, then pen's page: servers, clients and the live connection", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const web = Path.join(dir, "web.html")
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start(["-w", web, "127.0.0.1:0", a.spec(), b.spec(":10:20")])

      const held = yield* traffic(lb)
      assert.isFalse(Fs.existsSync(web), "the page was written before SIGUSR1")

      process.kill(lb.pid, "SIGUSR1")
      const html = yield* waitForFile(web)
      assert.isDefined(html, `no ${web} after SIGUSR1; stderr:\n${lb.stderr()}`)
      const page = parsePage(html!)
      checkPage(page, a, b)
      // The descriptors are nib's own: each is an open socket of the process.
      const connection = page.connectionTable.rows[0]!
      for (const fd of [connection["downfd"], connection["upfd"]]) {
        assert.match(Fs.readlinkSync(`/proc/${lb.pid}/fd/${fd}`), /^socket:\[\d+\]$/)
      }
      assert.isTrue(Nib.isAlive(lb.pid))
      held.conn.close()
    }))

  it.live("status through nibctl: streams the page and rewrites the -w file with it", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const web = Path.join(dir, "web.html")
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([
        ...AS_USER,
        "-C",
        "127.0.0.1:0",
        "-w",
        web,
        "127.0.0.1:0",
        a.spec(),
        b.spec(":10:20")
      ])

      yield* traffic(lb)
      process.kill(lb.pid, "SIGUSR1")
      assert.isDefined(yield* waitForFile(web), `no ${web} after SIGUSR1`)
      Fs.rmSync(web)

      const streamed = yield* ctl(lb, "status")
      checkPage(parsePage(streamed), a, b)
      // The file is written again, with the page that was streamed.
      assert.strictEqual(Fs.readFileSync(web, "latin1"), streamed)
      assert.strictEqual(yield* ctl(lb, "web_stats"), `${web}\n`)
    }))

  it.live("status through nibctl without -w: streams the page", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec(":10:20")])

      yield* traffic(lb)
      const streamed = yield* ctl(lb, "status")
      checkPage(parsePage(streamed), a, b)
      assert.strictEqual(yield* ctl(lb, "web_stats"), "")
    }))

  it.live("SIGUSR1 without -w: text statistics on stderr, with pen's time stamps; nib keeps serving", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start(["127.0.0.1:0", a.spec(), b.spec(":10:20")])
      const held = yield* traffic(lb)
      const before = lb.stderr().length

      process.kill(lb.pid, "SIGUSR1")
      const done = new RegExp(`^${STAMP}: Active connections:$`, "m")
      assert.isTrue(
        yield* Poll.waitUntil(() => done.test(lb.stderr().slice(before))),
        `no statistics on stderr:\n${lb.stderr()}`
      )
      const text = lb.stderr().slice(before)
      const stamped = (line: string) => new RegExp(`^${STAMP}: ${literal(line)}$`, "m")
      assert.match(text, new RegExp(`^${STAMP}: Time ${STAMP}, 2 servers, 0 current$`, "m"))
      for (const line of ["Server 0 status:", "Server 1 status:", "Max number of clients: 2048", "Active clients:"]) {
        assert.match(text, stamped(line))
      }
      assert.match(text, stamped("Max number of connections: 500"))
      assert.match(text, /^address 127\.0\.0\.1\n0\nport \d+\n\d+ connections \(10 soft, 20 hard\)$/m)
      // The first line of the output is a stamped one.
      assert.match(text, new RegExp(`^${STAMP}: Time `))

      assert.isTrue(Nib.isAlive(lb.pid))
      assert.strictEqual(yield* Client.ask(lb.port, ip(4)), "b")
      held.conn.close()
    }))
})

describe("as pen prints them: text statistics and include's replies", () => {
  // pen's debug() prints `STAMP: message\n`, so a multi-line message that ends with its own newline (a server, client
  // or connection block of textstats) is followed by an empty line (pen-reference.md §7.2's sample).
  it.live("SIGUSR1 without -w: an empty line after each server block, as pen's debug() prints", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start(["127.0.0.1:0", a.spec(), b.spec(":10:20")])
      process.kill(lb.pid, "SIGUSR1")
      const done = new RegExp(`^${STAMP}: Active connections:$`, "m")
      assert.isTrue(yield* Poll.waitUntil(() => done.test(lb.stderr())), `no statistics on stderr:\n${lb.stderr()}`)
      const block = new RegExp(
        `^${STAMP}: Server 1 status:\naddress 127\\.0\\.0\\.1\n0\nport ${b.port}\n`
          + `0 connections \\(10 soft, 20 hard\\)\n0 sent, 0 received\n\n${STAMP}: Max number of clients: 2048$`,
        "m"
      )
      assert.match(lb.stderr(), block)
    }))

  // pen's include reads the file with do_cmd(line, output_file, stdout) (pen.c:read_cfg): the replies of the included
  // commands go to pen's stdout, and the control client that sent `include` gets nothing (pen-reference.md §6.1,
  // §6.2).
  it.live("include through the control port answers nothing; the replies go to nib's stdout", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      const file = Path.join(dir, "more.cfg")
      Fs.writeFileSync(file, "blacklist 7\ntracking 9\n")
      const reply = yield* ctl(lb, `include ${file}`)
      assert.strictEqual(yield* ctl(lb, "blacklist"), "7\n")
      assert.strictEqual(yield* ctl(lb, "tracking"), "9\n")
      assert.strictEqual(reply, "")
      assert.isTrue(yield* Poll.waitUntil(() => lb.stdout().includes("7\n9\n")), `stdout: ${lb.stdout()}`)
    }))
})

describe("the request log (-l)", () => {
  it.live("-l FILE: a line per chunk, visible at once; HUP after a rename starts a new file; bytes >= 0x80 as '.'", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const log = Path.join(dir, "nib.log")
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["-l", log, "127.0.0.1:0", a.spec()])

      const start = nowSeconds()
      assert.strictEqual(yield* send(lb.port, ip(2), "GET /a HTTP/1.0\r\n\r\n"), "a")
      const first = yield* waitForContent(log, /GET \/a HTTP\/1\.0\n/)
      const end = nowSeconds()
      const lines = logLines(first)
      assert.deepStrictEqual(
        lines.map(({ client, request, server }) => ({ client, server, request })),
        [{ client: ip(2), server: "127.0.0.1", request: "GET /a HTTP/1.0" }]
      )
      assert.isAtLeast(lines[0]!.time, start)
      assert.isAtMost(lines[0]!.time, end)

      // Non-ASCII bytes are dots; the line stops at the CR.
      const bytes = Buffer.concat([
        Buffer.from("GET /caf"),
        Buffer.from([0xc3, 0xa9, 0xff]),
        Buffer.from(" HTTP/1.0\r\n")
      ])
      assert.strictEqual(yield* send(lb.port, ip(2), bytes), "a")
      const second = yield* waitForContent(log, /GET \/caf\.\.\. HTTP\/1\.0\n/)
      assert.deepStrictEqual(logLines(second).map((l) => l.request), ["GET /a HTTP/1.0", "GET /caf... HTTP/1.0"])

      // Rotation: move the file aside, HUP; nib creates the file again and logs there.
      Fs.renameSync(log, `${log}.1`)
      process.kill(lb.pid, "SIGHUP")
      assert.isDefined(yield* waitForFile(log), `no new ${log} after SIGHUP; stderr:\n${lb.stderr()}`)
      assert.strictEqual(yield* send(lb.port, ip(3), "GET /b HTTP/1.0\r\n\r\n"), "a")
      const rotated = yield* waitForContent(log, /GET \/b HTTP\/1\.0\n/)
      assert.deepStrictEqual(
        logLines(rotated).map(({ client, request }) => ({ client, request })),
        [{ client: ip(3), request: "GET /b HTTP/1.0" }]
      )
      assert.deepStrictEqual(
        logLines(Fs.readFileSync(`${log}.1`, "latin1")).map((l) => l.request),
        ["GET /a HTTP/1.0", "GET /caf... HTTP/1.0"]
      )
      assert.isTrue(Nib.isAlive(lb.pid))
    }))

  it.live("-l 127.0.0.1:PORT: a datagram per chunk, `+ CLIENT SERVER REQUEST\\n`", () =>
    Effect.gen(function*() {
      const sink = yield* udpSink
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["-l", `127.0.0.1:${sink.port}`, "127.0.0.1:0", a.spec()])

      assert.strictEqual(yield* send(lb.port, ip(2), "GET /a HTTP/1.0\r\n\r\n"), "a")
      assert.isTrue(yield* Poll.waitUntil(() => sink.received.length >= 1), "no datagram arrived")
      assert.strictEqual(yield* send(lb.port, ip(3), "GET /b?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"), "a")
      assert.isTrue(yield* Poll.waitUntil(() => sink.received.length >= 2), "no second datagram arrived")
      assert.deepStrictEqual(sink.received.map((d) => d.toString("latin1")), [
        `+ ${ip(2)} 127.0.0.1 GET /a HTTP/1.0\n`,
        `+ ${ip(3)} 127.0.0.1 GET /b?x=1 HTTP/1.1\n`
      ])
    }))
})

describe("the -F file", () => {
  it.live("commands, comments and empty lines at start-up", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const cfg = Path.join(dir, "nib.cfg")
      Fs.writeFileSync(cfg, "blacklist 12\n# comment\n\nroundrobin\n")
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "-F", cfg, "127.0.0.1:0", a.spec(), b.spec()])

      assert.strictEqual(yield* ctl(lb, "blacklist"), "12\n")
      assert.strictEqual(yield* ctl(lb, "mode"), MODE_ROUNDROBIN)
      // Roundrobin: the same client goes to server 1, then 0.
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2), ip(2)]), ["b", "a"])
    }))

  it.live("a bad line at start-up: exit 1, naming FILE:LINE", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const cfg = Path.join(dir, "nib.cfg")
      Fs.writeFileSync(cfg, "blacklist 12\n# comment\nblaclist 3\nroundrobin\n")
      const port = yield* Backend.freePort
      const result = yield* Nib.run(["-f", "-F", cfg, `127.0.0.1:${port}`, "127.0.0.1:1"])
      assert.deepStrictEqual(
        { code: result.code, timedOut: result.timedOut },
        { code: 1, timedOut: false },
        result.stderr
      )
      assert.include(result.stderr, `${cfg}:3`)
      assert.include(result.stderr, "blaclist")
      assert.notInclude(result.stderr, "listening on")
    }))

  it.live("HUP re-reads it: `server 1` moved to a third backend; a bad line later is logged and changes nothing", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const cfg = Path.join(dir, "nib.cfg")
      Fs.writeFileSync(cfg, "blacklist 12\n")
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const c = yield* Backend.identity("c")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "-F", cfg, "127.0.0.1:0", a.spec(), b.spec()])
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2), ip(3)]), ["b", "a"])

      // pen's testsuite "signal handling": edit the file, HUP, the next client of slot 1 reaches the new server.
      Fs.writeFileSync(cfg, `server 1 address 127.0.0.1 port ${c.port}\n`)
      process.kill(lb.pid, "SIGHUP")
      const moved = yield* pollServers(lb, (reply) => serversOf(reply)[1]?.port === c.port)
      assert.deepStrictEqual(
        serversOf(moved).map(({ addr, index, port }) => ({ index, addr, port })),
        [{ index: 0, addr: "127.0.0.1", port: a.port }, { index: 1, addr: "127.0.0.1", port: c.port }]
      )
      // The cursor is at 0: the next new client gets slot 1; the client pinned to slot 1 follows it too.
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(4), ip(2), ip(3)]), ["c", "c", "a"])
      assert.strictEqual(b.accepted(), 1)

      // A bad line: logged with the file and line; none of the file is applied; nib goes on serving.
      const before = lb.stderr().length
      Fs.writeFileSync(cfg, `server 0 address 127.0.0.1 port ${b.port}\nblaclist 3\n`)
      process.kill(lb.pid, "SIGHUP")
      assert.isTrue(
        yield* Poll.waitUntil(() => lb.stderr().slice(before).includes(`${cfg}:2`)),
        `no message naming ${cfg}:2 on stderr:\n${lb.stderr()}`
      )
      assert.include(lb.stderr().slice(before), "blaclist")
      assert.deepStrictEqual(serversOf(yield* ctl(lb, "servers")), serversOf(moved))
      assert.strictEqual(yield* ctl(lb, "blacklist"), "12\n")
      assert.isTrue(Nib.isAlive(lb.pid))
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(5), ip(2)]), ["a", "c"])
    }))

  it.live("servers from the file only (no positional server)", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const cfg = Path.join(dir, "nib.cfg")
      const a = yield* Backend.identity("a")
      Fs.writeFileSync(cfg, `server 0 address 127.0.0.1 port ${a.port}\n`)
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "-F", cfg, "127.0.0.1:0"])

      assert.deepStrictEqual(
        serversOf(yield* ctl(lb, "servers")).map(({ addr, index, port }) => ({ index, addr, port })),
        [{ index: 0, addr: "127.0.0.1", port: a.port }]
      )
      assert.deepStrictEqual(yield* Client.askAll(lb.port, [ip(2), ip(3)]), ["a", "a"])
    }))
})

describe("include and write", () => {
  it.live("include FILE applies its commands; a missing file answers one error line and changes nothing", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const servers = yield* ctl(lb, "servers")

      const missing = Path.join(dir, "missing.cfg")
      const reply = yield* ctl(lb, `include ${missing}`)
      assert.match(reply, /^[^\n]+\n$/)
      assert.include(reply, missing)
      assert.strictEqual(yield* ctl(lb, "servers"), servers)
      assert.strictEqual(yield* ctl(lb, "mode"), MODE_DEFAULT)
      assert.strictEqual(yield* ctl(lb, "blacklist"), "30\n")

      const file = Path.join(dir, "more.cfg")
      Fs.writeFileSync(file, "# more settings\nblacklist 7\nroundrobin\n\ntracking 9\nserver 1 max 3 hard 4\n")
      // (What the include answers is left to the test of pen's silent include below.)
      yield* ctl(lb, `include ${file}`)
      assert.strictEqual(yield* ctl(lb, "blacklist"), "7\n")
      assert.strictEqual(yield* ctl(lb, "mode"), MODE_ROUNDROBIN)
      assert.strictEqual(yield* ctl(lb, "tracking"), "9\n")
      assert.deepStrictEqual(
        serversOf(yield* ctl(lb, "servers")).map(({ hard, index, max, port }) => ({ index, port, max, hard })),
        [{ index: 0, port: a.port, max: 0, hard: 0 }, { index: 1, port: b.port, max: 3, hard: 4 }]
      )
    }))

  it.live("write FILE: pen's format, and include of it reproduces servers and mode in a fresh nib", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const web = Path.join(dir, "web.html")
      const saved = Path.join(dir, "saved.cfg")
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([
        ...AS_USER,
        "-C",
        "127.0.0.1:0",
        "-r",
        "-b",
        "17",
        "-w",
        web,
        "127.0.0.1:0",
        a.spec(),
        b.spec(":10:20")
      ])

      assert.strictEqual(yield* ctl(lb, `write ${saved}`), "")
      const lines = Fs.readFileSync(saved, "utf8").split("\n")
      assert.strictEqual(lines.pop(), "", "the file ends with a newline")
      assert.match(lines[0]!, new RegExp(`^# Generated by nib ${STAMP}$`))
      assert.match(lines[1]!, /^# nib .*-C 127\.0\.0\.1:0 127\.0\.0\.1:0$/)
      assert.deepStrictEqual(lines.slice(2, 12), Array.from({ length: 10 }, (_, i) => `no acl ${i}`))
      const body = lines.slice(12)
      for (
        const expected of [
          "blacklist 17",
          "roundrobin",
          `server 0 acl 0 address 127.0.0.1 port ${a.port} max 0 hard 0`,
          `server 1 acl 0 address 127.0.0.1 port ${b.port} max 10 hard 20`,
          "timeout 3",
          "tracking 0",
          `web_stats ${web}`,
          "no weight",
          "no prio"
        ]
      ) {
        assert.include(body, expected)
      }
      // pen's order: the settings alphabetically, the servers after roundrobin, weight and prio last.
      const at = (line: string) => body.indexOf(line)
      assert.isBelow(at("blacklist 17"), at("roundrobin"))
      assert.isBelow(at("roundrobin"), at(`server 0 acl 0 address 127.0.0.1 port ${a.port} max 0 hard 0`))
      assert.isBelow(at("timeout 3"), at("tracking 0"))
      assert.deepStrictEqual(body.slice(-2), ["no weight", "no prio"])
      for (const line of body) assert.notMatch(line, /^#/)

      const servers = yield* ctl(lb, "servers")
      const mode = yield* ctl(lb, "mode")
      assert.strictEqual(mode, MODE_ROUNDROBIN)

      // A fresh nib with other settings takes them all from the file.
      const other = yield* Backend.identity("other")
      const fresh = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", other.spec()])
      yield* ctl(fresh, `include ${saved}`)
      assert.strictEqual(yield* ctl(fresh, "servers"), servers)
      assert.strictEqual(yield* ctl(fresh, "mode"), mode)
      assert.strictEqual(yield* ctl(fresh, "blacklist"), "17\n")
      assert.strictEqual(yield* ctl(fresh, "web_stats"), `${web}\n`)
      assert.deepStrictEqual(yield* Client.askAll(fresh.port, [ip(2), ip(2)]), ["b", "a"])
    }))

  it.live("write without a file: the -F file, or `write: no file` without -F", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const a = yield* Backend.identity("a")
      const plain = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      assert.strictEqual(yield* ctl(plain, "write"), "write: no file\n")
      assert.deepStrictEqual(Fs.readdirSync(dir), [])

      const cfg = Path.join(dir, "nib.cfg")
      Fs.writeFileSync(cfg, "blacklist 12\n")
      const withFile = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "-F", cfg, "127.0.0.1:0", a.spec()])
      assert.strictEqual(yield* ctl(withFile, "write"), "")
      const text = Fs.readFileSync(cfg, "utf8")
      assert.match(text, new RegExp(`^# Generated by nib ${STAMP}\n# nib .*-F '${literal(cfg)}' `))
      assert.include(text.split("\n"), "blacklist 12")
      assert.include(text.split("\n"), `server 0 acl 0 address 127.0.0.1 port ${a.port} max 0 hard 0`)
    }))
})

describe("the connection table (connection, socket, close)", () => {
  it.live("connection 0 of a held client, socket D, close 0 ends it, connection 600 is out of range with -x 500", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "-x", "500", "127.0.0.1:0", a.spec(), b.spec()])

      const held = yield* Client.hold(lb.port, ip(2))
      assert.strictEqual(held.name, "b")
      const reply = yield* ctl(lb, "connection 0")
      const match = /^Connection 0:\nstate = 2\ndownfd = (\d+), upfd = (\d+)\nclient = 0, server = 1\npend = 0\n$/.exec(
        reply
      )
      assert.isNotNull(match, `connection 0: ${JSON.stringify(reply)}`)
      const [down, up] = [Number(match![1]), Number(match![2])]
      assert.notStrictEqual(down, up)
      for (const fd of [down, up]) {
        assert.match(Fs.readlinkSync(`/proc/${lb.pid}/fd/${fd}`), /^socket:\[\d+\]$/)
      }
      assert.strictEqual(yield* ctl(lb, `socket ${down}`), `Socket ${down} belongs to connection 0\n`)
      assert.strictEqual(yield* ctl(lb, `socket ${up}`), `Socket ${up} belongs to connection 0\n`)
      // An unused slot, as pen shows it.
      assert.strictEqual(
        yield* ctl(lb, "connection 7"),
        "Connection 7:\nstate = 0\ndownfd = -1, upfd = -1\nclient = 0, server = 0\npend = 0\n"
      )

      assert.strictEqual(yield* ctl(lb, "connection 600"), "Connection 600 out of range\n")
      assert.strictEqual(yield* ctl(lb, "close 600"), "Connection 600 out of range\n")

      assert.strictEqual(yield* ctl(lb, "close 0"), "Forcibly closing connection 0\n")
      assert.notStrictEqual(yield* Effect.promise(() => held.conn.ended(5_000)), "timeout")
      assert.isTrue(yield* Poll.waitUntil(() => b.open() === 0), "the server side stayed open")
      assert.strictEqual(
        yield* ctl(lb, "connection 0"),
        "Connection 0:\nstate = 0\ndownfd = -1, upfd = -1\nclient = 0, server = 0\npend = 0\n"
      )
      // Still serving.
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "b")
    }))
})

describe("the process: pid file and -j", () => {
  it.live("-p FILE with -u root: the pid is written, and removed on SIGTERM (exit 0)", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const pidPath = Path.join(dir, "nib.pid")
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start([...AS_USER, "-p", pidPath, "127.0.0.1:0", a.spec()])

      assert.strictEqual(Fs.readFileSync(pidPath, "utf8"), String(lb.pid))
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
      const status = yield* Effect.promise(() => Nib.stop(lb))
      assert.deepStrictEqual(status, { code: 0, signal: null }, lb.stderr())
      assert.isFalse(Fs.existsSync(pidPath))
    }))

  // pen's order: bind, drop privileges, then open the log and write the pid file, as the new user.
  const nobody = Fs.readFileSync("/etc/passwd", "utf8").split("\n").map((l) => l.split(":")).find((f) =>
    f[0] === "nobody"
  )
  it.live.skipIf(!isRoot || nobody === undefined)(
    "-u nobody: the process runs as nobody; the -l log and the pid file are created by nobody; HUP reopens the log",
    () =>
      Effect.gen(function*() {
        const dir = yield* Nib.tempDir
        Fs.chmodSync(dir, 0o777)
        const log = Path.join(dir, "nib.log")
        const pidPath = Path.join(dir, "nib.pid")
        const a = yield* Backend.identity("a")
        const lb = yield* Nib.start(["-u", "nobody", "-l", log, "-p", pidPath, "127.0.0.1:0", a.spec()])
        const uid = Number(nobody![2])
        const status = Fs.readFileSync(`/proc/${lb.pid}/status`, "utf8")
        assert.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, "m"))
        assert.strictEqual(yield* send(lb.port, ip(2), "GET /u HTTP/1.0\r\n\r\n"), "a")
        yield* waitForContent(log, /GET \/u HTTP\/1\.0\n/)
        assert.strictEqual(Fs.statSync(log).uid, uid)
        assert.strictEqual(Fs.statSync(pidPath).uid, uid)
        Fs.renameSync(log, `${log}.1`)
        process.kill(lb.pid, "SIGHUP")
        assert.isTrue(yield* Poll.waitUntil(() => Fs.existsSync(log)), `no new log: ${lb.stderr()}`)
        assert.strictEqual(Fs.statSync(log).uid, uid)
      })
  )

  it.live("-j DIR is refused: exit 1, a message about chroot", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const port = yield* Backend.freePort
      const result = yield* Nib.run(["-f", "-j", "/tmp", `127.0.0.1:${port}`, a.spec()])
      assert.deepStrictEqual(
        { code: result.code, timedOut: result.timedOut },
        { code: 1, timedOut: false },
        result.stderr
      )
      assert.include(result.stderr, "chroot")
      assert.notInclude(result.stderr, "listening on")
      assert.strictEqual(a.accepted(), 0)
    }))
})
