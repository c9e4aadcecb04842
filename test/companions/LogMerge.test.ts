import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as AccessLog from "../../src/domain/AccessLog.ts"
import * as LogMerge from "../../src/domain/LogMerge.ts"

const bytes = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0))
const latin1 = (data: Uint8Array): string => String.fromCharCode(...data)
const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

const Client = Schema.Literals(["10.1.0.1", "10.1.0.2", "192.168.7.9", "2001:db8::5"])
const Server = Schema.Literals(["127.0.0.1", "10.0.0.2", "10.0.0.3"])
const Request = Schema.Literals([
  "GET / HTTP/1.0",
  "GET /a HTTP/1.1",
  "POST /form?x=1&y=2 HTTP/1.1",
  `GET /${"x".repeat(150)} HTTP/1.1`,
  "GET /caf\xe9 HTTP/1.0"
])

describe("LogMerge: the balancer's records", () => {
  it.prop(
    "a datagram nib sends reads back as its client, server and the first 99 characters of the request line",
    { client: Client, server: Server, request: Request, tail: Schema.Literals(["\r\nHost: a\r\n\r\n", "\n", ""]) },
    ({ client, request, server, tail }) => {
      const datagram = latin1(AccessLog.datagram(client, server, bytes(request + tail)))
      assert.isTrue(LogMerge.isRecordDatagram(datagram))
      const line = request.replace(/[\x80-\xff]/g, ".")
      assert.deepStrictEqual(LogMerge.parseRecord(datagram), { client, server, request: line.slice(0, 99) })
    }
  )

  it("reads penlogd's way: any white space between fields, 99 characters at most, no request is bogus", () => {
    assert.deepStrictEqual(LogMerge.parseRecord("+  8.8.8.8  127.0.0.1  GET /ws \n"), {
      client: "8.8.8.8",
      server: "127.0.0.1",
      request: "GET /ws "
    })
    assert.deepStrictEqual(LogMerge.parseRecord("+5.5.5.5 127.0.0.1 GET /crlf\r\n"), {
      client: "5.5.5.5",
      server: "127.0.0.1",
      request: "GET /crlf\r"
    })
    assert.strictEqual(LogMerge.parseRecord("+ bad\n"), undefined)
    assert.strictEqual(LogMerge.parseRecord("+ 3.3.3.3 1.2.3.4 \n"), undefined)
    assert.strictEqual(LogMerge.parseRecord("+ abc"), undefined)
    assert.strictEqual(LogMerge.parseRecord("x 1 2 3"), undefined)
  })

  it("a line of nib's -l file reads back as its fields", () => {
    const line = AccessLog.fileLine("10.1.0.1", 1795264820, "127.0.0.1", bytes("GET /a HTTP/1.0\r\n\r\n")).trimEnd()
    assert.deepStrictEqual(LogMerge.parseFileRecord(line), {
      client: "10.1.0.1",
      time: 1795264820,
      server: "127.0.0.1",
      request: "GET /a HTTP/1.0"
    })
    assert.strictEqual(LogMerge.parseFileRecord("bogus line"), undefined)
    assert.strictEqual(LogMerge.parseFileRecord("1.1.1.1 12 10.0.0.1"), undefined)
    assert.strictEqual(LogMerge.parseFileRecord("1.1.1.1 x 10.0.0.1 GET /"), undefined)
  })

  it.prop(
    "every line nib's -l file holds reads back, request cut at 100 bytes",
    { client: Client, server: Server, request: Request, time: int(0, 2 ** 31) },
    ({ client, request, server, time }) => {
      const line = AccessLog.fileLine(client, time, server, bytes(`${request}\r\n`)).slice(0, -1)
      const record = LogMerge.parseFileRecord(line)
      assert.deepStrictEqual(record, {
        client,
        time,
        server,
        request: request.replace(/[\x80-\xff]/g, ".").slice(0, AccessLog.FILE_CHUNK_MAX)
      })
    }
  )

  it("reads IPv4 addresses as inet_aton does", () => {
    assert.strictEqual(LogMerge.inetAton("127.0.0.1"), "127.0.0.1")
    assert.strictEqual(LogMerge.inetAton("127.1"), "127.0.0.1")
    assert.strictEqual(LogMerge.inetAton("0x7f.1"), "127.0.0.1")
    assert.strictEqual(LogMerge.inetAton("0177.0.0.01"), "127.0.0.1")
    assert.strictEqual(LogMerge.inetAton("2130706433"), "127.0.0.1")
    assert.strictEqual(LogMerge.inetAton("10.0.0.1\tjunk"), "10.0.0.1")
    for (const bad of ["::1", "localhost", "1.2.3.4.5", "256.0.0.1", "08.1.1.1", "0x.1", "1..2", "", "1.2.3.256"]) {
      assert.strictEqual(LogMerge.inetAton(bad), undefined, bad)
    }
  })
})

