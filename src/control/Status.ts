/**
 * pen's status page (`-w FILE`, the `status` command, SIGUSR1), built from the live services: the servers of
 * ServerPool, the clients of ClientTable and the connections of the Listener's proxy, each listed and numbered by
 * slot, as pen's tables are. The HTML and text layouts are in `domain/StatusPage.ts`.
 */
import { Context, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import { LbConfig } from "../Config.ts"
import * as StatusPage from "../domain/StatusPage.ts"
import { Listener } from "../proxy/Listener.ts"
import { ClientTable } from "../services/ClientTable.ts"
import { HealthChecker } from "../services/HealthChecker.ts"
import * as ServerPool from "../services/ServerPool.ts"

/** The status page file could not be written. @category errors */
export class StatusError extends Error {
  readonly _tag = "StatusError"
}

/** The status service. @category services */
export class Status extends Context.Service<Status, {
  /** The page's content now. */
  readonly page: Effect.Effect<StatusPage.StatusPage>
  /** The `-w` file, if any (the `web_stats` command shows and changes it). */
  readonly webStats: Effect.Effect<string | undefined>
  readonly setWebStats: (file: string | undefined) => Effect.Effect<void>
  /** Writes the HTML page to the `-w` file (replaced whole, never seen half written); the HTML is returned. */
  readonly writeWebStats: Effect.Effect<string, StatusError>
}>()("nib/control/Status") {
  static readonly layer: Layer.Layer<
    Status,
    never,
    LbConfig | ServerPool.ServerPool | ClientTable | HealthChecker | Listener
  > = Layer.effect(
    Status,
    Effect.gen(function*() {
      const config = yield* LbConfig
      const pool = yield* ServerPool.ServerPool
      const clients = yield* ClientTable
      const health = yield* HealthChecker
      const listener = yield* Listener
      let webStats = config.webStats

      const page = Effect.gen(function*() {
        const now = Date.now()
        const blacklistSeconds = yield* health.blacklistSeconds
        const { current } = yield* pool.snapshot
        const entries = yield* clients.inOrder
        const clientSlot = new Map(entries.map((e) => [e.address, e.slot]))
        const connections = yield* listener.connections
        return {
          time: StatusPage.formatLocalTime(new Date(now)),
          current,
          servers: pool.backends.map((b) => ({
            index: b.index,
            address: ServerPool.addressText(b),
            // pen's column is the time of the last failure: its blacklist deadline minus the blacklist time.
            status: b.blacklistedUntil === 0 ? 0 : Math.floor(b.blacklistedUntil / 1000) - blacklistSeconds,
            port: ServerPool.portNumber(b),
            connections: b.connections,
            softLimit: b.spec.softLimit,
            hardLimit: b.spec.hardLimit,
            sent: b.bytesSent,
            received: b.bytesReceived,
            weight: b.spec.weight,
            prio: b.spec.prio
          })),
          clientsMax: yield* clients.capacity,
          clients: entries.map((e) => ({
            slot: e.slot,
            address: e.address,
            ageSeconds: Math.max(0, Math.floor((now - e.lastSeen) / 1000)),
            lastServer: e.server,
            connects: e.connects,
            sent: e.bytesToClient,
            received: e.bytesFromClient
          })),
          connectionsMax: yield* listener.connectionsMax,
          connectionsUsed: connections.length,
          connectionsLast: connections.reduce((last, c) => Math.max(last, c.slot), 0),
          connections: connections.map((c) => ({
            index: c.slot,
            downfd: c.downfd,
            upfd: c.upfd,
            pendingDown: c.pendingDown,
            pendingUp: c.pendingUp,
            client: clientSlot.get(c.client) ?? -1,
            server: c.server
          }))
        } satisfies StatusPage.StatusPage
      })

      return Status.of({
        page,
        webStats: Effect.sync(() => webStats),
        setWebStats: (file) =>
          Effect.sync(() => {
            webStats = file
          }),
        writeWebStats: Effect.flatMap(page, (p) =>
          Effect.try({
            try: () => {
              const html = StatusPage.render(p)
              if (webStats !== undefined) {
                const temporary = `${webStats}.${process.pid}.tmp`
                Fs.writeFileSync(temporary, html)
                Fs.renameSync(temporary, webStats)
              }
              return html
            },
            catch: (error) =>
              new StatusError(`can't write ${webStats}: ${error instanceof Error ? error.message : String(error)}`)
          }))
      })
    })
  )
}
