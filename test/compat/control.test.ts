/**
 * The control port side by side: pen 0.34.1 (the oracle) and nib start with the same argv, apart from their ports,
 *
 *   -f -u root -C 127.0.0.1:CP [-X] -b 17 -T 40 -c 300 -x 77 127.0.0.1:LP 127.0.0.1:B1 127.0.0.1:B2:10:20:3:1
 *
 * over the same two identity backends ("a" = server 0 on B1, "b" = server 1 on B2), get the same requests and the
 * same control commands, one per connection over a raw TCP socket, read to EOF. Each reply must be pen's bytes
 * (verified on the pen 0.34.1 binary, pen-reference.md 6.1-6.3), with the pair's own ports and pid filled in, or,
 * where the value legitimately differs, pen's shape. Each case runs on pen, then on nib: the same commands in the
 * same order, so both carry the same state from case to case. Without pen (set $PEN, or put pen on $PATH), pen's
 * side of each case is skipped, visibly, and nib's side still checks nib against pen's recorded replies.
 *
 * `-u root`: as root, pen (and nib, which copies the rule) refuses to open the control port without -u. pen 0.34.1
 * with `-u root` calls setgid(0) and setuid(0) (seen with strace): a no-op for a root process, so both run with the
 * same argv. When the tests do not run as root, -u is left out.
 *
 * A third pair runs with files, each balancer in its own temporary directory DIR (so paths differ only by DIR):
 *
 *   -f -u root -C 127.0.0.1:CP -T 40 -w DIR/web.html -F DIR/pen.cfg -l DIR/pen.log 127.0.0.1:LP <the same servers>
 *
 * where DIR/pen.cfg holds "blacklist 17" (so `write` shows the -F file was read). No -c or -x there, so the page
 * shows pen's default table sizes ("Max number of clients: 2048", "500 max"). Its cases compare the status page,
 * `connection`, `socket`, `close`, `write`'s file, `web_stats` and `log`. The page and the written files are
 * checked twice: against pen's bytes written into the case (with what legitimately differs replaced by tokens:
 * control-harness.ts normalizePage), and, on nib, against what pen's side of the same case produced, line by line.
 *
 * A fourth pair, with a 3-slot client table and a page (`-f -u root -C 127.0.0.1:CP -c 3 -w DIR/web.html`, the same
 * servers), checks the order of the listings when the table is full and evicts: `recent` and the page's client rows
 * by slot (a new client takes the slot of the client seen least recently), the page's connection rows by slot (a new
 * connection takes the first free slot after the last one taken).
 *
 * Every difference found between pen 0.34.1 and nib (replies as JSON strings, pen's first):
 *
 * FOUND AND FIXED (nib bugs this suite found; each case stays, with pen's bytes as the expectation):
 * - `web_stats FILE` and `log FILE` answered nothing; pen sets the file, then answers the one now in force, as
 *   their getters do (`web_stats DIR/other.html` pen "DIR/other.html\n"). Case "web_stats FILE and log FILE answer
 *   the new path, as pen's do; ...".
 * - `write FILE`'s second comment line named the -F file nib was started with; pen names the file it writes after
 *   -F, so the comment is the command line that starts pen from this file (`write DIR/named.cfg` pen "# pen -f -u
 *   'root' -F 'DIR/named.cfg' -C 127.0.0.1:CP 127.0.0.1:LP"). Case "write FILE names FILE after -F in its comment
 *   line, as pen's does".
 * - `debug N` and `tarpit_acl N` answered the previous value (`debug 1` pen "1\n", nib "0\n"; `tarpit_acl 5` pen
 *   "tarpit_acl = 5", nib "tarpit_acl = -1"), though the value was set. Case "debug and tarpit_acl setters answer
 *   the new value; ...".
 * - `write` always wrote "tcp_fastclose off" and "no tcp_nodelay"; pen writes the settings in force
 *   ("tcp_fastclose both", "tcp_nodelay"). Case "tcp_fastclose and tcp_nodelay: write saves them as pen's does;
 *   ...".
 * - `servers`, `recent` and the status page showed an open connection's bytes only once it closed (pen counts them
 *   while relaying); nib now counts every chunk as it moves (a server whose only connection is open: pen and nib
 *   "1 addr 127.0.0.1 port B2 conn 1 max 10 hard 20 weight 3 prio 1 sx 23 rx 25", nib "... sx 0 rx 0" before).
 *   Cases "a server whose only connection is still open shows its bytes both ways, as pen's does", "a connection
 *   held open: conn 1 on its server, its bytes counted while it is open, as pen's are", "status with -w: pen's
 *   page after the same traffic, a connection open; the -w file holds what it streamed".
 * - `recent` and the status page listed clients in nib's LRU order (least recently seen first: 127.0.0.3, then
 *   127.0.0.2, after .2 connected last), numbered by that order; pen lists and numbers them by slot (the slot each
 *   took when first seen: 127.0.0.2, then .3). The page's connection rows were numbered by a free list (the slot
 *   freed last taken first); pen takes the first free slot after the last one it took. Now both are pen's: cases
 *   "the same requests through both: ...", "a connection held open: ...", the status pages, and the -c 3 pair.
 *
 * ALLOWED (asserted as each one's own reply, so the suite shows the difference):
 * - Bad numbers are refused with a message and change nothing (README "Bad control arguments are refused"); pen
 *   runs atoi's value: `blacklist abc` pen "0\n" (blacklist time becomes 0), nib "blacklist: the value 'abc' is not
 *   a whole number\n"; `timeout 0` pen "0\n" (and its event loop spins), nib "timeout: at least 1 second\n";
 *   `tracking abc` pen "0\n", nib "tracking: the value 'abc' is not a whole number\n"; `recent abc` pen `recent 0`
 *   (the clients seen since pen's clock last ticked: "" or some lines), nib "recent: the number of seconds 'abc' is
 *   not a whole number\n"; `blacklist -5` (not sent) pen "-5\n", nib "blacklist: the value '-5' must not be
 *   negative\n".
 * - `client_acl -1` / `control_acl -2`: identical, "0\n" (any value outside 0..9 sets list 0, on both).
 * - `clients_max 0` / `conn_max 0`: pen ignores a shrink and answers the size in force ("400\n", "77\n"), nib
 *   "clients_max: the table needs at least 1 slot\n" / "conn_max: at least 1 connection\n" (the size is kept too).
 * - `tarpit_acl 5` / `tarpit_acl 12`: pen "tarpit_acl = 5" / "tarpit_acl = 0" (a tarpit for DSR), nib "tarpit_acl:
 *   the tarpit of direct server return answers ARP and SYNs with raw packets, which Node cannot send\n" (README:
 *   DSR is refused); `tarpit_acl` then answers pen's value on pen, "tarpit_acl = -1" (none) on nib.
 * - `idlers 2` is not sent: pen 0.34.1 segfaults on it (reference 6.2); nib's idle server connections are tested on
 *   nib alone (test/e2e/idlers.test.ts). (`idle_timeout 5`, sent among them, is identical: nib closes idle
 *   connections too; test/compat/idle.test.ts compares that they close.)
 * - A command without a line end, from a client that then waits (no EOF): pen answers whatever its one recv() got
 *   ("servers" alone gets the listing at once); nib waits for a line end or the client's EOF (10 s at most, then
 *   closes with nothing; README "A silent control client freezes nothing"). penctl and nibctl always send "\n".
 *   Tested with a half-close, where both answer.
 * - `write`'s file: the first line is "# Generated by pen 2026-11-21 17:35:45" on pen, "# Generated by nib
 *   2026-11-21 17:35:46" on nib, and the second starts "# pen -f" / "# nib -f": each names itself (its time its
 *   own). Compared by shape (the time must be now); every command line after them is identical, byte for byte.
 * - The status page (7.1) with a connection open, line by line, differs only where the value is each balancer's
 *   own, compared as tokens: the time of "Time YYYY-MM-DD HH:MM:SS" (it must be now); the client rows' "age(secs)"
 *   (0-2: pen "1", nib "0" seen); the connection row's downfd and upfd (pen 9 and 10, nib 24 and 25); "N last" in
 *   "Number of connections: 500 max, 1 used, N last" (pen the slot it took last, nib its highest slot in use). All
 *   else is identical: the tags, header cells and column order, the rows and their order, the server rows'
 *   address/status/port/connections/limits/weight/prio/sent/received (the open connection's bytes included: "92"
 *   and "100" on server 1, on both), the client rows' slot/address/last server/connects/sent/received (the open
 *   connection's client too: "25" and "23", on both), the connection row's slot and client slot, "Max number of
 *   clients: 2048". Once the connection is closed (by `close N`), the whole page is identical but for the time,
 *   ages and "N last". The -w file holds exactly what `status` streamed, on both.
 * - `connection N` and `socket N`: the held connection's downfd and upfd are each side's own (its slot is found by
 *   scanning `connection 0..9`); state (2), server (1) and pend (0) are identical, and `socket DOWNFD` / `socket
 *   UPFD` answer "Socket FD belongs to connection N\n" with each side's numbers.
 * - `connection N` after `close N`: pen leaves the closed slot's client and server in place ("Connection 0:\nstate
 *   = 0\ndownfd = -1, upfd = -1\nclient = 2, server = 1\npend = 0\n"), nib clears the slot ("client = 0, server =
 *   0"), as for a slot never used (identical on both: `connection 9`).
 * - `close 7`, a free slot: pen "Forcibly closing connection 7\n" (and its count of connections goes to -1, then
 *   "connections_used = -1. Resetting." on its stderr), nib "Connection 7 is not in use\n" (README "close N closes
 *   only a live connection"). `close N` of the held connection: "Forcibly closing connection N\n" on both, and the
 *   client sees an EOF on both.
 * - `status` after `no web_stats`: pen "Unable to create webstats\n", nib the page (README "status works without
 *   -w").
 *
 * Not tested here: `-C PORT` without a host (nib binds 127.0.0.1, pen 0.0.0.0: README; a test should not open a
 * root control port to the network); `include`; what `log FILE` writes (pen buffers its log until HUP or exit);
 * `listen ADDRESS`; `acl` beyond what `write` saves of it; `idlers N` with N > 0; the page and `write` with -c/-x
 * (checked by hand: both print "Max number of clients: 300" and "77 max", and both put "-c 300 -u 'root' -x 77"
 * in `write`'s comment); and the commands nib refuses as not available on Node.
 */
