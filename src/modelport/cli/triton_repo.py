"""`modelport triton-repo`: bundles as a Triton Inference Server model repository."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "triton-repo",
        help="lay bundles out as a Triton model repository (REPO/NAME/1/ + config.pbtxt)",
        description="Copy each bundle whole into OUT/NAME/1/ and write OUT/NAME/config.pbtxt "
                    "for Triton's onnxruntime, openvino or tensorrt_plan backend (TensorRT: "
                    "after `modelport build` made the engine; TFLite has no Triton backend).")
    p.add_argument("bundles", nargs="*", metavar="BUNDLE",
                   help="bundle folders or .tar.gz archives; each is named <model name>-<target>"
                        " from its manifest unless --name names it")
    p.add_argument("--name", action="append", default=[], metavar="NAME=BUNDLE",
                   help="serve BUNDLE under NAME (repeatable; the bundle need not be listed "
                        "again)")
    p.add_argument("--out", type=Path, required=True, metavar="REPO",
                   help="the model repository folder (created, or added to)")
    p.add_argument("--max-batch", type=int, default=32, metavar="N",
                   help="max_batch_size for bundles whose inputs and outputs share a dynamic "
                        "batch axis (a TensorRT engine's profile caps it); others get 0 "
                        "(default 32)")
    p.add_argument("--max-batch-delay-ms", type=float, default=2.0, metavar="MS",
                   help="dynamic batching: how long Triton holds a request to batch it with "
                        "others (default 2)")
    p.add_argument("--no-dynamic-batching", action="store_true",
                   help="write no dynamic_batching block (each request runs alone)")
    p.add_argument("--instances", type=int, default=1, metavar="N",
                   help="instance_group count: model instances Triton runs at once (default 1)")
    p.add_argument("--force", action="store_true",
                   help="replace a model folder of the same name in an existing repository")
    p.set_defaults(func=cmd_triton_repo)


def cmd_triton_repo(args: argparse.Namespace) -> int:
    from modelport.serve.names import bundles_with_names
    from modelport.serve.triton_repo import RepoOptions, write_repo

    bundles = bundles_with_names(args.bundles, args.name)
    options = RepoOptions(max_batch=args.max_batch, dynamic_batching=not args.no_dynamic_batching,
                          max_batch_delay_ms=args.max_batch_delay_ms, instances=args.instances)
    plans = write_repo(bundles, args.out, options=options, force=args.force)
    for plan in plans:
        how = plan.backend.get("backend") or plan.backend.get("platform")
        line = f"{args.out / plan.name}: {plan.bundle.manifest['target']} -> {how}"
        print(line + (f" ({plan.note})" if plan.note else ""))
    return 0
