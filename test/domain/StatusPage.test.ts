import { assert, describe, it } from "@effect/vitest"
import * as StatusPage from "../../src/domain/StatusPage.ts"

/**
 * The page of pen-reference §7.1 (pen 0.34.1, "2 servers, 1 current", "500 max, 3 used, 2 last"): server 0, client 0
 * and connection 0 carry the values shown there; server 1, client 1 and connections 1 and 2 fill the rows the
 * reference elides.
 */
const EXAMPLE: StatusPage.StatusPage = {
  time: "2026-11-21 12:47:00",
  current: 1,
  servers: [
    {
      index: 0,
      address: "127.0.0.1",
      status: 0,
      port: 29001,
      connections: 1,
      softLimit: 0,
      hardLimit: 0,
      sent: 18,
      received: 85,
      weight: 0,
      prio: 0
    },
    {
      index: 1,
      address: "127.0.0.1",
      status: 1795264790,
      port: 29002,
      connections: 2,
      softLimit: 10,
      hardLimit: 20,
      sent: 152,
      received: 1036,
      weight: 3,
      prio: 1
    }
  ],
  clientsMax: 2048,
  clients: [
    { slot: 0, address: "127.0.0.1", ageSeconds: 0, lastServer: 1, connects: 2, sent: 170, received: 36 },
    { slot: 1, address: "127.0.0.2", ageSeconds: 12, lastServer: -1, connects: 1, sent: 85, received: 18 }
  ],
  connectionsMax: 500,
  connectionsUsed: 3,
  connectionsLast: 2,
  connections: [
    { index: 0, downfd: 8, upfd: 9, pendingDown: 0, pendingUp: 0, client: 0, server: 1 },
    { index: 1, downfd: 10, upfd: 11, pendingDown: 4096, pendingUp: 0, client: 0, server: 1 },
    { index: 2, downfd: 12, upfd: 13, pendingDown: 0, pendingUp: 17, client: 1, server: 0 }
  ]
}

const EXAMPLE_HTML = [
  "<html>",
  "<head>",
  "<title>Pen status page</title>",
  "</head>",
  "<body bgcolor=\"#ffffff\"><h1>Pen status page</h1>",
  "Time 2026-11-21 12:47:00, 2 servers, 1 current<p>",
  "<table bgcolor=\"#c0c0c0\">",
  "<tr>",
  "<td bgcolor=\"#80f080\">server</td>",
  "<td bgcolor=\"#80f080\">address</td>",
  "<td bgcolor=\"#80f080\">status</td>",
  "<td bgcolor=\"#80f080\">port</td>",
  "<td bgcolor=\"#80f080\">connections</td>",
  "<td bgcolor=\"#80f080\">max soft</td>",
  "<td bgcolor=\"#80f080\">max hard</td>",
  "<td bgcolor=\"#80f080\">sent</td>",
  "<td bgcolor=\"#80f080\">received</td>",
  "<td bgcolor=\"#80f080\">weight</td>",
  "<td bgcolor=\"#80f080\">prio</td>",
  "</tr>",
  "<tr>",
  "<td>0</td>",
  "<td>127.0.0.1</td>",
  "<td>0</td>",
  "<td>29001</td>",
  "<td>1</td>",
  "<td>0</td>",
  "<td>0</td>",
  "<td>18</td>",
  "<td>85</td>",
  "<td>0</td>",
  "<td>0</td>",
  "</tr>",
  "<tr>",
  "<td>1</td>",
  "<td>127.0.0.1</td>",
  "<td>1795264790</td>",
  "<td>29002</td>",
  "<td>2</td>",
  "<td>10</td>",
  "<td>20</td>",
  "<td>152</td>",
  "<td>1036</td>",
  "<td>3</td>",
  "<td>1</td>",
  "</tr>",
  "</table>",
  "<h2>Active clients</h2>Max number of clients: 2048<p><table bgcolor=\"#c0c0c0\">",
  "<tr>",
  "<td bgcolor=\"#80f080\">client</td>",
  "<td bgcolor=\"#80f080\">address</td>",
  "<td bgcolor=\"#80f080\">age(secs)</td>",
  "<td bgcolor=\"#80f080\">last server</td>",
  "<td bgcolor=\"#80f080\">connects</td>",
  "<td bgcolor=\"#80f080\">sent</td>",
  "<td bgcolor=\"#80f080\">received</td>",
  "</tr>",
  "<tr>",
  "<td>0</td>",
  "<td>127.0.0.1</td>",
  "<td>0</td>",
  "<td>1</td>",
  "<td>2</td>",
  "<td>170</td>",
  "<td>36</td>",
  "</tr>",
  "<tr>",
  "<td>1</td>",
  "<td>127.0.0.2</td>",
  "<td>12</td>",
  "<td>-1</td>",
  "<td>1</td>",
  "<td>85</td>",
  "<td>18</td>",
  "</tr>",
  "</table>",
  "<h2>Active connections</h2>Number of connections: 500 max, 3 used, 2 last<p><table bgcolor=\"#c0c0c0\">",
  "<tr>",
  "<td bgcolor=\"#80f080\">connection</td>",
  "<td bgcolor=\"#80f080\">downfd</td>",
  "<td bgcolor=\"#80f080\">upfd</td>",
  "<td bgcolor=\"#80f080\">pending data down</td>",
  "<td bgcolor=\"#80f080\">pending data up</td>",
  "<td bgcolor=\"#80f080\">client</td>",
  "<td bgcolor=\"#80f080\">server</td>",
  "</tr>",
  "<tr>",
  "<td>0</td>",
  "<td>8</td>",
  "<td>9</td>",
  "<td>0</td>",
  "<td>0</td>",
  "<td>0</td>",
  "<td>1</td>",
  "</tr>",
  "<tr>",
  "<td>1</td>",
  "<td>10</td>",
  "<td>11</td>",
  "<td>4096</td>",
  "<td>0</td>",
  "<td>0</td>",
  "<td>1</td>",
  "</tr>",
  "<tr>",
  "<td>2</td>",
  "<td>12</td>",
  "<td>13</td>",
  "<td>0</td>",
  "<td>17</td>",
  "<td>1</td>",
  "<td>0</td>",
  "</tr>",
  "</table>",
  "</body>",
  "</html>",
  "" // pen ends the file with "</html>\n"
].join("\n")

