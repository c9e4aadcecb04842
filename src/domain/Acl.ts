/**
 * pen's access control lists (acl.c): ten numbered lists of permit/deny entries, checked against a client address by
 * `client_acl`, `control_acl` and each server's `acl`. This module holds the table, the `acl` / `no acl` command
 * syntax, pen's evaluation rules and the lines pen's `write` command saves.
 *
 * Sans-IO: addresses are parsed here, by hand, with the rules of the C functions pen calls (`inet_aton` for IPv4
 * entries, `inet_pton` for IPv6 ones, `inet_ntop` to write them back), so nothing touches `node:net`.
 */

/** Number of lists, numbered 0..ACLS_MAX-1 (pen's `ACLS_MAX`). @category constants */
export const ACLS_MAX = 10

/** What an entry does to a client it matches. @category models */
export type Action = "permit" | "deny"

/**
 * An IPv4 entry: a client matches when `(client & mask) === ip`. The ip is kept as written, not masked, exactly as
 * pen keeps it, so an entry with host bits outside its mask (`acl 1 permit 10.1.2.3 255.0.0.0`) never matches.
 *
 * @category models
 */
export interface Ipv4Entry {
  readonly _tag: "Ipv4"
  readonly action: Action
  /** The address as an unsigned 32-bit number, first octet most significant. */
  readonly ip: number
  /** Any 32-bit value (pen does not require a contiguous mask); 255.255.255.255 when not given. */
  readonly mask: number
}

/**
 * An IPv6 entry: a client matches when its first `prefixLength` bits, the rest zeroed, equal `address`. As with IPv4,
 * the address is kept as written: one with bits set past the prefix (`2001:db8::1/32`) never matches (pen's
 * `(client & mask) == ip` byte by byte).
 *
 * @category models
 */
export interface Ipv6Entry {
  readonly _tag: "Ipv6"
  readonly action: Action
  /** The address as an unsigned 128-bit number, first byte most significant. */
  readonly address: bigint
  /** 0..128; 128 when not given. */
  readonly prefixLength: number
}

/**
 * A GeoIP country entry. nib has no GeoIP database, so the entry is stored and written back but never matches a
 * client, which is what pen does when built without GeoIP or when its database cannot be opened. It still takes part
 * in the evaluation: see {@link matches}.
 *
 * @category models
 */
export interface CountryEntry {
  readonly _tag: "Country"
  readonly action: Action
  /** The two-character country code as written (GeoIP uses upper case). */
  readonly country: string
}

/** One entry of a list. @category models */
export type Entry = Ipv4Entry | Ipv6Entry | CountryEntry

/** The ten lists. Mutable on purpose, like pen's: `acl` appends, `no acl` empties. @category models */
export interface Table {
  readonly lists: ReadonlyArray<Array<Entry>>
}

/**
 * A client to check, in any form Node's `socket.remoteAddress` takes: an IP address as text (including
 * `::ffff:127.0.0.1` and `fe80::1%eth0`), or `undefined`, which Node gives for a Unix-socket client and which is
 * treated as one. (Node also gives `undefined` for a socket that is already closed; such a socket carries no data, so
 * letting it through does no harm.) The address may come with its family, and `{ family: "unix" }` says "Unix
 * socket" explicitly. The family is always read from the address itself, so `{ family: 6, address:
 * "::ffff:10.0.0.1" }` is the IPv4 client 10.0.0.1.
 *
 * @category models
 */
export type Client =
  | string
  | undefined
  | { readonly family: 4 | 6 | "IPv4" | "IPv6"; readonly address: string }
  | { readonly family: "unix" }

/** A parsed `acl N ...` command. @category models */
export interface AclCommand {
  readonly _tag: "Ok"
  readonly list: number
  readonly entry: Entry
}

/** A parsed `no acl N` command. @category models */
export interface NoAclCommand {
  readonly _tag: "Ok"
  readonly list: number
}

/** A command that could not be parsed, and why, in pen's words where pen has them. @category models */
export interface ParseError {
  readonly _tag: "Error"
  readonly message: string
}

/** Makes a table of {@link ACLS_MAX} empty lists. @category constructors */
export const makeTable = (): Table => ({ lists: Array.from({ length: ACLS_MAX }, () => []) })

/** Builds an IPv4 entry; the mask defaults to 255.255.255.255 and neither value is masked. @category constructors */
export const ipv4 = (action: Action, ip: number, mask: number = 0xffffffff): Ipv4Entry => ({
  _tag: "Ipv4",
  action,
  ip: ip >>> 0,
  mask: mask >>> 0
})

