/**
 * File descriptors of a process, from /proc (Linux): how many it has open, and a bounded wait for the count to come
 * back down after connections ended.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"

/** The number of open file descriptors of process `pid`. */
export const count = (pid: number): number => Fs.readdirSync(`/proc/${pid}/fd`).length

/** What each descriptor of `pid` points to (`socket:[123]`, `pipe:[45]`, a path), for failure messages. */
export const describe = (pid: number): Array<string> =>
  Fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return `${fd} -> ${Fs.readlinkSync(`/proc/${pid}/fd/${fd}`)}`
    } catch {
      return `${fd} -> (gone)`
    }
  })

/**
 * Polls (every 25 ms, at most `timeoutMs`) until `pid` has at most `target` descriptors open; returns the last count,
 * which is above `target` only if the deadline passed.
 */
export const settle = async (pid: number, target: number, timeoutMs = 5_000): Promise<number> => {
  const deadline = Date.now() + timeoutMs
  let n = count(pid)
  while (n > target && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 25))
    n = count(pid)
  }
  return n
}

/**
 * Polls (every 25 ms, at most `timeoutMs`) until the descriptor count of `pid` has not changed for `quietMs`; returns
 * that count (or the last one at the deadline). For a baseline taken while a process settles.
 */
export const stable = async (pid: number, quietMs = 200, timeoutMs = 5_000): Promise<number> => {
  const deadline = Date.now() + timeoutMs
  let n = count(pid)
  let since = Date.now()
  while (Date.now() - since < quietMs && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 25))
    const next = count(pid)
    if (next !== n) {
      n = next
      since = Date.now()
    }
  }
  return n
}

/** util-linux's prlimit, if installed. */
export const prlimit = ["/usr/bin/prlimit", "/bin/prlimit"].find((path) => Fs.existsSync(path))

/** Sets the soft and hard descriptor limit of running process `pid` (needs {@link prlimit}). */
export const setLimit = (pid: number, limit: number): void => {
  ChildProcess.execFileSync(prlimit!, ["--pid", String(pid), `--nofile=${limit}:${limit}`])
}

/** The descriptor numbers process `pid` has open. */
export const numbers = (pid: number): Array<number> => Fs.readdirSync(`/proc/${pid}/fd`).map(Number)

/** The descriptor limit under which `free` numbers are left free, given the descriptors `open` now. */
export const limitLeaving = (open: ReadonlyArray<number>, free: number): number => {
  let limit = free
  for (const fd of open.toSorted((x, y) => x - y)) {
    if (fd >= limit) break
    limit++
  }
  return limit
}
