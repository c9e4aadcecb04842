/**
 * TLS termination's Node side (`-E`, `-K`, `-G`, `-A`, `-R`): the server's secure context, read at start-up and on
 * SIGHUP, and
 * the TLS socket wrapped around an accepted connection. A certificate or key that cannot be read or used is an error
 * naming its file.
 */
import { Data, Effect } from "effect"
import * as Fs from "node:fs"
import * as Tls from "node:tls"
import type { Socket } from "./Socket.ts"

/** A certificate or key that could not be read or used. @category errors */
export class TlsError extends Data.TaggedError("TlsError")<{ readonly message: string }> {}

/** The server's certificate chain and key, and whether clients must show a certificate. @category models */
export interface Context {
  readonly secureContext: Tls.SecureContext
  /** -R: a client without a certificate from the -G/-A CA fails its handshake. */
  readonly requireClientCert: boolean
}

/** What the context is made of (`-E`, `-K`, `-G`, `-A`, `-R`). @category models */
export interface Files {
  readonly cert: string
  readonly key?: string | undefined
  readonly caFile?: string | undefined
  readonly caDir?: string | undefined
  readonly requireClientCert?: boolean | undefined
}

const reason = (error: unknown): string => {
  const message = error instanceof Error ? error.message : String(error)
  return /^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? message
}

const read = (flag: string, file: string) =>
  Effect.try({
    try: () => Fs.readFileSync(file),
    catch: (error) => new TlsError({ message: `${flag} ${file}: can't read it: ${reason(error)}` })
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
 * The secure context of `cert` (PEM, the chain) and `key` (PEM; pen's default is the certificate file itself, which
 * may hold both), with the CA certificates of `-G` and `-A` that client certificates are checked against.
 */
export const context = (files: Files): Effect.Effect<Context, TlsError> =>
  Effect.gen(function*() {
    const { cert, key } = files
    const certPem = yield* read("-E", cert)
    const keyPem = key === undefined ? certPem : yield* read("-K", key)
    const ca = [
      ...(files.caFile === undefined ? [] : [yield* read("-G", files.caFile)]),
      ...(files.caDir === undefined ? [] : yield* readDir(files.caDir))
    ]
    const secureContext = yield* Effect.try({
      try: () => Tls.createSecureContext({ cert: certPem, key: keyPem, ...(ca.length > 0 ? { ca } : {}) }),
      catch: (error) =>
        new TlsError({
          message: `-E ${cert}${key === undefined ? "" : ` / -K ${key}`}${
            ca.length > 0 ? " / the -G/-A CA" : ""
          }: not a usable certificate and key: ${reason(error)}`
        })
    })
    return { secureContext, requireClientCert: files.requireClientCert === true }
  })

/** Wraps an accepted (paused) connection: the TLS handshake starts; `secure` says when it is done. */
export const accept = (socket: Socket, tls: Context): Tls.TLSSocket =>
  new Tls.TLSSocket(socket, {
    isServer: true,
    secureContext: tls.secureContext,
    requestCert: tls.requireClientCert,
    rejectUnauthorized: tls.requireClientCert
  })

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
