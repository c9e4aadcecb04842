/**
 * The control port (`-C`) of the real process, driven by the built `nibctl` (`npm run -s build` first) and, where the
 * bytes on the wire matter, by raw sockets: pen's reply formats for the getters (pen-reference.md §6.2, §6.3), setters
 * and their refusals, runtime changes that show in server selection, `recent`, robustness (a silent control client,
 * an overlong line, garbage, parallel clients, one command per connection), `control_acl`, `exit` with and without
 * `-X`, the root rule, `-O` at start-up and a Unix socket control port.
 *
 * Backends answer each connection with their name (test/utils/Backend.ts); distinct clients are distinct 127.0.0.N
 * source addresses. Every wait is bounded; no assertion is about timing.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Admin from "../utils/Admin.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Fd from "../utils/Fd.ts"
import * as Kernel from "../utils/Kernel.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"

const { ip } = Client

/** The built client. */

/** Whether this process runs as root (the tests do, on this machine and in CI). */
const isRoot = process.getuid?.() === 0
if (!isRoot) {
  console.warn("test/e2e/control.test.ts: not running as root: the test of nib as root without -u is SKIPPED")
}
/** As root, nib opens the control port only with `-u` (pen's rule); `-u root` is the documented escape hatch. */
const AS_USER: ReadonlyArray<string> = isRoot ? ["-u", "root"] : []

/** pen's message when it will not open the control port as root. */
const ROOT_REFUSAL = "Won't open control port running as root; use -u to run as different user"

/** Control clients of the burst tests: as many as monitoring scripts on a fleet might send at once. */
const BURST = 200

/** The descriptor limit of the nib whose control clients outnumber its share, and how many clients are past it. */
const LIMIT = 256
const OVER = 20

/** nib started under a descriptor limit of `limit`, soft and hard (Node raises the soft one to the hard one). */
const startLimited = (limit: number, args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const { proc } = await Nib.spawnReady(
        Fd.prlimit!,
        [`--nofile=${limit}:${limit}`, Nib.NODE, Nib.NIB, "-f", ...Nib.WORKERS, ...args],
        Nib.LISTENING
      )
      return proc
    }),
    (proc) => Effect.promise(() => Nib.stop(proc))
  )

/** pen's default `mode` reply. */
const MODE_DEFAULT = "no hash no roundrobin no stubborn no weight no prio\n"
const MODE_ROUNDROBIN = "no hash roundrobin no stubborn no weight no prio\n"

/** nibctl's reply to `line` (split into words on spaces, as a shell would); fails the test unless it exited 0. */
const ctl = Nibctl.ask

const { targetOf } = Nibctl

/** nib with a control port on 127.0.0.1 (and `extra` options) over one identity backend "a". */
const controlled = (extra: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const a = yield* Backend.identity("a")
    const lb = yield* Nib.start([...AS_USER, ...extra, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
    return { a, lb, target: targetOf(lb) }
  })

/** What a raw control connection received and how it ended. */
interface RawReply {
  readonly reply: string
  readonly ending: Client.Ending | "timeout"
}

/**
 * A raw control conversation: connects (from `from`, default 127.0.0.1), writes `bytes` in one write, half-closes if
 * `end`, and collects everything until nib closes the connection (at most `timeoutMs`). The reply is latin1.
 */
const raw = (
  where: { readonly port: number } | { readonly path: string },
  bytes: Buffer | string,
  options: { readonly from?: string; readonly end?: boolean; readonly timeoutMs?: number } = {}
) =>
  Effect.promise(async (): Promise<RawReply> => {
    const socket = "path" in where
      ? Net.connect({ path: where.path, allowHalfOpen: true })
      : Net.connect({
        host: "127.0.0.1",
        port: where.port,
        localAddress: options.from ?? "127.0.0.1",
        allowHalfOpen: true
      })
    const conn = new Client.Conn(socket)
    try {
      socket.once("connect", () => {
        socket.write(bytes)
        if (options.end === true) socket.end()
      })
      // Every byte of the reply has arrived by the time nib's end (or a reset) is seen.
      const ending = await conn.ended(options.timeoutMs ?? 15_000)
      return { reply: conn.data().toString("latin1"), ending }
    } finally {
      conn.close()
    }
  })

/** The names of the backends that answered one new connection from each of `sources`, one after the other. */
const askEach = (port: number, sources: ReadonlyArray<string>) => Client.askAll(port, sources)

/** pen's `servers` line for an idle server with no traffic yet. */
const idleLine = (index: number, port: number, limits = "max 0 hard 0 weight 0 prio 0") =>
  `${index} addr 127.0.0.1 port ${port} conn 0 ${limits} sx 0 rx 0\n`

/** Parses pen's `servers` reply into its lines' fields by index. */
const serverLines = (reply: string) =>
  reply.split("\n").filter((l) => l !== "").map((l) => {
    const match =
      /^(\d+) addr (.*) port (\d+) conn (\d+) max (\d+) hard (\d+) weight (\d+) prio (\d+) sx (\d+) rx (\d+)$/
        .exec(l)
    assert.isNotNull(match, `not a servers line: ${JSON.stringify(l)}`)
    const [, index, addr, port, conn, max, hard, weight, prio] = match!
    return {
      index: Number(index),
      addr,
      port: Number(port),
      conn: Number(conn),
      max: Number(max),
      hard: Number(hard),
      weight: Number(weight),
      prio: Number(prio)
    }
  })

/** What a `servers` reply says apart from the live counts (a data client served meanwhile may show in them). */
const settingsOf = (reply: string) =>
  serverLines(reply).map(({ addr, hard, index, max, port, prio, weight }) => ({
    index,
    addr,
    port,
    max,
    hard,
    weight,
    prio
  }))

/** The backlog of each socket listening on `port`: its Send-Q in `ss -ltn`. */
const backlogOf = (port: number): Array<number> =>
  ChildProcess.execFileSync("ss", ["-ltnH", `( sport = :${port} )`], { encoding: "utf8" })
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => Number(line.trim().split(/\s+/)[2]))