import { assert, describe, it, layer, type Vitest } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Backend from "../utils/Backend.ts"
import * as Nib from "../utils/Nib.ts"
import * as Pen from "../utils/Pen.ts"
import * as Poll from "../utils/Poll.ts"
import * as Harness from "./control-harness.ts"
import { exact, type Expect, matches } from "./control-harness.ts"

const found = Pen.find()
const pen = found.path
if (found.path === undefined) {
  console.warn(
    `compat/control: pen not found (${found.why}): pen's side of every control-port case is SKIPPED, only nib's ` +
      "side runs (against pen's recorded replies). Install pen (apt-get install pen) or set $PEN to compare with it."
  )
}

/** As root, both need -u to open the control port; `-u root` keeps root (pen: setuid(0)). */
const AS_ROOT: ReadonlyArray<string> = process.getuid?.() === 0 ? ["-u", "root"] : []

/** The flags both balancers get, before the listen address; `-f` is added when they start. */
const flags = (exitEnabled: boolean) => (control: number): ReadonlyArray<string> => [
  ...AS_ROOT,
  "-C",
  `127.0.0.1:${control}`,
  ...(exitEnabled ? ["-X"] : []),
  "-b",
  "17",
  "-T",
  "40",
  "-c",
  "300",
  "-x",
  "77"
]

// --- the pair ----------------------------------------------------------------------------------------------------

/** pen (when installed) and nib with the same argv, over the same two identity backends. */
class Pair extends Context.Service<Pair, {
  readonly pen: Harness.Instance | undefined
  readonly nib: Harness.Instance
  readonly b1: number
  readonly b2: number
  /** Each balancer's own temporary directory (for its -w, -F, -l and `write` files). */
  readonly dirs: Readonly<Record<Harness.Which, string>>
}>()("test/compat/control/Pair") {}

/**
 * The pair, each started with `flagsOf(its own directory)` before the listen address; `prepare` fills a directory
 * before its balancer starts.
 */
const pairLayer = (
  flagsOf: (dir: string) => (control: number) => ReadonlyArray<string>,
  prepare: (dir: string) => void = () => {}
) =>
  Layer.effect(
    Pair,
    Effect.gen(function*() {
      const a = yield* Backend.identity("a")
      const b = yield* Backend.identity("b")
      const servers = [a.spec(), b.spec(":10:20:3:1")]
      const penDir = yield* Nib.tempDir
      const nibDir = yield* Nib.tempDir
      prepare(penDir)
      prepare(nibDir)
      const penSide = pen === undefined
        ? undefined
        : yield* Harness.scoped("pen", pen, flagsOf(penDir), servers)
      const nibSide = yield* Harness.scoped("nib", undefined, flagsOf(nibDir), servers)
      return Pair.of({ pen: penSide, nib: nibSide, b1: a.port, b2: b.port, dirs: { pen: penDir, nib: nibDir } })
    })
  )

// --- cases -------------------------------------------------------------------------------------------------------

/** One thing a case does, on one balancer. */
type Step =
  /**
   * Sends `send` as one control connection; the reply must be `expect` (on nib: `nib`, where it differs on
   * purpose). With `until`, the command is repeated (at most 5 s) until it is: for counters that settle after a
   * connection closes. With `halfClose`, the client shuts down its write side after the bytes.
   */
  | {
    readonly send: string
    readonly expect: Expect
    readonly nib?: Expect
    readonly until?: boolean
    readonly halfClose?: boolean
  }
  /** Whole requests from 127.0.0.`from`, each answered by backend `by`, one after the other. */
  | { readonly requests: ReadonlyArray<{ readonly from: number; readonly by: string }> }
  /** A request from 127.0.0.`from`, answered by `by`, whose connection stays open until `release`. */
  | { readonly hold: number; readonly by: string }
  /** Ends the held connections (client first) and waits for the balancer's end. */
  | { readonly release: true }
  /** Ends the held connection from 127.0.0.`releaseFrom` (client first) and waits for the balancer's end. */
  | { readonly releaseFrom: number }
  /** The balancer exits by itself (after `exit`), with code 0, within 10 s. */
  | { readonly exits: true }
  /** A check written as code: `what` it checks, and the problems it found (none: it passed). */
  | { readonly what: string; readonly check: Check }

/** One balancer of the pair, as a {@link Check} sees it. */
interface Side {
  readonly which: Harness.Which
  readonly instance: Harness.Instance
  /** Its own directory (`{DIR}`). */
  readonly dir: string
  /**
   * The values the expectations fill in: `{CP}`, `{LP}`, `{B1}`, `{B2}`, `{PID}`, `{DIR}`; a check may add its own
   * (`{N}`: a connection slot found on this side), for the steps after it.
   */
  readonly values: Record<string, string | number>
  /** The connections a `hold` step opened in this case, oldest first. */
  readonly held: ReadonlyArray<Harness.Exchanged>
}

type Check = (side: Side) => Promise<ReadonlyArray<string>>

interface Case {
  readonly name: string
  /** pen-reference.md sections. */
  readonly ref: string
  readonly steps: ReadonlyArray<Step>
  /** Whether nib answers some step differently on purpose, in a check (a `send` step says so with `nib`). */
  readonly differs?: true
}

