/**
 * Two nibs as a high-availability pair (docs/ha.md), built for real inside network namespaces: keepalived (VRRP) moves
 * a virtual address between them, and the two share their sticky table through Redis (`--peers`), so that a client
 * pinned to a server through the active nib is sent to the same server by the standby once the address has moved.
 *
 * The LAN is a bridge in a namespace of its own, 192.0.2.0/24 (TEST-NET-1) only exists inside the lab, and the root
 * namespace is left as it was (checked at the end). Every namespace and process is removed in afterAll, also when the
 * test fails. Without namespaces (not root, no CAP_NET_ADMIN, no `ip`) or without keepalived, the test is skipped and
 * says why.
 *
 *   nibA 192.0.2.11 (MASTER) ─┐                ┌─ servers 192.0.2.21 (web1), 192.0.2.22 (web2)
 *   nibB 192.0.2.12 (BACKUP) ─┼── lan (br0) ───┼─ redis 192.0.2.30
 *   VIP 192.0.2.100           │                └─ client 192.0.2.50, .51
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Netns from "../utils/Netns.ts"
import * as Nib from "../utils/Nib.ts"
import { NIBCTL } from "../utils/Nibctl.ts"
import * as Poll from "../utils/Poll.ts"

const KEEPALIVED = Netns.which("keepalived")
const REDIS = Netns.which("redis-server")

const skipReason = Netns.unavailable()
  ?? (KEEPALIVED === undefined ? "keepalived is not installed (.ci/run installs it)" : undefined)
  ?? (REDIS === undefined ? "redis-server is not installed (.ci/run installs it)" : undefined)
if (skipReason !== undefined) console.warn(`test/e2e/ha.test.ts: SKIPPED: ${skipReason}`)

const VIP = "192.0.2.100"
const NIB_A = "192.0.2.11"
const NIB_B = "192.0.2.12"
const WEB1 = "192.0.2.21"
const WEB2 = "192.0.2.22"
const REDIS_ADDRESS = "192.0.2.30"
const CLIENT = "192.0.2.50"
/** Another client, which comes first: it takes the roundrobin cursor's first server on the active nib. */
const EARLIER = "192.0.2.51"
/** keepalived's advertisement interval, in seconds. */
const ADVERT_INT = 1
/** The check script: every second, down after 2 failures in a row (docs/ha.md has the same). */
const CHECK = { interval: 1, fall: 2, rise: 2 }
/** nib's control port inside each nib's namespace. */
const CONTROL = "127.0.0.1:10001"
/** The servers in nib's order: server 0, server 1. */
const NAMES = ["web1", "web2"]

/**
 * The keepalived configuration of one side, the one docs/ha.md gives with this lab's addresses: unicast
 * advertisements to the other side, the VIP on eth0, and a check script that fails when the nib of `pidFile` is gone.
 */
const keepalivedConf = (side: {
  readonly name: string
  readonly state: "MASTER" | "BACKUP"
  readonly priority: number
  readonly self: string
  readonly peer: string
  readonly pidFile: string
}) =>
  `global_defs {
  router_id ${side.name}
  script_user root
  enable_script_security
}

vrrp_script nib_alive {
  script "/bin/sh -c 'kill -0 $(cat ${side.pidFile})'"
  interval ${CHECK.interval}
  timeout 1
  fall ${CHECK.fall}
  rise ${CHECK.rise}
}

vrrp_instance nib_vip {
  state ${side.state}
  interface eth0
  virtual_router_id 51
  priority ${side.priority}
  advert_int ${ADVERT_INT}
  unicast_src_ip ${side.self}
  unicast_peer {
    ${side.peer}
  }
  virtual_ipaddress {
    ${VIP}/24 dev eth0
  }
  track_script {
    nib_alive
  }
}
`

/** Identity servers (`NAME=HOST:PORT` each): a connection first gets the name and a newline; each accept is logged. */
const SERVERS_JS = `
const net = require("node:net")
const specs = process.argv.slice(1).map((spec) => spec.split(/[=:]/))
Promise.all(specs.map(([name, host, port]) => new Promise((resolve, reject) => {
  const server = net.createServer((socket) => {
    console.log(name + " accepted from " + socket.remoteAddress)
    socket.on("error", () => {})
    socket.end(name + "\\n")
  })
  server.once("error", reject)
  server.listen({ host, port: Number(port) }, resolve)
}))).then(() => console.log("serving"), (error) => { console.error(String(error)); process.exit(1) })
`

/** One client connection from FROM to HOST:PORT: prints the first line it receives, or (silent), (closed), (CODE). */
const CLIENT_JS = `
const net = require("node:net")
const [from, host, port] = process.argv.slice(1)
const socket = net.connect({ host, port: Number(port), localAddress: from })
let text = ""
const done = (line) => { process.stdout.write(line + "\\n"); socket.destroy(); process.exit(0) }
socket.setTimeout(3000, () => done("(silent)"))
socket.setEncoding("utf8")
socket.on("data", (chunk) => { text += chunk; if (text.includes("\\n")) done(text.slice(0, text.indexOf("\\n"))) })
socket.on("error", (error) => done("(" + error.code + ")"))
socket.on("end", () => done("(closed)"))
`

