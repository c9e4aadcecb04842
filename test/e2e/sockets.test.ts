/**
 * pen's socket settings through the real CLI (`npm run -s build` first): `source`, `keepalive`, `tcp_nodelay` and
 * `tcp_fastclose`, set on the control port and seen where they act (the address a server sees, the kernel's keepalive
 * timer with `ss`, TCP_NODELAY calls with `strace`, which side's close ends a connection), on every worker thread
 * (the suite runs again with `--workers 2`: each check then holds connections that `workers` shows spread over both);
 * `write` saving them and `-F` reading them back; and DSR (`dsr_if`, `dsr_ip`, `tarpit_acl`) refused from the control
 * port, `-O` and `-F`. Side by side with pen: test/compat/sockets.test.ts.
 *
 * Without `ss` or `strace` the checks that need them are skipped, visibly. Every wait is bounded; nothing asserts a
 * duration.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Kernel from "../utils/Kernel.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"

const missing = Kernel.missing()
if (missing.length > 0) {
  console.warn(`e2e/sockets: ${missing.join(", ")} not found: the checks that need it are SKIPPED`)
}

const isRoot = process.getuid?.() === 0
/** As root, nib opens the control port only with `-u`. */
const AS_USER: ReadonlyArray<string> = isRoot ? ["-u", "root"] : []

const ctl = Nibctl.ask

/** Connections each check holds at once: with --workers 2, enough that both workers serve some. */
const N = 12

/** nib with a control port over the servers `specs` (and `extra` options first). */
const nib = (specs: ReadonlyArray<string>, extra: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const lb = yield* Nib.start([...AS_USER, ...extra, "-C", "127.0.0.1:0", "127.0.0.1:0", ...specs])
    return { lb, target: Nibctl.targetOf(lb) }
  })

/** With --workers, that every worker thread serves some of the connections open now (`workers`). */
const everyWorkerServes = (target: string) =>
  Effect.gen(function*() {
    if (Nib.WORKERS.length === 0) return
    const text = yield* ctl(target, "workers")
    const conns = [...text.matchAll(/ conn (\d+) /g)].map((m) => Number(m[1]))
    assert.isTrue(conns.length === Number(Nib.WORKERS[1]) && conns.every((n) => n > 0), `workers:\n${text}`)
  })

/** `n` connections to `port` held for the length of the scope, each answered (the identity server's name). */
const holdMany = (port: number, n = N) =>
  Effect.forEach(Array.from({ length: n }, (_, i) => i), () => Client.hold(port))

/** A server that answers with its name and echoes (identity), recording the address each connection comes from. */
const recording = (name: string) =>
  Effect.gen(function*() {
    const peers: Array<string | undefined> = []
    const backend = yield* Backend.custom(name, (socket) => {
      peers.push(socket.remoteAddress)
      Backend.identityHandler(name)(socket)
    })
    return { backend, peers }
  })

describe("source", () => {
  it.live("source ADDRESS: every worker dials from it; a bad one gets pen's reply and changes nothing; no source", () =>
    Effect.gen(function*() {
      const { backend, peers } = yield* recording("a")
      const { lb, target } = yield* nib([backend.spec()])
      assert.strictEqual(yield* ctl(target, "source"), "", "none at start")
      assert.strictEqual(yield* ctl(target, "source 127.0.0.2"), "")
      assert.strictEqual(yield* ctl(target, "source"), "127.0.0.2\n")
      yield* Effect.scoped(Effect.gen(function*() {
        const held = yield* holdMany(lb.port)
        assert.deepStrictEqual(held.map((h) => h.name), Array(N).fill("a"))
        yield* everyWorkerServes(target)
      }))
      assert.deepStrictEqual(peers, Array(N).fill("127.0.0.2"))
      // pen's reply, with no line end; the address in force stays.
      assert.strictEqual(yield* ctl(target, "source 192.0.2.1"), "unable to set source address to '192.0.2.1'")
      assert.strictEqual(
        yield* ctl(target, "source no-such-host.invalid"),
        "unable to set source address to 'no-such-host.invalid'"
      )
      assert.strictEqual(yield* ctl(target, "source"), "127.0.0.2\n")
      assert.strictEqual(yield* Client.ask(lb.port), "a")
      assert.strictEqual(peers.at(-1), "127.0.0.2")
      // nib's own `no source`: the system's choice again.
      assert.strictEqual(yield* ctl(target, "no source"), "")
      assert.strictEqual(yield* ctl(target, "source"), "")
      yield* Effect.scoped(Effect.gen(function*() {
        yield* holdMany(lb.port)
        yield* everyWorkerServes(target)
      }))
      assert.deepStrictEqual(peers.slice(-N), Array(N).fill("127.0.0.1"))
    }))

  it.live("source NAME is resolved when given; a server of the other family is dialed without it", () =>
    Effect.gen(function*() {
      const { backend, peers } = yield* recording("a")
      const { lb, target } = yield* nib([backend.spec()])
      assert.strictEqual(yield* ctl(target, "source localhost"), "")
      assert.include(["127.0.0.1\n", "::1\n"], yield* ctl(target, "source"))
      assert.strictEqual(yield* ctl(target, "source ::1"), "")
      assert.strictEqual(yield* ctl(target, "source"), "::1\n")
      // An IPv4 server: pen's bind of ::1 would fail and it would dial from the system's choice; so does nib.
      assert.strictEqual(yield* Client.ask(lb.port), "a")
      assert.strictEqual(peers.at(-1), "127.0.0.1")
    }))
})

