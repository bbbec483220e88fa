"""Server overhead and dynamic batching, side by side in one run (docs/serving.md).

MiniLM (builtin:minilm, ONNX Runtime FP32), batch 1 per request, the bundle's stored sample
sentences, each at its own length (6 to 38 tokens):

- in-process ``session.infer`` in a loop (one caller) vs ``modelport serve`` at one client
  (JSON and binary tensors): what the HTTP hop, the protocol and the batcher cost;
- throughput at 32 clients with batching off (``--max-batch 1``) and on (``--max-batch 32``).

The clients are ``modelport bench --serve``'s (bench/serve_load.py), in this process; the
server is a ``modelport serve`` child on a free loopback port. Client and server share this
machine's cores, so the server numbers include the client's CPU use.

    .venv/bin/python experiments/serve_bench.py                  # export MiniLM, run, write docs
    .venv/bin/python experiments/serve_bench.py --bundle DIR --duration 5 --no-write
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stamp import ROOT, stamp

BEGIN, END = "<!-- serve-bench:begin -->", "<!-- serve-bench:end -->"
TARGET = "onnxruntime:cpu:fp32"


def export_minilm(out: Path) -> Path:
    import modelport

    result = modelport.export("builtin:minilm", [TARGET], out=out, bench=None, progress=False)
    return Path(result.bundles[TARGET])


class InProcess:
    """One caller, batch 1, back to back: the number the server is compared with."""

    def __init__(self, bundle: Path) -> None:
        import modelport
        from modelport.bench.harness import make_feeds
        from modelport.bench.serve_load import trim_text
        from modelport.bundle import open_bundle
        from modelport.shapes import fit_arrays

        opened = open_bundle(bundle)
        pool = fit_arrays(opened.samples()[0], opened.inputs)
        # each sentence at its own length, as the load generator sends them
        self.feeds = [trim_text(f, opened.inputs) for f in make_feeds(pool, 1, 16)]
        self.session = modelport.load(bundle)
        for feed in self.feeds:
            self.session.infer(feed)  # warm-up

    def measure(self, duration: float) -> dict:
        lat = []
        end = time.perf_counter() + duration
        k = 0
        while time.perf_counter() < end:
            t = time.perf_counter_ns()
            self.session.infer(self.feeds[k % len(self.feeds)])
            lat.append((time.perf_counter_ns() - t) / 1e6)
            k += 1
        a = np.array(lat)
        return {"concurrency": 1, "p50_ms": float(np.percentile(a, 50)),
                "p99_ms": float(np.percentile(a, 99)), "throughput": len(a) / duration,
                "server_mean_batch": None}


def load(bundle: Path, url: str, clients: int, duration: float, *, binary: bool) -> dict:
    from modelport.bench.serve_load import LoadSettings, load_test

    settings = LoadSettings(concurrency=(clients,), duration=duration, warmup=2, batch=1,
                            binary=binary)
    (row,) = load_test(str(bundle), url, settings)["rows"]
    if row["errors"]:
        sys.exit(f"{row['errors']} requests failed: {row.get('first_error')}")
    return row


#: (setup, which server, clients, binary tensors): the table's rows, in order
SETUPS = [
    ("in-process `infer` (one caller)", None, 1, False),
    ("server, no batching, JSON tensors", "off", 1, False),
    ("server, no batching, binary tensors", "off", 1, True),
    ("server, dynamic batching (`--max-batch 32`), binary", "on", 1, True),
    ("server, no batching (`--max-batch 1`), binary", "off", 32, True),
    ("server, dynamic batching (`--max-batch 32`), binary", "on", 32, True),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=None,
                   help="a MiniLM onnxruntime:cpu:fp32 bundle (default: export builtin:minilm)")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds per row, split over the rounds")
    p.add_argument("--rounds", type=int, default=3,
                   help="every row is measured once per round, the rows interleaved, so a "
                        "machine whose load drifts shifts them alike; the median is reported")
    p.add_argument("--no-write", action="store_true", help="print only; leave the docs alone")
    p.add_argument("--note", default="", help="a remark for the stamp line")
    args = p.parse_args()
    slice_s = args.duration / args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or export_minilm(Path(tmp) / "minilm")
        local = InProcess(bundle)
        from modelport.bench.serve_local import LocalServer

        with LocalServer(bundle, 1) as off, LocalServer(bundle, 32) as on:
            servers = {"off": off, "on": on}
            runs: list[list[dict]] = [[] for _ in SETUPS]
            for _ in range(args.rounds):
                for i, (_, which, clients, binary) in enumerate(SETUPS):
                    runs[i].append(local.measure(slice_s) if which is None else
                                   load(bundle, servers[which].url, clients, slice_s,
                                        binary=binary))
        local.session.close()
    rows = []
    for (setup, _, clients, _), measured in zip(SETUPS, runs, strict=True):
        row = {"setup": setup, "concurrency": clients}
        for key in ("p50_ms", "p99_ms", "throughput", "server_mean_batch"):
            values = [m[key] for m in measured if m.get(key) is not None]
            row[key] = float(np.median(values)) if values else None
        rows.append(row)
    print_block(rows, args)


def print_block(rows: list[dict], args: argparse.Namespace) -> None:
    def num(v, d=2):
        return "-" if v is None else f"{v:.{d}f}"

    lines = ["| setup | clients | p50 ms | p99 ms | req/s | server mean batch |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['setup']} | {r['concurrency']} | {num(r['p50_ms'])} | {num(r['p99_ms'])} | "
              f"{num(r['throughput'], 1)} | {num(r['server_mean_batch'])} |" for r in rows]
    base = rows[0]["p50_ms"]
    overhead = {r["setup"]: r["p50_ms"] / base - 1 for r in rows[1:3]}
    gain = rows[5]["throughput"] / rows[4]["throughput"]
    summary = (f"Overhead at one client (p50 vs in-process): JSON {overhead[rows[1]['setup']]:+.0%}, "
               f"binary {overhead[rows[2]['setup']]:+.0%} (aim: at most +10%). Throughput at 32 "
               f"clients with dynamic batching / without: {gain:.2f}x (aim: at least 2x).")
    note = f" {args.note}." if args.note else ""
    how = (f"(MiniLM batch 1; {args.duration:g} s per row in {args.rounds} interleaved rounds, "
           f"medians. Written by {stamp()}.{note})")
    block = "\n".join([BEGIN, *lines, "", summary, "", how, END])
    print(block)
    if args.no_write:
        return
    page = ROOT / "docs" / "serving.md"
    text = page.read_text(encoding="utf-8") if page.exists() else "# Serving\n"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text,
                      flags=re.DOTALL)
    else:
        text = text.rstrip("\n") + "\n\n## Measured: server overhead and dynamic batching\n\n" + \
            block + "\n"
    page.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
