/**
 * nib's configuration: one Schema for every setting, the `LbConfig` service that carries the decoded value, pen's
 * defaults, and the error that names what was wrong. The CLI turns pen's argv into the encoded form and decodes it
 * here; tests build it with `LbConfig.layer({...})`.
 */
import { Context, Effect, Layer, Schema, SchemaIssue } from "effect"
import * as HealthCheck from "./domain/HealthCheck.ts"
import * as Peers from "./domain/Peers.ts"
import * as TlsSettings from "./domain/TlsSettings.ts"

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Port = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65535 }))

const endpoint = (port: Schema.Codec<number>) =>
  Schema.Union([
    Schema.TaggedStruct("Tcp", { host: Schema.NonEmptyString, port }),
    Schema.TaggedStruct("Unix", { path: Schema.NonEmptyString })
  ])

/** A server's TCP or Unix socket endpoint. @category schemas */
export const Endpoint = endpoint(Port)

/** The listen endpoint: port 0 asks the system for a free port (nib prints the one it got). @category schemas */
export const ListenEndpoint = endpoint(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 })))

/** A PROXY protocol version nib sends to servers. @category schemas */
export const ProxyVersion = Schema.Literals(["v1", "v2"])

/** A server with its limits, as `h:p:maxc:hard:weight:prio` gives it. @category schemas */
export const ServerSpec = Schema.Struct({
  endpoint: Endpoint,
  softLimit: Count.annotate({ description: "soft limit on live connections (0 = unlimited)" }),
  hardLimit: Count.annotate({ description: "limit for sticky clients once the soft limit is reached" }),
  weight: Count.annotate({ description: "weight for -W selection" }),
  prio: Count.annotate({ description: "priority for prio selection (lower first)" })
})

/** What each setting is, and the pen flag that sets it: for help texts and error messages. @category constants */
export const descriptions = {
  listen: "listen address ([host:]port, [v6]:port or a socket path)",
  servers: "the servers, in index order",
  emergency: "-e: emergency server of last resort",
  abuse: "-B: abuse server, for clients that client_acl denies",
  udp: "-U: UDP mode (each client address:port is a session)",
  udpIdleSeconds: "--udp-idle-timeout: seconds an idle UDP session is kept (idle_timeout overrides)",
  idleTimeoutSeconds:
    "--idle-timeout: seconds without a byte either way after which a connection is closed (0 = never, the default; with -U, replaces --udp-idle-timeout)",
  sendProxy: "--send-proxy: send each server a PROXY protocol header (v1 or v2) with the client's address",
  acceptProxy: "--accept-proxy: read a PROXY protocol header (v1 or v2) from each client first",
  http: "-H: add X-Forwarded-For and X-Forwarded-Proto to each HTTP request",
  tlsCert: "-E: terminate TLS with this certificate (PEM)",
  tlsKey: "-K: the certificate's key (PEM; default: in the -E file)",
  tlsCaFile: "-G: CA certificates (PEM) that client certificates are checked against",
  tlsCaDir: "-A: directory of CA certificates (PEM files) that client certificates are checked against",
  tlsRequireClientCert: "-R: require a client certificate signed by the -G/-A CA",
  tlsProtocol:
    "-L: the lowest TLS version: ssl23, ssl2, ssl3 or tls1 (pen's; all mean TLS 1.2, as OpenSSL 3 has), tls1.2 or tls1.3",
  tlsCompat: "-Z: OpenSSL's workarounds for broken TLS clients (SSL_OP_ALL)",
  blacklistSeconds: "-b: seconds a failed server is blacklisted",
  clientsMax: "-c: slots of the sticky client table",
  connectTimeoutSeconds: "-t: seconds to wait for a server to accept",
  trackingSeconds: "-T: seconds a client is remembered (0 = forever)",
  connectionsMax: "-x: live connections before nib stops accepting",
  backlog: "-q: listen backlog (at least 50)",
  roundrobin: "-r: ignore the sticky table",
  hash: "-h: choose new clients by address hash",
  weight: "-W: choose by load relative to weight",
  prio: "prio: choose the lowest priority value",
  stubborn: "-s: close instead of failing over",
  hashMethod: "--hash-method: how -h maps a client's address to a server: pen (pen's modulo) or consistent",
  foreground: "-f: stay in the foreground",
  pidFile: "-p: file to write the pid to",
  debug: "-d: debug level (repeat for more)",
  listenText: "the listen address as given",
  control: "-C: control port ([host:]port or a socket path; a port alone binds 127.0.0.1)",
  exitEnabled: "-X: let the control port's exit command stop nib",
  commands: "-O/-o: control commands run at start-up",
  user: "-u: user to run as after binding",
  logTarget: "-l: request log file, or host:port of a niblogd or penlogd",
  webStats: "-w: HTML status page file, written on SIGUSR1",
  configFile: "-F: file of control commands, read at start-up and on SIGHUP",
  check: "--check: check every server actively: tcp, http[:/path] or send:TEXT,expect:REGEX",
  checkIntervalSeconds: "--check-interval: seconds between two checks of a server, and each check's timeout",
  rise: "--rise: passed checks in a row that bring a down server up",
  fall: "--fall: failed checks in a row that take a server down",
  slowStartSeconds: "--slow-start: seconds over which a server back up takes a growing share of new clients",
  onDown: "--on-down: what happens to a server's live connections when a check takes it down: keep or close",
  admin: "--admin: HTTP admin endpoint: dashboard, /metrics and /api ([host:]port; a port alone binds 127.0.0.1)",
  adminTokenFile: "--admin-token-file: file holding the bearer token that changes through /api need",
  workers: "--workers: threads that serve connections (auto: one per core the process may run on)",
  graceSeconds: "--grace: seconds open connections may take to finish after SIGQUIT (a graceful stop)",
  peers:
    "--peers: share the sticky table, blacklists, drains and weights with the nibs on this Redis: redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://",
  peersKey: "--peers-key: the name the nibs sharing one table use in Redis (letters, digits, _ . : -)"
} as const

