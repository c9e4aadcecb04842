/**
 * niblog against penlog: the same stdin gives the same datagrams from the same source address (except a line longer
 * than 1023 bytes, which penlog cut into pieces), the same usage line and exit codes; and every pairing of the
 * senders and daemons (niblog -> niblogd, penlog -> niblogd, niblog -> penlogd) puts the real client back. Without
 * pen's tools the side-by-side tests are skipped, visibly.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Path from "node:path"
import * as Poll from "../utils/Poll.ts"
import * as Companions from "./Companions.ts"

const penlog = Companions.findPen("penlog")
const penlogd = Companions.findPen("penlogd")
const niblog = Companions.nib("niblog")
const niblogd = Companions.nib("niblogd")
const missing = penlog.command === undefined ? penlog.why : penlogd.command === undefined ? penlogd.why : undefined
if (missing !== undefined) console.warn(`companions: ${missing}: side-by-side tests SKIPPED`)
const sideBySide = (title: string) => missing === undefined ? title : `${title}: SKIPPED, ${missing}`

/** Runs a sender with `stdin` to a fresh UDP socket; returns its exit and the datagrams received. */
const capture = (command: Companions.Command, stdin: string, extra: ReadonlyArray<string> = [], expected = 0) =>
  Effect.gen(function*() {
    const sink = yield* Companions.udp("0.0.0.0")
    const result = yield* Companions.run(command, ["127.0.0.1", String(sink.port), ...extra], stdin)
    yield* Effect.promise(() => Poll.until(() => sink.received.length >= expected, 5_000))
    return { result, received: [...sink.received] }
  })

describe("niblog, side by side with penlog", () => {
  it.live.skipIf(missing !== undefined)(
    sideBySide("one datagram per line, newline included, from my_ip; exit 0"),
    () =>
      Effect.gen(function*() {
        const stdin = "127.0.0.1 - - [x] \"GET / HTTP/1.0\" 200 5\nb\r\n\n\xe9t\xe9\nlast line without newline"
        const expected = [
          "127.0.0.1 - - [x] \"GET / HTTP/1.0\" 200 5\n",
          "b\r\n",
          "\n",
          "\xe9t\xe9\n",
          "last line without newline"
        ].map((text) => ({ text, address: "127.0.0.5" }))
        for (const command of [niblog, penlog.command!]) {
          const { received, result } = yield* capture(command, stdin, ["127.0.0.5"], expected.length)
          assert.deepStrictEqual([result.code, result.stdout, result.stderr], [0, "", ""])
          assert.deepStrictEqual(received, expected)
        }
      })
  )

  it.live.skipIf(missing !== undefined)(
    sideBySide("differs on purpose: a line over 1023 bytes is one datagram (penlog cut it into pieces)"),
    () =>
      Effect.gen(function*() {
        const long = `127.0.0.1 - - [x] "GET /${"a".repeat(1500)} HTTP/1.0" 200 5\n`
        const nib = yield* capture(niblog, long, [], 1)
        assert.deepStrictEqual(nib.received.map((d) => d.text), [long])
        const pen = yield* capture(penlog.command!, long, [], 2)
        assert.deepStrictEqual(pen.received.map((d) => d.text), [long.slice(0, 1023), long.slice(1023)])
      })
  )

  it.live.skipIf(missing !== undefined)(
    sideBySide("usage and errors: the same exit codes, one line each"),
    () =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<readonly [ReadonlyArray<string>, number, RegExp, RegExp]> = [
          [
            [],
            1,
            /^Usage: \S*penlog server_ip server_port \[my_ip\]\n$/,
            /^Usage: niblog server_ip server_port \[my_ip\]\n$/
          ],
          [["127.0.0.1"], 1, /^Usage: /, /^Usage: niblog server_ip server_port \[my_ip\]\n$/],
          [
            ["no-such-host.invalid", "10000"],
            1,
            /^getaddrinfo: Name or service not known\n$/,
            /^niblog: server_ip 'no-such-host.invalid': Name or service not known\n$/
          ],
          [
            ["127.0.0.1", "no-such-service"],
            1,
            /^getaddrinfo: Servname not supported for ai_socktype\n$/,
            /^niblog: server_port 'no-such-service': not a port number or a UDP service name\n$/
          ],
          [
            ["127.0.0.1", "10000", "no-such-host.invalid"],
            1,
            /^getaddrinfo: Name or service not known\n$/,
            /^niblog: my_ip 'no-such-host.invalid': Name or service not known\n$/
          ],
          [
            ["127.0.0.1", "10000", "192.0.2.77"],
            1,
            /^Problem creating socket\n$/,
            /^niblog: my_ip '192.0.2.77': cannot bind 192.0.2.77:0: address not available\n$/
          ]
        ]
        for (const [args, code, penText, nibText] of cases) {
          const pen = yield* Companions.run(penlog.command!, args)
          const nib = yield* Companions.run(niblog, args)
          assert.strictEqual(pen.code, code, `penlog ${args.join(" ")}`)
          assert.strictEqual(nib.code, code, `niblog ${args.join(" ")}`)
          assert.match(pen.stderr, penText)
          assert.match(nib.stderr, nibText)
        }
      })
  )

  it.live("refuses what penlog took silently: port 0 or over 65535, a fourth argument", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["127.0.0.1", "0"], "niblog: server_port '0': expected a port, 1..65535\n"],
        [["127.0.0.1", "99999"], "niblog: server_port '99999': expected a port, 1..65535\n"],
        [["127.0.0.1", "10000", "127.0.0.1", "x"], "niblog: unexpected argument 'x' after my_ip\n"]
      ]
      for (const [args, stderr] of cases) {
        const result = yield* Companions.run(niblog, args)
        assert.deepStrictEqual([result.code, result.stderr], [1, stderr])
      }
    }))
})

