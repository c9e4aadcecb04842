import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // End-to-end tests start real processes and bind real sockets: keep files in parallel, tests within a file serial.
    fileParallelism: true,
    maxWorkers: 2
  }
})
