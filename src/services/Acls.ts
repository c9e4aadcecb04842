/**
 * pen's access control lists at work: the ten lists (`acl N ...`), and which list each use checks: `client_acl`
 * for new clients, `control_acl` for control clients, `server N acl A` per server (kept in ServerPool). All start at
 * list 0, which is empty and lets everyone in: as in pen, entries added to list 0 apply to all three uses at once.
 *
 * The per-connection checks cost a length test while the list they use is empty (the usual case).
 */
import { Context, Effect, Layer } from "effect"
import * as Acl from "../domain/Acl.ts"
import { Broadcast } from "../shared/Broadcast.ts"

/** The ACL service. @category services */
export class Acls extends Context.Service<Acls, {
  /** The lists themselves, to read; change them with `add`, `clear` and `replace`. */
  readonly table: Acl.Table
  /** Adds `entry` to list `list` (`acl N ...`). */
  readonly add: (list: number, entry: Acl.Entry) => Effect.Effect<void>
  /** Empties list `list` (`no acl N`). */
  readonly clear: (list: number) => Effect.Effect<void>
  /** Takes the lists and `client_acl` as another thread has them (a worker thread, from the main thread). */
  readonly replace: (table: Acl.Table, clientAcl: number) => Effect.Effect<void>
  /** Whether list `list` lets `address` in (`undefined`: a Unix socket peer, always let in). */
  readonly admitsUnsafe: (list: number, address: string | undefined) => boolean
  /** The list new clients must pass (`client_acl`), and the one control clients must pass (`control_acl`). */
  readonly clientAcl: Effect.Effect<number>
  readonly setClientAcl: (list: number) => Effect.Effect<void>
  readonly controlAcl: Effect.Effect<number>
  readonly setControlAcl: (list: number) => Effect.Effect<void>
  /** Whether a new client may be served (per-connection path). */
  readonly admitsClientUnsafe: (address: string | undefined) => boolean
  /** Whether a control client may use the control port. */
  readonly admitsControlUnsafe: (address: string | undefined) => boolean
}>()("nib/services/Acls") {
  static readonly layer: Layer.Layer<Acls> = Layer.effect(
    Acls,
    Effect.gen(function*() {
      const broadcast = yield* Broadcast
      return make((table, clientAcl) => broadcast.send({ _tag: "Acls", table, clientAcl }))
    })
  )
}

/** The lists, each change announced with `changed` (to worker threads). */
const make = (changed: (table: Acl.Table, clientAcl: number) => Effect.Effect<void>): Acls["Service"] => {
  const table = Acl.makeTable()
  let clientAcl = 0
  let controlAcl = 0
  const announce = Effect.suspend(() => changed(table, clientAcl))
  const admitsUnsafe = (list: number, address: string | undefined) =>
    (table.lists[list]?.length ?? 1) === 0 || Acl.matches(table, list, address)
  return Acls.of({
    table,
    admitsUnsafe,
    add: (list, entry) => Effect.andThen(Effect.sync(() => Acl.add(table, list, entry)), announce),
    clear: (list) => Effect.andThen(Effect.sync(() => Acl.clear(table, list)), announce),
    replace: (next, client) =>
      Effect.sync(() => {
        next.lists.forEach((entries, list) => table.lists[list]?.splice(0, Infinity, ...entries))
        clientAcl = client
      }),
    clientAcl: Effect.sync(() => clientAcl),
    setClientAcl: (list) =>
      Effect.andThen(
        Effect.sync(() => {
          clientAcl = list
        }),
        announce
      ),
    controlAcl: Effect.sync(() => controlAcl),
    setControlAcl: (list) =>
      Effect.sync(() => {
        controlAcl = list
      }),
    admitsClientUnsafe: (address) => admitsUnsafe(clientAcl, address),
    admitsControlUnsafe: (address) => admitsUnsafe(controlAcl, address)
  })
}
