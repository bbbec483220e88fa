"""`modelport serve`: bundles behind the Open Inference Protocol V2 (KServe V2, what Triton,
KServe, OpenVINO Model Server and Seldon speak), with dynamic batching and Prometheus metrics.

The stable entry points (other parts build on them, e.g. the Ray Serve deployment):

- ``ServeOptions(host="127.0.0.1", port=8000, max_batch=8, max_batch_delay_ms=0.0,
  instances=1, max_request_bytes=64 MiB, threads=None)`` -- ``serve/options.py``
- ``ServedModel.open(path, *, name=None, instances=1, threads=None) -> ServedModel`` with
  ``.name``, ``.bundle``, ``.sessions`` (one per instance), ``.inputs``/``.outputs``
  (TensorSpec lists), ``.task``, ``.platform``, ``.close()``; ``open_models(paths, names,
  options) -> list[ServedModel]`` names them and refuses duplicates -- ``serve/model.py``
- ``create_app(models: list[ServedModel], options: ServeOptions)`` -> an ASGI app (FastAPI)
  -- ``serve/app.py``
- ``serve(models, options)`` runs it with uvicorn until SIGTERM/SIGINT, finishing in-flight
  requests, and returns 0 -- ``serve/server.py``

Heavy imports (fastapi, uvicorn, prometheus_client, the runtimes) happen inside functions.
"""
