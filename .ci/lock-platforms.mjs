// npm 11 on these machines writes no lock entries for other platforms' optional packages (the registry here does not
// carry them), and `npm ci` then refuses the lock. This adds an entry (version and os, nothing to download) for each,
// so `npm ci` accepts the lock and skips them as it should. Run it after any `npm install` that rewrites the lock:
// node_modules/.bin/node .ci/lock-platforms.mjs
import * as Fs from "node:fs"
const lock = JSON.parse(Fs.readFileSync("package-lock.json", "utf8"))
const pkgs = lock.packages
let added = 0
for (const [path, meta] of Object.entries(pkgs)) {
  for (const [name, version] of Object.entries(meta.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`
    if (pkgs[key] || pkgs[`${path}/node_modules/${name}`]) continue
    const os = /darwin/.test(name) ? ["darwin"] : /win32/.test(name) ? ["win32"] : /android/.test(name) ? ["android"] : /freebsd/.test(name) ? ["freebsd"] : /openharmony/.test(name) ? ["openharmony"] : /linux/.test(name) ? ["linux"] : undefined
    pkgs[key] = { version, dev: meta.dev, optional: true, ...(os ? { os } : {}) }
    added++
  }
}
Fs.writeFileSync("package-lock.json", JSON.stringify(lock, null, 2) + "\n")
console.log("added", added)
