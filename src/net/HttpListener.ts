/**
 * The admin endpoint's HTTP server on Node: `@effect/platform-node`'s `NodeHttpServer` over a `node:http` server,
 * listening on a TCP address or a socket path. Here because node sockets live in `src/net/`.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Http from "node:http"
import type * as Address from "../domain/Address.ts"

/** An HTTP server listening on `endpoint`, closed with the layer's scope. */
export const layer = (endpoint: Address.Endpoint) =>
  NodeHttpServer.layer(
    () => Http.createServer(),
    endpoint._tag === "Tcp"
      ? { host: endpoint.host, port: endpoint.port, backlog: 64 }
      : { path: endpoint.path, backlog: 64 }
  )
