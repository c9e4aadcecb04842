/**
 * TLS termination's Node side (`-E`, `-K`, `-G`, `-A`, `-R`, `-L`, `-Z` and the `ssl_*` commands): the server's
 * secure context, built at start-up, on SIGHUP and when a TLS setting changes, and the TLS socket wrapped around an
 * accepted connection. A certificate, key or file that cannot be read or used is an error naming it.
 */
import { Data, Effect } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import type * as Tls from "node:tls"
import * as TlsSettings from "../domain/TlsSettings.ts"
import type { Socket } from "./Socket.ts"

let loaded: typeof Tls | undefined

/**
 * node:tls, loaded on first use (a context for -E, or an `ssl_ciphers` to check without it): a nib that terminates no
 * TLS never loads it, which spares its start-up about 4 MB and 20 ms.
 */
const nodeTls = (): typeof Tls => loaded ??= process.getBuiltinModule("node:tls")

/** A certificate, key or setting that could not be read or used. @category errors */
export class TlsError extends Data.TaggedError("TlsError")<{ readonly message: string }> {}

/** What the context is made of: pen's `-E`, `-K`, `-G`, `-A`, `-R` files. @category models */
export interface Files {
  readonly cert: string
  readonly key?: string | undefined
  readonly caFile?: string | undefined
  readonly caDir?: string | undefined
  readonly requireClientCert?: boolean | undefined
}

/** pen's limit on an OCSP response's size (`OCSP_RESP_MAX`). @category constants */
export const OCSP_MAX_BYTES = 10_000

/** How long an SNI name's OCSP response is used before its file is read again (pen's hour). @category constants */
export const SNI_OCSP_SECONDS = 3600

/** Everything a context is built from. @category models */
export interface Settings extends Files, TlsSettings.Tuning {}

/** The server's TLS side, shared by the connections accepted while it is current. @category models */
export interface Context {
  /** The options every accepted TLS socket is made with (one object, built once). */
  readonly socketOptions: Tls.TLSSocketOptions
  /** -R: a client without a certificate from the -G/-A CA (or the SNI name's `.ca`) is refused. */
  readonly requireClientCert: boolean
  /** `ssl_client_renegotiation_interval 0`. */
  readonly noRenegotiation: boolean
}

const reason = (error: unknown): string => {
  const message = error instanceof Error ? error.message : String(error)
  return /^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? /^error:[0-9A-F]+:[^:]*:[^:]*:(.+)$/.exec(message)?.[1] ?? message
}

const read = (what: string, file: string) =>
  Effect.try({
    try: () => Fs.readFileSync(file),
    catch: (error) => new TlsError({ message: `${what} ${file}: can't read it: ${reason(error)}` })
  })

/** The PEM files of a CA directory (pen's `-A`: OpenSSL's hashed names, or any `.pem`/`.crt`), in name order. */
const readDir = (dir: string) =>
  Effect.try({
    try: () =>
      Fs.readdirSync(dir).filter((name) => /^[0-9a-f]{8}\.\d+$|\.(pem|crt)$/i.test(name)).toSorted().map((name) =>
        Fs.readFileSync(`${dir}/${name}`)
      ),
    catch: (error) => new TlsError({ message: `-A ${dir}: can't read it: ${reason(error)}` })
  })

/**
 * The part of `createSecureContext`'s options that the default context and every SNI name's share: the versions of
 * `-L` and `ssl_option`, the cipher list, OpenSSL's option bits. A string says why no version is left.
 */
export const protocolOptions = (tuning: TlsSettings.Tuning): Tls.SecureContextOptions | string => {
  const versions = TlsSettings.versions(tuning)
  if (typeof versions === "string") return versions
  return {
    minVersion: versions.min,
    maxVersion: versions.max,
    ...(tuning.ciphers === undefined ? {} : { ciphers: tuning.ciphers }),
    ...(tuning.options.includes("cipher_server_preference") ? { honorCipherOrder: true } : {}),
    ...(tuning.compat ? { secureOptions: Crypto.constants.SSL_OP_ALL } : {})
  }
}

/** The options of `tuning`, or why they cannot be used (no version left, no cipher matched). */
const baseOptions = (tuning: TlsSettings.Tuning) =>
  Effect.gen(function*() {
    const base = protocolOptions(tuning)
    if (typeof base === "string") return yield* new TlsError({ message: `ssl_option: ${base}` })
    if (tuning.ciphers !== undefined) {
      yield* Effect.try({
        try: () => nodeTls().createSecureContext({ ciphers: tuning.ciphers }),
        catch: (error) => new TlsError({ message: `ssl_ciphers '${tuning.ciphers}': ${reason(error)}` })
      })
    }
    return base
  })

/**
 * Checks what can be checked of `tuning` without a certificate (nib without -E keeps the `ssl_*` settings, as pen
 * does): the versions left, the cipher list, the SNI directory, the OCSP response file.
 */
