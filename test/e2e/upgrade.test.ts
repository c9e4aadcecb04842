/**
 * The upgrade on SIGUSR2 (control/Upgrade.ts) through the real process: the new nib takes the listening sockets over
 * while clients keep connecting (none refused, none reset, long transfers whole), takes the sticky table over, and
 * the pid file names it; a new nib that cannot start leaves the old one serving, its error logged. Every nib a test
 * starts, the new ones included, is stopped by its pid when the test ends.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Crypto from "node:crypto"
import * as Dgram from "node:dgram"
import * as Fs from "node:fs"
import type * as Net from "node:net"
import * as Path from "node:path"
import * as Tls from "node:tls"
import * as Admin from "../utils/Admin.ts"
import * as Backend from "../utils/Backend.ts"
import { certificate, openssl } from "../utils/Certs.ts"
import * as Client from "../utils/Client.ts"
import * as Nib from "../utils/Nib.ts"
import * as Nibctl from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"
import * as Udp from "../utils/Udp.ts"
import * as Unix from "../utils/Unix.ts"

const { ip } = Client
/** As root, nib opens the control port only with `-u` (pen's rule). */
const AS_USER: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

const sha256 = (data: Buffer): string => Crypto.createHash("sha256").update(data).digest("hex")
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The new nib's start-up line, naming the one it replaced. */
const takenOver = (old: number) => new RegExp(`\\(pid (\\d+)[^)]*\\), taken over from pid ${old}`)

/**
 * Stops, when the scope closes, every nib that said in `balancer`'s stderr that it took over: an upgrade a test did
 * not expect to happen leaves no process behind either.
 */
const stopTakeovers = (balancer: Pick<Nib.Proc, "stderr">) =>
  Effect.addFinalizer(() =>
    Effect.promise(async () => {
      for (const match of balancer.stderr().matchAll(/\(pid (\d+)[^)]*\), taken over from pid \d+/g)) {
        await Nib.stopPid(Number(match[1]))
      }
    })
  )

/**
 * Sends SIGUSR2 to the nib `old` (a foreground one, whose stderr the new one shares), waits for the new one's start-up
 * line, then for the old one to say it no longer listens: the new one's pid, stopped when the scope closes.
 */
/**
 * nib run from a copy of its bundle in a temporary folder (an install the test may then break or replace), in front
 * of one identity backend "a"; every nib that takes it over is stopped with the test.
 */
const fromCopy = Effect.gen(function*() {
  const install = Path.join(yield* Nib.tempDir, "bundle")
  Fs.cpSync(Path.dirname(Nib.NIB), install, { recursive: true })
  const a = yield* Backend.identity("a")
  const lb = yield* Effect.acquireRelease(
    Effect.promise(() =>
      Nib.spawnReady(
        Nib.NODE,
        [Path.join(install, "nib.js"), "-f", ...Nib.WORKERS, "127.0.0.1:0", a.spec()],
        Nib.LISTENING
      )
    ),
    ({ proc }) => Effect.promise(() => Nib.stop(proc))
  )
  yield* stopTakeovers(lb.proc)
  return { install, lb }
})

const upgrade = (balancer: Nib.Proc) =>
  Effect.gen(function*() {
    const line = takenOver(balancer.pid)
    process.kill(balancer.pid, "SIGUSR2")
    const seen = yield* Effect.promise(() => Poll.until(() => line.test(balancer.stderr()), 20_000, 20))
    assert.isTrue(seen, `no new nib said it took over:\n${balancer.stderr()}`)
    const pid = Number(line.exec(balancer.stderr())![1])
    yield* Nib.killOnClose(pid)
    yield* Nib.logged(balancer, `nib: SIGUSR2: pid ${pid} took over`, 10_000)
    yield* Nib.logged(balancer, "nib: SIGUSR2: listeners closed", 10_000)
    return pid
  })

/**
 * One short request/response: connect from `from`, send a line, read the server's name and the line echoed, end.
 * What went wrong, or undefined.
 */
