"""The Open Inference Protocol V2 app: health, server and model metadata, the model list, and
``infer`` (JSON or binary tensors; task bundles also take their natural inputs), plus
``/metrics``. Every refusal is a 4xx with ``{"error": "..."}`` naming the problem, and the
server keeps serving. Imported only by `serve` (FastAPI resolves the handlers' annotations
from this module's globals, so fastapi is imported at the top)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from modelport._version import __version__
from modelport.errors import ModelportError
from modelport.serve.protocol import (
    HEADER_LENGTH,
    ProtocolError,
    datatype_of,
    encode_response,
    error_body,
    parse_request,
)

if TYPE_CHECKING:
    from modelport.serve.batcher import Batcher
    from modelport.serve.model import ServedModel
    from modelport.serve.options import ServeOptions
    from modelport.specs import TensorSpec

log = logging.getLogger("modelport")
EXTENSIONS = ["binary_tensor_data", "model_repository(index)", "metrics"]


def create_app(models: list[ServedModel], options: ServeOptions) -> Any:
    """An ASGI app (FastAPI) serving ``models``; their batchers start with the app's lifespan
    and stop (after the queued requests) when it ends, which also closes the sessions."""
    from concurrent.futures import ThreadPoolExecutor

    from modelport.serve.batcher import Batcher
    from modelport.serve.metrics import ServeMetrics

    by_name = {m.name: m for m in models}
    metrics = ServeMetrics()
    state: dict[str, Any] = {"batchers": {}, "ready": False}

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        workers = sum(len(m.sessions) for m in models)
        executor = ThreadPoolExecutor(max_workers=max(1, workers),
                                      thread_name_prefix="modelport-serve")
        batchers = {m.name: Batcher(m, options, metrics, executor) for m in models}
        for batcher in batchers.values():
            batcher.start()
        state["batchers"], state["ready"] = batchers, True
        try:
            yield
        finally:
            state["ready"] = False
            for batcher in batchers.values():
                await batcher.stop()
            state["batchers"] = {}
            executor.shutdown(wait=True)
            for m in models:
                m.close()

    app = FastAPI(title="modelport serve", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    def reply(doc: Any, status: int = 200) -> Response:
        import json

        return Response(json.dumps(doc), status_code=status, media_type="application/json")

    def refuse(message: str, status: int) -> Response:
        return Response(error_body(message), status_code=status, media_type="application/json")

    def model_or_404(name: str, version: str | None = None) -> ServedModel:
        model = by_name.get(name)
        if model is None:
            raise ProtocolError(f"unknown model '{name}'; this server serves "
                                f"{', '.join(sorted(by_name)) or 'nothing'}", 404)
        if version not in (None, "", model.version):
            raise ProtocolError(f"model '{name}' has version {model.version} only, not "
                                f"'{version}'", 404)
        return model

    @app.exception_handler(ProtocolError)
    async def _protocol_error(request: Request, exc: ProtocolError) -> Response:
        return refuse(str(exc), exc.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        # unknown paths and methods answer in the protocol's {"error": ...} shape too
        return refuse(f"{request.method} {request.url.path}: {exc.detail}", exc.status_code)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return reply({"name": "modelport", "version": __version__, "extensions": EXTENSIONS})

    @app.get("/v2/health/live")
    async def live() -> Response:
        return reply({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return reply({"ready": state["ready"]}, 200 if state["ready"] else 503)

    @app.get("/v2/models")
    async def model_list() -> Response:
        return reply({"models": [_index_entry(m, state["ready"]) for m in models]})

    @app.post("/v2/repository/index")
    async def repository_index(request: Request) -> Response:
        await _read_body(request, options.max_request_bytes)
        return reply([_index_entry(m, state["ready"]) for m in models])

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> Response:
        return reply(_metadata(model_or_404(name, version)))

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        model_or_404(name, version)
        return reply({"name": name, "ready": state["ready"]}, 200 if state["ready"] else 503)

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        label = name if name in by_name else "(unknown)"
        metrics.requests.labels(label).inc()
        metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            model = model_or_404(name, version)
            body = await _read_body(request, options.max_request_bytes)
            parsed = parse_request(body, request.headers.get(HEADER_LENGTH))
            batcher = state["batchers"].get(model.name)
            if batcher is None:  # before the app's lifespan started, or after it ended
                raise ProtocolError(f"model '{model.name}' is not ready", 503)
            outputs = await _answer(model, batcher, parsed)
            content, headers = encode_response(model.name, model.version, parsed, outputs)
            metrics.latency.labels(label).observe(time.perf_counter() - started)
            return Response(content, headers=headers)
        except ProtocolError as exc:
            metrics.error(label, exc.status)
            return refuse(str(exc), exc.status)
        except ModelportError as exc:  # InputError/UsageError: the request; else the runtime
            status = 400 if exc.exit_code == 2 else 500
            metrics.error(label, status)
            return refuse(str(exc), status)
        except Exception as exc:
            log.exception("serve: request to %s failed", name)
            metrics.error(label, 500)
            return refuse(f"internal error: {type(exc).__name__}: {exc}", 500)
        finally:
            metrics.in_flight.dec()

    @app.get("/metrics")
    async def prometheus() -> Response:
        content, media_type = metrics.render()
        return Response(content, media_type=media_type)

    app.state.models = by_name
    app.state.metrics = metrics
    return app


async def _answer(model: ServedModel, batcher: Batcher, request: Any) -> Mapping[str, np.ndarray]:
    from modelport.serve.natural import answer, is_natural

    if is_natural(model, request):
        return await answer(model, batcher, request)
    check_tensors(model, request.inputs)
    return await batcher.infer(request.inputs)


async def _read_body(request: Any, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (by its Content-Length before reading,
    or while reading a body sent without one)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(f"the request body is {int(declared)} bytes, more than this "
                            f"server's limit of {limit} (serve --max-request-mb)", 413)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ProtocolError(f"the request body is more than this server's limit of {limit} "
                                "bytes (serve --max-request-mb)", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def check_tensors(model: ServedModel, inputs: Mapping[str, np.ndarray]) -> None:
    """The request's tensors against the bundle's specs, in V2 terms, before any runtime
    (messages are built only for a refusal: this runs on every request)."""
    specs = {s.name: s for s in model.inputs}
    if inputs.keys() != specs.keys():
        takes = ", ".join(_describe(s) for s in model.inputs)
        unknown = sorted(set(inputs) - set(specs))
        if unknown:
            natural = (f" (or its task's {', '.join(model.natural_inputs)} as BYTES)"
                       if model.natural_inputs else "")
            raise ProtocolError(f"model '{model.name}' has no input(s) {unknown}; it takes "
                                f"{takes}{natural}")
        missing = [n for n in specs if n not in inputs]
        raise ProtocolError(f"missing input(s) {missing}; model '{model.name}' takes {takes}")
    sizes: dict[str, tuple[str, int]] = {}
    for name, value in inputs.items():
        spec = specs[name]
        if value.dtype != np.dtype(spec.dtype):
            raise ProtocolError(f"input '{name}' must be {datatype_of(spec.dtype)}, got "
                                f"{datatype_of(value.dtype)}")
        if value.ndim != len(spec.shape) or any(
                isinstance(d, int) and d != n for d, n in zip(spec.shape, value.shape,
                                                              strict=False)):
            raise ProtocolError(f"input '{name}' must have shape {_dims(spec)} (-1: any size), "
                                f"got {list(value.shape)}")
        for axis, n in zip(spec.shape, value.shape, strict=True):
            if isinstance(axis, str):
                if n < 1:
                    raise ProtocolError(f"input '{name}' dimension '{axis}' is empty")
                first = sizes.setdefault(axis, (name, n))
                if first[1] != n:
                    raise ProtocolError(f"inputs '{first[0]}' and '{name}' disagree on "
                                        f"'{axis}': {first[1]} vs {n}")


def _dims(spec: TensorSpec) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in spec.shape]


def _describe(spec: TensorSpec) -> str:
    return f"{spec.name} {datatype_of(spec.dtype)}{_dims(spec)}"


def _tensor_meta(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": datatype_of(spec.dtype), "shape": _dims(spec)}


def _metadata(model: ServedModel) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": model.name, "versions": [model.version], "platform": model.platform,
        "inputs": [_tensor_meta(s) for s in model.inputs],
        "outputs": [_tensor_meta(s) for s in model.outputs],
        "parameters": {"batching": model.plan.kind, "instances": len(model.sessions)},
    }
    if model.task:
        doc["parameters"]["task"] = model.task
        doc["parameters"]["natural_inputs"] = [
            {"name": n, "datatype": "BYTES", "shape": [-1]} for n in model.natural_inputs]
        doc["parameters"]["natural_output"] = {"name": "answer", "datatype": "BYTES",
                                               "shape": [1]}
    return doc


def _index_entry(model: ServedModel, ready: bool) -> dict[str, Any]:
    return {"name": model.name, "version": model.version, "platform": model.platform,
            "state": "READY" if ready else "UNAVAILABLE"}
