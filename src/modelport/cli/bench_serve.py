"""`modelport bench BUNDLE --serve URL`: the load generator's flags and command (the rest of
`bench` is in cli/bench.py)."""

from __future__ import annotations

import argparse


def add_serve_load_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("load on a running server (bench BUNDLE --serve URL)")
    g.add_argument("--serve", default=None, metavar="URL",
                   help="time a running Open Inference Protocol server (modelport serve, "
                        "Triton, KServe) at http://HOST:PORT instead of the bundle here: "
                        "--concurrency clients send the bundle's sample inputs for --duration "
                        "seconds each (default 10); p50/p99 latency and throughput per level. "
                        "'local': start `modelport serve BUNDLE` here twice, without dynamic "
                        "batching and with --serve-max-batch, and time both")
    g.add_argument("--serve-max-batch", type=int, default=32, metavar="N",
                   help="--serve local: the batching server's --max-batch (default 32)")
    g.add_argument("--concurrency", default="1,8,32", metavar="N,N",
                   help="--serve: clients sending at once, one level each (default 1,8,32)")
    g.add_argument("--model", default=None, metavar="NAME",
                   help="--serve: the served model name (default <model name>-<target> from "
                        "the bundle's manifest, as `modelport serve` names it)")
    g.add_argument("--binary", action="store_true",
                   help="--serve: send tensors with Triton's binary tensor extension (default "
                        "JSON tensors)")


def cmd_serve_load(args: argparse.Namespace) -> int:
    from modelport.bench.serve_load import LoadSettings, load_test, parse_concurrency, text_table
    from modelport.cli.common import parse_batches
    from modelport.errors import UsageError

    batches = parse_batches(args.batch) if args.batch else (1,)
    if len(batches) != 1:
        raise UsageError("--serve sends one batch size per request: give --batch N once")
    if args.iters is not None:
        raise UsageError("--serve times by --duration, not --iters")
    settings = LoadSettings(concurrency=parse_concurrency(args.concurrency),
                            duration=args.duration or 10.0, warmup=args.warmup,
                            batch=batches[0], binary=args.binary)
    progress = not args.quiet and str(args.json) != "-"
    if args.serve == "local":
        from modelport.bench.serve_local import compare_batching

        report = compare_batching(args.bundle, settings, max_batch=args.serve_max_batch,
                                  model=args.model, label=args.label, progress=progress)
    else:
        report = load_test(args.bundle, args.serve, settings, model=args.model,
                           label=args.label, progress=progress)
    if args.json is not None and str(args.json) == "-":
        import json

        print(json.dumps(report, indent=2))
        return 0
    print(text_table(report))
    if args.json is not None:
        from modelport.io import write_json_atomic

        write_json_atomic(args.json, report)
    return 0
