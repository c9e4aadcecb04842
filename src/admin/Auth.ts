/**
 * Who may change the balancer through the admin API: the holder of the token in `--admin-token-file`, sent as
 * `Authorization: Bearer <token>`. Without a token file the API is read-only. The file is read once, at start-up;
 * a file that is missing, unreadable or empty stops nib with one line naming it.
 *
 * The comparison takes the same time whatever the guess: both sides are hashed (SHA-256) to equal lengths and
 * compared with `timingSafeEqual`, so neither the token's length nor a matching prefix shows in the response time.
 */
import { Data, Effect } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import { ApiError } from "./Api.ts"

/** The token file could not be used. @category errors */
export class TokenFileError extends Data.TaggedError("TokenFileError")<{ readonly message: string }> {}

/** The token required for changes, or none: read-only. @category models */
export type Token =
  | { readonly _tag: "ReadOnly" }
  | { readonly _tag: "Bearer"; readonly digest: Buffer }

const digest = (text: string): Buffer => Crypto.createHash("sha256").update(text, "utf8").digest()

/** A token from its text (surrounding white space, such as the file's final newline, is not part of it). */
export const fromText = (text: string): Token => ({ _tag: "Bearer", digest: digest(text.trim()) })

/** No token: the API is read-only. @category constants */
export const readOnly: Token = { _tag: "ReadOnly" }

/** Reads `--admin-token-file`; `undefined` (no file given) is read-only. @category constructors */
export const load = (file: string | undefined): Effect.Effect<Token, TokenFileError> => {
  if (file === undefined) return Effect.succeed(readOnly)
  return Effect.tryPromise({
    try: () => Fs.promises.readFile(file, "utf8"),
    catch: (cause) =>
      new TokenFileError({
        // Node's "ENOENT: no such file or directory, open '/x'", without the path the line already names.
        message: `--admin-token-file ${file}: cannot read it: ${
          String((cause as Error).message).replace(/, \w+ '.*'$/, "")
        }`
      })
  }).pipe(
    Effect.flatMap((text) =>
      text.trim() === ""
        ? Effect.fail(new TokenFileError({ message: `--admin-token-file ${file}: the file is empty` }))
        : Effect.succeed(fromText(text))
    )
  )
}

/**
 * Whether `authorization` (the request's header) carries the token: fails with 403 in read-only mode, 401 when the
 * header is missing, not a bearer token or the wrong one. @category operations
 */
export const check = (token: Token, authorization: string | undefined): Effect.Effect<void, ApiError> => {
  if (token._tag === "ReadOnly") {
    return Effect.fail(
      new ApiError({ status: 403, message: "read-only: nib was started without --admin-token-file" })
    )
  }
  const match = authorization === undefined ? null : /^Bearer[ \t]+(.+)$/i.exec(authorization)
  if (match === null) {
    return Effect.fail(new ApiError({ status: 401, message: "changes need Authorization: Bearer <token>" }))
  }
  return Crypto.timingSafeEqual(digest(match[1]!.trim()), token.digest)
    ? Effect.void
    : Effect.fail(new ApiError({ status: 401, message: "wrong token" }))
}
