/**
 * `nibctl`, penctl's successor, as a real process (the built `dist/src/nibctl.js`: `npm run -s build` first) against
 * fake control servers: each records the bytes it receives and answers the first line with fixed bytes, then closes,
 * as pen does. Covers the line sent, the reply copied byte for byte, the target forms (TCP, Unix path, IPv6 split at
 * the last colon) and penctl's usage and error messages with their exit codes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"

/** Runs the built nibctl to completion (SIGKILLed after `timeoutMs`): its exit and raw output. */
const nibctl = (args: ReadonlyArray<string>, timeoutMs = 15_000) => Effect.promise(() => Nibctl.run(args, timeoutMs))

/** A fake control port. */
interface FakeControl {
  /** `host:port` for TCP (host as given, unbracketed), the socket path for Unix. */
  readonly target: string
  readonly port: number
  /** Connections accepted so far. */
  readonly accepted: () => number
  /** The bytes each connection had sent when the server answered it (everything up to the first newline, at least). */
  readonly requests: () => ReadonlyArray<Buffer>
  readonly close: () => Promise<void>
}

const ignore = () => {}

/**
 * Listens on `where` and, per connection, waits for a newline, then writes `reply` (each buffer a separate write,
 * a tick apart) and ends, like pen's one recv, one reply, close. With `reply` undefined it ends the connection at
 * once, without reading or writing anything.
 */
const listenControl = (
  where: { readonly host: string } | { readonly path: string },
  reply: ReadonlyArray<Buffer> | undefined
): Promise<FakeControl> =>
  new Promise((resolve, reject) => {
    const sockets = new Set<Net.Socket>()
    const requests: Array<Buffer> = []
    let accepted = 0
    const server = Net.createServer((socket) => {
      accepted++
      sockets.add(socket)
      socket.on("error", ignore)
      socket.once("close", () => sockets.delete(socket))
      if (reply === undefined) return void socket.end()
      const chunks: Array<Buffer> = []
      let answered = false
      socket.on("data", async (chunk: Buffer) => {
        chunks.push(chunk)
        if (answered || !chunk.includes(0x0a)) return
        answered = true
        requests.push(Buffer.concat(chunks))
        for (const part of reply) {
          socket.write(part)
          await new Promise((done) => setImmediate(done))
        }
        socket.end()
      })
    })
    let closing: Promise<void> | undefined
    const close = () => (closing ??= new Promise<void>((done) => {
      server.close(() => done())
      for (const socket of sockets) socket.destroy()
    }))
    server.once("error", reject)
    server.listen("path" in where ? { path: where.path } : { host: where.host, port: 0 }, () => {
      server.off("error", reject)
      server.on("error", ignore)
      const port = "path" in where ? 0 : (server.address() as Net.AddressInfo).port
      const target = "path" in where ? where.path : `${where.host}:${port}`
      resolve({ target, port, accepted: () => accepted, requests: () => requests, close })
    })
  })

/** A fake control port for the length of the scope. */
const control = (where: { readonly host: string } | { readonly path: string }, reply?: ReadonlyArray<Buffer>) =>
  Effect.acquireRelease(Effect.promise(() => listenControl(where, reply)), (server) => Effect.promise(server.close))

const LOCAL = { host: "127.0.0.1" }

/**
 * Connects to `server` ourselves and waits (at most 5 s) until it has accepted that connection. The kernel hands out
 * connections in arrival order, so any connection made before ours has been counted by then.
 */
const settle = (server: FakeControl) =>
  Effect.promise(async () => {
    const before = server.accepted()
    const probe = Net.connect({ host: "127.0.0.1", port: server.port })
    probe.on("error", ignore)
    const deadline = Date.now() + 5_000
    while (server.accepted() === before && Date.now() < deadline) await new Promise((done) => setTimeout(done, 10))
    probe.destroy()
    return before
  })

/** Whether ::1 can be bound here (no IPv6 loopback in some containers). */
const canBindV6 = await new Promise<boolean>((resolve) => {
  const server = Net.createServer()
  server.once("error", () => resolve(false))
  server.listen({ host: "::1", port: 0 }, () => server.close(() => resolve(true)))
})
if (!canBindV6) console.warn("test/e2e/nibctl.test.ts: ::1 cannot be bound on this machine: the IPv6 tests are SKIPPED")

const ok = (run: Nibctl.Run) =>
  assert.deepStrictEqual({ code: run.code, signal: run.signal, timedOut: run.timedOut }, {
    code: 0,
    signal: null,
    timedOut: false
  }, run.stderr)

/** Asserts penctl's failure shape: exit 1, nothing on stdout, exactly `message` and a newline on stderr. */
const failed = (run: Nibctl.Run, message: string) =>
  assert.deepStrictEqual(
    {
      code: run.code,
      signal: run.signal,
      timedOut: run.timedOut,
      stdout: run.stdout.toString("latin1"),
      stderr: run.stderr
    },
    { code: 1, signal: null, timedOut: false, stdout: "", stderr: `${message}\n` }
  )

