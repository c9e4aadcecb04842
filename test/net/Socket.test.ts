/**
 * The byte path's Node primitives on their own: `dialTarget` (TCP and Unix forms, half-open allowed), `connect`
 * (reaches a listening server, refused by a closed port, keeps its writable side after the server's FIN), `Dialer`
 * (pen's `source` as the address a server sees) and `localAddress` (what `source` accepts), and
 * `DeadlineQueue` (connect deadlines in one FIFO with one timer) against a server whose accept queue is full.
 *
 * The relay itself (half-close, resets, byte totals) is tested through nib's proxy in test/proxy/TcpProxy.test.ts.
 *
 * No test asserts a duration. "Never reported" is shown by order, not by waiting: every queue entry has the same
 * timeout, so once a later entry (a sentinel) has been reported, every earlier entry's deadline has passed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Path from "node:path"
import * as Address from "../../src/domain/Address.ts"
import * as Relay from "../../src/net/Relay.ts"
import * as Socket from "../../src/net/Socket.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Poll from "../utils/Poll.ts"
import * as Unix from "../utils/Unix.ts"

const HOST = "127.0.0.1"
/** The connect timeout of the queues under test (short: the tests wait for it to pass, never measure it). */
const TIMEOUT_MS = 250

const tcpTarget = (port: number) => Socket.dialTarget(Address.tcp(HOST, port))

/**
 * A connection started with `Socket.connect` and recorded by a `Conn`; destroyed when the scope closes. The bytes go
 * to the `Conn`'s `data` listener here, not to a relay, so the target's `onread` (test/net/Relay.test.ts) is left out.
 */
const dialing = (target: Socket.DialTarget) =>
  Effect.acquireRelease(
    Effect.sync(() => new Client.Conn(Socket.connect({ ...target, onread: undefined }))),
    (conn) => Effect.sync(() => conn.close())
  )

/** A queue for the length of the scope (closed with it). */
const queue = (timeoutMillis = TIMEOUT_MS) =>
  Effect.acquireRelease(
    Effect.sync(() => new Socket.DeadlineQueue(timeoutMillis)),
    (q) => Effect.sync(() => q.close())
  )

/** One `connectTimedOut` call: which dialer, which socket, and the socket's state at that moment. */
interface Report {
  readonly dialer: string
  readonly socket: Socket.Socket
  readonly connecting: boolean
  readonly destroyed: boolean
}

/** Dialers that record every `connectTimedOut` call they get, in one log. */
const recorder = () => {
  const reports: Array<Report> = []
  const dialer = (name: string): Socket.Dialing => ({
    connectTimedOut: (socket) =>
      reports.push({ dialer: name, socket, connecting: socket.connecting, destroyed: socket.destroyed })
  })
  const names = () => reports.map((r) => r.dialer)
  /** Waits (bounded) until `n` calls have been recorded. */
  const reach = (n: number) =>
    Effect.gen(function*() {
      const ok = yield* Poll.waitUntil(() => reports.length >= n)
      assert.isTrue(ok, `expected ${n} connectTimedOut calls, got ${JSON.stringify(names())}`)
    })
  return { reports, dialer, names, reach }
}

/**
 * A dialer that does what TcpProxy's Session does when its dial times out: it fails over, dialing `next` and adding it
 * to the same queue, from inside the queue's own timer run. Its reports are "first" (for `first`) and "second".
 */
const failingOver = (
  q: Socket.DeadlineQueue,
  log: ReturnType<typeof recorder>,
  first: Socket.Socket,
  next: Socket.Socket
): Socket.Dialing => {
  const recordFirst = log.dialer("first")
  return {
    connectTimedOut: (socket) => {
      recordFirst.connectTimedOut(socket)
      if (socket === first) q.add(log.dialer("second"), next)
    }
  }
}

/**
 * A server that never accepts, its accept queue filled: connections to it stay "connecting" (their SYNs are dropped).
 * `dial` starts one such connection for the length of the scope.
 */