describe("keepalive", () => {
  it.live.skipIf(missing.includes("ss"))(
    "client sockets always have SO_KEEPALIVE; server sockets dialed after `keepalive` do, after `no keepalive` not",
    () =>
      Effect.gen(function*() {
        const a = yield* Backend.identity("a")
        const { lb, target } = yield* nib([a.spec()])
        /** The timers of nib's client and server sockets, with N connections held; closed afterwards. */
        const timers = Effect.scoped(Effect.gen(function*() {
          yield* holdMany(lb.port)
          yield* everyWorkerServes(target)
          const clients = yield* Effect.promise(() => Kernel.settled("local", lb.port, N))
          const servers = yield* Effect.promise(() => Kernel.settled("peer", a.port, N))
          return {
            clients: clients.map((s) => s.timer ?? "none"),
            servers: servers.map((s) => s.timer ?? "none")
          }
        })).pipe(Effect.tap(() => Poll.waitUntil(() => Kernel.established("peer", a.port).length === 0)))
        const keepalive = Array(N).fill("keepalive")
        const none = Array(N).fill("none")
        assert.deepStrictEqual(yield* timers, { clients: keepalive, servers: none }, "at start")
        assert.strictEqual(yield* ctl(target, "keepalive"), "")
        assert.deepStrictEqual(yield* timers, { clients: keepalive, servers: keepalive }, "after keepalive")
        assert.strictEqual(yield* ctl(target, "no keepalive"), "")
        assert.deepStrictEqual(yield* timers, { clients: keepalive, servers: none }, "after no keepalive")
      })
  )
})

describe("tcp_nodelay", () => {
  /** A server that answers one line with one line, in one write, and keeps the connection open. */
  const pong = Backend.custom("pong", (socket) => socket.once("data", () => socket.write("pong\n")))

  it.live.skipIf(missing.includes("strace"))(
    "on: TCP_NODELAY on both sockets of each connection from its start; off (nib's rule): not before a second write",
    () =>
      Effect.gen(function*() {
        const server = yield* pong
        const { lb, target } = yield* nib([server.spec()])
        const dir = yield* Nib.tempDir
        /** The TCP_NODELAY calls nib makes for N connections that write once each way (held until counted). */
        const calls = Effect.scoped(Effect.gen(function*() {
          const trace = yield* Effect.promise(() => Kernel.traceSetsockopt(lb.pid, dir))
          const conns = yield* Effect.forEach(Array.from({ length: N }, (_, i) => i), () => Client.open(lb.port))
          for (const conn of conns) conn.socket.write("ping\n")
          for (const conn of conns) {
            assert.isTrue(yield* Effect.promise(() => conn.until(() => conn.text() === "pong\n", 5_000)), conn.text())
          }
          const seen = Kernel.noDelayCalls(yield* Effect.promise(trace.stop))
          yield* everyWorkerServes(target)
          return seen
        }))
        assert.strictEqual((yield* calls).count, 0, "one write each way: Nagle never held anything, nothing set")
        assert.strictEqual(yield* ctl(target, "tcp_nodelay"), "")
        const on = yield* calls
        assert.strictEqual(on.count, 2 * N, "the client's socket and the server's, each connection")
        if (Nib.WORKERS.length > 0) assert.strictEqual(on.threads.size, Number(Nib.WORKERS[1]), "every worker")
        assert.strictEqual(yield* ctl(target, "no tcp_nodelay"), "")
        assert.strictEqual((yield* calls).count, 0, "off again")
      })
  )
})

