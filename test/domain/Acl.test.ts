import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import * as Acl from "../../src/domain/Acl.ts"

const int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

/** Parses an `acl ...` or `no acl ...` line into `table`, as the control port and the config reader do. */
const run = (table: Acl.Table, line: string): void => {
  const words = line.split(" ")
  if (words[0] === "no") {
    const parsed = Acl.parseNoAcl(words.slice(2))
    assert.strictEqual(parsed._tag, "Ok", `${line}: ${parsed._tag === "Error" ? parsed.message : ""}`)
    if (parsed._tag === "Ok") Acl.clear(table, parsed.list)
  } else {
    const parsed = Acl.parseCommand(words.slice(1))
    assert.strictEqual(parsed._tag, "Ok", `${line}: ${parsed._tag === "Error" ? parsed.message : ""}`)
    if (parsed._tag === "Ok") Acl.add(table, parsed.list, parsed.entry)
  }
}

const tableOf = (...lines: ReadonlyArray<string>): Acl.Table => {
  const table = Acl.makeTable()
  for (const line of lines) run(table, line)
  return table
}

const entryOf = (...args: ReadonlyArray<string>): Acl.Entry => {
  const parsed = Acl.parseCommand(args)
  assert.strictEqual(parsed._tag, "Ok", parsed._tag === "Error" ? parsed.message : "")
  return (parsed as Acl.AclCommand).entry
}

const errorOf = (parsed: Acl.AclCommand | Acl.NoAclCommand | Acl.ParseError): string => {
  assert.strictEqual(parsed._tag, "Error", `expected an error, got ${JSON.stringify(parsed, (_, v) => String(v))}`)
  return (parsed as Acl.ParseError).message
}

/** An IPv6 address given as eight groups, as a string of 128 bits. */
const bits = (groups: ReadonlyArray<number>): string => groups.map((g) => g.toString(2).padStart(16, "0")).join("")

/** 128 bits as an IPv6 address in full form. */
const bitsToText = (b: string): string =>
  Array.from({ length: 8 }, (_, i) => parseInt(b.slice(16 * i, 16 * i + 16), 2).toString(16)).join(":")

describe("Acl.makeTable", () => {
  it("has ten empty lists", () => {
    const table = Acl.makeTable()
    assert.strictEqual(Acl.ACLS_MAX, 10)
    assert.strictEqual(table.lists.length, 10)
    for (let n = 0; n < 10; n++) assert.deepStrictEqual(Acl.entries(table, n), [])
  })

  it("every list permits everyone while empty", () => {
    const table = Acl.makeTable()
    for (let n = 0; n < 10; n++) {
      assert.isTrue(Acl.matches(table, n, "10.1.2.3"))
      assert.isTrue(Acl.matches(table, n, "2001:db8::1"))
    }
  })
})

describe("Acl.add and Acl.clear", () => {
  it("appends entries in order, to one list only", () => {
    const table = Acl.makeTable()
    const first = Acl.ipv4("permit", 0x0a000001)
    const second = Acl.country("deny", "SE")
    assert.isTrue(Acl.add(table, 3, first))
    assert.isTrue(Acl.add(table, 3, second))
    assert.deepStrictEqual(Acl.entries(table, 3), [first, second])
    assert.deepStrictEqual(Acl.entries(table, 2), [])
    assert.deepStrictEqual(Acl.entries(table, 4), [])
  })

  it("clear empties one list, which then permits everyone", () => {
    const table = tableOf("acl 1 permit 127.0.0.1", "acl 2 permit 127.0.0.1")
    assert.isFalse(Acl.matches(table, 1, "127.0.0.2"))
    assert.isTrue(Acl.clear(table, 1))
    assert.deepStrictEqual(Acl.entries(table, 1), [])
    assert.isTrue(Acl.matches(table, 1, "127.0.0.2"))
    assert.strictEqual(Acl.entries(table, 2).length, 1)
  })

  it("ignore list numbers outside 0..9", () => {
    const table = Acl.makeTable()
    for (const list of [-1, 10, 1.5, Number.NaN]) {
      assert.isFalse(Acl.add(table, list, Acl.ipv4("deny", 0)))
      assert.isFalse(Acl.clear(table, list))
      assert.deepStrictEqual(Acl.entries(table, list), [])
    }
    assert.deepStrictEqual(Acl.render(table), Acl.render(Acl.makeTable()))
  })
})