const ip = (n: number) => `127.0.0.${n}`
/** Bytes a client from 127.0.0.`n` sends per request, and receives back (the backend's name line, then the echo). */
const up = (n: number) => Harness.requestText(ip(n)).length
const down = (n: number) => "a\n".length + up(n)

const MODE_DEFAULT = "no hash no roundrobin no stubborn no weight no prio\n"

/** nib's refusal of `tarpit_acl N` (N other than -1): DSR's tarpit needs raw packets. */
const TARPIT_REFUSED = matches(/^tarpit_acl: .*raw packets, which Node cannot send\n$/)

interface Counters {
  readonly conn: number
  readonly sx: number
  readonly rx: number
}

/** `servers` for the two configured servers. */
const servers = (s0: Counters, s1: Counters, limits1 = "max 10 hard 20"): string =>
  `0 addr 127.0.0.1 port {B1} conn ${s0.conn} max 0 hard 0 weight 0 prio 0 sx ${s0.sx} rx ${s0.rx}\n` +
  `1 addr 127.0.0.1 port {B2} conn ${s1.conn} ${limits1} weight 3 prio 1 sx ${s1.sx} rx ${s1.rx}\n`

/** pen's line for an empty slot that `server N ...` created (its missing ")" included). */
const emptySlot = (n: number, weight = 0) =>
  `${n} addr (unknown address family 0 port 0 conn 0 max 0 hard 0 weight ${weight} prio 0 sx 0 rx 0\n`

const q = (send: string, expect: string | Expect, more: { readonly nib?: Expect; readonly until?: boolean } = {}) => ({
  send,
  expect: typeof expect === "string" ? exact(expect) : expect,
  ...more
})

const IDLE = { conn: 0, sx: 0, rx: 0 }
/** Server 0 ("a") after the traffic case: 127.0.0.3's two requests. */
const A_AFTER = { conn: 0, sx: 2 * up(3), rx: 2 * down(3) }
/** Server 1 ("b") after the traffic case: 127.0.0.2's three requests. */
const B_AFTER = { conn: 0, sx: 3 * up(2), rx: 3 * down(2) }
/** Server 1 after 127.0.0.4's request too. */
const B_AFTER_HELD = { conn: 0, sx: B_AFTER.sx + up(4), rx: B_AFTER.rx + down(4) }
/** Server 1 while 127.0.0.4's connection is open, its request and reply delivered: the same bytes, conn 1. */
const B_HOLDING = { ...B_AFTER_HELD, conn: 1 }
const recentLine = (n: number, connects: number, sx: number, rx: number) =>
  `${ip(n)} connects ${connects} sx ${sx} rx ${rx}\n`

/** The pair with -X. Cases run in this order, each on pen and then on nib. */
const withExit: ReadonlyArray<Case> = [
  {
    name: "getters after start-up answer as pen's",
    ref: "6.2, 6.3",
    steps: [
      q("servers\n", servers(IDLE, IDLE)),
      q("mode\n", MODE_DEFAULT),
      q("blacklist\n", "17\n"),
      q("timeout\n", "3\n"),
      q("tracking\n", "40\n"),
      q("control\n", "127.0.0.1:{CP}\n"),
      q("listen\n", "127.0.0.1:{LP}\n"),
      // Each its own pid.
      q("pid\n", "{PID}\n"),
      q("clients_max\n", "300\n"),
      q("conn_max\n", "77\n"),
      q("debug\n", "0\n"),
      q("client_acl\n", "0\n"),
      q("control_acl\n", "0\n"),
      q("idlers\n", "Idlers: 0/0\n"),
      q("idle_timeout\n", "Idle timeout: 0 seconds\n"),
      q("tarpit_acl\n", "tarpit_acl = -1"),
      q("recent\n", "")
    ]
  },
  {
    name: "unknown commands, comments, empty lines and pen's tokenizer",
    ref: "6.1, 6.3",
    steps: [
      q("clients\n", "do_cmd: ignoring command starting with 'clients'\n"),
      q("SERVERS\n", "do_cmd: ignoring command starting with 'SERVERS'\n"),
      q("# comment\n", ""),
      q("#servers\n", ""),
      q("\n", ""),
      q("no foo\n", ""),
      q("no\n", ""),
      // Only spaces separate words: a tab is part of the first word.
      q("mode\tx\n", "do_cmd: ignoring command starting with 'mode\tx'\n"),
      q("  mode  \n", MODE_DEFAULT),
      q("mode extra words\n", MODE_DEFAULT),
      // One command per connection: the second line is ignored.
      q("servers\npid\n", servers(IDLE, IDLE)),
      q("servers\r\n", servers(IDLE, IDLE)),
      { send: "mode", expect: exact(MODE_DEFAULT), halfClose: true }
    ]
  },
  {
    name: "the same requests through both: servers and recent count them alike once they have closed",
    ref: "4.3, 5.6, 6.2",
    steps: [
      // Default mode: a new client takes the roundrobin cursor, which starts at server 1; then it sticks.
      { requests: [2, 3, 2, 3, 2].map((from) => ({ from, by: from === 2 ? "b" : "a" })) },
      q("servers\n", servers(A_AFTER, B_AFTER), { until: true }),
      // In table order: each client's slot, taken when it was first seen (127.0.0.2 first).
      q("recent\n", recentLine(2, 3, B_AFTER.rx, B_AFTER.sx) + recentLine(3, 2, A_AFTER.rx, A_AFTER.sx), {
        until: true
      })
    ]
  },
  {
    name: "a connection held open: conn 1 on its server, its bytes counted while it is open, as pen's are",
    ref: "3, 5.6, 6.2",
    steps: [
      // A third new client: the cursor moves on to server 1. Its request and the reply have both been delivered
      // (Harness.exchange waits for the echo), so both balancers have counted every byte of it.
      { hold: 4, by: "b" },
      q("servers\n", servers(A_AFTER, B_HOLDING), { until: true }),
      q(
        "recent\n",
        recentLine(2, 3, B_AFTER.rx, B_AFTER.sx) + recentLine(3, 2, A_AFTER.rx, A_AFTER.sx) +
          recentLine(4, 1, down(4), up(4)),
        { until: true }
      ),
      { release: true },
      q("servers\n", servers(A_AFTER, B_AFTER_HELD), { until: true }),
      q(
        "recent\n",
        recentLine(2, 3, B_AFTER.rx, B_AFTER.sx) + recentLine(3, 2, A_AFTER.rx, A_AFTER.sx) +
          recentLine(4, 1, down(4), up(4)),
        { until: true }
      )
    ]
  },
  {
    name: "selection flags show in mode",
    ref: "6.2 (mode, roundrobin, hash, weight, prio, stubborn)",
    steps: [
      q("roundrobin\n", ""),
      q("mode\n", "no hash roundrobin no stubborn no weight no prio\n"),
      q("hash\n", ""),
      q("mode\n", "hash roundrobin no stubborn no weight no prio\n"),
      q("no roundrobin\n", ""),
      q("mode\n", "hash no roundrobin no stubborn no weight no prio\n"),
      q("no hash\n", ""),
      q("weight\n", ""),
      q("mode\n", "no hash no roundrobin no stubborn weight no prio\n"),
      q("prio\n", ""),
      q("mode\n", "no hash no roundrobin no stubborn weight prio\n"),
      q("no weight\n", ""),
      q("no prio\n", ""),
      q("stubborn\n", ""),
      q("mode\n", "no hash no roundrobin stubborn no weight no prio\n"),
      q("no stubborn\n", ""),
      q("mode\n", MODE_DEFAULT)
    ]
  },
  {
    name: "setters answer the value now in force",
    ref: "6.2",
    steps: [
      q("blacklist 12\n", "12\n"),
      q("blacklist\n", "12\n"),
      q("tracking 5\n", "5\n"),
      q("tracking\n", "5\n"),
      q("timeout 4\n", "4\n"),
      q("timeout\n", "4\n"),
      q("timeout 3\n", "3\n"),
      q("client_acl 3\n", "3\n"),
      q("client_acl\n", "3\n"),
      // Out of 0..9: 0.
      q("client_acl 12\n", "0\n"),
      q("client_acl\n", "0\n"),
      q("control_acl 11\n", "0\n"),
      q("control_acl\n", "0\n"),
      q("clients_max 400\n", "400\n"),
      q("clients_max\n", "400\n"),
      // Below 0: 0.
      q("idle_timeout -3\n", "Idle timeout: 0 seconds\n"),
      q("idle_timeout 0\n", "Idle timeout: 0 seconds\n"),
      q("idlers 0\n", "Idlers: 0/0\n")
    ]
  },
  {
    name: "debug and tarpit_acl setters answer the new value; nib refuses a tarpit (differs on purpose)",
    ref: "6.2 (debug, tarpit_acl)",
    steps: [
      q("debug 1\n", "1\n"),
      q("debug\n", "1\n"),
      q("debug 0\n", "0\n"),
      q("debug\n", "0\n"),
      // The tarpit is part of DSR, which nib refuses: it takes -1 (none) alone, and its query answers -1.
      q("tarpit_acl 5\n", "tarpit_acl = 5", { nib: TARPIT_REFUSED }),
      q("tarpit_acl\n", "tarpit_acl = 5", { nib: exact("tarpit_acl = -1") }),
      // Outside -1..9: 0.
      q("tarpit_acl 12\n", "tarpit_acl = 0", { nib: TARPIT_REFUSED }),
      q("tarpit_acl\n", "tarpit_acl = 0", { nib: exact("tarpit_acl = -1") }),
      q("tarpit_acl -1\n", "tarpit_acl = -1")
    ]
  },
  {
    name: "bad values: pen runs atoi's value, nib refuses them and keeps the setting (differs on purpose)",
    ref: "6.2; README: Bad control arguments are refused",
    steps: [
      q("blacklist abc\n", "0\n", { nib: matches(/^blacklist: the value 'abc' is not a whole number\n$/) }),
      q("blacklist\n", "0\n", { nib: exact("12\n") }),
      q("blacklist 12\n", "12\n"),
      q("timeout 0\n", "0\n", { nib: matches(/^timeout: at least 1 second\n$/) }),
      q("timeout 3\n", "3\n"),
      q("tracking abc\n", "0\n", { nib: matches(/^tracking: the value 'abc' is not a whole number\n$/) }),
      q("tracking 5\n", "5\n"),
      // pen: `recent 0`, the clients seen since its clock last ticked (so some, or none).
      q("recent abc\n", matches(/^(127\.0\.0\.\d+ connects \d+ sx \d+ rx \d+\n)*$/), {
        nib: matches(/^recent: the number of seconds 'abc' is not a whole number\n$/)
      }),
      q("client_acl -1\n", "0\n"),
      q("client_acl\n", "0\n"),
      q("control_acl -2\n", "0\n"),
      q("control_acl\n", "0\n"),
      q("clients_max 0\n", "400\n", { nib: matches(/^clients_max: .+\n$/) }),
      q("clients_max\n", "400\n"),
      q("conn_max 0\n", "77\n", { nib: matches(/^conn_max: .+\n$/) }),
      q("conn_max\n", "77\n"),
      q("idle_timeout 5\n", "Idle timeout: 5 seconds\n"),
      q("idle_timeout\n", "Idle timeout: 5 seconds\n"),
      q("idle_timeout 0\n", "Idle timeout: 0 seconds\n")
    ]
  },
  {
    name: "server N: new slots print as pen's empty ones, limits change in place",
    ref: "6.2 (server, servers), 4.17",
    steps: [
      q("server 4 weight 2\n", ""),
      q("servers\n", servers(A_AFTER, B_AFTER_HELD) + emptySlot(2) + emptySlot(3) + emptySlot(4, 2)),
      q("server 1 max 5 hard 9\n", ""),
      q(
        "servers\n",
        servers(A_AFTER, B_AFTER_HELD, "max 5 hard 9") + emptySlot(2) + emptySlot(3) + emptySlot(4, 2)
      )
    ]
  },
  {
    name: "exit with -X: an empty reply, then the balancer exits with code 0",
    ref: "6.2 (exit)",
    steps: [q("exit\n", ""), { exits: true }]
  }
]