/** Builds an IPv6 entry; the prefix length defaults to 128 and the address is not masked. @category constructors */
export const ipv6 = (action: Action, address: bigint, prefixLength: number = 128): Ipv6Entry => ({
  _tag: "Ipv6",
  action,
  address: BigInt.asUintN(128, address),
  prefixLength
})

/** Builds a country entry. @category constructors */
export const country = (action: Action, code: string): CountryEntry => ({ _tag: "Country", action, country: code })

const isListNumber = (list: number): boolean => Number.isInteger(list) && list >= 0 && list < ACLS_MAX

/** The entries of `list`, in order; none for a number outside 0..9. @category getters */
export const entries = (table: Table, list: number): ReadonlyArray<Entry> =>
  isListNumber(list) ? table.lists[list]! : []

/** Appends `entry` to `list`; returns false, changing nothing, when `list` is outside 0..9. @category operations */
export const add = (table: Table, list: number, entry: Entry): boolean => {
  if (!isListNumber(list)) return false
  table.lists[list]!.push(entry)
  return true
}

/** Empties `list`, which then permits everyone; false when `list` is outside 0..9. @category operations */
export const clear = (table: Table, list: number): boolean => {
  if (!isListNumber(list)) return false
  table.lists[list]!.length = 0
  return true
}

// ---------------------------------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------------------------------

/** One part of an `inet_aton` address: C's `strtoul(.., 0)` syntax, 0x hexadecimal, leading 0 octal, decimal. */
const ATON_PART = /^(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/
/** Largest value of the last part, by number of parts: `a`, `a.b` (24 bits), `a.b.c` (16 bits), `a.b.c.d`. */
const ATON_LAST_MAX = [0xffffffff, 0xffffff, 0xffff, 0xff]

const atonPart = (text: string): number =>
  /^0[xX]/.test(text) ? parseInt(text.slice(2), 16) : text.length > 1 && text[0] === "0"
    ? parseInt(text, 8)
    : parseInt(text, 10)

/**
 * Parses an IPv4 address as glibc's `inet_aton` does, which is what pen uses for `acl` addresses and masks: one to
 * four parts separated by dots, each decimal, octal (leading 0) or hexadecimal (0x), the last part filling the
 * remaining bytes (`10.1` is 10.0.0.1, `0` is 0.0.0.0, `0xffffff00` is 255.255.255.0). Returns the unsigned 32-bit
 * value, first octet most significant, or undefined.
 *
 * @category parsing
 */
export const parseIpv4 = (text: string): number | undefined => {
  const parts = text.split(".")
  if (parts.length > 4 || !parts.every((part) => ATON_PART.test(part))) return undefined
  const values = parts.map(atonPart)
  const last = values.pop()!
  if (values.some((value) => value > 0xff) || last > ATON_LAST_MAX[values.length]!) return undefined
  let result = 0
  values.forEach((value, i) => (result += value * 2 ** (24 - 8 * i)))
  return result + last
}

/** A strict dotted quad (as `inet_pton` wants it): four decimal octets, no leading zeros. */
const DOTTED_QUAD = /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/

const parseDottedQuad = (text: string): number | undefined => {
  const match = DOTTED_QUAD.exec(text)
  if (match === null) return undefined
  const octets = match.slice(1).map(Number)
  if (octets.some((octet) => octet > 255)) return undefined
  return ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/

/** Groups of one side of `::`; the last may be a dotted quad (two groups) when `ipv4Tail` is set. */
const parseGroups = (text: string, ipv4Tail: boolean): Array<number> | undefined => {
  if (text === "") return []
  const pieces = text.split(":")
  const groups: Array<number> = []
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!
    if (HEX_GROUP.test(piece)) {
      groups.push(parseInt(piece, 16))
    } else if (ipv4Tail && i === pieces.length - 1) {
      const quad = parseDottedQuad(piece)
      if (quad === undefined) return undefined
      groups.push(quad >>> 16, quad & 0xffff)
    } else {
      return undefined
    }
  }
  return groups
}

/**
 * Parses an IPv6 address in any textual form `inet_pton` accepts: eight groups of one to four hex digits, one `::`
 * standing for one or more zero groups, and an optional dotted quad as the last 32 bits (`::ffff:10.0.0.1`). Zone
 * ids (`%eth0`) are not accepted. Returns the unsigned 128-bit value or undefined.
 *
 * @category parsing
 */
export const parseIpv6 = (text: string): bigint | undefined => {
  const halves = text.split("::")
  let groups: Array<number> | undefined
  if (halves.length === 1) {
    groups = parseGroups(text, true)
    if (groups === undefined || groups.length !== 8) return undefined
  } else if (halves.length === 2) {
    const head = parseGroups(halves[0]!, false)
    const tail = parseGroups(halves[1]!, true)
    if (head === undefined || tail === undefined || head.length + tail.length > 7) return undefined
    groups = [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail]
  } else {
    return undefined
  }
  return groups.reduce((acc, group) => (acc << 16n) | BigInt(group), 0n)
}

/** Writes an IPv4 address as `inet_ntoa` does: dotted decimal. @category formatting */
export const formatIpv4 = (ip: number): string =>
  [ip >>> 24, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff].join(".")

/**
 * Writes an IPv6 address as glibc's `inet_ntop` does, which is what pen's `write` prints: lower-case hex without
 * leading zeros, the first longest run of two or more zero groups as `::`, and the last 32 bits as a dotted quad for
 * IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) addresses.
 *
 * @category formatting
 */
export const formatIpv6 = (address: bigint): string => {
  const words = Array.from({ length: 8 }, (_, i) => Number((address >> BigInt(112 - 16 * i)) & 0xffffn))
  let bestBase = -1
  let bestLength = 0
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLength) {
      bestBase = i
      bestLength = j - i
    }
    i = j
  }
  if (bestLength < 2) bestBase = -1
  let out = ""
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLength) {
      if (i === bestBase) out += ":"
      continue
    }
    if (i !== 0) out += ":"
    if (i === 6 && bestBase === 0 && (bestLength === 6 || (bestLength === 5 && words[5] === 0xffff))) {
      return out + formatIpv4(Number(address & 0xffffffffn))
    }
    out += words[i]!.toString(16)
  }
  if (bestBase !== -1 && bestBase + bestLength === 8) out += ":"
  return out
}