describe("Acl.parseCommand", () => {
  it("an IPv4 address with the default mask 255.255.255.255", () => {
    assert.deepStrictEqual(Acl.parseCommand(["1", "permit", "127.0.0.1"]), {
      _tag: "Ok",
      list: 1,
      entry: { _tag: "Ipv4", action: "permit", ip: 0x7f000001, mask: 0xffffffff }
    })
  })

  it("an IPv4 address and mask, kept as written (the address is not masked)", () => {
    assert.deepStrictEqual(Acl.parseCommand(["9", "deny", "10.1.2.3", "255.0.0.0"]), {
      _tag: "Ok",
      list: 9,
      entry: { _tag: "Ipv4", action: "deny", ip: 0x0a010203, mask: 0xff000000 }
    })
    assert.deepStrictEqual(entryOf("0", "permit", "0.0.0.0", "0.0.0.0"), Acl.ipv4("permit", 0, 0))
  })

  it("IPv4 addresses and masks in every inet_aton form", () => {
    assert.deepStrictEqual(entryOf("1", "permit", "10.1", "0xffffff00"), Acl.ipv4("permit", 0x0a000001, 0xffffff00))
    assert.deepStrictEqual(entryOf("1", "permit", "10.1.2", "0"), Acl.ipv4("permit", 0x0a010002, 0))
    assert.deepStrictEqual(entryOf("1", "permit", "0177.0.0.01"), Acl.ipv4("permit", 0x7f000001))
    assert.deepStrictEqual(entryOf("1", "permit", "2130706433"), Acl.ipv4("permit", 0x7f000001))
    assert.deepStrictEqual(entryOf("1", "permit", "0x7F.0X0.0.1"), Acl.ipv4("permit", 0x7f000001))
    assert.deepStrictEqual(entryOf("1", "permit", "255.255.255.255"), Acl.ipv4("permit", 0xffffffff))
  })

  it("an IPv6 address with the default prefix length 128", () => {
    assert.deepStrictEqual(Acl.parseCommand(["2", "deny", "::1"]), {
      _tag: "Ok",
      list: 2,
      entry: { _tag: "Ipv6", action: "deny", address: 1n, prefixLength: 128 }
    })
  })

  it("an IPv6 address with a prefix length, in any textual form", () => {
    const expected = Acl.ipv6("permit", 0x20010db8n << 96n, 32)
    for (const text of ["2001:db8::", "2001:DB8:0:0:0:0:0:0", "2001:0db8:0000::0", "2001:db8:0::0:0:0:0"]) {
      assert.deepStrictEqual(entryOf("4", "permit", `${text}/32`), expected, text)
    }
    assert.deepStrictEqual(entryOf("4", "permit", "::/0"), Acl.ipv6("permit", 0n, 0))
    assert.deepStrictEqual(
      entryOf("4", "permit", "1:2:3:4:5:6:7::"),
      Acl.ipv6("permit", 0x00010002000300040005000600070000n)
    )
    assert.deepStrictEqual(
      entryOf("4", "permit", "::2:3:4:5:6:7:8"),
      Acl.ipv6("permit", 0x00000002000300040005000600070008n)
    )
  })

  it("IPv6 addresses with an embedded IPv4 tail, mapped or not", () => {
    assert.deepStrictEqual(entryOf("5", "deny", "::ffff:10.0.0.0/104"), Acl.ipv6("deny", 0xffff0a000000n, 104))
    assert.deepStrictEqual(
      entryOf("5", "deny", "64:ff9b::192.0.2.33"),
      Acl.ipv6("deny", (0x64ff9bn << 96n) | 0xc0000221n)
    )
    assert.deepStrictEqual(
      entryOf("5", "deny", "1:2:3:4:5:6:1.2.3.4"),
      Acl.ipv6("deny", 0x00010002000300040005000601020304n)
    )
  })

  it("a country code", () => {
    assert.deepStrictEqual(Acl.parseCommand(["7", "deny", "country", "SE"]), {
      _tag: "Ok",
      list: 7,
      entry: { _tag: "Country", action: "deny", country: "SE" }
    })
  })

  it("a missing, non-numeric or out-of-range list number", () => {
    assert.strictEqual(errorOf(Acl.parseCommand([])), "acl: expected list number")
    assert.strictEqual(errorOf(Acl.parseCommand(["x", "permit", "1.2.3.4"])), "acl: bogus list number 'x'")
    assert.strictEqual(errorOf(Acl.parseCommand(["1x", "permit", "1.2.3.4"])), "acl: bogus list number '1x'")
    assert.strictEqual(errorOf(Acl.parseCommand(["10", "permit", "1.2.3.4"])), "acl: list number 10 outside 0..9")
    assert.strictEqual(errorOf(Acl.parseCommand(["-1", "permit", "1.2.3.4"])), "acl: list number -1 outside 0..9")
  })

  it("anything but permit or deny", () => {
    assert.strictEqual(errorOf(Acl.parseCommand(["1"])), "acl: expected permit|deny")
    assert.strictEqual(errorOf(Acl.parseCommand(["1", "allow", "1.2.3.4"])), "acl: expected permit|deny")
    assert.strictEqual(errorOf(Acl.parseCommand(["1", "PERMIT", "1.2.3.4"])), "acl: expected permit|deny")
  })

  it("a missing address", () => {
    assert.strictEqual(errorOf(Acl.parseCommand(["1", "permit"])), "acl: expected address")
  })

  it("a bogus IPv4 address, in pen's words", () => {
    for (const text of ["1.2.3.256", "1.2.3.4.5", "256.0.0.1", "1.2.65536", "1.16777216", "4294967296", "", "1..2"]) {
      assert.strictEqual(errorOf(Acl.parseCommand(["1", "permit", text])), `acl: bogus address '${text}'`)
    }
    for (const text of ["localhost", "1.2.3.4.", "08.0.0.1", "0x", "-1", "10.0.0.0/8", " 1.2.3.4"]) {
      assert.strictEqual(errorOf(Acl.parseCommand(["1", "permit", text])), `acl: bogus address '${text}'`)
    }
  })

  it("a bogus mask, in pen's words", () => {
    for (const text of ["255.255.255.256", "/24", "24x", "mask"]) {
      assert.strictEqual(errorOf(Acl.parseCommand(["1", "deny", "10.0.0.0", text])), `acl: bogus mask '${text}'`)
    }
  })

  it("a bogus IPv6 address, in pen's words", () => {
    for (const text of ["1::2::3", ":::", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "g::1", "fe80::1%eth0"]) {
      assert.strictEqual(errorOf(Acl.parseCommand(["1", "permit", text])), `acl: can't convert address ${text}`)
    }
    for (
      const text of ["::1.2.3", "::1.2.3.04", "::256.1.1.1", "1.2.3.4::", "1:2:3:4:5:6:7:1.2.3.4", ":1:2:3:4:5:6:7"]
    ) {
      assert.strictEqual(errorOf(Acl.parseCommand(["1", "permit", text])), `acl: can't convert address ${text}`)
    }
    assert.strictEqual(errorOf(Acl.parseCommand(["1", "permit", "1::x/64"])), "acl: can't convert address 1::x")
  })

  it("a bad IPv6 prefix length", () => {
    for (const length of ["129", "", "-1", "x", "64x", "1000", "/64"]) {
      const message = errorOf(Acl.parseCommand(["1", "permit", `2001:db8::/${length}`]))
      assert.strictEqual(message, `acl: bogus prefix length '${length}'`)
    }
  })

  it("a missing or bogus country code", () => {
    assert.strictEqual(errorOf(Acl.parseCommand(["1", "deny", "country"])), "acl: expected country")
    assert.strictEqual(errorOf(Acl.parseCommand(["1", "deny", "country", "SWE"])), "acl: bogus country 'SWE'")
    assert.strictEqual(errorOf(Acl.parseCommand(["1", "deny", "country", "S"])), "acl: bogus country 'S'")
  })

  it("words left over", () => {
    assert.strictEqual(errorOf(Acl.parseCommand(["1", "deny", "10.0.0.0", "255.0.0.0", "x"])), "acl: unexpected 'x'")
    assert.strictEqual(errorOf(Acl.parseCommand(["1", "deny", "::1", "64"])), "acl: unexpected '64'")
    assert.strictEqual(errorOf(Acl.parseCommand(["1", "deny", "country", "SE", "NO"])), "acl: unexpected 'NO'")
  })
})

