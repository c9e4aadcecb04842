/**
 * A real DNS server for the tests of names that follow DNS: Debian's dnsmasq (installed by .ci/run) on 127.0.0.1,
 * answering the names of a hosts file of the test's own (`--addn-hosts`), which it reads again on SIGHUP, and nothing
 * else (`--local=/test/`: any other `.test` name does not exist). It logs every query it gets, so that a test can wait
 * for a client to have asked, rather than for time to pass.
 */
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Dgram from "node:dgram"
import * as Dns from "node:dns"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Nib from "./Nib.ts"
import * as Poll from "./Poll.ts"

/** Where dnsmasq is, if installed. */
export const DNSMASQ = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"].find((path) => Fs.existsSync(path))

/** A running dnsmasq. */
export interface Server {
  /** Its port on 127.0.0.1. */
  readonly port: number
  /** `127.0.0.1:PORT`, as `--resolver` takes it. */
  readonly address: string
  /** Sets the address of `name` (undefined: `name` no longer exists), and waits until dnsmasq answers so. */
  readonly set: (name: string, address: string | undefined) => Effect.Effect<void>
  /** The A queries for `name` it has got so far. */
  readonly queries: (name: string) => number
}

/**
 * A port of 127.0.0.1 free for TCP and UDP alike, as dnsmasq binds both: one the system gives a TCP listener, which
 * a UDP socket can bind too (undefined when it cannot). Both are closed before it is returned. A port merely free for
 * UDP is often taken for TCP on a machine with many connections.
 */
export const freeForBoth = (): Promise<number | undefined> =>
  new Promise((resolve) => {
    const server = Net.createServer()
    server.once("error", () => resolve(undefined))
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const port = (server.address() as Net.AddressInfo).port
      const socket = Dgram.createSocket("udp4")
      const done = (free: boolean) => server.close(() => resolve(free ? port : undefined))
      socket.once("error", () => done(false))
      socket.bind(port, "127.0.0.1", () => socket.close(() => done(true)))
    })
  })

/** What dnsmasq answers for `name` now: its first A record, or undefined. */
const ask = (port: number, name: string): Promise<string | undefined> => {
  const resolver = new Dns.promises.Resolver({ timeout: 1000, tries: 1 })
  resolver.setServers([`127.0.0.1:${port}`])
  return resolver.resolve4(name).then((found) => found[0], () => undefined)
}

const hostsText = (records: ReadonlyMap<string, string>) =>
  [...records].map(([name, address]) => `${address} ${name}\n`).join("")

/**
 * A dnsmasq answering `records` (name -> IPv4 address), stopped (by its PID) with the scope. dnsmasq binds its port
 * for TCP as well as UDP: the port found free for both may be taken by the time it binds it, and dnsmasq then exits;
 * it is started again on another port, at most 5 times.
 */
export const start = (dir: string, initial: Readonly<Record<string, string>>) =>
  Effect.gen(function*() {
    const records = new Map(Object.entries(initial))
    const hosts = Path.join(dir, "hosts")
    Fs.writeFileSync(hosts, hostsText(records))
    const [probe, expected] = [...records][0]!
    for (let attempt = 1; attempt <= 5; attempt++) {
      const port = yield* Effect.promise(freeForBoth)
      if (port === undefined) continue
      const child = yield* Effect.acquireRelease(
        Effect.sync(() =>
          ChildProcess.spawn(DNSMASQ!, [
            "-k",
            "-C",
            "/dev/null",
            `--port=${port}`,
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            `--addn-hosts=${hosts}`,
            "--local=/test/",
            "--log-queries",
            "--log-facility=-",
            "--pid-file=",
            ...(process.getuid?.() === 0 ? ["--user=root"] : [])
          ], { stdio: ["ignore", "ignore", "pipe"] })
        ),
        (spawned) => Effect.promise(() => Nib.stopChild(spawned))
      )
      let log = ""
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (log += chunk))
      // Ready when it answers (bounded: 100 tries of at most 1 s, 50 ms apart: a query before dnsmasq listens is
      // refused at once), unless it exits first.
      let ready = false
      for (let i = 0; i < 100 && child.exitCode === null && !ready; i++) {
        ready = (yield* Effect.promise(() => ask(port, probe))) === expected
        if (!ready) yield* Effect.sleep(50)
      }
      if (ready) {
        const server: Server = {
          port,
          address: `127.0.0.1:${port}`,
          set: (name, address) =>
            Effect.gen(function*() {
              if (address === undefined) records.delete(name)
              else records.set(name, address)
              Fs.writeFileSync(hosts, hostsText(records))
              child.kill("SIGHUP")
              // Bounded: 50 tries of at most 1 s.
              for (let i = 0; i < 50; i++) {
                if ((yield* Effect.promise(() => ask(port, name))) === address) return
                yield* Effect.sleep(20)
              }
              return yield* Effect.die(new Error(`dnsmasq never answered ${name} -> ${address}: ${log}`))
            }),
          queries: (name) => log.split("\n").filter((line) => line.includes(`query[A] ${name} `)).length
        }
        return server
      }
      if (child.exitCode === null || attempt === 5) {
        return yield* Effect.die(new Error(`dnsmasq on port ${port} never answered (exit ${child.exitCode}): ${log}`))
      }
    }
    return yield* Effect.die(new Error("dnsmasq could not bind a port in 5 tries"))
  })

/** Waits (at most `timeoutMs`) until `server` has got `n` A queries for `name` in all. */
export const queried = (server: Server, name: string, n: number, timeoutMs = 10_000) =>
  Effect.gen(function*() {
    const ok = yield* Poll.waitUntil(() => server.queries(name) >= n, timeoutMs)
    if (!ok) return yield* Effect.die(new Error(`dnsmasq got ${server.queries(name)} queries for ${name}, not ${n}`))
  })
