import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as HttpRewrite from "../../src/domain/HttpRewrite.ts"

const IP = "192.0.2.7"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

const bytesOf = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0))
const textOf = (buffer: Uint8Array, start = 0, end = buffer.length): string =>
  Buffer.from(buffer.buffer, buffer.byteOffset + start, end - start).toString("latin1")

/** What a rewriter sent: the bytes as latin1 text, and each event with the number of bytes sent before it. */
interface Output {
  readonly text: string
  readonly events: ReadonlyArray<string>
}

const collector = () => {
  const parts: Array<string> = []
  const events: Array<string> = []
  let sent = 0
  let failed = false
  const sink: HttpRewrite.Sink = {
    bytes: (buffer, start, end) => {
      // Slices are non-empty, inside their buffer, and never come after an error.
      if (failed || !(0 <= start && start < end && end <= buffer.length)) events.push(`bad slice ${start}..${end}`)
      parts.push(textOf(buffer, start, end))
      sent += end - start
    },
    error: (status) => {
      if (failed) events.push("second error")
      failed = true
      events.push(`${status} after ${sent}`)
    },
    passthrough: () => events.push(`passthrough after ${sent}`)
  }
  return { sink, output: (): Output => ({ text: parts.join(""), events }) }
}

const rewriter = (headLimit?: number) => HttpRewrite.make({ proto: "http", clientIp: IP, headLimit })

/** Feeds `input` in one chunk. */
const whole = (input: Uint8Array, headLimit?: number): Output => {
  const c = collector()
  rewriter(headLimit).feed(input, c.sink)
  return c.output()
}

/**
 * Feeds `input` cut at `cuts` the way the relay does: each piece is copied into one reused read buffer (full of stale
 * CRLFs past the piece) and fed with its length.
 */
const SHARED = new Uint8Array(65536)
const STALE = bytesOf("\r\n\r\nX-Forwarded-For: stale\r\n\r\n".repeat(2))
const split = (input: Uint8Array, cuts: ReadonlyArray<number>, headLimit?: number): Output => {
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].toSorted((a, b) => a - b)
  const c = collector()
  const r = rewriter(headLimit)
  let at = 0
  for (const point of [...points, input.length]) {
    SHARED.set(STALE.subarray(0, SHARED.length - (point - at)), point - at)
    SHARED.set(input.subarray(at, point), 0)
    r.feed(SHARED, c.sink, point - at)
    at = point
  }
  return c.output()
}

/** Feeds `input` one byte per chunk. */
const bytewise = (input: Uint8Array, headLimit?: number): Output =>
  split(input, Array.from({ length: input.length }, (_, k) => k), headLimit)

/** A request head of exactly `size` bytes. */
const headOf = (size: number): string => {
  const start = "GET / HTTP/1.1\r\nX-Pad: "
  return `${start}${"p".repeat(size - start.length - 4)}\r\n\r\n`
}

/** `head` with nib's two lines inserted before its blank line. */
const rewritten = (head: string) => `${head.slice(0, -2)}X-Forwarded-Proto: http\r\nX-Forwarded-For: ${IP}\r\n\r\n`

// ---------------------------------------------------------------------------------------------------------------------
// Generated request streams and their expected rewriting, built from the structure (not by running the rewriter).

const pick = <A>(alphabet: ReadonlyArray<A>, codes: ReadonlyArray<number>): Array<A> =>
  codes.map((k) => alphabet[k % alphabet.length]!)
const codes = (max: number) => Schema.Array(int(0, 1000)).check(Schema.isMaxLength(max))
const nonEmptyCodes = (max: number) => codes(max).check(Schema.isMinLength(1))

const TARGET_CHARS = [..."abcXYZ019/?=&%-._~:@!$'()*+,;", "\xe9"]
const VALUE_CHARS = [..."abzAZ09 ,;=\"/:()[]{}\t", "\x80", "\xff"]
const OWS = ["", " ", "  ", "\t", " \t "]