const AtLeastOne = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))

/** Every setting of a running nib. @category schemas */
export const Settings = Schema.Struct({
  listen: ListenEndpoint.annotate({ description: descriptions.listen }),
  servers: Schema.Array(ServerSpec).annotate({ description: descriptions.servers }),
  emergency: Schema.UndefinedOr(ServerSpec).annotate({ description: descriptions.emergency }),
  abuse: Schema.UndefinedOr(ServerSpec).annotate({ description: descriptions.abuse }),
  udp: Schema.Boolean.annotate({ description: descriptions.udp }),
  udpIdleSeconds: Schema.Finite.check(Schema.isGreaterThan(0)).annotate({ description: descriptions.udpIdleSeconds }),
  idleTimeoutSeconds: Schema.UndefinedOr(Count).annotate({ description: descriptions.idleTimeoutSeconds }),
  sendProxy: Schema.UndefinedOr(ProxyVersion).annotate({ description: descriptions.sendProxy }),
  acceptProxy: Schema.Boolean.annotate({ description: descriptions.acceptProxy }),
  http: Schema.Boolean.annotate({ description: descriptions.http }),
  tlsCert: Schema.UndefinedOr(Schema.NonEmptyString).annotate({ description: descriptions.tlsCert }),
  tlsKey: Schema.UndefinedOr(Schema.NonEmptyString).annotate({ description: descriptions.tlsKey }),
  tlsCaFile: Schema.UndefinedOr(Schema.NonEmptyString).annotate({ description: descriptions.tlsCaFile }),
  tlsCaDir: Schema.UndefinedOr(Schema.NonEmptyString).annotate({ description: descriptions.tlsCaDir }),
  tlsRequireClientCert: Schema.Boolean.annotate({ description: descriptions.tlsRequireClientCert }),
  tlsProtocol: Schema.Literals(TlsSettings.PROTOCOLS).annotate({ description: descriptions.tlsProtocol }),
  tlsCompat: Schema.Boolean.annotate({ description: descriptions.tlsCompat }),
  blacklistSeconds: Count.annotate({ description: descriptions.blacklistSeconds }),
  clientsMax: AtLeastOne.annotate({ description: descriptions.clientsMax }),
  connectTimeoutSeconds: Schema.Finite.check(Schema.isGreaterThan(0)).annotate({
    description: descriptions.connectTimeoutSeconds
  }),
  trackingSeconds: Count.annotate({ description: descriptions.trackingSeconds }),
  connectionsMax: AtLeastOne.annotate({ description: descriptions.connectionsMax }),
  backlog: Schema.Int.check(Schema.isGreaterThanOrEqualTo(50)).annotate({ description: descriptions.backlog }),
  roundrobin: Schema.Boolean.annotate({ description: descriptions.roundrobin }),
  hash: Schema.Boolean.annotate({ description: descriptions.hash }),
  weight: Schema.Boolean.annotate({ description: descriptions.weight }),
  prio: Schema.Boolean.annotate({ description: descriptions.prio }),
  stubborn: Schema.Boolean.annotate({ description: descriptions.stubborn }),
  hashMethod: Schema.Literals(["pen", "consistent"]).annotate({ description: descriptions.hashMethod }),
  foreground: Schema.Boolean.annotate({ description: descriptions.foreground }),
  pidFile: Schema.UndefinedOr(Schema.NonEmptyString).annotate({ description: descriptions.pidFile }),
  debug: Count.annotate({ description: descriptions.debug }),
  listenText: Schema.UndefinedOr(Schema.String).annotate({ description: descriptions.listenText }),
  control: Schema.UndefinedOr(Schema.Struct({ endpoint: ListenEndpoint, text: Schema.NonEmptyString })).annotate({
    description: descriptions.control
  }),
  exitEnabled: Schema.Boolean.annotate({ description: descriptions.exitEnabled }),
  commands: Schema.Array(Schema.String).annotate({ description: descriptions.commands }),
  user: Schema.UndefinedOr(Schema.NonEmptyString).annotate({ description: descriptions.user }),
  logTarget: Schema.UndefinedOr(Schema.NonEmptyString).annotate({ description: descriptions.logTarget }),
  webStats: Schema.UndefinedOr(Schema.NonEmptyString).annotate({ description: descriptions.webStats }),
  configFile: Schema.UndefinedOr(Schema.NonEmptyString).annotate({ description: descriptions.configFile }),
  check: Schema.UndefinedOr(HealthCheck.CheckSchema).annotate({ description: descriptions.check }),
  checkIntervalSeconds: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0.05)).annotate({
    description: descriptions.checkIntervalSeconds
  }),
  rise: AtLeastOne.annotate({ description: descriptions.rise }),
  fall: AtLeastOne.annotate({ description: descriptions.fall }),
  slowStartSeconds: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)).annotate({
    description: descriptions.slowStartSeconds
  }),
  onDown: Schema.Literals(["keep", "close"]).annotate({ description: descriptions.onDown }),
  admin: Schema.UndefinedOr(Schema.Struct({ endpoint: ListenEndpoint, text: Schema.NonEmptyString })).annotate({
    description: descriptions.admin
  }),
  adminTokenFile: Schema.UndefinedOr(Schema.NonEmptyString).annotate({ description: descriptions.adminTokenFile }),
  workers: AtLeastOne.annotate({ description: descriptions.workers }),
  graceSeconds: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)).annotate({
    description: descriptions.graceSeconds
  }),
  peers: Schema.UndefinedOr(Peers.PeersUrlSchema).annotate({ description: descriptions.peers }),
  peersKey: Schema.String.check(Schema.isPattern(Peers.KEY_PATTERN)).annotate({ description: descriptions.peersKey })
})