/** Sends `servers` on a control connection. */
const askServers = (conn: Client.Conn) => conn.socket.write("servers\n")

/** Parses pen's `recent` reply (`ADDR connects N sx S rx R` lines): connects and [sx, rx] by address. */
const recentOf = (reply: string) => {
  const lines = reply.split("\n")
  assert.strictEqual(lines.pop(), "", `the reply ends with a newline: ${JSON.stringify(reply)}`)
  const connects: Record<string, number> = {}
  const bytes: Record<string, Array<number>> = {}
  for (const l of lines) {
    const match = /^(\S+) connects (\d+) sx (\d+) rx (\d+)$/.exec(l)
    assert.isNotNull(match, `not a recent line: ${JSON.stringify(l)}`)
    connects[match![1]!] = Number(match![2])
    bytes[match![1]!] = [Number(match![3]), Number(match![4])]
  }
  return { connects, bytes }
}

/** A comparable form of `recent`'s byte counts, whatever the order of its lines. */
const canon = (bytes: object) => JSON.stringify(Object.entries(bytes).toSorted())

describe("getters: pen's reply formats", () => {
  it.live("defaults: servers, mode, numbers, strings, idlers, idle_timeout, tarpit_acl, pid", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec(":10:20:3:1")])
      const target = targetOf(lb)
      assert.strictEqual(lb.control!.host, "127.0.0.1")

      assert.strictEqual(
        yield* ctl(target, "servers"),
        idleLine(0, a.port) + idleLine(1, b.port, "max 10 hard 20 weight 3 prio 1")
      )
      const expected: ReadonlyArray<readonly [string, string]> = [
        ["mode", MODE_DEFAULT],
        ["blacklist", "30\n"],
        ["timeout", "3\n"],
        ["tracking", "0\n"],
        ["clients_max", "2048\n"],
        ["conn_max", "500\n"],
        ["debug", "0\n"],
        ["client_acl", "0\n"],
        ["control_acl", "0\n"],
        // The -C and listen strings as given, port 0 included.
        ["control", "127.0.0.1:0\n"],
        ["listen", "127.0.0.1:0\n"],
        ["pid", `${lb.pid}\n`],
        ["idlers", "Idlers: 0/0\n"],
        ["idle_timeout", "Idle timeout: 0 seconds\n"],
        ["tarpit_acl", "tarpit_acl = -1"]
      ]
      for (const [command, reply] of expected) assert.strictEqual(yield* ctl(target, command), reply, command)
    }))

  it.live("-r -b -T -c -x -d show in mode, blacklist, tracking, clients_max, conn_max, debug; -h in mode", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start([
        ...AS_USER,
        "-r",
        "-b",
        "17",
        "-T",
        "40",
        "-c",
        "100",
        "-x",
        "50",
        "-d",
        "-C",
        "127.0.0.1:0",
        "127.0.0.1:0",
        a.spec()
      ])
      const target = targetOf(lb)
      const expected: ReadonlyArray<readonly [string, string]> = [
        ["mode", MODE_ROUNDROBIN],
        ["blacklist", "17\n"],
        ["tracking", "40\n"],
        ["clients_max", "100\n"],
        ["conn_max", "50\n"],
        ["debug", "1\n"]
      ]
      for (const [command, reply] of expected) assert.strictEqual(yield* ctl(target, command), reply, command)

      const hashed = yield* Nib.start([...AS_USER, "-h", "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      assert.strictEqual(yield* ctl(targetOf(hashed), "mode"), "hash no roundrobin no stubborn no weight no prio\n")
    }))

  it.live("unknown and upper-case commands are ignored with pen's message; a # comment and an empty line: no reply", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* controlled()
      const port = lb.control!.port

      assert.strictEqual(yield* ctl(target, "clients"), "do_cmd: ignoring command starting with 'clients'\n")
      assert.strictEqual(yield* ctl(target, "SERVERS"), "do_cmd: ignoring command starting with 'SERVERS'\n")
      assert.strictEqual(yield* ctl(target, "# servers"), "")
      assert.strictEqual(yield* ctl(target, "#servers"), "")
      // nibctl with one empty word sends a bare newline.
      assert.strictEqual(yield* ctl(target, ""), "")

      assert.deepStrictEqual(yield* raw({ port }, "\n"), { reply: "", ending: "eof" })
      assert.deepStrictEqual(yield* raw({ port }, "# comment\n"), { reply: "", ending: "eof" })
      assert.deepStrictEqual(yield* raw({ port }, "clients\r\n"), {
        reply: "do_cmd: ignoring command starting with 'clients'\n",
        ending: "eof"
      })
    }))
})

