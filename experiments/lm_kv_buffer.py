"""A/B of the ORT LM KV cache: one preallocated buffer per layer vs the past concatenated.

The same ORT bundle (GroupQueryAttention graph, runtime setting ``kv_buffer: shared``) is run
through ``LMSession.generate`` both ways in one process, interleaved (the order flips every
round): shared (backends/onnxruntime/kv_buffer.py: past and present bound to one buffer by IO
binding) and concat (``kv_buffer`` switched off: the past fed in, the presents copied out).
Greedy, 32 new tokens, eos off; decode tokens/s = batch x 31 / time of the steps after the
first; medians over the rounds; the tokens of both must be equal (asserted)::

    .venv/bin/python experiments/lm_kv_buffer.py /tmp/lmpeers/work/modelport/onnxruntime-cpu-int4
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", help="an ORT LM bundle whose runtime_settings say kv_buffer: shared")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    p.add_argument("--prompts", default="32,256", help="prompt lengths (tokens)")
    p.add_argument("--batches", default="1,4", help="batch sizes")
    args = p.parse_args()
    import modelport

    session = modelport.load(args.bundle, verify=False)
    session.eos = []
    cells = [(int(n), int(b)) for n in args.prompts.split(",") for b in args.batches.split(",")]
    rng = np.random.default_rng(0)
    speed: dict[tuple, list[float]] = {}
    step = type(session).step
    for r in range(args.rounds):
        for n, b in cells:
            ids = rng.integers(5, 30000, (b, n)).astype(np.int64)
            mask = np.ones_like(ids)
            tokens = {}
            for mode in ("shared", "concat")[:: 1 if r % 2 == 0 else -1]:
                session.inner.kv_buffer = "shared" if mode == "shared" else None
                session.generate(ids, 2, attention_mask=mask)  # warm this shape
                marks: list[float] = []

                def timed(feeds, cache=None, marks=marks):
                    out = step(session, feeds, cache)
                    marks.append(time.perf_counter())
                    return out

                session.step = timed
                tokens[mode] = session.generate(ids, 32, attention_mask=mask)
                del session.step
                assert session.kv_buffer_used == (mode == "shared")
                speed.setdefault((n, b, mode), []).append(b * 31 / (marks[-1] - marks[0]))
            np.testing.assert_array_equal(tokens["shared"], tokens["concat"])
    for n, b in cells:
        shared = statistics.median(speed[(n, b, "shared")])
        concat = statistics.median(speed[(n, b, "concat")])
        print(f"p{n} b{b}: shared {shared:.1f} tok/s, concat {concat:.1f} tok/s, "
              f"{shared / concat:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
