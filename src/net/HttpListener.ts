/**
 * The admin endpoint's HTTP server on Node: `@effect/platform-node`'s `NodeHttpServer` over a `node:http` server,
 * listening on a TCP address or a socket path. Here because node sockets live in `src/net/`.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Http from "node:http"
import type * as Net from "node:net"
import type * as Address from "../domain/Address.ts"

/**
 * An HTTP server listening on `endpoint` (or on the inherited socket `fd`, bound to it already: an upgrade), closed
 * with the layer's scope; `descriptor` says its socket's descriptor once it listens.
 */
export const make = (endpoint: Address.Endpoint, fd?: number) => {
  let server: Http.Server | undefined
  return {
    layer: NodeHttpServer.layer(
      () => (server = Http.createServer()),
      fd !== undefined
        // Node's `listen` takes a bound socket as `{ fd }` (its types list that form apart).
        ? ({ fd, backlog: 64 } as Net.ListenOptions)
        : endpoint._tag === "Tcp"
        ? { host: endpoint.host, port: endpoint.port, backlog: 64 }
        : { path: endpoint.path, backlog: 64 }
    ),
    descriptor: (): number | undefined => {
      const handle = (server as unknown as { readonly _handle?: { readonly fd?: unknown } | null } | undefined)?._handle
      return typeof handle?.fd === "number" && handle.fd >= 0 ? handle.fd : undefined
    }
  }
}