export const check = (tuning: TlsSettings.Tuning): Effect.Effect<void, TlsError> =>
  Effect.gen(function*() {
    yield* baseOptions(tuning)
    if (tuning.sniPath !== undefined) yield* checkDir(tuning.sniPath)
    if (tuning.ocspResponse !== undefined) yield* readOcsp(tuning.ocspResponse)
  })

/** A client's server name, if it can name files in the SNI directory: a host name, no path in it. */
const SNI_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,252}$/

interface SniEntry {
  readonly context: Tls.SecureContext
  /** The `.ocsp` file's path and content, read again after {@link SNI_OCSP_SECONDS}. */
  readonly ocspFile: string
  ocsp: Buffer | undefined
  ocspReadAt: number
}

const readMaybe = (file: string, done: (data: Buffer | undefined) => void) =>
  Fs.readFile(file, (error, data) => done(error === null ? data : undefined))

/**
 * `ssl_sni_path DIR`: a client's server name NAME selects the certificate `DIR/NAME.crt` and key `DIR/NAME.key`
 * (with `DIR/NAME.ca` for client certificates and `DIR/NAME.ocsp` stapled), read when the name is first asked for
 * and kept until the context is rebuilt (SIGHUP, a TLS setting). A name without files gets the default certificate
 * and is looked for again next time (asynchronously: a handshake never waits on the disk with the loop blocked).
 */
class Sni {
  private readonly names = new Map<string, SniEntry>()
  /** OCSP responses by the DER certificate they are for (base64), for the `OCSPRequest` event. */
  readonly ocspByCert = new Map<string, SniEntry>()

  constructor(
    private readonly dir: string,
    private readonly base: Tls.SecureContextOptions,
    private readonly ca: ReadonlyArray<Buffer>,
    private readonly warn: (message: string) => void
  ) {}

  readonly callback = (name: string, done: (error: Error | null, context?: Tls.SecureContext) => void): void => {
    const known = this.names.get(name)
    if (known !== undefined) return done(null, known.context)
    if (!SNI_NAME.test(name) || this.names.size >= MAX_SNI_NAMES) return done(null)
    const path = `${this.dir}/${name}`
    readMaybe(`${path}.crt`, (cert) => {
      if (cert === undefined) return done(null)
      readMaybe(`${path}.key`, (key) => {
        if (key === undefined) {
          this.warn(`ssl_sni_path: ${path}.crt has no ${path}.key: the default certificate is used`)
          return done(null)
        }
        readMaybe(`${path}.ca`, (ca) => {
          readMaybe(`${path}.ocsp`, (ocsp) => {
            const again = this.names.get(name)
            if (again !== undefined) return done(null, again.context)
            let context: Tls.SecureContext
            try {
              const caList = ca === undefined ? [...this.ca] : [ca]
              context = nodeTls().createSecureContext({
                ...this.base,
                cert,
                key,
                ...(caList.length > 0 ? { ca: caList } : {})
              })
            } catch (error) {
              this.warn(`ssl_sni_path: ${path}.crt / .key: not a usable certificate and key: ${reason(error)}`)
              return done(null)
            }
            const entry: SniEntry = {
              context,
              ocspFile: `${path}.ocsp`,
              ocsp: ocsp !== undefined && ocsp.length <= OCSP_MAX_BYTES ? ocsp : undefined,
              ocspReadAt: Date.now()
            }
            this.names.set(name, entry)
            const der = certificateDer(cert)
            if (der !== undefined) this.ocspByCert.set(der, entry)
            done(null, context)
          })
        })
      })
    })
  }
}

/** At most this many SNI names are held (a client sends the names it likes). */
const MAX_SNI_NAMES = 10_000

const certificateDer = (pem: Buffer): string | undefined => {
  try {
    return new Crypto.X509Certificate(pem).raw.toString("base64")
  } catch {
    return undefined
  }
}

/**
 * The server side of `settings`: reads the certificate chain and key (pen's default key file is the certificate
 * file, which may hold both), the CA certificates client certificates are checked against, and the default OCSP
 * response.
 *
 * `warn` reports what a handshake finds wrong later (an SNI name's files), where there is nobody to answer.
 */
export const context = (settings: Settings, warn: (message: string) => void = () => {}): Effect.Effect<
  Context,
  TlsError
