/**
 * The client-to-server half of `-H`: an incremental HTTP/1.x request rewriter that inserts `X-Forwarded-Proto` and
 * `X-Forwarded-For` into every request head on a connection, where pen rewrites only a chunk that starts with GET,
 * POST or HEAD and holds a whole head (pen-reference §10).
 *
 * Sans-IO and allocation-conscious: `feed` takes each chunk as read and hands the bytes to send upstream to a
 * {@link Sink} as slices (`buffer`, `start`, `end`) of that chunk, of the rewriter's inserted lines, or of its carry
 * buffer, in order. Nothing is concatenated and no object is made per chunk or per request.
 *
 * - **Heads.** A head is found line by line (`indexOf` of LF). A head that lies in one chunk is checked and sent as
 *   slices of that chunk. A head that spans chunks is copied into a carry buffer (one per rewriter, made on the first
 *   split head, grown by doubling up to `headLimit`) and sent from there once complete. No byte of a head is sent
 *   before the whole head has been checked, so a rejected head never reaches the server.
 * - **Bodies.** `Content-Length` bodies and chunk data go through as slices without being looked at; chunked framing
 *   (size lines, extensions, trailers) is checked a byte at a time and passed on unchanged. `Expect: 100-continue`
 *   needs nothing: a head is sent as soon as it is complete, and the body whenever the client sends it.
 *
 * Decisions (where pen, HAProxy and nginx differ or the RFC leaves a choice):
 * - `X-Forwarded-Proto` from the client is **dropped**, and nib's own goes in its place: only nib knows whether the
 *   client came over TLS, and a server that trusts the header (redirects to https, `Secure` cookies) must not get
 *   the client's choice. nginx's `proxy_set_header` and HAProxy's `set-header` also replace it.
 * - An existing `X-Forwarded-For` is appended to: `X-Forwarded-For: existing, client-ip` (trailing whitespace dropped;
 *   an empty value becomes just the client IP). With several such lines, the last one gets the IP, so the combined
 *   list stays in hop order. Without one, `X-Forwarded-Proto` then `X-Forwarded-For` go just before the blank line,
 *   in pen's order.
 * - Lines end in CRLF. A bare LF (also `\n\n`, which pen accepts) or a bare CR is a 400: RFC 9112 §2.2 allows either
 *   way, but a proxy that frames requests differently from its server is how requests get smuggled. Obsolete line
 *   folding is a 400 too (RFC 9112 §5.2). Empty lines before a request line are passed on (§2.2).
 * - The request line is `METHOD SP target SP HTTP/1.D`: any token as method, a target of visible ASCII or obs-text.
 * - 400 for: a bad request line, a header line that is not `token ":" value` (a value with control characters other
 *   than HTAB included), a `Content-Length` that is not 1 to 15 digits or differs between repeats, `Transfer-Encoding`
 *   with `Content-Length`, in HTTP/1.0, with `chunked` not last or twice, or with a quoted parameter; a bad chunk-size
 *   line (hex digits, then only `BWS ";" extension`), a chunk-size line longer than `headLimit`, chunk data not
 *   followed by CRLF, a bad trailer line. 431 for a head, or a trailer section, over `headLimit` bytes.
 * - Passthrough after the head of a `CONNECT` request, or of an HTTP/1.1 request with a non-empty `Upgrade` and a
 *   `Connection` that lists `upgrade`. The switch does not wait for the server's 101 (or 2xx to CONNECT): if the
 *   server refuses, the rest of the connection is relayed untouched.
 */

/** What a rewriter answers a bad or oversized head with. @category models */
export type ErrorStatus = 400 | 431

/** The scheme the client used to reach nib. @category models */
export type Proto = "http" | "https"

