/**
 * A worker thread of test/shared/StickyMemory.test.ts, loaded as TypeScript (Node strips the types): it attaches to the
 * table in `workerData`, runs its task with bounded loops, and posts one {@link Report}.
 */
import { parentPort, workerData } from "node:worker_threads"
import * as StickyMemory from "../../src/shared/StickyMemory.ts"

/**
 * Visits, claims, pins, byte counts and reads over a pool of addresses, `operations` times, waiting half-way until the
 * main thread opens the second half. The time is a shared counter that every visit advances, so it stops when the
 * workers do.
 */
export interface Hammer {
  readonly task: "hammer"
  readonly memory: StickyMemory.Memory
  readonly worker: number
  readonly addresses: ReadonlyArray<string>
  /** One Int32 word: the time. */
  readonly clock: SharedArrayBuffer
  /** One Int32 word: 1 once the second half may start. */
  readonly halfway: SharedArrayBuffer
  readonly deadline: number
  readonly operations: number
  readonly seed: number
}

/**
 * Rounds of first visits: each round, every worker waits at the barrier, then visits the round's new address
 * `visits` times, each with a claim for its own candidate server, and writes the claims' answers into `results`.
 */
export interface Burst {
  readonly task: "burst"
  readonly memory: StickyMemory.Memory
  readonly worker: number
  readonly workers: number
  /** Each round's new address. */
  readonly addresses: ReadonlyArray<string>
  readonly visits: number
  /** Int32 words: the barrier's arrivals. */
  readonly barrier: SharedArrayBuffer
  /** Int32 words: `results[round * workers * visits + worker * visits + visit]`. */
  readonly results: SharedArrayBuffer
  readonly deadline: number
}

/** What a worker is asked to do. */
export type Task = Hammer | Burst

/** What a worker posts when done: the bytes it added by ref (`[ref, toClient, fromClient]`), and its stale claims. */
export interface Report {
  readonly added: ReadonlyArray<readonly [number, number, number]>
  readonly staleClaims: number
}

const hammer = (task: Hammer): Report => {
  const table = StickyMemory.attach(task.memory, task.worker)
  let seed = task.seed | 1
  const random = (n: number): number => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) % n
  }
  const added = new Map<number, [number, number]>()
  const add = (ref: StickyMemory.ClientRef, toClient: number, fromClient: number) => {
    table.addBytes(ref, toClient, fromClient)
    const sums = added.get(ref)
    if (sums === undefined) added.set(ref, [toClient, fromClient])
    else {
      sums[0] += toClient
      sums[1] += fromClient
    }
  }
  // Connections still open: refs held across later visits, which may go stale meanwhile.
  const open: Array<StickyMemory.ClientRef> = []
  let staleClaims = 0
  const clock = new Int32Array(task.clock)
  const halfway = new Int32Array(task.halfway)
  for (let i = 0; i < task.operations; i++) {
    if (i === task.operations >> 1) {
      while (Atomics.wait(halfway, 0, 0, 10) !== "not-equal") {
        if (Date.now() > task.deadline) throw new Error("the second half was never opened")
      }
    }
    const address = task.addresses[random(task.addresses.length)]
    const now = Atomics.add(clock, 0, 1) + 1
    const ref = table.visit(address, now)
    if (table.claim(ref, task.worker) === StickyMemory.NO_SERVER) staleClaims++
    if (random(8) === 0) table.pin(ref, random(8))
    table.server(ref)
    add(ref, 1 + random(1500), random(200))
    if (open.length < 8) open.push(ref)
    else open[random(8)] = ref
    add(open[random(open.length)], random(64_000), random(500))
    switch (random(64)) {
      case 0:
        table.lookup(address, now)
        break
      case 1:
        table.entry(open[random(open.length)])
        break
      case 2:
        table.inOrder(now)
        break
      case 3:
        table.recent(now)
        break
    }
  }
  return { added: [...added].map(([ref, [toClient, fromClient]]) => [ref, toClient, fromClient] as const), staleClaims }
}

/** Waits until `target` threads have arrived, spinning first, then sleeping briefly; throws past the deadline. */
const arrive = (barrier: Int32Array, target: number, deadline: number): void => {
  if (Atomics.add(barrier, 0, 1) + 1 >= target) {
    Atomics.notify(barrier, 0)
    return
  }
  for (let spins = 0;; spins++) {
    const arrived = Atomics.load(barrier, 0)
    if (arrived >= target) return
    if (spins < 20_000) continue
    if (Date.now() > deadline) throw new Error(`barrier: ${arrived} of ${target} arrived`)
    Atomics.wait(barrier, 0, arrived, 1)
  }
}

const burst = (task: Burst): Report => {
  const table = StickyMemory.attach(task.memory, task.worker)
  const barrier = new Int32Array(task.barrier)
  const results = new Int32Array(task.results)
  const perRound = task.workers * task.visits
  for (let round = 0; round < task.addresses.length; round++) {
    const address = task.addresses[round]
    arrive(barrier, task.workers * (round + 1), task.deadline)
    for (let visit = 0; visit < task.visits; visit++) {
      const candidate = task.worker * task.visits + visit
      const ref = table.visit(address, Date.now())
      results[round * perRound + candidate] = table.claim(ref, candidate)
    }
  }
  return { added: [], staleClaims: 0 }
}

const task = workerData as Task
parentPort?.postMessage(task.task === "hammer" ? hammer(task) : burst(task), [])