/** Whether `servers` comes to count no connection (polled, at most 5 s). */
const noneLive = (target: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 50; i++) {
      const text = yield* ctl(target, "servers")
      if ([...text.matchAll(/ conn (\d+) /g)].every((m) => m[1] === "0")) return true
      yield* Effect.sleep(100)
    }
    return false
  })

describe("tcp_fastclose", () => {
  /** A server that greets each connection with its name and keeps it (half-open allowed); `close` ends them all. */
  const closingServer = Effect.gen(function*() {
    const open: Array<{ socket: Net.Socket; received: string; ended: boolean }> = []
    const backend = yield* Backend.custom("s", (socket) => {
      const entry = { socket, received: "", ended: false }
      open.push(entry)
      socket.setEncoding("utf8")
      socket.on("data", (chunk: string) => (entry.received += chunk))
      socket.on("end", () => (entry.ended = true))
      socket.on("close", () => (entry.ended = true))
      // Answers the client's EOF, as a server that replies to a whole request would.
      socket.on("end", () => {
        if (!socket.destroyed) socket.end("reply\n")
      })
      socket.write("s\n")
    }, { allowHalfOpen: true })
    return { backend, open }
  })

  it.live("up: the server's close ends the whole connection on every worker, clients still open; off: a half-close", () =>
    Effect.gen(function*() {
      const server = yield* closingServer
      const { lb, target } = yield* nib([server.backend.spec()])
      // Off (pen's default): the server's FIN reaches the client, and the client's bytes still reach the server.
      yield* Effect.scoped(Effect.gen(function*() {
        const held = yield* Client.hold(lb.port)
        const entry = server.open.at(-1)!
        entry.socket.end()
        assert.strictEqual(yield* Effect.promise(() => held.conn.ended()), "eof")
        held.conn.socket.write("more\n")
        assert.isTrue(yield* Poll.waitUntil(() => entry.received === "more\n"), "the half-open connection carried it")
        assert.isFalse(entry.ended, "nib did not close the server's side")
      }))
      assert.strictEqual(yield* ctl(target, "tcp_fastclose up"), "")
      yield* Effect.scoped(Effect.gen(function*() {
        const before = server.open.length
        const held = yield* holdMany(lb.port)
        yield* everyWorkerServes(target)
        for (const entry of server.open.slice(before)) entry.socket.end()
        for (const { conn } of held) assert.strictEqual(yield* Effect.promise(() => conn.ended()), "eof")
        // Every connection ended at nib, though no client closed its side.
        assert.isTrue(
          yield* Poll.waitUntil(() => server.open.slice(before).every((e) => e.ended)),
          "servers saw nib close"
        )
        assert.isTrue(yield* noneLive(target), "servers shows no connection")
        assert.isTrue(held.every(({ conn }) => !conn.socket.writableEnded), "no client closed its side")
      }))
    }))

  it.live("a change reaches connections already open: pen reads the setting at the close", () =>
    Effect.gen(function*() {
      const server = yield* closingServer
      const { lb, target } = yield* nib([server.backend.spec()])
      const held = yield* holdMany(lb.port)
      const entries = server.open.slice()
      yield* everyWorkerServes(target)
      assert.strictEqual(yield* ctl(target, "tcp_fastclose both"), "")
      for (const entry of entries) entry.socket.end()
      for (const { conn } of held) assert.strictEqual(yield* Effect.promise(() => conn.ended()), "eof")
      assert.isTrue(yield* Poll.waitUntil(() => entries.every((e) => e.ended)), "servers saw nib close")
      assert.isTrue(yield* noneLive(target), "servers shows no connection")
    }))

  it.live("down: the client's half-close ends the whole connection (the reply is lost); off: the reply arrives", () =>
    Effect.gen(function*() {
      const server = yield* closingServer
      const { lb, target } = yield* nib([server.backend.spec()])
      /** N clients that each send a request and half-close: what each received, once the connection ended. */
      const requests = Effect.scoped(Effect.gen(function*() {
        const held = yield* holdMany(lb.port)
        yield* everyWorkerServes(target)
        for (const { conn } of held) conn.socket.end("request\n")
        for (const { conn } of held) assert.strictEqual(yield* Effect.promise(() => conn.ended()), "eof")
        return held.map(({ conn }) => conn.text())
      }))
      assert.deepStrictEqual(yield* requests, Array(N).fill("s\nreply\n"), "off: half-close honoured")
      assert.strictEqual(yield* ctl(target, "tcp_fastclose down"), "")
      const before = server.open.length
      assert.deepStrictEqual(yield* requests, Array(N).fill("s\n"), "down: nothing after the client's close")
      // Each server got the request whole before nib closed.
      assert.isTrue(yield* Poll.waitUntil(() => server.open.slice(before).every((e) => e.ended)))
      assert.deepStrictEqual(server.open.slice(before).map((e) => e.received), Array(N).fill("request\n"))
      assert.isTrue(yield* noneLive(target), "servers shows no connection")
      // No mode: pen's message, and the mode stays.
      assert.strictEqual(yield* ctl(target, "tcp_fastclose"), "do_cmd: ignoring tcp_fastclose without argument\n")
      assert.deepStrictEqual(yield* requests, Array(N).fill("s\n"))
    }))
})