/** Where a rewriter sends what it produces, in the order it must reach the server (and the client). @category models */
export interface Sink {
  /** Bytes to send upstream: `buffer[start, end)`. They are valid only during the call: copy them. */
  readonly bytes: (buffer: Uint8Array, start: number, end: number) => void
  /** The client sent a bad (400) or oversized (431) head: answer {@link errorResponse} and close. Called once. */
  readonly error: (status: ErrorStatus, reason: string) => void
  /**
   * The connection becomes a plain relay (after an Upgrade or CONNECT head). The rest of the chunk being fed still
   * comes through `bytes`; later chunks need not be fed (feeding them passes them on whole).
   */
  readonly passthrough: () => void
}

/** How to build a rewriter. @category models */
export interface Options {
  readonly proto: Proto
  /** The client's address as text; only visible ASCII other than `,` is kept. */
  readonly clientIp: string
  /** The most bytes a request head (or a trailer section) may have; default {@link DEFAULT_HEAD_LIMIT}. */
  readonly headLimit?: number | undefined
}

/** One connection's rewriter (client to server). @category models */
export interface Rewriter {
  /** Processes `chunk[0, length)` (default: all of it); never throws. */
  readonly feed: (chunk: Uint8Array, out: Sink, length?: number) => void
  /** `http` while rewriting, `passthrough` after an Upgrade or CONNECT head, `failed` after an error. */
  readonly mode: "http" | "passthrough" | "failed"
}

/** The default head limit, the size of the relay's read buffer. @category constants */
export const DEFAULT_HEAD_LIMIT = 65536

/** Makes a rewriter for one client connection. @category constructors */
export const make = (options: Options): Rewriter => new HttpRewriter(options)

/** The response to send the client before closing after an error. @category formatting */
export const errorResponse = (status: ErrorStatus): string =>
  `HTTP/1.1 ${status} ${
    status === 431 ? "Request Header Fields Too Large" : "Bad Request"
  }\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`

const HT = 9
const LF = 10
const CR = 13
const SP = 32
const DQUOTE = 34
const COMMA = 44
const COLON = 58
const SEMI = 59

/** RFC 9110 tchar: the bytes of a token (method, field name, coding). */
const TCHAR = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TCHAR[c.charCodeAt(0)] = 1
}

/** A hex digit's value, or -1. */
const HEX = new Int8Array(256).fill(-1)
for (let d = 0; d < 16; d++) {
  HEX["0123456789abcdef".charCodeAt(d)] = d
  HEX["0123456789ABCDEF".charCodeAt(d)] = d
}

/** A byte of a field value: HTAB, SP, visible ASCII, obs-text. */
const isValueByte = (b: number): boolean => b === HT || (b >= SP && b !== 0x7f)
/** A byte of a request target: visible ASCII or obs-text. */
const isTargetByte = (b: number): boolean => b > SP && b !== 0x7f
const isOws = (b: number | undefined): boolean => b === SP || b === HT

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0))

const CONTENT_LENGTH = ascii("content-length")
const TRANSFER_ENCODING = ascii("transfer-encoding")
const CONNECTION = ascii("connection")
const UPGRADE = ascii("upgrade")
const CHUNKED = ascii("chunked")
const XFF = ascii("x-forwarded-for")
const XFP = ascii("x-forwarded-proto")
const CONNECT = ascii("CONNECT")
const HTTP_1 = ascii("HTTP/1.")

/** `buf[start, end)` equals `lowerName`, ignoring ASCII case. */
const equalsIgnoreCase = (buf: Uint8Array, start: number, end: number, lowerName: Uint8Array): boolean => {
  if (end - start !== lowerName.length) return false
  for (let k = 0; k < lowerName.length; k++) {
    const b = buf[start + k]!
    if ((b >= 65 && b <= 90 ? b | 0x20 : b) !== lowerName[k]) return false
  }
  return true
}

const equalsExactly = (buf: Uint8Array, start: number, bytes: Uint8Array): boolean => {
  for (let k = 0; k < bytes.length; k++) if (buf[start + k] !== bytes[k]) return false
  return true
}

