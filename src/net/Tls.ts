/**
 * TLS termination's Node side (`-E certfile`, `-K keyfile`): the server's secure context, read once at start-up, and
 * the TLS socket wrapped around an accepted connection. A certificate or key that cannot be read or used is an error
 * naming its file.
 */
import { Data, Effect } from "effect"
import * as Fs from "node:fs"
import * as Tls from "node:tls"
import type { Socket } from "./Socket.ts"

/** A certificate or key that could not be read or used. @category errors */
export class TlsError extends Data.TaggedError("TlsError")<{ readonly message: string }> {}

/** The server's certificate chain and key. @category models */
export type Context = Tls.SecureContext

const reason = (error: unknown): string => {
  const message = error instanceof Error ? error.message : String(error)
  return /^[A-Z]+: ([^,]+)/.exec(message)?.[1] ?? message
}

const read = (flag: string, file: string) =>
  Effect.try({
    try: () => Fs.readFileSync(file),
    catch: (error) => new TlsError({ message: `${flag} ${file}: can't read it: ${reason(error)}` })
  })

/**
 * The secure context of `cert` (PEM, the chain) and `key` (PEM; pen's default is the certificate file itself, which
 * may hold both).
 */
export const context = (cert: string, key: string | undefined): Effect.Effect<Context, TlsError> =>
  Effect.gen(function*() {
    const certPem = yield* read("-E", cert)
    const keyPem = key === undefined ? certPem : yield* read("-K", key)
    return yield* Effect.try({
      try: () => Tls.createSecureContext({ cert: certPem, key: keyPem }),
      catch: (error) =>
        new TlsError({
          message: `-E ${cert}${key === undefined ? "" : ` / -K ${key}`}: not a usable certificate and key: ${
            reason(error)
          }`
        })
    })
  })

/** Wraps an accepted (paused) connection: the TLS handshake starts; `secure` says when it is done. */
export const accept = (socket: Socket, secureContext: Context): Tls.TLSSocket =>
  new Tls.TLSSocket(socket, { isServer: true, secureContext })