describe("setters", () => {
  it.live("blacklist 10 answers 10 and sticks; timeout 0 and blacklist abc are refused and change nothing", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* controlled()

      assert.strictEqual(yield* ctl(target, "blacklist 10"), "10\n")
      assert.strictEqual(yield* ctl(target, "blacklist"), "10\n")

      const zero = yield* ctl(target, "timeout 0")
      assert.match(zero, /^timeout: .+\n$/)
      assert.strictEqual(yield* ctl(target, "timeout"), "3\n")

      const abc = yield* ctl(target, "blacklist abc")
      assert.match(abc, /^blacklist: .*'abc'.*\n$/)
      assert.strictEqual(yield* ctl(target, "blacklist"), "10\n")

      // Other setters answer their new value too.
      assert.strictEqual(yield* ctl(target, "timeout 7"), "7\n")
      assert.strictEqual(yield* ctl(target, "tracking 9"), "9\n")
      assert.strictEqual(yield* ctl(target, "tracking"), "9\n")

      // Traffic still flows after all that.
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
    }))

  it.live("the knobs only the control language has (debug, client_acl, control_acl, tarpit_acl -1) answer the new value", () =>
    Effect.gen(function*() {
      const { target } = yield* controlled()

      // The getters show the new values...
      const settings: ReadonlyArray<readonly [string, string, string]> = [
        ["debug", "2", "2\n"],
        ["client_acl", "4", "4\n"],
        // ACL 5 has no entries, so it permits everyone: this test can go on talking to the control port.
        ["control_acl", "5", "5\n"],
        // -1, no tarpit, is the only value nib takes: the tarpit is part of DSR (test/e2e/sockets.test.ts).
        ["tarpit_acl", "-1", "tarpit_acl = -1"]
      ]
      const replies: Array<string> = []
      for (const [knob, value, reply] of settings) {
        replies.push(yield* ctl(target, `${knob} ${value}`))
        assert.strictEqual(yield* ctl(target, knob), reply, knob)
      }
      // ...and, as in pen (`%d\n` for get and set alike), so do the setters.
      assert.deepStrictEqual(replies, settings.map(([, , reply]) => reply))
    }))
})