/** Body bytes that look like heads, chunk framing and X-Forwarded-For, mixed with random bytes. */
const BodyPiece = Schema.Union([
  int(0, 255),
  Schema.Literals(["GET / HTTP/1.1\r\n", "\r\n\r\n", "X-Forwarded-For: 6.6.6.6\r\n", "0\r\n\r\n", "\n", "\r"])
])
const Body = Schema.Array(BodyPiece).check(Schema.isMaxLength(12))
const bodyText = (pieces: ReadonlyArray<number | string>): string =>
  pieces.map((p) => (typeof p === "number" ? String.fromCharCode(p) : p)).join("")

const Other = Schema.TaggedStruct("Other", {
  name: Schema.Literals(["Host", "User-Agent", "Accept", "Cookie", "Expect", "X-T-", "x-t-", "X-Forwarded-Host"]),
  suffix: codes(6),
  before: int(0, 4),
  value: codes(12),
  after: int(0, 4)
})
const Xff = Schema.TaggedStruct("Xff", {
  name: Schema.Literals(["X-Forwarded-For", "x-forwarded-for", "X-FORWARDED-FOR", "x-Forwarded-for"]),
  before: int(0, 4),
  hops: Schema.Array(Schema.Literals(["203.0.113.9", "2001:db8::1", "unknown", "10.1.2.3"])).check(
    Schema.isMaxLength(3)
  ),
  after: int(0, 4)
})
const Xfp = Schema.TaggedStruct("Xfp", {
  name: Schema.Literals(["X-Forwarded-Proto", "x-forwarded-proto", "X-FORWARDED-PROTO"]),
  value: Schema.Literals(["https", "http", "ftp", ""]),
  after: int(0, 4)
})
const Header = Schema.Union([Other, Xff, Xfp])

const NoBody = Schema.TaggedStruct("None", {})
const LengthBody = Schema.TaggedStruct("Length", {
  name: Schema.Literals(["Content-Length", "content-length", "CONTENT-LENGTH"]),
  repeated: Schema.Boolean,
  data: Body
})
const Chunk = Schema.Struct({
  data: Body.check(Schema.isMinLength(1)),
  upper: Schema.Boolean,
  zeros: int(0, 2),
  ext: Schema.Literals(["", ";a=b", ";name", " ;q=\"x y\"", "\t; a = b;c"])
})
const ChunkedBody = Schema.TaggedStruct("Chunked", {
  coding: Schema.Literals(["chunked", "Chunked", "gzip, chunked", "gzip;level=1 ,chunked"]),
  chunks: Schema.Array(Chunk).check(Schema.isMaxLength(4)),
  lastExt: Schema.Literals(["", ";end"]),
  trailers: Schema.Array(Schema.Struct({ name: nonEmptyCodes(5), value: codes(8) })).check(Schema.isMaxLength(2))
})

const Request = Schema.Struct({
  leadingEmptyLines: int(0, 2),
  method: Schema.Literals([
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "HEAD",
    "TRACE",
    "PROPFIND",
    "M-SEARCH"
  ]),
  target: codes(20),
  http10: Schema.Boolean,
  headers: Schema.Array(Header).check(Schema.isMaxLength(6)),
  body: Schema.Union([NoBody, LengthBody, ChunkedBody]),
  framingAt: int(0, 6)
})
type Request = typeof Request.Type
const Requests = Schema.Array(Request).check(Schema.isMinLength(1), Schema.isMaxLength(4))
const Cuts = Schema.Array(int(0, 100_000)).check(Schema.isMaxLength(12))

const TOKEN_CHARS = [..."abcXYZ09-_!#$%&'*+.^`|~"]