const EMPTY: StatusPage.StatusPage = {
  time: "2026-01-02 03:04:05",
  current: 0,
  servers: [],
  clientsMax: 2048,
  clients: [],
  connectionsMax: 500,
  connectionsUsed: 0,
  connectionsLast: 0,
  connections: []
}

describe("StatusPage.render", () => {
  it("renders the example page of pen-reference §7.1 byte for byte", () => {
    assert.strictEqual(StatusPage.render(EXAMPLE), EXAMPLE_HTML)
  })

  it("ends with </body>, </html> and one newline", () => {
    const html = StatusPage.render(EXAMPLE)
    assert.isTrue(html.endsWith("</table>\n</body>\n</html>\n"))
    assert.isFalse(html.endsWith("\n\n"))
  })

  it("renders empty tables as their header rows only", () => {
    const expected = [
      "<html>",
      "<head>",
      "<title>Pen status page</title>",
      "</head>",
      "<body bgcolor=\"#ffffff\"><h1>Pen status page</h1>",
      "Time 2026-01-02 03:04:05, 0 servers, 0 current<p>",
      "<table bgcolor=\"#c0c0c0\">",
      "<tr>",
      "<td bgcolor=\"#80f080\">server</td>",
      "<td bgcolor=\"#80f080\">address</td>",
      "<td bgcolor=\"#80f080\">status</td>",
      "<td bgcolor=\"#80f080\">port</td>",
      "<td bgcolor=\"#80f080\">connections</td>",
      "<td bgcolor=\"#80f080\">max soft</td>",
      "<td bgcolor=\"#80f080\">max hard</td>",
      "<td bgcolor=\"#80f080\">sent</td>",
      "<td bgcolor=\"#80f080\">received</td>",
      "<td bgcolor=\"#80f080\">weight</td>",
      "<td bgcolor=\"#80f080\">prio</td>",
      "</tr>",
      "</table>",
      "<h2>Active clients</h2>Max number of clients: 2048<p><table bgcolor=\"#c0c0c0\">",
      "<tr>",
      "<td bgcolor=\"#80f080\">client</td>",
      "<td bgcolor=\"#80f080\">address</td>",
      "<td bgcolor=\"#80f080\">age(secs)</td>",
      "<td bgcolor=\"#80f080\">last server</td>",
      "<td bgcolor=\"#80f080\">connects</td>",
      "<td bgcolor=\"#80f080\">sent</td>",
      "<td bgcolor=\"#80f080\">received</td>",
      "</tr>",
      "</table>",
      "<h2>Active connections</h2>Number of connections: 500 max, 0 used, 0 last<p><table bgcolor=\"#c0c0c0\">",
      "<tr>",
      "<td bgcolor=\"#80f080\">connection</td>",
      "<td bgcolor=\"#80f080\">downfd</td>",
      "<td bgcolor=\"#80f080\">upfd</td>",
      "<td bgcolor=\"#80f080\">pending data down</td>",
      "<td bgcolor=\"#80f080\">pending data up</td>",
      "<td bgcolor=\"#80f080\">client</td>",
      "<td bgcolor=\"#80f080\">server</td>",
      "</tr>",
      "</table>",
      "</body>",
      "</html>",
      ""
    ].join("\n")
    assert.strictEqual(StatusPage.render(EMPTY), expected)
  })

  it("escapes HTML-special characters in a Unix socket path (pen prints them raw)", () => {
    const path = "/tmp/a&b<c>\"d\".sock"
    const html = StatusPage.render({ ...EMPTY, servers: [{ ...EXAMPLE.servers[0]!, address: path, port: 0 }] })
    assert.include(html, "<td>/tmp/a&amp;b&lt;c&gt;&quot;d&quot;.sock</td>\n")
    assert.notInclude(html, path)
  })

  it("escapes client addresses too", () => {
    const html = StatusPage.render({ ...EMPTY, clients: [{ ...EXAMPLE.clients[0]!, address: "<x>" }] })
    assert.include(html, "<tr>\n<td>0</td>\n<td>&lt;x&gt;</td>\n<td>0</td>\n")
  })

  it("leaves plain IPv4 and IPv6 addresses as they are", () => {
    assert.strictEqual(StatusPage.escapeHtml("::ffff:127.0.0.1"), "::ffff:127.0.0.1")
    assert.strictEqual(StatusPage.escapeHtml("a&&b"), "a&amp;&amp;b")
  })
})