const stuckServer = Effect.gen(function*() {
  const stuck = yield* Backend.unresponsive
  assert.isTrue(yield* stuck.fill(), "the unresponsive server's accept queue never filled")
  const target = tcpTarget(stuck.port)
  const dial = Effect.map(dialing(target), (conn) => {
    assert.isTrue(conn.socket.connecting, "a dial to the full server is still connecting")
    return conn
  })
  return { target, dial }
})

/**
 * A stand-in for a socket, for the queue alone (it reads only `connecting` and `destroyed`): real sockets by the
 * thousand would only slow the test down.
 */
const fakeSocket = (connecting: boolean) => ({ connecting, destroyed: false }) as unknown as Socket.Socket

describe("dialTarget", () => {
  it("TCP: host and port, half-open allowed, reads into the relay's shared buffer", () => {
    assert.deepStrictEqual(Socket.dialTarget(Address.tcp("127.0.0.1", 8080)), {
      host: "127.0.0.1",
      port: 8080,
      allowHalfOpen: true,
      onread: Relay.readOptions
    })
    assert.deepStrictEqual(Socket.dialTarget(Address.tcp("::1", 1)), {
      host: "::1",
      port: 1,
      allowHalfOpen: true,
      onread: Relay.readOptions
    })
  })

  it("Unix: the socket path only, half-open allowed, reads into the relay's shared buffer", () => {
    assert.deepStrictEqual(Socket.dialTarget(Address.unix("/run/nib/server.sock")), {
      path: "/run/nib/server.sock",
      allowHalfOpen: true,
      onread: Relay.readOptions
    })
  })
})

describe("connect", () => {
  it.live("reaches a listening server: its greeting arrives, and its echo", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const conn = yield* dialing(tcpTarget(a.port))
      assert.deepStrictEqual(yield* Effect.promise(() => conn.firstLine()), { _tag: "Line", line: "a" })
      assert.isTrue(conn.connected)
      assert.isTrue(conn.socket.allowHalfOpen)
      conn.socket.write("ping")
      assert.isTrue(yield* Effect.promise(() => conn.until(() => conn.text() === "a\nping", 5_000)), conn.text())
      assert.strictEqual(a.accepted(), 1)
    }).pipe(Effect.scoped))

  it.live("to a closed port: the connection fails with ECONNREFUSED", () =>
    Effect.gen(function*() {
      const port = yield* Backend.freePort
      const conn = yield* dialing(tcpTarget(port))
      assert.strictEqual(yield* Effect.promise(() => conn.ended()), "error")
      assert.strictEqual(conn.error?.code, "ECONNREFUSED")
      assert.isFalse(conn.connected)
      assert.isTrue(yield* Poll.waitUntil(() => conn.socket.destroyed), "a refused socket is destroyed")
    }).pipe(Effect.scoped))

  it.live("half-open: after the server's FIN the socket can still send, and the server gets it", () =>
    Effect.gen(function*() {
      const served: Array<Client.Conn> = []
      const server = yield* Backend.custom("h", (socket) => {
        served.push(new Client.Conn(socket))
        socket.end("bye")
      }, { allowHalfOpen: true })
      const conn = yield* dialing(tcpTarget(server.port))
      assert.strictEqual(yield* Effect.promise(() => conn.ended()), "eof")
      assert.strictEqual(conn.text(), "bye")
      assert.isTrue(conn.socket.writable, "the socket's writable side outlived the server's FIN")
      conn.socket.end("after the FIN")
      assert.isTrue(yield* Poll.waitUntil(() => served.length === 1), "the server never accepted")
      const seen = served[0]!
      assert.strictEqual(yield* Effect.promise(() => seen.ended()), "eof")
      assert.strictEqual(seen.text(), "after the FIN")
    }).pipe(Effect.scoped))

  it.live("reaches a server on a Unix socket path", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const path = Path.join(dir, "server.sock")
      yield* Unix.identity("u", path)
      const conn = yield* dialing(Socket.dialTarget(Address.unix(path)))
      assert.deepStrictEqual(yield* Effect.promise(() => conn.firstLine()), { _tag: "Line", line: "u" })
      assert.isTrue(conn.socket.allowHalfOpen)
    }).pipe(Effect.scoped))
})

