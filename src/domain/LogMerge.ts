/**
 * Putting the real client back into web-server logs, as pen's companions do: the rules of `penlogd` (a ring of the
 * balancer's records matched against web-server lines as they arrive, `niblogd` here) and of `mergelogs` (an offline
 * merge of the balancer's `-l` file with the web servers' log files, `nibmergelogs` here).
 *
 * Pure: text in, text out. Lines are JavaScript strings holding one byte per character (latin1), so every byte of a
 * log survives the trip. The record formats the balancer writes are in `AccessLog.ts`; this module reads them back.
 *
 * Where pen's tools lose data, this module keeps it, as their man pages promise (each rule says so where it
 * applies): every ring slot is searched, a request longer than what the balancer keeps still matches on the part kept,
 * a web line is never dropped or glued to the next one, and web-server times are read in UTC, always.
 */
import { FILE_CHUNK_MAX } from "./AccessLog.ts"

// ---------------------------------------------------------------------------------------------------------------
// C scanning, as pen's sscanf formats read
// ---------------------------------------------------------------------------------------------------------------

/** C's isspace in the "C" locale. */
const isSpace = (c: string | undefined): boolean =>
  c === " " || c === "\t" || c === "\n" || c === "\v" || c === "\f" || c === "\r"

/** C's atoi: leading white space, an optional sign, then digits; anything else ends it (no digits: 0). */
export const atoi = (text: string): number => {
  let i = 0
  while (isSpace(text[i])) i++
  let sign = 1
  if (text[i] === "+" || text[i] === "-") sign = text[i++] === "-" ? -1 : 1
  let n = 0
  while (i < text.length && text[i]! >= "0" && text[i]! <= "9") n = n * 10 + (text.charCodeAt(i++) - 48)
  return sign * n
}

/** A cursor over a line that reads as sscanf's directives do. */
class Scanner {
  i = 0
  constructor(readonly text: string) {}
  /** A white-space directive: skips any amount of white space, none included. */
  skipSpace(): void {
    while (isSpace(this.text[this.i])) this.i++
  }
  /** `%N[^stops]`: at least one and at most `max` characters none of which is in `stops`; undefined if none. */
  span(stops: string, max = Infinity): string | undefined {
    const start = this.i
    while (this.i < this.text.length && this.i - start < max && !stops.includes(this.text[this.i]!)) this.i++
    return this.i > start ? this.text.slice(start, this.i) : undefined
  }
  /** `%s`: skips white space, then at least one character that is not white space. */
  word(): string | undefined {
    this.skipSpace()
    const start = this.i
    while (this.i < this.text.length && !isSpace(this.text[this.i])) this.i++
    return this.i > start ? this.text.slice(start, this.i) : undefined
  }
  /** `%ld`: skips white space, an optional sign, at least one decimal digit. */
  long(): number | undefined {
    this.skipSpace()
    const start = this.i
    if (this.text[this.i] === "+" || this.text[this.i] === "-") this.i++
    const digits = this.i
    while (this.text[this.i] !== undefined && this.text[this.i]! >= "0" && this.text[this.i]! <= "9") this.i++
    if (this.i === digits) return undefined
    return Number(this.text.slice(start, this.i))
  }
  /** A literal character of the format. */
  literal(c: string): boolean {
    if (this.text[this.i] !== c) return false
    this.i++
    return true
  }
}

// ---------------------------------------------------------------------------------------------------------------
// penlogd: the balancer's datagrams, the ring, web lines rewritten as they arrive
// ---------------------------------------------------------------------------------------------------------------

/** penlogd keeps at most this many characters of a record's client, server and request (`%99[^ ]`). */
export const RECORD_FIELD_MAX = 99

/** penlogd's default ring size (`-n`). @category constants */
export const DEFAULT_RING_SIZE = 1000

/** A balancer record as penlogd keeps it: who the client was, which server it went to, its request line. */
export interface DatagramRecord {
  readonly client: string
  readonly server: string
  readonly request: string
}

