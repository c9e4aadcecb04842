import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as Command from "../../src/control/Command.ts"
import * as TlsSettings from "../../src/domain/TlsSettings.ts"

/** A word of the control language (no space, not empty, not a comment). */
const Word = Schema.String.check(Schema.isPattern(/^[A-Za-z0-9:+!._/-]{1,40}$/))

const Tuning = Schema.Struct({
  protocol: Schema.Literals(TlsSettings.PROTOCOLS),
  compat: Schema.Boolean,
  ciphers: Schema.UndefinedOr(Word),
  options: Schema.Array(Schema.Literals(TlsSettings.OPTIONS)),
  sniPath: Schema.UndefinedOr(Word),
  ocspResponse: Schema.UndefinedOr(Word),
  renegotiationInterval: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 100_000 }))
})

/** What the control port makes of `lines`, starting from `from`. */
const replay = (from: TlsSettings.Tuning, lines: ReadonlyArray<string>): TlsSettings.Tuning =>
  lines.reduce((tuning, line) => {
    const command = Command.parse(line)
    assert.strictEqual(command._tag, "TlsSet", line)
    return command._tag === "TlsSet" ? TlsSettings.apply(tuning, command.change) : tuning
  }, from)

describe("TlsSettings", () => {
  it("pen's four -L values are TLS 1.2 and 1.3, as OpenSSL 3 has; tls1.3 is a floor", () => {
    for (const protocol of ["ssl23", "ssl2", "ssl3", "tls1", "tls1.2"] as const) {
      assert.deepStrictEqual(TlsSettings.versions({ protocol, options: [] }), { min: "TLSv1.2", max: "TLSv1.3" })
    }
    assert.deepStrictEqual(TlsSettings.versions({ protocol: "tls1.3", options: [] }), {
      min: "TLSv1.3",
      max: "TLSv1.3"
    })
    assert.deepStrictEqual(
      TlsSettings.versions({ protocol: "ssl23", options: ["no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1.1"] }),
      { min: "TLSv1.2", max: "TLSv1.3" }
    )
    assert.deepStrictEqual(TlsSettings.versions({ protocol: "ssl23", options: ["no_tlsv1.3"] }), {
      min: "TLSv1.2",
      max: "TLSv1.2"
    })
    assert.isString(TlsSettings.versions({ protocol: "tls1.3", options: ["no_tlsv1.3"] }))
    assert.isString(TlsSettings.versions({ protocol: "ssl23", options: ["no_tlsv1.2", "no_tlsv1.3"] }))
  })

  it.prop("versions: min is never above max, and a version left on was not turned off", [Tuning], ([tuning]) => {
    const versions = TlsSettings.versions(tuning)
    if (typeof versions === "string") {
      assert.isTrue(tuning.options.includes("no_tlsv1.3"))
      assert.isTrue(tuning.protocol === "tls1.3" || tuning.options.includes("no_tlsv1.2"))
      return
    }
    assert.isTrue(versions.min <= versions.max)
    if (versions.min === "TLSv1.2") assert.isFalse(tuning.options.includes("no_tlsv1.2"))
    if (versions.max === "TLSv1.3") assert.isFalse(tuning.options.includes("no_tlsv1.3"))
  })

  it.prop(
    "write's ssl_* lines, read back by the control port, give the same settings",
    [Tuning],
    ([generated]) => {
      // ssl_option is cumulative: a setting holds each option once.
      const tuning = { ...generated, options: [...new Set(generated.options)] }
      const base = { ...TlsSettings.defaults, protocol: tuning.protocol, compat: tuning.compat }
      assert.deepStrictEqual(replay(base, TlsSettings.commands(tuning)), tuning)
    }
  )

  it("each ssl_* command without its argument shows the setting; a bad argument names it", () => {
    const tuning = replay(TlsSettings.defaults, [
      "ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256",
      "ssl_option no_tlsv1.3",
      "ssl_option no_tlsv1.3",
      "ssl_option cipher_server_preference",
      "ssl_client_renegotiation_interval 0"
    ])
    const shown = (line: string) => {
      const command = Command.parse(line)
      return command._tag === "TlsGet" ? TlsSettings.show(tuning, command.setting) : command
    }
    assert.strictEqual(shown("ssl_ciphers"), "ECDHE-RSA-AES128-GCM-SHA256\n")
    assert.strictEqual(shown("ssl_option"), "no_tlsv1.3 cipher_server_preference\n")
    assert.strictEqual(shown("ssl_sni_path"), "")
    assert.strictEqual(shown("ssl_ocsp_response"), "")
    assert.strictEqual(shown("ssl_client_renegotiation_interval"), "0\n")
    assert.deepStrictEqual(Command.parse("ssl_option no_tlsv2"), {
      _tag: "Invalid",
      reply: `ssl_option: 'no_tlsv2' is not one of ${TlsSettings.OPTIONS.join(", ")}\n`
    })
    assert.deepStrictEqual(Command.parse("ssl_client_renegotiation_interval soon"), {
      _tag: "Invalid",
      reply: "ssl_client_renegotiation_interval: the number of seconds 'soon' is not a whole number\n"
    })
    assert.deepStrictEqual(Command.parse("no ssl_ciphers"), { _tag: "Nothing" })
  })
})