describe("the conversation", () => {
  it.live("sends the words joined by single spaces and a newline, prints the reply as is, exits 0", () =>
    Effect.gen(function*() {
      const reply = Buffer.from("server 1 weight 3 set\n")
      const server = yield* control(LOCAL, [reply])
      const run = yield* nibctl([server.target, "server", "1", "weight", "3", "a\tb", ""])
      ok(run)
      assert.strictEqual(run.stderr, "")
      assert.deepStrictEqual(run.stdout, reply)
      assert.deepStrictEqual(server.requests(), [Buffer.from("server 1 weight 3 a\tb \n")])
    }))

  it.live("copies a multi-chunk reply of more than 64 KiB byte for byte, bytes that are not UTF-8 included", () =>
    Effect.gen(function*() {
      // Invalid UTF-8 (0xff, a lone continuation byte, a sequence cut between writes) and every byte value.
      const pattern = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 131 + 7) & 0xff))
      const reply = [Buffer.from([0xff, 0xfe, 0x80, 0x00, 0xe2, 0x82]), Buffer.from([0xac, 0xc3]), pattern, pattern]
      const server = yield* control(LOCAL, reply)
      const run = yield* nibctl([server.target, "status"])
      ok(run)
      assert.strictEqual(run.stdout.length, 140_008)
      assert.isTrue(run.stdout.equals(Buffer.concat(reply)), "stdout differs from the reply")
      assert.deepStrictEqual(server.requests(), [Buffer.from("status\n")])
    }))

  it.live("a line of exactly 1023 bytes (newline included) is sent", () =>
    Effect.gen(function*() {
      const server = yield* control(LOCAL, [Buffer.from("ok\n")])
      const words = ["é".repeat(500), "x".repeat(21)] // 1000 + 1 + 21 + 1 bytes, in 523 characters
      const run = yield* nibctl([server.target, ...words])
      ok(run)
      assert.strictEqual(run.stdout.toString(), "ok\n")
      assert.deepStrictEqual(server.requests(), [Buffer.from(`${words.join(" ")}\n`)])
      assert.strictEqual(server.requests()[0]!.length, 1023)
    }))

  it.live("a server that closes without replying: nothing on stdout, exit 0", () =>
    Effect.gen(function*() {
      const server = yield* control(LOCAL)
      const run = yield* nibctl([server.target, "servers"])
      ok(run)
      assert.strictEqual(run.stdout.length, 0)
      assert.strictEqual(run.stderr, "")
      assert.strictEqual(server.accepted(), 1)
    }))
})

describe("targets", () => {
  it.live("an argument containing / is a Unix socket path", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const reply = Buffer.from("12345\n")
      const server = yield* control({ path: Path.join(dir, "ctl:1.sock") }, [reply])
      const run = yield* nibctl([server.target, "pid"])
      ok(run)
      assert.deepStrictEqual(run.stdout, reply)
      assert.deepStrictEqual(server.requests(), [Buffer.from("pid\n")])
    }))

  for (const form of ["::1:PORT", "[::1]:PORT"]) {
    it.live.skipIf(!canBindV6)(
      `${form} is split at the last colon (skipped when ::1 cannot be bound)`,
      () =>
        Effect.gen(function*() {
          const reply = Buffer.from("no\n")
          const server = yield* control({ host: "::1" }, [reply])
          const run = yield* nibctl([form.replace("PORT", String(server.port)), "roundrobin"])
          ok(run)
          assert.deepStrictEqual(run.stdout, reply)
          assert.deepStrictEqual(server.requests(), [Buffer.from("roundrobin\n")])
        })
    )
  }
})

describe("usage and errors", () => {
  it.live("fewer than two arguments: the usage line on stdout, exit 0", () =>
    Effect.gen(function*() {
      for (const args of [[], ["127.0.0.1:10080"]]) {
        const run = yield* nibctl(args)
        ok(run)
        assert.strictEqual(run.stdout.toString(), "usage: nibctl host:port command\n")
        assert.strictEqual(run.stderr, "")
      }
    }))

  it.live("a target without a colon: no port given, exit 1", () =>
    Effect.gen(function*() {
      failed(yield* nibctl(["localhost", "servers"]), "no port given")
    }))

  it.live("a port that is neither a number nor a service name: getaddrinfo's message, exit 1", () =>
    Effect.gen(function*() {
      failed(
        yield* nibctl(["127.0.0.1:no-such-service", "servers"]),
        "getaddrinfo: Servname not supported for ai_socktype"
      )
    }))

  it.live("nothing listens (TCP port bound then closed, missing Unix path): error connecting to server, exit 1", () =>
    Effect.gen(function*() {
      const port = yield* Backend.freePort
      failed(yield* nibctl([`127.0.0.1:${port}`, "servers"]), "error connecting to server")
      const dir = yield* Nib.tempDir
      failed(yield* nibctl([Path.join(dir, "absent.sock"), "servers"]), "error connecting to server")
    }))

  it.live("a line over 1023 bytes: Overlong argument list, exit 1, and the server received nothing", () =>
    Effect.gen(function*() {
      const server = yield* control(LOCAL, [Buffer.from("ok\n")])
      // 1024 bytes with the newline; and counted in bytes, not characters: 1025 bytes in 513 characters.
      for (const words of [["x".repeat(1000), "y".repeat(22)], ["é".repeat(512)]]) {
        failed(yield* nibctl([server.target, ...words]), "Overlong argument list")
      }
      assert.strictEqual(yield* settle(server), 0, "nibctl connected")
      assert.deepStrictEqual(server.requests(), [])
    }))
})
