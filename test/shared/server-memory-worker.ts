/**
 * A worker thread for test/shared/ServerMemory.test.ts: attaches to the memory it is given, waits at the barrier with
 * its siblings, then takes connections against a limit (releasing some), counts bytes and counters in its own rows, and
 * posts how many it took.
 */
import { parentPort, workerData } from "node:worker_threads"
import { Counters } from "../../src/shared/CounterMemory.ts"
import { ServerState } from "../../src/shared/ServerMemory.ts"
import type { Memory } from "../../src/shared/SharedState.ts"

const { memory, worker, barrier, attempts, limit } = workerData as {
  readonly memory: Memory
  readonly worker: number
  readonly barrier: Int32Array
  readonly attempts: number
  readonly limit: number
}
const state = new ServerState(memory.servers, worker)
const counters = new Counters(memory.counters, worker)
Atomics.add(barrier, 0, 1)
Atomics.wait(barrier, 1, 0, 5_000)
let taken = 0
for (let i = 0; i < attempts; i++) {
  // Row 2 (server 0) has a limit; row 3 (server 1) is taken and released at once, ending where it started.
  if (state.tryAcquire(2, limit)) taken++
  if (state.tryAcquire(3, 0)) state.release(3)
  state.count(2, 3, 5)
  counters.add("accepted", 1)
}
parentPort!.postMessage(taken)