/** A server that records the address each connection comes from. */
const recordingPeers = Effect.gen(function*() {
  const peers: Array<string | undefined> = []
  const server = yield* Backend.custom("peers", (socket) => {
    peers.push(socket.remoteAddress)
    socket.end()
  })
  /** The address of connection `n` (1-based), once the server has accepted it. */
  const peer = (n: number) =>
    Effect.gen(function*() {
      assert.isTrue(yield* Poll.waitUntil(() => peers.length >= n), `the server never accepted connection ${n}`)
      return peers[n - 1]
    })
  return { port: server.port, peer }
})

/** A connection started by `dialer` to `target` (reading with data events), destroyed when the scope closes. */
const dialedBy = (dialer: Socket.Dialer, target: Socket.DialTarget) =>
  Effect.acquireRelease(
    Effect.sync(() => new Client.Conn(dialer.connect({ ...target, onread: undefined }))),
    (conn) => Effect.sync(() => conn.close())
  )

describe("Dialer", () => {
  it.live("source: the server sees the local address; back to the system's choice once it is unset", () =>
    Effect.gen(function*() {
      const server = yield* recordingPeers
      const dialer = new Socket.Dialer()
      const target = { ...tcpTarget(server.port), onread: undefined }
      yield* dialedBy(dialer, target)
      assert.strictEqual(yield* server.peer(1), "127.0.0.1")
      dialer.set({ keepAlive: false, noDelay: false, localAddress: "127.0.0.2" })
      // Twice to the same server: the options derived on the first dial serve the second.
      yield* dialedBy(dialer, target)
      yield* dialedBy(dialer, target)
      assert.strictEqual(yield* server.peer(2), "127.0.0.2")
      assert.strictEqual(yield* server.peer(3), "127.0.0.2")
      dialer.set({ keepAlive: true, noDelay: true, localAddress: "127.0.0.3" })
      yield* dialedBy(dialer, target)
      assert.strictEqual(yield* server.peer(4), "127.0.0.3", "a change reaches the dials after it")
      dialer.set({ keepAlive: false, noDelay: false, localAddress: undefined })
      yield* dialedBy(dialer, target)
      assert.strictEqual(yield* server.peer(5), "127.0.0.1")
    }).pipe(Effect.scoped))

  it.live("an IPv6 source and an IPv4 server: dialed from the system's choice (pen's bind fails, it connects on)", () =>
    Effect.gen(function*() {
      const server = yield* recordingPeers
      const dialer = new Socket.Dialer()
      dialer.set({ keepAlive: true, noDelay: true, localAddress: "::1" })
      const conn = yield* dialedBy(dialer, tcpTarget(server.port))
      assert.strictEqual(yield* server.peer(1), "127.0.0.1")
      assert.strictEqual(yield* Effect.promise(() => conn.ended()), "eof", "connected, then the server's FIN")
    }).pipe(Effect.scoped))

  it.live("a Unix socket server takes none of the settings, and is reached", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const path = Path.join(dir, "server.sock")
      yield* Unix.identity("u", path)
      const dialer = new Socket.Dialer()
      dialer.set({ keepAlive: true, noDelay: true, localAddress: "127.0.0.2" })
      const conn = yield* dialedBy(dialer, Socket.dialTarget(Address.unix(path)))
      assert.deepStrictEqual(yield* Effect.promise(() => conn.firstLine()), { _tag: "Line", line: "u" })
    }).pipe(Effect.scoped))
})

describe("localAddress", () => {
  it.live("an address of this host is taken, a name is resolved to one", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* Socket.localAddress("127.0.0.2"), "127.0.0.2")
      assert.strictEqual(yield* Socket.localAddress("::1"), "::1")
      assert.include(["127.0.0.1", "::1"], yield* Socket.localAddress("localhost"))
    }))

  it.live("an address that is not this host's, a name that does not resolve, a path: pen's reply, no line end", () =>
    Effect.gen(function*() {
      for (const text of ["192.0.2.1", "no-such-host.invalid", "/tmp/x.sock", "127.0.0.2:80"]) {
        const error = yield* Effect.flip(Socket.localAddress(text))
        assert.strictEqual(error.message, `unable to set source address to '${text}'`)
      }
    }))
})