const lab = new Netns.Lab("nibha")
// Made only when the test runs: vitest runs no afterAll for a suite whose tests are all skipped.
const dir = skipReason === undefined ? Fs.mkdtempSync(Path.join(Os.tmpdir(), "nib-ha-")) : ""
const rootBefore = skipReason === undefined ? Netns.rootNetwork() : ""

afterAll(async () => {
  const problems = await lab.teardown()
  if (dir !== "") Fs.rmSync(dir, { recursive: true, force: true })
  assert.deepStrictEqual(problems, [], "the lab was not removed completely")
  if (skipReason === undefined) {
    assert.strictEqual(
      Netns.rootNetwork(),
      rootBefore,
      "the root namespace's interfaces, addresses, routes or sysctls changed"
    )
  }
}, 60_000)

/** What `from` (in the client namespace) reads first through `host:80`. */
const ask = async (from: string, host = VIP): Promise<string> => {
  const result = await lab.run("client", Nib.NODE, ["-e", CLIENT_JS, from, host, "80"], 10_000)
  assert.strictEqual(result.code, 0, `client ${from}: ${result.stderr}`)
  return result.stdout.trim()
}

/**
 * {@link ask}, again while the address does not answer (at most `tries` times): right after a failover the client's
 * ARP entry may still name the old MAC until keepalived's gratuitous ARP arrives. A server's name ends it at once.
 */
const askThroughFailover = async (from: string, tries = 5): Promise<string> => {
  let answer = ""
  for (let i = 0; i < tries; i++) {
    answer = await ask(from)
    if (!answer.startsWith("(")) return answer
  }
  return answer
}

/** nib's `explain CLIENT` through its control port, asked inside namespace `host`. */
const explain = async (host: string, client: string): Promise<string> => {
  const result = await lab.run(host, Nib.NODE, [NIBCTL, CONTROL, "explain", client], 10_000)
  assert.strictEqual(result.code, 0, `nibctl explain in ${host}: ${result.stderr}`)
  return result.stdout
}

/** The server `explain` names at its end (`=> server N (...)`). */
const chosen = (explanation: string): number => {
  const match = /^=> server (\d+) /m.exec(explanation)
  assert.isNotNull(match, explanation)
  return Number(match![1])
}

