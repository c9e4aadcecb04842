/**
 * The `nib` executable as a bundle (`npm run build` runs this after tsc): `src/bin.ts` and everything it imports,
 * Effect included, in `dist/bundle/nib.js` (and a worker thread's entry in `dist/bundle/worker.js`), with what is imported on demand (the balancer once the command line asks
 * for it, `--admin`'s server, `--demo`) in chunks of its own. The library (`dist/src`) and the companion commands stay
 * as tsc writes them.
 *
 * A bundle loads Effect as a few files instead of hundreds, and rolldown drops what nib never uses even though nib
 * imports Effect through its barrel (`from "effect"`). Comments go, names stay (no minifying): stack traces read as
 * the source, and `--enable-source-maps` maps them back to it. bench/README.md ("Start-up") has the figures.
 */
import { defineConfig } from "rolldown"

export default defineConfig({
  // The worker thread of `--workers` is an entry of its own (`worker.js`, beside `nib.js`), sharing Effect's chunks.
  input: { nib: "src/bin.ts", worker: "src/worker/Worker.ts" },
  platform: "node",
  output: {
    dir: "dist/bundle",
    cleanDir: true,
    format: "esm",
    entryFileNames: "[name].js",
    chunkFileNames: "chunks/[name]-[hash].js",
    comments: false,
    sourcemap: true
  }
})