describe("runtime changes show in server selection", () => {
  it.live("roundrobin and no roundrobin: a sticky client alternates, then new clients are sticky again", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const target = targetOf(lb)

      const sticky = yield* askEach(lb.port, [ip(2), ip(2), ip(2)])
      assert.deepStrictEqual(sticky, ["b", "b", "b"])

      assert.strictEqual(yield* ctl(target, "roundrobin"), "")
      assert.strictEqual(yield* ctl(target, "mode"), MODE_ROUNDROBIN)
      const alternating = yield* askEach(lb.port, [ip(2), ip(2), ip(2), ip(2)])
      assert.sameMembers([...new Set(alternating)], ["a", "b"], alternating.join(","))
      for (let i = 1; i < alternating.length; i++) {
        assert.notStrictEqual(alternating[i], alternating[i - 1], alternating.join(","))
      }

      assert.strictEqual(yield* ctl(target, "no roundrobin"), "")
      assert.strictEqual(yield* ctl(target, "mode"), MODE_DEFAULT)
      for (const n of [3, 4]) {
        const names = yield* askEach(lb.port, [ip(n), ip(n), ip(n)])
        assert.include(["a", "b"], names[0])
        assert.deepStrictEqual(names, [names[0], names[0], names[0]], `client ${ip(n)}`)
      }
    }))

  it.live("server 0 blacklist 5 sends every new client to server 1; server 0 blacklist 0 lifts it", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const target = targetOf(lb)

      assert.strictEqual(yield* ctl(target, "server 0 blacklist 5"), "")
      // Without the blacklist, the cursor would send every other new client to server 0.
      assert.deepStrictEqual(yield* askEach(lb.port, [ip(2), ip(3), ip(4), ip(5)]), ["b", "b", "b", "b"])
      assert.strictEqual(a.accepted(), 0)

      assert.strictEqual(yield* ctl(target, "server 0 blacklist 0"), "")
      const after = yield* askEach(lb.port, [ip(6), ip(7), ip(8), ip(9)])
      assert.include(after, "a", after.join(","))
      assert.includeMembers(["a", "b"], after)
    }))

  it.live("server 1 address/port: clients of slot 1 reach the new backend, and servers shows its port", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const c = yield* Backend.identity("c")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const target = targetOf(lb)

      // The first new client is sent to slot 1 and stays there.
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "b")

      assert.strictEqual(yield* ctl(target, `server 1 address 127.0.0.1 port ${c.port}`), "")
      const lines = serverLines(yield* ctl(target, "servers"))
      assert.deepStrictEqual(lines.map((l) => [l.index, l.addr, l.port]), [
        [0, "127.0.0.1", a.port],
        [1, "127.0.0.1", c.port]
      ])

      // The sticky client of slot 1, and the next new client sent there, reach c; b gets nothing more.
      assert.deepStrictEqual(yield* askEach(lb.port, [ip(2), ip(3), ip(4), ip(2)]), ["c", "a", "c", "c"])
      assert.strictEqual(b.accepted(), 1)
    }))

  it.live("server 3 weight 2 on two servers adds empty slots 2 and 3; traffic keeps flowing to the configured ones", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const target = targetOf(lb)

      assert.strictEqual(yield* ctl(target, "server 3 weight 2"), "")
      assert.strictEqual(
        yield* ctl(target, "servers"),
        idleLine(0, a.port) + idleLine(1, b.port) +
          "2 addr (unknown address family 0 port 0 conn 0 max 0 hard 0 weight 0 prio 0 sx 0 rx 0\n" +
          "3 addr (unknown address family 0 port 0 conn 0 max 0 hard 0 weight 2 prio 0 sx 0 rx 0\n"
      )

      const sources = [2, 3, 4, 5, 6, 7, 8, 9].map(ip)
      const names = yield* askEach(lb.port, sources)
      for (const [i, name] of names.entries()) assert.include(["a", "b"], name, `client ${sources[i]}: ${name}`)
      // And each client stays with the server it got.
      assert.deepStrictEqual(yield* askEach(lb.port, sources), names)
    }))
})

describe("recent", () => {
  it.live("lists the clients in pen's format with their connect counts", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* controlled()

      assert.deepStrictEqual(yield* askEach(lb.port, [ip(2), ip(3), ip(2), ip(2)]), ["a", "a", "a", "a"])
      const first = recentOf(yield* ctl(target, "recent"))
      // The control connections are no clients: only 127.0.0.2 and 127.0.0.3.
      assert.deepStrictEqual(first.connects, { "127.0.0.2": 3, "127.0.0.3": 1 })
      // Each connection received "a\n" and sent nothing; the byte counts may settle only once the connections closed.
      const want = { "127.0.0.2": [6, 0], "127.0.0.3": [2, 0] }
      let last = first
      for (let i = 0; i < 30 && canon(last.bytes) !== canon(want); i++) {
        yield* Effect.sleep("100 millis")
        last = recentOf(yield* ctl(target, "recent 300"))
      }
      assert.deepStrictEqual(last.bytes, want)
      assert.deepStrictEqual(last.connects, first.connects)
    }))
})