// ---------------------------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------------------------

const error = (message: string): ParseError => ({ _tag: "Error", message })

const parseList = (command: string, word: string | undefined): number | ParseError => {
  if (word === undefined) return error(`${command}: expected list number`)
  if (!/^[+-]?[0-9]+$/.test(word)) return error(`${command}: bogus list number '${word}'`)
  const list = Number(word)
  if (!isListNumber(list)) return error(`${command}: list number ${word} outside 0..${ACLS_MAX - 1}`)
  return list
}

const COUNTRY_CODE = /^[A-Za-z0-9-]{2}$/

const parseEntry = (action: Action, words: ReadonlyArray<string>): Entry | ParseError => {
  const address = words[0]
  if (address === undefined) return error("acl: expected address")
  let entry: Entry
  let used: number
  if (address === "country") {
    const code = words[1]
    if (code === undefined) return error("acl: expected country")
    if (!COUNTRY_CODE.test(code)) return error(`acl: bogus country '${code}'`)
    entry = country(action, code)
    used = 2
  } else if (address.includes(":")) {
    const slash = address.indexOf("/")
    const text = slash === -1 ? address : address.slice(0, slash)
    const length = slash === -1 ? "128" : address.slice(slash + 1)
    const value = parseIpv6(text)
    if (value === undefined) return error(`acl: can't convert address ${text}`)
    if (!/^[0-9]{1,3}$/.test(length) || Number(length) > 128) return error(`acl: bogus prefix length '${length}'`)
    entry = ipv6(action, value, Number(length))
    used = 1
  } else {
    const ip = parseIpv4(address)
    if (ip === undefined) return error(`acl: bogus address '${address}'`)
    const maskText = words[1]
    const mask = maskText === undefined ? 0xffffffff : parseIpv4(maskText)
    if (mask === undefined) return error(`acl: bogus mask '${maskText}'`)
    entry = ipv4(action, ip, mask)
    used = 2
  }
  if (words.length > used) return error(`acl: unexpected '${words[used]}'`)
  return entry
}

/**
 * Parses the words after `acl`:
 *
 * - `N permit|deny A.B.C.D [MASK]`: an IPv4 entry; address and mask in any `inet_aton` form, mask default
 *   255.255.255.255;
 * - `N permit|deny IPV6[/LEN]`: an IPv6 entry, for any address containing `:`; LEN 0..128, default 128;
 * - `N permit|deny country CC`: a country entry (never matches in nib).
 *
 * N must be 0..9. Where pen would log a message and ignore the command this returns it ("acl: expected
 * permit|deny", "acl: bogus address '%s'", "acl: bogus mask '%s'", "acl: can't convert address %s", "acl: expected
 * country"); where pen silently does something odd (an `atoi` list number, a prefix length past 128, trailing words
 * ignored) it returns an error of its own.
 *
 * @category parsing
 */
export const parseCommand = (args: ReadonlyArray<string>): AclCommand | ParseError => {
  const list = parseList("acl", args[0])
  if (typeof list !== "number") return list
  const action = args[1]
  if (action !== "permit" && action !== "deny") return error("acl: expected permit|deny")
  const entry = parseEntry(action, args.slice(2))
  return entry._tag === "Error" ? entry : { _tag: "Ok", list, entry }
}

