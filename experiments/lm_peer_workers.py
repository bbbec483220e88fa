"""The worker side of experiments/lm_peers.py: one runtime, one model, run in that runtime's venv.

    VENV/bin/python experiments/lm_peer_workers.py KIND PATH

KIND is ``modelport`` (a modelport bundle, the repo's .venv), ``genai`` (an onnxruntime-genai
model builder folder) or ``optimum`` (an optimum-intel ``OVModelForCausalLM`` folder). The
worker loads the model once, prints ``{"ready": ...}``, then answers one JSON line per request
``{"ids": [[...], ...], "new": N}``: greedy generation of exactly N new tokens for the batch of
equal-length prompts (eos never stops it), with ``ttft_ms`` (prompt in -> first new token
chosen) and ``decode_s`` (the N - 1 steps after it). Only the standard library and the
runtime's own packages are imported here: each venv has its own pins.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def modelport_runner(path: str) -> Any:
    """A modelport bundle through ``LMSession.generate`` (the user's path), eos switched off."""
    import numpy as np

    import modelport

    session = modelport.load(path, verify=False)
    session.eos = []  # a fixed number of new tokens

    def run(ids: list[list[int]], new: int) -> dict[str, Any]:
        prompt = np.asarray(ids, np.int64)
        marks: list[int] = []
        step = type(session).step

        def timed(feeds: Any, cache: Any = None) -> Any:  # cache: the shared KV buffer
            out = step(session, feeds, cache)
            if not marks:
                marks.append(time.perf_counter_ns())
            return out

        session.step = timed
        t0 = time.perf_counter_ns()
        out = session.generate(prompt, new, attention_mask=np.ones_like(prompt))
        end = time.perf_counter_ns()
        del session.step
        return {"t0": t0, "first": marks[0], "end": end,
                "tokens": out[0, prompt.shape[1]:].tolist()}

    return run


def genai_runner(path: str) -> Any:
    """onnxruntime-genai's own generator loop over the model builder's folder."""
    import numpy as np
    import onnxruntime_genai as og

    model = og.Model(path)

    def run(ids: list[list[int]], new: int) -> dict[str, Any]:
        prompt = np.asarray(ids, np.int32)
        batch, length = prompt.shape
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=length + new, min_length=length + new,
                                  do_sample=False, batch_size=batch)
        generator = og.Generator(model, params)
        t0 = time.perf_counter_ns()
        generator.append_tokens(prompt)
        generator.generate_next_token()
        first = time.perf_counter_ns()
        for _ in range(new - 1):
            generator.generate_next_token()
        end = time.perf_counter_ns()
        tokens = [int(t) for t in generator.get_sequence(0)[length:]]
        del generator
        return {"t0": t0, "first": first, "end": end, "tokens": tokens}

    return run


def optimum_runner(path: str) -> Any:
    """optimum-intel's OVModelForCausalLM.generate (its defaults: stateful model, its compile
    settings), a streamer timestamping the first new token."""
    import torch
    from optimum.intel import OVModelForCausalLM
    from transformers.generation.streamers import BaseStreamer

    model = OVModelForCausalLM.from_pretrained(path)

    class Marks(BaseStreamer):
        def __init__(self) -> None:
            self.times: list[int] = []

        def put(self, value: Any) -> None:
            self.times.append(time.perf_counter_ns())

        def end(self) -> None:
            pass

    def run(ids: list[list[int]], new: int) -> dict[str, Any]:
        prompt = torch.tensor(ids, dtype=torch.long)
        marks = Marks()
        t0 = time.perf_counter_ns()
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=new, min_new_tokens=new, streamer=marks,
                             pad_token_id=0)
        end = time.perf_counter_ns()
        # put() #1 is the prompt, #2 the first new token
        return {"t0": t0, "first": marks.times[1], "end": end,
                "tokens": out[0, prompt.shape[1]:].tolist()}

    return run


RUNNERS = {"modelport": modelport_runner, "genai": genai_runner, "optimum": optimum_runner}


def main() -> int:
    kind, path = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    run = RUNNERS[kind](path)
    print(json.dumps({"ready": True, "load_s": time.perf_counter() - t0}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        got = run(request["ids"], int(request["new"]))
        batch, new = len(request["ids"]), int(request["new"])
        decode_s = (got["end"] - got["first"]) / 1e9
        print(json.dumps({"ttft_ms": (got["first"] - got["t0"]) / 1e6, "decode_s": decode_s,
                          "tokens_per_s": batch * (new - 1) / decode_s if new > 1 else None,
                          "tokens": got["tokens"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