/** The pair without -X: no traffic before its cases. */
const withoutExit: ReadonlyArray<Case> = [
  {
    name: "a server whose only connection is still open shows its bytes both ways, as pen's does",
    ref: "3, 5.6, 6.2 (servers, recent)",
    steps: [
      q("servers\n", servers(IDLE, IDLE)),
      // The first client: the roundrobin cursor starts at server 1. The request went up and the reply came down.
      { hold: 5, by: "b" },
      // Not "sx 0 rx 0", as nib showed before it counted live: pen counts each chunk as it relays it.
      q("servers\n", servers(IDLE, { conn: 1, sx: up(5), rx: down(5) }), { until: true }),
      q("recent\n", recentLine(5, 1, down(5), up(5)), { until: true }),
      { release: true },
      // Closing adds nothing: the bytes were all counted already.
      q("servers\n", servers(IDLE, { conn: 0, sx: up(5), rx: down(5) }), { until: true }),
      q("recent\n", recentLine(5, 1, down(5), up(5)))
    ]
  },
  {
    name: "exit without -X is refused and the balancer goes on",
    ref: "6.2 (exit), 6.3",
    steps: [
      q("exit\n", "Exit is not enabled; restart with -X flag\n"),
      q("pid\n", "{PID}\n"),
      q("mode\n", MODE_DEFAULT)
    ]
  }
]

// --- the pair with files -----------------------------------------------------------------------------------------

/** The -F file each balancer starts with: only the blacklist time, which the argv leaves out, so `write` shows it. */
const prepareFiles = (dir: string) => Fs.writeFileSync(Path.join(dir, "pen.cfg"), "blacklist 17\n")

/**
 * The flags of the pair with files: the -w page, the -F config and the -l log, each in the balancer's own
 * directory. No -c or -x: the page shows the default table sizes (2048 clients, 500 connections). No -X.
 */
const filesFlags = (dir: string) => (control: number): ReadonlyArray<string> => [
  ...AS_ROOT,
  "-C",
  `127.0.0.1:${control}`,
  "-T",
  "40",
  "-w",
  Path.join(dir, "web.html"),
  "-F",
  Path.join(dir, "pen.cfg"),
  "-l",
  Path.join(dir, "pen.log")
]

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** One control command to this side, its `{NAME}`s filled in. */
const command = (side: Side, text: string) => Harness.send(side.instance.control, Harness.fill(text, side.values))

const readFile = (path: string): string | undefined => {
  try {
    return Fs.readFileSync(path, "latin1")
  } catch {
    return undefined
  }
}

/** What pen's side of a check saw, normalized, for nib's side of the same check to be compared with, line by line. */
const penSaw = new Map<string, ReadonlyArray<string>>()

/** On pen: records `lines` under `key`. On nib: how they differ from pen's (nothing when pen's side did not run). */
const alongside = (side: Side, key: string, lines: ReadonlyArray<string>): Array<string> => {
  if (side.which === "pen") {
    penSaw.set(key, lines)
    return []
  }
  const pens = penSaw.get(key)
  return pens === undefined ? [] : Harness.diffLines(`${key}: nib's, against pen's`, lines, pens)
}

