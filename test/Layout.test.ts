/**
 * The folders are the planes, and no import runs back up (README, "Layout"). From the bottom: pure rules, the
 * settings schema, the state worker threads share, sockets, the data plane's services, the data plane, and the
 * control plane (control port, status, signals, the supervisor of workers), with the admin endpoint and a worker
 * thread's agent beside it and apart from it. The layer graphs and the entries sit on top.
 *
 * Read from the source text: every `import ... from "..."`, `export ... from "..."` and `import("...")` that names a
 * file of nib's own.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = fileURLToPath(new URL("..", import.meta.url))

/** A plane's rank: a file may import its own plane and the planes below it. Planes of one rank are separate. */
const PLANES: ReadonlyArray<readonly [plane: string, rank: number]> = [
  ["src/domain", 0],
  ["src/Config.ts", 1],
  ["src/shared", 2],
  ["src/net", 3],
  ["src/services", 4],
  ["src/proxy", 5],
  ["src/peers", 5], // --peers: the sticky table and the operator's actions, shared through Redis
  ["src/control", 6],
  ["src/admin", 6],
  ["src/worker/Worker.ts", 8], // a worker thread's entry
  ["src/worker", 6], // what a worker thread runs beside the data plane: the agent that applies the main's changes
  ["layers", 7],
  ["src", 8] // the entries: bin, Cli, index, Demo, Daemon and the companions
]

const planeOf = (file: string): readonly [string, number] | undefined => {
  const relative = Path.relative(ROOT, file).split(Path.sep).join("/")
  return PLANES.find(([plane]) => relative === plane || relative.startsWith(`${plane}/`))
}

const filesUnder = (dir: string): ReadonlyArray<string> =>
  Fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = Path.join(dir, entry.name)
    return entry.isDirectory() ? filesUnder(path) : entry.name.endsWith(".ts") ? [path] : []
  })

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["'](\.{1,2}\/[^"']+)["']/gm

const importsOf = (file: string, text = Fs.readFileSync(file, "utf8")): ReadonlyArray<string> =>
  Array.from(text.matchAll(IMPORT), (match) => Path.resolve(Path.dirname(file), match[1]!))

const sources = [...filesUnder(Path.join(ROOT, "src")), ...filesUnder(Path.join(ROOT, "layers"))]

/** Every import of nib's own that runs up a plane, or across to another plane of the same rank, as `from -> to`. */
const violations = (files: ReadonlyArray<string>, text?: (file: string) => string) =>
  files.flatMap((file) => {
    const [plane, rank] = planeOf(file)!
    return importsOf(file, text?.(file)).flatMap((target) => {
      const to = planeOf(target)
      const allowed = to === undefined || to[0] === plane || to[1] < rank
      return allowed ? [] : [`${Path.relative(ROOT, file)} -> ${Path.relative(ROOT, target)}`]
    })
  })

describe("the planes", () => {
  it("every source file belongs to a plane, and every import names a file that exists", () => {
    assert.isAbove(sources.length, 50)
    for (const file of sources) {
      assert.isDefined(planeOf(file), file)
      for (const target of importsOf(file)) assert.isTrue(Fs.existsSync(target), `${file} imports ${target}`)
    }
  })

  it("no import runs back up, and the control port and the admin endpoint do not import each other", () => {
    assert.deepStrictEqual(violations(sources), [])
  })

  it("the check sees an import that runs up, and one across", () => {
    // The rule itself, on texts written for it: a service importing the proxy, admin importing the control plane, and
    // the proxy importing a service (allowed).
    const texts: Record<string, string> = {
      [Path.join(ROOT, "src/services/Up.ts")]: `import { TcpProxy } from "../proxy/TcpProxy.ts"\n`,
      [Path.join(ROOT, "src/admin/Across.ts")]: `export const y = () => import("../control/Control.ts")\n`,
      [Path.join(ROOT, "src/proxy/Down.ts")]: `import type { ServerPool } from "../services/ServerPool.ts"\n`
    }
    assert.deepStrictEqual(violations(Object.keys(texts), (file) => texts[file]!), [
      "src/services/Up.ts -> src/proxy/TcpProxy.ts",
      "src/admin/Across.ts -> src/control/Control.ts"
    ])
  })
})