const exchange = async (port: number, n: number, from = "127.0.0.1"): Promise<string | undefined> => {
  const conn = Client.dial(port, { from })
  try {
    const request = `request ${n}\n`
    conn.socket.write(request)
    const whole = await conn.until(() => /^[a-z]+\n/.test(conn.text()) && conn.text().endsWith(request), 10_000)
    if (!whole) {
      return `connection ${n}: ${conn.ending ?? "no reply"} (${conn.error?.code ?? ""}) after ${
        JSON.stringify(conn.text())
      }`
    }
    conn.socket.end()
    const ending = await conn.ended(10_000)
    return ending === "eof" ? undefined : `connection ${n}: ended by ${ending} (${conn.error?.code ?? ""})`
  } finally {
    conn.close()
  }
}

/** The payload of a long transfer: 3 MiB, sent in 64 KiB pieces 80 ms apart (about 4 s). */
const PAYLOAD = Crypto.randomBytes(3 * 1024 * 1024)
const PIECE = 65536

/**
 * A server named `name` that says its name, then either echoes (a short request) or, asked `long`, sends
 * {@link PAYLOAD} slowly and closes (a long transfer).
 */
const mixedServer = (name: string) =>
  Backend.custom(name, (socket: Net.Socket) => {
    socket.write(`${name}\n`)
    socket.once("data", (first: Buffer) => {
      if (!first.toString("latin1").startsWith("long\n")) {
        socket.write(first)
        socket.pipe(socket)
        return
      }
      let at = 0
      const next = () => {
        if (socket.destroyed) return
        if (at >= PAYLOAD.length) return void socket.end()
        socket.write(PAYLOAD.subarray(at, at + PIECE))
        at += PIECE
        setTimeout(next, 80)
      }
      next()
    })
  })

/** A long transfer: asks for the payload; resolves with what went wrong, or undefined once it arrived whole. */
const transfer = async (port: number, from: string): Promise<string | undefined> => {
  const conn = Client.dial(port, { from })
  try {
    conn.socket.write("long\n")
    const ending = await conn.ended(60_000)
    const data = conn.data()
    const body = data.subarray(data.indexOf(10) + 1)
    if (ending !== "eof") {
      return `transfer from ${from}: ${ending} (${conn.error?.code ?? ""}) after ${data.length} bytes`
    }
    if (body.length !== PAYLOAD.length || sha256(body) !== sha256(PAYLOAD)) {
      return `transfer from ${from}: ${body.length} bytes, not the payload`
    }
    return undefined
  } finally {
    conn.close()
  }
}