describe("robustness", () => {
  it.live("a control client that sends nothing holds up neither traffic nor other control clients", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const target = targetOf(lb)

      const silent = yield* Client.open(lb.control!.port)
      const sources = Array.from({ length: 20 }, (_, i) => ip(i + 2))
      const names = yield* askEach(lb.port, sources)
      for (const [i, name] of names.entries()) assert.include(["a", "b"], name, `client ${sources[i]}: ${name}`)
      assert.strictEqual(yield* ctl(target, "pid"), `${lb.pid}\n`)
      // Still connected and unanswered all along.
      assert.isUndefined(silent.ending)
      assert.strictEqual(silent.received, 0)
    }))

  it.live("a 5000-byte line is refused with a message; garbage gets an answer; nib keeps working", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* controlled()
      const port = lb.control!.port

      const long = yield* raw({ port }, `${"x".repeat(5000)}\n`)
      assert.match(long.reply, /^command line too long/)
      assert.strictEqual(long.reply, "command line too long: at most 4095 bytes\n")
      assert.strictEqual(yield* ctl(target, "mode"), MODE_DEFAULT)
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")

      // Bytes that are not UTF-8, NULs, control characters: an unknown command.
      const garbage = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x00, 0x01, 0x41, 0x0a])
      const answered = yield* raw({ port }, garbage)
      assert.strictEqual(answered.ending, "eof")
      assert.match(answered.reply, /^do_cmd: ignoring command starting with '/)
      // Only NULs and a newline.
      const nuls = yield* raw({ port }, Buffer.from([0x00, 0x00, 0x00, 0x0a]))
      assert.strictEqual(nuls.ending, "eof")
      assert.notStrictEqual(nuls.reply, "", "no answer to NULs")

      assert.strictEqual(yield* ctl(target, "pid"), `${lb.pid}\n`)
      assert.strictEqual(yield* Client.ask(lb.port, ip(3)), "a")
    }))

  it.live("a 5 MiB line: the reply, nib's EOF, then the client's whole line is read and both sides are closed", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* controlled()
      const idle = yield* Effect.promise(() => Fd.stable(lb.pid))
      const line = Buffer.alloc(5 * 1024 * 1024 + 1, "x")
      line[line.length - 1] = 0x0a

      // The client writes its line in one go, reads until nib's EOF, then ends its side, as penctl would: its end
      // completes only once nib has read every byte it sent.
      const seen = yield* Effect.promise(async () => {
        const socket = Net.connect({ host: "127.0.0.1", port: lb.control!.port, allowHalfOpen: true })
        const conn = new Client.Conn(socket)
        socket.once("connect", () => socket.write(line))
        try {
          const ending = await conn.ended(10_000)
          if (ending === "eof") socket.end()
          const closed = await conn.until(() => conn.closed, 10_000)
          return { reply: conn.data().toString("latin1"), ending, closed, unsent: socket.writableLength }
        } finally {
          conn.close()
        }
      })
      assert.deepStrictEqual(seen, {
        reply: "command line too long: at most 4095 bytes\n",
        ending: "eof",
        closed: true,
        unsent: 0
      })
      // nib's side is closed too: its descriptor count is back to where it was.
      const after = yield* Effect.promise(() => Fd.settle(lb.pid, idle, 5_000))
      assert.isAtMost(after, idle, `a control socket is still open: ${Fd.describe(lb.pid).join(", ")}`)
      assert.strictEqual(yield* ctl(target, "mode"), MODE_DEFAULT)
    }))

  it.live("a command followed by 5 MiB more: the reply to the first line, and both sides are closed", () =>
    Effect.gen(function*() {
      const { lb } = yield* controlled()
      const idle = yield* Effect.promise(() => Fd.stable(lb.pid))
      const rest = Buffer.alloc(5 * 1024 * 1024, "y\n")
      const seen = yield* Effect.promise(async () => {
        const socket = Net.connect({ host: "127.0.0.1", port: lb.control!.port, allowHalfOpen: true })
        const conn = new Client.Conn(socket)
        socket.once("connect", () => socket.write(Buffer.concat([Buffer.from("pid\n"), rest])))
        try {
          const ending = await conn.ended(10_000)
          if (ending === "eof") socket.end()
          const closed = await conn.until(() => conn.closed, 10_000)
          return { reply: conn.data().toString("latin1"), ending, closed }
        } finally {
          conn.close()
        }
      })
      assert.deepStrictEqual(seen, { reply: `${lb.pid}\n`, ending: "eof", closed: true })
      const after = yield* Effect.promise(() => Fd.settle(lb.pid, idle, 5_000))
      assert.isAtMost(after, idle, `a control socket is still open: ${Fd.describe(lb.pid).join(", ")}`)
    }))

  it.live("20 control commands in parallel all get their answers", () =>
    Effect.gen(function*() {
      const { a, lb, target } = yield* controlled()
      const commands: ReadonlyArray<readonly [string, string]> = [
        ["pid", `${lb.pid}\n`],
        ["mode", MODE_DEFAULT],
        ["servers", idleLine(0, a.port)],
        ["blacklist", "30\n"],
        ["clients_max", "2048\n"]
      ]
      const runs = Array.from({ length: 20 }, (_, i) => commands[i % commands.length]!)
      const replies = yield* Effect.forEach(runs, ([command]) => ctl(target, command), { concurrency: "unbounded" })
      assert.deepStrictEqual(replies, runs.map(([, reply]) => reply))
    }))

  it.live("200 control clients at once, in waves of 40 and all together: each is answered as one alone is; a data client is served meanwhile", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const port = lb.control!.port
      const alone = yield* raw({ port }, "servers\n")
      assert.deepStrictEqual(alone, { reply: idleLine(0, a.port) + idleLine(1, b.port), ending: "eof" })
      const idle = yield* Effect.promise(() => Fd.stable(lb.pid))

      // Five waves of 40, each sent as soon as the one before is connected, before its answers are in; then 200
      // clients connected at once, which all ask once every one is connected.
      for (const round of ["in waves of 40", "all together"] as const) {
        const together = round === "all together"
        const conns: Array<Client.Conn> = []
        for (let wave = 0; wave < (together ? 1 : 5); wave++) {
          const dialed = Array.from({ length: together ? BURST : 40 }, () => {
            // Closed as nib's EOF comes, as penctl closes once it has the reply.
            const conn = Client.dial(port, { allowHalfOpen: false })
            if (!together) conn.socket.once("connect", () => askServers(conn))
            return conn
          })
          conns.push(...dialed)
          yield* Poll.waitUntil(() => dialed.every((conn) => conn.connected || conn.ending !== undefined), 10_000)
        }
        // All together: once nib holds every one of them (or has closed some).
        if (together) {
          yield* Poll.waitUntil(
            () => Fd.count(lb.pid) >= idle + BURST || conns.some((conn) => conn.ending !== undefined),
            10_000
          )
        }
        const data = Client.askName(lb.port, ip(2), 10_000)
        if (together) conns.forEach((conn) => conn.ending === undefined && askServers(conn))
        const endings = yield* Effect.promise(() => Promise.all(conns.map((conn) => conn.ended(15_000))))
        const replies = conns.map((conn) => conn.data().toString("latin1"))
        conns.forEach((conn) => conn.close())
        const tally: Record<string, number> = {}
        for (const ending of endings) tally[ending] = (tally[ending] ?? 0) + 1
        assert.deepStrictEqual(tally, { eof: BURST }, `${round}: how the control connections ended`)
        for (const reply of replies) assert.deepStrictEqual(settingsOf(reply), settingsOf(alone.reply), reply)
        assert.include(["a", "b"], yield* Effect.promise(() => data), `${round}: the data client`)
      }
    }))

  it.live.skipIf(Fd.prlimit === undefined)(
    "past half of nib's descriptors, a control client is told so in one line and counted; none is reset",
    () =>
      Effect.gen(function*() {
        const a = yield* Backend.identity("a")
        const lb = yield* startLimited(LIMIT, [
          ...AS_USER,
          "--admin",
          "127.0.0.1:0",
          "-C",
          "127.0.0.1:0",
          "127.0.0.1:0",
          a.spec()
        ])
        const control = Nib.CONTROL.exec(lb.stderr())
        assert.isNotNull(control, lb.stderr())
        const port = Number(control![2])
        const idle = yield* Effect.promise(() => Fd.stable(lb.pid))
        // Clients that say nothing: nib serves half its limit of them at once, each waiting for its line.
        const served = LIMIT / 2
        const conns = Array.from({ length: served + OVER }, () => Client.dial(port))
        yield* Effect.addFinalizer(() => Effect.sync(() => conns.forEach((conn) => conn.close())))
        const told = () => conns.filter((conn) => conn.received > 0 && conn.ending !== undefined)
        yield* Poll.waitUntil(() => told().length >= OVER, 10_000)
        assert.deepStrictEqual(
          told().map((conn) => [conn.text(), conn.ending]),
          Array.from(
            { length: OVER },
            () => [`too many control clients at once (at most ${served}): try again later\n`, "eof"]
          )
        )
        assert.strictEqual(
          conns.filter((conn) => conn.received > 0).length,
          OVER,
          "only the clients past the share are told"
        )
        assert.deepStrictEqual(conns.filter((conn) => conn.ending === "reset" || conn.ending === "error"), [])
        // Counted where the user sees it: /metrics, and a warning in the log.
        const scrape = yield* Admin.scrape(Admin.baseUrl(lb))
        assert.strictEqual(Admin.valueOf(scrape, "nib_control_refused_total"), OVER)
        yield* Nib.logged(lb, "control port: refused a control client: ")

        // Once they are gone, a control client is answered again.
        conns.forEach((conn) => conn.close())
        assert.isAtMost(
          yield* Effect.promise(() => Fd.settle(lb.pid, idle, 5_000)),
          idle,
          Fd.describe(lb.pid).join(", ")
        )
        const reply = yield* raw({ port }, "servers\n")
        assert.deepStrictEqual(reply, { reply: idleLine(0, a.port), ending: "eof" })
      })
  )

  it.live.skipIf(Kernel.missing().includes("ss"))(
    "the control port's listen backlog is -q's, the data listener's",
    () =>
      Effect.gen(function*() {
        const a = yield* Backend.identity("a")
        const lb = yield* Nib.start([...AS_USER, "-q", "77", "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
        // (With --workers, each worker thread's listener is one more socket on the data port, each with the backlog.)
        assert.deepStrictEqual(backlogOf(lb.control!.port), [77])
        assert.include(backlogOf(lb.port), 77)
      })
  )

  it.live("raw: one command per connection (servers\\npid\\n gets the servers listing only); mode then half-close", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec(), b.spec()])
      const port = lb.control!.port

      assert.deepStrictEqual(yield* raw({ port }, "servers\npid\n"), {
        reply: idleLine(0, a.port) + idleLine(1, b.port),
        ending: "eof"
      })
      assert.deepStrictEqual(yield* raw({ port }, "mode", { end: true }), { reply: MODE_DEFAULT, ending: "eof" })
    }))
})

