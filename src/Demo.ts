/**
 * `nib --demo` (and `npm start`): two small HTTP backends on 127.0.0.1 and the balancer in front of them on
 * 127.0.0.1:8080 (or `nib --demo ADDRESS`), roundrobin so that each request shows which backend answered. `nib` with
 * no arguments is a usage error, as it is for pen, whose hint points here.
 */
import { Console, Effect } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as Config from "./Config.ts"
import * as Address from "./domain/Address.ts"
import * as ServerSpec from "./domain/ServerSpec.ts"

const backend = (name: string) =>
  Effect.acquireRelease(
    Effect.callback<Http.Server>((resume) => {
      const server = Http.createServer((request, response) => {
        response.setHeader("content-type", "text/plain")
        response.end(`hello from ${name} (${request.method} ${request.url}, via ${request.socket.remoteAddress})\n`)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

/** Where the demo listens unless told otherwise. @category constants */
export const defaultListen: Address.Endpoint = Address.tcp("127.0.0.1", 8080)

/** Runs the demo on `listen` with `serve` (the CLI's), until interrupted. */
export const run = <E, R>(
  listen: Address.Endpoint,
  serve: (
    settings: Config.Settings,
    onReady: (address: Address.Endpoint) => Effect.Effect<void>
  ) => Effect.Effect<void, E, R>
) =>
  Effect.scoped(Effect.gen(function*() {
    const ports = [yield* backend("backend 1"), yield* backend("backend 2")]
    const settings = yield* Config.decode({
      ...Config.defaults,
      foreground: true,
      roundrobin: true,
      listen,
      servers: ports.map((port) => ServerSpec.make(Address.tcp("127.0.0.1", port)))
    })
    return yield* serve(settings, (address) =>
      Console.error(
        [
          `nib demo: balancing ${Address.format(address)} over two HTTP backends on ports ${ports.join(" and ")}`,
          `try:  curl http://${Address.format(address)}/   (twice: -r alternates the backends)`,
          `stop: Ctrl-C.  Real use: nib [options] [host:]port server1 server2 ...  (nib --help)`
        ].join("\n")
      ))
  }))