describe("upgrade (SIGUSR2)", () => {
  it.live(
    "under load: no connection refused or reset, 20 long transfers whole, sticky clients on the same servers",
    () =>
      Effect.gen(function*() {
        const dir = yield* Nib.tempDir
        const pidPath = Path.join(dir, "nib.pid")
        const servers = [yield* mixedServer("a"), yield* mixedServer("b"), yield* mixedServer("c")]
        const lb = yield* Nib.start(["-p", pidPath, "127.0.0.1:0", ...servers.map((s) => s.spec())])
        yield* stopTakeovers(lb)

        // Sticky clients: each address remembers its server.
        const sticky = [2, 3, 4, 5, 6, 7].map(ip)
        const before = yield* Client.askAll(lb.port, sticky)
        assert.isTrue(before.every((name) => ["a", "b", "c"].includes(name)), before.join())

        // Short connections, 16 at a time, until 3,000 have been made and 300 since the old nib stopped accepting.
        const errors: Array<string> = []
        let made = 0
        let afterHandover = 0
        let handedOver = false
        const deadline = Date.now() + 90_000
        const loop = async () => {
          while (Date.now() < deadline && (made < 3000 || afterHandover < 300)) {
            const n = made++
            if (handedOver) afterHandover++
            const error = await exchange(lb.port, n)
            if (error !== undefined) errors.push(error)
          }
        }
        const load = Promise.all(Array.from({ length: 16 }, loop))

        // 20 long transfers in flight when the signal comes.
        yield* Effect.promise(() => Poll.until(() => made >= 600, 30_000))
        const transfers = Promise.all(Array.from({ length: 20 }, (_, i) => transfer(lb.port, ip(20 + i))))
        yield* Effect.promise(() => sleep(300))
        const newPid = yield* upgrade(lb)
        handedOver = true
        yield* Effect.promise(() => load)
        assert.deepStrictEqual(errors.slice(0, 5), [], `${errors.length} short connections failed`)
        assert.deepStrictEqual((yield* Effect.promise(() => transfers)).filter((e) => e !== undefined), [])
        assert.isAtLeast(made, 3000)
        assert.isAtLeast(afterHandover, 300)

        // The old nib drained and ended; the pid file names the new one.
        const status = yield* Effect.promise(() =>
          Promise.race([lb.exited, sleep(30_000).then(() => "timeout" as const)])
        )
        assert.deepStrictEqual(status, { code: 0, signal: null }, lb.stderr())
        assert.strictEqual(Fs.readFileSync(pidPath, "utf8"), String(newPid))
        assert.isTrue(Nib.isAlive(newPid))

        // The sticky clients reach the servers they had.
        assert.deepStrictEqual(yield* Client.askAll(lb.port, sticky), before)
      }),
    180_000
  )
})

describe("upgrade (SIGUSR2): when the new nib cannot start", () => {
  it.live("a bad line added to -F: the old nib serves on, the new one's error logged, the pid file still its own", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const pidPath = Path.join(dir, "nib.pid")
      const cfg = Path.join(dir, "nib.cfg")
      Fs.writeFileSync(cfg, "blacklist 10\n")
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start(["-F", cfg, "-p", pidPath, "127.0.0.1:0", a.spec()])
      yield* stopTakeovers(lb)
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")

      Fs.appendFileSync(cfg, "bogus command\n")
      process.kill(lb.pid, "SIGUSR2")
      const failed =
        `SIGUSR2: upgrade failed: -F ${cfg}:2: do_cmd: ignoring command starting with 'bogus'; pid ${lb.pid} serves on`
      yield* Nib.logged(lb, failed, 20_000)
      // The new nib said why itself too, and is gone; the old one serves, and the pid file names it.
      assert.include(lb.stderr(), `nib: -F ${cfg}:2: do_cmd: ignoring command starting with 'bogus'`)
      assert.notMatch(lb.stderr(), /taken over from pid/)
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
      assert.strictEqual(Fs.readFileSync(pidPath, "utf8"), String(lb.pid))
      assert.isTrue(Nib.isAlive(lb.pid))

      // Fixed, the next SIGUSR2 upgrades.
      Fs.writeFileSync(cfg, "blacklist 10\n")
      const pid = yield* upgrade(lb)
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
      yield* Effect.promise(() => Poll.until(() => Fs.readFileSync(pidPath, "utf8") === String(pid), 5_000))
      assert.strictEqual(Fs.readFileSync(pidPath, "utf8"), String(pid))
    }))

  it.live("a broken install (the script fails as it loads): the old nib serves on and says how the new one ended", () =>
    Effect.gen(function*() {
      const { install, lb } = yield* fromCopy
      const port = Number(lb.match[2])
      Fs.writeFileSync(Path.join(install, "nib.js"), "process.exit(3)\n")
      process.kill(lb.proc.pid, "SIGUSR2")
      yield* Nib.logged(
        lb.proc,
        `SIGUSR2: upgrade failed: the new nib exited with code 3 before it was ready; pid ${lb.proc.pid} serves on`,
        20_000
      )
      assert.strictEqual(yield* Client.ask(port, ip(2)), "a")
    }))
})