/** A web-server line for `request`, as received by the ring. */
const apacheLine = (request: string) => `127.0.0.1 - - [30/Nov/2026:10:00:00 +0000] "${request}" 200 2\n`

describe("LogMerge: penlogd's ring", () => {
  it("rewrites the first field with the newest matching record's client; unmatched lines pass unchanged", () => {
    const ring = LogMerge.makeRing(10)
    LogMerge.receive(ring, "+ 1.1.1.1 127.0.0.1 GET / HTTP/1.0\n", "127.0.0.1")
    LogMerge.receive(ring, "+ 2.2.2.2 127.0.0.2 GET / HTTP/1.0\n", "127.0.0.1")
    LogMerge.receive(ring, "+ 3.3.3.3 127.0.0.1 GET / HTTP/1.0\n", "127.0.0.1")
    const hit = LogMerge.receive(ring, apacheLine("GET / HTTP/1.0"), "127.0.0.1")
    assert.deepStrictEqual(hit, {
      _tag: "Line",
      line: apacheLine("GET / HTTP/1.0").replace("127.0.0.1", "3.3.3.3"),
      client: "3.3.3.3",
      request: true
    })
    const other = LogMerge.receive(ring, apacheLine("GET / HTTP/1.0"), "127.0.0.2")
    assert.strictEqual(other._tag === "Line" && other.client, "2.2.2.2")
    const miss = LogMerge.receive(ring, apacheLine("GET /nomatch HTTP/1.0"), "127.0.0.1")
    assert.deepStrictEqual(miss, {
      _tag: "Line",
      line: apacheLine("GET /nomatch HTTP/1.0"),
      client: undefined,
      request: true
    })
  })

  it("matches a record by the server's address in any inet_aton form, and by request prefix as penlogd does", () => {
    const ring = LogMerge.makeRing(10)
    LogMerge.receive(ring, "+ 6.6.6.6 127.1 GET /short HTTP/1.0\n", "127.0.0.1")
    assert.strictEqual(LogMerge.find(ring, "127.0.0.1", "GET /short"), "6.6.6.6")
    assert.strictEqual(LogMerge.find(ring, "127.0.0.1", ""), "6.6.6.6")
    assert.strictEqual(LogMerge.find(ring, "127.0.0.1", "GET /short HTTP/1.0 more"), undefined)
  })

  it("a request of 100 characters or more matches on the 99 a record keeps (penlogd matched none)", () => {
    const long = `GET /${"y".repeat(200)} HTTP/1.1`
    const ring = LogMerge.makeRing(10)
    LogMerge.receive(ring, latin1(AccessLog.datagram("9.9.9.9", "127.0.0.1", bytes(`${long}\r\n`))), "127.0.0.1")
    assert.strictEqual(LogMerge.find(ring, "127.0.0.1", long), "9.9.9.9")
    assert.strictEqual(LogMerge.find(ring, "127.0.0.1", `GET /${"y".repeat(93)}z`), undefined)
  })

  it("keeps lines penlogd dropped or glued: no request, no space, no newline; drops only empty datagrams", () => {
    const ring = LogMerge.makeRing(10)
    LogMerge.receive(ring, "+ 1.1.1.1 127.0.0.1 GET /a\n", "127.0.0.1")
    const line = (text: string) => {
      const outcome = LogMerge.receive(ring, text, "127.0.0.1")
      return outcome._tag === "Line" ? outcome.line : outcome._tag
    }
    assert.strictEqual(line("garbage no quote\n"), "garbage no quote\n")
    assert.strictEqual(line("one \"quote\n"), "one \"quote\n")
    assert.strictEqual(line("nospace\"GET /a\"\n"), "1.1.1.1 /a\"\n")
    assert.strictEqual(line("x\"GET\"\n"), "x\"GET\"\n")
    assert.strictEqual(line("noeol \"GET /a\""), "1.1.1.1 \"GET /a\"\n")
    assert.strictEqual(line("\n"), "Empty")
    assert.strictEqual(line(""), "Empty")
    assert.strictEqual(line("+ bogus\n"), "BogusRecord")
  })

  /** One step: a record (client index, server index, request index) or a web line (server index, request index). */
  const Step = Schema.Union([
    Schema.Struct({ client: int(0, 5), server: int(0, 2), request: int(0, 3) }),
    Schema.Struct({ server: int(0, 2), request: int(0, 3) })
  ])
  const servers = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
  const requests = ["GET / HTTP/1.0", "GET /a HTTP/1.0", "GET /b HTTP/1.1", "POST /c HTTP/1.1"]

  it.prop(
    "a web line gets the client of the newest of the last N records with its server and request (N = -n), else stays",
    { capacity: int(1, 6), steps: Schema.Array(Step).check(Schema.isMaxLength(40)) },
    ({ capacity, steps }) => {
      const ring = LogMerge.makeRing(capacity)
      const model: Array<{ client: string; server: string; request: string }> = []
      for (const step of steps) {
        const server = servers[step.server]!
        const request = requests[step.request]!
        if ("client" in step) {
          const client = `10.9.0.${step.client + 1}`
          LogMerge.receive(ring, `+ ${client} ${server} ${request}\n`, "127.0.0.9")
          model.push({ client, server, request })
          if (model.length > capacity) model.shift()
          continue
        }
        const text = apacheLine(request)
        const outcome = LogMerge.receive(ring, text, server)
        const expected = model.findLast((r) => r.server === server && r.request === request)?.client
        assert.deepStrictEqual(outcome, {
          _tag: "Line",
          line: expected === undefined ? text : expected + text.slice(text.indexOf(" ")),
          client: expected,
          request: true
        })
      }
    }
  )
})

