/**
 * The TLS settings beyond the certificate files, as pen names them: `-L` (the protocol floor), `-Z`, and the
 * `ssl_ciphers`, `ssl_option`, `ssl_sni_path`, `ssl_ocsp_response` and `ssl_client_renegotiation_interval`
 * commands; and the protocol versions they leave. Pure; `net/Tls` builds contexts from them.
 */

/**
 * pen's `-L` values, and nib's two real floors. OpenSSL 3 (pen's, and Node's) speaks neither SSLv2 nor SSLv3, and at
 * its default security level not TLS 1.0 or 1.1 either, so pen's four values all mean TLS 1.2 and later.
 *
 * @category constants
 */
export const PROTOCOLS = ["ssl23", "ssl2", "ssl3", "tls1", "tls1.2", "tls1.3"] as const
/** A `-L` value. @category models */
export type Protocol = (typeof PROTOCOLS)[number]

/** pen's `ssl_option` values (cumulative), and nib's `no_tlsv1.3`. @category constants */
export const OPTIONS = [
  "no_sslv2",
  "no_sslv3",
  "no_tlsv1",
  "no_tlsv1.1",
  "no_tlsv1.2",
  "no_tlsv1.3",
  "cipher_server_preference"
] as const
/** An `ssl_option` value. @category models */
export type Option = (typeof OPTIONS)[number]

/** pen's default `ssl_client_renegotiation_interval`, in seconds. @category constants */
export const RENEGOTIATION_INTERVAL = 3600

/** The settings. @category models */
export interface Tuning {
  /** `-L`: the protocol floor. */
  readonly protocol: Protocol
  /** `-Z`: OpenSSL's bug workarounds (`SSL_OP_ALL`). */
  readonly compat: boolean
  /** `ssl_ciphers`: OpenSSL's cipher list (TLS 1.2 ciphers and TLS 1.3 suites alike); undefined is Node's. */
  readonly ciphers: string | undefined
  /** `ssl_option`: cumulative, each once, in the order given. */
  readonly options: ReadonlyArray<Option>
  /** `ssl_sni_path`: `DIR/NAME.crt`, `.key`, optional `.ca` and `.ocsp` for the client's server name NAME. */
  readonly sniPath: string | undefined
  /** `ssl_ocsp_response`: the DER OCSP response stapled for the default certificate. */
  readonly ocspResponse: string | undefined
  /** `ssl_client_renegotiation_interval`: 0 refuses every client renegotiation. */
  readonly renegotiationInterval: number
}

/** pen's defaults. @category constructors */
export const defaults: Tuning = {
  protocol: "ssl23",
  compat: false,
  ciphers: undefined,
  options: [],
  sniPath: undefined,
  ocspResponse: undefined,
  renegotiationInterval: RENEGOTIATION_INTERVAL
}

/** A protocol version Node can be asked for. @category models */
export type Version = "TLSv1.2" | "TLSv1.3"

/**
 * The versions `tuning` leaves on, lowest and highest, or why none is: `-L tls1.3` and `ssl_option no_tlsv1.2` turn
 * TLS 1.2 off, `ssl_option no_tlsv1.3` TLS 1.3.
 *
 * @category rules
 */
export const versions = (
  tuning: Pick<Tuning, "protocol" | "options">
): { readonly min: Version; readonly max: Version } | string => {
  const no12 = tuning.protocol === "tls1.3" || tuning.options.includes("no_tlsv1.2")
  const no13 = tuning.options.includes("no_tlsv1.3")
  if (no12 && no13) return "no TLS version is left (TLS 1.2 and 1.3 are both off)"
  return { min: no12 ? "TLSv1.3" : "TLSv1.2", max: no13 ? "TLSv1.2" : "TLSv1.3" }
}

/** `ssl_option OPT` on `tuning`: added once. @category rules */
export const addOption = (tuning: Tuning, option: Option): Tuning =>
  tuning.options.includes(option) ? tuning : { ...tuning, options: [...tuning.options, option] }

/**
 * The commands that give `tuning`'s `ssl_*` settings that differ from pen's defaults (for `write`). `-L` and `-Z`
 * are flags, kept on the command line.
 *
 * @category encoding
 */
export const commands = (tuning: Tuning): Array<string> => [
  ...(tuning.ciphers === undefined ? [] : [`ssl_ciphers ${tuning.ciphers}`]),
  ...tuning.options.map((option) => `ssl_option ${option}`),
  ...(tuning.sniPath === undefined ? [] : [`ssl_sni_path ${tuning.sniPath}`]),
  ...(tuning.ocspResponse === undefined ? [] : [`ssl_ocsp_response ${tuning.ocspResponse}`]),
  ...(tuning.renegotiationInterval === RENEGOTIATION_INTERVAL
    ? []
    : [`ssl_client_renegotiation_interval ${tuning.renegotiationInterval}`])
]

/** The `ssl_*` commands. @category constants */
export const COMMANDS = [
  "ssl_ciphers",
  "ssl_option",
  "ssl_sni_path",
  "ssl_ocsp_response",
  "ssl_client_renegotiation_interval"
] as const
/** An `ssl_*` command's name. @category models */
export type CommandName = (typeof COMMANDS)[number]

/** One `ssl_*` command with its argument, decoded. @category models */
export type Change =
  | { readonly setting: "ssl_ciphers"; readonly value: string }
  | { readonly setting: "ssl_option"; readonly value: Option }
  | { readonly setting: "ssl_sni_path"; readonly value: string }
  | { readonly setting: "ssl_ocsp_response"; readonly value: string }
  | { readonly setting: "ssl_client_renegotiation_interval"; readonly value: number }

/** `tuning` with `change` made. @category rules */
export const apply = (tuning: Tuning, change: Change): Tuning => {
  switch (change.setting) {
    case "ssl_ciphers":
      return { ...tuning, ciphers: change.value }
    case "ssl_option":
      return addOption(tuning, change.value)
    case "ssl_sni_path":
      return { ...tuning, sniPath: change.value }
    case "ssl_ocsp_response":
      return { ...tuning, ocspResponse: change.value }
    case "ssl_client_renegotiation_interval":
      return { ...tuning, renegotiationInterval: change.value }
  }
}

/** What an `ssl_*` command without an argument answers: the setting, or nothing when it is unset. @category encoding */
export const show = (tuning: Tuning, setting: CommandName): string => {
  switch (setting) {
    case "ssl_ciphers":
      return tuning.ciphers === undefined ? "" : `${tuning.ciphers}\n`
    case "ssl_option":
      return tuning.options.length === 0 ? "" : `${tuning.options.join(" ")}\n`
    case "ssl_sni_path":
      return tuning.sniPath === undefined ? "" : `${tuning.sniPath}\n`
    case "ssl_ocsp_response":
      return tuning.ocspResponse === undefined ? "" : `${tuning.ocspResponse}\n`
    case "ssl_client_renegotiation_interval":
      return `${tuning.renegotiationInterval}\n`
  }
}