describe("upgrade (SIGUSR2): what the new nib is", () => {
  it.live("the program at the executable's path now: a new version installed there takes over", () =>
    Effect.gen(function*() {
      const { install, lb } = yield* fromCopy
      // "Version 2": the same nib, with a line that says which it is.
      const script = Path.join(install, "nib.js")
      const [shebang, ...rest] = Fs.readFileSync(script, "utf8").split("\n")
      Fs.writeFileSync(
        script,
        [shebang, "process.stderr.write(`nib version 2 (pid ${process.pid})\\n`)", ...rest].join("\n")
      )
      const pid = yield* upgrade(lb.proc)
      assert.include(lb.proc.stderr(), `nib version 2 (pid ${pid})`)
      assert.strictEqual(yield* Client.ask(Number(lb.match[2]), ip(2)), "a")
    }))

  it.live("without -f the new nib is a daemon too (its own session), and the pid file names it", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const pidPath = Path.join(dir, "nib.pid")
      const a = yield* Backend.identity("a")
      // A free port, which another process may take before nib binds it: then another one (three tries).
      let port = 0
      let parent: Nib.Completed | undefined
      for (let tries = 0; tries < 3 && (parent === undefined || /EADDRINUSE/.test(parent.stderr)); tries++) {
        port = yield* Backend.freePort
        parent = yield* Nib.run([...Nib.WORKERS, "-p", pidPath, `127.0.0.1:${port}`, a.spec()])
      }
      assert.deepStrictEqual([parent!.code, parent!.stderr], [0, ""])
      const old = Number(yield* Effect.promise(() => Nib.readPidFile(pidPath)))
      yield* Nib.killOnClose(old)
      assert.strictEqual(yield* Client.ask(port, ip(2)), "a")
      // A connection held open keeps the old nib draining.
      const held = yield* Client.hold(port, ip(3))
      assert.strictEqual(held.name, "a")

      process.kill(old, "SIGUSR2")
      const changed = yield* Effect.promise(() =>
        Poll.until(() => {
          const text = Fs.existsSync(pidPath) ? Fs.readFileSync(pidPath, "utf8") : ""
          return text !== "" && text !== String(old)
        }, 20_000)
      )
      assert.isTrue(changed, "the pid file never named another process")
      const pid = Number(Fs.readFileSync(pidPath, "utf8"))
      yield* Nib.killOnClose(pid)
      // What systemd relies on (docs/nib.service): the pid file names the new nib before the old one exits.
      assert.isTrue(Nib.isAlive(old), "the old nib still drains when the pid file names the new one")
      held.conn.close()
      assert.isTrue(yield* Effect.promise(() => Nib.waitGone(old, 20_000)), "the old daemon did not end")
      assert.isTrue(Nib.isAlive(pid))
      // setsid: the new daemon leads its own session, as the first one did.
      const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      assert.strictEqual(Number(fields[3]), pid, "its session is its own")
      assert.strictEqual(yield* Client.ask(port, ip(2)), "a")
      // The pid file survived the old nib's end, and goes with the new one's.
      assert.isTrue(yield* Effect.promise(() => Nib.stopPid(pid)))
      assert.isFalse(Fs.existsSync(pidPath))
    }))
})

