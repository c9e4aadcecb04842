// What bench/download.ts and bench/upload.ts share: their arguments (PORT SECONDS CONNECTIONS BODY), the deadline,
// the counts, and the JSON line they end with: {"bytes","seconds","bodies","errors","cpuBusy"}, cpuBusy being each
// CPU's busy percentage over the run (from /proc/stat; the process's start-up excluded), and "tls" (the protocol,
// cipher and key exchange negotiated) when the load spoke TLS. bench/tls-connect.ts reads the CPUs the same way.
import * as Fs from "node:fs"
import type { TLSSocket } from "node:tls"

/** Each CPU's idle and total time so far. */
export const cpuTimes = () =>
  Fs.readFileSync("/proc/stat", "utf8").split("\n").filter((l) => /^cpu\d+ /.test(l)).map((l) => {
    const v = l.trim().split(/\s+/).slice(1).map(Number)
    return { idle: v[3]! + v[4]!, total: v.reduce((a, b) => a + b, 0) }
  })

/** Each CPU's busy percentage since `before` (a reading of `cpuTimes`). */
export const cpuBusySince = (before: ReturnType<typeof cpuTimes>): Array<number> =>
  cpuTimes().map((b, i) => {
    const a = before[i]!
    return 100 * (1 - (b.idle - a.idle) / Math.max(1, b.total - a.total))
  })

/** What a TLS connection negotiated: "PROTOCOL CIPHER KEY-EXCHANGE" ("TLSv1.3 TLS_AES_256_GCM_SHA384 prime256v1"). */
export const negotiated = (socket: TLSSocket): string => {
  const exchange = socket.getEphemeralKeyInfo() as { name?: string } | null
  return `${socket.getProtocol()} ${socket.getCipher().name} ${exchange?.name ?? "?"}`
}

/** One bulk run: its arguments, its deadline and what it has counted. */
/**
 * Runs `clients` loops of `connection` (true: it got its answer and was closed by the balancer, with `latencies`
 * given its time) until `seconds` have passed, and measures them: completed connections, the time until the last one,
 * errors, the 99th percentile of `latencies` and each CPU's busy share. The loads of bench/tls-connect.ts and
 * bench/many-clients.ts.
 */
export const connectLoop = async (
  clients: number,
  seconds: number,
  connection: (latencies: Array<number>) => Promise<boolean>
) => {
  const latencies: Array<number> = []
  let errors = 0
  const cpuBefore = cpuTimes()
  const started = performance.now()
  const deadline = started + seconds * 1000
  await Promise.all(Array.from({ length: clients }, async () => {
    while (performance.now() < deadline) if (!(await connection(latencies))) errors++
  }))
  const elapsed = (performance.now() - started) / 1000
  const cpuBusy = cpuBusySince(cpuBefore)
  latencies.sort((a, b) => a - b)
  const p99Ms = latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))] ?? NaN
  return { connections: latencies.length, seconds: elapsed, errors, p99Ms, cpuBusy }
}

export interface Run {
  readonly port: number
  readonly connections: number
  /** Bytes in one body. */
  readonly size: number
  /** Whether the run is over (a body under way then is finished, none is started). */
  readonly over: () => boolean
  bodies: number
  errors: number
  /** What a TLS load negotiated: "PROTOCOL CIPHER KEY-EXCHANGE" (the last connection's). */
  tls?: string
}

/** Starts a run from the command line, runs `connection` CONNECTIONS times at once, then prints the JSON line. */
export const main = async (connection: (run: Run) => Promise<void>): Promise<void> => {
  const seconds = Number(process.argv[3])
  const cpuBefore = cpuTimes()
  const started = performance.now()
  const deadline = started + seconds * 1000
  const run: Run = {
    port: Number(process.argv[2]),
    connections: Number(process.argv[4] ?? 4),
    size: Number(process.argv[5] ?? 64 * 1024 * 1024),
    over: () => performance.now() >= deadline,
    bodies: 0,
    errors: 0
  }
  await Promise.all(Array.from({ length: run.connections }, () => connection(run)))
  const elapsed = (performance.now() - started) / 1000
  const cpuBusy = cpuBusySince(cpuBefore)
  const { bodies, errors, size, tls } = run
  process.stdout.write(JSON.stringify({ bytes: bodies * size, seconds: elapsed, bodies, errors, cpuBusy, tls }) + "\n")
}
