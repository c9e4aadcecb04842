import { assert, describe, it } from "@effect/vitest"
import * as AccessLog from "../../src/domain/AccessLog.ts"

const bytes = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0))
const latin1 = (data: Uint8Array): string => String.fromCharCode(...data)

describe("AccessLog.fileLine", () => {
  it("writes pen's verified sample", () => {
    const chunk = bytes("GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    assert.strictEqual(
      AccessLog.fileLine("127.0.0.1", 1795264820, "127.0.0.1", chunk),
      "127.0.0.1 1795264820 127.0.0.1 GET / HTTP/1.0\n"
    )
    assert.strictEqual(
      AccessLog.fileLine("127.0.0.2", 1795264820, "127.0.0.1", chunk),
      "127.0.0.2 1795264820 127.0.0.1 GET / HTTP/1.0\n"
    )
  })

  it("keeps at most 100 bytes of the chunk", () => {
    const chunk = bytes("GET /" + "a".repeat(200))
    const line = AccessLog.fileLine("10.0.0.1", 1, "10.0.0.2", chunk)
    assert.strictEqual(line, `10.0.0.1 1 10.0.0.2 GET /${"a".repeat(95)}\n`)
    assert.strictEqual(AccessLog.fileLine("c", 1, "s", bytes("x".repeat(100))), `c 1 s ${"x".repeat(100)}\n`)
  })

  it("stops at the first CR", () => {
    assert.strictEqual(AccessLog.fileLine("c", 7, "s", bytes("ab\rcd\nef")), "c 7 s ab\n")
  })

  it("stops at the first LF", () => {
    assert.strictEqual(AccessLog.fileLine("c", 7, "s", bytes("ab\ncd\ref")), "c 7 s ab\n")
  })

  it("a chunk starting with CR or LF logs an empty request", () => {
    assert.strictEqual(AccessLog.fileLine("c", 7, "s", bytes("\r\nGET")), "c 7 s \n")
  })

  it("prints bytes >= 0x80 as '.' and other control bytes raw", () => {
    const chunk = Uint8Array.of(0x41, 0x80, 0xc3, 0xa9, 0xff, 0x00, 0x09, 0x1b, 0x7f, 0x42)
    assert.strictEqual(AccessLog.fileLine("c", 7, "s", chunk), "c 7 s A....\x00\t\x1b\x7fB\n")
  })

  it("an empty chunk logs an empty request", () => {
    assert.strictEqual(AccessLog.fileLine("127.0.0.1", 5, "127.0.0.1", new Uint8Array(0)), "127.0.0.1 5 127.0.0.1 \n")
  })

  it("never contains a newline but the last character", () => {
    const chunk = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff)
    const line = AccessLog.fileLine("c", 7, "s", chunk)
    assert.strictEqual(line.indexOf("\n"), line.length - 1)
    assert.notInclude(line, "\r")
  })
})