/** Whether a datagram is a balancer record (penlogd's test: its first byte is `+`) rather than a web-server line. */
export const isRecordDatagram = (text: string): boolean => text.startsWith("+")

/**
 * Reads a balancer datagram, `+ <client> <server> <request>\n` (AccessLog.datagram), as penlogd does
 * (`"+ %99[^ ] %99[^ ] %99[^\n]"`): each field is cut at 99 characters; a record without a request is bogus.
 *
 * @category parsing
 */
export const parseRecord = (text: string): DatagramRecord | undefined => {
  const scan = new Scanner(text)
  if (!scan.literal("+")) return undefined
  scan.skipSpace()
  const client = scan.span(" ", RECORD_FIELD_MAX)
  if (client === undefined) return undefined
  scan.skipSpace()
  const server = scan.span(" ", RECORD_FIELD_MAX)
  if (server === undefined) return undefined
  scan.skipSpace()
  const request = scan.span("\n", RECORD_FIELD_MAX)
  if (request === undefined) return undefined
  return { client, server, request }
}

/**
 * An IPv4 address in any form inet_aton(3) takes (`127.1`, `0x7f.0.0.1`, `2130706433`; parts decimal, octal with a
 * leading 0, or hex; text after white space ignored), as a dotted quad; undefined if it is not one.
 *
 * @category parsing
 */
export const inetAton = (text: string): string | undefined => {
  let end = 0
  while (end < text.length && !isSpace(text[end])) end++
  const parts = text.slice(0, end).split(".")
  if (parts.length > 4) return undefined
  const values: Array<number> = []
  for (const part of parts) {
    const match = /^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(part)
    if (match === null) return undefined
    const value = /^0[xX]/.test(part)
      ? parseInt(part.slice(2), 16)
      : part.startsWith("0")
      ? parseInt(part, 8)
      : Number(part)
    values.push(value)
  }
  const last = values.pop()!
  if (values.some((v) => v > 255) || last >= 2 ** (8 * (4 - values.length))) return undefined
  let address = last
  values.forEach((v, i) => (address += v * 2 ** (8 * (3 - i))))
  return [24, 16, 8, 0].map((shift) => Math.floor(address / 2 ** shift) % 256).join(".")
}

/**
 * The key a record's server is matched on against the source address of web-server datagrams: the dotted quad of an
 * IPv4 address, else the text as it is (pen resolved host names there with gethostbyname, and crashed on one that did
 * not resolve; nib sends addresses, and niblogd resolves nothing).
 */
export const serverKey = (server: string): string => inetAton(server) ?? server

/**
 * The ring of the last N balancer records (penlogd's `-n`), newest last. Every one of its N slots is searched: penlogd
 * stops its backward search one slot early, so it only ever finds N-1 records (`-n 1` never matched anything).
 *
 * @category models
 */
export interface Ring {
  readonly capacity: number
  readonly slots: Array<{ readonly key: string; readonly client: string; readonly request: string }>
  /** The slot the next record is written to. */
  next: number
}

/** An empty ring of `capacity` (at least 1) records. @category constructors */
export const makeRing = (capacity: number): Ring => ({
  capacity: Math.max(1, Math.floor(capacity)),
  slots: [],
  next: 0
})

/** Stores a record in the ring, over the oldest when it is full; returns the slot it went to. */
export const store = (ring: Ring, record: DatagramRecord): number => {
  const slot = ring.next
  ring.slots[slot] = { key: serverKey(record.server), client: record.client, request: record.request }
  ring.next = (slot + 1) % ring.capacity
  return slot
}

/**
 * Whether a web server's request line and a record's request (at most {@link RECORD_FIELD_MAX} characters) are the
 * same request. penlogd compares the first min(length, 100) characters of the web request, so a request is matched
 * by any record it is a prefix of (the empty request by any record), and a request of 100 characters or more by
 * nothing at all; nib compares at most the 99 characters a record keeps, so long requests match too.
 */