> =>
  Effect.gen(function*() {
    const { cert, key } = settings
    const certPem = yield* read("-E", cert)
    const keyPem = key === undefined ? certPem : yield* read("-K", key)
    const ca = [
      ...(settings.caFile === undefined ? [] : [yield* read("-G", settings.caFile)]),
      ...(settings.caDir === undefined ? [] : yield* readDir(settings.caDir))
    ]
    const base = yield* baseOptions(settings)
    const secureContext = yield* Effect.try({
      try: () =>
        nodeTls().createSecureContext({ ...base, cert: certPem, key: keyPem, ...(ca.length > 0 ? { ca } : {}) }),
      catch: (error) =>
        new TlsError({
          message: `-E ${cert}${key === undefined ? "" : ` / -K ${key}`}${
            ca.length > 0 ? " / the -G/-A CA" : ""
          }: not a usable certificate and key: ${reason(error)}`
        })
    })
    const ocsp = settings.ocspResponse === undefined ? undefined : yield* readOcsp(settings.ocspResponse)
    if (settings.sniPath !== undefined) yield* checkDir(settings.sniPath)
    const sni = settings.sniPath === undefined ? undefined : new Sni(settings.sniPath, base, ca, warn)
    const requireClientCert = settings.requireClientCert === true
    const socketOptions: Tls.TLSSocketOptions = {
      isServer: true,
      secureContext,
      requestCert: requireClientCert,
      rejectUnauthorized: requireClientCert,
      ...(sni === undefined ? {} : { SNICallback: sni.callback }),
      ...(ocsp === undefined && sni === undefined ? {} : { server: ocspServer(certPem, keyPem, ocsp, sni) })
    }
    return { socketOptions, requireClientCert, noRenegotiation: settings.renegotiationInterval === 0 }
  })

const checkDir = (dir: string) =>
  Effect.try({
    try: () => {
      if (!Fs.statSync(dir).isDirectory()) throw new Error("not a directory")
    },
    catch: (error) => new TlsError({ message: `ssl_sni_path ${dir}: ${reason(error)}` })
  })

const readOcsp = (file: string) =>
  read("ssl_ocsp_response", file).pipe(
    Effect.filterOrFail(
      (data) => data.length <= OCSP_MAX_BYTES,
      (data) => new TlsError({ message: `ssl_ocsp_response ${file}: ${data.length} bytes, over ${OCSP_MAX_BYTES}` })
    )
  )

/**
 * OCSP stapling: Node asks a TLS socket's `server` for the response (its `OCSPRequest` event, with the certificate
 * the handshake uses). This server is never listened on: it carries the default certificate and the event.
 */
const ocspServer = (cert: Buffer, key: Buffer, ocsp: Buffer | undefined, sni: Sni | undefined): Tls.Server => {
  const server = new (nodeTls().Server)({ cert, key })
  const defaultDer = certificateDer(cert)
  server.on(
    "OCSPRequest",
    (certificate: Buffer, _issuer: Buffer, done: (error: Error | null, response?: Buffer) => void) => {
      const der = certificate.toString("base64")
      if (der === defaultDer) return done(null, ocsp)
      const entry = sni?.ocspByCert.get(der)
      if (entry === undefined) return done(null)
      if (Date.now() - entry.ocspReadAt < SNI_OCSP_SECONDS * 1000) return done(null, entry.ocsp)
      readMaybe(entry.ocspFile, (data) => {
        entry.ocsp = data !== undefined && data.length <= OCSP_MAX_BYTES ? data : undefined
        entry.ocspReadAt = Date.now()
        done(null, entry.ocsp)
      })
    }
  )
  return server
}

/** Wraps an accepted (paused) connection: the TLS handshake starts; `secure` says when it is done. */
export const accept = (socket: Socket, tls: Context): Tls.TLSSocket => {
  const secure = new (nodeTls().TLSSocket)(socket, tls.socketOptions)
  // `ssl_client_renegotiation_interval 0`. Otherwise Node's own limit holds: a client that renegotiates more than 3
  // times in 10 minutes is closed (TLS 1.3 has no renegotiation at all).
  if (tls.noRenegotiation) secure.disableRenegotiation()
  return secure
}

/**
 * After the handshake: TLS errors become the socket's `error` events. (A TLS socket keeps them to itself until its
 * owner releases it, as `tls.Server` does once a handshake is done; unreleased, a client that renegotiates against
 * the settings, or sends a broken record, would leave its connection open. Node's release method is not public:
 * without it, the same errors destroy the socket.)
 */
export const established = (socket: Tls.TLSSocket): void => {
  const release = (socket as unknown as { _releaseControl?: () => boolean })._releaseControl
  if (typeof release === "function") release.call(socket)
  else socket.on("_tlsError", destroyOnError)
}

function destroyOnError(this: Tls.TLSSocket, error: Error) {
  this.destroy(error)
}

/**
 * Whether a finished handshake's client certificate is acceptable: always without -R; with it, only one that
 * verified against the -G/-A CA. (A TLS socket not made by a `tls.Server` does not check this itself: Node's own
 * check reads the same `verifyError` of the socket's handle, which is not public. Missing, it fails closed.)
 */
export const clientAuthorized = (socket: Tls.TLSSocket, tls: Context): boolean => {
  if (!tls.requireClientCert) return true
  const handle = (socket as unknown as { _handle?: { verifyError?: () => Error | null } | null })._handle
  if (typeof handle?.verifyError !== "function") return false
  return handle.verifyError() === null && socket.getPeerCertificate() !== null
}
