/**
 * A Node HTTP server on a free port of 127.0.0.1 for the length of a test's scope: every connection is closed with it.
 */
import { Effect } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"

/** Serves `handler` (and `setup`, given the server first: extra listeners) until the scope closes. */
export const serve = (handler: Http.RequestListener, setup?: (server: Http.Server) => void) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ readonly server: Http.Server; readonly port: number }>((resolve) => {
        const server = Http.createServer(handler)
        setup?.(server)
        server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as Net.AddressInfo).port }))
      })
    ),
    ({ server }) =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          server.closeAllConnections()
          server.close(() => resolve())
        })
      )
  )
