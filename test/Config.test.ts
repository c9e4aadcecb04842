import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Config from "../src/Config.ts"
import * as Address from "../src/domain/Address.ts"

const server = (
  port: number,
  limits: Partial<{ softLimit: number; hardLimit: number; weight: number; prio: number }> = {}
) => ({
  endpoint: Address.tcp("127.0.0.1", port),
  softLimit: 0,
  hardLimit: 0,
  weight: 0,
  prio: 0,
  ...limits
})

const valid = {
  ...Config.defaults,
  listen: Address.tcp("0.0.0.0", 8080),
  servers: [server(9001), server(9002, { softLimit: 10, hardLimit: 20, weight: 3, prio: 1 })]
}

/** Decodes `input`, expecting a ConfigError, and returns its message. */
const decodeError = (input: unknown) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(Config.decode(input))
    assert.instanceOf(error, Config.ConfigError)
    assert.strictEqual(error._tag, "ConfigError")
    return error.message
  })

describe("Config.defaults", () => {
  it("are pen's defaults", () => {
    assert.strictEqual(Config.defaults.blacklistSeconds, 30)
    assert.strictEqual(Config.defaults.clientsMax, 2048)
    assert.strictEqual(Config.defaults.connectTimeoutSeconds, 3)
    assert.strictEqual(Config.defaults.trackingSeconds, 0)
    assert.strictEqual(Config.defaults.connectionsMax, 500)
    assert.strictEqual(Config.defaults.backlog, 500)
    assert.isFalse(Config.defaults.roundrobin)
    assert.isFalse(Config.defaults.hash)
    assert.isFalse(Config.defaults.weight)
    assert.isFalse(Config.defaults.prio)
    assert.isFalse(Config.defaults.stubborn)
    assert.isFalse(Config.defaults.foreground)
    assert.strictEqual(Config.defaults.debug, 0)
  })
})

describe("Config.decode", () => {
  it.effect("accepts the defaults with a listen address and servers", () =>
    Effect.gen(function*() {
      const settings = yield* Config.decode(valid)
      assert.deepStrictEqual(settings, valid)
    }))

  it.effect("accepts a Unix listener, a Unix server, an emergency server and listen port 0", () =>
    Effect.gen(function*() {
      const input = {
        ...valid,
        listen: Address.tcp("::", 0),
        servers: [{ ...server(1), endpoint: Address.unix("/tmp/backend.sock") }],
        emergency: server(9999)
      }
      assert.deepStrictEqual(yield* Config.decode(input), input)
      const unix = { ...valid, listen: Address.unix("/tmp/nib.sock") }
      assert.deepStrictEqual(yield* Config.decode(unix), unix)
    }))

  it.effect("connectTimeoutSeconds 0 names -t", () =>
    Effect.gen(function*() {
      const message = yield* decodeError({ ...valid, connectTimeoutSeconds: 0 })
      assert.match(message, /^-t \(seconds to wait for a server to accept\): /)
    }))

  it.effect("connectionsMax 0 names -x", () =>
    Effect.gen(function*() {
      assert.match(yield* decodeError({ ...valid, connectionsMax: 0 }), /^-x \(/)
    }))

  it.effect("backlog 10 names -q", () =>
    Effect.gen(function*() {
      assert.match(yield* decodeError({ ...valid, backlog: 10 }), /^-q \(/)
    }))

  it.effect("other flags are named too", () =>
    Effect.gen(function*() {
      assert.match(yield* decodeError({ ...valid, blacklistSeconds: -1 }), /^-b \(/)
      assert.match(yield* decodeError({ ...valid, clientsMax: 0 }), /^-c \(/)
      assert.match(yield* decodeError({ ...valid, trackingSeconds: -5 }), /^-T \(/)
      assert.match(yield* decodeError({ ...valid, debug: 1.5 }), /^-d \(/)
    }))

  it.effect("every bad field is reported at once", () =>
    Effect.gen(function*() {
      const message = yield* decodeError({ ...valid, connectTimeoutSeconds: 0, connectionsMax: 0, backlog: 10 })
      assert.include(message, "-t")
      assert.include(message, "-x")
      assert.include(message, "-q")
    }))

  it.effect("rejects a bad server port and says where", () =>
    Effect.gen(function*() {
      const message = yield* decodeError({ ...valid, servers: [server(9001), server(70000)] })
      assert.match(message, /^servers .* at 1\.endpoint\.port: /)
    }))

  it.effect("rejects a listen port out of range and a missing listen address", () =>
    Effect.gen(function*() {
      assert.match(yield* decodeError({ ...valid, listen: Address.tcp("0.0.0.0", 65536) }), /^listen .*port/)
      const { listen: _, ...noListen } = valid
      assert.match(yield* decodeError(noListen), /^listen /)
    }))

  it.effect("rejects a negative limit", () =>
    Effect.asVoid(decodeError({ ...valid, servers: [server(9001, { softLimit: -1 })] })))
})

describe("Config.LbConfig", () => {
  it.effect("layer provides the settings decoded over pen's defaults", () =>
    Effect.gen(function*() {
      const settings = yield* Config.LbConfig
      assert.deepStrictEqual(settings.listen, Address.tcp("127.0.0.1", 0))
      assert.strictEqual(settings.servers.length, 1)
      assert.strictEqual(settings.hash, true)
      assert.strictEqual(settings.blacklistSeconds, 30)
      assert.strictEqual(settings.connectTimeoutSeconds, 3)
    }).pipe(
      Effect.provide(
        Config.LbConfig.layer({ listen: Address.tcp("127.0.0.1", 0), servers: [server(9001)], hash: true })
      )
    ))

  it.effect("layer fails with a ConfigError on bad settings", () =>
    Effect.gen(function*() {
      const read = Effect.service(Config.LbConfig)
      const error = yield* Effect.flip(
        Effect.provide(read, Config.LbConfig.layer({ ...valid, connectionsMax: 0 }))
      )
      assert.instanceOf(error, Config.ConfigError)
      assert.include(error.message, "-x")
    }))

  it.effect("layerSettings provides settings as given", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* Config.LbConfig, valid)
    }).pipe(Effect.provide(Config.LbConfig.layerSettings(valid))))
})
