/**
 * The listener on its own (`TcpServer.make`, no proxy): connections that arrive before `run` wait and are served,
 * pen's admission control (`maxConnections` live, `maxWaiting` queued, one more reset; `pending_max` connects in
 * progress, one thread's and two listeners' over shared admission memory), a queued client that leaves
 * (kept in its place, as in pen's backlog),
 * what closing the scope ends, a drain (not listening; the live and waiting connections served, then idle), bind
 * failures, and Unix socket paths (a stale file at the path is replaced).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Path from "node:path"
import * as Address from "../../src/domain/Address.ts"
import * as TcpServer from "../../src/net/TcpServer.ts"
import * as Admission from "../../src/shared/Admission.ts"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Poll from "../utils/Poll.ts"
import * as Unix from "../utils/Unix.ts"

const LOCAL = Address.tcp("127.0.0.1", 0)
const ignore = () => {}

const portOf = (server: TcpServer.TcpServer): number => {
  const address = server.address()
  assert.strictEqual(address._tag, "Tcp")
  const port = (address as Address.TcpEndpoint).port
  assert.notStrictEqual(port, 0)
  return port
}

/** A handler that writes "hi" and ends the connection at once (FIN after the write, then the socket is destroyed). */
const greetAndEnd = (served: Array<number | undefined>) => (socket: Net.Socket) =>
  Effect.sync(() => {
    served.push(socket.remotePort)
    socket.on("error", ignore)
    socket.write("hi")
    socket.destroySoon()
  })

/**
 * A handler that greets each connection with "hi\n" and then holds it until the test opens its gate; the socket is
 * destroyed when the handler ends, however it ends. `served` has each served client's port (as the handler saw it),
 * `interrupted` counts handlers ended by interruption.
 */
const holding = Effect.sync(() => {
  const served: Array<number | undefined> = []
  const gates: Array<Deferred.Deferred<void>> = []
  let interrupted = 0
  const handler = (socket: Net.Socket) =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      served.push(socket.remotePort)
      gates.push(gate)
      socket.on("error", ignore)
      socket.write("hi\n")
      yield* Deferred.await(gate)
    }).pipe(
      Effect.onInterrupt(() => Effect.sync(() => interrupted++)),
      Effect.ensuring(Effect.sync(() => socket.destroy()))
    )
  return {
    handler,
    served,
    /** Lets the `i`-th served connection's handler end. */
    release: (i: number) => Deferred.succeed(gates[i]!, undefined),
    releaseAll: Effect.suspend(() => Effect.forEach(gates, (gate) => Deferred.succeed(gate, undefined))),
    interrupted: () => interrupted
  }
})

/** The first line a connection receives (or how it ended, or `Timeout` after `timeoutMs`). */
const firstLine = (conn: Client.Conn, timeoutMs?: number) => Effect.promise(() => conn.firstLine(timeoutMs))
const ended = (conn: Client.Conn, timeoutMs?: number) => Effect.promise(() => conn.ended(timeoutMs))
const HI: Client.FirstLine = { _tag: "Line", line: "hi" }

describe("TcpServer: before run", () => {
  it.live("connections that arrive before run is attached wait, and are all served in arrival order", () =>
    Effect.gen(function*() {
      const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 10 })
      const port = portOf(server)
      const clients = [yield* Client.open(port), yield* Client.open(port), yield* Client.open(port)]
      assert.isTrue(yield* Poll.waitUntil(() => server.waiting() === 3), `waiting: ${server.waiting()}`)
      assert.strictEqual(server.active(), 0)

      const served: Array<number | undefined> = []
      yield* Effect.forkScoped(server.run(greetAndEnd(served)))
      for (const conn of clients) {
        assert.strictEqual(yield* ended(conn), "eof")
        assert.strictEqual(conn.text(), "hi")
      }
      assert.deepStrictEqual(served, clients.map((conn) => conn.socket.localPort))
      assert.strictEqual(server.waiting(), 0)
      assert.isTrue(yield* Poll.waitUntil(() => server.active() === 0), `active: ${server.active()}`)
    }).pipe(Effect.scoped))
})