export const sameRequest = (web: string, record: string): boolean =>
  record.length > 0 && record.startsWith(web.slice(0, RECORD_FIELD_MAX))

/** The newest record in the ring for this server (by the web line's source address) and request; its client. */
export const find = (ring: Ring, source: string, request: string): string | undefined => {
  const size = ring.slots.length
  for (let k = 1; k <= size; k++) {
    const slot = ring.slots[(ring.next - k + size * 2) % size]!
    if (slot.key === source && sameRequest(request, slot.request)) return slot.client
  }
  return undefined
}

/** The request of a web-server line: the text between its first two double quotes (`"%r"`); undefined without. */
export const webRequest = (line: string): string | undefined => {
  const open = line.indexOf("\"")
  if (open < 0) return undefined
  const close = line.indexOf("\"", open + 1)
  return close < 0 ? undefined : line.slice(open + 1, close)
}

/**
 * The line with its first field (up to the first space) replaced by `client`. A line without a space is returned as
 * it is: penlogd wrote the client alone there and dropped the line.
 */
export const replaceClient = (line: string, client: string): string => {
  const space = line.indexOf(" ")
  return space < 0 ? line : client + line.slice(space)
}

const withNewline = (line: string): string => (line.endsWith("\n") ? line : `${line}\n`)

/**
 * What one datagram did: a record stored (or discarded as bogus), or a web-server line to write. A line is always
 * written and always ends in a newline: penlogd dropped lines without a quoted request (and the `\n`-only line), and
 * wrote a line without a final newline as it came, glued to the next one. An empty datagram writes nothing.
 *
 * @category models
 */
export type Outcome =
  | { readonly _tag: "Stored"; readonly slot: number; readonly record: DatagramRecord }
  | { readonly _tag: "BogusRecord" }
  | { readonly _tag: "Line"; readonly line: string; readonly client: string | undefined; readonly request: boolean }
  | { readonly _tag: "Empty" }

/**
 * penlogd's step for one datagram from `source` (an IPv4 address): a balancer record goes into the ring; any other
 * datagram is a web-server line, written with the real client of the newest record for the same server and request
 * (unchanged when there is none).
 *
 * @category rewriting
 */
export const receive = (ring: Ring, text: string, source: string): Outcome => {
  if (isRecordDatagram(text)) {
    const record = parseRecord(text)
    return record === undefined ? { _tag: "BogusRecord" } : { _tag: "Stored", slot: store(ring, record), record }
  }
  if (text === "" || text === "\n") return { _tag: "Empty" }
  const request = webRequest(text)
  const client = request === undefined ? undefined : find(ring, serverKey(source), request)
  const line = withNewline(client === undefined ? text : replaceClient(text, client))
  return { _tag: "Line", line, client, request: request !== undefined }
}

// ---------------------------------------------------------------------------------------------------------------
// mergelogs: the balancer's -l file merged with the web servers' own logs
// ---------------------------------------------------------------------------------------------------------------

/** mergelogs' default jitter (`-j`), in seconds. @category constants */
export const DEFAULT_JITTER = 600

/** An entry of the balancer's `-l` file: `<client> <unix_time> <server> <request>` (AccessLog.fileLine). */
export interface FileRecord {
  readonly client: string
  readonly time: number
  readonly server: string
  readonly request: string
}

/**
 * Reads a line of the balancer's `-l` file as mergelogs does (`"%s %ld %s %[^\n]"`); undefined if it is not one.
 *
 * @category parsing
 */
export const parseFileRecord = (line: string): FileRecord | undefined => {
  const scan = new Scanner(line)
  const client = scan.word()
  if (client === undefined) return undefined
  const time = scan.long()
  if (time === undefined) return undefined
  const server = scan.word()
  if (server === undefined) return undefined
  scan.skipSpace()
  const request = scan.span("\n")
  return request === undefined ? undefined : { client, time, server, request }
}

