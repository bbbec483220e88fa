"""`modelport serve`: bundles behind an Open Inference Protocol V2 endpoint (docs/serving.md)."""

from __future__ import annotations

import argparse
import logging
import sys

from modelport.errors import MissingDependency

log = logging.getLogger("modelport")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from modelport.serve.options import DEFAULT_MAX_REQUEST_BYTES

    p = sub.add_parser(
        "serve", help="serve bundles over the Open Inference Protocol V2 (KServe V2 / Triton "
                      "HTTP) with dynamic batching and /metrics",
        description="Serve one or more bundles over HTTP with the Open Inference Protocol V2 "
                    "(KServe V2, Triton's HTTP API, JSON and binary tensors). Each bundle is "
                    "served as <model name>-<target> from its manifest. SIGTERM or Ctrl-C "
                    "stops accepting, answers every accepted request and exits 0.")
    p.add_argument("bundles", nargs="*", metavar="BUNDLE",
                   help="bundle directories or .tar.gz archives to serve")
    p.add_argument("--name", action="append", default=[], metavar="NAME=BUNDLE",
                   help="serve BUNDLE as NAME instead of <model name>-<target> (repeatable; "
                        "BUNDLE need not be listed again)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; "
                        "0.0.0.0 exposes the server to the network)")
    p.add_argument("--port", type=int, default=8000,
                   help="port to listen on (default 8000; 0: a free port, printed at start)")
    p.add_argument("--max-batch", type=int, default=8, metavar="N",
                   help="dynamic batching: combine requests into runtime calls of up to N rows "
                        "(default 8; 1 turns batching off). Static-shape bundles run one "
                        "request per call")
    p.add_argument("--max-batch-delay-ms", type=float, default=0.0, metavar="MS",
                   help="how long a batch waits for more requests once it has one (default "
                        "0: it takes the requests already queued, so a lone request never "
                        "waits)")
    p.add_argument("--instances", type=int, default=1, metavar="N",
                   help="runtime sessions per bundle, running N calls at once (default 1; the "
                        "CPU threads are shared among them unless --threads says otherwise)")
    p.add_argument("--threads", type=int, default=None,
                   help="runtime threads per session (default: the runtime's own choice)")
    p.add_argument("--max-request-mb", type=float,
                   default=DEFAULT_MAX_REQUEST_BYTES / 2**20, metavar="MB",
                   help="refuse request bodies larger than this with 413 (default 64)")
    p.add_argument("--log-level", default="warning",
                   choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default warning; info logs every request)")
    from modelport.cli.serve_ray import add_ray_args

    add_ray_args(p)  # --ray ADDR --replicas N ...: the same server as Ray Serve replicas
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from modelport.backends.base import has_module

    for module in ("fastapi", "uvicorn", "prometheus_client"):
        if not has_module(module):
            raise MissingDependency(f"modelport serve needs '{module}': pip install "
                                    "\"modelport[serve]\"")
    from modelport.serve.model import open_models
    from modelport.serve.options import ServeOptions
    from modelport.serve.server import serve

    options = ServeOptions(host=args.host, port=args.port, max_batch=args.max_batch,
                           max_batch_delay_ms=args.max_batch_delay_ms,
                           instances=args.instances, threads=args.threads,
                           max_request_bytes=int(args.max_request_mb * 2**20))
    if args.ray is not None:  # replicas on the cluster open the bundles, not this process
        from modelport.cli.serve_ray import run_on_ray

        return run_on_ray(args, options)
    models = open_models(args.bundles, args.name, options)
    for m in models:
        d = m.describe()
        log.info("serving %s (%s, %s batching, %d instance(s)) from %s", d["name"], d["target"],
                 d["batching"], d["instances"], d["bundle"])

    def ready(port: int) -> None:
        # one line on stdout a script can wait for (and read the port from with --port 0)
        print(f"serving {len(models)} model(s) on http://{options.host}:{port}", flush=True)

    try:
        return serve(models, options, log_level=args.log_level, on_ready=ready)
    finally:
        for m in models:
            m.close()
        sys.stdout.flush()