describe("upgrade (SIGUSR2): the other sockets", () => {
  it.live("the control port and the admin endpoint are handed over too: only the new nib answers, while the old drains", () =>
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const lb = yield* Nib.start([...AS_USER, "-C", "127.0.0.1:0", "--admin", "127.0.0.1:0", "127.0.0.1:0", a.spec()])
      yield* stopTakeovers(lb)
      const target = Nibctl.targetOf(lb)
      const base = Admin.baseUrl(lb)
      // A setting changed at run time is the old nib's own (the new one starts from its command line): it tells them
      // apart. A connection held open keeps the old one draining.
      assert.strictEqual(yield* Nibctl.ask(target, "blacklist 7"), "7\n")
      const held = yield* Client.hold(lb.port, ip(2))
      assert.strictEqual(held.name, "a")
      yield* upgrade(lb)
      yield* Nib.logged(lb, "nib: SIGUSR2: listeners closed, 1 connection open", 10_000)
      for (let i = 0; i < 10; i++) {
        assert.strictEqual(yield* Nibctl.ask(target, "blacklist"), "30\n", `control client ${i}`)
        assert.deepStrictEqual((yield* Admin.call(base, "GET", "/api/state")).json, { state: "serving", open: 0 })
      }
      assert.isTrue(Nib.isAlive(lb.pid), "the old nib still drains")
      held.conn.close()
      const status = yield* Effect.promise(() =>
        Promise.race([lb.exited, sleep(30_000).then(() => "timeout" as const)])
      )
      assert.deepStrictEqual(status, { code: 0, signal: null }, lb.stderr())
      assert.strictEqual(yield* Nibctl.ask(target, "blacklist"), "30\n")
      assert.strictEqual(yield* Client.ask(lb.port, ip(2)), "a")
    }))

  it.live.skipIf(openssl === undefined)(
    "with -E the new nib reads the certificate again: a renewed one is served",
    () =>
      Effect.gen(function*() {
        const dir = yield* Nib.tempDir
        const { cert, key } = yield* certificate(dir, "first.example")
        const a = yield* Backend.identity("a")
        const lb = yield* Nib.start(["-E", cert, "-K", key, "127.0.0.1:0", a.spec()])
        yield* stopTakeovers(lb)
        const served = (name: string) =>
          Effect.promise(() =>
            new Promise<string>((resolve, reject) => {
              const socket = Tls.connect({
                host: "127.0.0.1",
                port: lb.port,
                servername: name,
                rejectUnauthorized: false
              })
              socket.once("error", reject)
              socket.once("secureConnect", () => {
                const subject = socket.getPeerCertificate().subject.CN
                socket.once("data", (data: Buffer) => {
                  socket.destroy()
                  resolve(`${subject} ${data.toString("latin1").trim()}`)
                })
              })
            })
          )
        assert.strictEqual(yield* served("first.example"), "first.example a")
        // The renewed certificate, written where the old one was.
        const renewed = yield* certificate(Fs.mkdtempSync(Path.join(dir, "renewed-")), "second.example")
        Fs.copyFileSync(renewed.cert, cert)
        Fs.copyFileSync(renewed.key, key)
        assert.strictEqual(yield* served("first.example"), "first.example a", "the old nib keeps its certificate")
        yield* upgrade(lb)
        assert.strictEqual(yield* served("second.example"), "second.example a")
      })
  )
})

