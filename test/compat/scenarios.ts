/**
 * The side-by-side scenarios: each runs, with the same pen-style argv, on pen and on nib (test/compat/harness.ts),
 * and yields a record: one short string per client connection, in the order the connections were started.
 *
 * - a backend's name ("a", "b", "e"...): that identity backend answered (each answers with its name, then echoes);
 * - "closed": the connection ended (EOF) without a byte; "reset": it was reset without a byte;
 * - "waited:a": no answer within the harness's patience, then `a` answered after the scenario released a connection;
 * - "timeout:a": no answer for most of the connect timeout (`-t`), then `a` answered, with no release in between;
 * - "partial:a": (half-close) part of `a`'s reply arrived, not all of it; "silent": nothing, and no end, at all;
 * - "a/eof", "a/reset", "a/open" (`exchange` steps): `a` answered, and after the client's next request the
 *   connection ended with an EOF, with a reset, or stayed open;
 * - `http` steps (-H): what the HTTP server received on the connection, what the client received, how it ended
 *   ({@link httpEntry}); `control` steps: the control port's reply, each backend's port written `{name}`.
 *
 * Servers are named by index: the first server is "a" (pen's server 0), the second "b" (server 1), and so on. pen's
 * timers have 1-second resolution and its loop wakes every `-t` seconds (3 by default): scenarios use whole-second
 * settings and wait well past them. Expected records come from pen's reference (/work/shared/pen-reference.md, the
 * section is named with each scenario) and were checked on the pen 0.34.1 binary.
 *
 * Not here: prio selection (`-O prio`). pen's socket settings whose effect a client cannot see alone (`source`,
 * `keepalive`, `tcp_fastclose up` with a client that stays open) are side by side in test/compat/sockets.test.ts.
 */

/** What a backend is. */
export type ServerKind =
  /** Answers each connection with its name and a newline, then echoes. */
  | "identity"
  /** A port where nothing listens: connects are refused (a `start` step may bring an identity server up there). */
  | "down"
  /** Listens, but its accept queue is full: connects hang (SYNs are dropped) until the balancer's `-t` runs out. */
  | "unresponsive"
  /** Reads the request to EOF, waits for the harness, then sends its name and a multi-line reply, and closes. */
  | "late-reply"
  /** Answers each connection with its name and a newline, then resets it when the client sends anything. */
  | "resetter"
  /**
   * HTTP/1.1 with keep-alive: answers each request (a head up to its first blank line, CRLF or LF, then as many bytes
   * of body as its Content-Length says) with {@link httpResponse}, and keeps every byte each connection sent.
   */
  | "http"

/** A backend of a scenario, and how it appears on the command line. */
export interface ServerDef {
  readonly name: string
  readonly kind: ServerKind
  /** pen's `:maxc:hard:weight:prio` suffix after `host:port`, e.g. ":2:4" or ":0:0:3". */
  readonly limits?: string
}

/** One thing a scenario does. Client addresses are 127.0.0.`from` (2..250). */
export type Step =
  /**
   * A client connects from 127.0.0.`from` (and source port `port`, if given) and waits for the first line, at most
   * the harness's patience. Then it closes, unless it is held under the label `hold` (until a `release`). A
   * connection still unanswered after the patience stays open and is classified when it ends or answers (`settle`).
   * While the balancer is frozen (`pause`), it waits only for the kernel to complete the handshake.
   */
  | {
    readonly do: "connect"
    readonly from: number
    readonly port?: number
    readonly hold?: string
    /** Bytes the client sends as soon as it is connected, without waiting for an answer. */
    readonly send?: string
  }
  /** Closes the held connection `conn` (freeing its slot in the balancer). */
  | { readonly do: "release"; readonly conn: string }
  /** Closes every held connection. */
  | { readonly do: "releaseAll" }
  /** Stops backend `server` (closing its connections): from now on its port refuses connections. */
  | { readonly do: "stop"; readonly server: string }
  /** Starts an identity backend named `server` on that backend's port. */
  | { readonly do: "start"; readonly server: string }
  /** Waits `ms` milliseconds. */
  | { readonly do: "wait"; readonly ms: number }
  /**
   * Waits until every unanswered connection has answered or ended, at most `ms` (default 15 s); those still
   * unanswered then are recorded as "silent" and closed.
   */
  | { readonly do: "settle"; readonly ms?: number }
  /**
   * A client connects from 127.0.0.`from`, waits for the first line, sends `send`, and waits (at most 2 s) for the
   * connection to end: recorded as "name/eof", "name/reset" or "name/open".
   */
  | { readonly do: "exchange"; readonly from: number; readonly send: string }
  /** Freezes the balancer (SIGSTOP): new connections wait in its accept queue, nothing it holds moves. */
  | { readonly do: "pause" }
  /** Lets the balancer run again (SIGCONT). */
  | { readonly do: "resume" }
  /**
   * A client connects from 127.0.0.`from`, sends a request and half-closes (shutdown of its write side), then reads
   * to the end. The late-reply backend that gets the request replies only once it has read the client's EOF; with
   * `pause`, the balancer is frozen while the server sends its reply and closes, so that the reply and the server's
   * FIN reach the balancer together (what happens by chance under load), then thawed.
   */
  | { readonly do: "halfClose"; readonly from: number; readonly pause?: boolean }
  /**
   * HTTP on one connection from 127.0.0.`from` to an "http" server: each of `requests` in one write, sent once the
   * responses to those before it have arrived (keep-alive ping-pong: each one a chunk of its own for the balancer),
   * or, with `pipelined`, all of them in a single write. Then the client ends its side and waits (at most 2 s) for the
   * end, and for the server's side of the connection to close. Recorded with {@link httpEntry}.
   */
  | {
    readonly do: "http"
    readonly from: number
    readonly requests: ReadonlyArray<string>
    readonly pipelined?: boolean
  }
  /**
   * Once no server shows an open connection (`conn 0` on every line of `servers`; at most 5 s), sends `command` and a
   * line end to the control port (`-C 127.0.0.1:PORT`, which the harness adds, with `-u root` when running as root,
   * to a scenario with such a step). Recorded: the reply, with each backend's port written `{name}`.
   */
  | { readonly do: "control"; readonly command: string }

