/**
 * The byte path through the real process: bulk data both ways, half-close (the reply a server sends after the
 * client's EOF must arrive: pen loses it, reference section 5.4), a server that resets, and no file descriptor left
 * behind after many connections.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Crypto from "node:crypto"
import type * as Net from "node:net"
import * as Backend from "../utils/Backend.ts"
import * as Client from "../utils/Client.ts"
import * as Fd from "../utils/Fd.ts"
import * as Nib from "../utils/Nib.ts"

const { ip } = Client

const sha256 = (data: Buffer | string): string => Crypto.createHash("sha256").update(data).digest("hex")
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

describe("bulk data", () => {
  it.live("20 MiB each way at the same time arrive intact (sha256)", () =>
    Effect.gen(function*() {
      const size = 20 * 1024 * 1024
      const up = Crypto.randomBytes(size)
      const down = Crypto.randomBytes(size)
      const received: Array<Promise<{ readonly bytes: number; readonly hash: string }>> = []
      // The server sends `down` and, meanwhile, hashes everything it receives until the client's EOF.
      const server = yield* Backend.custom("bulk", (socket) => {
        received.push(
          new Promise((resolve) => {
            const hash = Crypto.createHash("sha256")
            let bytes = 0
            socket.on("data", (chunk: Buffer) => {
              hash.update(chunk)
              bytes += chunk.length
            })
            socket.once("end", () => resolve({ bytes, hash: hash.digest("hex") }))
          })
        )
        socket.end(down)
      }, { allowHalfOpen: true })
      const lb = yield* Nib.start(["127.0.0.1:0", server.spec()])

      const conn = yield* Client.open(lb.port)
      conn.socket.end(up)
      assert.strictEqual(yield* Effect.promise(() => conn.ended(30_000)), "eof")
      const got = conn.data()
      assert.strictEqual(got.length, size)
      assert.strictEqual(sha256(got), sha256(down))

      assert.strictEqual(received.length, 1)
      const atServer = yield* Effect.promise(() => received[0]!).pipe(Effect.timeout("10 seconds"))
      assert.deepStrictEqual(atServer, { bytes: size, hash: sha256(up) })
    }))
})

// The late server reads the request to EOF, and only then replies, in several chunks with pauses, and closes.
const lateReply = (request: string) => [0, 1, 2, 3, 4].map((i) => `part ${i} of the reply to ${request}\n`)

// The eager server's reply: a bit over 2 MiB, sent at once with its FIN as soon as it has read the client's EOF.
const eagerReply = (request: string) => Buffer.alloc(2 * 1024 * 1024 + 1000, `${request}\n`)

describe("half-close", () => {
  it.live("a reply written after the client's EOF, in chunks, arrives whole", () =>
    Effect.gen(function*() {
      const server = yield* Backend.custom("late", (socket) => {
        let request = ""
        socket.setEncoding("utf8")
        socket.on("data", (chunk: string) => (request += chunk))
        socket.once("end", async () => {
          for (const part of lateReply(request)) {
            await sleep(20)
            if (socket.destroyed) return
            socket.write(part)
          }
          socket.end()
        })
      }, { allowHalfOpen: true })
      const lb = yield* Nib.start(["127.0.0.1:0", server.spec()])

      for (let round = 1; round <= 5; round++) {
        const conn = yield* Client.open(lb.port, { from: ip(2) })
        const request = `request ${round}`
        conn.socket.end(request)
        assert.strictEqual(yield* Effect.promise(() => conn.ended(5_000)), "eof", `round ${round}`)
        assert.strictEqual(conn.text(), lateReply(request).join(""), `round ${round}`)
        conn.close()
      }
    }))

  it.live("a large reply sent with the server's FIN right after the client's EOF reaches a slow client whole", () =>
    Effect.gen(function*() {
      const server = yield* Backend.custom("eager", (socket) => {
        const chunks: Array<Buffer> = []
        socket.on("data", (chunk: Buffer) => chunks.push(chunk))
        socket.once("end", () => socket.end(eagerReply(Buffer.concat(chunks).toString())))
      }, { allowHalfOpen: true })
      const lb = yield* Nib.start(["127.0.0.1:0", server.spec()])

      for (let round = 1; round <= 5; round++) {
        const conn = yield* Client.open(lb.port, { from: ip(3) })
        // A slow reader: a short pause after every chunk keeps the buffers towards the client full.
        conn.socket.on("data", () => {
          conn.socket.pause()
          setTimeout(() => conn.socket.resume(), 2)
        })
        const request = `request ${round}`
        conn.socket.end(request)
        assert.strictEqual(yield* Effect.promise(() => conn.ended(10_000)), "eof", `round ${round}`)
        assert.strictEqual(conn.received, eagerReply(request).length, `round ${round}`)
        assert.strictEqual(sha256(conn.data()), sha256(eagerReply(request)), `round ${round}`)
        conn.close()
      }
    }))

  it.live("the client keeps sending after the server's EOF, and the server receives it all", () =>
    Effect.gen(function*() {
      // The server says hello and ends its side at once, then collects what the client sends until the client ends.
      const collected: Array<Promise<string>> = []
      const server = yield* Backend.custom("early", (socket) => {
        collected.push(
          new Promise((resolve) => {
            let text = ""
            socket.setEncoding("utf8")
            socket.on("data", (chunk: string) => (text += chunk))
            socket.once("end", () => {
              resolve(text)
              socket.destroy()
            })
          })
        )
        socket.end("hello\n")
      }, { allowHalfOpen: true })
      const lb = yield* Nib.start(["127.0.0.1:0", server.spec()])

      const conn = yield* Client.open(lb.port)
      assert.strictEqual(yield* Effect.promise(() => conn.ended(5_000)), "eof")
      assert.strictEqual(conn.text(), "hello\n")
      for (let i = 0; i < 3; i++) {
        conn.socket.write(`after EOF ${i}\n`)
        yield* Effect.sleep("20 millis")
      }
      conn.socket.end()
      assert.strictEqual(collected.length, 1)
      const text = yield* Effect.promise(() => collected[0]!).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(text, "after EOF 0\nafter EOF 1\nafter EOF 2\n")
    }))
})

describe("a server that resets", () => {
  it.live("closes the client (reset or EOF), and nib goes on serving", () =>
    Effect.gen(function*() {
      // Resets as soon as it has read something; after some data of its own on every other connection.
      let n = 0
      const server = yield* Backend.custom("reset", (socket: Net.Socket) => {
        if (n++ % 2 === 1) socket.write("partial")
        socket.once("data", () => socket.resetAndDestroy())
      })
      const lb = yield* Nib.start(["127.0.0.1:0", server.spec()])

      for (let round = 1; round <= 4; round++) {
        const conn = yield* Client.opening(lb.port)
        conn.socket.write("hello")
        const ending = yield* Effect.promise(() => conn.ended(5_000))
        assert.include(["reset", "eof"], ending, `round ${round}`)
        conn.close()
      }
      assert.strictEqual(server.accepted(), 4)
      assert.strictEqual(lb.child.exitCode, null)
    }))

  it.live("a server that resets right after accepting closes the client", () =>
    Effect.gen(function*() {
      const server = yield* Backend.custom("reset-now", (socket) => socket.resetAndDestroy())
      const lb = yield* Nib.start(["127.0.0.1:0", server.spec()])

      for (let round = 1; round <= 3; round++) {
        // nib may reset the client before the client has seen its connect complete: that is a reset too.
        const conn = yield* Client.opening(lb.port)
        const ending = yield* Effect.promise(() => conn.ended(5_000))
        assert.include(["reset", "eof"], ending, `round ${round}`)
        assert.strictEqual(conn.received, 0)
        conn.close()
      }
      assert.strictEqual(lb.child.exitCode, null)
    }))
})

describe("file descriptors", () => {
  it.live("1,000 connections (20 at a time, ended in four ways) leave no descriptor behind", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["127.0.0.1:0", a.spec()])

      // One connection, ended in one of four ways: the client closes after the name, ends its side and waits for
      // the server's EOF, resets, or gives up before nib has even reached the server.
      const once = async (i: number) => {
        const conn = await Client.connect(lb.port, { from: ip(2 + (i % 8)) })
        try {
          if (i % 4 === 3) return
          const first = await conn.firstLine(5_000)
          if (first._tag !== "Line") throw new Error(`connection ${i}: ${JSON.stringify(first)}`)
          if (i % 4 === 1) {
            conn.socket.end("bye\n")
            if ((await conn.ended(5_000)) !== "eof") throw new Error(`connection ${i}: no EOF`)
          } else if (i % 4 === 2) {
            conn.socket.resetAndDestroy()
          }
        } finally {
          conn.close()
        }
      }
      const many = (count: number, parallel: number) =>
        Effect.promise(() =>
          Promise.all(Array.from({ length: parallel }, async (_, worker) => {
            for (let i = worker; i < count; i += parallel) await once(i)
          }))
        )
      const settled = Effect.promise(async () => {
        const deadline = Date.now() + 5_000
        while (a.open() > 0 && Date.now() < deadline) await sleep(25)
        return a.open()
      })

      // Warm up (lazily opened descriptors, timers, the thread pool), then take the baseline.
      yield* many(40, 20)
      assert.strictEqual(yield* settled, 0)
      const baseline = yield* Effect.promise(() => Fd.stable(lb.pid))

      yield* many(1_000, 20)
      assert.strictEqual(yield* settled, 0)
      const after = yield* Effect.promise(() => Fd.settle(lb.pid, baseline))
      assert.isAtMost(after, baseline, Fd.describe(lb.pid).join("\n"))
      // The counts are real: nib holds at least its listener and stdio.
      assert.isAtLeast(baseline, 4)
    }))
})