describe("upgrade (SIGUSR2): UDP (-U)", () => {
  it.live(
    "the socket is handed over: the new nib takes every new datagram (new sessions, same servers), the old one's sessions still reply until idle",
    () =>
      Effect.gen(function*() {
        // Servers that answer `name:text`, a `slow...` text only after 1.5 s.
        const names = ["a", "b"]
        const ports = yield* Effect.forEach(names, (name) =>
          Effect.acquireRelease(
            Effect.promise(() =>
              new Promise<Dgram.Socket>((resolve) => {
                const socket = Dgram.createSocket("udp4")
                socket.on("message", (data, from) => {
                  const text = data.toString()
                  const reply = () => socket.send(`${name}:${text}`, from.port, from.address)
                  if (text.startsWith("slow")) setTimeout(reply, 1_500)
                  else reply()
                })
                socket.bind(0, "127.0.0.1", () => resolve(socket))
              })
            ),
            (socket) => Effect.promise(() => new Promise<void>((done) => socket.close(() => done())))
          ).pipe(Effect.map((socket) => socket.address().port)))
        const lb = yield* Nib.start([
          "-U",
          "--udp-idle-timeout",
          "2",
          "127.0.0.1:0",
          ...ports.map((port) => `127.0.0.1:${port}`)
        ])
        yield* stopTakeovers(lb)
        const sticky = [2, 3, 4, 5].map(ip)
        const before = yield* Udp.askAll(lb.port, sticky)
        assert.isTrue(before.every((name) => names.includes(name)), before.join())

        // A live session with a request in flight when the signal comes.
        const client = yield* Udp.client(lb.port, ip(9))
        client.send("first")
        const [first] = yield* Effect.promise(() => client.waitReplies(1))
        const server = first!.slice(0, first!.indexOf(":"))
        client.send("slow one")
        yield* upgrade(lb)
        // Its reply comes through the old nib's session, from the address the client sent to.
        const replies = yield* Effect.promise(() => client.waitReplies(2, 5_000))
        assert.deepStrictEqual(replies, [first, `${server}:slow one`])
        // Its next datagrams reach the new nib: a new session there, to the same server.
        client.send("after 1", "after 2")
        assert.deepStrictEqual(yield* Effect.promise(() => client.waitReplies(4, 5_000)), [
          first,
          `${server}:slow one`,
          `${server}:after 1`,
          `${server}:after 2`
        ])
        assert.deepStrictEqual(new Set(client.sources), new Set([`127.0.0.1:${lb.port}`]))
        assert.deepStrictEqual(yield* Udp.askAll(lb.port, sticky), before)
        // New clients while the old nib drains: every datagram is answered (none read, and dropped, by the old one).
        const fresh = yield* Udp.askAll(lb.port, Array.from({ length: 20 }, (_, i) => ip(30 + i)))
        assert.isTrue(Nib.isAlive(lb.pid), "the old nib was still draining")
        assert.deepStrictEqual(fresh.filter((name) => !names.includes(name)), [])
        // The old nib ends once its sessions have gone idle.
        const status = yield* Effect.promise(() =>
          Promise.race([lb.exited, sleep(30_000).then(() => "timeout" as const)])
        )
        assert.deepStrictEqual(status, { code: 0, signal: null }, lb.stderr())
        assert.include(lb.stderr(), "nib: all sessions done, exiting")
        client.send("after the old one")
        assert.strictEqual(
          (yield* Effect.promise(() => client.waitReplies(5, 5_000)))[4],
          `${server}:after the old one`
        )
      }),
    60_000
  )
})

describe("upgrade (SIGUSR2): Unix socket paths", () => {
  it.live("the listen path and the control port's path are the new nib's: they stay when the old one ends, and go with the new one", () =>
    Effect.gen(function*() {
      const dir = yield* Nib.tempDir
      const listen = Path.join(dir, "nib.sock")
      const control = Path.join(dir, "control.sock")
      const a = yield* Backend.identity("a")
      const escaped = listen.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
      const ready = new RegExp(`nib: listening on ${escaped} \\(pid (\\d+)(?:, \\d+ workers)?\\)`)
      const { proc } = yield* Effect.acquireRelease(
        Effect.promise(() =>
          Nib.spawnReady(Nib.NODE, [Nib.NIB, "-f", ...AS_USER, "-C", control, listen, a.spec()], ready)
        ),
        (started) => Effect.promise(() => Nib.stop(started.proc))
      )
      yield* stopTakeovers(proc)
      assert.strictEqual(yield* Unix.ask(listen), "a")
      assert.strictEqual(yield* Nibctl.ask(control, "blacklist"), "30\n")
      const pid = yield* upgrade(proc)
      const status = yield* Effect.promise(() =>
        Promise.race([proc.exited, sleep(30_000).then(() => "timeout" as const)])
      )
      assert.deepStrictEqual(status, { code: 0, signal: null }, proc.stderr())
      // The old nib closed its sockets and left the paths: the new one serves on them.
      assert.strictEqual(yield* Unix.ask(listen), "a")
      assert.strictEqual(yield* Nibctl.ask(control, "blacklist"), "30\n")
      // Stopped, the new one removes them, as any nib does.
      assert.isTrue(yield* Effect.promise(() => Nib.stopPid(pid)))
      assert.isFalse(Fs.existsSync(listen), "the listen path stays")
      assert.isFalse(Fs.existsSync(control), "the control port's path stays")
    }))
})