/** What the clients observed, one entry per client connection (and per `control` step). */
export type RunRecord = ReadonlyArray<string>

/** A scenario where nib deliberately differs from pen: what each one does, and why nib is right. */
export interface PenBug {
  /** pen's wrong record (asserted too, so the suite shows the difference). */
  readonly pen: RunRecord
  /** nib's record: what pen documents (or what nib's README says it does instead). */
  readonly nib: RunRecord
  /** Why they differ, with the reference section. */
  readonly why: string
}

/**
 * A scenario where nib differs from pen, pen is right, and nib is not fixed yet: `expect` is pen's record, and nib's
 * own is asserted too, so that a fix shows (then drop `nibBug`: nib must give `expect`).
 */
export interface NibBug {
  /** nib's record today. */
  readonly nib: RunRecord
  /** What differs and why pen's is right, with the reference section. */
  readonly why: string
}

/** One side-by-side scenario. Exactly one of `expect` and `penBug`; `nibBug` only with `expect`. */
export interface Scenario {
  readonly name: string
  /** The reference sections this scenario checks. */
  readonly ref: string
  readonly servers: ReadonlyArray<ServerDef>
  /** `-e`: the emergency server, an identity backend. */
  readonly emergency?: ServerDef
  /** `-B`: the abuse server, an identity backend. */
  readonly abuse?: ServerDef
  /** Flags given to both balancers, before the listen address (`-f` and `-e` are added by the harness). */
  readonly args: ReadonlyArray<string>
  /** Flags given to pen only: `-P` where pen's epoll build misbehaves (reference 4.14: refused connects). */
  readonly penOnlyArgs?: ReadonlyArray<string>
  readonly steps: ReadonlyArray<Step>
  /** The record both must produce. */
  readonly expect?: RunRecord
  /** Or: a pen bug nib fixes (or another deliberate difference), with each one's record. */
  readonly penBug?: PenBug
  /** With `expect`: nib does not give it yet (a nib bug), and gives this instead. */
  readonly nibBug?: NibBug
}

// ---------------------------------------------------------------------------------------------------------------
// -H (reference 10): what the "http" server answers, and how an `http` step is recorded.

/**
 * What an "http" server named `name` answers to `request` (its head, or at least its request line): 200 with a body
 * naming the server and the request line; to a HEAD, the same head without the body.
 */
