// A UDP server for the "udp" scenario: sends every datagram back to where it came from. Usage: node udp-echo.ts PORT
import * as Dgram from "node:dgram"

const socket = Dgram.createSocket("udp4")
socket.on("message", (datagram, from) => socket.send(datagram, from.port, from.address))
socket.bind(Number(process.argv[2]), "127.0.0.1")
process.on("SIGTERM", () => process.exit(0))
