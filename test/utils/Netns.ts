/**
 * Network namespaces for tests that need a network of their own (a LAN with several hosts, an address that moves
 * between them): a probe that says why namespaces cannot be made here, and a `Lab` that creates namespaces joined by
 * veth pairs to a bridge, runs processes inside them, and removes all of it again.
 *
 * Nothing here changes the root namespace: the bridge lives in a namespace of its own, and each veth pair is created
 * inside the namespaces it joins (`ip -n LAN link add ... peer ... netns HOST`), so the root namespace never holds an
 * interface, an address or a route of the lab, not even for a moment.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { threadId } from "node:worker_threads"
import * as Nib from "./Nib.ts"

const DIRS = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]

/** The absolute path of executable `name` in the usual system directories, or undefined. */
export const which = (name: string): string | undefined =>
  DIRS.map((dir) => `${dir}/${name}`).find((path) => Fs.existsSync(path))

/** iproute2's `ip`. */
export const IP = which("ip")

/** Runs `ip args` to completion: its exit code and output (never throws). */
const ipSync = (args: ReadonlyArray<string>) => {
  const result = ChildProcess.spawnSync(IP ?? "ip", [...args], { encoding: "utf8", timeout: 10_000 })
  return {
    ok: result.status === 0,
    stdout: result.stdout ?? "",
    message: (result.error?.message ?? result.stderr ?? "").trim().split("\n")[0] ?? ""
  }
}

/**
 * Why network namespaces cannot be used here (not Linux, no `ip`, not allowed to create or enter one), or undefined
 * when they can. It asks the kernel rather than guessing from the uid: it creates a namespace, runs a command inside
 * it, and deletes it.
 */
export const unavailable = (): string | undefined => {
  if (process.platform !== "linux") return `network namespaces are Linux's (this is ${process.platform})`
  if (IP === undefined) return "iproute2's `ip` is not installed"
  const probe = `nibprobe-${process.pid}-${threadId}`
  const add = ipSync(["netns", "add", probe])
  if (!add.ok) return `cannot create a network namespace (\`ip netns add\`: ${add.message || "refused"})`
  try {
    const exec = ipSync(["netns", "exec", probe, IP, "link", "set", "lo", "up"])
    if (!exec.ok) return `cannot enter a network namespace (\`ip netns exec\`: ${exec.message || "refused"})`
  } finally {
    ipSync(["netns", "del", probe])
  }
  return undefined
}

/** The sysctls a lab may set inside its namespaces (each namespace has its own). */
const SYSCTLS = ["net/ipv4/ip_nonlocal_bind", "net/ipv4/ip_forward"]

/**
 * The root namespace's interfaces, addresses, routes and {@link SYSCTLS}, one line each: what a lab must leave as it
 * found it (this process runs in the root namespace).
 */
export const rootNetwork = (): string =>
  [["-o", "link"], ["-o", "addr"], ["route"], ["-6", "route"]]
    .map((args) => ipSync(args).stdout.split("\n").map((line) => line.replace(/\s+/g, " ").trim()).filter(Boolean))
    .flat()
    // Counters and timers change on their own; the set of interfaces, addresses and routes is what matters.
    .map((line) => line.replace(/ (valid_lft|preferred_lft) \S+/g, "").replace(/ expires \S+/g, ""))
    .concat(SYSCTLS.map((name) => `${name} = ${Fs.readFileSync(`/proc/sys/${name}`, "utf8").trim()}`))
    .toSorted()
    .join("\n")

/**
 * A set of network namespaces named `TAG-PID-THREAD-NAME` (unique to this process and thread: parallel runs do not
 * clash), the processes started in them, and `teardown` to remove everything. A namespace is recorded before it is
 * made, so a lab that failed half-way is removed as well.
 */
export class Lab {
  /** Every namespace created (or being created), by short name. */
  private readonly namespaces: Array<string> = []
  /** Every process started, newest last. */
  private readonly procs: Array<Nib.Proc> = []
  /** What every namespace's name starts with. */
  readonly prefix: string

  constructor(tag: string) {
    this.prefix = `${tag}-${process.pid}-${threadId}`
  }

  /** The full name of namespace `name`. */
  ns(name: string): string {
    return `${this.prefix}-${name}`
  }