describe("Acl.parseNoAcl", () => {
  it("takes the list number", () => {
    assert.deepStrictEqual(Acl.parseNoAcl(["0"]), { _tag: "Ok", list: 0 })
    assert.deepStrictEqual(Acl.parseNoAcl(["9"]), { _tag: "Ok", list: 9 })
  })

  it("requires a list number 0..9 and nothing after it (pen crashes without one)", () => {
    assert.strictEqual(errorOf(Acl.parseNoAcl([])), "no acl: expected list number")
    assert.strictEqual(errorOf(Acl.parseNoAcl(["x"])), "no acl: bogus list number 'x'")
    assert.strictEqual(errorOf(Acl.parseNoAcl(["10"])), "no acl: list number 10 outside 0..9")
    assert.strictEqual(errorOf(Acl.parseNoAcl(["-1"])), "no acl: list number -1 outside 0..9")
    assert.strictEqual(errorOf(Acl.parseNoAcl(["1", "2"])), "no acl: unexpected '2'")
  })
})

describe("Acl.matches", () => {
  it("pen, verified: acl 1 permit 127.0.0.1 denies 127.0.0.2", () => {
    const table = tableOf("acl 1 permit 127.0.0.1")
    assert.isTrue(Acl.matches(table, 1, "127.0.0.1"))
    assert.isFalse(Acl.matches(table, 1, "127.0.0.2"))
  })

  it("pen, verified: deny 127.0.0.0/255.255.255.0 then permit all denies 127.0.0.3, permits 127.0.1.3", () => {
    const table = tableOf("acl 2 deny 127.0.0.0 255.255.255.0", "acl 2 permit 0.0.0.0 0.0.0.0")
    assert.isFalse(Acl.matches(table, 2, "127.0.0.3"))
    assert.isTrue(Acl.matches(table, 2, "127.0.1.3"))
  })

  it("pen, verified: acl 3 permit 127.0.0.2 lets 127.0.0.2 in and keeps 127.0.0.1 out", () => {
    const table = tableOf("acl 3 permit 127.0.0.2")
    assert.isFalse(Acl.matches(table, 3, "127.0.0.1"))
    assert.isTrue(Acl.matches(table, 3, "127.0.0.2"))
  })

  it("an IPv4 entry whose address has bits outside its mask never matches", () => {
    const table = tableOf("acl 1 permit 10.1.2.3 255.0.0.0")
    for (const client of ["10.1.2.3", "10.0.0.0", "10.9.9.9"]) {
      assert.isFalse(Acl.matches(table, 1, client), client)
    }
    // The same entry as deny: it never matches, so every client gets the opposite of deny.
    assert.isTrue(Acl.matches(tableOf("acl 1 deny 10.1.2.3 255.0.0.0"), 1, "10.1.2.3"))
  })

  it("an IPv4 entry matches when client & mask equals its address", () => {
    const table = tableOf("acl 1 deny 192.168.0.0 255.255.0.0")
    assert.isFalse(Acl.matches(table, 1, "192.168.200.7"))
    assert.isTrue(Acl.matches(table, 1, "192.169.0.1"))
    // A non-contiguous mask is applied as it is.
    const odd = tableOf("acl 1 permit 10.0.0.1 255.0.0.255")
    assert.isTrue(Acl.matches(odd, 1, "10.200.100.1"))
    assert.isFalse(Acl.matches(odd, 1, "10.200.100.2"))
    // High addresses (sign bit set) compare as unsigned.
    assert.isTrue(Acl.matches(tableOf("acl 1 permit 255.255.255.255"), 1, "255.255.255.255"))
    assert.isTrue(Acl.matches(tableOf("acl 1 permit 224.0.0.0 240.0.0.0"), 1, "239.1.2.3"))
  })

  it("the first matching entry decides", () => {
    const table = tableOf("acl 1 permit 10.0.0.1", "acl 1 deny 10.0.0.0 255.0.0.0", "acl 1 permit 0.0.0.0 0.0.0.0")
    assert.isTrue(Acl.matches(table, 1, "10.0.0.1"))
    assert.isFalse(Acl.matches(table, 1, "10.0.0.2"))
    assert.isTrue(Acl.matches(table, 1, "11.0.0.1"))
  })

  it("no match returns the opposite of the last entry's action", () => {
    assert.isFalse(Acl.matches(tableOf("acl 1 deny 10.0.0.1", "acl 1 permit 10.0.0.2"), 1, "10.0.0.3"))
    assert.isTrue(Acl.matches(tableOf("acl 1 permit 10.0.0.1", "acl 1 deny 10.0.0.2"), 1, "10.0.0.3"))
  })

  it("entries of the other family are skipped but still set the running value", () => {
    // An IPv4 client: the trailing IPv6 deny cannot match it, but makes "no match" mean permit.
    const v4 = tableOf("acl 1 permit 10.0.0.1", "acl 1 deny ::1")
    assert.isTrue(Acl.matches(v4, 1, "10.0.0.1"))
    assert.isTrue(Acl.matches(v4, 1, "10.0.0.2"))
    assert.isFalse(Acl.matches(v4, 1, "::1"))
    assert.isTrue(Acl.matches(v4, 1, "::2"))
    // The other way round: a trailing IPv4 permit makes "no match" mean deny for IPv6 clients too.
    const v6 = tableOf("acl 2 deny 2001:db8::/32", "acl 2 permit 10.0.0.1")
    assert.isFalse(Acl.matches(v6, 2, "2001:db8::5"))
    assert.isFalse(Acl.matches(v6, 2, "2001:db9::5"))
    assert.isTrue(Acl.matches(v6, 2, "10.0.0.1"))
    assert.isFalse(Acl.matches(v6, 2, "10.0.0.2"))
  })

  it("country entries never match but still set the running value", () => {
    assert.isTrue(Acl.matches(tableOf("acl 1 deny country SE"), 1, "10.0.0.1"))
    assert.isTrue(Acl.matches(tableOf("acl 1 deny country SE"), 1, "2001:db8::1"))
    assert.isFalse(Acl.matches(tableOf("acl 1 permit country SE"), 1, "10.0.0.1"))
    assert.isFalse(Acl.matches(tableOf("acl 1 deny 10.0.0.1", "acl 1 permit country SE"), 1, "10.0.0.2"))
    assert.isTrue(Acl.matches(tableOf("acl 1 permit 10.0.0.1", "acl 1 deny country SE"), 1, "10.0.0.1"))
  })

  it("an IPv6 entry compares the first prefixLength bits", () => {
    const table = tableOf("acl 1 deny 2001:db8::/32", "acl 1 permit ::/0")
    assert.isFalse(Acl.matches(table, 1, "2001:db8::1"))
    assert.isFalse(Acl.matches(table, 1, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"))
    assert.isTrue(Acl.matches(table, 1, "2001:db9::1"))
    assert.isTrue(Acl.matches(table, 1, "::1"))
    // Prefix lengths that do not fall on a group boundary.
    const odd = tableOf("acl 2 permit fe80::/10")
    assert.isTrue(Acl.matches(odd, 2, "fe80::1"))
    assert.isTrue(Acl.matches(odd, 2, "febf:ffff::1"))
    assert.isFalse(Acl.matches(odd, 2, "fec0::1"))
    // The default /128 is one address.
    const one = tableOf("acl 3 permit ::1")
    assert.isTrue(Acl.matches(one, 3, "0:0:0:0:0:0:0:1"))
    assert.isFalse(Acl.matches(one, 3, "::2"))
  })

  it("an IPv6 entry whose address has bits past its prefix never matches", () => {
    const table = tableOf("acl 1 permit 2001:db8::1/32")
    assert.isFalse(Acl.matches(table, 1, "2001:db8::1"))
    assert.isFalse(Acl.matches(table, 1, "2001:db8::"))
  })

  it.prop(
    "an IPv6 entry agrees with a bit-by-bit comparison of the first prefixLength bits",
    {
      entry: Schema.Array(int(0, 0xffff)).check(Schema.isMinLength(8), Schema.isMaxLength(8)),
      client: Schema.Array(int(0, 0xffff)).check(Schema.isMinLength(8), Schema.isMaxLength(8)),
      length: int(0, 128),
      share: int(0, 128)
    },
    ({ client, entry, length, share }) => {
      // Zero the entry's bits past the prefix, and make the client share its first `share` bits with the entry.
      const entryBits = bits(entry).slice(0, length).padEnd(128, "0")
      const clientBits = entryBits.slice(0, share) + bits(client).slice(share)
      const table = tableOf(`acl 1 permit ${bitsToText(entryBits)}/${length}`)
      // An IPv4-mapped client (::ffff:a.b.c.d) is an IPv4 client: no IPv6 entry applies to it, so it gets the opposite
      // of the list's last entry (a deny). The generators favour 0 and 0xffff, so such clients do come up.
      const mapped = clientBits.startsWith("0".repeat(80) + "1".repeat(16))
      const expected = !mapped && clientBits.slice(0, length) === entryBits.slice(0, length)
      assert.strictEqual(Acl.matches(table, 1, bitsToText(clientBits)), expected)
    }
  )

  it("no IPv6 entry applies to an IPv4-mapped client, not even ::/0 (the property above relies on it)", () => {
    const table = tableOf("acl 1 permit ::/0")
    assert.isTrue(Acl.matches(table, 1, "2001:db8::1"))
    assert.isFalse(Acl.matches(table, 1, "::ffff:1.2.3.4"))
    assert.isFalse(Acl.matches(table, 1, "::ffff:0:0"))
  })

  it("an IPv4-mapped IPv6 client is the IPv4 client", () => {
    const table = tableOf("acl 1 permit 127.0.0.1")
    assert.isTrue(Acl.matches(table, 1, "::ffff:127.0.0.1"))
    assert.isTrue(Acl.matches(table, 1, "::FFFF:7f00:1"))
    assert.isTrue(Acl.matches(table, 1, { family: 6, address: "::ffff:127.0.0.1" }))
    assert.isTrue(Acl.matches(table, 1, { family: "IPv6", address: "0:0:0:0:0:ffff:127.0.0.1" }))
    assert.isFalse(Acl.matches(table, 1, "::ffff:127.0.0.2"))
    // IPv6 entries, even mapped ones, do not apply to it.
    const v6 = tableOf("acl 2 deny ::ffff:127.0.0.1")
    assert.isTrue(Acl.matches(v6, 2, "::ffff:127.0.0.1"))
    // An IPv4-compatible address (::a.b.c.d) is an IPv6 client.
    assert.isFalse(Acl.matches(table, 1, "::127.0.0.1"))
  })

  it("accepts Node's remoteAddress forms, with or without the family", () => {
    const table = tableOf("acl 1 deny 10.0.0.1", "acl 1 deny fe80::/10")
    assert.isFalse(Acl.matches(table, 1, { family: 4, address: "10.0.0.1" }))
    assert.isFalse(Acl.matches(table, 1, { family: "IPv4", address: "10.0.0.1" }))
    assert.isTrue(Acl.matches(table, 1, { family: "IPv4", address: "10.0.0.2" }))
    assert.isFalse(Acl.matches(table, 1, "fe80::1%eth0"))
    assert.isFalse(Acl.matches(table, 1, { family: 6, address: "fe80::1%2" }))
    assert.isTrue(Acl.matches(table, 1, { family: 6, address: "2001:db8::1" }))
  })

  it("Unix-socket clients are always permitted", () => {
    const table = tableOf("acl 1 permit 10.0.0.1", "acl 2 deny 0.0.0.0 0.0.0.0", "acl 2 deny ::/0")
    assert.isTrue(Acl.matches(table, 1, { family: "unix" }))
    assert.isTrue(Acl.matches(table, 2, { family: "unix" }))
    // Node's remoteAddress is undefined for a Unix-socket client.
    assert.isTrue(Acl.matches(table, 1, undefined))
    assert.isTrue(Acl.matches(table, 2, undefined))
  })

  it("a list number outside 0..9 denies, 10 included", () => {
    const table = Acl.makeTable()
    for (const list of [-1, 10, 11, 2.5]) {
      assert.isFalse(Acl.matches(table, list, "10.0.0.1"), String(list))
      assert.isFalse(Acl.matches(table, list, { family: "unix" }), String(list))
    }
  })

  it("a client address that cannot be parsed denies", () => {
    const table = Acl.makeTable()
    for (const client of ["", "localhost", "10.0.0", "010.0.0.1", "1::2::3", "/tmp/nib.sock"]) {
      assert.isFalse(Acl.matches(table, 0, client), client)
    }
  })
})

describe("Acl.render", () => {
  it("an empty table is no acl 0 .. no acl 9", () => {
    assert.deepStrictEqual(Acl.render(Acl.makeTable()), Array.from({ length: 10 }, (_, n) => `no acl ${n}`))
  })

  it("writes each list's entries after its no acl line, as pen's write does", () => {
    const table = tableOf(
      "acl 1 permit 127.0.0.1",
      "acl 2 deny 127.0.0.0 255.255.255.0",
      "acl 2 permit 0 0",
      "acl 2 deny 2001:DB8:0:0::/32",
      "acl 2 permit ::1",
      "acl 9 deny country SE"
    )
    assert.deepStrictEqual(Acl.render(table), [
      "no acl 0",
      "no acl 1",
      "acl 1 permit 127.0.0.1 255.255.255.255",
      "no acl 2",
      "acl 2 deny 127.0.0.0 255.255.255.0",
      "acl 2 permit 0.0.0.0 0.0.0.0",
      "acl 2 deny 2001:db8::/32",
      "acl 2 permit ::1/128",
      "no acl 3",
      "no acl 4",
      "no acl 5",
      "no acl 6",
      "no acl 7",
      "no acl 8",
      "no acl 9",
      "acl 9 deny country SE"
    ])
  })

  it("writes IPv6 addresses as glibc's inet_ntop does", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["::", "::"],
      ["0:0:0:0:0:0:0:1", "::1"],
      ["1:0:0:0:0:0:0:0", "1::"],
      ["2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
      ["00AB:0:0:0:0:0:0:CDEF", "ab::cdef"],
      ["::ffff:10.0.0.1", "::ffff:10.0.0.1"],
      ["::ffff:0:1", "::ffff:0.0.0.1"],
      ["::1:0", "::0.1.0.0"],
      ["::10.0.0.1", "::10.0.0.1"],
      ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"]
    ]
    for (const [input, output] of cases) {
      assert.strictEqual(Acl.formatIpv6(Acl.parseIpv6(input)!), output, input)
    }
  })

  it("render then parse gives the same table", () => {
    const table = tableOf(
      "acl 0 deny 10.1.2.3 255.0.0.0",
      "acl 0 permit 0.0.0.0 0.0.0.0",
      "acl 3 permit 255.255.255.255 0xfffffffe",
      "acl 3 deny ::ffff:10.0.0.0/104",
      "acl 3 deny fe80::1/10",
      "acl 5 permit country NO",
      "acl 5 deny ::/0",
      "acl 9 permit 1:2:3:4:5:6:7:8/64"
    )
    const lines = Acl.render(table)
    const again = Acl.makeTable()
    for (const line of lines) run(again, line)
    assert.deepStrictEqual(again, table)
    assert.deepStrictEqual(Acl.render(again), lines)
  })

  it("no acl lines empty the lists they name when a rendered table is read over another", () => {
    const target = tableOf("acl 4 permit 10.0.0.1", "acl 4 deny 10.0.0.2")
    const source = tableOf("acl 4 deny 10.0.0.3")
    for (const line of Acl.render(source)) run(target, line)
    assert.deepStrictEqual(target, source)
  })

  const octet = int(0, 255)
  const Ipv4Line = Schema.Struct({
    list: int(0, 9),
    permit: Schema.Boolean,
    ip: Schema.Tuple([octet, octet, octet, octet]),
    mask: Schema.Tuple([octet, octet, octet, octet])
  })
  const Ipv6Line = Schema.Struct({
    list: int(0, 9),
    permit: Schema.Boolean,
    groups: Schema.Array(int(0, 0xffff)).check(Schema.isMinLength(8), Schema.isMaxLength(8)),
    zeros: Schema.Array(int(0, 7)),
    length: int(0, 128)
  })

  it.prop(
    "random tables survive render then parse",
    {
      v4: Schema.Array(Ipv4Line).check(Schema.isMaxLength(12)),
      v6: Schema.Array(Ipv6Line).check(Schema.isMaxLength(12))
    },
    ({ v4, v6 }) => {
      const table = Acl.makeTable()
      for (const { ip, list, mask, permit } of v4) {
        run(table, `acl ${list} ${permit ? "permit" : "deny"} ${ip.join(".")} ${mask.join(".")}`)
      }
      for (const { groups, length, list, permit, zeros } of v6) {
        // Zero some groups so that :: and embedded IPv4 forms show up.
        const address = groups.map((g, i) => (zeros.includes(i) ? 0 : g).toString(16)).join(":")
        run(table, `acl ${list} ${permit ? "permit" : "deny"} ${address}/${length}`)
      }
      const again = Acl.makeTable()
      for (const line of Acl.render(table)) run(again, line)
      assert.deepStrictEqual(again, table)
    }
  )
})