describe("control_acl", () => {
  it.live("acl 3 permit 127.0.0.2, control_acl 3: 127.0.0.1 is closed without a reply, 127.0.0.2 is served", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* controlled()
      const port = lb.control!.port

      assert.strictEqual(yield* ctl(target, "acl 3 permit 127.0.0.2"), "")
      assert.strictEqual(yield* ctl(target, "control_acl 3"), "3\n")

      const denied = yield* raw({ port }, "pid\n", { from: "127.0.0.1" })
      assert.strictEqual(denied.reply, "")
      assert.notStrictEqual(denied.ending, "timeout")
      // nibctl from 127.0.0.1 gets nothing either (it may see the close as an error writing or reading: exit 1).
      const refused = yield* Effect.promise(() => Nibctl.run([target, "pid"]))
      assert.deepStrictEqual({ stdout: refused.stdout.toString("latin1"), timedOut: refused.timedOut }, {
        stdout: "",
        timedOut: false
      })

      assert.deepStrictEqual(yield* raw({ port }, "control_acl\n", { from: "127.0.0.2" }), {
        reply: "3\n",
        ending: "eof"
      })
      // Traffic is not subject to the control ACL.
      assert.strictEqual(yield* Client.ask(lb.port, ip(1)), "a")

      assert.deepStrictEqual(yield* raw({ port }, "control_acl 0\n", { from: "127.0.0.2" }), {
        reply: "0\n",
        ending: "eof"
      })
      assert.strictEqual(yield* ctl(target, "pid"), `${lb.pid}\n`)
    }))
})