/** A request as the client sends it, and as the server must receive it. */
const render = (request: Request): { readonly input: string; readonly expected: string } => {
  const { body, headers } = request
  const version = request.http10 && body._tag !== "Chunked" ? "1.0" : "1.1"
  const requestLine = `${request.method} /${pick(TARGET_CHARS, request.target).join("")} HTTP/${version}`
  // Each header line as sent, and as expected (undefined: dropped).
  const lines: Array<{ readonly sent: string; readonly expected: string | undefined }> = []
  const lastXff = headers.findLastIndex((h) => h._tag === "Xff")
  headers.forEach((header, k) => {
    switch (header._tag) {
      case "Other": {
        const line = `${header.name}${pick(TOKEN_CHARS, header.suffix).join("")}:${OWS[header.before]}${
          pick(VALUE_CHARS, header.value).join("").trim()
        }${OWS[header.after]}`
        lines.push({ sent: line, expected: line })
        break
      }
      case "Xff": {
        const value = header.hops.join(", ")
        const sent = `${header.name}:${OWS[header.before]}${value}${OWS[header.after]}`
        const appended = value === "" ? `${header.name}: ${IP}` : `${header.name}:${OWS[header.before]}${value}, ${IP}`
        lines.push({ sent, expected: k === lastXff ? appended : sent })
        break
      }
      case "Xfp":
        lines.push({ sent: `${header.name}: ${header.value}${OWS[header.after]}`, expected: undefined })
        break
    }
  })
  let bodyBytes = ""
  const framing: Array<string> = []
  switch (body._tag) {
    case "Length": {
      const data = bodyText(body.data)
      framing.push(`${body.name}: ${data.length}`)
      if (body.repeated) framing.push(`${body.name}:${data.length} `)
      bodyBytes = data
      break
    }
    case "Chunked": {
      framing.push(`Transfer-Encoding: ${body.coding}`)
      for (const chunk of body.chunks) {
        const data = bodyText(chunk.data)
        const size = data.length.toString(16)
        bodyBytes += `${"0".repeat(chunk.zeros)}${chunk.upper ? size.toUpperCase() : size}${chunk.ext}\r\n${data}\r\n`
      }
      bodyBytes += `0${body.lastExt}\r\n`
      for (const trailer of body.trailers) {
        bodyBytes += `X-${pick(TOKEN_CHARS, trailer.name).join("")}: ${pick(VALUE_CHARS, trailer.value).join("")}\r\n`
      }
      bodyBytes += "\r\n"
      break
    }
  }
  const at = request.framingAt % (lines.length + 1)
  lines.splice(at, 0, ...framing.map((line) => ({ sent: line, expected: line })))
  const leading = "\r\n".repeat(request.leadingEmptyLines)
  const sentLines = [requestLine, ...lines.map((l) => l.sent)]
  const expectedLines = [requestLine, ...lines.flatMap((l) => (l.expected === undefined ? [] : [l.expected]))]
  expectedLines.push("X-Forwarded-Proto: http")
  if (lastXff < 0) expectedLines.push(`X-Forwarded-For: ${IP}`)
  return {
    input: `${leading}${sentLines.join("\r\n")}\r\n\r\n${bodyBytes}`,
    expected: `${leading}${expectedLines.join("\r\n")}\r\n\r\n${bodyBytes}`
  }
}