type Cells = ReadonlyArray<string | number>
interface PageCounters {
  readonly conn: number
  readonly sx: number
  readonly rx: number
}

/** The page's rows for server 0 ("a") and server 1 ("b": weight 3, prio 1, and its limits). */
const serverRows = (side: Side, s0: PageCounters, s1: PageCounters, limits1 = [10, 20]): Array<Cells> => [
  [0, "127.0.0.1", 0, side.values["B1"]!, s0.conn, 0, 0, s0.sx, s0.rx, 0, 0],
  [1, "127.0.0.1", 0, side.values["B2"]!, s1.conn, limits1[0]!, limits1[1]!, s1.sx, s1.rx, 3, 1]
]
/** A client row (`slot`, 127.0.0.`n`): sent is what went to the client, received what came from it. */
const clientRow = (slot: number, n: number, last: number, connects: number, sent: number, received: number) => [
  slot,
  ip(n),
  "<age>",
  last,
  connects,
  sent,
  received
]
/** Server 1 after 127.0.0.4's three held connections (one per case, each closed). */
const B_AFTER_3 = { conn: 0, sx: B_AFTER.sx + 3 * up(4), rx: B_AFTER.rx + 3 * down(4) }

/** The page once the connections of the first three cases have ended (server 1's limits as given). */
const pageAfterClose = (limits1?: Array<number>) => (side: Side): Harness.PageTemplate => ({
  current: 1,
  servers: serverRows(side, A_AFTER, B_AFTER_3, limits1),
  clientsMax: 2048,
  clients: [
    clientRow(0, 2, 1, 3, B_AFTER.rx, B_AFTER.sx),
    clientRow(1, 3, 0, 2, A_AFTER.rx, A_AFTER.sx),
    clientRow(2, 4, 1, 3, 3 * down(4), 3 * up(4))
  ],
  connectionsMax: 500,
  connections: []
})

/**
 * `status`: the page, normalized (Harness.normalizePage), must be `template`'s (asked again every 100 ms, at most
 * 5 s, while it is not: counters that settle after a connection closes); the -w `file` must hold exactly the bytes
 * streamed; on nib, the normalized page must be pen's, line by line. Ages up to `maxAge` seconds.
 */
const statusPage = (
  key: string,
  template: (side: Side) => Harness.PageTemplate,
  options: { readonly file?: string; readonly maxAge?: number } = {}
): Step => ({
  what: `status (${key})`,
  check: async (side) => {
    const want = Harness.pageLines(template(side))
    const deadline = Date.now() + 5_000
    let reply = await command(side, "status\n")
    let page = Harness.normalizePage(reply.text, options.maxAge)
    while (Harness.diffLines("", page.lines, want).length > 0 && Date.now() < deadline) {
      await sleep(100)
      reply = await command(side, "status\n")
      page = Harness.normalizePage(reply.text, options.maxAge)
    }
    const problems = [...page.problems, ...Harness.diffLines("the page", page.lines, want)]
    if (reply.ending !== "eof") problems.push(`the reply ended with ${reply.ending}, not an EOF`)
    const path = Harness.fill(options.file ?? "{DIR}/web.html", side.values)
    const written = readFile(path)
    if (written === undefined) problems.push(`${path} was not written`)
    else problems.push(...Harness.diffLines(`${path}, against the reply`, written.split("\n"), reply.text.split("\n")))
    problems.push(...alongside(side, key, page.lines))
    return problems
  }
})

const CONNECTION =
  /^Connection (-?\d+):\nstate = (-?\d+)\ndownfd = (-?\d+), upfd = (-?\d+)\nclient = (-?\d+), server = (-?\d+)\npend = (-?\d+)\n$/

/** `connection N` of a slot that has never held a connection (pen-reference 6.3). */
const unusedSlot = (n: number | string) =>
  `Connection ${n}:\nstate = 0\ndownfd = -1, upfd = -1\nclient = 0, server = 0\npend = 0\n`

/**
 * `connection 0..9`: exactly one slot in use (the held connection); its slot, fds and client become `{N}`,
 * `{DOWN}`, `{UP}` and `{CLIENT}` for the steps after. The others must be free slots in pen's shape.
 */
const findHeld: Step = {
  what: "connection 0..9, to find the held connection",
  check: async (side) => {
    const problems: Array<string> = []
    const inUse: Array<RegExpExecArray> = []
    for (let n = 0; n < 10; n++) {
      const reply = await command(side, `connection ${n}\n`)
      const m = CONNECTION.exec(reply.text)
      if (m === null || m[1] !== String(n)) problems.push(`connection ${n}: ${JSON.stringify(reply.text)}`)
      else if (m[2] !== "0" || m[3] !== "-1" || m[4] !== "-1") inUse.push(m)
      else if (m[7] !== "0") problems.push(`connection ${n} is free but pend = ${m[7]}`)
    }
    if (inUse.length !== 1) {
      problems.push(`${inUse.length} slots in use (${inUse.map((m) => m[1]).join(", ")}), expected the held one alone`)
    } else {
      const m = inUse[0]!
      Object.assign(side.values, { N: m[1]!, DOWN: m[3]!, UP: m[4]!, CLIENT: m[5]! })
    }
    return problems
  }
}

/** The status page's client slot `{CLIENT}` is 127.0.0.`n` (each side numbers its client table its own way). */
const clientSlotIs = (n: number): Step => ({
  what: `connection {N}'s client slot is ${ip(n)}'s on the status page`,
  check: async (side) => {
    const slot = String(side.values["CLIENT"])
    const address = Harness.clientSlots((await command(side, "status\n")).text).get(slot)
    return address === ip(n) ? [] : [`client slot ${slot} is ${address ?? "not on the page"}`]
  }
})

/** The last held connection ends (EOF) within 5 s. */
const heldEnds: Step = {
  what: "the held client",
  check: async (side) => {
    const held = side.held.at(-1)
    if (held === undefined) return ["no connection is held"]
    const ending = await held.conn.ended(5_000)
    return ending === "eof" ? [] : [`its connection ended with ${ending}, expected an EOF`]
  }
}

/** What `write` saves: the modes and files in force. */
interface Saved {
  readonly weight: boolean
  readonly prio: boolean
  /** Whether the -l log and the -w page are still set (until `no log` / `no web_stats`). */
  readonly files?: boolean
  /** Whether line 2's `-F '...'` must name the file written (pen's write_cfg), or may name any file. */
  readonly namesFile?: boolean
  /** `tcp_fastclose`'s mode (default off) and whether `tcp_nodelay` is on (default not). */
  readonly fastclose?: string
  readonly nodelay?: boolean
}

/** `write`'s command lines after the comment lines, the state of the write cases (pen-reference 6.4). */
const configLines = (o: Saved): Array<string> => {
  const more = (weight: number, prio: number) => (o.weight ? ` weight ${weight}` : "") + (o.prio ? ` prio ${prio}` : "")
  const files = o.files ?? true
  return [
    ...Array.from({ length: 10 }, (_, n) => [
      `no acl ${n}`,
      ...(n === 3 ? ["acl 3 deny 10.1.2.0 255.255.255.0", "acl 3 permit 127.0.0.1 255.255.255.255"] : [])
    ]).flat(),
    "no ascii",
    "blacklist 17",
    "client_acl 0",
    "control_acl 0",
    "debug 0",
    "no hash",
    "no http",
    files ? "log {DIR}/pen.log" : "no log",
    "roundrobin",
    `server 0 acl 0 address 127.0.0.1 port {B1} max 0 hard 0${more(0, 0)}`,
    `server 1 acl 0 address 127.0.0.1 port {B2} max 5 hard 9${more(3, 1)}`,
    "no stubborn",
    `tcp_fastclose ${o.fastclose ?? "off"}`,
    o.nodelay === true ? "tcp_nodelay" : "no tcp_nodelay",
    "timeout 3",
    "tracking 40",
    files ? "web_stats {DIR}/web.html" : "no web_stats",
    o.weight ? "weight" : "no weight",
    o.prio ? "prio" : "no prio",
    ""
  ]
}