describe("LogMerge: Apache lines and times", () => {
  it("cuts common and combined lines as mergelogs does, and formats them back", () => {
    const combined =
      "10.0.0.9 - frank [09/Sep/2001:01:46:50 +0000] \"GET /a HTTP/1.0\" 200 5 \"http://ref/\" \"Mozilla/5.0 (X)\""
    const web = LogMerge.parseWebLine(combined)
    assert.deepStrictEqual(web, {
      client: "10.0.0.9",
      beforeTime: "- frank ",
      time: "09/Sep/2001:01:46:50 +0000",
      beforeRequest: " ",
      request: "GET /a HTTP/1.0",
      rest: " 200 5 \"http://ref/\" \"Mozilla/5.0 (X)\""
    })
    if (typeof web === "number") return
    assert.strictEqual(
      LogMerge.formatMerged("3.3.3.3", web, LogMerge.parseApacheTime(web.time)),
      combined.replace("10.0.0.9", "3.3.3.3") + "\n"
    )
    // mergelogs skips what it cannot cut into six non-empty parts: these are its counts of fields read.
    assert.strictEqual(LogMerge.parseWebLine("garbage"), 1)
    assert.strictEqual(LogMerge.parseWebLine(" x"), 0)
    assert.strictEqual(LogMerge.parseWebLine("1.2.3.4 - - [t] \"\" 400 -"), 4)
    assert.strictEqual(LogMerge.parseWebLine("1.2.3.4 - - [t] \"GET /x HTTP/1.0\""), 5)
  })

  it("reads the time with its offset, and writes it in UTC", () => {
    assert.strictEqual(LogMerge.parseApacheTime("09/Sep/2001:02:46:41 +0100"), 1000000001)
    assert.strictEqual(LogMerge.parseApacheTime("08/Sep/2001:20:58:04 -0500"), 1000000684)
    assert.strictEqual(LogMerge.parseApacheTime("09/Sep/2001:01:46:40 +0000"), 1000000000)
    assert.strictEqual(LogMerge.parseApacheTime("09/Sep/2001:01:46:40"), 1000000000)
    // Carried over as mktime does: the 31st of September is the 1st of October.
    assert.strictEqual(
      LogMerge.parseApacheTime("31/Sep/2001:00:00:00 +0000"),
      LogMerge.parseApacheTime("01/Oct/2001:00:00:00 +0000")
    )
    assert.strictEqual(LogMerge.formatApacheTime(1000000001), "09/Sep/2001:01:46:41 +0000")
  })

  it.prop(
    "formatting and reading a time gives it back, whatever the offset it was written with",
    { t: int(0, 4_000_000_000), offsetMinutes: int(-14 * 60, 14 * 60) },
    ({ offsetMinutes, t }) => {
      assert.strictEqual(LogMerge.parseApacheTime(LogMerge.formatApacheTime(t)), t)
      const local = LogMerge.formatApacheTime(t + offsetMinutes * 60).replace(" +0000", "")
      const a = Math.abs(offsetMinutes)
      const zone = `${offsetMinutes < 0 ? "-" : "+"}${String(Math.floor(a / 60)).padStart(2, "0")}${
        String(a % 60).padStart(2, "0")
      }`
      assert.strictEqual(LogMerge.parseApacheTime(`${local} ${zone}`), t)
    }
  )
})

