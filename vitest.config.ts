import { defineConfig } from "vitest/config"

const e2e = ["test/e2e/**/*.test.ts", "test/compat/**/*.test.ts"]

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // End-to-end tests start real processes and bind real sockets: keep files in parallel, tests within a file serial.
    fileParallelism: true,
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: "nib", include: ["test/**/*.test.ts"] } },
      {
        // pen's behaviour must not change with worker threads: the end-to-end and side-by-side suites again, every
        // balancer they start with `--workers 2` (test/utils/Nib.ts reads NIB_WORKERS). workers.test.ts sets its own.
        extends: true,
        test: {
          name: "workers",
          include: e2e,
          exclude: ["test/e2e/workers.test.ts"],
          env: { NIB_WORKERS: "2" }
        }
      }
    ]
  }
})