describe("senders into daemons: the real client comes back", () => {
  const pairs = [
    ["niblog", "niblogd"],
    ["penlog", "niblogd"],
    ["niblog", "penlogd"]
  ] as const
  for (const [sender, daemon] of pairs) {
    const needsPen = sender === "penlog" || daemon === "penlogd"
    const title = `${sender} -> ${daemon}`
    it.live.skipIf(needsPen && missing !== undefined)(
      needsPen ? sideBySide(title) : title,
      () =>
        Effect.gen(function*() {
          const dir = yield* Companions.tempDir
          const logd = yield* Companions.logd(
            daemon === "niblogd" ? niblogd : penlogd.command!,
            Path.join(dir, "out.log")
          )
          // The balancer's records (nib's -l format), then the web server's lines through the sender, from 127.0.0.7:
          // the address the records name the server by.
          const balancer = yield* Companions.udp()
          for (const record of ["+ 10.1.1.1 127.0.0.7 GET /a HTTP/1.0\n", "+ 10.2.2.2 127.0.0.7 GET /b HTTP/1.0\n"]) {
            yield* Effect.promise(() => balancer.send(record, logd.port))
          }
          const lines = [
            "127.0.0.7 - - [30/Nov/2026:10:00:00 +0000] \"GET /a HTTP/1.0\" 200 5",
            "127.0.0.7 - - [30/Nov/2026:10:00:01 +0000] \"GET /b HTTP/1.0\" 404 9 \"http://ref/\" \"Mozilla/5.0\"",
            "127.0.0.7 - - [30/Nov/2026:10:00:02 +0000] \"GET /c HTTP/1.0\" 200 1"
          ]
          const result = yield* Companions.run(
            sender === "niblog" ? niblog : penlog.command!,
            ["127.0.0.1", String(logd.port), "127.0.0.7"],
            lines.map((line) => `${line}\n`).join("")
          )
          assert.strictEqual(result.code, 0)
          assert.deepStrictEqual(yield* Companions.waitForLines(logd, 3), [
            lines[0]!.replace("127.0.0.7", "10.1.1.1"),
            lines[1]!.replace("127.0.0.7", "10.2.2.2"),
            lines[2]!
          ])
        })
    )
  }
})
