/**
 * The listening sockets a nib started by an upgrade (SIGUSR2, `control/Upgrade.ts`) takes over from the nib it
 * replaces, as descriptors it inherited: the listen address's sockets (one per thread of the old nib, each an
 * SO_REUSEPORT socket with `--workers`), the control port's and the admin endpoint's. Each thread's listener serves on
 * its share instead of binding the address again, so that a connection waiting in an accept queue is never reset.
 *
 * Without an upgrade nothing is inherited, and every listener binds its address as before.
 */
import { Context, Schema } from "effect"
import { ListenEndpoint } from "../Config.ts"
import type { Endpoint } from "../domain/Address.ts"

/** What this thread inherits: descriptors open in the process, bound and listening. @category models */
export interface Inherited {
  /** The listen address's sockets this thread serves (TCP, or the UDP socket with `-U`); empty: bind the address. */
  readonly listen: ReadonlyArray<number>
  /** The address they are bound to (the replaced nib's, after its own `listen` commands). */
  readonly address: Endpoint | undefined
  /** The control port's socket (`-C`), main thread only. */
  readonly control: number | undefined
  /** The admin endpoint's socket (`--admin`), main thread only. */
  readonly admin: number | undefined
}

/** Nothing inherited. @category constants */
export const none: Inherited = { listen: [], address: undefined, control: undefined, admin: undefined }

/** The descriptors this thread takes over: {@link none} unless nib was started by an upgrade. @category services */
export const Handover = Context.Reference<Inherited>("nib/shared/Handover", { defaultValue: () => none })

/**
 * The listen sockets of the old nib's threads shared among `threads` threads: thread `t` serves socket `t`, and a
 * socket no thread has the number of (the old nib had more threads) goes to thread `i mod threads`, so that none is
 * left unserved (the kernel would keep sending it clients). A thread with no socket binds the address itself.
 * @category operations
 */
export const share = (listen: ReadonlyArray<number>, threads: number, thread: number): ReadonlyArray<number> =>
  listen.filter((_, i) => i % threads === thread)

// The conversation between the nib that is replaced (the old one) and the one it started (the new one), over the IPC
// channel of `child_process.spawn`. Each side decodes what it receives with these schemas.

const Int = Schema.Int
const Descriptor = Int.check(Schema.isGreaterThanOrEqualTo(0))

/** A remembered client, as `StickyTable.ClientEntry` has it. @category schemas */
export const SavedClient = Schema.Struct({
  address: Schema.String,
  server: Int,
  lastSeen: Schema.Finite,
  connects: Schema.Finite,
  bytesToClient: Schema.Finite,
  bytesFromClient: Schema.Finite,
  slot: Int
})

/**
 * What the new nib takes of a server's state, if its server `index` (the emergency server: -2) has the same address:
 * the blacklist deadline (milliseconds since the epoch, 0: none) and the drain. @category schemas
 */
export const SavedServer = Schema.Struct({
  index: Int,
  address: Schema.String,
  blacklistedUntil: Schema.Finite,
  draining: Schema.Boolean
})

/** The old nib's first message: its pid and the sockets it hands over, by their descriptor in the new one. */
export const Offer = Schema.TaggedStruct("Offer", {
  pid: Int,
  /** The listen address's sockets (every thread's, the main thread's first) and the address they are bound to. */
  listen: Schema.Array(Descriptor),
  address: ListenEndpoint,
  control: Schema.optional(Descriptor),
  admin: Schema.optional(Descriptor)
})

/** The old nib's state, sent when the new one asks for it, just before the new one serves. */
export const State = Schema.TaggedStruct("State", {
  clients: Schema.Array(SavedClient),
  servers: Schema.Array(SavedServer)
})

/** What the old nib says. @category schemas */
export const FromOld = Schema.Union([Offer, State])

/** The new nib is configured and asks for the state. */
export const Ask = Schema.TaggedStruct("Ask", {})

/** The new nib serves (the daemon's detached child says this too): the address it listens on, its pid. */
export const Ready = Schema.TaggedStruct("Ready", { address: Schema.String, pid: Int })

/** The new nib could not start (the daemon's detached child says this too): its error, in one line. */
export const Failed = Schema.TaggedStruct("Failed", { message: Schema.String })

/** What the new nib (or the detached child of `nib` without `-f`) says to the nib that started it. @category schemas */
export const FromNew = Schema.Union([Ask, Ready, Failed])

/** The environment variable that tells a nib it was started by an upgrade: the old nib's pid. @category constants */
export const UPGRADE_ENV = "NIB_UPGRADE"