const at = (t: number) => LogMerge.formatApacheTime(t)
const webLine = (t: number, request: string, status = 200) => `10.0.0.99 - - [${at(t)}] "${request}" ${status} 5`
/** The merged lines of a merge. */
const run = (
  fileLog: ReadonlyArray<string>,
  logs: ReadonlyArray<LogMerge.ServerLog>,
  options: Partial<LogMerge.MergeOptions> = {}
) =>
  [...LogMerge.merge(fileLog, logs, { jitter: 600, tzOffset: 0, cache: true, ...options })]
    .flatMap((e) => (e._tag === "Line" ? [e.text] : []))

describe("LogMerge.merge", () => {
  it("replaces each client with the nearest record's, else with the server's address, oldest line first", () => {
    const file = [
      "1.1.1.1 1000 10.0.0.1 GET / HTTP/1.0",
      "2.2.2.2 1010 10.0.0.2 GET / HTTP/1.0",
      "bogus",
      "3.3.3.3 1020 10.0.0.1 GET /a HTTP/1.0",
      "4.4.4.4 1700 10.0.0.1 GET /a HTTP/1.0"
    ]
    const out = run(file, [
      {
        server: "10.0.0.1",
        lines: [
          webLine(1001, "GET / HTTP/1.0"),
          webLine(1021, "GET /a HTTP/1.0"),
          "garbage",
          webLine(1690, "GET /a HTTP/1.0"),
          webLine(1691, "GET /none HTTP/1.0")
        ]
      },
      { server: "10.0.0.2", lines: [webLine(1011, "GET / HTTP/1.0")] }
    ])
    assert.deepStrictEqual(out, [
      `1.1.1.1 - - [${at(1001)}] "GET / HTTP/1.0" 200 5\n`,
      `2.2.2.2 - - [${at(1011)}] "GET / HTTP/1.0" 200 5\n`,
      `3.3.3.3 - - [${at(1021)}] "GET /a HTTP/1.0" 200 5\n`,
      `4.4.4.4 - - [${at(1690)}] "GET /a HTTP/1.0" 200 5\n`,
      `10.0.0.1 - - [${at(1691)}] "GET /none HTTP/1.0" 200 5\n`
    ])
  })

  it("with the cache, a record that left the window is not found; -c finds it at any distance", () => {
    const file = ["1.1.1.1 1000 10.0.0.1 GET /x HTTP/1.0", "2.2.2.2 5000 10.0.0.1 GET /y HTTP/1.0"]
    const logs = [{ server: "10.0.0.1", lines: [webLine(3990, "GET /x HTTP/1.0"), webLine(4000, "GET /x HTTP/1.0")] }]
    // As mergelogs: the first line reads records until one is past its window, and all of them are candidates; the
    // next line drops those older than its window from the front first.
    assert.deepStrictEqual(run(file, logs, { jitter: 10 }), [
      `1.1.1.1 - - [${at(3990)}] "GET /x HTTP/1.0" 200 5\n`,
      `10.0.0.1 - - [${at(4000)}] "GET /x HTTP/1.0" 200 5\n`
    ])
    assert.deepStrictEqual(run(file, logs, { jitter: 10, cache: false }), [
      `1.1.1.1 - - [${at(3990)}] "GET /x HTTP/1.0" 200 5\n`,
      `1.1.1.1 - - [${at(4000)}] "GET /x HTTP/1.0" 200 5\n`
    ])
    // -t moves the balancer's clock: 3000 s ahead brings the record into a 10 s window.
    const shifted = ["1.1.1.1 7000 10.0.0.1 GET /x HTTP/1.0", "2.2.2.2 9000 10.0.0.1 GET /y HTTP/1.0"]
    assert.deepStrictEqual(run(shifted, logs, { jitter: 10, tzOffset: 3000 }), [
      `1.1.1.1 - - [${at(3990)}] "GET /x HTTP/1.0" 200 5\n`,
      `1.1.1.1 - - [${at(4000)}] "GET /x HTTP/1.0" 200 5\n`
    ])
  })

  it("matches a request longer than the 100 bytes the file keeps (mergelogs wanted the whole request)", () => {
    const long = `GET /${"z".repeat(150)} HTTP/1.1`
    const file = [AccessLog.fileLine("7.7.7.7", 1000, "10.0.0.1", bytes(long)).trimEnd()]
    assert.deepStrictEqual(run(file, [{ server: "10.0.0.1", lines: [webLine(1000, long)] }]), [
      `7.7.7.7 - - [${at(1000)}] "${long}" 200 5\n`
    ])
  })

  const Entry = Schema.Struct({
    server: int(0, 2),
    request: int(0, 2),
    gap: int(0, 30),
    skew: int(-20, 20),
    logged: Schema.Boolean
  })
  const names = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
  const paths = ["GET / HTTP/1.0", "GET /a HTTP/1.0", "POST /b HTTP/1.1"]

  it.prop(
    "every web line comes out once, oldest first; with -c its client is the nearest record's (the first of equals)",
    { entries: Schema.Array(Entry).check(Schema.isMaxLength(40)), jitter: int(0, 60) },
    ({ entries, jitter }) => {
      let t = 1_000_000
      const file: Array<string> = []
      const records: Array<{ client: string; t: number; server: string; request: string }> = []
      const logs = names.map((server) => ({ server, lines: [] as Array<{ t: number; text: string }> }))
      /** Each line's size field is its number, which tells which server's log it came from. */
      const serverOf: Array<string> = []
      entries.forEach((e, i) => {
        t += e.gap
        const server = names[e.server]!
        const request = paths[e.request]!
        if (e.logged) {
          const client = `192.168.0.${i + 1}`
          file.push(`${client} ${t} ${server} ${request}`)
          records.push({ client, t, server, request })
        }
        logs[e.server]!.lines.push({ t: t + e.skew, text: `10.0.0.99 - - [${at(t + e.skew)}] "${request}" 200 ${i}` })
        serverOf.push(server)
      })
      const sorted = logs.map((log) => ({
        server: log.server,
        lines: log.lines.toSorted((a, b) => a.t - b.t).map((line) => line.text)
      }))
      for (const cache of [true, false]) {
        const out = run(file, sorted, { jitter, cache })
        assert.strictEqual(out.length, entries.length)
        const webs = out.map((line) => LogMerge.parseWebLine(line.trimEnd()) as LogMerge.WebLine)
        const times = webs.map((web) => LogMerge.parseApacheTime(web.time))
        assert.deepStrictEqual(times, times.toSorted((a, b) => a - b))
        webs.forEach((web, k) => {
          const server = serverOf[Number(web.rest.trim().split(" ")[1])]!
          const same = records.filter((r) => r.request === web.request && r.server === server)
          if (cache) {
            assert.isTrue(web.client === server || same.some((r) => r.client === web.client), out[k])
            return
          }
          let best: (typeof same)[number] | undefined
          for (const r of same) {
            if (best === undefined || Math.abs(times[k]! - r.t) < Math.abs(times[k]! - best.t)) best = r
          }
          assert.strictEqual(web.client, best?.client ?? server, out[k])
        })
      }
    }
  )

  it("reads server:logfile at the first colon, or after ] for an IPv6 address", () => {
    assert.deepStrictEqual(LogMerge.parseServerArgument("10.0.0.1:access_log.1"), {
      server: "10.0.0.1",
      path: "access_log.1"
    })
    assert.deepStrictEqual(LogMerge.parseServerArgument("10.0.0.1:/logs/a:b"), {
      server: "10.0.0.1",
      path: "/logs/a:b"
    })
    assert.deepStrictEqual(LogMerge.parseServerArgument("[2001:db8::1]:a.log"), {
      server: "2001:db8::1",
      path: "a.log"
    })
    assert.strictEqual(LogMerge.parseServerArgument("access_log"), undefined)
  })
})