describe("debug N", () => {
  it.live("changes the log level of the running nib: control commands are logged at debug level 1 only", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* controlled()
      assert.strictEqual(yield* ctl(target, "mode"), MODE_DEFAULT)
      assert.strictEqual(yield* ctl(target, "debug 1"), "1\n")
      assert.strictEqual(yield* ctl(target, "recent 60"), "")
      assert.strictEqual(yield* ctl(target, "debug 0"), "0\n")
      assert.strictEqual(yield* ctl(target, "pid"), `${lb.pid}\n`)
      // "debug 0" itself is logged: the level changes after the command line is logged.
      assert.isTrue(yield* Poll.waitUntil(() => lb.stderr().includes("127.0.0.1: debug 0")), lb.stderr())
      assert.include(lb.stderr(), "DEBUG")
      assert.include(lb.stderr(), "127.0.0.1: recent 60")
      assert.notInclude(lb.stderr(), "127.0.0.1: mode")
      assert.notInclude(lb.stderr(), "127.0.0.1: pid")
    }))

  it.live("-d at start-up logs control commands from the start", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start([...AS_USER, "-d", "-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      assert.strictEqual(yield* ctl(targetOf(lb), "debug"), "1\n")
      assert.isTrue(yield* Poll.waitUntil(() => lb.stderr().includes("127.0.0.1: debug")), lb.stderr())
    }))
})

