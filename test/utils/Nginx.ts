/**
 * Debian's nginx as a test peer: one process (no master, no daemon) in a temporary prefix, on a free port of
 * 127.0.0.1, stopped by its PID with the test's scope. Skips are the caller's: `path` is undefined without nginx.
 */
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { acceptQueue, listenFreePort } from "./Backend.ts"
import * as Nib from "./Nib.ts"

/** The nginx binary, if installed. */
export const path = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((candidate) => Fs.existsSync(candidate))

/** A running nginx: its port and the files of its prefix. */
export interface Nginx {
  readonly port: number
  readonly dir: string
  /** The access log's lines so far. */
  readonly accessLog: () => Array<string>
}

/**
 * Starts nginx with `http` as the body of its `http { }` block, where `PORT` is replaced by the port it listens on
 * and `DIR` by its prefix (for `access_log DIR/access.log ...`). Waits (bounded) until it listens.
 */
export const start = (http: string) =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "nib-nginx-"))),
      (created) => Effect.sync(() => Fs.rmSync(created, { recursive: true, force: true }))
    )
    for (const temp of ["body", "proxy", "fastcgi", "uwsgi", "scgi"]) Fs.mkdirSync(Path.join(dir, temp))
    const port = yield* Effect.promise(listenFreePort)
    const config = [
      "worker_processes 1;",
      "daemon off;",
      "master_process off;",
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log;`,
      "events { worker_connections 64; }",
      "http {",
      `  client_body_temp_path ${dir}/body;`,
      `  proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`,
      `  scgi_temp_path ${dir}/scgi;`,
      http.replaceAll("PORT", String(port)).replaceAll("DIR", dir),
      "}"
    ].join("\n")
    Fs.writeFileSync(Path.join(dir, "nginx.conf"), config)
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.spawn(path!, ["-c", Path.join(dir, "nginx.conf"), "-p", dir], { stdio: "ignore" })
      ),
      (spawned) => Effect.promise(() => Nib.stopChild(spawned))
    )
    // Listening when the kernel shows its socket (bounded: 10 s).
    const deadline = Date.now() + 10_000
    while (acceptQueue(port) === undefined) {
      if (child.exitCode !== null || Date.now() > deadline) {
        const log = Fs.existsSync(Path.join(dir, "error.log"))
          ? Fs.readFileSync(Path.join(dir, "error.log"), "utf8")
          : ""
        return yield* Effect.die(new Error(`nginx did not listen on ${port}: ${log}`))
      }
      yield* Effect.sleep("20 millis")
    }
    return {
      port,
      dir,
      accessLog: () => {
        const file = Path.join(dir, "access.log")
        return Fs.existsSync(file) ? Fs.readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : []
      }
    } satisfies Nginx
  })