describe("DeadlineQueue", () => {
  it.live("a socket still connecting at its deadline is reported once, to its dialer, and left as it is", () =>
    Effect.gen(function*() {
      const stuck = yield* stuckServer
      const q = yield* queue()
      const log = recorder()
      const conn = yield* stuck.dial
      q.add(log.dialer("a"), conn.socket)
      yield* log.reach(1)
      assert.strictEqual(log.reports[0]!.socket, conn.socket)
      assert.isTrue(log.reports[0]!.connecting)
      assert.isFalse(log.reports[0]!.destroyed)
      // The queue only reports: what to do with the socket is the dialer's business.
      assert.isFalse(conn.socket.destroyed)
      // Once: a later entry is reported, and "a" not again.
      const sentinel = yield* stuck.dial
      q.add(log.dialer("sentinel"), sentinel.socket)
      yield* log.reach(2)
      assert.deepStrictEqual(log.names(), ["a", "sentinel"])
      assert.strictEqual(log.reports[1]!.socket, sentinel.socket)
    }).pipe(Effect.scoped))

  it.live("a socket that connected before its deadline is never reported", () =>
    Effect.gen(function*() {
      const stuck = yield* stuckServer
      const a = yield* Backend.identity("a")
      const q = yield* queue()
      const log = recorder()
      const conn = yield* dialing(tcpTarget(a.port))
      assert.isTrue(conn.socket.connecting)
      q.add(log.dialer("connected"), conn.socket)
      assert.deepStrictEqual(yield* Effect.promise(() => conn.firstLine()), { _tag: "Line", line: "a" })
      assert.isTrue(conn.connected)
      const sentinel = yield* stuck.dial
      q.add(log.dialer("sentinel"), sentinel.socket)
      yield* log.reach(1)
      assert.deepStrictEqual(log.names(), ["sentinel"])
      // Still connected: the queue left it alone.
      assert.isFalse(conn.socket.destroyed)
    }).pipe(Effect.scoped))

  it.live("a destroyed socket, or one whose connect failed, is never reported", () =>
    Effect.gen(function*() {
      const stuck = yield* stuckServer
      const q = yield* queue()
      const log = recorder()
      const doomed = yield* stuck.dial
      q.add(log.dialer("destroyed"), doomed.socket)
      doomed.close()
      const refused = yield* dialing(tcpTarget(yield* Backend.freePort))
      q.add(log.dialer("refused"), refused.socket)
      assert.strictEqual(yield* Effect.promise(() => refused.ended()), "error")
      const sentinel = yield* stuck.dial
      q.add(log.dialer("sentinel"), sentinel.socket)
      yield* log.reach(1)
      assert.deepStrictEqual(log.names(), ["sentinel"])
    }).pipe(Effect.scoped))

  it.live("several dials are reported in the order they were added, each once, with their own socket", () =>
    Effect.gen(function*() {
      const stuck = yield* stuckServer
      const q = yield* queue()
      const log = recorder()
      const one = log.dialer("one")
      const two = log.dialer("two")
      const add = (dialer: Socket.Dialing) =>
        Effect.gen(function*() {
          const conn = yield* stuck.dial
          q.add(dialer, conn.socket)
          return conn.socket
        })
      // A dialer with two dials at once, then dials spread out, so deadlines fall both in one timer run and in
      // later runs (the timer re-armed while entries remain).
      const s1 = yield* add(one)
      const s2 = yield* add(two)
      const s3 = yield* add(one)
      yield* Effect.sleep("40 millis")
      const s4 = yield* add(two)
      yield* Effect.sleep("40 millis")
      const s5 = yield* add(one)
      yield* log.reach(5)
      const sentinel = yield* stuck.dial
      q.add(log.dialer("sentinel"), sentinel.socket)
      yield* log.reach(6)
      assert.deepStrictEqual(log.names(), ["one", "two", "one", "two", "one", "sentinel"])
      assert.deepStrictEqual(log.reports.map((r) => r.socket), [s1, s2, s3, s4, s5, sentinel.socket])
      assert.isTrue(log.reports.every((r) => r.connecting && !r.destroyed))
    }).pipe(Effect.scoped))

  it.live("after close() nothing more is reported", () =>
    Effect.gen(function*() {
      const stuck = yield* stuckServer
      const q = yield* queue()
      const log = recorder()
      const a = yield* stuck.dial
      q.add(log.dialer("a"), a.socket)
      yield* log.reach(1)
      const b = yield* stuck.dial
      const c = yield* stuck.dial
      q.add(log.dialer("b"), b.socket)
      q.add(log.dialer("c"), c.socket)
      q.close()
      // The clock: a queue with a longer timeout, started after b and c were added.
      const clock = yield* queue(2 * TIMEOUT_MS)
      const sentinel = yield* stuck.dial
      clock.add(log.dialer("clock"), sentinel.socket)
      yield* log.reach(2)
      assert.deepStrictEqual(log.names(), ["a", "clock"])
      assert.isTrue(b.socket.connecting && c.socket.connecting, "b and c were still connecting at their deadlines")
    }).pipe(Effect.scoped))

  it.live("after close() nothing more is reported, even if a dialer re-dialed from connectTimedOut (failover)", () =>
    Effect.gen(function*() {
      const stuck = yield* stuckServer
      const q = yield* queue()
      const log = recorder()
      const first = yield* stuck.dial
      const second = yield* stuck.dial
      q.add(failingOver(q, log, first.socket, second.socket), first.socket)
      yield* log.reach(1)
      // The add made during the timer run must not leave a timer that close() does not know about.
      q.close()
      const clock = yield* queue(2 * TIMEOUT_MS)
      const sentinel = yield* stuck.dial
      clock.add(log.dialer("clock"), sentinel.socket)
      yield* log.reach(2)
      assert.deepStrictEqual(log.names(), ["first", "clock"])
      assert.isTrue(second.socket.connecting)
    }).pipe(Effect.scoped))

  it.live("a dial added from connectTimedOut (failover) is reported once, at its own deadline", () =>
    Effect.gen(function*() {
      const stuck = yield* stuckServer
      const q = yield* queue()
      const log = recorder()
      const first = yield* stuck.dial
      const second = yield* stuck.dial
      q.add(failingOver(q, log, first.socket, second.socket), first.socket)
      yield* log.reach(2)
      const sentinel = yield* stuck.dial
      q.add(log.dialer("sentinel"), sentinel.socket)
      yield* log.reach(3)
      assert.deepStrictEqual(log.names(), ["first", "second", "sentinel"])
    }).pipe(Effect.scoped))

  it.live("the timer re-arms when the queue empties and fills again", () =>
    Effect.gen(function*() {
      const stuck = yield* stuckServer
      const a = yield* Backend.identity("a")
      const q = yield* queue()
      const log = recorder()
      const first = yield* stuck.dial
      q.add(log.dialer("first"), first.socket)
      yield* log.reach(1)
      // Empty now: the next add starts the timer again.
      const second = yield* stuck.dial
      q.add(log.dialer("second"), second.socket)
      yield* log.reach(2)
      // Once more, with a dial that connects in time ahead of a stuck one.
      const connected = yield* dialing(tcpTarget(a.port))
      q.add(log.dialer("connected"), connected.socket)
      const third = yield* stuck.dial
      q.add(log.dialer("third"), third.socket)
      yield* log.reach(3)
      assert.deepStrictEqual(log.names(), ["first", "second", "third"])
      assert.deepStrictEqual(log.reports.map((r) => r.socket), [first.socket, second.socket, third.socket])
      assert.isTrue(connected.connected)
    }).pipe(Effect.scoped))

  it.live("thousands of entries (past the queue's compaction threshold): each reported once, in order", () =>
    Effect.gen(function*() {
      const q = yield* queue()
      const seen: Array<Socket.Socket> = []
      const dialer: Socket.Dialing = { connectTimedOut: (socket) => seen.push(socket) }
      const early = Array.from({ length: 5000 }, (_, i) => fakeSocket(i % 7 !== 0))
      for (const socket of early) q.add(dialer, socket)
      // Added later, so still pending when the first 5000 expire: the queue then drops what it has consumed.
      yield* Effect.sleep("50 millis")
      const late = Array.from({ length: 100 }, (_, i) => fakeSocket(i % 7 !== 0))
      for (const socket of late) q.add(dialer, socket)
      const expected = [...early, ...late].filter((s) => s.connecting)
      assert.isTrue(yield* Poll.waitUntil(() => seen.length >= expected.length), `${seen.length} reported`)
      // Once more through the queue, to see nothing is reported twice.
      const last = fakeSocket(true)
      q.add(dialer, last)
      assert.isTrue(yield* Poll.waitUntil(() => seen.length >= expected.length + 1), `${seen.length} reported`)
      assert.strictEqual(seen.length, expected.length + 1)
      expected.push(last)
      assert.isTrue(seen.every((s, i) => s === expected[i]), "reported out of order")
    }).pipe(Effect.scoped))

  it.live("settled dials are never reported, also when settled after the queue dropped what it had consumed", () =>
    Effect.gen(function*() {
      const q = yield* queue()
      const seen: Array<Socket.Socket> = []
      const dialer: Socket.Dialing = { connectTimedOut: (socket) => seen.push(socket) }
      // Every socket is still "connecting": only settle() keeps one from being reported.
      const early = Array.from({ length: 5000 }, () => fakeSocket(true))
      const earlyTickets = early.map((socket) => q.add(dialer, socket))
      earlyTickets.forEach((ticket, i) => i % 3 === 0 && q.settle(ticket))
      yield* Effect.sleep("50 millis")
      const late = Array.from({ length: 100 }, () => fakeSocket(true))
      const lateTickets = late.map((socket) => q.add(dialer, socket))
      const earlyExpected = early.filter((_, i) => i % 3 !== 0)
      assert.isTrue(yield* Poll.waitUntil(() => seen.length >= earlyExpected.length), `${seen.length} reported`)
      // The early entries are consumed and dropped now; the late tickets still find their own entries.
      lateTickets.forEach((ticket, i) => i % 2 === 0 && q.settle(ticket))
      // Settling a ticket already reported, or settling twice, changes nothing.
      q.settle(earlyTickets[1]!)
      q.settle(lateTickets[0]!)
      const last = fakeSocket(true)
      q.add(dialer, last)
      const expected = [...earlyExpected, ...late.filter((_, i) => i % 2 !== 0), last]
      assert.isTrue(yield* Poll.waitUntil(() => seen.length >= expected.length), `${seen.length} reported`)
      assert.strictEqual(seen.length, expected.length)
      assert.isTrue(seen.every((s, i) => s === expected[i]), "a settled dial was reported, or order was lost")
    }).pipe(Effect.scoped))
})

const failure = (code: string) => Object.assign(new Error(`connect ${code}`), { code })

describe("isOwnFailure", () => {
  it("is true of the balancer's own shortages: descriptors, buffers, memory, local ports", () => {
    for (const code of ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM", "EADDRNOTAVAIL"]) {
      assert.isTrue(Socket.isOwnFailure(failure(code)), code)
    }
  })

  it("is false of what the server or the network did, and of anything without an error code", () => {
    for (const code of ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EPIPE", "ENOENT"]) {
      assert.isFalse(Socket.isOwnFailure(failure(code)), code)
    }
    for (const value of [new Error("EMFILE"), undefined, null, "EMFILE", { code: 24 }, { code: "emfile" }]) {
      assert.isFalse(Socket.isOwnFailure(value), String(value))
    }
  })
})
