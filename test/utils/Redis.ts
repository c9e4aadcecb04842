/**
 * A real redis-server for the tests that need one (`--peers`, a `send:`/`expect:` check): Debian's, installed by
 * .ci/run; the tests that need it are skipped, with a warning, where it is not.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Nib from "./Nib.ts"

/** redis-server's path, or undefined when it is not installed. */
export const path = ["/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"].find((p) =>
  Fs.existsSync(p)
)

/** Warns, once per file, that `file`'s Redis cases are skipped (when redis-server is missing). */
export const warnIfMissing = (file: string): void => {
  if (path === undefined) {
    console.warn(`${file}: the redis-server cases SKIPPED, not installed (apt-get install redis-server)`)
  }
}

/**
 * A redis-server on 127.0.0.1:`port` (port 0: no plain TCP port, for `--tls-port` in `extra`), with no persistence,
 * stopped when the scope closes (earlier with `Nib.stop(proc)`).
 */
export const start = (port: number, extra: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      Nib.spawnReady(
        path!,
        ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extra],
        /Ready to accept connections/
      )
    ),
    ({ proc }) => Effect.promise(() => Nib.stop(proc))
  )