/**
 * The file `write` wrote: line 1 `# Generated by pen|nib DATE` (each its own name; DATE now), line 2
 * `# pen|nib -f [-u 'root'] -F 'FILE' -C 127.0.0.1:{CP} 127.0.0.1:{LP}` (FILE the file written, with `namesFile`),
 * then exactly {@link configLines}. On nib, the file must be pen's line by line, with the names, the time, the
 * ports and the directories normalized (and FILE, without `namesFile`).
 */
const written = (key: string, file: string, o: Saved): Step => ({
  what: `the file of ${key}`,
  check: async (side) => {
    const path = Harness.fill(file, side.values)
    const text = readFile(path)
    if (text === undefined) return [`${path} was not written`]
    const lines = text.split("\n")
    const problems: Array<string> = []
    const first = lines[0] ?? ""
    const generated = `# Generated by ${side.which} `
    if (!first.startsWith(generated)) {
      problems.push(`line 1: ${JSON.stringify(first)}, expected "${generated}YYYY-MM-DD HH:MM:SS"`)
    } else problems.push(...Harness.checkLocalTime(first.slice(generated.length), "line 1"))
    const second = lines[1] ?? ""
    const head = `# ${side.which} -f${AS_ROOT.length > 0 ? " -u 'root'" : ""} -F '`
    const tail = `' -C 127.0.0.1:${side.instance.control} 127.0.0.1:${side.instance.listen}`
    const named = second.startsWith(head) && second.endsWith(tail)
      ? second.slice(head.length, second.length - tail.length)
      : undefined
    if (named === undefined) problems.push(`line 2: ${JSON.stringify(second)}, expected "${head}FILE${tail}"`)
    else if (o.namesFile === true && named !== path) {
      problems.push(`line 2: ${JSON.stringify(second)} names -F '${named}', expected the file written, '${path}'`)
    }
    const want = configLines(o).map((line) => Harness.fill(line, side.values))
    problems.push(...Harness.diffLines(path, lines, [first, second, ...want]))
    const normal = [
      "# Generated by <name> <time>",
      `# <name> ${second.slice(`# ${side.which} `.length)}`
        .replace(tail, "' -C 127.0.0.1:{CP} 127.0.0.1:{LP}")
        .replace(/ -F '.*' -C /, o.namesFile === true ? "$&" : " -F <file> -C "),
      ...lines.slice(2)
    ].map((line) => line.replaceAll(side.dir, "{DIR}"))
    problems.push(...alongside(side, key, normal))
    return problems
  }
})

/** The pair with -w, -F and -l files. Cases run in this order, each on pen and then on nib. */
const withFiles: ReadonlyArray<Case> = [
  {
    name: "status with -w: pen's page after the same traffic, a connection open; the -w file holds what it streamed",
    ref: "7.1, 6.2 (status)",
    steps: [
      {
        what: "the -w file before the first status",
        check: (side) =>
          Promise.resolve(
            Fs.existsSync(Path.join(side.dir, "web.html")) ? ["already written (pen: only on status or USR1)"] : []
          )
      },
      { requests: [2, 3, 2, 3, 2].map((from) => ({ from, by: from === 2 ? "b" : "a" })) },
      { hold: 4, by: "b" },
      q("servers\n", servers(A_AFTER, B_HOLDING), { until: true }),
      findHeld,
      statusPage("the page with 127.0.0.4's connection open", (side) => ({
        current: 1,
        servers: serverRows(side, A_AFTER, B_HOLDING),
        clientsMax: 2048,
        clients: [
          clientRow(0, 2, 1, 3, B_AFTER.rx, B_AFTER.sx),
          clientRow(1, 3, 0, 2, A_AFTER.rx, A_AFTER.sx),
          clientRow(2, 4, 1, 1, down(4), up(4))
        ],
        connectionsMax: 500,
        // The connection's slot (found by `connection 0..9`), its client's slot (127.0.0.4's: 2), its server.
        connections: [[side.values["N"]!, "<fd>", "<fd>", 0, 0, 2, 1]]
      })),
      { release: true }
    ]
  },
  {
    name: "connection N and socket N: the held connection, a free slot, out of range",
    ref: "6.2 (connection, socket), 6.3",
    steps: [
      { hold: 4, by: "b" },
      findHeld,
      q(
        "connection {N}\n",
        "Connection {N}:\nstate = 2\ndownfd = {DOWN}, upfd = {UP}\nclient = {CLIENT}, server = 1\npend = 0\n"
      ),
      clientSlotIs(4),
      q("connection 9\n", unusedSlot(9)),
      q("connection 500\n", "Connection 500 out of range\n"),
      q("connection 600\n", "Connection 600 out of range\n"),
      q("connection -1\n", "Connection -1 out of range\n"),
      q("socket {DOWN}\n", "Socket {DOWN} belongs to connection {N}\n"),
      q("socket {UP}\n", "Socket {UP} belongs to connection {N}\n"),
      q("socket 99\n", "Socket 99 belongs to connection -1\n"),
      q("socket -1\n", "Socket -1 belongs to connection -1\n"),
      { release: true }
    ]
  },
  {
    name:
      "close N: the held connection ends, then the page is pen's to the byte; close of a free slot differs on purpose",
    ref: "6.2 (close, connection), 7.1; README: close N closes only a live connection",
    steps: [
      { hold: 4, by: "b" },
      findHeld,
      q("close {N}\n", "Forcibly closing connection {N}\n"),
      heldEnds,
      // pen leaves the closed slot's client and server in place; nib clears the slot.
      q(
        "connection {N}\n",
        "Connection {N}:\nstate = 0\ndownfd = -1, upfd = -1\nclient = {CLIENT}, server = 1\npend = 0\n",
        {
          nib: exact(unusedSlot("{N}"))
        }
      ),
      q("servers\n", servers(A_AFTER, B_AFTER_3), { until: true }),
      statusPage("the page after close", pageAfterClose(), { maxAge: 60 }),
      q("close 600\n", "Connection 600 out of range\n"),
      q("close 500\n", "Connection 500 out of range\n"),
      q("close -1\n", "Connection -1 out of range\n"),
      // pen "closes" a free slot too (and its count of connections goes to -1, reset to 0: pen-reference 6.2).
      q("close 7\n", "Forcibly closing connection 7\n", { nib: exact("Connection 7 is not in use\n") }),
      q("servers\n", servers(A_AFTER, B_AFTER_3)),
      { release: true }
    ]
  },
  {
    name: "write FILE and write: pen's command lines, weight and prio appended when on; the comment lines by shape",
    ref: "6.4, 6.2 (write)",
    differs: true,
    steps: [
      q("acl 3 deny 10.1.2.0 255.255.255.0\n", ""),
      q("acl 3 permit 127.0.0.1\n", ""),
      q("roundrobin\n", ""),
      q("server 1 max 5 hard 9\n", ""),
      q("weight\n", ""),
      q("write {DIR}/w.cfg\n", ""),
      written("write w.cfg with weight", "{DIR}/w.cfg", { weight: true, prio: false }),
      q("prio\n", ""),
      q("write {DIR}/w.cfg\n", ""),
      written("write w.cfg with weight and prio", "{DIR}/w.cfg", { weight: true, prio: true }),
      q("no weight\n", ""),
      q("write {DIR}/w.cfg\n", ""),
      written("write w.cfg with prio", "{DIR}/w.cfg", { weight: false, prio: true }),
      q("no prio\n", ""),
      // Without a file: the -F file.
      q("write\n", ""),
      written("write", "{DIR}/pen.cfg", { weight: false, prio: false, namesFile: true })
    ]
  },
  {
    name: "write FILE names FILE after -F in its comment line, as pen's does",
    ref: "6.4 (pen.c write_cfg: \" -F '%s' -C %s %s\", the file it writes)",
    steps: [
      q("write {DIR}/named.cfg\n", ""),
      written("write named.cfg", "{DIR}/named.cfg", { weight: false, prio: false, namesFile: true })
    ]
  },
  {
    name: "tcp_fastclose and tcp_nodelay: write saves them as pen's does; an unknown mode is off, no mode is refused",
    ref: "6.2 (tcp_fastclose, tcp_nodelay), 6.4",
    steps: [
      q("tcp_fastclose both\n", ""),
      q("tcp_nodelay\n", ""),
      q("write {DIR}/s.cfg\n", ""),
      written("write s.cfg: both, nodelay", "{DIR}/s.cfg", {
        weight: false,
        prio: false,
        fastclose: "both",
        nodelay: true
      }),
      q("tcp_fastclose up\n", ""),
      // No mode: pen's message, and the mode stays.
      q("tcp_fastclose\n", "do_cmd: ignoring tcp_fastclose without argument\n"),
      q("write {DIR}/s.cfg\n", ""),
      written("write s.cfg: up, nodelay", "{DIR}/s.cfg", {
        weight: false,
        prio: false,
        fastclose: "up",
        nodelay: true
      }),
      q("tcp_fastclose down\n", ""),
      q("no tcp_nodelay\n", ""),
      q("write {DIR}/s.cfg\n", ""),
      written("write s.cfg: down", "{DIR}/s.cfg", { weight: false, prio: false, fastclose: "down" }),
      // A mode pen does not know is off.
      q("tcp_fastclose sideways\n", ""),
      q("write {DIR}/s.cfg\n", ""),
      written("write s.cfg: off again", "{DIR}/s.cfg", { weight: false, prio: false })
    ]
  },
  {
    name: "web_stats and log answer the paths given on the command line",
    ref: "6.2 (web_stats, log), 6.3",
    steps: [q("web_stats\n", "{DIR}/web.html\n"), q("log\n", "{DIR}/pen.log\n")]
  },
  {
    name: "web_stats FILE and log FILE answer the new path, as pen's do; status writes the new page",
    ref: "6.2 (web_stats, log: `%s\\n` after the change), 7.1",
    steps: [
      q("web_stats {DIR}/other.html\n", "{DIR}/other.html\n"),
      q("web_stats\n", "{DIR}/other.html\n"),
      statusPage("the page in the new -w file", pageAfterClose([5, 9]), { file: "{DIR}/other.html", maxAge: 60 }),
      q("log {DIR}/other.log\n", "{DIR}/other.log\n"),
      q("log\n", "{DIR}/other.log\n")
    ]
  },
  {
    name:
      "no web_stats and no log: both answer nothing, write saves them off; status without a page differs on purpose",
    ref: "6.2 (web_stats, log, status, write), 6.4; README: status works without -w",
    steps: [
      q("no web_stats\n", ""),
      q("web_stats\n", ""),
      q("no log\n", ""),
      q("log\n", ""),
      q("status\n", "Unable to create webstats\n", { nib: matches(/^<html>\n[\s\S]*\n<\/html>\n$/) }),
      q("write {DIR}/w2.cfg\n", ""),
      written("write w2.cfg after no log and no web_stats", "{DIR}/w2.cfg", {
        weight: false,
        prio: false,
        files: false
      })
    ]
  }
]