describe("write and -F", () => {
  it.live("write saves the settings (pen's lines and nib's keepalive and source), and -F reads them back", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const dir = yield* Nib.tempDir
      const { target } = yield* nib([a.spec()])
      for (const line of ["keepalive", "tcp_nodelay", "tcp_fastclose down", "source 127.0.0.2"]) {
        assert.strictEqual(yield* ctl(target, line), "", line)
      }
      const file = Path.join(dir, "saved.cfg")
      assert.strictEqual(yield* ctl(target, `write ${file}`), "")
      const lines = Fs.readFileSync(file, "utf8").split("\n")
      for (const line of ["tcp_fastclose down", "tcp_nodelay", "keepalive", "source 127.0.0.2"]) {
        assert.include(lines, line)
      }
      assert.notInclude(lines, "no tcp_nodelay")
      // A second nib started from the file has them all: its own write says the same (its comment lines aside).
      const second = yield* nib([], ["-F", file])
      assert.strictEqual(yield* ctl(second.target, "source"), "127.0.0.2\n")
      const again = Path.join(dir, "again.cfg")
      assert.strictEqual(yield* ctl(second.target, `write ${again}`), "")
      assert.deepStrictEqual(Fs.readFileSync(again, "utf8").split("\n").slice(2), lines.slice(2))
    }))
})

describe("DSR is refused", () => {
  const DSR = /^(dsr_if|dsr_ip): direct server return needs raw Ethernet frames, which Node cannot send: .+\n$/
  const TARPIT = /^tarpit_acl: the tarpit of direct server return .+ raw packets, which Node cannot send\n$/

  it.live("on the control port: dsr_if, dsr_ip and tarpit_acl N, one line each; tarpit_acl alone is pen's query", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const { lb, target } = yield* nib([a.spec()])
      assert.match(yield* ctl(target, "dsr_if eth0"), DSR)
      assert.match(yield* ctl(target, "dsr_ip 10.0.0.1"), DSR)
      assert.match(yield* ctl(target, "tarpit_acl 2"), TARPIT)
      assert.strictEqual(yield* ctl(target, "tarpit_acl"), "tarpit_acl = -1")
      assert.strictEqual(yield* ctl(target, "tarpit_acl -1"), "tarpit_acl = -1")
      assert.strictEqual(yield* Client.ask(lb.port), "a")
    }))

  it.live("from -O and -F: the line on stdout, as pen prints its replies there; nib serves on", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const dir = yield* Nib.tempDir
      const file = Path.join(dir, "dsr.cfg")
      Fs.writeFileSync(file, "dsr_ip 10.0.0.1\ntarpit_acl 3\n")
      const { lb } = yield* nib([a.spec()], ["-O", "dsr_if eth1", "-F", file])
      assert.isTrue(yield* Poll.waitUntil(() => lb.stdout().split("\n").length >= 4), lb.stdout())
      const out = lb.stdout().split("\n").map((line) => `${line}\n`).slice(0, 3)
      assert.match(out[0]!, DSR)
      assert.match(out[1]!, DSR)
      assert.match(out[2]!, TARPIT)
      assert.strictEqual(yield* Client.ask(lb.port), "a")
    }))
})