describe("TcpServer: admission control", () => {
  it.live("maxConnections 2: a third client is accepted but waits until a handler ends; counts return to 0", () =>
    Effect.gen(function*() {
      const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 2 })
      const port = portOf(server)
      const held = yield* holding
      yield* Effect.forkScoped(server.run(held.handler))

      const a = yield* Client.open(port)
      assert.deepStrictEqual(yield* firstLine(a), HI)
      const b = yield* Client.open(port)
      assert.deepStrictEqual(yield* firstLine(b), HI)
      assert.strictEqual(server.active(), 2)

      const c = yield* Client.open(port)
      assert.isTrue(yield* Poll.waitUntil(() => server.waiting() === 1), `waiting: ${server.waiting()}`)
      assert.strictEqual(server.active(), 2)
      assert.strictEqual((yield* firstLine(c, 200))._tag, "Timeout")
      assert.strictEqual(held.served.length, 2)

      // One held connection ends: the waiting one takes its slot.
      yield* held.release(0)
      assert.strictEqual(yield* ended(a), "eof")
      assert.deepStrictEqual(yield* firstLine(c), HI)
      assert.strictEqual(held.served.length, 3)
      assert.strictEqual(held.served[2], c.socket.localPort)
      assert.strictEqual(server.waiting(), 0)
      assert.strictEqual(server.active(), 2)

      yield* held.releaseAll
      assert.strictEqual(yield* ended(b), "eof")
      assert.strictEqual(yield* ended(c), "eof")
      assert.isTrue(yield* Poll.waitUntil(() => server.active() === 0), `active: ${server.active()}`)
      assert.strictEqual(server.waiting(), 0)
      assert.strictEqual(held.interrupted(), 0)
    }).pipe(Effect.scoped))

  it.live("maxWaiting 1 (maxConnections 1): one extra client waits, the next one is reset and never served", () =>
    Effect.gen(function*() {
      const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 1, maxWaiting: 1 })
      const port = portOf(server)
      const held = yield* holding
      yield* Effect.forkScoped(server.run(held.handler))

      const a = yield* Client.open(port)
      assert.deepStrictEqual(yield* firstLine(a), HI)
      const b = yield* Client.open(port)
      assert.isTrue(yield* Poll.waitUntil(() => server.waiting() === 1), `waiting: ${server.waiting()}`)

      const c = yield* Client.opening(port)
      assert.strictEqual(yield* ended(c), "reset")
      assert.strictEqual(c.received, 0)
      assert.strictEqual(server.waiting(), 1)
      assert.strictEqual(server.active(), 1)

      yield* held.release(0)
      assert.deepStrictEqual(yield* firstLine(b), HI)
      assert.deepStrictEqual(held.served, [a.socket.localPort, b.socket.localPort])
      yield* held.releaseAll
      assert.isTrue(yield* Poll.waitUntil(() => server.active() === 0), `active: ${server.active()}`)
      assert.strictEqual(held.served.length, 2)
    }).pipe(Effect.scoped))

  // A waiting socket is accepted but not read (nothing may be consumed before a server is chosen), so nib cannot see a
  // FIN or RST from a client that gives up while it waits: like a connection left in pen's kernel backlog, it keeps
  // its place and is handed on in turn, and the handler then finds it ended. See src/proxy/LIFECYCLE.md.
  for (const how of ["closes (FIN)", "resets (RST)"] as const) {
    it.live(`a waiting client that ${how} keeps its place and is handed on in turn, already ended`, () =>
      Effect.gen(function*() {
        const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 1 })
        const port = portOf(server)
        const held = yield* holding
        yield* Effect.forkScoped(server.run(held.handler))

        const a = yield* Client.open(port)
        assert.deepStrictEqual(yield* firstLine(a), HI)
        const gone = yield* Client.open(port)
        const gonePort = gone.socket.localPort
        assert.isTrue(yield* Poll.waitUntil(() => server.waiting() === 1), `waiting: ${server.waiting()}`)

        if (how === "closes (FIN)") gone.socket.destroy()
        else gone.socket.resetAndDestroy()
        const next = yield* Client.open(port)
        assert.isTrue(yield* Poll.waitUntil(() => server.waiting() === 2), `waiting: ${server.waiting()}`)

        // Served in arrival order: the departed client first, then the next one.
        yield* held.release(0)
        assert.isTrue(yield* Poll.waitUntil(() => held.served.length === 2), `served: ${held.served}`)
        // After a FIN the peer address is still known; after a reset it is gone (nib's proxy then closes at once).
        assert.strictEqual(held.served[1], how === "closes (FIN)" ? gonePort : undefined)
        yield* held.release(1)
        assert.deepStrictEqual(yield* firstLine(next), HI)
        assert.deepStrictEqual(held.served, [a.socket.localPort, held.served[1], next.socket.localPort])
        yield* held.releaseAll
        assert.isTrue(yield* Poll.waitUntil(() => server.active() === 0 && server.waiting() === 0))
      }).pipe(Effect.scoped))
  }
})

