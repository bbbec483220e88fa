"""Where a decode step of the ORT int4 LM bundle goes, beside onnxruntime-genai's, and A/Bs.

Three measurements (docs/language-models.md, "Where a decode step goes"), each printing the
stamp line (command, commit, machine, load average):

- ``profile OURS.onnx GENAI.onnx``: ONNX Runtime's session profiling of 3 x 31 decode steps of
  each graph in plain ORT (same session options, KV buffer shared through IO binding as both
  runtimes run it): per op type the kernel time per step, the step's ``model_run`` time (the
  difference is the executor's own per-node cost), and the Python time around ``run``.
- ``ttft BEFORE AFTER``: two bundles' time to first token, interleaved (same threads).
- ``threads BUNDLE GENAI_FOLDER``: decode ms per step, interleaved: the bundle through
  ``LMSession.generate`` at its runtime settings and at ``--alt-threads``, and genai's
  ``og.Generator`` (run it with the genai venv's python and ``PYTHONPATH=src``).

    .venv/bin/python experiments/lm_step.py profile \\
        /tmp/lmpeers/work/modelport/onnxruntime-cpu-int4/model.onnx \\
        /tmp/lmpeers/work/genai-int4/model.onnx --threads 1
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
NEW = 32


def _session(path: str, threads: int, profile: bool) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_profiling = profile
    opts.log_severity_level = 4
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _plain_generation(sess: Any, prompt: int, batch: int, kv: tuple[int, int] = (4, 64)
                      ) -> list[tuple[float, float, float]]:
    """Greedy steps with one KV buffer per layer bound as past and present; per step the
    seconds of (feeds + binding, run, logits + argmax)."""
    import onnxruntime as ort

    inputs = {i.name: i for i in sess.get_inputs()}
    binding, keep = sess.io_binding(), []
    for name, info in inputs.items():
        if name.startswith("past_"):
            heads, dim = (d if isinstance(d, int) else k for d, k in zip(info.shape[1::2], kv))
            value = np.zeros((batch, heads, prompt + NEW, dim), np.float32)
            keep.append(value)
            ortvalue = ort.OrtValue.ortvalue_from_numpy(value)
            keep.append(ortvalue)
            binding.bind_ortvalue_input(name, ortvalue)
            binding.bind_ortvalue_output(name.replace("past_key_values", "present"), ortvalue)
    ids = np.random.default_rng(0).integers(5, 3000, (batch, prompt)).astype(np.int64)
    total, times = prompt, []
    for _ in range(NEW):
        t0 = time.perf_counter()
        feeds = {"input_ids": ids, "attention_mask": np.ones((batch, total), np.int64)}
        if "position_ids" in inputs:
            feeds["position_ids"] = np.tile(np.arange(total - ids.shape[1], total), (batch, 1))
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output("logits")
        t1 = time.perf_counter()
        sess.run_with_iobinding(binding)
        t2 = time.perf_counter()
        logits = next(v for v in binding.get_outputs() if len(v.shape()) == 3).numpy()
        ids = logits[:, -1].argmax(-1)[:, None].astype(np.int64)
        total += 1
        times.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
    return times


def profile(args: argparse.Namespace) -> None:
    graphs = {"modelport": args.ours, "genai": args.genai}
    sessions = {label: _session(path, args.threads, True) for label, path in graphs.items()}
    around: dict[str, list] = {label: [] for label in graphs}
    for sess in sessions.values():
        _plain_generation(sess, args.prompt, args.batch)  # warm-up
    for _ in range(args.rounds):  # interleaved: the two graphs see the same machine
        for label, sess in sessions.items():
            around[label] += _plain_generation(sess, args.prompt, args.batch)[1:]
    for label, sess in sessions.items():
        path = graphs[label]
        trace = Path(sess.end_profiling())
        events = json.loads(trace.read_text())
        runs = [e for e in events if e.get("name") == "model_run"][NEW:]  # after the warm-up
        decode = [(e["ts"], e["ts"] + e["dur"]) for i, e in enumerate(runs) if i % NEW]
        starts = [d[0] for d in decode]
        steps: list[Counter] = [Counter() for _ in decode]  # per decode step: op -> us
        nodes: list[Counter] = [Counter() for _ in decode]  # per decode step: node -> us
        count = Counter()
        for e in events:
            if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
                continue
            i = bisect.bisect_right(starts, e["ts"]) - 1
            if i >= 0 and e["ts"] <= decode[i][1]:
                steps[i][e["args"].get("op_name", "?")] += e["dur"]
                nodes[i][e["name"].removesuffix("_kernel_time")] += e["dur"]
                count[e["args"].get("op_name", "?")] += 1
        # medians over the steps (a shared machine preempts some steps: means would carry it)
        run_ms = statistics.median(d[1] - d[0] for d in decode) / 1000
        kernels = statistics.median(sum(c.values()) for c in steps) / 1000
        outside = statistics.median(d[1] - d[0] - sum(c.values())
                                    for d, c in zip(decode, steps, strict=True)) / 1000
        per_op = Counter({op: statistics.median(c[op] for c in steps) for op in count})
        py = np.median(np.array(around[label]), 0) * 1000
        slowest = max(nodes[0], key=lambda n: statistics.median(c[n] for c in nodes))
        print(f"## {label}: {Path(path).parent.name}, p{args.prompt} b{args.batch}, "
              f"{args.threads or 'default'} threads")
        print(f"model_run {run_ms:.2f} ms per decode step (median of {len(decode)}); kernels "
              f"{kernels:.2f} ms; outside the kernels {outside:.2f} ms; "
              f"{sum(count.values()) / len(decode):.0f} nodes per step")
        print(f"Python around run: feeds + binding {py[0]:.3f} ms, logits + argmax "
              f"{py[2]:.3f} ms")
        print(f"slowest node {slowest} (the LM head): "
              f"{statistics.median(c[slowest] for c in nodes) / 1000:.3f} ms")
        for op, us in per_op.most_common(args.top):
            print(f"  {op:34s} {us / 1000:6.3f} ms  x{count[op] / len(decode):.0f}")
        trace.unlink()


def ttft(args: argparse.Namespace) -> None:
    import modelport

    sessions = {"before": modelport.load(args.before, verify=False, threads=args.threads),
                "after": modelport.load(args.after, verify=False, threads=args.threads)}
    rng, got = np.random.default_rng(0), {}
    cells = [(p, b) for p in args.prompts for b in args.batches]
    for rnd in range(args.rounds):
        for p, b in cells:
            ids = rng.integers(5, 3000, (b, p))
            for key in list(sessions)[:: 1 if rnd % 2 == 0 else -1]:
                t0 = time.perf_counter()
                sessions[key].generate(ids, 1, attention_mask=np.ones_like(ids))
                got.setdefault((p, b, key), []).append(time.perf_counter() - t0)
    for p, b in cells:
        before, after = (statistics.median(got[(p, b, k)]) * 1000 for k in ("before", "after"))
        print(f"p{p} b{b}: TTFT before {before:.1f} ms, after {after:.1f} ms, "
              f"after / before {after / before:.2f}")


def threads(args: argparse.Namespace) -> None:
    import onnxruntime_genai as og

    import modelport

    model = og.Model(args.genai)
    mine = {"bundle settings": modelport.load(args.bundle, verify=False),
            f"{args.alt_threads} threads": modelport.load(args.bundle, verify=False,
                                                          threads=args.alt_threads)}
    for session in mine.values():
        session.eos = []
    print("modelport threads:", {k: s.inner.threads for k, s in mine.items()})

    def ours(session: Any, ids: np.ndarray) -> float:
        marks: list[float] = []
        step = type(session).step

        def timed(feeds: Any, cache: Any = None) -> Any:
            out = step(session, feeds, cache)
            marks.append(time.perf_counter())
            return out

        session.step = timed
        session.generate(ids, NEW, attention_mask=np.ones_like(ids))
        del session.step
        return statistics.median(np.diff(marks))

    def genai(ids: np.ndarray) -> float:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=ids.shape[1] + NEW, min_length=ids.shape[1] + NEW,
                                  do_sample=False, batch_size=ids.shape[0])
        generator = og.Generator(model, params)
        generator.append_tokens(ids.astype(np.int32))
        generator.generate_next_token()
        steps = []
        for _ in range(NEW - 1):
            t0 = time.perf_counter()
            generator.generate_next_token()
            steps.append(time.perf_counter() - t0)
        return statistics.median(steps)

    runs = {**{k: (lambda ids, s=s: ours(s, ids)) for k, s in mine.items()}, "genai": genai}
    for p in args.prompts:
        for b in args.batches:
            ids = np.random.default_rng(0).integers(5, 3000, (b, p)).astype(np.int64)
            for run in runs.values():
                run(ids)  # warm this shape
            got: dict[str, list[float]] = {k: [] for k in runs}
            for rnd in range(args.rounds):
                keys = list(runs)[rnd % len(runs):] + list(runs)[:rnd % len(runs)]
                for key in keys:
                    got[key].append(runs[key](ids) * 1000)
            print(f"p{p} b{b}: " + ", ".join(f"{k} {statistics.median(v):.2f}"
                                             for k, v in got.items()) + " ms per decode step")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("profile")
    a.add_argument("ours")
    a.add_argument("genai")
    a.add_argument("--top", type=int, default=12)
    b = sub.add_parser("ttft")
    b.add_argument("before")
    b.add_argument("after")
    c = sub.add_parser("threads")
    c.add_argument("bundle")
    c.add_argument("genai")
    c.add_argument("--alt-threads", type=int, default=2)
    for q in (a, b, c):
        q.add_argument("--threads", type=int, default=1)
        q.add_argument("--rounds", type=int, default=5)
    for q in (b, c):
        q.add_argument("--prompts", default="32,256")
        q.add_argument("--batches", default="1,4")
    for q in (a,):
        q.add_argument("--prompt", type=int, default=32)
        q.add_argument("--batch", type=int, default=1)
    args = p.parse_args()
    for name in ("prompts", "batches"):
        if hasattr(args, name):
            setattr(args, name, [int(x) for x in getattr(args, name).split(",")])
    from stamp import stamp

    load = os.getloadavg()[0]
    {"profile": profile, "ttft": ttft, "threads": threads}[args.what](args)
    print(f"\n{stamp()} · load average {load:.1f} before / {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
