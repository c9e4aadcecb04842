/**
 * The control language's decoding of pen's socket settings and of the DSR commands nib refuses (pen-reference 6.2,
 * 13): what each line becomes, pen's replies where pen has one, and the `no` forms. The rest of the language is
 * tested through the control port (test/e2e/control.test.ts, test/compat/control.test.ts).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Command from "../../src/control/Command.ts"

const sockets = (change: Extract<Command.Command, { _tag: "Sockets" }>["change"]): Command.Command => ({
  _tag: "Sockets",
  change
})

describe("Command.parse: socket settings", () => {
  it("keepalive and tcp_nodelay switch on, their no forms off", () => {
    assert.deepStrictEqual(Command.parse("keepalive"), sockets({ setting: "keepalive", on: true }))
    assert.deepStrictEqual(Command.parse("no keepalive"), sockets({ setting: "keepalive", on: false }))
    assert.deepStrictEqual(Command.parse("tcp_nodelay"), sockets({ setting: "tcp_nodelay", on: true }))
    assert.deepStrictEqual(Command.parse("no tcp_nodelay"), sockets({ setting: "tcp_nodelay", on: false }))
    // pen's tokenizer: extra words are ignored.
    assert.deepStrictEqual(Command.parse("  keepalive  now"), sockets({ setting: "keepalive", on: true }))
  })

  it("tcp_fastclose MODE: up, down, both, off, and any other word is off; no word gets pen's message", () => {
    for (const mode of ["up", "down", "both", "off"] as const) {
      assert.deepStrictEqual(Command.parse(`tcp_fastclose ${mode}`), sockets({ setting: "tcp_fastclose", value: mode }))
    }
    assert.deepStrictEqual(Command.parse("tcp_fastclose Both"), sockets({ setting: "tcp_fastclose", value: "off" }))
    assert.deepStrictEqual(Command.parse("tcp_fastclose"), {
      _tag: "Invalid",
      reply: "do_cmd: ignoring tcp_fastclose without argument\n"
    })
    // pen has no `no tcp_fastclose`: an unknown `no X` is nothing.
    assert.deepStrictEqual(Command.parse("no tcp_fastclose"), { _tag: "Nothing" })
  })

  it("source ADDRESS is resolved when run; source alone shows it; no source (nib's) clears it", () => {
    assert.deepStrictEqual(Command.parse("source 127.0.0.2"), { _tag: "Source", address: "127.0.0.2" })
    assert.deepStrictEqual(Command.parse("source localhost"), { _tag: "Source", address: "localhost" })
    assert.deepStrictEqual(Command.parse("source"), { _tag: "Source", address: undefined })
    assert.deepStrictEqual(Command.parse("no source"), sockets({ setting: "source", address: undefined }))
  })
})

describe("Command.parse: direct server return is refused", () => {
  it("dsr_if and dsr_ip, with a line that says why; their no forms are nothing, as any unknown no X in pen", () => {
    for (const line of ["dsr_if eth1", "dsr_ip 10.0.0.1", "dsr_if"]) {
      const command = Command.parse(line)
      assert.strictEqual(command._tag, "Unsupported", line)
      if (command._tag !== "Unsupported") continue
      assert.strictEqual(command.name, line.split(" ")[0])
      assert.match(command.why, /^direct server return needs raw Ethernet frames, which Node cannot send/)
    }
    assert.deepStrictEqual(Command.parse("no dsr_if"), { _tag: "Nothing" })
  })

  it("tarpit_acl N is refused but for -1 (none); tarpit_acl alone is pen's query", () => {
    for (const line of ["tarpit_acl 0", "tarpit_acl 3", "tarpit_acl 12", "tarpit_acl abc"]) {
      const command = Command.parse(line)
      assert.strictEqual(command._tag, "Unsupported", line)
      if (command._tag === "Unsupported") assert.match(command.why, /raw packets, which Node cannot send$/)
    }
    assert.deepStrictEqual(Command.parse("tarpit_acl -1"), { _tag: "Set", knob: "tarpit_acl", value: -1 })
    assert.deepStrictEqual(Command.parse("tarpit_acl"), { _tag: "Get", knob: "tarpit_acl" })
  })

  it("what pen's machinery alone uses stays accepted and answered with nothing", () => {
    for (const name of ["epoll", "kqueue", "poll", "select", "ascii", "abort_on_error"] as const) {
      assert.deepStrictEqual(Command.parse(name), { _tag: "Ignored", name })
    }
  })
})