/** The decoded settings. @category models */
export type Settings = typeof Settings.Type

/** pen's defaults for everything but the listen address and servers. @category constants */
export const defaults = {
  emergency: undefined,
  abuse: undefined,
  udp: false,
  udpIdleSeconds: 60,
  idleTimeoutSeconds: undefined,
  sendProxy: undefined,
  acceptProxy: false,
  http: false,
  tlsCert: undefined,
  tlsKey: undefined,
  tlsCaFile: undefined,
  tlsCaDir: undefined,
  tlsRequireClientCert: false,
  tlsProtocol: "ssl23",
  tlsCompat: false,
  blacklistSeconds: 30,
  clientsMax: 2048,
  connectTimeoutSeconds: 3,
  trackingSeconds: 0,
  connectionsMax: 500,
  backlog: 500,
  roundrobin: false,
  hash: false,
  weight: false,
  prio: false,
  stubborn: false,
  hashMethod: "pen",
  foreground: false,
  pidFile: undefined,
  debug: 0,
  listenText: undefined,
  control: undefined,
  exitEnabled: false,
  commands: [],
  user: undefined,
  logTarget: undefined,
  webStats: undefined,
  configFile: undefined,
  check: undefined,
  checkIntervalSeconds: 2,
  rise: 2,
  fall: 3,
  slowStartSeconds: 0,
  onDown: "keep",
  admin: undefined,
  adminTokenFile: undefined,
  workers: 1,
  graceSeconds: 30,
  peers: undefined,
  peersKey: "nib"
} satisfies Omit<Settings, "listen" | "servers">

/** A setting that could not be decoded; `message` says which and why. @category errors */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  message: Schema.String
}) {}

const formatIssue = SchemaIssue.makeFormatterStandardSchemaV1()

// Names a bad field by its flag where it has one: "-t (seconds to wait for a server to accept)".
const label = (path: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined): string => {
  const keys = (path ?? []).map((p) => String(typeof p === "object" ? p.key : p))
  const text = keys.length > 0 ? descriptions[keys[0] as keyof typeof descriptions] : undefined
  if (text === undefined) return keys.join(".") || "settings"
  const match = /^(--[\w-]+|-\w|\w+): (.*)$/.exec(text)
  const name = match === null ? `${keys[0]} (${text})` : `${match[1]} (${match[2]})`
  return keys.length > 1 ? `${name} at ${keys.slice(1).join(".")}` : name
}

/** Decodes untrusted settings, failing with a message that names each bad field. @category decoding */
export const decode = (input: unknown): Effect.Effect<Settings, ConfigError> =>
  Schema.decodeUnknownEffect(Settings)(input, { errors: "all" }).pipe(
    Effect.mapError((error) =>
      new ConfigError({
        message: formatIssue(error.issue).issues.map((issue) => `${label(issue.path)}: ${issue.message}`).join("; ")
      })
    )
  )

/** The running configuration. @category services */
export class LbConfig extends Context.Service<LbConfig, Settings>()("nib/Config/LbConfig") {
  /** Provides settings already decoded. */
  static readonly layerSettings = (settings: Settings): Layer.Layer<LbConfig> => Layer.succeed(LbConfig, settings)

  /** Decodes `partial` over pen's defaults; for tests and embedding. */
  static readonly layer = (
    partial: Partial<Settings> & Pick<Settings, "listen" | "servers">
  ): Layer.Layer<LbConfig, ConfigError> => Layer.effect(LbConfig, decode({ ...defaults, ...partial }))
}