describe("listen ADDRESS", () => {
  it.live("moves the listener: new clients on the new port, the old one refuses, a held client goes on", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* controlled()
      const held = yield* Client.hold(lb.port, ip(2))
      assert.strictEqual(held.name, "a")

      const port = yield* Backend.freePort
      assert.strictEqual(yield* ctl(target, `listen 127.0.0.1:${port}`), "")
      assert.strictEqual(yield* ctl(target, "listen"), `127.0.0.1:${port}\n`)
      assert.strictEqual(yield* Client.ask(port, ip(3)), "a")
      const refused = yield* Client.opening(lb.port)
      assert.strictEqual(yield* Effect.promise(() => refused.ended()), "error")
      // The client accepted on the old port is still relayed.
      held.conn.socket.write("ping")
      assert.isTrue(yield* Effect.promise(() => held.conn.until(() => held.conn.text().endsWith("ping"), 5_000)))
    }))

  it.live("an address that cannot be bound is refused and nib keeps listening where it was", () =>
    Effect.gen(function*() {
      const { a, lb, target } = yield* controlled()
      const reply = yield* ctl(target, `listen 127.0.0.1:${a.port}`)
      assert.match(reply, new RegExp(`^listen: can't bind local address 127\\.0\\.0\\.1:${a.port}: .+\n$`))
      assert.strictEqual(yield* ctl(target, "listen"), `127.0.0.1:0\n`)
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
      assert.match(yield* ctl(target, "listen nonsense:x"), /^listen: 'nonsense:x': .+\n$/)
    }))
})

describe("exit", () => {
  it.live("without -X: pen's refusal, and nib keeps running", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* controlled()

      assert.strictEqual(yield* ctl(target, "exit"), "Exit is not enabled; restart with -X flag\n")
      assert.strictEqual(yield* ctl(target, "pid"), `${lb.pid}\n`)
      assert.isTrue(Nib.isAlive(lb.pid))
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
    }))

  it.live("with -X: nib exits with code 0", () =>
    Effect.gen(function*() {
      const { lb, target } = yield* controlled(["-X"])

      assert.strictEqual(yield* ctl(target, "exit"), "")
      const status = yield* Effect.promise(() =>
        Promise.race([lb.exited, new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 10_000))])
      )
      assert.deepStrictEqual(status, { code: 0, signal: null }, lb.stderr())
    }))
})

describe("where the control port is opened", () => {
  it.live.skipIf(!isRoot)(
    "as root without -u: pen's message, no control port, traffic served (skipped unless root)",
    () =>
      Effect.gen(function*() {
        const a = yield* Backend.identity("a")
        const lb = yield* Nib.start(["-C", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
        assert.include(lb.stderr(), ROOT_REFUSAL)
        assert.notInclude(lb.stderr(), "control port on")
        assert.isUndefined(lb.control)
        assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
      })
  )

  it.live("-C with a port alone binds 127.0.0.1", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start([...AS_USER, "-C", "0", "127.0.0.1:0", a.spec()])
      assert.match(lb.stderr(), /^nib: control port on 127\.0\.0\.1:\d+$/m)
      assert.strictEqual(lb.control?.host, "127.0.0.1")
      const target = targetOf(lb)
      assert.strictEqual(yield* ctl(target, "control"), "0\n")
      assert.strictEqual(yield* ctl(target, "pid"), `${lb.pid}\n`)
    }))

  it.live("a Unix socket path: nibctl with the path", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const path = Path.join(dir, "ctl.sock")
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start([...AS_USER, "-C", path, "127.0.0.1:0", a.spec()])
      assert.include(lb.stderr(), `nib: control port on ${path}\n`)
      assert.isTrue(Fs.statSync(path).isSocket())

      assert.strictEqual(yield* ctl(path, "pid"), `${lb.pid}\n`)
      assert.strictEqual(yield* ctl(path, "control"), `${path}\n`)
      assert.strictEqual(yield* ctl(path, "servers"), idleLine(0, a.port))
      assert.deepStrictEqual(yield* raw({ path }, "mode\n"), { reply: MODE_DEFAULT, ending: "eof" })
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
    }))
})

describe("-O at start-up", () => {
  it.live("-O roundrobin sets the mode; -O mode prints its reply on stdout", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([
        ...AS_USER,
        "-O",
        "roundrobin",
        "-O",
        "mode",
        "-C",
        "127.0.0.1:0",
        "127.0.0.1:0",
        a.spec(),
        b.spec()
      ])
      assert.strictEqual(yield* ctl(targetOf(lb), "mode"), MODE_ROUNDROBIN)
      assert.isTrue(yield* Poll.waitUntil(() => lb.stdout().includes(MODE_ROUNDROBIN)), lb.stdout())
      assert.strictEqual(lb.stdout(), MODE_ROUNDROBIN)
      // And it works: one client alternates.
      assert.deepStrictEqual(yield* askEach(lb.port, [ip(2), ip(2)]), ["b", "a"])
    }))

  it.live("-O \"server 0 max 7\" is overwritten by the positional server 0, as pen does", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const lb = yield* Nib.start([
        ...AS_USER,
        "-O",
        "server 0 max 7",
        "-C",
        "127.0.0.1:0",
        "127.0.0.1:0",
        a.spec(),
        b.spec()
      ])
      assert.strictEqual(yield* ctl(targetOf(lb), "servers"), idleLine(0, a.port) + idleLine(1, b.port))
    }))
})
