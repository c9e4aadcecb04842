/**
 * pen's socket settings as values: which close ends a whole connection under each `tcp_fastclose` mode, pen's
 * reading of a mode word, and `write`'s lines, read back through the control language into the same settings.
 */
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as Command from "../../src/control/Command.ts"
import * as SocketOptions from "../../src/domain/SocketOptions.ts"

const Options = Schema.Struct({
  keepalive: Schema.Boolean,
  nodelay: Schema.Boolean,
  fastclose: Schema.Literals(SocketOptions.FAST_CLOSES),
  source: Schema.UndefinedOr(Schema.Literals(["127.0.0.2", "10.1.2.3", "::1", "fe80::1"]))
})

/** What the control language makes of `lines`, starting from `from` (`source` taken as given: it resolves at run). */
const replay = (from: SocketOptions.SocketOptions, lines: ReadonlyArray<string>): SocketOptions.SocketOptions =>
  lines.reduce((options, line) => {
    const command = Command.parse(line)
    if (command._tag === "Source") return { ...options, source: command.address }
    assert.strictEqual(command._tag, "Sockets", line)
    return command._tag === "Sockets" ? SocketOptions.apply(options, command.change) : options
  }, from)

describe("SocketOptions", () => {
  it("tcp_fastclose: up is the server's close, down the client's, both either, off neither", () => {
    const table = SocketOptions.FAST_CLOSES.map((mode) => [
      mode,
      SocketOptions.closesAll(mode, false),
      SocketOptions.closesAll(mode, true)
    ])
    assert.deepStrictEqual(table, [
      ["off", false, false],
      ["up", true, false],
      ["down", false, true],
      ["both", true, true]
    ])
  })

  it("a mode word pen does not know is off, as pen's (case matters)", () => {
    assert.deepStrictEqual(
      ["up", "down", "both", "off", "UP", "sideways", "1", ""].map(SocketOptions.parseFastClose),
      ["up", "down", "both", "off", "off", "off", "off", "off"]
    )
  })

  it("write: pen's two lines always; keepalive and source only when set", () => {
    assert.deepStrictEqual(SocketOptions.penLines(SocketOptions.defaults), ["tcp_fastclose off", "no tcp_nodelay"])
    assert.deepStrictEqual(SocketOptions.ownLines(SocketOptions.defaults), [])
    const all = { keepalive: true, nodelay: true, fastclose: "down", source: "127.0.0.2" } as const
    assert.deepStrictEqual(SocketOptions.penLines(all), ["tcp_fastclose down", "tcp_nodelay"])
    assert.deepStrictEqual(SocketOptions.ownLines(all), ["keepalive", "source 127.0.0.2"])
  })

  it.prop(
    "write's lines, read back by the control language into a fresh nib, give the same settings",
    [Options],
    ([options]) => {
      const lines = [...SocketOptions.penLines(options), ...SocketOptions.ownLines(options)]
      // pen's two lines are always written: they must win over any value, so start from the opposite one.
      const fresh = {
        ...SocketOptions.defaults,
        nodelay: !options.nodelay,
        fastclose: options.fastclose === "both" ? "off" : "both"
      } as const
      assert.deepStrictEqual(replay(fresh, lines), options)
    }
  )
})
