import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Auth from "../../src/admin/Auth.ts"

const status = (token: Auth.Token, header: string | undefined) =>
  Effect.map(
    Effect.exit(Auth.check(token, header)),
    (exit) =>
      Exit.isSuccess(exit) ? 200 : exit.cause.reasons[0]?._tag === "Fail" ? exit.cause.reasons[0].error.status : 500
  )

describe("Auth", () => {
  it.effect("only the bearer token matches; read-only refuses everything with 403", () =>
    Effect.gen(function*() {
      const token = Auth.fromText("s3cret\n")
      assert.strictEqual(yield* status(token, "Bearer s3cret"), 200)
      assert.strictEqual(yield* status(token, "bearer   s3cret "), 200)
      assert.strictEqual(yield* status(token, undefined), 401)
      assert.strictEqual(yield* status(token, "Bearer"), 401)
      assert.strictEqual(yield* status(token, "Basic czNjcmV0"), 401)
      assert.strictEqual(yield* status(token, "Bearer s3cre"), 401)
      assert.strictEqual(yield* status(token, "Bearer s3cret2"), 401)
      assert.strictEqual(yield* status(Auth.readOnly, "Bearer s3cret"), 403)
    }))

  it.effect("load: no file is read-only; a missing or empty file fails naming it", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* Auth.load(undefined))._tag, "ReadOnly")
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "nib-auth-"))
      try {
        const good = Path.join(dir, "good")
        Fs.writeFileSync(good, "abc\n")
        assert.strictEqual(yield* status(yield* Auth.load(good), "Bearer abc"), 200)
        const empty = Path.join(dir, "empty")
        Fs.writeFileSync(empty, "\n\n")
        const missing = Path.join(dir, "missing")
        const errors = [yield* Effect.flip(Auth.load(empty)), yield* Effect.flip(Auth.load(missing))]
        assert.deepStrictEqual(errors.map((e) => e.message), [
          `--admin-token-file ${empty}: the file is empty`,
          `--admin-token-file ${missing}: cannot read it: ENOENT: no such file or directory`
        ])
      } finally {
        Fs.rmSync(dir, { recursive: true, force: true })
      }
    }))
})