describe("StatusPage.formatLocalTime", () => {
  it("formats local time as YYYY-MM-DD HH:MM:SS, zero-padded", () => {
    assert.strictEqual(StatusPage.formatLocalTime(new Date(2026, 0, 2, 3, 4, 5)), "2026-01-02 03:04:05")
    assert.strictEqual(StatusPage.formatLocalTime(new Date(2026, 10, 21, 12, 47, 0)), "2026-11-21 12:47:00")
    assert.strictEqual(StatusPage.formatLocalTime(new Date(1999, 11, 31, 23, 59, 59)), "1999-12-31 23:59:59")
  })

  it("ignores milliseconds", () => {
    assert.strictEqual(StatusPage.formatLocalTime(new Date(2026, 5, 9, 0, 0, 0, 999)), "2026-06-09 00:00:00")
  })
})

describe("StatusPage.renderText", () => {
  it("renders pen's textstats messages, with the client section printed properly", () => {
    assert.deepStrictEqual(StatusPage.renderText(EXAMPLE), [
      "Time 2026-11-21 12:47:00, 2 servers, 1 current",
      "Server 0 status:\naddress 127.0.0.1\n0\nport 29001\n1 connections (0 soft, 0 hard)\n18 sent, 85 received\n",
      "Server 1 status:\naddress 127.0.0.1\n1795264790\nport 29002\n2 connections (10 soft, 20 hard)\n"
      + "152 sent, 1036 received\n",
      "Max number of clients: 2048",
      "Active clients:",
      "Client 0 status:\naddress 127.0.0.1\nlast used 0 s ago\nlast server 1\nconnects 2\nsent 170, received 36\n",
      "Client 1 status:\naddress 127.0.0.2\nlast used 12 s ago\nlast server -1\nconnects 1\nsent 85, received 18\n",
      "Max number of connections: 500",
      "Active connections:",
      "Connection 0 status:\ndownfd = 8, upfd = 9\npending data 0 down, 0 up\nclient 0, server 1\n",
      "Connection 1 status:\ndownfd = 10, upfd = 11\npending data 4096 down, 0 up\nclient 0, server 1\n",
      "Connection 2 status:\ndownfd = 12, upfd = 13\npending data 0 down, 17 up\nclient 1, server 0\n"
    ])
  })

  it("renders empty tables as their headings only", () => {
    assert.deepStrictEqual(StatusPage.renderText(EMPTY), [
      "Time 2026-01-02 03:04:05, 0 servers, 0 current",
      "Max number of clients: 2048",
      "Active clients:",
      "Max number of connections: 500",
      "Active connections:"
    ])
  })
})