// States. A request is HEAD, then LENGTH or the chunked states, then HEAD again.
const HEAD = 0
const LENGTH = 1
const CHUNK_SIZE = 2 // first hex digit of a chunk-size line
const CHUNK_SIZE_MORE = 3 // more digits, or BWS ";", or CR
const CHUNK_EXT_BWS = 4 // whitespace after the size: only ";" may follow
const CHUNK_EXT = 5 // chunk extensions, up to CR
const CHUNK_SIZE_LF = 6
const CHUNK_DATA = 7
const CHUNK_DATA_CR = 8
const CHUNK_DATA_LF = 9
const TRAILER_START = 10 // start of a trailer line: CR ends the section
const TRAILER_NAME = 11
const TRAILER_VALUE = 12
const TRAILER_LF = 13
const TRAILER_END_LF = 14
const PASSTHROUGH = 15
const FAILED = 16

/** Chunk sizes stay below 2^52, so `size * 16 + digit` is exact. */
const MAX_CHUNK_SIZE_BEFORE_DIGIT = 2 ** 48

/** A carry buffer larger than this is dropped once its head has been sent, so an idle connection holds little. */
const CARRY_KEEP = 8192

/** Copies up to this many bytes with a loop rather than a `subarray` view (which is an object). */
const COPY_LOOP = 64

const NO_SINK: Sink = { bytes: () => {}, error: () => {}, passthrough: () => {} }

class HttpRewriter implements Rewriter {
  private readonly limit: number
  /** `X-Forwarded-Proto: P\r\nX-Forwarded-For: IP\r\n, IP`: the lines to insert, then the text to append. */
  private readonly inserted: Uint8Array
  /** End of the X-Forwarded-Proto line, and of the X-Forwarded-For line (where `, IP` starts), in `inserted`. */
  private readonly xfpEnd: number
  private readonly xffEnd: number

  private state = HEAD
  private out: Sink = NO_SINK

  /** The slice waiting to be sent; consecutive slices of one buffer are sent as one. */
  private pBuf: Uint8Array | undefined = undefined
  private pStart = 0
  private pEnd = 0

  /** The part of a head received in earlier chunks (`carry[0, carryLen)`). */
  private carry: Uint8Array | undefined = undefined
  private carryLen = 0
  /** Where the current line of the head starts, counted from the head's first byte. */
  private lineStart = 0
  /** The head has a non-empty line: the next empty line ends it (empty lines before the request line do not). */
  private sawLine = false

  /** Bytes left in a Content-Length body or in chunk data; the size being read on a chunk-size line. */
  private remaining = 0
  /** Bytes of the current chunk-size line, or of the trailer section. */
  private count = 0

  constructor(options: Options) {
    const limit = options.headLimit ?? DEFAULT_HEAD_LIMIT
    this.limit = Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : DEFAULT_HEAD_LIMIT
    let ip = ""
    for (const c of options.clientIp) if (c > " " && c <= "~" && c !== ",") ip += c
    const xfp = `X-Forwarded-Proto: ${options.proto === "https" ? "https" : "http"}\r\n`
    const xff = `X-Forwarded-For: ${ip}\r\n`
    this.inserted = ascii(`${xfp}${xff}, ${ip}`)
    this.xfpEnd = xfp.length
    this.xffEnd = xfp.length + xff.length
  }

  get mode(): "http" | "passthrough" | "failed" {
    return this.state === PASSTHROUGH ? "passthrough" : this.state === FAILED ? "failed" : "http"
  }

  feed(chunk: Uint8Array, out: Sink, length?: number): void {
    if (this.state === FAILED) return
    const end = length === undefined ? chunk.length : Math.max(0, Math.min(chunk.length, Math.floor(length) || 0))
    this.out = out
    let i = 0
    while (i < end) {
      switch (this.state) {
        case HEAD:
          i = this.scanHead(chunk, i, end)
          break
        case LENGTH:
        case CHUNK_DATA: {
          const n = Math.min(this.remaining, end - i)
          this.emit(chunk, i, i + n)
          i += n
          this.remaining -= n
          if (this.remaining === 0) this.state = this.state === LENGTH ? HEAD : CHUNK_DATA_CR
          break
        }
        case PASSTHROUGH:
          this.emit(chunk, i, end)
          i = end
          break
        default:
          i = this.framing(chunk, i, end)
      }
      if (i < 0) break
    }
    if (this.state !== FAILED) this.flush()
    this.out = NO_SINK
  }

