/**
 * The admin endpoint's routes, on `effect/http`'s HttpRouter: the dashboard and its assets, `/metrics` (Prometheus'
 * text format, from Effect's own exporter), the JSON API under `/api`, and the dashboard's event stream.
 *
 * To add an endpoint, add one line to {@link routes}: `get("/api/explain", handler)` for a read, or `change("POST",
 * path, handler)` for something that needs the token. A handler is an Effect that may fail with `Api.ApiError` (its
 * status and JSON body are sent); query strings and bodies are decoded with `query(schema)` and `body(schema)`, which
 * answer 400 naming the bad field.
 */
import { ByteSize, Effect } from "effect"
import type { Stream } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import * as Explain from "../domain/Explain.ts"
import { Origin } from "../services/ServerPool.ts"
import * as Api from "./Api.ts"
import * as Auth from "./Auth.ts"
import * as Dashboard from "./Dashboard.ts"
import * as State from "./State.ts"

/** What the routes need: the services, the token, and the dashboard's event stream. @category models */
export interface Context {
  readonly services: State.Services
  readonly token: Auth.Token
  /** One `text/event-stream` connection: an event with the state now, then one a second. */
  readonly events: Stream.Stream<Uint8Array>
}

/** Largest request body the API reads. @category constants */
export const MAX_BODY_BYTES = 64 * 1024

type Handler<R> = Effect.Effect<HttpServerResponse.HttpServerResponse, Api.ApiError, R>

const NO_STORE = { "cache-control": "no-store" } as const

/** A JSON response (never cached: it is the state now). @category constructors */
export const json = (body: unknown, status = 200): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.jsonUnsafe(body, { status, headers: NO_STORE })

const failure = (error: Api.ApiError): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.jsonUnsafe(Api.errorBody(error), {
    status: error.status,
    headers: error.status === 401 ? { ...NO_STORE, "www-authenticate": "Bearer" } : NO_STORE
  })

const answer = <R>(handler: Handler<R>) => handler.pipe(Effect.catchTag("ApiError", (e) => Effect.succeed(failure(e))))

/** A read-only route: no token needed. @category constructors */
export const get = <R extends HttpRouter.Provided>(path: HttpRouter.PathInput, handler: Handler<R>) =>
  HttpRouter.route("GET", path, answer(handler))

/** The request's path parameters, decoded: a bad one is a 400 naming it. @category decoding */
export const pathParams = <S extends Parameters<typeof Api.decode>[0]>(schema: S) =>
  Effect.flatMap(HttpRouter.params, (params) => Api.decode(schema, params))

/** The request's query string, decoded: a bad value (or an unknown name) is a 400 naming it. @category decoding */
export const query = <S extends Parameters<typeof Api.decode>[0]>(schema: S) =>
  Effect.gen(function*() {
    return yield* Api.decode(schema, yield* HttpServerRequest.ParsedSearchParams)
  })

/**
 * The request's JSON body, decoded: no body is `{}`; a body that is not JSON, too large or does not decode is a 400
 * (or 413) naming the field. @category decoding
 */
export const body = <S extends Parameters<typeof Api.decode>[0]>(schema: S) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const text = yield* request.text.pipe(
      Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.bytes(MAX_BODY_BYTES)),
      Effect.mapError((error) =>
        error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
          ? new Api.ApiError({ status: 413, message: `the body is larger than ${MAX_BODY_BYTES} bytes` })
          : new Api.ApiError({ status: 400, message: "the body could not be read" })
      )
    )
    const parsed = yield* Effect.try({
      try: () => text.trim() === "" ? {} : JSON.parse(text) as unknown,
      catch: () => new Api.ApiError({ status: 400, message: "the body is not JSON" })
    })
    return yield* Api.decode(schema, parsed)
  })

/**
 * A route that changes nib: it needs `Authorization: Bearer <token>` (401 without it or with a wrong one; 403 when
 * nib has no token file), checked before anything of the request is read. @category constructors
 */
