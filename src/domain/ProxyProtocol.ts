/**
 * The PROXY protocol (HAProxy's doc/proxy-protocol.txt, versions 1 and 2) as a pure codec: the header a proxy puts
 * before a connection's first byte to tell the server who the client really is. `encodeV1`/`encodeV2` build the
 * header nib sends to a server (`--send-proxy`), `fromSocket` fills it from a client socket's fields, and `decode`
 * reads one from the bytes received so far, incrementally and without throwing.
 *
 * Addresses are text as Node prints them (`127.0.0.1`, `::1`, `::ffff:10.0.0.1`), so a decoded header's addresses
 * compare equal to what Node's sockets report. Pure: no sockets, no clock; bytes in and out are `Uint8Array`s.
 */
import { Schema } from "effect"
import * as Acl from "./Acl.ts"

// ---------------------------------------------------------------------------------------------------------------
// Addresses: parsing and printing, as Node (libuv's inet_pton / inet_ntop) does
// ---------------------------------------------------------------------------------------------------------------

/** 0 to 255 in decimal, without leading zeros. */
const V4_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
const IPV4_PATTERN = new RegExp(`^${V4_OCTET}(?:\\.${V4_OCTET}){3}$`)

/** The 4 bytes of dotted-quad text (no leading zeros, as the spec and inet_pton require), or undefined. */
const parseIPv4 = (text: string): Uint8Array | undefined =>
  IPV4_PATTERN.test(text) ? Uint8Array.from(text.split("."), Number) : undefined