  /** Runs `ip args`; throws with ip's message if it fails. */
  ip(...args: ReadonlyArray<string>): string {
    const result = ipSync(args)
    if (!result.ok) throw new Error(`ip ${args.join(" ")}: ${result.message}`)
    return result.stdout
  }

  /** Creates namespace `name` with its loopback up. */
  add(name: string): void {
    this.namespaces.push(name)
    this.ip("netns", "add", this.ns(name))
    this.ip("-n", this.ns(name), "link", "set", "lo", "up")
  }

  /** Creates namespace `name` holding bridge `br0` (up): the LAN that {@link plug} joins hosts to. */
  addSwitch(name: string): void {
    this.add(name)
    this.ip("-n", this.ns(name), "link", "add", "br0", "type", "bridge")
    this.ip("-n", this.ns(name), "link", "set", "br0", "up")
  }

  /**
   * Creates namespace `host` and plugs it into the bridge of namespace `lan` with a veth pair: `eth0` in the host,
   * with `addresses` (CIDR), and `port-HOST` on the bridge.
   */
  plug(lan: string, host: string, addresses: ReadonlyArray<string>): void {
    this.add(host)
    const port = `port-${host}`.slice(0, 15)
    this.ip("-n", this.ns(lan), "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", this.ns(host))
    this.ip("-n", this.ns(lan), "link", "set", port, "master", "br0")
    this.ip("-n", this.ns(lan), "link", "set", port, "up")
    for (const address of addresses) this.ip("-n", this.ns(host), "addr", "add", address, "dev", "eth0")
    this.ip("-n", this.ns(host), "link", "set", "eth0", "up")
  }

  /** Whether `eth0` of namespace `host` holds address `ip`. */
  holds(host: string, ip: string): boolean {
    return ipSync(["-n", this.ns(host), "-4", "-o", "addr", "show", "dev", "eth0"]).stdout.includes(` ${ip}/`)
  }

  /**
   * Starts `command args` inside namespace `host` (`ip netns exec`, which execs the command: the process keeps the
   * pid) and waits until its output matches `ready`. The process is stopped by {@link teardown} unless stopped before.
   */
  async spawn(
    host: string,
    command: string,
    args: ReadonlyArray<string>,
    ready: RegExp,
    timeoutMs?: number
  ): Promise<{ readonly proc: Nib.Proc; readonly match: RegExpExecArray }> {
    const started = await Nib.spawnReady(IP!, ["netns", "exec", this.ns(host), command, ...args], ready, timeoutMs)
    this.procs.push(started.proc)
    return started
  }

  /** Runs `command args` inside namespace `host` to completion. */
  run(host: string, command: string, args: ReadonlyArray<string>, timeoutMs?: number): Promise<Nib.Completed> {
    return Nib.runToCompletion(IP!, ["netns", "exec", this.ns(host), command, ...args], timeoutMs)
  }

  /**
   * Removes the lab: stops its processes (SIGTERM, then SIGKILL), kills whatever still runs inside its namespaces (a
   * child a process left behind: everything in them was started here), and deletes the namespaces. Goes on past
   * failures; returns what it could not do (empty: all gone).
   */
  async teardown(): Promise<Array<string>> {
    const problems: Array<string> = []
    await Promise.all(this.procs.splice(0).toReversed().map((proc) => Nib.stop(proc)))
    for (const name of this.namespaces) {
      const pids = ipSync(["netns", "pids", this.ns(name)]).stdout.split("\n").filter((line) => /^\d+$/.test(line))
      for (const pid of pids) {
        try {
          process.kill(Number(pid), "SIGKILL")
        } catch {
          // gone meanwhile
        }
      }
      for (const pid of pids) {
        if (!(await Nib.waitGone(Number(pid), 5_000))) problems.push(`process ${pid} in ${this.ns(name)} survived`)
      }
    }
    // Hosts first, the bridge's namespace last: deleting a host's namespace deletes its veth pair with it.
    for (const name of this.namespaces.splice(0).toReversed()) {
      const del = ipSync(["netns", "del", this.ns(name)])
      if (!del.ok && Fs.existsSync(`/run/netns/${this.ns(name)}`)) {
        problems.push(`ip netns del ${this.ns(name)}: ${del.message}`)
      }
    }
    return problems
  }
}
