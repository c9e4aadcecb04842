/**
 * The admin endpoint's HTTP server on Node: `@effect/platform-node`'s `NodeHttpServer` over a `node:http` server,
 * listening on a TCP address or a socket path. Here because node sockets live in `src/net/`.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Effect } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"
import type * as Address from "../domain/Address.ts"
import * as UnixPath from "./UnixPath.ts"

/**
 * An HTTP server listening on `endpoint` (or on the inherited socket `fd`, bound to it already: an upgrade), closed
 * with the layer's scope. A socket path is bound under a temporary name: `settle`, once the server listens, moves it
 * into place (`UnixPath`) until the scope closes; `descriptor` says the socket's descriptor, and `handOver` stops
 * listening once a new nib has the socket (its path then stays).
 */
export const make = (endpoint: Address.Endpoint, fd?: number) => {
  let server: Http.Server | undefined
  let handedOver = false
  const bound = endpoint._tag === "Unix" && fd === undefined ? UnixPath.bindName(endpoint.path) : undefined
  return {
    layer: NodeHttpServer.layer(
      () => (server = Http.createServer()),
      fd !== undefined
        // Node's `listen` takes a bound socket as `{ fd }` (its types list that form apart).
        ? ({ fd, backlog: 64 } as Net.ListenOptions)
        : endpoint._tag === "Tcp"
        ? { host: endpoint.host, port: endpoint.port, backlog: 64 }
        : { path: bound!, backlog: 64 }
    ),
    settle: Effect.acquireRelease(
      Effect.try(() =>
        endpoint._tag !== "Unix"
          ? undefined
          : bound === undefined
          ? UnixPath.adopt(endpoint.path)
          : UnixPath.claim(bound, endpoint.path)
      ),
      (claimed) =>
        Effect.sync(() => {
          if (!handedOver) UnixPath.release(claimed)
        })
    ),
    descriptor: (): number | undefined => {
      const handle = (server as unknown as { readonly _handle?: { readonly fd?: unknown } | null } | undefined)?._handle
      return typeof handle?.fd === "number" && handle.fd >= 0 ? handle.fd : undefined
    },
    handOver: () => {
      handedOver = true
      server?.close()
    }
  }
}