const formatIPv4 = (bytes: Uint8Array, offset: number): string =>
  `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/

/** The 16-bit values of hex groups, or undefined if one is not 1 to 4 hex digits. */
const hexWords = (groups: ReadonlyArray<string>): Array<number> | undefined => {
  const out: Array<number> = []
  for (const group of groups) {
    if (!HEX_GROUP.test(group)) return undefined
    out.push(Number.parseInt(group, 16))
  }
  return out
}

/**
 * The 16 bytes of IPv6 text, or undefined. Accepts what inet_pton accepts: groups of 1 to 4 hex digits in either
 * case, at most one `::` standing for at least one zero group, and a dotted quad in the last 32 bits.
 */
const parseIPv6 = (text: string): Uint8Array | undefined => {
  if (text.length < 2 || text.length > 45) return undefined
  const gap = text.indexOf("::")
  if (gap >= 0 && text.indexOf("::", gap + 1) >= 0) return undefined
  const head = gap < 0 ? text.split(":") : gap === 0 ? [] : text.slice(0, gap).split(":")
  const tailText = gap < 0 ? "" : text.slice(gap + 2)
  const tail = tailText === "" ? [] : tailText.split(":")
  const words: Array<number> = []
  const last = gap < 0 ? head : tail
  let embedded: Uint8Array | undefined
  if (last.length > 0 && last[last.length - 1]!.includes(".")) {
    embedded = parseIPv4(last.pop()!)
    if (embedded === undefined) return undefined
  }
  const headWords = hexWords(head)
  const tailWords = hexWords(tail)
  if (headWords === undefined || tailWords === undefined) return undefined
  if (embedded !== undefined) tailWords.push((embedded[0]! << 8) | embedded[1]!, (embedded[2]! << 8) | embedded[3]!)
  if (gap < 0) {
    // No `::`: the embedded quad (if any) was taken from `head`, so its words go last.
    words.push(...headWords, ...tailWords)
    if (words.length !== 8) return undefined
  } else {
    const zeros = 8 - headWords.length - tailWords.length
    if (zeros < 1) return undefined
    words.push(...headWords, ...Array<number>(zeros).fill(0), ...tailWords)
  }
  const bytes = new Uint8Array(16)
  for (let i = 0; i < 8; i++) {
    bytes[2 * i] = words[i]! >> 8
    bytes[2 * i + 1] = words[i]! & 0xff
  }
  return bytes
}

/**
 * IPv6 text as Node prints it (libuv's inet_ntop, as glibc's: `Acl.formatIpv6` writes it), from 16 bytes at
 * `offset`.
 */
const formatIPv6 = (bytes: Uint8Array, offset: number): string => {
  let address = 0n
  for (let i = 0; i < 16; i++) address = (address << 8n) | BigInt(bytes[offset + i]!)
  return Acl.formatIpv6(address)
}

/**
 * IPv6 text rewritten as Node prints it (`0:0::1` → `::1`, `::FFFF:a.b.c.d` → `::ffff:a.b.c.d`), or undefined when
 * it is not IPv6 text.
 *
 * @category parsing
 */
export const canonicalIPv6 = (text: string): string | undefined => {
  const bytes = parseIPv6(text)
  return bytes === undefined ? undefined : formatIPv6(bytes, 0)
}

// ---------------------------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------------------------

/** An IPv4 address as dotted-quad text without leading zeros (`127.0.0.1`). @category models */
export const IPv4 = Schema.String.check(
  Schema.isPattern(IPV4_PATTERN, { expected: "an IPv4 address as Node prints it (a.b.c.d)" })
)

// Generation only (the filter's predicate decides): full, compressed and IPv4-mapped forms, of which the filter
// keeps the ones Node would print that way.
const V6_GROUP = "(?:0|[1-9a-f][0-9a-f]{0,3})"
const IPV6_GENERATION =
  `^(?:${V6_GROUP}(?::${V6_GROUP}){7}|(?:${V6_GROUP}(?::${V6_GROUP}){0,5})?::(?:${V6_GROUP}(?::${V6_GROUP}){0,5})?|::ffff:${V4_OCTET}(?:\\.${V4_OCTET}){3})$`

/** An IPv6 address as Node prints it (`::1`, `fe80::1`, `::ffff:10.0.0.1`), without a zone. @category models */
export const IPv6 = Schema.String.check(
  Schema.makeFilter((text: string) => canonicalIPv6(text) === text, {
    expected: "an IPv6 address as Node prints it (lowercase, :: for the longest zero run)",
    arbitraryConstraint: { patterns: [{ source: IPV6_GENERATION, flags: "" }] }
  })
)

/** A TCP port, 0 to 65535 (the spec allows 0). @category models */
export const Port = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 }))

/** One end of a proxied TCP/IPv4 connection. @category models */
export const Endpoint4 = Schema.Struct({ address: IPv4, port: Port })

/** One end of a proxied TCP/IPv6 connection. @category models */
export const Endpoint6 = Schema.Struct({ address: IPv6, port: Port })

/**
 * A connection relayed for a client over TCP/IPv4: `source` is the client, `destination` the address it reached.
 *
 * @category models
 */
export const ProxiedTcp4 = Schema.TaggedStruct("Proxied", {
  family: Schema.Literal("TCP4"),
  source: Endpoint4,
  destination: Endpoint4
})

/** A connection relayed for a client over TCP/IPv6. @category models */
export const ProxiedTcp6 = Schema.TaggedStruct("Proxied", {
  family: Schema.Literal("TCP6"),
  source: Endpoint6,
  destination: Endpoint6
})

/** A relayed connection, over IPv4 or IPv6. @category models */
export const Proxied = Schema.Union([ProxiedTcp4, ProxiedTcp6])

/** A relayed connection, over IPv4 or IPv6. @category models */
export type Proxied = typeof Proxied.Type

/**
 * The proxy's own connection (v2 LOCAL, v1 UNKNOWN, or a family the header cannot carry): the receiver uses the
 * real peer's address.
 *
 * @category models
 */
export const Local = Schema.TaggedStruct("Local", {})

/** The proxy's own connection: use the real peer's address. @category models */
export type Local = typeof Local.Type

/** What a PROXY protocol header says about a connection. @category models */
export const Header = Schema.Union([ProxiedTcp4, ProxiedTcp6, Local])

/** What a PROXY protocol header says about a connection. @category models */
export type Header = typeof Header.Type

/** The header of the proxy's own connection. @category constructors */
export const local: Local = { _tag: "Local" }

// ---------------------------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------------------------

/** The 12 bytes every v2 header starts with. @category constants */
export const V2_SIGNATURE: Uint8Array = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a
)

/** The longest v1 line a receiver must take, CRLF included. @category constants */
export const V1_MAX_LENGTH = 107

/** The longest v2 header: 16 bytes plus a 16-bit length. @category constants */
export const V2_MAX_LENGTH = 16 + 65535

const ascii = (text: string): Uint8Array => {
  const bytes = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i)
  return bytes
}

/**
 * The v1 (text) header: `PROXY TCP4 src dst sport dport\r\n`, or `PROXY UNKNOWN\r\n` for a local connection.
 * Addresses are written as the header holds them (as Node and inet_ntop print them).
 *
 * @category encoding
 */
export const encodeV1 = (header: Header): Uint8Array =>
  ascii(
    header._tag === "Local"
      ? "PROXY UNKNOWN\r\n"
      : `PROXY ${header.family} ${header.source.address} ${header.destination.address} ${header.source.port} ${header.destination.port}\r\n`
  )

const addressBytes = (family: "TCP4" | "TCP6", text: string): Uint8Array => {
  const bytes = family === "TCP4" ? parseIPv4(text) : parseIPv6(text)
  // Unreachable for a Header that satisfies its schema (fromSocket and Schema decoding guarantee it).
  if (bytes === undefined) throw new TypeError(`ProxyProtocol.encodeV2: '${text}' is not ${family} address text`)
  return bytes
}

/**
 * The v2 (binary) header: signature, version 2 with command PROXY (TCP over IPv4 `0x11` or IPv6 `0x21`) or LOCAL
 * (`0x00` family, no addresses), the address length, then source and destination addresses and ports in network
 * order. No TLVs. The header must satisfy the {@link Header} schema; an address that is not IP text is a defect.
 *
 * @category encoding
 */
export const encodeV2 = (header: Header): Uint8Array => {
  if (header._tag === "Local") {
    const out = new Uint8Array(16)
    out.set(V2_SIGNATURE, 0)
    out[12] = 0x20
    return out
  }
  const size = header.family === "TCP4" ? 4 : 16
  const length = 2 * size + 4
  const out = new Uint8Array(16 + length)
  out.set(V2_SIGNATURE, 0)
  out[12] = 0x21
  out[13] = header.family === "TCP4" ? 0x11 : 0x21
  out[14] = length >> 8
  out[15] = length & 0xff
  out.set(addressBytes(header.family, header.source.address), 16)
  out.set(addressBytes(header.family, header.destination.address), 16 + size)
  const ports = 16 + 2 * size
  out[ports] = header.source.port >> 8
  out[ports + 1] = header.source.port & 0xff
  out[ports + 2] = header.destination.port >> 8
  out[ports + 3] = header.destination.port & 0xff
  return out
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------------------------

/** Not enough bytes to decide: read more and call `decode` again with the longer buffer. @category models */
export interface NeedMore {
  readonly _tag: "NeedMore"
}

/** A complete header: its first `length` bytes; the bytes after them are the client's data. @category models */
export interface Done {
  readonly _tag: "Done"
  readonly header: Header
  readonly length: number
  readonly version: 1 | 2
}

/** Not a valid PROXY protocol header: close the connection. `reason` is one line. @category models */
export interface Invalid {
  readonly _tag: "Invalid"
  readonly reason: string
}

/** What `decode` found in the bytes received so far. @category models */
export type Decoded = NeedMore | Done | Invalid

const needMore: NeedMore = { _tag: "NeedMore" }
const done = (header: Header, length: number, version: 1 | 2): Done => ({ _tag: "Done", header, length, version })
const invalid = (reason: string): Invalid => ({ _tag: "Invalid", reason })

const hex = (byte: number): string => `0x${byte.toString(16).padStart(2, "0")}`

const CR = 0x0d
const LF = 0x0a
const V1_PREFIX = ascii("PROXY ")
const V1_FAMILIES = ["TCP4", "TCP6", "UNKNOWN"] as const

const parseV1Port = (text: string, which: string): number | string => {
  if (!/^(?:0|[1-9]\d{0,4})$/.test(text)) return `bad v1 ${which} port '${text}'`
  const port = Number(text)
  return port <= 65535 ? port : `v1 ${which} port ${text} is out of range (0-65535)`
}

const decodeV1Line = (line: string, length: number): Decoded => {
  const fields = line.split(" ")
  const family = fields[0]!
  // The spec: after UNKNOWN the receiver ignores everything up to the CRLF.
  if (family === "UNKNOWN") return done(local, length, 1)
  if (family !== "TCP4" && family !== "TCP6") return invalid(`unknown v1 protocol '${family}'`)
  if (fields.length !== 5) {
    return invalid(`a v1 ${family} line has 4 fields after the protocol, not ${fields.length - 1}`)
  }
  const [, source, destination, sourcePort, destinationPort] = fields as [string, string, string, string, string]
  const address = (text: string, which: string): string | Invalid => {
    if (family === "TCP4") return parseIPv4(text) === undefined ? invalid(`bad v1 ${which} address '${text}'`) : text
    const canonical = canonicalIPv6(text)
    return canonical === undefined ? invalid(`bad v1 ${which} address '${text}'`) : canonical
  }
  const src = address(source, "source")
  if (typeof src !== "string") return src
  const dst = address(destination, "destination")
  if (typeof dst !== "string") return dst
  const sport = parseV1Port(sourcePort, "source")
  if (typeof sport === "string") return invalid(sport)
  const dport = parseV1Port(destinationPort, "destination")
  if (typeof dport === "string") return invalid(dport)
  const header: Header = {
    _tag: "Proxied",
    family,
    source: { address: src, port: sport },
    destination: { address: dst, port: dport }
  }
  return done(header, length, 1)
}

const decodeV1 = (bytes: Uint8Array): Decoded => {
  const n = bytes.length
  for (let i = 0; i < Math.min(n, V1_PREFIX.length); i++) {
    if (bytes[i] !== V1_PREFIX[i]) return invalid("not a PROXY protocol header")
  }
  let text = ""
  let end = -1
  for (let i = V1_PREFIX.length; i < Math.min(n, V1_MAX_LENGTH); i++) {
    const byte = bytes[i]!
    if (byte === CR) {
      if (i + 2 > V1_MAX_LENGTH) return invalid(`v1 line over ${V1_MAX_LENGTH} bytes`)
      if (i + 1 < n && bytes[i + 1] !== LF) return invalid("v1 line has a CR not followed by LF")
      end = i
      break
    }
    if (byte === LF) return invalid("v1 line ends with LF without CR")
    if (byte < 0x20 || byte > 0x7e) return invalid(`v1 line has a non-printable byte ${hex(byte)}`)
    text += String.fromCharCode(byte)
  }
  // Fail as early as the protocol word allows; the addresses are read only once the CRLF is in.
  const space = text.indexOf(" ")
  const word = space < 0 ? text : text.slice(0, space)
  const complete = space >= 0 || end >= 0
  const known = V1_FAMILIES.some((family) => complete ? family === word : family.startsWith(word))
  if (!known) return invalid(`unknown v1 protocol '${word}'`)
  if (end >= 0 && end + 1 < n) return decodeV1Line(text, end + 2)
  if (end < 0 && n >= V1_MAX_LENGTH) return invalid(`v1 line over ${V1_MAX_LENGTH} bytes (no CRLF)`)
  return needMore
}

const V2_FAMILIES = ["UNSPEC", "INET", "INET6", "UNIX"] as const
/** Bytes of addresses and ports each family needs in the address block. */
const V2_ADDRESS_LENGTH = [0, 12, 36, 216] as const

const decodeV2 = (bytes: Uint8Array): Decoded => {
  const n = bytes.length
  for (let i = 0; i < Math.min(n, V2_SIGNATURE.length); i++) {
    if (bytes[i] !== V2_SIGNATURE[i]) return invalid("not a PROXY protocol header")
  }
  if (n < 13) return needMore
  const version = bytes[12]! >> 4
  const command = bytes[12]! & 0x0f
  if (version !== 2) return invalid(`unknown v2 version ${version}`)
  if (command > 1) return invalid(`unknown v2 command ${command}`)
  if (n < 14) return needMore
  const family = bytes[13]! >> 4
  const protocol = bytes[13]! & 0x0f
  // LOCAL: the family byte is ignored, as the spec says; PROXY: only the defined values are accepted.
  if (command === 1 && family > 3) return invalid(`unknown v2 address family ${family}`)
  if (command === 1 && protocol > 2) return invalid(`unknown v2 transport protocol ${protocol}`)
  if (n < 16) return needMore
  const length = (bytes[14]! << 8) | bytes[15]!
  if (command === 1 && family !== 0 && protocol !== 0 && length < V2_ADDRESS_LENGTH[family]!) {
    return invalid(
      `v2 length ${length} is too short for ${V2_FAMILIES[family]} addresses (${V2_ADDRESS_LENGTH[family]} bytes)`
    )
  }
  const total = 16 + length
  if (n < total) return needMore
  // TLVs after the addresses are skipped: `total` covers them.
  if (command === 0) return done(local, total, 2)
  if (bytes[13] === 0x11) {
    return done(
      {
        _tag: "Proxied",
        family: "TCP4",
        source: { address: formatIPv4(bytes, 16), port: (bytes[24]! << 8) | bytes[25]! },
        destination: { address: formatIPv4(bytes, 20), port: (bytes[26]! << 8) | bytes[27]! }
      },
      total,
      2
    )
  }
  if (bytes[13] === 0x21) {
    return done(
      {
        _tag: "Proxied",
        family: "TCP6",
        source: { address: formatIPv6(bytes, 16), port: (bytes[48]! << 8) | bytes[49]! },
        destination: { address: formatIPv6(bytes, 32), port: (bytes[50]! << 8) | bytes[51]! }
      },
      total,
      2
    )
  }
  // UNSPEC, UDP and UNIX: the spec lets a receiver fall back to UNSPEC, i.e. keep the real peer's address.
  return done(local, total, 2)
}

/**
 * Reads a PROXY protocol header from the start of `bytes` (everything received so far). Never throws. `NeedMore`
 * while `bytes` is a proper prefix of a header that could still be valid; `Done` with the header and its length
 * (never more than `bytes.length`); `Invalid` with a one-line reason as soon as the bytes cannot become one. A v1
 * line is at most 107 bytes; a v2 header at most 16 + 65535.
 *
 * @category decoding
 */
export const decode = (bytes: Uint8Array): Decoded => {
  if (bytes.length === 0) return needMore
  if (bytes[0] === V2_SIGNATURE[0]) return decodeV2(bytes)
  if (bytes[0] === V1_PREFIX[0]) return decodeV1(bytes)
  return invalid(`not a PROXY protocol header (first byte ${hex(bytes[0]!)})`)
}

// ---------------------------------------------------------------------------------------------------------------
// From a client socket
// ---------------------------------------------------------------------------------------------------------------

/**
 * The fields of a Node `net.Socket` the header is built from (all may be undefined once a socket is closed).
 *
 * @category models
 */
export interface SocketFields {
  readonly remoteAddress?: string | undefined
  readonly remotePort?: number | undefined
  readonly localAddress?: string | undefined
  readonly localPort?: number | undefined
  /** Not needed: the family is read from the address text. Accepted so a socket can be passed as is. */
  readonly remoteFamily?: string | undefined
}

type Classified = { readonly v4: string } | { readonly v6: string }

const classify = (text: string): Classified | undefined => {
  if (parseIPv4(text) !== undefined) return { v4: text }
  // A zone (`fe80::1%eth0`) cannot travel in the header, as with HAProxy.
  const bytes = parseIPv6(text.replace(/%.*$/, ""))
  if (bytes === undefined) return undefined
  const mapped = bytes.subarray(0, 12).every((byte, i) => byte === (i < 10 ? 0 : 0xff))
  return mapped ? { v4: formatIPv4(bytes, 12) } : { v6: formatIPv6(bytes, 0) }
}

const asV6 = (address: Classified): string => "v6" in address ? address.v6 : `::ffff:${address.v4}`

const isPort = (port: number | undefined): port is number =>
  port !== undefined && Number.isInteger(port) && port >= 0 && port <= 65535

/**
 * The header nib sends for a client connection: the client (`remote*`) as source, the address it reached (`local*`)
 * as destination. When both ends are IPv4-mapped (`::ffff:a.b.c.d`, a dual-stack listener's IPv4 client), the header
 * is TCP4 `a.b.c.d`: the client is an IPv4 client, and servers log it as such. (HAProxy 2.6 does not: it sends TCP6
 * `::ffff:a.b.c.d` for that client, which `decode` returns as it is.) If one end is IPv4 and the other IPv6, both go
 * as TCP6, the IPv4 one mapped. A missing or non-IP field (a closed socket, a Unix socket) gives `Local`.
 *
 * @category constructors
 */
export const fromSocket = (socket: SocketFields): Header => {
  const { localAddress, localPort, remoteAddress, remotePort } = socket
  if (remoteAddress === undefined || localAddress === undefined || !isPort(remotePort) || !isPort(localPort)) {
    return local
  }
  const source = classify(remoteAddress)
  const destination = classify(localAddress)
  if (source === undefined || destination === undefined) return local
  if ("v4" in source && "v4" in destination) {
    return {
      _tag: "Proxied",
      family: "TCP4",
      source: { address: source.v4, port: remotePort },
      destination: { address: destination.v4, port: localPort }
    }
  }
  return {
    _tag: "Proxied",
    family: "TCP6",
    source: { address: asV6(source), port: remotePort },
    destination: { address: asV6(destination), port: localPort }
  }
}