/**
 * Parses the words after `no acl`: the number of the list to empty, which is required and must be 0..9 (pen crashes
 * without it and ignores one out of range).
 *
 * @category parsing
 */
export const parseNoAcl = (args: ReadonlyArray<string>): NoAclCommand | ParseError => {
  const list = parseList("no acl", args[0])
  if (typeof list !== "number") return list
  if (args.length > 1) return error(`no acl: unexpected '${args[1]}'`)
  return { _tag: "Ok", list }
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------------------------

type ClientAddress =
  | { readonly family: 4; readonly ip: number }
  | { readonly family: 6; readonly ip: bigint }
  | { readonly family: "unix" }

/** The top 96 bits of an IPv4-mapped address, `::ffff:0:0/96`. */
const MAPPED_PREFIX = 0xffffn

const clientAddress = (client: Client): ClientAddress | undefined => {
  if (client === undefined || (typeof client !== "string" && client.family === "unix")) return { family: "unix" }
  const text = typeof client === "string" ? client : client.address
  if (!text.includes(":")) {
    const ip = parseDottedQuad(text)
    return ip === undefined ? undefined : { family: 4, ip }
  }
  const zone = text.indexOf("%")
  const ip = parseIpv6(zone === -1 ? text : text.slice(0, zone))
  if (ip === undefined) return undefined
  if (ip >> 32n === MAPPED_PREFIX) return { family: 4, ip: Number(ip & 0xffffffffn) }
  return { family: 6, ip }
}

const prefixMask = (length: number): bigint => ((1n << BigInt(length)) - 1n) << BigInt(128 - length)

/**
 * Whether list `list` lets `client` in, by pen's rules (acl.c `match_acl`):
 *
 * - Entries are walked in order, and the first entry that matches the client decides: permit or deny.
 * - Each entry walked sets a running value to its own action, including entries that cannot match this client: those
 *   of the other address family (IPv6 entries for an IPv4 client and the other way round) and country entries, which
 *   never match in nib (no GeoIP).
 * - When no entry matches, the answer is the opposite of the running value, that is of the last entry of the list
 *   whatever its family: a list ending in `deny` permits everyone else, one ending in `permit` denies everyone else.
 * - An empty list permits everyone.
 * - IPv4 entries match when `(client & mask) === ip`, IPv6 entries when the client's first `prefixLength` bits equal
 *   the entry's address with the rest zeroed; neither entry address is masked first (see {@link Ipv4Entry}).
 * - An IPv4-mapped IPv6 client (`::ffff:a.b.c.d`, as Node reports IPv4 clients on a dual-stack socket) is the IPv4
 *   client a.b.c.d: IPv4 entries apply to it, IPv6 entries (even `::ffff:...` ones) do not.
 * - A Unix-socket client (`undefined` or `{ family: "unix" }`) is always permitted (pen has no Unix ACLs).
 * - A list number outside 0..9 denies (pen's `match_acl` also accepts 10, reading past its array; nib does not).
 * - A client address that cannot be parsed denies, as pen does for an unknown address family.
 *
 * @category operations
 */
export const matches = (table: Table, list: number, client: Client): boolean => {
  if (!isListNumber(list)) return false
  const address = clientAddress(client)
  if (address === undefined) return false
  if (address.family === "unix") return true
  let permit = false
  for (const entry of table.lists[list]!) {
    permit = entry.action === "permit"
    switch (entry._tag) {
      case "Ipv4":
        if (address.family === 4 && ((address.ip & entry.mask) >>> 0) === entry.ip) return permit
        break
      case "Ipv6":
        if (address.family === 6 && (address.ip & prefixMask(entry.prefixLength)) === entry.address) return permit
        break
      case "Country":
        break
    }
  }
  return !permit
}

// ---------------------------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------------------------

/** The `acl` line that re-creates `entry` in `list`. @category formatting */
export const formatEntry = (list: number, entry: Entry): string => {
  const head = `acl ${list} ${entry.action}`
  switch (entry._tag) {
    case "Ipv4":
      return `${head} ${formatIpv4(entry.ip)} ${formatIpv4(entry.mask)}`
    case "Ipv6":
      return `${head} ${formatIpv6(entry.address)}/${entry.prefixLength}`
    case "Country":
      return `${head} country ${entry.country}`
  }
}

/**
 * The table as pen's `write` saves it (acl.c `save_acls`), one line per array element, without newlines: for each
 * list 0..9, `no acl N` and then an `acl` line per entry, in order. IPv4 masks are written dotted.
 *
 * @category formatting
 */
export const render = (table: Table): Array<string> =>
  table.lists.flatMap((list, n) => [`no acl ${n}`, ...list.map((entry) => formatEntry(n, entry))])