export const change = <R extends HttpRouter.Provided>(
  token: Auth.Token,
  method: "POST" | "PATCH" | "PUT" | "DELETE",
  path: HttpRouter.PathInput,
  handler: Handler<R>
) =>
  HttpRouter.route(
    method,
    path,
    answer(Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      yield* Auth.check(token, request.headers["authorization"])
      // The operator's changes: `--peers` shares them.
      return yield* Effect.provideService(handler, Origin, "operator")
    }))
  )

const asset = (content: string, contentType: string) =>
  HttpServerResponse.text(content, {
    contentType,
    headers: {
      "cache-control": "no-cache",
      // Everything the page uses comes from nib itself.
      "content-security-policy":
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer"
    }
  })

/** Every route of the admin endpoint. @category routes */
export const routes = (ctx: Context) => {
  const s = ctx.services
  const readOnly = ctx.token._tag === "ReadOnly"
  const index = Effect.map(pathParams(Api.ServerPath), (p) => p.index)
  const serverNow = (i: number) => Effect.map(State.server(s, i), (view) => json(view))
  return [
    HttpRouter.route("GET", "/", asset(Dashboard.html, "text/html; charset=utf-8")),
    HttpRouter.route("GET", "/dashboard.js", asset(Dashboard.script, "text/javascript; charset=utf-8")),
    HttpRouter.route("GET", "/dashboard.css", asset(Dashboard.css, "text/css; charset=utf-8")),
    HttpRouter.route(
      "GET",
      "/metrics",
      Effect.gen(function*() {
        // Servers added at run time get their series before the registry is read.
        yield* s.stats.refresh
        return HttpServerResponse.text(yield* PrometheusMetrics.format(), {
          contentType: "text/plain; version=0.0.4; charset=utf-8",
          headers: NO_STORE
        })
      })
    ),
    get("/api/servers", Effect.map(State.servers(s), (view) => json(view))),
    get("/api/servers/:index", Effect.flatMap(index, serverNow)),
    get(
      "/api/clients",
      Effect.flatMap(query(Api.ClientsQuery), (q) => Effect.map(State.clients(s, q.limit), (view) => json(view)))
    ),
    get("/api/connections", Effect.map(State.connections(s), (connections) => json({ connections }))),
    get("/api/settings", Effect.map(State.settings(s, readOnly), (view) => json(view))),
    get("/api/peers", Effect.map(State.peers(s), (view) => json(view))),
    get("/api/state", Effect.map(State.state(s), (view) => json(view))),
    get(
      "/api/explain",
      Effect.flatMap(
        query(Api.ExplainQuery),
        (q) =>
          Effect.map(s.explain(q.client), (explanation) => json({ ...explanation, text: Explain.format(explanation) }))
      )
    ),
    HttpRouter.route(
      "GET",
      "/api/events",
      HttpServerResponse.stream(ctx.events, {
        contentType: "text/event-stream",
        headers: { ...NO_STORE, "x-accel-buffering": "no" }
      })
    ),
    change(
      ctx.token,
      "POST",
      "/api/servers/:index/blacklist",
      Effect.gen(function*() {
        const i = yield* index
        const { seconds } = yield* body(Api.BlacklistBody)
        yield* State.blacklist(s, i, seconds)
        return yield* serverNow(i)
      })
    ),
    change(
      ctx.token,
      "POST",
      "/api/servers/:index/drain",
      Effect.gen(function*() {
        const i = yield* index
        const { draining } = yield* body(Api.DrainBody)
        yield* State.drain(s, i, draining ?? true)
        return yield* serverNow(i)
      })
    ),
    change(
      ctx.token,
      "PATCH",
      "/api/servers/:index",
      Effect.gen(function*() {
        const i = yield* index
        yield* State.patch(s, i, yield* body(Api.ServerPatch))
        return yield* serverNow(i)
      })
    ),
    // Anything else under /api is a JSON 404 (other paths get the router's empty one).
    HttpRouter.route(
      "*",
      "/api/*",
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        return json({ error: `no such endpoint: ${request.method} ${request.url.split("?")[0]}` }, 404)
      })
    )
  ]
}

/** The routes as a layer for `HttpRouter.serve`. @category layers */
export const layer = (ctx: Context) => HttpRouter.addAll(routes(ctx))