describe("a VRRP pair of nibs (keepalived) in network namespaces", () => {
  it.skipIf(skipReason !== undefined)(
    "when the active nib dies, the VIP moves to the standby, which sends the client to the same server",
    { timeout: 120_000 },
    async () => {
      lab.addSwitch("lan")
      lab.plug("lan", "a", [`${NIB_A}/24`])
      lab.plug("lan", "b", [`${NIB_B}/24`])
      lab.plug("lan", "servers", [`${WEB1}/24`, `${WEB2}/24`])
      lab.plug("lan", "redis", [`${REDIS_ADDRESS}/24`])
      lab.plug("lan", "client", [`${CLIENT}/24`, `${EARLIER}/24`])

      const servers = await lab.spawn(
        "servers",
        Nib.NODE,
        ["-e", SERVERS_JS, `web1=${WEB1}:80`, `web2=${WEB2}:80`],
        /^serving$/m
      )
      await lab.spawn("redis", REDIS!, [
        "--bind",
        REDIS_ADDRESS,
        "--port",
        "6379",
        "--save",
        "",
        "--appendonly",
        "no",
        // Bound to a LAN address without a password, Redis answers DENIED unless told otherwise (docs/ha.md).
        "--protected-mode",
        "no",
        "--dir",
        dir
      ], /Ready to accept connections/)

      // The two ways docs/ha.md gives: nibA listens on every address, nibB on the VIP itself, which it does not hold
      // yet: that takes net.ipv4.ip_nonlocal_bind, set in nibB's namespace only.
      lab.ip("netns", "exec", lab.ns("b"), "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_nonlocal_bind")
      const nibArgs = (pidFile: string, listen: string) => [
        Nib.NIB,
        "-f",
        ...Nib.WORKERS,
        "-p",
        pidFile,
        // -u root: nib, like pen, opens no control port as root without -u.
        "-C",
        CONTROL,
        "-u",
        "root",
        // The two share their sticky table through Redis.
        "--peers",
        `redis://${REDIS_ADDRESS}:6379`,
        "--peers-key",
        "ha",
        listen,
        `${WEB1}:80`,
        `${WEB2}:80`
      ]
      const pidA = Path.join(dir, "nibA.pid")
      const pidB = Path.join(dir, "nibB.pid")
      const [nibA, nibB] = await Promise.all([
        lab.spawn("a", Nib.NODE, nibArgs(pidA, "0.0.0.0:80"), Nib.LISTENING, 20_000),
        lab.spawn("b", Nib.NODE, nibArgs(pidB, `${VIP}:80`), Nib.LISTENING, 20_000)
      ])

      const keepalived = async (side: "a" | "b", conf: Parameters<typeof keepalivedConf>[0], ready: RegExp) => {
        const file = Path.join(dir, `keepalived-${side}.conf`)
        Fs.writeFileSync(file, keepalivedConf(conf))
        // Pid files of its own (the defaults are shared by every keepalived on the machine), VRRP only, foreground,
        // logging to the console.
        const args = ["-f", file, "-p", Path.join(dir, `keepalived-${side}.pid`)]
        args.push("-r", Path.join(dir, `keepalived-${side}-vrrp.pid`), "-P", "-n", "-l", "-D", "-G")
        return lab.spawn(side, KEEPALIVED!, args, ready, 30_000)
      }
      // The MASTER first, and the BACKUP once the VIP is on nibA: started together, both could claim it at start.
      const kaA = await keepalived(
        "a",
        { name: "nibA", state: "MASTER", priority: 150, self: NIB_A, peer: NIB_B, pidFile: pidA },
        /Entering MASTER STATE/
      )
      const kaB = await keepalived(
        "b",
        { name: "nibB", state: "BACKUP", priority: 100, self: NIB_B, peer: NIB_A, pidFile: pidB },
        /Entering BACKUP STATE/
      )
      assert.isTrue(lab.holds("a", VIP), `nibA does not hold the VIP:\n${kaA.proc.stdout()}${kaA.proc.stderr()}`)
      assert.isFalse(lab.holds("b", VIP), "nibB holds the VIP too")

      // Where the standby would send the client if it balanced it afresh: its roundrobin cursor's first server.
      const fresh = await explain("b", CLIENT)
      assert.match(fresh, /^not in the sticky table$/m)
      const elsewhere = NAMES[chosen(fresh)]!

      // Through the VIP, the active nib serves: a first client takes that same first server, so the client under
      // test gets the other one, X, where a fresh standby would not send it.
      const earlier = await ask(EARLIER)
      assert.strictEqual(earlier, elsewhere, `${EARLIER} through the VIP`)
      const x = await ask(CLIENT)
      assert.oneOf(x, NAMES, `${CLIENT} through the VIP`)
      assert.notStrictEqual(x, elsewhere, `${CLIENT} through the VIP`)
      assert.strictEqual(await ask(CLIENT), x, "the client is not pinned on the active nib")
      const servedBy = (name: string) =>
        servers.proc.stdout().split("\n").filter((line) => line.startsWith(`${name} accepted from `)).map((line) =>
          line.slice(`${name} accepted from `.length)
        )
      assert.deepStrictEqual([...new Set(servedBy(x))], [NIB_A], "the client's connections did not go through nibA")

      // The pin reaches the standby through Redis (within a second by --peers' design; the wait is bounded at 10 s).
      const pinned = new RegExp(`^sticky to server ${NAMES.indexOf(x)},`, "m")
      let standby = ""
      for (let i = 0; i < 100 && !pinned.test(standby); i++) {
        standby = await explain("b", CLIENT)
        if (!pinned.test(standby)) await new Promise((resolve) => setTimeout(resolve, 100))
      }
      assert.match(
        standby,
        pinned,
        `the client's pin did not reach the standby\n--- nibA:\n${nibA.proc.stderr()}\n--- nibB:\n${nibB.proc.stderr()}`
      )
      assert.strictEqual(NAMES[chosen(standby)], x, standby)

      // nibA crashes (SIGKILL: no clean exit, its pid file stays). keepalived on nibA sees its check fail, goes to
      // FAULT and gives the VIP up; nibB takes it.
      const killedAt = performance.now()
      process.kill(nibA.proc.pid, "SIGKILL")
      const bound = 3 * ADVERT_INT + CHECK.interval * CHECK.fall + 10
      const moved = await Poll.until(() => lab.holds("b", VIP), bound * 1000, 20)
      const seconds = (performance.now() - killedAt) / 1000
      assert.isTrue(moved, `the VIP did not move to nibB within ${bound} s:\n${kaB.proc.stdout()}${kaB.proc.stderr()}`)
      console.log(
        `test/e2e/ha.test.ts: the VIP moved to nibB ${seconds.toFixed(2)} s after nibA was killed ` +
          `(check every ${CHECK.interval} s, down after ${CHECK.fall} failures; advert_int ${ADVERT_INT} s)`
      )
      assert.isTrue(
        await Poll.until(() => !lab.holds("a", VIP), 5_000),
        "nibA's keepalived kept the VIP after its nib died"
      )
      assert.match(kaA.proc.stdout() + kaA.proc.stderr(), /Entering FAULT STATE/)

      // The same client, through the same address, is served by nibB, and sent to X: the pin came through Redis.
      const after = await askThroughFailover(CLIENT)
      assert.include(servedBy(after), NIB_B, "the client's connection after the failover did not go through nibB")
      assert.strictEqual(after, x, `${CLIENT} through the VIP after the failover (${elsewhere}: balanced afresh)`)
    }
  )
})
