/**
 * Certificates for the TLS tests, made by `openssl` in a test's directory: self-signed ones, and a CA that signs
 * certificates for names and answers OCSP for them.
 */
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

/** Debian's openssl, or undefined (the TLS tests are then skipped, with a warning). */
export const openssl = ["/usr/bin/openssl", "/bin/openssl"].find((path) => Fs.existsSync(path))

const ssl = (...args: ReadonlyArray<string>) => ChildProcess.execFileSync(openssl!, args, { stdio: "ignore" })

/** A self-signed certificate for 127.0.0.1 and `name`, and its key, in `dir`; also both in one file. */
export const certificate = (dir: string, name = "localhost") =>
  Effect.sync(() => {
    const cert = Path.join(dir, "cert.pem")
    const key = Path.join(dir, "key.pem")
    ssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      "-addext",
      `subjectAltName=DNS:${name},IP:127.0.0.1`
    )
    const both = Path.join(dir, "both.pem")
    Fs.writeFileSync(both, Fs.readFileSync(cert, "utf8") + Fs.readFileSync(key, "utf8"))
    return { cert, key, both }
  })

/** A CA in `dir` and `sign(name)`: a certificate for `name` (and 127.0.0.1) it signs, with its key and serial. */
export const authority = (dir: string) => {
  const file = (name: string) => Path.join(dir, name)
  return Effect.sync(() => {
    ssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      file("ca.key"),
      "-out",
      file("ca.pem"),
      "-days",
      "1",
      "-subj",
      "/CN=nib test CA"
    )
    const sign = (name: string) => {
      ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        file(`${name}.key`),
        "-out",
        file(`${name}.csr`),
        "-subj",
        `/CN=${name}`
      )
      Fs.writeFileSync(file(`${name}.ext`), `subjectAltName=DNS:${name},IP:127.0.0.1\n`)
      ssl(
        "x509",
        "-req",
        "-in",
        file(`${name}.csr`),
        "-CA",
        file("ca.pem"),
        "-CAkey",
        file("ca.key"),
        "-CAcreateserial",
        "-out",
        file(`${name}.crt`),
        "-days",
        "1",
        "-extfile",
        file(`${name}.ext`)
      )
      return { cert: file(`${name}.crt`), key: file(`${name}.key`) }
    }
    /** A DER OCSP response, signed by the CA, saying `name`'s certificate is good. */
    const ocsp = (name: string) => {
      const serial = ChildProcess.execFileSync(openssl!, ["x509", "-in", file(`${name}.crt`), "-noout", "-serial"])
        .toString().trim().split("=")[1]!
      const expires = new Date(Date.now() + 86_400_000).toISOString().replace(/[-:T]/g, "").slice(2, 14) + "Z"
      Fs.writeFileSync(file("index.txt"), `V\t${expires}\t\t${serial}\tunknown\t/CN=${name}\n`)
      ssl("ocsp", "-issuer", file("ca.pem"), "-cert", file(`${name}.crt`), "-no_nonce", "-reqout", file(`${name}.req`))
      const out = file(`${name}.ocsp.der`)
      ssl(
        "ocsp",
        "-index",
        file("index.txt"),
        "-rsigner",
        file("ca.pem"),
        "-rkey",
        file("ca.key"),
        "-CA",
        file("ca.pem"),
        "-reqin",
        file(`${name}.req`),
        "-respout",
        out,
        "-ndays",
        "1"
      )
      return out
    }
    return { ca: file("ca.pem"), sign, ocsp }
  })
}