// --- the pair with a small client table ---------------------------------------------------------------------------

/** The flags of the pair with a 3-slot client table (`-c 3`) and a -w page in the balancer's own directory. */
const smallTableFlags = (dir: string) => (control: number): ReadonlyArray<string> => [
  ...AS_ROOT,
  "-C",
  `127.0.0.1:${control}`,
  "-c",
  "3",
  "-w",
  Path.join(dir, "web.html")
]

/**
 * Waits for the wall clock's next second, and 150 ms more. pen keeps a client's last visit to the second and, when
 * its table is full, evicts the client seen least recently, ties going to the lowest slot; nib's table is a true LRU
 * at millisecond resolution (README "The sticky table is O(1)"). Visits a second apart evict the same client on both.
 */
const nextSecond: Step = {
  what: "the next second",
  check: async () => {
    await sleep(1150 - (Date.now() % 1000))
    return []
  }
}

/** A server's counters after whole requests from 127.0.0.`froms` (and `conn` connections still open). */
const served = (froms: ReadonlyArray<number>, conn = 0): PageCounters => ({
  conn,
  sx: froms.reduce((sum, n) => sum + up(n), 0),
  rx: froms.reduce((sum, n) => sum + down(n), 0)
})

/** `recent`'s line for 127.0.0.`n` after `connects` whole requests since it took its slot. */
const recentOf = (n: number, connects: number) => recentLine(n, connects, connects * down(n), connects * up(n))

/** A client row for 127.0.0.`n` in `slot` after `connects` whole requests, the last one to server `last`. */
const clientOf = (slot: number, n: number, last: number, connects: number) =>
  clientRow(slot, n, last, connects, connects * down(n), connects * up(n))

/**
 * The pair with `-c 3`. Default mode: each new client takes the roundrobin cursor (server 1 first), a known client
 * its server. The requests of the first case: 127.0.0.2 (b), .3 (a), .4 (b) fill the 3 slots; a second later .2
 * again (b); a second later .5, a new client: .3 and .4 were seen least recently (the same second), so pen's lowest
 * slot, .3's (slot 1, seen first too), goes to .5 (a); then .6 takes .4's (b), and .3, new again, takes .2's (a).
 */
const withSmallTable: ReadonlyArray<Case> = [
  {
    name:
      "a full 3-slot table: a new client takes the slot of the client seen least recently; recent and the page list clients by slot, as pen's do",
    ref: "4.2, 6.2 (recent), 7.1",
    steps: [
      { requests: [{ from: 2, by: "b" }, { from: 3, by: "a" }, { from: 4, by: "b" }] },
      q("recent\n", recentOf(2, 1) + recentOf(3, 1) + recentOf(4, 1), { until: true }),
      nextSecond,
      { requests: [{ from: 2, by: "b" }] },
      nextSecond,
      { requests: [{ from: 5, by: "a" }] },
      // .5 in .3's slot, between .2 and .4 (nib's table order before: .4, .2, .5, least recently seen first).
      q("recent\n", recentOf(2, 2) + recentOf(5, 1) + recentOf(4, 1), { until: true }),
      { requests: [{ from: 6, by: "b" }, { from: 3, by: "a" }] },
      q("recent\n", recentOf(3, 1) + recentOf(5, 1) + recentOf(6, 1), { until: true }),
      statusPage("the page after the table evicted three clients", (side) => ({
        current: 0,
        servers: serverRows(side, served([3, 5, 3]), served([2, 4, 2, 6])),
        clientsMax: 3,
        clients: [clientOf(0, 3, 0, 1), clientOf(1, 5, 0, 1), clientOf(2, 6, 1, 1)],
        connectionsMax: 500,
        connections: []
      }))
    ]
  },
  {
    name:
      "connections are listed by slot, and a new one takes the first free slot after the last one taken, as pen's do",
    ref: "3 (connection table), 7.1; pen's conn.c store_conn",
    steps: [
      // The first held connection: its slot N is each side's own (where the last connection was).
      { hold: 3, by: "a" },
      findHeld,
      { hold: 5, by: "a" },
      { hold: 6, by: "b" },
      // N is free again, but the next connection takes N + 3: the scan starts at the last slot taken, N + 2.
      { releaseFrom: 3 },
      { hold: 3, by: "a" },
      q("recent\n", recentOf(3, 3) + recentOf(5, 2) + recentOf(6, 2), { until: true }),
      statusPage("the page with three connections open", (side) => {
        const n = Number(side.values["N"])
        return {
          current: 0,
          servers: serverRows(side, served([3, 5, 3, 3, 5, 3], 2), served([2, 4, 2, 6, 6], 1)),
          clientsMax: 3,
          clients: [clientOf(0, 3, 0, 3), clientOf(1, 5, 0, 2), clientOf(2, 6, 1, 2)],
          connectionsMax: 500,
          // Each connection's slot, its client's slot and its server (nib before: .3's in N, listed first).
          connections: [
            [n + 1, "<fd>", "<fd>", 0, 0, 1, 0],
            [n + 2, "<fd>", "<fd>", 0, 0, 2, 1],
            [n + 3, "<fd>", "<fd>", 0, 0, 0, 0]
          ]
        }
      }),
      { release: true }
    ]
  }
]

