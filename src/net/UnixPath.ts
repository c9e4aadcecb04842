/**
 * The path of a listening Unix socket, kept apart from the socket's handle. libuv removes the path a server bound when
 * that server closes: a nib that handed its socket to the nib replacing it (an upgrade) would take the path away from
 * the new one as it stops. So a server binds a temporary name beside the path and renames it into place (which also
 * replaces a stale socket file in one step), and the path is removed when the server closes by whoever still owns it:
 * not by a nib that handed it over, nor when another socket has taken the path since.
 */
import * as Fs from "node:fs"

/** The longest path a Unix socket address holds (Linux's `sun_path`, its final NUL left out). */
const PATH_MAX = 107

/** A path this process's socket holds: its inode tells whether the path still is that socket. @category models */
export interface Claim {
  readonly path: string
  readonly ino: number
}

let made = 0

/**
 * The name to bind for `path`: a temporary one beside it, or `path` itself when a longer name would not fit (the old
 * way: the stale file removed first, and libuv removes the path at close).
 */
export const bindName = (path: string): string => {
  const temporary = `${path}.${process.pid}.${made++}`
  if (Buffer.byteLength(temporary) <= PATH_MAX) return temporary
  Fs.rmSync(path, { force: true })
  return path
}

/** Once the socket listens at `bound` (from {@link bindName}): moves it to `path`, and says it is this process's. */
export const claim = (bound: string, path: string): Claim => {
  if (bound !== path) Fs.renameSync(bound, path)
  return { path, ino: Fs.statSync(path).ino }
}

/** A socket taken over at `path` (an upgrade): this process's now. */
export const adopt = (path: string): Claim | undefined => {
  try {
    return { path, ino: Fs.statSync(path).ino }
  } catch {
    return undefined
  }
}

/** Removes the path if it still is the claimed socket. */
export const release = (claimed: Claim | undefined): void => {
  if (claimed === undefined) return
  try {
    if (Fs.statSync(claimed.path).ino === claimed.ino) Fs.rmSync(claimed.path, { force: true })
  } catch {
    // gone already
  }
}