// The handler stands in for the proxy: each client it is handed holds a place among the connects in progress, which the
// test gives back (as the proxy does when the client's server is connected).
describe("TcpServer: pending_max (connects in progress)", () => {
  it.live("pending_max 1: a second client waits, unread, until the first gives its place back", () =>
    Effect.gen(function*() {
      const dials = new Admission.Dials(1)
      const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 10, dials })
      const port = portOf(server)
      const held = yield* holding
      yield* Effect.forkScoped(server.run(held.handler))

      const a = yield* Client.open(port)
      assert.deepStrictEqual(yield* firstLine(a), HI)
      assert.strictEqual(dials.inProgress, 1)
      const b = yield* Client.open(port)
      assert.isTrue(yield* Poll.waitUntil(() => server.waiting() === 1), `waiting: ${server.waiting()}`)
      assert.strictEqual((yield* firstLine(b, 200))._tag, "Timeout")
      assert.strictEqual(held.served.length, 1)

      // a's connect is done: b takes the place, though a's connection goes on.
      dials.release()
      assert.deepStrictEqual(yield* firstLine(b), HI)
      assert.deepStrictEqual(held.served, [a.socket.localPort, b.socket.localPort])
      assert.strictEqual(server.active(), 2)
      assert.strictEqual(server.waiting(), 0)
      dials.release()
      assert.strictEqual(dials.inProgress, 0)
      yield* held.releaseAll
    }).pipe(Effect.scoped))

  it.live("without a limit reached, clients are served at once (the default, 100)", () =>
    Effect.gen(function*() {
      const dials = new Admission.Dials(Admission.PENDING_MAX)
      const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 10, dials })
      const port = portOf(server)
      const held = yield* holding
      yield* Effect.forkScoped(server.run(held.handler))
      for (let i = 0; i < 3; i++) assert.deepStrictEqual(yield* firstLine(yield* Client.open(port)), HI)
      assert.strictEqual(dials.inProgress, 3)
      assert.strictEqual(server.waiting(), 0)
      yield* held.releaseAll
    }).pipe(Effect.scoped))

  it.live("two listeners over shared admission memory (workers): a place freed by one wakes the other's client", () =>
    Effect.gen(function*() {
      const words = new Int32Array(Admission.allocate(2))
      const [d0, d1] = [new Admission.Dials(1, words, 0), new Admission.Dials(1, words, 1)]
      const s0 = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 10, shared: words, dials: d0 })
      const s1 = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 10, shared: words, dials: d1 })
      const [h0, h1] = [yield* holding, yield* holding]
      yield* Effect.forkScoped(s0.run(h0.handler))
      yield* Effect.forkScoped(s1.run(h1.handler))

      const a = yield* Client.open(portOf(s0))
      assert.deepStrictEqual(yield* firstLine(a), HI)
      const b = yield* Client.open(portOf(s1))
      assert.isTrue(yield* Poll.waitUntil(() => s1.waiting() === 1), `waiting: ${s1.waiting()}`)
      assert.strictEqual((yield* firstLine(b, 200))._tag, "Timeout")
      assert.strictEqual(Atomics.load(words, Admission.LIVE), 1, "b waits without a place under -x")

      d0.release()
      assert.deepStrictEqual(yield* firstLine(b), HI)
      assert.strictEqual(Atomics.load(words, Admission.DIALS), 1)
      assert.strictEqual(Atomics.load(words, Admission.LIVE), 2)
      yield* h0.releaseAll
      yield* h1.releaseAll
      assert.isTrue(yield* Poll.waitUntil(() => Atomics.load(words, Admission.LIVE) === 0))
      d1.release()
    }).pipe(Effect.scoped))
})

