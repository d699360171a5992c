"""The policy server: FastAPI app factory, routes and error handling.

Routes are thin: parse (pydantic schemas), check the state against the loaded network
(:func:`~invnet.serving.service.build_state`), ask the policy (:func:`~invnet.serving.service.recommend`).
The policy is loaded once in the lifespan; ``POST /v1/policies/reload`` builds the new one completely
(in a worker thread, so requests keep flowing) and then swaps one reference, so a request in flight
finishes with the policy it started with.

Every bad request is a 4xx whose ``detail`` is a list of ``{loc, msg, type}`` naming the field.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from invnet.serving.batching import Coalescer
from invnet.serving.metrics import BodyLimitMiddleware, MetricsMiddleware, ServerMetrics
from invnet.serving.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    PolicyInfo,
    RecommendationRequest,
    RecommendationResponse,
    ReloadRequest,
)
from invnet.serving.service import (
    LoadedPolicy,
    PolicyOutputError,
    RequestError,
    build_state,
    example_state,
    group_by_period,
    load_policy,
    recommend,
)
from invnet.serving.settings import ServingSettings
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

API_KEY_HEADER = "X-API-Key"
_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="API key (settings: api_key)")


@dataclass
class ServerState:
    """Mutable server state; ``loaded`` is swapped as one reference on reload."""

    settings: ServingSettings
    metrics: ServerMetrics
    loaded: LoadedPolicy | None = None
    example: dict[str, Any] | None = None
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    coalescer: Coalescer = field(default_factory=Coalescer)
    unhandled: int = 0  # requests that reached the catch-all handler (tests assert it stays 0)

    def install(self, lp: LoadedPolicy) -> None:
        self.example = example_state(lp)
        self.loaded = lp  # the swap: one reference assignment
        self.metrics.set_policy(lp.name, lp.version, lp.net.scenario.name)


def load_for_settings(settings: ServingSettings) -> LoadedPolicy:
    """Load the scenario and policy named by the settings.

    Raises ValueError (scenario problems, unknown policy, bundle for another network) or
    FileNotFoundError with a message naming the setting.
    """
    from invnet.envs.network import compile_network
    from invnet.envs.scenario import ScenarioError, load_scenario

    try:
        sc = load_scenario(settings.scenario)
    except ScenarioError as e:
        raise ValueError(f"scenario: {e}") from None
    except (FileNotFoundError, OSError) as e:
        raise ValueError(f"scenario: cannot read {settings.scenario!r}: {e}") from None
    return load_policy(compile_network(sc), settings.policy)


M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M]) -> M:
    """The body parsed and validated in one pass by pydantic-core (about twice as fast as FastAPI's
    ``json.loads`` + validation); errors become the usual 422 located under ``body``."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None


