/**
 * pen, the C balancer nib succeeds, as a test oracle: find its binary, start it in the foreground on a free port and
 * wait until it listens, without sending it a single connection (a probe would be a client: it would advance pen's
 * roundrobin cursor and take a slot in its sticky table).
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { acceptQueue, listenFreePort } from "./Backend.ts"
import * as Nib from "./Nib.ts"

/** Whether `path` is an executable file. */
export const isExecutable = (path: string): boolean => {
  try {
    Fs.accessSync(path, Fs.constants.X_OK)
    return Fs.statSync(path).isFile()
  } catch {
    return false
  }
}

/** Where pen is, or why it was not found. */
export type Found = { readonly path: string } | { readonly path: undefined; readonly why: string }

/**
 * Finds the pen binary: `$PEN` if set (and then only there), else the first `pen` on `$PATH`, else /usr/sbin/pen or
 * /usr/bin/pen (the Debian package).
 */
export const find = (): Found => {
  const explicit = process.env["PEN"]
  if (explicit !== undefined && explicit !== "") {
    return isExecutable(explicit) ? { path: explicit } : { path: undefined, why: `$PEN=${explicit} is not executable` }
  }
  const dirs = (process.env["PATH"] ?? "").split(":").filter((dir) => dir !== "")
  for (const candidate of [...dirs.map((dir) => Path.join(dir, "pen")), "/usr/sbin/pen", "/usr/bin/pen"]) {
    if (isExecutable(candidate)) return { path: candidate }
  }
  return { path: undefined, why: "no $PEN, no pen on $PATH, no /usr/sbin/pen or /usr/bin/pen" }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Waits (polling /proc/net/tcp, at most `timeoutMs`) until a TCP listener is bound on 127.0.0.1:`port`. Unlike
 * {@link Nib.waitForPort} it never connects.
 */
export const waitForListen = async (port: number, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (acceptQueue(port) === undefined) {
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`)
    await sleep(20)
  }
}

/** pen's start-up line, printed on stderr with `-f` once its listener is open and its tables exist. */
export const READY = /After: conns = /

/**
 * Starts `pen -f <flags> 127.0.0.1:PORT <servers>` on a free port (pen cannot listen on port 0: a port is picked
 * right before, and picked again if pen could not bind it) and waits until it listens.
 */
export const spawnPen = async (
  pen: string,
  flags: ReadonlyArray<string>,
  servers: ReadonlyArray<string>,
  timeoutMs = 10_000
): Promise<Nib.Balancer> => {
  let lastError: unknown
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await listenFreePort()
    try {
      const { proc } = await Nib.spawnReady(pen, ["-f", ...flags, `127.0.0.1:${port}`, ...servers], READY, timeoutMs)
      try {
        await waitForListen(port, timeoutMs)
      } catch (error) {
        await Nib.stop(proc)
        throw error
      }
      return { ...proc, host: "127.0.0.1", port }
    } catch (error) {
      lastError = error
    }
  }
  throw lastError
}