// --- running a case ----------------------------------------------------------------------------------------------

/**
 * Runs `c`'s steps on one balancer, all of them even after a mismatch (so the balancer's state stays in step with
 * the other's), then fails with every mismatch.
 */
const runCase = (c: Case, which: Harness.Which) =>
  Effect.gen(function*() {
    const pair = yield* Pair
    const instance = which === "pen" ? pair.pen : pair.nib
    if (instance === undefined) return yield* Effect.die(new Error("pen is not running"))
    const dir = pair.dirs[which]
    const values: Record<string, string | number> = {
      CP: instance.control,
      LP: instance.listen,
      B1: pair.b1,
      B2: pair.b2,
      PID: instance.proc.pid,
      DIR: dir
    }
    const problems: Array<string> = []
    const held: Array<Harness.Exchanged & { readonly from: number }> = []
    yield* Effect.addFinalizer(() => Effect.sync(() => held.forEach((h) => h.conn.close())))

    for (const step of c.steps) {
      if ("send" in step) {
        const expect = which === "nib" && step.nib !== undefined ? step.nib : step.expect
        const send = Harness.fill(step.send, values)
        const reply = yield* Effect.promise(() =>
          step.until
            ? Harness.eventually(instance.control, send, expect, values)
            : Harness.send(instance.control, send, step.halfClose ? { halfClose: true } : {})
        )
        if (reply.ending !== "eof") {
          problems.push(`${JSON.stringify(send)}: the reply did not end with an EOF (${reply.ending})`)
        }
        if (!Harness.satisfies(expect, reply.text, values)) {
          problems.push(
            `${JSON.stringify(send)}: got ${JSON.stringify(reply.text)}, expected ${Harness.describe(expect, values)}`
          )
        }
      } else if ("requests" in step) {
        for (const { by, from } of step.requests) {
          const name = yield* Effect.promise(() => Harness.request(instance.listen, ip(from)))
          if (name !== by) problems.push(`request from ${ip(from)}: answered by ${name}, expected ${by}`)
          // With --workers, a connection that ended on one thread frees its number (pen's connection table) a moment
          // after its client saw the end, and the next, on another thread, could take the next number meanwhile:
          // wait until nib counts only the connections held, as one thread would have before the next accept.
          if (which === "nib" && Nib.WORKERS.length > 0) {
            yield* Effect.promise(() => settled(instance.control, held.length))
          }
        }
      } else if ("hold" in step) {
        if (which === "nib" && Nib.WORKERS.length > 0) {
          yield* Effect.promise(() => settled(instance.control, held.length))
        }
        const exchanged = yield* Effect.promise(() => Harness.exchange(instance.listen, ip(step.hold)))
        held.push({ ...exchanged, from: step.hold })
        if (exchanged.name !== step.by) {
          problems.push(`held request from ${ip(step.hold)}: answered by ${exchanged.name}, expected ${step.by}`)
        }
      } else if ("release" in step) {
        for (const h of held.splice(0)) yield* Effect.promise(h.finish)
      } else if ("releaseFrom" in step) {
        const i = held.findIndex((h) => h.from === step.releaseFrom)
        if (i < 0) problems.push(`no connection from ${ip(step.releaseFrom)} is held`)
        else yield* Effect.promise(held.splice(i, 1)[0]!.finish)
      } else if ("check" in step) {
        const checked = yield* Effect.promise(() => step.check({ which, instance, dir, values, held }))
        problems.push(...checked.map((problem) => `${step.what}: ${problem}`))
      } else {
        const gone = yield* Effect.promise(() =>
          Poll.until(() => instance.proc.child.exitCode !== null || instance.proc.child.signalCode !== null, 10_000)
        )
        if (!gone) problems.push("still running 10 s after exit")
        else {
          const status = yield* Effect.promise(() => instance.proc.exited)
          if (status.code !== 0) problems.push(`exited with code ${status.code}, signal ${status.signal}`)
        }
      }
    }
    const stderr = instance.proc.stderr().split("\n").slice(-15).join("\n")
    assert.deepStrictEqual(problems, [], `${instance.command}\n--- stderr (last lines):\n${stderr}`)
  })

const penTitle = pen === undefined ? `pen: SKIPPED, pen not found (${found.why})` : "pen"

const register = (paired: Vitest.MethodsNonLive<Pair>, cases: ReadonlyArray<Case>) => {
  for (const c of cases) {
    const differs = c.differs === true || c.steps.some((step) => "nib" in step && step.nib !== undefined)
    const label = differs ? " (differs on purpose)" : ""
    describe(`${c.name} [ref ${c.ref}]`, () => {
      paired.effect.skipIf(pen === undefined)(`${penTitle}${label}`, () => runCase(c, "pen"), 30_000)
      paired.effect(`nib${label}`, () => runCase(c, "nib"), 30_000)
    })
  }
}

describe("the control-port cases", () => {
  it("are well-formed: unique names, requests from 127.0.0.2-250", () => {
    const all = [...withExit, ...withoutExit, ...withFiles, ...withSmallTable]
    assert.strictEqual(new Set(all.map((c) => c.name)).size, all.length)
    for (const c of all) {
      for (const step of c.steps) {
        const froms = "requests" in step
          ? step.requests.map((r) => r.from)
          : "hold" in step
          ? [step.hold]
          : "releaseFrom" in step
          ? [step.releaseFrom]
          : []
        for (const from of froms) assert.isTrue(from >= 2 && from <= 250, `${c.name}: from ${from}`)
      }
    }
  })
})

layer(pairLayer(() => flags(true)), { excludeTestServices: true, timeout: "30 seconds" })(
  "pen and nib with -X, the same argv",
  (paired) => register(paired, withExit)
)

layer(pairLayer(() => flags(false)), { excludeTestServices: true, timeout: "30 seconds" })(
  "pen and nib without -X, the same argv",
  (paired) => register(paired, withoutExit)
)

layer(pairLayer(filesFlags, prepareFiles), { excludeTestServices: true, timeout: "30 seconds" })(
  "pen and nib with -w, -F and -l files, the same argv",
  (paired) => register(paired, withFiles)
)

layer(pairLayer(smallTableFlags), { excludeTestServices: true, timeout: "30 seconds" })(
  "pen and nib with -c 3 and -w, the same argv",
  (paired) => register(paired, withSmallTable)
)

/** Waits (at most 2 s) until the balancer's `servers` counts `live` connections in all. */
const settled = async (control: Parameters<typeof Harness.send>[0], live: number): Promise<void> => {
  const deadline = Date.now() + 2_000
  while (Date.now() < deadline) {
    const reply = await Harness.send(control, "servers\n")
    const total = [...reply.text.matchAll(/ conn (\d+) /g)].reduce((sum, m) => sum + Number(m[1]), 0)
    if (total === live) return
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