describe("AccessLog.datagram", () => {
  it("builds pen's verified datagrams", () => {
    assert.strictEqual(
      latin1(AccessLog.datagram("127.0.0.1", "127.0.0.1", bytes("GET /abc?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"))),
      "+ 127.0.0.1 127.0.0.1 GET /abc?x=1 HTTP/1.1\n"
    )
    assert.strictEqual(
      latin1(AccessLog.datagram("127.0.0.1", "127.0.0.1", bytes("GET / HTTP/1.0\n\n"))),
      "+ 127.0.0.1 127.0.0.1 GET / HTTP/1.0\n"
    )
  })

  it("keeps the chunk up to CR or LF and prints high bytes as '.'", () => {
    assert.strictEqual(latin1(AccessLog.datagram("c", "s", bytes("a\xe9b\rc"))), "+ c s a.b\n")
    assert.strictEqual(latin1(AccessLog.datagram("c", "s", bytes("ab\ncd"))), "+ c s ab\n")
  })

  it("an empty chunk sends an empty request", () => {
    assert.strictEqual(latin1(AccessLog.datagram("c", "s", new Uint8Array(0))), "+ c s \n")
  })

  it("is at most 1024 bytes, newline included: the chunk is cut to fit", () => {
    const head = "+ 127.0.0.1 10.0.0.2 "
    const out = AccessLog.datagram("127.0.0.1", "10.0.0.2", bytes("x".repeat(5000)))
    assert.strictEqual(out.length, AccessLog.DATAGRAM_MAX)
    assert.strictEqual(latin1(out), `${head}${"x".repeat(1024 - head.length - 1)}\n`)
  })

  it("a chunk that just fits is kept whole", () => {
    const head = "+ c s "
    const fits = "y".repeat(1024 - head.length - 1)
    assert.strictEqual(latin1(AccessLog.datagram("c", "s", bytes(fits))), `${head}${fits}\n`)
    assert.strictEqual(AccessLog.datagram("c", "s", bytes(fits + "z")).length, 1024)
  })

  it("stays within 1024 bytes even with absurd addresses", () => {
    const out = AccessLog.datagram("a".repeat(2000), "s", bytes("GET /"))
    assert.strictEqual(out.length, 1024)
    assert.strictEqual(out[1023], 0x0a)
  })
})

describe("AccessLog.parseTarget", () => {
  it("a name without a colon is a file, relative or absolute", () => {
    assert.deepStrictEqual(AccessLog.parseTarget("pen.log"), { _tag: "File", path: "pen.log" })
    assert.deepStrictEqual(AccessLog.parseTarget("logs/pen.log"), { _tag: "File", path: "logs/pen.log" })
    assert.deepStrictEqual(AccessLog.parseTarget("/var/log/pen.log"), { _tag: "File", path: "/var/log/pen.log" })
  })

  it("an absolute path with colons is a file", () => {
    assert.deepStrictEqual(AccessLog.parseTarget("/abs/path:with:colons"), {
      _tag: "File",
      path: "/abs/path:with:colons"
    })
  })

  it("host:port is UDP to penlogd", () => {
    assert.deepStrictEqual(AccessLog.parseTarget("127.0.0.1:514"), { _tag: "Udp", host: "127.0.0.1", port: 514 })
    assert.deepStrictEqual(AccessLog.parseTarget("loghost:10000"), { _tag: "Udp", host: "loghost", port: 10000 })
    assert.deepStrictEqual(AccessLog.parseTarget("h:1"), { _tag: "Udp", host: "h", port: 1 })
    assert.deepStrictEqual(AccessLog.parseTarget("h:65535"), { _tag: "Udp", host: "h", port: 65535 })
  })

  it("an IPv6 host is split at the last colon, with or without brackets", () => {
    assert.deepStrictEqual(AccessLog.parseTarget("[::1]:514"), { _tag: "Udp", host: "::1", port: 514 })
    assert.deepStrictEqual(AccessLog.parseTarget("::1:514"), { _tag: "Udp", host: "::1", port: 514 })
  })

  it("a bad port is an error naming it", () => {
    for (
      const [text, port] of [
        ["127.0.0.1:0", "0"],
        ["127.0.0.1:65536", "65536"],
        ["127.0.0.1:abc", "abc"],
        ["127.0.0.1:", ""],
        ["127.0.0.1:51x", "51x"],
        ["127.0.0.1:-1", "-1"],
        ["host:514:x", "x"]
      ] as const
    ) {
      const result = AccessLog.parseTarget(text)
      assert.strictEqual(result._tag, "Error", text)
      if (result._tag === "Error") assert.include(result.message, `"${port}"`)
    }
  })

  it("a missing host is an error", () => {
    const result = AccessLog.parseTarget(":514")
    assert.strictEqual(result._tag, "Error")
    if (result._tag === "Error") assert.include(result.message, "no host")
  })
})