export const httpResponse = (name: string, request: string): string => {
  const line = request.split(/[\r\n]/, 1)[0]!
  const body = `${name}: ${line}\n`
  const head = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`
  return /^HEAD /i.test(line) ? head : head + body
}

/** `text` (one character per byte) as in a JSON string, without the quotes: CR and LF show as `\r` and `\n`. */
const escaped = (text: string): string => JSON.stringify(text).slice(1, -1)

/**
 * The record entry of an `http` step: the server that got the connection ("no server" if none did) and the bytes it
 * received, the bytes the client received, and how the connection ended from the client's side.
 */
export const httpEntry = (server: string, received: string, answered: string, ending: string): string =>
  `${server} received "${escaped(received)}" | client received "${escaped(answered)}" | ${ending}`

// ---------------------------------------------------------------------------------------------------------------
// pen's hash (reference 4.5), written from the reference, not from nib's code: on x86 the IPv4 address is read as a
// little-endian word (a | b<<8 | c<<16 | d<<24), and with -r the byte-swapped source port is xor-ed in.

/** pen's `-h` pick for client address `ip` (IPv4; with source port `port` under `-r`) over `servers` servers. */
export const penHash = (ip: string, servers: number, port?: number): number => {
  const [a, b, c, d] = ip.split(".").map(Number) as [number, number, number, number]
  const address = (a | (b << 8) | (c << 16) | (d << 24)) >>> 0
  const word = port === undefined ? address : (address ^ (((port & 0xff) << 8) | (port >> 8))) >>> 0
  return word % servers
}

const NAMES = "abcdefgh"

const identity = (name: string, limits?: string): ServerDef =>
  limits === undefined ? { name, kind: "identity" } : { name, kind: "identity", limits }
const down = (name: string): ServerDef => ({ name, kind: "down" })
const connect = (from: number, hold?: string): Step =>
  hold === undefined ? { do: "connect", from } : { do: "connect", from, hold }
const connects = (froms: ReadonlyArray<number>): Array<Step> => froms.map((from) => connect(from))
const wait = (ms: number): Step => ({ do: "wait", ms })
const httpServer = (name: string): ServerDef => ({ name, kind: "http" })

// -H requests (reference 10), each sent in one write.
const GET = "GET /index.html HTTP/1.1\r\nHost: example.test\r\nUser-Agent: compat\r\n\r\n"
const HEAD = "HEAD /index.html HTTP/1.1\r\nHost: example.test\r\n\r\n"
const POST = "POST /form HTTP/1.1\r\nHost: example.test\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n" +
  "hello world"
const PUT = "PUT /file HTTP/1.1\r\nHost: example.test\r\nContent-Length: 5\r\n\r\nhello"
/** Requests that bring their own X-Forwarded-For, their own X-Forwarded-Proto, bare LF line ends. */
const OWN_XFF = "GET / HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
const OWN_XFP = "GET / HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-Proto: https\r\n\r\n"
const BARE_LF = "GET / HTTP/1.1\nHost: example.test\n\n"
/** A GET for `path` on a keep-alive connection. */
const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: example.test\r\n\r\n`

/**
 * pen's rewrite of a request from 127.0.0.`from` (reference 10, written from the reference, not from nib's code): no
 * TLS, so `X-Forwarded-Proto: http`, then `X-Forwarded-For: <client>`, inserted before the first blank line.
 */
const forwarded = (request: string, from: number): string =>
  request.replace("\r\n\r\n", `\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 127.0.0.${from}\r\n\r\n`)

/**
 * The `http` entry of `requests` answered by the "http" server "a", which received `received`; the client got each
 * response, ended its side, and the balancer ended the client's connection after the server's (EOF).
 */
const servedByA = (requests: ReadonlyArray<string>, received: ReadonlyArray<string>): string =>
  httpEntry("a", received.join(""), requests.map((request) => httpResponse("a", request)).join(""), "eof")

/** An `http` step: `requests` from 127.0.0.`from`, ping-pong. */
const http = (from: number, ...requests: ReadonlyArray<string>): Step => ({ do: "http", from, requests })

/** The requests of the keep-alive scenarios: a GET, a POST with its body, a HEAD, a GET. */
const KEEP_ALIVE = [get("/a"), POST.replace("/form", "/b"), HEAD.replace("/index.html", "/c"), get("/d")]
/** The requests of the byte-count scenario, and the bytes pen counts for each direction (reference 5.6, 10). */
const COUNTED = [get("/one"), get("/two")]
const COUNTED_SX = COUNTED.reduce((n, request) => n + forwarded(request, 9).length, 0)
const COUNTED_RX = COUNTED.reduce((n, request) => n + httpResponse("a", request).length, 0)

/** Client addresses 127.0.0.2 ... 127.0.0.25 for the hash scenarios. */
const HASH_CLIENTS = Array.from({ length: 24 }, (_, i) => i + 2)
/** Client address and source port pairs for `-h -r`: 10 addresses, 2 ports each (below the ephemeral range). */
const HASH_PORTED = HASH_CLIENTS.slice(0, 10).flatMap((n, i) => [
  { from: n, port: 21000 + 7 * i },
  { from: n, port: 21000 + 7 * i + 1 }
])

export const scenarios: ReadonlyArray<Scenario> = [
  {
    name: "default mode: roundrobin cursor from server 1, sticky returning clients",
    ref: "4.2, 4.3",
    servers: [identity("a"), identity("b"), identity("c")],
    args: [],
    steps: [
      // Six new clients: the cursor starts at 0 and pre-increments, so the first one gets server 1.
      ...connects([2, 3, 4, 5, 6, 7]),
      // Returning clients, in another order, each get their own server; sticky hits do not move the cursor.
      ...connects([7, 2, 5, 3]),
      // The next new client continues the cursor where the last new one left it.
      connect(8)
    ],
    expect: ["b", "c", "a", "b", "c", "a", "a", "b", "b", "c", "b"]
  },
  {
    name: "-r: one client address alternates between the servers",
    ref: "4.4",
    servers: [identity("a"), identity("b")],
    args: ["-r"],
    steps: connects([2, 2, 2, 2, 3, 2]),
    expect: ["b", "a", "b", "a", "b", "a"]
  },
  {
    name: "-h: 24 client addresses over 3 servers by pen's hash, and they come back to the same server",
    ref: "4.5",
    servers: [identity("a"), identity("b"), identity("c")],
    args: ["-h"],
    steps: connects([...HASH_CLIENTS, 9, 2, 17]),
    expect: [...HASH_CLIENTS, 9, 2, 17].map((n) => NAMES[penHash(`127.0.0.${n}`, 3)]!)
  },
  {
    name: "-h -r: 20 client address and source port pairs over 3 servers, the port mixed into the hash",
    ref: "4.5",
    servers: [identity("a"), identity("b"), identity("c")],
    args: ["-h", "-r"],
    steps: HASH_PORTED.map(({ from, port }): Step => ({ do: "connect", from, port })),
    expect: HASH_PORTED.map(({ from, port }) => NAMES[penHash(`127.0.0.${from}`, 3, port)]!)
  },
  {
    name: "-W: weights 1 and 3 with connections held open",
    ref: "4.6",
    servers: [identity("a", ":0:0:1"), identity("b", ":0:0:3")],
    args: ["-W"],
    // Distinct client addresses, so that no connection is sent by the sticky table. Load = 256 * c / weight, ties to
    // the lowest index.
    steps: [2, 3, 4, 5, 6, 7, 8, 9].map((n) => connect(n, `w${n}`)),
    expect: ["a", "b", "b", "b", "a", "b", "b", "b"]
  },
  {
    name: "soft and hard limits (max 2 hard 4): the sticky client gets 4, the 5th fails over and is re-pinned",
    ref: "4.8",
    servers: [identity("a"), identity("b", ":2:4")],
    args: [],
    steps: [
      // The first new client is sent to server 1 (b) and pinned there: up to the hard limit.
      ...[1, 2, 3, 4, 5].map((i) => connect(2, `h${i}`)),
      // Pinned to a now, even while b has room again.
      connect(2, "h6"),
      { do: "releaseAll" },
      wait(300),
      connect(2),
      // A new client: the cursor (at 1) gives 0.
      connect(3)
    ],
    expect: ["b", "b", "b", "b", "a", "a", "a", "a"]
  },
  {
    name: "roundrobin does not skip a server at its soft limit: the failover scan gives the next one its turn",
    ref: "4.3, 4.8",
    servers: [identity("a"), identity("b", ":1"), identity("c")],
    args: [],
    steps: [
      connect(2, "one"), // b, now at its limit
      connect(3, "two"), // c
      connect(4, "three"), // a
      connect(5, "four"), // the cursor gives b, full for a new client: the scan from b gives c
      connect(5) // pinned to c
    ],
    expect: ["b", "c", "a", "c", "c"]
  },
  {
    name: "-h: a client whose hashed server is down fails over to the next index and stays there",
    ref: "4.5, 4.0",
    servers: [identity("a"), down("b"), identity("c")],
    args: ["-h", "-b", "2"],
    penOnlyArgs: ["-P"],
    steps: [
      // Over 3 servers 127.0.0.2 hashes to a, 127.0.0.3, .6 and .9 to b.
      ...connects([2, 3, 6]),
      { do: "start", server: "b" },
      wait(3_500),
      // b is back and its blacklist has lapsed: a new client hashed to it gets it; those that failed over stay on c.
      ...connects([3, 9, 6])
    ],
    expect: ["a", "c", "c", "c", "b", "c"]
  },
  {
    name: "-x 2: with two connections held, a third client waits and is served when one ends",
    ref: "4.16",
    servers: [identity("a")],
    args: ["-x", "2"],
    steps: [
      connect(2, "one"),
      connect(3, "two"),
      connect(4, "third"),
      { do: "release", conn: "one" },
      { do: "settle" }
    ],
    expect: ["a", "a", "waited:a"]
  },
  {
    name: "-c 2: three client addresses, the least recently used one is forgotten",
    ref: "4.2",
    servers: [identity("a"), identity("b"), identity("c")],
    args: ["-c", "2"],
    // pen's `last` has 1-second resolution and ties go to the lowest slot: connections that decide an eviction are
    // more than a second apart, so that "least recently used" means the same on both.
    steps: [
      connect(2), // b; table: 2
      connect(3), // c; table: 2, 3
      wait(1_200),
      connect(2), // sticky b; 2 is now the most recent
      wait(1_200),
      connect(4), // new: evicts 3 (least recently used, not the oldest entry); cursor gives a
      wait(1_200),
      connect(3), // forgotten, so new: evicts 2; cursor gives b
      wait(1_200),
      connect(2), // forgotten too: evicts 4; cursor gives c
      connect(3) // still remembered: b
    ],
    expect: ["b", "c", "b", "a", "b", "c", "b"]
  },
  {
    name: "failover: a refused server is blacklisted, its client stays on the next one, -b lets it back",
    ref: "4.0, 4.12, 4.14",
    servers: [identity("a"), down("b"), identity("c")],
    args: ["-b", "2"],
    penOnlyArgs: ["-P"],
    steps: [
      // The first new client is sent to server 1, which refuses: blacklisted, and the client goes on to server 2.
      connect(2),
      // b comes back at once but stays blacklisted for 2 s: the cursor (2, 0, then 1) skips it.
      { do: "start", server: "b" },
      ...connects([3, 4, 5]),
      // The client that failed over is pinned to c.
      connect(2),
      // After the blacklist time, new clients reach b again (the cursor is at 2: 0, then 1).
      wait(3_500),
      ...connects([6, 7]),
      // Failover pins for good: client 2 stays on c although b is back.
      ...connects([2, 7])
    ],
    expect: ["c", "c", "a", "c", "c", "a", "b", "c", "b"]
  },
  {
    name: "connect timeout: a server whose accept queue is full is given up after -t, the next one serves",
    ref: "4.13",
    servers: [identity("a"), { name: "b", kind: "unresponsive" }],
    args: ["-t", "1"],
    steps: [
      // The first new client is sent to b, whose connect hangs: after -t, b is blacklisted and a serves the client.
      connect(2),
      { do: "settle" },
      // b is blacklisted (the cursor's turn for it goes to a) and client 2 is pinned to a.
      ...connects([3, 4, 2])
    ],
    expect: ["timeout:a", "a", "a", "a"]
  },
  {
    name: "emergency server (-e) when every server is down; its clients are not pinned to it",
    ref: "4.10",
    servers: [identity("a"), down("b")],
    emergency: identity("e"),
    args: ["-b", "2"],
    penOnlyArgs: ["-P"],
    steps: [
      // b refuses (blacklisted); a is up, so the emergency server is not needed.
      connect(2),
      // a dies too: a new client (whose refusal blacklists a) and the sticky one both end on the emergency server.
      { do: "stop", server: "a" },
      ...connects([3, 2]),
      // a comes back; once the blacklists lapse, client 2 is chosen afresh (cursor: b refuses again, then a).
      { do: "start", server: "a" },
      wait(3_500),
      ...connects([2, 3])
    ],
    expect: ["a", "e", "e", "a", "a"]
  },
  {
    name: "abuse server (-B): a client that client_acl denies goes there; the others are served as usual",
    ref: "4.11, 12",
    servers: [identity("a"), identity("b")],
    abuse: identity("x"),
    args: ["-O", "acl 1 permit 127.0.0.2", "-O", "acl 1 permit 127.0.0.4", "-O", "client_acl 1"],
    // 3 is denied (no match: the opposite of the last entry), 2 and 4 are served and pinned; 3 again goes to abuse.
    steps: connects([2, 3, 4, 3, 2]),
    expect: ["b", "x", "a", "x", "b"]
  },
  {
    name: "stubborn (-s): a sticky client whose server is down is closed, not failed over",
    ref: "4.9",
    servers: [identity("a"), identity("b")],
    args: ["-s"],
    penOnlyArgs: ["-P"],
    steps: [
      connect(2),
      { do: "stop", server: "b" },
      // Pinned to b, which refuses (then is blacklisted): closed each time.
      ...connects([2, 2]),
      // New clients: the cursor gives 0, then skips the blacklisted 1 for 0 again.
      ...connects([3, 4])
    ],
    expect: ["b", "closed", "closed", "a", "a"]
  },
  {
    name: "every server down, no emergency server: the client is closed",
    ref: "4.15",
    servers: [down("a"), down("b")],
    args: [],
    penOnlyArgs: ["-P"],
    // First by failing over from one refusal to the other, then with both blacklisted (no server at all).
    steps: connects([2, 3, 2]),
    expect: ["closed", "closed", "closed"]
  },
  {
    name: "every server down: a client that already sent its request is reset",
    ref: "4.15",
    servers: [down("a"), down("b")],
    args: [],
    penOnlyArgs: ["-P"],
    // The balancer closes the client without reading it; bytes left unread make the kernel send a reset instead of
    // a FIN. Frozen balancer, so that the request is surely there before the balancer gives up.
    steps: [{ do: "pause" }, { do: "connect", from: 2, send: "hello\n" }, { do: "resume" }, { do: "settle" }],
    expect: ["reset"]
  },
  {
    name: "-W with no weight set: no server is ever chosen",
    ref: "4.6",
    servers: [identity("a"), identity("b")],
    emergency: identity("e"),
    args: ["-W"],
    // pen's weight selection finds no server with a weight: NO_SERVER, so each client goes to the emergency server.
    steps: connects([2, 3, 2]),
    expect: ["e", "e", "e"]
  },
  {
    name: "half-close with pen's poll build: the reply sent after the client's EOF arrives whole",
    ref: "5.2, 5.4",
    servers: [{ name: "a", kind: "late-reply" }],
    args: [],
    penOnlyArgs: ["-P"],
    steps: [{ do: "halfClose", from: 2, pause: true }, { do: "halfClose", from: 3 }],
    expect: ["a", "a"]
  },
  {
    name: "tcp_fastclose down: the client's half-close ends the whole connection; the reply after it is lost",
    ref: "5.2 (tcp_fastclose)",
    servers: [{ name: "a", kind: "late-reply" }],
    args: ["-O", "tcp_fastclose down"],
    // The server gets the request and an EOF (the balancer closed its side), so it replies into a closed connection.
    steps: [{ do: "halfClose", from: 2 }],
    expect: ["closed"]
  },
  {
    name: "tcp_fastclose both: the client's half-close ends the whole connection too",
    ref: "5.2 (tcp_fastclose)",
    servers: [{ name: "a", kind: "late-reply" }],
    args: ["-O", "tcp_fastclose both"],
    steps: [{ do: "halfClose", from: 2 }],
    expect: ["closed"]
  },
  {
    name: "tcp_fastclose up: the client's half-close is passed on; the server's reply and close end it, reply whole",
    ref: "5.2 (tcp_fastclose), 5.4",
    servers: [{ name: "a", kind: "late-reply" }],
    args: ["-O", "tcp_fastclose up"],
    // pen's epoll build loses a reply that comes with the server's FIN (5.4): its poll build does not.
    penOnlyArgs: ["-P"],
    steps: [{ do: "halfClose", from: 2 }, { do: "halfClose", from: 3 }],
    expect: ["a", "a"]
  },
  {
    name: "tcp_fastclose with a mode pen does not know is off: the half-close is honoured",
    ref: "5.2 (tcp_fastclose), 6.2",
    servers: [{ name: "a", kind: "late-reply" }],
    args: ["-O", "tcp_fastclose sideways"],
    penOnlyArgs: ["-P"],
    steps: [{ do: "halfClose", from: 2 }],
    expect: ["a"]
  },
  {
    name: "-H: a GET gets X-Forwarded-Proto: http (no TLS), then X-Forwarded-For, before its blank line",
    ref: "10",
    servers: [httpServer("a")],
    args: ["-H"],
    steps: [http(2, GET)],
    expect: [servedByA([GET], [forwarded(GET, 2)])]
  },
  {
    name: "-H: a HEAD gets the headers; its response (no body) reaches the client as the server sent it",
    ref: "10",
    servers: [httpServer("a")],
    args: ["-H"],
    steps: [http(3, HEAD)],
    expect: [servedByA([HEAD], [forwarded(HEAD, 3)])]
  },
  {
    name: "-H: a POST whose small body is in the same chunk: the headers before the blank line, the body untouched",
    ref: "10",
    servers: [httpServer("a")],
    args: ["-H"],
    steps: [http(4, POST)],
    expect: [servedByA([POST], [forwarded(POST, 4)])]
  },
  {
    name:
      "-H: keep-alive ping-pong, each request sent after the previous response is a chunk of its own: all rewritten",
    ref: "10",
    servers: [httpServer("a")],
    args: ["-H"],
    steps: [http(5, ...KEEP_ALIVE)],
    expect: [servedByA(KEEP_ALIVE, KEEP_ALIVE.map((request) => forwarded(request, 5)))]
  },
  {
    name: "-H: servers counts the bytes sent to the server after the rewrite",
    ref: "5.6, 10, 6.2",
    servers: [httpServer("a")],
    args: ["-H"],
    steps: [http(9, ...COUNTED), { do: "control", command: "servers" }],
    expect: [
      servedByA(COUNTED, COUNTED.map((request) => forwarded(request, 9))),
      `0 addr 127.0.0.1 port {a} conn 0 max 0 hard 0 weight 0 prio 0 sx ${COUNTED_SX} rx ${COUNTED_RX}\n`
    ]
  },
  // --- pen bugs nib fixes, and other deliberate differences ---------------------------------------------------
  {
    name: "pen bug: half-close, the reply and the server's FIN arrive together (epoll)",
    ref: "5.4",
    servers: [{ name: "a", kind: "late-reply" }],
    args: [],
    steps: [{ do: "halfClose", from: 2, pause: true }],
    penBug: {
      pen: ["closed"],
      nib: ["a"],
      why: "pen 0.34.1 on epoll closes a connection on EPOLLHUP without reading what is pending, so a reply that " +
        "arrives with the server's FIN after the client's half-close is lost (reference 5.4). The balancer is " +
        "frozen while the server replies to make that timing certain; unfrozen pen, it happens by chance (3 of 5)."
    }
  },
  {
    name: "pen bug: without -B, a client that client_acl denies reaches the emergency server",
    ref: "4.11, 16.9",
    servers: [identity("a"), identity("b")],
    emergency: identity("e"),
    args: ["-O", "acl 1 permit 127.0.0.2", "-O", "client_acl 1"],
    steps: connects([3, 2]),
    penBug: {
      pen: ["e", "b"],
      nib: ["closed", "b"],
      why: "pen's initial_server returns the abuse server for a denied client, and with no -B that is 'no server', " +
        "so the failover scan ends at the emergency server: a client the ACL denies is served after all. nib closes it."
    }
  },
  {
    name: "pen bug: -T 2, a client not seen for longer than the tracking time is chosen afresh",
    ref: "4.2",
    servers: [identity("a"), identity("b")],
    args: ["-T", "2"],
    steps: [connect(2), wait(1_000), connect(2), wait(3_500), connect(2)],
    penBug: {
      pen: ["b", "b", "b"],
      nib: ["b", "b", "a"],
      why: "pen documents -T as the time a client is tracked, but its table only lets an expired slot be reused by " +
        "another client: a client whose slot was not reused keeps its old server (reference 4.2). nib forgets it, " +
        "so the cursor chooses afresh (server 0, after server 1)."
    }
  },
  {
    name: "pen bug: a refused connect on pen's epoll build closes the client and is not blacklisted",
    ref: "4.14",
    servers: [identity("a"), down("b"), identity("c")],
    args: [],
    steps: [
      connect(2), // b refuses
      connect(2), // pen: still pinned to b
      ...connects([3, 4]), // cursor: 2, 0
      connect(5) // cursor: 1 (pen: not blacklisted, refused again; nib: blacklisted, skipped for 2)
    ],
    penBug: {
      pen: ["closed", "closed", "c", "a", "closed"],
      nib: ["c", "c", "c", "a", "c"],
      why: "pen 0.34.1 on epoll treats the refused upstream connect as a hang-up: it closes the client, neither " +
        "blacklists the server nor fails over, and the client stays pinned to the dead server (reference 4.14). " +
        "nib blacklists and fails over, as pen's HEAD and its poll build (-P) do."
    }
  },
  {
    name: "pen bug: -b 0 with every server refusing, pen retries forever",
    ref: "4.0, 4.12",
    servers: [down("a"), down("b")],
    args: ["-b", "0"],
    penOnlyArgs: ["-P"],
    steps: [connect(2), { do: "settle", ms: 2_000 }],
    penBug: {
      pen: ["silent"],
      nib: ["closed"],
      why: "With -b 0 nothing is ever blacklisted, and pen's failover scan restarts from each failed server: with " +
        "two or more servers all refusing it connects to them in turn forever, at 100% CPU (tens of thousands of " +
        "connects a second), and the client waits unanswered. nib tries each server once per connection, then the " +
        "emergency server, then closes the client, as pen does with one server or with -b > 0."
    }
  },
  {
    name: "deliberate difference: a server that resets its connection, the client is reset too",
    ref: "5.2",
    servers: [{ name: "a", kind: "resetter" }],
    args: [],
    steps: [{ do: "exchange", from: 2, send: "ping\n" }],
    penBug: {
      pen: ["a/eof"],
      nib: ["a/reset"],
      why: "pen closes both sides on an upstream error, so the client sees a clean end of stream (EOF) as if the " +
        "server had finished. nib passes the reset on, so the client can tell a failure from a complete reply " +
        "(README, How nib differs from pen)."
    }
  },
  {
    name: "deliberate difference: limits count connections from the moment the connect starts",
    ref: "4.8, 4.6",
    servers: [identity("a"), identity("b", ":1")],
    args: [],
    steps: [
      // Three new clients arrive while the balancer is frozen, so that it accepts them at once: the cursor gives b,
      // a, b. When the third one comes, b's connect for the first one is still in progress: pen counts no connection
      // on b yet and gives it the third as well; nib counts that connect, b (soft limit 1) is full, the scan gives a.
      { do: "pause" },
      connect(2),
      connect(3),
      connect(4),
      { do: "resume" },
      { do: "settle" }
    ],
    penBug: {
      pen: ["b", "a", "b"],
      nib: ["b", "a", "a"],
      why: "pen counts a server's connections only once they are established, so connects started in the same " +
        "instant all pass a soft limit (c = 0 for each). nib counts a connection from the moment its connect " +
        "starts, so the limit holds during a burst (README, How nib differs from pen)."
    }
  },
  {
    name: "deliberate difference: -H, a client's own X-Forwarded-For",
    ref: "10",
    servers: [httpServer("a")],
    args: ["-H"],
    steps: [http(10, OWN_XFF)],
    penBug: {
      pen: [
        servedByA([OWN_XFF], [
          "GET / HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n"
        ])
      ],
      nib: [
        servedByA([OWN_XFF], [
          "GET / HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.10\r\nX-Forwarded-Proto: http\r\n\r\n"
        ])
      ],
      why:
        "pen adds no X-Forwarded-For to a chunk that has one and passes the client's through untouched, so a client " +
        "can make a server that reads it believe any address (reference 10, step 3). nib appends the address it saw, " +
        "as HAProxy and nginx do (README, How nib differs from pen). X-Forwarded-Proto is added by both."
    }
  },
  {
    name: "deliberate difference: -H, pipelined requests in one chunk",
    ref: "10",
    servers: [httpServer("a")],
    args: ["-H"],
    steps: [{ do: "http", from: 11, requests: [get("/a"), HEAD, get("/c")], pipelined: true }],
    penBug: {
      pen: [servedByA([get("/a"), HEAD, get("/c")], [forwarded(get("/a"), 11), HEAD, get("/c")])],
      nib: [servedByA([get("/a"), HEAD, get("/c")], [get("/a"), HEAD, get("/c")].map((r) => forwarded(r, 11)))],
      why: "pen rewrites a chunk, not a request: only the head the chunk starts with gets the headers, the requests " +
        "after it in the same read reach the server without them (reference 10). nib rewrites every request head."
    }
  },
  {
    name: "deliberate difference: -H, a PUT",
    ref: "10",
    servers: [httpServer("a")],
    args: ["-H"],
    steps: [http(12, PUT)],
    penBug: {
      pen: [servedByA([PUT], [PUT])],
      nib: [servedByA([PUT], [forwarded(PUT, 12)])],
      why: "pen rewrites only a chunk that starts with GET, POST or HEAD: a PUT (DELETE, OPTIONS...) reaches the " +
        "server without the headers (reference 10, step 1). nib rewrites a request whatever its method."
    }
  },
  {
    name: "deliberate difference: -H, a client's own X-Forwarded-Proto",
    ref: "10",
    servers: [httpServer("a")],
    args: ["-H"],
    steps: [http(13, OWN_XFP)],
    penBug: {
      pen: [
        servedByA([OWN_XFP], [
          "GET / HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 127.0.0.13\r\n\r\n"
        ])
      ],
      nib: [
        servedByA([OWN_XFP], [
          "GET / HTTP/1.1\r\nHost: example.test\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 127.0.0.13\r\n\r\n"
        ])
      ],
      why: "pen adds no X-Forwarded-Proto to a chunk that has one, so the client's claim (https over plain http) " +
        "reaches the server (reference 10, step 4). nib drops it and puts its own: only nib knows how the client " +
        "came (README, X-Forwarded-For)."
    }
  },
  {
    name: "deliberate difference: -H, a head with bare LF line ends",
    ref: "10",
    servers: [httpServer("a")],
    args: ["-H"],
    steps: [http(14, BARE_LF)],
    penBug: {
      pen: [
        servedByA([BARE_LF], [
          "GET / HTTP/1.1\nHost: example.test\r\nX-Forwarded-Proto: http\r\nX-Forwarded-For: 127.0.0.14\n\n"
        ])
      ],
      nib: [httpEntry("a", "", "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", "eof")],
      why: "pen takes the first `\\n\\n` as the blank line when there is no CRLF one and inserts CRLF lines there, " +
        "so the head the server gets mixes both line ends (reference 10, step 2). nib answers 400 and closes, and the " +
        "server gets nothing: a proxy that frames requests differently from its server is how requests get smuggled " +
        "(README, X-Forwarded-For)."
    }
  }
]