describe("TcpServer: closing the scope", () => {
  it.live("closes the listener, interrupts running handlers (finalizers run), destroys waiting sockets", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      // If an assertion fails before the explicit close, the scope is still closed (closing twice does nothing).
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 1 }).pipe(
        Scope.provide(scope)
      )
      const port = portOf(server)
      const held = yield* holding
      yield* Effect.forkIn(server.run(held.handler), scope)

      const running = yield* Client.open(port)
      assert.deepStrictEqual(yield* firstLine(running), HI)
      const waiting = yield* Client.open(port)
      assert.isTrue(yield* Poll.waitUntil(() => server.waiting() === 1), `waiting: ${server.waiting()}`)

      // Finalizers cannot be interrupted: wait for the close in another fiber, so a hang fails here with a message.
      const closing = yield* Effect.forkDetach(Scope.close(scope, Exit.void))
      const closed = yield* Fiber.await(closing).pipe(Effect.timeoutOption("5 seconds"))
      assert.isTrue(closed._tag === "Some", "closing the scope did not finish within 5 s")

      assert.strictEqual(held.interrupted(), 1)
      assert.strictEqual(yield* ended(running), "eof")
      assert.notStrictEqual(yield* ended(waiting), "timeout")
      assert.strictEqual(waiting.received, 0)
      assert.strictEqual(held.served.length, 1)

      const late = yield* Client.opening(port)
      assert.strictEqual(yield* ended(late), "error")
      assert.strictEqual(late.error?.code, "ECONNREFUSED")
    }).pipe(Effect.scoped))
})

describe("TcpServer: drain (a graceful stop)", () => {
  it.live("refuses new clients at once; the live and the waiting connections are served; idle once they end", () =>
    Effect.gen(function*() {
      const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 1 })
      const port = portOf(server)
      const held = yield* holding
      yield* Effect.forkScoped(server.run(held.handler))
      const running = yield* Client.open(port)
      assert.deepStrictEqual(yield* firstLine(running), HI)
      const waiting = yield* Client.open(port)
      assert.isTrue(yield* Poll.waitUntil(() => server.waiting() === 1), `waiting: ${server.waiting()}`)
      const idle = yield* Effect.forkScoped(server.idle)

      server.drain()
      server.drain()
      const late = yield* Client.opening(port)
      assert.strictEqual(yield* ended(late), "error")
      assert.strictEqual(late.error?.code, "ECONNREFUSED")

      // The running connection ends: the waiting one is served in its place, and the listener is not idle yet.
      yield* held.release(0)
      assert.strictEqual(yield* ended(running), "eof")
      assert.deepStrictEqual(yield* firstLine(waiting), HI)
      assert.strictEqual(held.interrupted(), 0)
      assert.isUndefined(idle.pollUnsafe())
      yield* held.release(1)
      assert.strictEqual(yield* ended(waiting), "eof")
      const done = yield* Fiber.await(idle).pipe(Effect.timeoutOption("5 seconds"))
      assert.isTrue(done._tag === "Some", "idle did not complete once the last connection ended")
      assert.strictEqual(server.active() + server.waiting(), 0)
      // Idle completes at once from then on.
      assert.isTrue((yield* server.idle.pipe(Effect.timeoutOption("1 second")))._tag === "Some")
    }).pipe(Effect.scoped))

  it.live("with nothing open, idle completes as soon as it drains, and not before", () =>
    Effect.gen(function*() {
      const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 1 })
      yield* Effect.forkScoped(server.run(greetAndEnd([])))
      assert.isTrue((yield* server.idle.pipe(Effect.timeoutOption("200 millis")))._tag === "None")
      server.drain()
      assert.isTrue((yield* server.idle.pipe(Effect.timeoutOption("1 second")))._tag === "Some")
    }).pipe(Effect.scoped))
})