/**
 * A web-server line in Apache's common or combined format, cut as mergelogs cuts it
 * (`"%[^ ] %[^[][%[^]]]%[^\"]\"%[^\"]\"%[^\n]"`): the client, the text up to `[`, the time, the text up to the first
 * `"`, the request, and the rest (status, size, and in the combined format referrer and user agent).
 *
 * @category models
 */
export interface WebLine {
  readonly client: string
  readonly beforeTime: string
  readonly time: string
  readonly beforeRequest: string
  readonly request: string
  readonly rest: string
}

/**
 * Cuts a web-server line (without its newline); on failure, the number of fields read (mergelogs skips such lines:
 * each of the six parts must be at least one character, so an empty request `""` or a line ending at the request's
 * closing quote is skipped, as mergelogs does).
 *
 * @category parsing
 */
export const parseWebLine = (line: string): WebLine | number => {
  const scan = new Scanner(line)
  const client = scan.span(" ")
  if (client === undefined) return 0
  scan.skipSpace()
  const beforeTime = scan.span("[")
  if (beforeTime === undefined || !scan.literal("[")) return 1
  const time = scan.span("]")
  if (time === undefined || !scan.literal("]")) return 2
  const beforeRequest = scan.span("\"")
  if (beforeRequest === undefined || !scan.literal("\"")) return 3
  const request = scan.span("\"")
  if (request === undefined || !scan.literal("\"")) return 4
  const rest = scan.span("\n")
  if (rest === undefined) return 5
  return { client, beforeTime, time, beforeRequest, request, rest }
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"] as const

/**
 * Seconds since the epoch of an Apache time, `09/Jan/2002:00:27:15 +0100`, cut as mergelogs cuts it
 * (`"%[^/]/%[^/]/%[^:]:%[^:]:%[^:]:%s %s"`, numbers read with atoi, out-of-range fields carried over as mktime does,
 * an unknown month counted as month -1) with its offset applied when it is five characters long.
 *
 * Deviation: mergelogs read the fields as local time with an uninitialised `tm_isdst`, so the result depended on the
 * machine's time zone (its `-t` was there to make up for that) and, as run here, the first line read after the first
 * line written came out one hour early. nib reads the fields as UTC before applying the offset: the instant the web
 * server meant, on any machine.
 *
 * @category parsing
 */
export const parseApacheTime = (text: string): number => {
  const scan = new Scanner(text)
  const day = scan.span("/") ?? ""
  const month = scan.literal("/") ? scan.span("/") ?? "" : ""
  const year = scan.literal("/") ? scan.span(":") ?? "" : ""
  const hour = scan.literal(":") ? scan.span(":") ?? "" : ""
  const minute = scan.literal(":") ? scan.span(":") ?? "" : ""
  const second = scan.literal(":") ? scan.word() ?? "" : ""
  const zone = scan.word() ?? ""
  const date = new Date(0)
  date.setUTCFullYear(atoi(year), MONTHS.indexOf(month as (typeof MONTHS)[number]), atoi(day))
  date.setUTCHours(atoi(hour), atoi(minute), atoi(second), 0)
  let t = Math.floor(date.getTime() / 1000)
  if (!Number.isFinite(t)) return -1
  if (zone.length === 5) {
    const offset = 60 * atoi(zone.slice(3)) + 3600 * atoi(zone.slice(1, 3))
    t += zone.startsWith("+") ? -offset : offset
  }
  return t
}

const pad = (n: number, width: number) => String(n).padStart(width, "0")

/** An instant as mergelogs writes it: `dd/Mon/yyyy:HH:MM:SS +0000`, in UTC. @category formatting */
export const formatApacheTime = (t: number): string => {
  const d = new Date(t * 1000)
  return `${pad(d.getUTCDate(), 2)}/${MONTHS[d.getUTCMonth()]}/${pad(d.getUTCFullYear(), 4)}:`
    + `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)} +0000`
}

/**
 * Whether a web server's request line is the request of a `-l` file record. mergelogs wants them equal, but the file
 * keeps only the first {@link FILE_CHUNK_MAX} bytes of a request, so a longer request never matched; nib also takes a
 * record of exactly that length that the request starts with.
 */
export const sameFileRequest = (web: string, record: string): boolean =>
  web === record || (record.length === FILE_CHUNK_MAX && web.length > FILE_CHUNK_MAX && web.startsWith(record))

/** The merged line: the web line with its client replaced and its time in UTC (mergelogs' `printf`). */
export const formatMerged = (client: string, web: WebLine, t: number): string =>
  `${client} ${web.beforeTime}[${formatApacheTime(t)}]${web.beforeRequest}"${web.request}"${web.rest}\n`

/** mergelogs' options. @category models */
export interface MergeOptions {
  /** `-j`: seconds around a web line's time within which records are read ahead and kept. */
  readonly jitter: number
  /** `-t`: seconds subtracted from the balancer's timestamps. */
  readonly tzOffset: number
  /** `-c` turns it off: every line searches the whole `-l` file, at any distance in time. */
  readonly cache: boolean
}

/** A web server's log: its address as the balancer's records name it, and its lines (without newlines). */
export interface ServerLog {
  readonly server: string
  readonly lines: Iterable<string>
}

/**
 * What the merge produces, in order: merged lines to write, and notes for `-d` (a web line that could not be read,
 * records dropped from the cache, the client chosen for a line).
 *
 * @category models
 */
export type MergeEvent =
  | { readonly _tag: "Line"; readonly text: string }
  | { readonly _tag: "Skipped"; readonly server: string; readonly fields: number; readonly line: string }
  | { readonly _tag: "Uncached"; readonly count: number }
  | { readonly _tag: "Matched"; readonly from: string; readonly to: string; readonly request: string }

interface Cached {
  readonly client: string
  readonly server: string
  readonly t: number
  readonly request: string
  /** Position in the file: the first of equally near records wins. */
  readonly seq: number
}

/** A queue of one server's records for one request; records leave from the front. */
interface Bucket {
  readonly records: Array<Cached>
  head: number
}

const keyOf = (server: string, request: string) => `${server} ${request}`

/**
 * mergelogs' cache of records in file order, with records leaving from the front, indexed by server and request so
 * that a line looks only at records of its own request (mergelogs scanned the whole cache for every line).
 */
class RecordCache {
  private records: Array<Cached> = []
  private head = 0
  private readonly buckets = new Map<string, Bucket>()

  get size(): number {
    return this.records.length - this.head
  }

  get newest(): Cached | undefined {
    return this.size > 0 ? this.records[this.records.length - 1] : undefined
  }

  push(record: Cached): void {
    this.records.push(record)
    const key = keyOf(record.server, record.request)
    const bucket = this.buckets.get(key)
    if (bucket === undefined) this.buckets.set(key, { records: [record], head: 0 })
    else bucket.records.push(record)
  }

  /** Drops records from the front while they are older than `limit`; returns how many. */
  dropOlderThan(limit: number): number {
    let count = 0
    while (this.head < this.records.length && this.records[this.head]!.t < limit) {
      const record = this.records[this.head++]!
      count++
      const key = keyOf(record.server, record.request)
      const bucket = this.buckets.get(key)!
      bucket.head++
      if (bucket.head === bucket.records.length) this.buckets.delete(key)
      else if (bucket.head > 64 && bucket.head * 2 > bucket.records.length) {
        bucket.records.splice(0, bucket.head)
        bucket.head = 0
      }
    }
    if (this.head > 1024 && this.head * 2 > this.records.length) {
      this.records = this.records.slice(this.head)
      this.head = 0
    }
    return count
  }

  /** The client of the record for `server` and `request` nearest to `t` (the first of equals), if any. */
  best(server: string, request: string, t: number): string | undefined {
    let found: Cached | undefined
    let distance = Infinity
    const consider = (bucket: Bucket | undefined) => {
      if (bucket === undefined) return
      for (let i = bucket.head; i < bucket.records.length; i++) {
        const record = bucket.records[i]!
        const d = Math.abs(t - record.t)
        if (d < distance || (d === distance && found !== undefined && record.seq < found.seq)) {
          distance = d
          found = record
        }
      }
    }
    consider(this.buckets.get(keyOf(server, request)))
    if (request.length > FILE_CHUNK_MAX) consider(this.buckets.get(keyOf(server, request.slice(0, FILE_CHUNK_MAX))))
    return found?.client
  }
}

interface Current {
  readonly web: WebLine
  readonly t: number
}

const nextWebLine = function*(lines: Iterator<string>, server: string): Generator<MergeEvent, Current | undefined> {
  for (;;) {
    const next = lines.next()
    if (next.done === true) return undefined
    const web = parseWebLine(next.value)
    if (typeof web !== "number") return { web, t: parseApacheTime(web.time) }
    yield { _tag: "Skipped", server, fields: web, line: next.value }
  }
}

/**
 * mergelogs: the web servers' lines, oldest first across all logs (ties to the log named first), each with its
 * client replaced by the client of the best `-l` record (same server, same request, nearest in time; the first of
 * equals), or by the server's own address when there is none, as mergelogs documents.
 *
 * With the cache (the default) the records are read in file order as mergelogs reads them: before each web line at
 * time t, records older than t - jitter are dropped from the front of the cache (up to the first that is not), then
 * records are read until the newest one read is later than t + jitter; only cached records are candidates. `-c`
 * searches every record of the file.
 *
 * @category merging
 */
export const merge = function*(
  fileLog: Iterable<string>,
  logs: ReadonlyArray<ServerLog>,
  options: MergeOptions
): Generator<MergeEvent> {
  const readers = logs.map((log) => log.lines[Symbol.iterator]())
  const current: Array<Current | undefined> = []
  for (let s = 0; s < logs.length; s++) current.push(yield* nextWebLine(readers[s]!, logs[s]!.server))

  const records = fileLog[Symbol.iterator]()
  const cache = new RecordCache()
  let seq = 0
  let exhausted = false
  /** Reads the next line of the file into the cache (if it is a record); false at the end of the file. */
  const readRecord = (): boolean => {
    const next = records.next()
    if (next.done === true) {
      exhausted = true
      return false
    }
    const record = parseFileRecord(next.value)
    if (record === undefined) return true
    cache.push({
      client: record.client,
      server: record.server,
      t: record.time - options.tzOffset,
      request: record.request,
      seq: seq++
    })
    return true
  }
  if (!options.cache) { while (readRecord()); }

  for (;;) {
    let s = -1
    for (let i = 0; i < current.length; i++) {
      if (current[i] !== undefined && (s < 0 || current[i]!.t < current[s]!.t)) s = i
    }
    if (s < 0) return
    const { t, web } = current[s]!
    const server = logs[s]!.server
    if (options.cache) {
      const dropped = cache.dropOlderThan(t - options.jitter)
      if (dropped > 0) yield { _tag: "Uncached", count: dropped }
      const wanted = () => !exhausted && (cache.newest === undefined || cache.newest.t <= t + options.jitter)
      while (wanted() && readRecord());
    }
    const client = cache.best(server, web.request, t) ?? server
    yield { _tag: "Matched", from: web.client, to: client, request: web.request }
    yield { _tag: "Line", text: formatMerged(client, web, t) }
    current[s] = yield* nextWebLine(readers[s]!, server)
  }
}

/**
 * A `server:logfile` argument: split at the first colon as mergelogs does, or after `]` for an IPv6 address written
 * `[addr]:logfile` (nib's addition; the balancer writes IPv6 servers without brackets, so the name is kept without).
 *
 * @category parsing
 */
export const parseServerArgument = (text: string): { readonly server: string; readonly path: string } | undefined => {
  const bracket = /^\[([^\]]*)\]:(.*)$/s.exec(text)
  if (bracket !== null) return { server: bracket[1]!, path: bracket[2]! }
  const colon = text.indexOf(":")
  return colon < 0 ? undefined : { server: text.slice(0, colon), path: text.slice(colon + 1) }
}