describe("HttpRewrite: valid request streams", () => {
  it.prop(
    "pipelined requests, split anywhere, come out as the independently built rewriting",
    { requests: Requests, cuts: Cuts },
    ({ cuts, requests }) => {
      const rendered = requests.map(render)
      const input = bytesOf(rendered.map((r) => r.input).join(""))
      const expected: Output = { text: rendered.map((r) => r.expected).join(""), events: [] }
      assert.deepStrictEqual(whole(input), expected)
      assert.deepStrictEqual(split(input, cuts), expected)
      assert.deepStrictEqual(bytewise(input), expected)
    },
    { arbitrary: { runs: 300 } }
  )

  it("a head split one byte at a time, also inside the final CRLF CRLF", () => {
    const input = bytesOf("POST /f?x=1 HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\nContent-Length: 2\r\n\r\nok")
    const expected =
      "POST /f?x=1 HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4, 192.0.2.7\r\nContent-Length: 2\r\nX-Forwarded-Proto: http\r\n\r\nok"
    assert.deepStrictEqual(bytewise(input), { text: expected, events: [] })
  })

  it("X-Forwarded-Proto first, then X-Forwarded-For, before the blank line; https when so made", () => {
    const c = collector()
    HttpRewrite.make({ proto: "https", clientIp: "::ffff:127.0.0.1" }).feed(bytesOf("GET / HTTP/1.1\r\n\r\n"), c.sink)
    assert.strictEqual(
      c.output().text,
      "GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: ::ffff:127.0.0.1\r\n\r\n"
    )
  })

  it("with several X-Forwarded-For lines, the last gets the client IP; client X-Forwarded-Proto lines go", () => {
    const input =
      "GET / HTTP/1.1\r\nx-forwarded-proto: https\r\nX-Forwarded-For: a\r\nB: 1\r\nX-Forwarded-For: b \r\n" +
      "X-Forwarded-Proto:http\r\n\r\n"
    assert.strictEqual(
      whole(bytesOf(input)).text,
      "GET / HTTP/1.1\r\nX-Forwarded-For: a\r\nB: 1\r\nX-Forwarded-For: b, 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\r\n"
    )
  })

  it("the client IP text is kept to visible ASCII without commas (no header injection)", () => {
    const c = collector()
    HttpRewrite.make({ proto: "http", clientIp: "1.2.3.4\r\nEvil: 1, x" }).feed(
      bytesOf("GET / HTTP/1.1\r\n\r\n"),
      c.sink
    )
    assert.strictEqual(
      c.output().text,
      "GET / HTTP/1.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 1.2.3.4Evil:1x\r\n\r\n"
    )
  })

  it("body bytes are passed as slices of the chunk they came in, untouched", () => {
    const slices: Array<{ buffer: Uint8Array; start: number; end: number }> = []
    const sink: HttpRewrite.Sink = {
      bytes: (buffer, start, end) => slices.push({ buffer, start, end }),
      error: () => assert.fail("no error expected"),
      passthrough: () => assert.fail("no passthrough expected")
    }
    const r = rewriter()
    r.feed(bytesOf("PUT /u HTTP/1.1\r\nContent-Length: 40000\r\n\r\n"), sink)
    slices.length = 0
    const body = bytesOf("GET / HTTP/1.1\r\nX-Forwarded-For: x\r\n\r\n".repeat(2000).slice(0, 40000))
    r.feed(body, sink, 30000)
    r.feed(body.subarray(30000), sink)
    assert.strictEqual(slices.length, 2)
    assert.isTrue(slices[0]!.buffer === body && slices[0]!.start === 0 && slices[0]!.end === 30000)
    assert.strictEqual(slices[1]!.buffer.byteOffset, 30000)
    assert.strictEqual(slices[1]!.end - slices[1]!.start, 10000)
  })

  it("a head in one chunk with the previous body is sent as slices of that chunk plus the inserted lines", () => {
    const buffers = new Set<Uint8Array>()
    const sink: HttpRewrite.Sink = { bytes: (b) => void buffers.add(b), error: () => {}, passthrough: () => {} }
    const chunk = bytesOf("POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nxGET /2 HTTP/1.1\r\nA: b\r\n\r\n")
    rewriter().feed(chunk, sink)
    assert.strictEqual(buffers.size, 2)
    assert.isTrue(buffers.has(chunk))
  })

  it("Expect: 100-continue: the head goes out at once, the body whenever it comes", () => {
    const c = collector()
    const r = rewriter()
    r.feed(bytesOf("POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"), c.sink)
    assert.strictEqual(
      c.output().text,
      "POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n"
    )
    r.feed(bytesOf("he"), c.sink)
    r.feed(bytesOf("lloGET / HTTP/1.0\r\n\r\n"), c.sink)
    assert.isTrue(
      c.output().text.endsWith(
        "\r\n\r\nhelloGET / HTTP/1.0\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n"
      )
    )
    assert.deepStrictEqual(c.output().events, [])
    assert.strictEqual(r.mode, "http")
  })

  it("empty lines before a request line are passed on; repeated identical Content-Length is accepted", () => {
    assert.deepStrictEqual(
      whole(bytesOf("\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nz")),
      {
        text:
          "\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 192.0.2.7\r\n\r\nz",
        events: []
      }
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------------

describe("HttpRewrite: errors", () => {
  /** A bad head: nothing of it reaches the server, whatever the chunking. */
  const badHeads: ReadonlyArray<readonly [string, string]> = [
    ["bare LF", "GET / HTTP/1.1\nHost: a\n\n"],
    ["bare LF in a header", "GET / HTTP/1.1\r\nHost: a\n\r\n"],
    ["pen's \\n\\n", "GET / HTTP/1.1\r\nHost: a\n\n"],
    ["bare LF first", "\nGET / HTTP/1.1\r\n\r\n"],
    ["bare CR in a value", "GET / HTTP/1.1\r\nA: x\ry\r\n\r\n"],
    ["two spaces", "GET  / HTTP/1.1\r\n\r\n"],
    ["no target", "GET HTTP/1.1\r\n\r\n"],
    ["HTTP/2", "PRI * HTTP/2.0\r\n\r\n"],
    ["HTTP/1.x without digit", "GET / HTTP/1.x\r\n\r\n"],
    ["trailing space", "GET / HTTP/1.1 \r\n\r\n"],
    ["control in target", "GET /\x01 HTTP/1.1\r\n\r\n"],
    ["method not a token", "G(T / HTTP/1.1\r\n\r\n"],
    ["lowercase version", "GET / http/1.1\r\n\r\n"],
    ["no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n"],
    ["space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"],
    ["empty name", "GET / HTTP/1.1\r\n: a\r\n\r\n"],
    ["obs-fold", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"],
    ["NUL in a value", "GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n"],
    ["Content-Length letters", "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"],
    ["Content-Length negative", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"],
    ["Content-Length list", "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n"],
    ["Content-Length empty", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"],
    ["Content-Length 16 digits", "POST / HTTP/1.1\r\nContent-Length: 1000000000000000\r\n\r\n"],
    ["Content-Length conflict", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"],
    ["CL and chunked", "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"],
    ["chunked and CL", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"],
    ["TE not chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"],
    ["TE chunked not last", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"],
    ["TE chunked then gzip", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"],
    ["TE chunked twice", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"],
    ["TE empty", "POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n"],
    ["TE junk after token", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked x\r\n\r\n"],
    ["TE quoted parameter", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip;a=\",chunked\", chunked\r\n\r\n"],
    ["TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"]
  ]

  for (const [name, head] of badHeads) {
    it(`400, nothing of the head sent: ${name}`, () => {
      const input = bytesOf(head)
      const expected: Output = { text: "", events: ["400 after 0"] }
      assert.deepStrictEqual(whole(input), expected)
      assert.deepStrictEqual(bytewise(input), expected)
    })
  }

  const HEAD = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
  const SENT_HEAD =
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n"
  /** Bad chunked framing: the bytes before the bad one were sent, then the error. */
  const badBodies: ReadonlyArray<readonly [string, string, string]> = [
    ["not hex", "g\r\n", ""],
    ["space first", " 5\r\n", ""],
    ["space then CR", "5 \r\nhello\r\n", "5 "],
    ["bare LF after size", "5\nhello", "5"],
    ["data too long", "3\r\nabcd\r\n", "3\r\nabc"],
    ["size overflow", "ffffffffffffffff\r\n", "fffffffffffff"],
    ["control in extension", "1;a\x01\r\n", "1;a"],
    ["trailer without colon", "0\r\nbad trailer\r\n\r\n", "0\r\nbad"],
    ["trailer bare LF", "0\r\nA: b\n\r\n", "0\r\nA: b"],
    ["last chunk bare LF", "0\r\n\n", "0\r\n"]
  ]
  for (const [name, body, sent] of badBodies) {
    it(`400 in chunked framing: ${name}`, () => {
      const input = bytesOf(HEAD + body)
      const expected: Output = {
        text: SENT_HEAD + sent,
        events: [`400 after ${SENT_HEAD.length + sent.length}`]
      }
      assert.deepStrictEqual(whole(input), expected)
      assert.deepStrictEqual(bytewise(input), expected)
    })
  }

  it("after an error, later input is ignored and the mode is failed", () => {
    const c = collector()
    const r = rewriter()
    r.feed(bytesOf("GET / HTTP/1.1\r\nX\r\n\r\n"), c.sink)
    r.feed(bytesOf("GET / HTTP/1.1\r\n\r\n"), c.sink)
    assert.deepStrictEqual(c.output(), { text: "", events: ["400 after 0"] })
    assert.strictEqual(r.mode, "failed")
  })

  it("earlier pipelined requests are sent before the error of a later one", () => {
    const ok = "GET /a HTTP/1.1\r\n\r\n"
    const out = whole(bytesOf(`${ok}GET /b HTTP/1.1\r\nbad\r\n\r\n`))
    const sent = "GET /a HTTP/1.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n"
    assert.deepStrictEqual(out, { text: sent, events: [`400 after ${sent.length}`] })
  })

  for (const limit of [100, 65536]) {
    it(`a head of exactly headLimit (${limit}) bytes passes, one more is 431`, () => {
      const at = headOf(limit)
      assert.strictEqual(at.length, limit)
      assert.deepStrictEqual(whole(bytesOf(at), limit).events, [])
      assert.deepStrictEqual(split(bytesOf(at), [limit - 1, 7, 3000], limit).events, [])
      const over = bytesOf(headOf(limit + 1))
      assert.deepStrictEqual(whole(over, limit), { text: "", events: ["431 after 0"] })
      assert.deepStrictEqual(split(over, [limit - 1, 7, 3000], limit), { text: "", events: ["431 after 0"] })
    })
  }

  it("431 as soon as an unfinished head passes the limit, without waiting for its end", () => {
    const c = collector()
    const r = rewriter(100)
    r.feed(bytesOf("GET / HTTP/1.1\r\nX-Pad: "), c.sink)
    r.feed(bytesOf("p".repeat(77)), c.sink)
    assert.deepStrictEqual(c.output().events, [])
    r.feed(bytesOf("p"), c.sink)
    assert.deepStrictEqual(c.output(), { text: "", events: ["431 after 0"] })
  })

  it("a trailer section over the limit is 431; a chunk-size line over it is 400", () => {
    const head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert.deepStrictEqual(
      whole(bytesOf(`${head}0\r\nA: ${"t".repeat(200)}\r\n\r\n`), 100).events.map((e) => e.slice(0, 3)),
      [
        "431"
      ]
    )
    assert.deepStrictEqual(
      whole(bytesOf(`${head}1;${"e".repeat(200)}\r\nx\r\n`), 100).events.map((e) => e.slice(0, 3)),
      [
        "400"
      ]
    )
    assert.deepStrictEqual(whole(bytesOf(`${head}1;${"e".repeat(50)}\r\nx\r\n0\r\n\r\n`), 100).events, [])
  })

  it("errorResponse formats 400 and 431", () => {
    assert.strictEqual(
      HttpRewrite.errorResponse(400),
      "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    assert.strictEqual(
      HttpRewrite.errorResponse(431),
      "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
  })
})

// ---------------------------------------------------------------------------------------------------------------------

/** Noise: pieces of HTTP mixed with random bytes. */
const Noise = Schema.Array(
  Schema.Union([
    int(0, 255),
    Schema.Literals([
      "GET / HTTP/1.1\r\n",
      "POST /x HTTP/1.0\r\n",
      "CONNECT a:1 HTTP/1.1\r\n",
      "\r\n",
      "\r\n\r\n",
      "\n",
      "\r",
      "Content-Length: 3\r\n",
      "Content-Length: 99999999999\r\n",
      "Transfer-Encoding: chunked\r\n",
      "X-Forwarded-For: a\r\n",
      "X-Forwarded-Proto: b\r\n",
      "Upgrade: x\r\nConnection: upgrade\r\n",
      "A: b\r\n",
      "5;e\r\n",
      "0\r\n",
      "ff\r\n",
      ":",
      " "
    ])
  ])
).check(Schema.isMaxLength(40))

describe("HttpRewrite: any input", () => {
  it.prop(
    "noise never throws, and the output and events do not depend on where chunks split",
    { noise: Noise, cuts: Cuts, limit: int(0, 200) },
    ({ cuts, limit, noise }) => {
      const input = bytesOf(bodyText(noise))
      const once = whole(input, limit)
      assert.deepStrictEqual(split(input, cuts, limit), once)
      assert.deepStrictEqual(bytewise(input, limit), once)
      assert.isTrue(once.events.filter((e) => !e.startsWith("passthrough")).length <= 1)
      assert.isFalse(once.events.some((e) => e.startsWith("bad") || e.startsWith("second")))
    },
    { arbitrary: { runs: 500 } }
  )

  it.prop(
    "random bytes never throw, split or whole",
    { bytes: Schema.Uint8Array, cuts: Cuts },
    ({ bytes, cuts }) => {
      assert.deepStrictEqual(split(bytes, cuts), whole(bytes))
    },
    { arbitrary: { runs: 300 } }
  )

  it("odd lengths passed to feed are clamped, never thrown on", () => {
    const c = collector()
    const r = rewriter()
    const chunk = bytesOf("GET / HTTP/1.1\r\n\r\n")
    r.feed(chunk, c.sink, -5)
    r.feed(chunk, c.sink, Number.NaN)
    r.feed(chunk, c.sink, 1e9)
    assert.deepStrictEqual(c.output().events, [])
    assert.isTrue(c.output().text.startsWith("GET / HTTP/1.1\r\nX-Forwarded-Proto"))
  })
})

// ---------------------------------------------------------------------------------------------------------------------

describe("HttpRewrite: passthrough", () => {
  const upgrades: ReadonlyArray<readonly [string, string]> = [
    ["WebSocket", "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n"],
    ["CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"],
    ["CONNECT in HTTP/1.0", "CONNECT example.com:443 HTTP/1.0\r\n\r\n"],
    [
      "h2c with a body",
      "POST / HTTP/1.1\r\nupgrade: h2c\r\nCONNECTION: Upgrade, HTTP2-Settings\r\nContent-Length: 3\r\n\r\n"
    ]
  ]

  for (const [name, head] of upgrades) {
    it.prop(
      `${name}: after the head everything is passed on untouched`,
      { tail: Noise, cuts: Cuts },
      ({ cuts, tail }) => {
        const after = bodyText(tail)
        const input = bytesOf(head + after)
        const expected: Output = {
          text: rewritten(head) + after,
          events: [`passthrough after ${rewritten(head).length}`]
        }
        assert.deepStrictEqual(whole(input), expected)
        assert.deepStrictEqual(split(input, cuts), expected)
      },
      { arbitrary: { runs: 50 } }
    )
  }

  it("the mode says passthrough, and later chunks are passed whole", () => {
    const c = collector()
    const r = rewriter()
    r.feed(bytesOf(upgrades[1]![1]), c.sink)
    assert.strictEqual(r.mode, "passthrough")
    r.feed(bytesOf("GET / HTTP/1.1\n\n"), c.sink)
    assert.isTrue(c.output().text.endsWith("\r\n\r\nGET / HTTP/1.1\n\n"))
  })

  it("no switch: Upgrade without Connection: upgrade, Connection: upgrade without Upgrade, Upgrade in HTTP/1.0", () => {
    for (
      const head of [
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgraded\r\n\r\n",
        "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
      ]
    ) {
      const next = "GET /2 HTTP/1.1\r\n\r\n"
      assert.deepStrictEqual(whole(bytesOf(head + next)), { text: rewritten(head) + rewritten(next), events: [] }, head)
    }
  })
})