  /** Queues `buf[start, end)` to be sent, joined to the pending slice when it continues it. */
  private emit(buf: Uint8Array, start: number, end: number): void {
    if (start >= end) return
    if (buf === this.pBuf && start === this.pEnd) {
      this.pEnd = end
      return
    }
    this.flush()
    this.pBuf = buf
    this.pStart = start
    this.pEnd = end
  }

  private flush(): void {
    const buf = this.pBuf
    if (buf === undefined) return
    this.pBuf = undefined
    this.out.bytes(buf, this.pStart, this.pEnd)
  }

  /** Sends what is pending, reports the error, and ignores everything after it. Returns -1 (stop). */
  private fail(status: ErrorStatus, reason: string): number {
    this.flush()
    this.state = FAILED
    this.carry = undefined
    this.carryLen = 0
    this.out.error(status, reason)
    return -1
  }

  /** {@link fail} for `head`: false. */
  private reject(status: ErrorStatus, reason: string): false {
    this.fail(status, reason)
    return false
  }

  /** Appends `chunk[from, to)` to the carry buffer; the caller has checked that it stays within the limit. */
  private append(chunk: Uint8Array, from: number, to: number): void {
    const n = to - from
    if (n <= 0) return
    let carry = this.carry
    // A slice of the carry may still be pending: it is about to be overwritten or replaced.
    if (carry !== undefined && carry === this.pBuf) this.flush()
    const need = this.carryLen + n
    if (carry === undefined || need > carry.length) {
      let size = carry === undefined ? 1024 : carry.length * 2
      while (size < need) size *= 2
      const next = new Uint8Array(Math.max(need, Math.min(size, this.limit)))
      if (carry !== undefined) copy(carry, 0, this.carryLen, next, 0)
      this.carry = carry = next
    }
    copy(chunk, from, to, carry, this.carryLen)
    this.carryLen = need
  }

  /**
   * Looks for the end of the head that starts at `chunk[p]` (or continues there, after `carry`). Returns where
   * processing goes on: after the head once it is complete and sent, `end` once the chunk is carried, -1 on error.
   */
  private scanHead(chunk: Uint8Array, p: number, end: number): number {
    const base = this.carryLen // the head offset of chunk[p]
    let search = p
    for (;;) {
      const lf = chunk.indexOf(LF, search)
      if (lf < 0 || lf >= end) {
        if (base + end - p > this.limit) return this.fail(431, "request head too large")
        this.append(chunk, p, end)
        return end
      }
      const at = base + lf - p // the head offset of this LF
      if (at >= this.limit) return this.fail(431, "request head too large")
      const prev = lf > p ? chunk[lf - 1] : base > 0 ? this.carry![base - 1] : -1
      if (prev !== CR) return this.fail(400, "bare LF")
      const lineLength = at + 1 - this.lineStart
      this.lineStart = at + 1
      search = lf + 1
      if (lineLength !== 2) {
        this.sawLine = true
      } else if (this.sawLine) {
        this.sawLine = false
        this.lineStart = 0
        let sent: boolean
        if (base === 0) {
          sent = this.head(chunk, p, lf + 1)
        } else {
          this.append(chunk, p, lf + 1)
          const carry = this.carry!
          const n = this.carryLen
          this.carryLen = 0
          if (carry.length > CARRY_KEEP) this.carry = undefined
          sent = this.head(carry, 0, n)
        }
        return sent ? lf + 1 : -1
      }
    }
  }