def _body_schema(model: type[BaseModel], secured: bool) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    extra: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}
    if secured:
        extra["security"] = [{"APIKeyHeader": []}]
    return extra


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer."""
    text = {
        400: "malformed request",
        401: "missing or wrong API key",
        403: "admin routes disabled (no api_key configured)",
        413: "body larger than max_body_bytes",
        422: "invalid request: each item names the field",
        503: "policy not loaded yet",
    }
    return {c: {"model": ErrorResponse, "description": text[c]} for c in codes}


def _narrow_to_network(comps: dict[str, Any], lp: LoadedPolicy) -> None:
    """Make the request schemas specific to the served network: node and SKU names, pipeline length,
    horizon (an integrator's client generator then knows them). Cross-entry rules (every node once)
    are checked by the server only."""
    net = lp.net
    props = comps["NodeSkuState"]["properties"]
    props["node"]["enum"] = list(net.node_ids)
    props["sku"]["anyOf"][0]["enum"] = list(net.skus)
    pipe = props["in_transit"]["anyOf"][0]
    pipe["minItems"] = pipe["maxItems"] = net.pipeline_len
    if not net.backorder:
        props["backlog"]["maximum"] = 0
    comps["RecommendationRequest"]["properties"]["t"]["maximum"] = net.periods - 1


def _detail(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    return {"detail": [{"loc": loc, "msg": msg, "type": kind}]}


def create_app(settings: ServingSettings, preloaded: LoadedPolicy | None = None) -> FastAPI:
    """The app for ``settings``. The policy is loaded in the lifespan (or ``preloaded`` is used);
    until then ``/readyz`` and the ``/v1`` routes answer 503."""
    metrics = ServerMetrics()
    server = ServerState(settings=settings, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if server.loaded is None:
            lp = preloaded if preloaded is not None else await run_in_threadpool(load_for_settings, settings)
            await run_in_threadpool(server.install, lp)
        if settings.gc_freeze:
            # everything loaded so far (libraries, the policy) lives as long as the process: moved out of
            # the collector's generations, full collections stay short (p99 at concurrency 32 halves)
            gc.collect()
            gc.freeze()
        yield

    app = FastAPI(
        title="invnet policy server",
        version="1",
        summary="Recommended orders and transfers for an inventory network, from any invnet policy.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry is off: /metrics (Prometheus) is this server's telemetry, and
        # the spans would cost more than the policy call per request
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        docs_url=None,  # served below from the swagger-ui-bundle package: no CDN, works offline
    )
    app.state.server = server

    # ---- dependencies ------------------------------------------------------------------------
    def _key_ok(given: str | None) -> bool:
        key = settings.api_key
        if key is None or given is None:
            return False
        # bytes: compare_digest refuses non-ASCII str, and a header may carry any latin-1 byte
        return secrets.compare_digest(given.encode("utf-8"), key.get_secret_value().encode("utf-8"))

    def check_user_key(key: str | None) -> None:
        if settings.require_api_key and not _key_ok(key):
            raise HTTPException(401, _detail(["header", API_KEY_HEADER], "missing or wrong API key", "auth")["detail"])

    async def user_key(key: str | None = Depends(_key_header)) -> None:
        check_user_key(key)

    async def admin_key(key: str | None = Depends(_key_header)) -> None:
        if settings.api_key is None:
            raise HTTPException(
                403, _detail(["header", API_KEY_HEADER], "admin routes are disabled: no api_key set", "auth")["detail"]
            )
        if not _key_ok(key):
            raise HTTPException(401, _detail(["header", API_KEY_HEADER], "missing or wrong API key", "auth")["detail"])

    async def loaded() -> LoadedPolicy:  # async: a sync dependency would cost a thread hop per request
        lp = server.loaded
        if lp is None:
            raise HTTPException(503, _detail([], "policy not loaded yet", "not_ready")["detail"])
        return lp

    async def hot_route_checks(request: Request) -> LoadedPolicy:
        """The recommendation routes' key check and policy lookup, inline: FastAPI's dependency
        resolution costs more than the policy call on these routes."""
        check_user_key(request.headers.get(API_KEY_HEADER))
        return await loaded()

    # ---- error handlers ----------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        errors = [{"loc": list(loc), "msg": msg, "type": "value_error"} for loc, msg in exc.problems]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(PolicyOutputError)
    async def _policy_error(request: Request, exc: PolicyOutputError) -> JSONResponse:
        return JSONResponse(_detail([], str(exc), "policy_error"), status_code=500)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:  # last line of defence
        server.unhandled += 1
        return JSONResponse(_detail([], f"internal error ({type(exc).__name__})", "internal"), status_code=500)

    # ---- routes ------------------------------------------------------------------------------
    static_dir = resources.files("invnet.serving") / "static"
    app.mount("/static", StaticFiles(directory=str(static_dir)), name="static")
    index_html = (static_dir / "index.html").read_text(encoding="utf-8")
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/static-docs", StaticFiles(directory=str(swagger_ui_path)), name="static-docs")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url="/static-docs/swagger-ui-bundle.js",
            swagger_css_url="/static-docs/swagger-ui.css",
            swagger_favicon_url="/static-docs/favicon-32x32.png",
        )

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(index_html)

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", tags=["ops"], summary="Readiness: 200 once a policy is loaded, else 503", responses=_errors(503)
    )
    async def readyz() -> JSONResponse:
        lp = server.loaded
        if lp is None:
            return JSONResponse(_detail([], "policy not loaded yet", "not_ready"), status_code=503)
        return JSONResponse({"status": "ready", "policy": lp.name, "version": lp.version})

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # the key check (and its OpenAPI security entry) only where keys are required
    v1 = [Depends(user_key)] if settings.require_api_key else []
    v1_errors = _errors(401, 503) if settings.require_api_key else _errors(503)
    hot_errors = _errors(401, 413, 422, 503) if settings.require_api_key else _errors(413, 422, 503)

    @app.get("/v1/policies", response_model=PolicyInfo, tags=["policies"], dependencies=v1, responses=v1_errors)
    async def policies(lp: LoadedPolicy = Depends(loaded)) -> PolicyInfo:
        """The loaded policy: name, version, SPEC, parameters, bundle metadata and the network it serves."""
        return PolicyInfo(
            name=lp.name,
            version=lp.version,
            spec=lp.spec,
            params=lp.params,
            loaded_at=lp.loaded_at,
            scenario=lp.net.scenario.name,
            trained_on=lp.trained_on,
            metadata=lp.metadata,
            reference_policy=lp.reference.name,
            network=lp.network_info(),
        )

    @app.post(
        "/v1/policies/reload",
        response_model=PolicyInfo,
        tags=["policies"],
        dependencies=[Depends(admin_key)],
        responses=_errors(401, 403, 413, 422, 503),
        openapi_extra=_body_schema(ReloadRequest, True),
    )
    async def reload(request: Request, lp: LoadedPolicy = Depends(loaded)) -> PolicyInfo:
        """Load another policy SPEC for the same network; requests in flight finish on the old one."""
        body = await parse_body(request, ReloadRequest)
        async with server.reload_lock:
            try:
                new = await run_in_threadpool(load_policy, lp.net, body.policy, body.params)
                await run_in_threadpool(server.install, new)
            except TypeError as e:
                metrics.reloads.labels("failed").inc()
                raise RequestError([(("body", "params"), f"not accepted by policy {body.policy!r}: {e}")]) from None
            except (ValueError, OSError, ImportError, RuntimeError, KeyError) as e:
                metrics.reloads.labels("failed").inc()
                raise RequestError([(("body", "policy"), str(e) or type(e).__name__)]) from None
            metrics.reloads.labels("ok").inc()
        return await policies(server.loaded)  # type: ignore[arg-type]

    @app.get(
        "/v1/example-state",
        response_model=RecommendationRequest,
        tags=["recommendations"],
        dependencies=v1,
        responses=v1_errors,
    )
    async def example(lp: LoadedPolicy = Depends(loaded)) -> JSONResponse:
        """A valid state of the loaded network (the reference policy run a few periods)."""
        return JSONResponse(server.example)

    @app.post(
        "/v1/recommendations",
        response_model=RecommendationResponse,
        tags=["recommendations"],
        responses=hot_errors,
        openapi_extra=_body_schema(RecommendationRequest, settings.require_api_key),
    )
    async def recommendations(request: Request) -> JSONResponse:
        """Orders and transfers for one network state."""
        lp = await hot_route_checks(request)
        body = await parse_body(request, RecommendationRequest)
        state, rate = build_state(lp, [body])
        if settings.coalesce:
            result = await server.coalescer.submit(lp, state, rate)
        else:
            result = recommend(lp, state, rate)[0]
        metrics.recommendations.inc()
        return JSONResponse(result)

    async def batch(request: Request) -> JSONResponse:
        """Orders and transfers for many states: one batched policy call per period t present."""
        lp = await hot_route_checks(request)
        body = await parse_body(request, BatchRequest)
        n = len(body.states)
        if n > settings.max_batch:
            raise RequestError([(("body", "states"), f"at most {settings.max_batch} states per batch, got {n}")])
        groups = group_by_period(body.states)
        prepared = []
        for idx in groups.values():
            reqs = [body.states[b] for b in idx]
            prepared.append((idx, *build_state(lp, reqs, [("body", "states", b) for b in idx])))
        results: list[Any] = [None] * n
        for idx, state, rate in prepared:
            for b, r in zip(idx, recommend(lp, state, rate), strict=True):
                results[b] = r
        metrics.recommendations.inc(n)
        return JSONResponse({"results": results})

    for path, in_schema in (("/v1/recommendations:batch", True), ("/v1/recommendations/batch", False)):
        app.add_api_route(
            path,
            batch,
            methods=["POST"],
            response_model=BatchResponse,
            tags=["recommendations"],
            include_in_schema=in_schema,
            responses=hot_errors,
            summary="Recommendations for many states",
            openapi_extra=_body_schema(BatchRequest, settings.require_api_key),
        )

    def openapi() -> dict[str, Any]:
        """FastAPI's schema plus the request bodies parsed by :func:`parse_body` (not seen by FastAPI)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            comps = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in (BatchRequest, RecommendationRequest, ReloadRequest):
                js = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
                comps.update(js.pop("$defs", {}))
                comps[model.__name__] = js
            lp = server.loaded
            if lp is None:
                return spec  # generic until the policy is loaded; not cached
            _narrow_to_network(comps, lp)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # ---- middleware (last added = outermost) ----------------------------------------------
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", API_KEY_HEADER],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    known = frozenset(p for r in app.routes if isinstance(p := getattr(r, "path", None), str))
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=known)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from ``INVNET_*`` variables."""
    return create_app(ServingSettings())  # type: ignore[call-arg]
