import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Net from "node:net"
import { makeAppTest } from "../../layers/Test.ts"
import * as Address from "../../src/domain/Address.ts"
import * as ServerSpec from "../../src/domain/ServerSpec.ts"
import { Listener } from "../../src/proxy/Listener.ts"

const echoServer = (name: string) =>
  Effect.acquireRelease(
    Effect.callback<Net.Server>((resume) => {
      const server = Net.createServer((socket) => {
        socket.write(`${name}\n`)
        socket.pipe(socket)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.map((server) => (server.address() as Net.AddressInfo).port))

const firstLine = (port: number) =>
  Effect.callback<string>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.once("data", (data) => {
      socket.destroy()
      resume(Effect.succeed(data.toString().trim()))
    })
  })

const spec = (port: number) => ServerSpec.make(Address.tcp("127.0.0.1", port))

describe("Listener", () => {
  it.live("binds port 0, reports the real port, and relays roundrobin from server 1", () =>
    Effect.gen(function*() {
      const a = yield* echoServer("a")
      const b = yield* echoServer("b")
      const app = makeAppTest({ listen: Address.tcp("127.0.0.1", 0), servers: [spec(a), spec(b)], roundrobin: true })
      yield* Effect.gen(function*() {
        const listener = yield* Listener
        assert.strictEqual(listener.address._tag, "Tcp")
        const port = (listener.address as Address.TcpEndpoint).port
        assert.notStrictEqual(port, 0)
        const seen = [yield* firstLine(port), yield* firstLine(port), yield* firstLine(port)]
        assert.deepStrictEqual(seen, ["b", "a", "b"])
      }).pipe(Effect.provide(app))
    }).pipe(Effect.scoped))
})