  /**
   * Checks the complete head `buf[s, e)` (every line ends in CRLF, the last one is empty), sends it rewritten, and
   * sets up what follows it. False after an error.
   */
  private head(buf: Uint8Array, s: number, e: number): boolean {
    let ls = s
    while (buf[ls] === CR && buf[ls + 1] === LF) ls += 2
    // Request line: METHOD SP target SP HTTP/1.D
    let lf = buf.indexOf(LF, ls)
    let le = lf - 1
    let j = ls
    while (j < le && TCHAR[buf[j]!] === 1) j++
    if (j === ls || buf[j] !== SP) return this.reject(400, "malformed request line")
    const isConnect = j - ls === 7 && equalsExactly(buf, ls, CONNECT)
    let k = j + 1
    while (k < le && isTargetByte(buf[k]!)) k++
    if (k === j + 1 || buf[k] !== SP) return this.reject(400, "malformed request line")
    const v = k + 1
    const digit = buf[v + 7]!
    if (le - v !== 8 || !equalsExactly(buf, v, HTTP_1) || digit < 48 || digit > 57) {
      return this.reject(400, "malformed request line")
    }
    const http10 = digit === 48

    let contentLength = -1
    let te = false
    let teChunkedLast = false
    let teChunked = false
    let upgrade = false
    let connectionUpgrade = false
    let xfp = false
    let xffLine = -1
    let xffColon = 0
    let xffValueEnd = 0
    let xffEmpty = false
    let xffLineEnd = 0

    const headers = lf + 1
    for (ls = headers;; ls = lf + 1) {
      lf = buf.indexOf(LF, ls)
      le = lf - 1
      if (le === ls) break
      const first = buf[ls]!
      if (first === SP || first === HT) return this.reject(400, "obsolete line folding")
      let c = ls
      while (c < le && TCHAR[buf[c]!] === 1) c++
      if (buf[c] !== COLON) {
        const colon = buf.indexOf(COLON, ls)
        return this.reject(400, colon < 0 || colon > le ? "header line without a colon" : "malformed header name")
      }
      if (c === ls) return this.reject(400, "malformed header name")
      for (let x = c + 1; x < le; x++) {
        const b = buf[x]!
        if (b !== HT && (b < SP || b === 0x7f)) return this.reject(400, "control character in a header value")
      }
      let vs = c + 1
      while (vs < le && isOws(buf[vs])) vs++
      let ve = le
      while (ve > vs && isOws(buf[ve - 1])) ve--
      switch (c - ls) {
        case 7:
          if (equalsIgnoreCase(buf, ls, c, UPGRADE) && ve > vs) upgrade = true
          break
        case 10:
          if (equalsIgnoreCase(buf, ls, c, CONNECTION) && listsToken(buf, vs, ve, UPGRADE)) connectionUpgrade = true
          break
        case 14:
          if (equalsIgnoreCase(buf, ls, c, CONTENT_LENGTH)) {
            if (ve === vs || ve - vs > 15) return this.reject(400, "invalid Content-Length")
            let n = 0
            for (let x = vs; x < ve; x++) {
              const d = buf[x]! - 48
              if (d < 0 || d > 9) return this.reject(400, "invalid Content-Length")
              n = n * 10 + d
            }
            if (contentLength >= 0 && contentLength !== n) return this.reject(400, "conflicting Content-Length")
            contentLength = n
          }
          break
        case 15:
          if (equalsIgnoreCase(buf, ls, c, XFF)) {
            xffLine = ls
            xffColon = c
            xffValueEnd = ve
            xffEmpty = ve === vs
            xffLineEnd = le
          }
          break
        case 17:
          if (equalsIgnoreCase(buf, ls, c, XFP)) {
            xfp = true
          } else if (equalsIgnoreCase(buf, ls, c, TRANSFER_ENCODING)) {
            te = true
            // A list of codings, each a token with optional parameters; only the last may be (and must be) chunked.
            let x = vs
            while (x < ve) {
              const b = buf[x]!
              if (b === COMMA || isOws(b)) {
                x++
                continue
              }
              const ts = x
              while (x < ve && TCHAR[buf[x]!] === 1) x++
              if (x === ts) return this.reject(400, "invalid Transfer-Encoding")
              const chunked = equalsIgnoreCase(buf, ts, x, CHUNKED)
              if (chunked && teChunked) return this.reject(400, "chunked applied twice")
              teChunked ||= chunked
              teChunkedLast = chunked
              while (x < ve && isOws(buf[x])) x++
              if (x < ve && buf[x] !== COMMA && buf[x] !== SEMI) {
                return this.reject(400, "invalid Transfer-Encoding")
              }
              while (x < ve && buf[x] !== COMMA) {
                if (buf[x] === DQUOTE) return this.reject(400, "quoted Transfer-Encoding parameter")
                x++
              }
            }
          }
          break
      }
    }

    if (te) {
      if (http10) return this.reject(400, "Transfer-Encoding in an HTTP/1.0 request")
      if (contentLength >= 0) return this.reject(400, "Content-Length with Transfer-Encoding")
      if (!teChunkedLast) return this.reject(400, "chunked is not the final transfer coding")
    }

    // Send it: drop X-Forwarded-Proto lines, append to the last X-Forwarded-For, insert before the blank line.
    const blank = e - 2
    let cursor = s
    if (xfp) {
      for (ls = headers; ls < blank; ls = lf + 1) {
        lf = buf.indexOf(LF, ls)
        if (ls === xffLine) {
          cursor = this.appendXff(buf, cursor, xffColon, xffValueEnd, xffEmpty, xffLineEnd)
        } else if (buf[ls + 17] === COLON && equalsIgnoreCase(buf, ls, ls + 17, XFP)) {
          this.emit(buf, cursor, ls)
          cursor = lf + 1
        }
      }
    } else if (xffLine >= 0) {
      cursor = this.appendXff(buf, cursor, xffColon, xffValueEnd, xffEmpty, xffLineEnd)
    }
    this.emit(buf, cursor, blank)
    this.emit(this.inserted, 0, xffLine >= 0 ? this.xfpEnd : this.xffEnd)
    this.emit(buf, blank, e)

    if (isConnect || (upgrade && connectionUpgrade && !http10)) {
      this.flush()
      this.state = PASSTHROUGH
      this.out.passthrough()
    } else if (te) {
      this.state = CHUNK_SIZE
      this.count = 0
    } else if (contentLength > 0) {
      this.state = LENGTH
      this.remaining = contentLength
    } else {
      this.state = HEAD
    }
    return true
  }