describe("TcpServer: rebind (pen's listen ADDR)", () => {
  it.live("new clients on the new address are served, the old address refuses, a held connection goes on", () =>
    Effect.gen(function*() {
      const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 10 })
      const hold = yield* holding
      yield* Effect.forkScoped(server.run(hold.handler))
      const oldPort = portOf(server)
      const held = yield* Client.open(oldPort)
      assert.deepStrictEqual(yield* firstLine(held), HI)

      const next = yield* server.rebind(LOCAL)
      const newPort = portOf(server)
      assert.notStrictEqual(newPort, oldPort)
      assert.deepStrictEqual(next, server.address())
      const fresh = yield* Client.open(newPort)
      assert.deepStrictEqual(yield* firstLine(fresh), HI)
      const refused = yield* Client.opening(oldPort)
      assert.strictEqual(yield* ended(refused), "error")
      assert.strictEqual(refused.error?.code, "ECONNREFUSED")

      // The connection accepted on the old address is still served: its handler ends it only when released.
      assert.isFalse(held.socket.destroyed)
      yield* hold.release(0)
      assert.strictEqual(yield* ended(held), "eof")
      assert.strictEqual(server.active(), 1)
    }).pipe(Effect.scoped))

  it.live("a taken address fails with TcpServerError and the listener stays where it was", () =>
    Effect.gen(function*() {
      const taken = yield* Backend.identity("taken")
      const server = yield* TcpServer.make({ endpoint: LOCAL, backlog: 50, maxConnections: 10 })
      yield* Effect.forkScoped(server.run(greetAndEnd([])))
      const port = portOf(server)
      const error = yield* server.rebind(Address.tcp("127.0.0.1", taken.port)).pipe(Effect.flip)
      assert.include(error.message, `127.0.0.1:${taken.port}`)
      assert.strictEqual(portOf(server), port)
      const conn = yield* Client.open(port)
      assert.strictEqual(yield* ended(conn), "eof")
      assert.strictEqual(conn.text(), "hi")
      assert.strictEqual(yield* Client.ask(taken.port), "taken")
    }).pipe(Effect.scoped))
})

describe("TcpServer: binding", () => {
  it.live("a port that is taken fails with TcpServerError: can't bind local address", () =>
    Effect.gen(function*() {
      const taken = yield* Backend.identity("taken")
      const error = yield* TcpServer.make({
        endpoint: Address.tcp("127.0.0.1", taken.port),
        backlog: 50,
        maxConnections: 10
      }).pipe(Effect.flip)
      assert.instanceOf(error, TcpServer.TcpServerError)
      assert.strictEqual(error._tag, "TcpServerError")
      assert.include(error.message, "can't bind local address")
      assert.include(error.message, `127.0.0.1:${taken.port}`)
      // The port's owner is untouched.
      assert.strictEqual(yield* Client.ask(taken.port), "taken")
    }).pipe(Effect.scoped))

  it.live("a Unix socket path binds and serves; a stale file, then a dead server's socket, at the path is replaced", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const path = Path.join(dir, "listen.sock")
      const serveOnce = Effect.gen(function*() {
        const server = yield* TcpServer.make({ endpoint: Address.unix(path), backlog: 50, maxConnections: 10 })
        assert.deepStrictEqual(server.address(), Address.unix(path))
        assert.isTrue(Fs.statSync(path).isSocket())
        const served: Array<number | undefined> = []
        yield* Effect.forkScoped(server.run(greetAndEnd(served)))
        const conn = yield* Unix.opening(path)
        assert.strictEqual(yield* ended(conn), "eof")
        assert.strictEqual(conn.text(), "hi")
        assert.strictEqual(served.length, 1)
      }).pipe(Effect.scoped)

      // A regular file left at the path.
      Fs.writeFileSync(path, "stale")
      yield* serveOnce

      // A socket file left by a server that was killed: it exists, nothing accepts on it.
      const script = `require("node:net").createServer().listen(${JSON.stringify(path)}, () => console.log("ready"))`
      const { proc } = yield* Effect.promise(() => Nib.spawnReady(Nib.NODE, ["-e", script], /^ready$/m))
      proc.child.kill("SIGKILL")
      yield* Effect.promise(() => proc.exited)
      assert.isTrue(Fs.statSync(path).isSocket())
      const refused = yield* Unix.opening(path)
      assert.strictEqual(yield* ended(refused), "error")
      assert.strictEqual(refused.error?.code, "ECONNREFUSED")
      yield* serveOnce
    }).pipe(Effect.scoped))
})

describe("TcpServer: the descriptor limit", () => {
  it("is the soft limit a child process inherits (`ulimit -n`), as Node raised it at start", () => {
    const inherited = Number(ChildProcess.execFileSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).trim())
    assert.isAbove(inherited, 0)
    assert.strictEqual(TcpServer.descriptorLimit(), inherited)
  })
})