  /** Sends the head from `cursor` to the end of the X-Forwarded-For value, then `, IP`; returns the new cursor. */
  private appendXff(
    buf: Uint8Array,
    cursor: number,
    colon: number,
    valueEnd: number,
    empty: boolean,
    lineEnd: number
  ): number {
    const inserted = this.inserted
    if (empty) {
      this.emit(buf, cursor, colon + 1)
      this.emit(inserted, this.xffEnd + 1, inserted.length) // " IP"
    } else {
      this.emit(buf, cursor, valueEnd)
      this.emit(inserted, this.xffEnd, inserted.length) // ", IP"
    }
    return lineEnd
  }

  /** Chunked framing, a byte at a time: sends the bytes it accepts; returns where it stopped, or -1 on error. */
  private framing(chunk: Uint8Array, from: number, end: number): number {
    let i = from
    let state = this.state
    const limit = this.limit
    for (; i < end; i++) {
      const b = chunk[i]!
      // Chunk-size lines and trailer sections are bounded (nothing is buffered here, but a server may buffer them).
      if (++this.count > limit) {
        return state >= TRAILER_START
          ? this.framingError(chunk, from, i, 431, "trailer section too large")
          : this.framingError(chunk, from, i, 400, "chunk-size line too long")
      }
      switch (state) {
        case CHUNK_SIZE: {
          const h = HEX[b]!
          if (h < 0) return this.framingError(chunk, from, i, 400, "invalid chunk size")
          this.remaining = h
          state = CHUNK_SIZE_MORE
          break
        }
        case CHUNK_SIZE_MORE: {
          const h = HEX[b]!
          if (h >= 0) {
            if (this.remaining >= MAX_CHUNK_SIZE_BEFORE_DIGIT) {
              return this.framingError(chunk, from, i, 400, "chunk size too large")
            }
            this.remaining = this.remaining * 16 + h
          } else if (b === CR) state = CHUNK_SIZE_LF
          else if (b === SEMI) state = CHUNK_EXT
          else if (b === SP || b === HT) state = CHUNK_EXT_BWS
          else return this.framingError(chunk, from, i, 400, "invalid chunk size")
          break
        }
        case CHUNK_EXT_BWS:
          if (b === SEMI) state = CHUNK_EXT
          else if (b !== SP && b !== HT) return this.framingError(chunk, from, i, 400, "invalid chunk size")
          break
        case CHUNK_EXT:
          if (b === CR) state = CHUNK_SIZE_LF
          else if (b === LF) return this.framingError(chunk, from, i, 400, "bare LF")
          else if (!isValueByte(b)) return this.framingError(chunk, from, i, 400, "invalid chunk extension")
          break
        case CHUNK_SIZE_LF:
          if (b !== LF) return this.framingError(chunk, from, i, 400, "bare CR")
          this.count = 0
          if (this.remaining > 0) {
            this.emit(chunk, from, i + 1)
            this.state = CHUNK_DATA
            return i + 1
          }
          state = TRAILER_START
          break
        case CHUNK_DATA_CR:
          if (b !== CR) return this.framingError(chunk, from, i, 400, "chunk data longer than its size")
          state = CHUNK_DATA_LF
          break
        case CHUNK_DATA_LF:
          if (b !== LF) return this.framingError(chunk, from, i, 400, "bare CR")
          this.count = 0
          state = CHUNK_SIZE
          break
        case TRAILER_START:
          if (b === CR) state = TRAILER_END_LF
          else if (TCHAR[b] === 1) state = TRAILER_NAME
          else return this.framingError(chunk, from, i, 400, "malformed trailer line")
          break
        case TRAILER_NAME:
          if (b === COLON) state = TRAILER_VALUE
          else if (TCHAR[b] !== 1) return this.framingError(chunk, from, i, 400, "malformed trailer line")
          break
        case TRAILER_VALUE:
          if (b === CR) state = TRAILER_LF
          else if (!isValueByte(b)) return this.framingError(chunk, from, i, 400, "malformed trailer line")
          break
        case TRAILER_LF:
          if (b !== LF) return this.framingError(chunk, from, i, 400, "bare CR")
          state = TRAILER_START
          break
        case TRAILER_END_LF:
          if (b !== LF) return this.framingError(chunk, from, i, 400, "bare CR")
          this.emit(chunk, from, i + 1)
          this.state = HEAD
          return i + 1
      }
    }
    this.emit(chunk, from, i)
    this.state = state
    return i
  }

  /** Sends the framing bytes accepted before `at`, then fails: the output does not depend on where chunks split. */
  private framingError(chunk: Uint8Array, from: number, at: number, status: ErrorStatus, reason: string): number {
    this.emit(chunk, from, at)
    return this.fail(status, reason)
  }
}

/** Whether the comma-separated list `buf[start, end)` has the token `lowerToken` (ignoring case). */
const listsToken = (buf: Uint8Array, start: number, end: number, lowerToken: Uint8Array): boolean => {
  let x = start
  while (x < end) {
    while (x < end && (buf[x] === COMMA || isOws(buf[x]))) x++
    const ts = x
    while (x < end && buf[x] !== COMMA) x++
    let te = x
    while (te > ts && isOws(buf[te - 1])) te--
    if (equalsIgnoreCase(buf, ts, te, lowerToken)) return true
  }
  return false
}

/** Copies `from[start, end)` into `to` at `at`: a loop for a few bytes, `set` (and a view) for more. */
const copy = (from: Uint8Array, start: number, end: number, to: Uint8Array, at: number): void => {
  if (end - start <= COPY_LOOP) {
    for (let x = start; x < end; x++) to[at++] = from[x]!
  } else {
    to.set(from.subarray(start, end), at)
  }
}
