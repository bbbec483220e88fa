"""Encoder-decoder graph layouts timed side by side in ONNX Runtime, at equal greedy tokens.

modelport's layout (an encoder graph that also computes the cross-attention cache, and one
decoder graph with the self-attention past for every step, the first with an empty past)
against Optimum's two layouts of the same folder: encoder + ``decoder_model`` (first step,
computes the cross cache) + ``decoder_with_past_model`` (later steps), and encoder +
``decoder_model_merged`` (an ``If`` on ``use_cache_branch``). Optimum runs in its own venv
(it pins an older transformers): only its export is run there, every timing is in this
process, with the same onnxruntime, the same session options and the same inputs.

    python -m venv /tmp/optimum-venv && /tmp/optimum-venv/bin/pip install torch==2.13.0 \\
        "optimum-onnx[onnxruntime]"
    .venv/bin/python experiments/seq2seq_layouts.py [--optimum-cli /tmp/optimum-venv/bin/optimum-cli]

Each greedy loop runs ``--new-tokens`` decoder steps (eos does not stop it) on each input at
batch 1; layouts alternate within every round (the machine's load moves between rounds,
not between neighbours). Writes experiments/seq2seq_results/layouts.{json,md}.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "seq2seq_results"
TEXTS = ["The kettle clicked off just as the phone started ringing.",
         "I forgot my umbrella at the office again.",
         "translate English to German: The house is wonderful and the garden is green.",
         "summarize: the meeting moved to Thursday because half of the team was travelling."]


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def empty_past(like: np.ndarray) -> np.ndarray:
    return np.zeros((like.shape[0], like.shape[1], 0, like.shape[3]), np.float32)


class Ours:
    """modelport's two graphs, fed plain numpy (what Seq2SeqSession does)."""

    def __init__(self, folder: Path, threads: int) -> None:
        self.enc = session(folder / "encoder" / "model.onnx", threads)
        self.dec = session(folder / "decoder" / "model.onnx", threads)
        self.cross = [o.name for o in self.enc.get_outputs()]
        self.present = [o.name for o in self.dec.get_outputs()][1:]
        self.files = [folder / "encoder", folder / "decoder"]

    def first(self, ids, mask, start):
        cross = dict(zip(self.cross, self.enc.run(self.cross, {"input_ids": ids,
                                                               "attention_mask": mask})))
        past = {n.replace("cross.", "past.", 1): empty_past(v) for n, v in cross.items()}
        return self._step(start, mask, past, cross), cross

    def _step(self, token, mask, past, cross):
        out = self.dec.run(None, {"decoder_input_ids": token, "attention_mask": mask,
                                  **past, **cross})
        return out[0], {n.replace("present.", "past.", 1): v
                        for n, v in zip(self.present, out[1:])}

    def step(self, token, mask, state, ctx):
        return self._step(token, mask, state, ctx)


class OursBound(Ours):
    """modelport's graphs with ORT IO binding: the cross cache bound once as OrtValues, each
    step's presents handed to the next step as OrtValues (no numpy round trip)."""

    def _step(self, token, mask, past, cross):
        import onnxruntime as ort

        bind = self.dec.io_binding()
        bind.bind_cpu_input("decoder_input_ids", token)
        bind.bind_cpu_input("attention_mask", mask)
        for name, value in {**past, **cross}.items():
            if isinstance(value, ort.OrtValue):
                bind.bind_ortvalue_input(name, value)
            else:
                bind.bind_cpu_input(name, value)
        for o in self.dec.get_outputs():
            bind.bind_output(o.name, "cpu")
        self.dec.run_with_iobinding(bind)
        out = bind.get_outputs()
        return out[0].numpy(), {n.replace("present.", "past.", 1): v
                                for n, v in zip(self.present, out[1:])}

    def first(self, ids, mask, start):
        import onnxruntime as ort

        logits_past, cross = super().first(ids, mask, start)
        cross = {n: ort.OrtValue.ortvalue_from_numpy(v) for n, v in cross.items()}
        return logits_past, cross


class OptimumThree:
    """encoder_model + decoder_model (first step) + decoder_with_past_model."""

    def __init__(self, folder: Path, threads: int) -> None:
        self.enc = session(folder / "encoder_model.onnx", threads)
        self.dec = session(folder / "decoder_model.onnx", threads)
        self.past = session(folder / "decoder_with_past_model.onnx", threads)
        self.dec_out = [o.name for o in self.dec.get_outputs()]
        self.past_out = [o.name for o in self.past.get_outputs()]
        self.files = [folder / f for f in ("encoder_model.onnx", "decoder_model.onnx",
                                           "decoder_with_past_model.onnx")]

    def first(self, ids, mask, start):
        hidden = self.enc.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        out = dict(zip(self.dec_out, self.dec.run(None, {
            "input_ids": start, "encoder_attention_mask": mask,
            "encoder_hidden_states": hidden})))
        cache = {n.replace("present.", "past_key_values."): v for n, v in out.items()
                 if n.startswith("present.")}
        cross = {n: v for n, v in cache.items() if ".encoder." in n}
        own = {n: v for n, v in cache.items() if ".decoder." in n}
        return (out["logits"], own), cross

    def step(self, token, mask, own, cross):
        out = dict(zip(self.past_out, self.past.run(None, {
            "input_ids": token, "encoder_attention_mask": mask, **own, **cross})))
        return out["logits"], {n.replace("present.", "past_key_values."): v
                               for n, v in out.items() if n.startswith("present.")}


class OptimumMerged(OptimumThree):
    """encoder_model + decoder_model_merged (use_cache_branch False first, then True)."""

    def __init__(self, folder: Path, threads: int) -> None:
        self.enc = session(folder / "encoder_model.onnx", threads)
        self.dec = session(folder / "decoder_model_merged.onnx", threads)
        self.dec_out = [o.name for o in self.dec.get_outputs()]
        self.names = [i.name for i in self.dec.get_inputs()]
        self.files = [folder / f for f in ("encoder_model.onnx", "decoder_model_merged.onnx")]

    def _run(self, feeds):
        return dict(zip(self.dec_out, self.dec.run(None, feeds)))

    def first(self, ids, mask, start):
        hidden = self.enc.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        heads, dim = 8, hidden.shape[2] // 8  # T5 d_kv 64 x 8 heads = d_model here
        dummy = {n: np.zeros((1, heads, 1 if ".encoder." in n else 0, dim), np.float32)
                 for n in self.names if n.startswith("past_key_values.")}
        out = self._run({"input_ids": start, "encoder_attention_mask": mask,
                         "encoder_hidden_states": hidden, **dummy,
                         "use_cache_branch": np.array([False])})
        cache = {n.replace("present.", "past_key_values."): v for n, v in out.items()
                 if n.startswith("present.")}
        cross = {n: v for n, v in cache.items() if ".encoder." in n}
        self.hidden = hidden
        return (out["logits"], {n: v for n, v in cache.items() if ".decoder." in n}), cross

    def step(self, token, mask, own, cross):
        out = self._run({"input_ids": token, "encoder_attention_mask": mask,
                         "encoder_hidden_states": self.hidden, **own, **cross,
                         "use_cache_branch": np.array([True])})
        return out["logits"], {n.replace("present.", "past_key_values."): v
                               for n, v in out.items() if n.startswith("present.decoder")
                               or (n.startswith("present.") and ".decoder." in n)}


def greedy(layout, ids, mask, new_tokens: int, start: int):
    """(tokens, ms to the first token's logits, ms of each later step)."""
    tok = np.array([[start]], np.int64)
    t0 = time.perf_counter()
    (logits, state), ctx = layout.first(ids, mask, tok)
    ttft = (time.perf_counter() - t0) * 1e3
    tokens, steps = [], []
    for _ in range(new_tokens - 1):
        tok = logits[:, -1].argmax(-1)[:, None].astype(np.int64)
        tokens.append(int(tok[0, 0]))
        t0 = time.perf_counter()
        logits, state = layout.step(tok, mask, state, ctx)
        steps.append((time.perf_counter() - t0) * 1e3)
    tokens.append(int(logits[:, -1].argmax(-1)[0]))
    return tokens, ttft, steps


def size_mb(paths: list[Path]) -> float:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*"))
               if f.is_file()) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimum-cli", default="/tmp/optimum-venv/bin/optimum-cli",
                        help="optimum-cli of a venv with optimum-onnx installed")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (+1 warm-up)")
    parser.add_argument("--new-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "experiments"))
    from seq2seq_bench import write_folder
    from stamp import publish, watch_load
    from tokenizers import Tokenizer

    import modelport
    from modelport.tasks.text2text import encode_batch

    with tempfile.TemporaryDirectory() as tmp, watch_load() as loads:
        folder = Path(tmp) / "t5-random"
        params = write_folder(folder)
        modelport.export(str(folder), ["onnxruntime:cpu:fp32"], out=Path(tmp) / "ours",
                         bench=None, progress=False)
        subprocess.run([args.optimum_cli, "export", "onnx", "--model", str(folder), "--task",
                        "text2text-generation-with-past", str(Path(tmp) / "optimum")],
                       check=True, capture_output=True)
        bundle, opt = Path(tmp) / "ours" / "onnxruntime-cpu-fp32", Path(tmp) / "optimum"
        layouts = {"modelport: encoder(+cross cache) + decoder-with-past": Ours(bundle,
                                                                              args.threads),
                   "modelport, ORT IO binding": OursBound(bundle, args.threads),
                   "Optimum: encoder + decoder + decoder-with-past": OptimumThree(
                       opt, args.threads),
                   "Optimum: encoder + merged decoder (If)": OptimumMerged(opt, args.threads)}
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        inputs = [encode_batch(tok, [t], 0) for t in TEXTS]
        times = {n: {"ttft": [], "steps": [], "total": []} for n in layouts}
        tokens: dict[str, list] = {n: [] for n in layouts}
        for rnd in range(args.rounds + 1):
            for name, layout in layouts.items():
                for ids, mask in inputs:
                    t0 = time.perf_counter()
                    got, ttft, steps = greedy(layout, ids, mask, args.new_tokens, 0)
                    total = (time.perf_counter() - t0) * 1e3
                    if rnd == 0:
                        tokens[name].append(got)
                        continue
                    times[name]["ttft"].append(ttft)
                    times[name]["steps"] += steps
                    times[name]["total"].append(total)
        sizes = {n: size_mb(layout.files) for n, layout in layouts.items()}
    first = next(iter(tokens.values()))
    rows = [{"layout": n, "size_mb": sizes[n],
             "ttft_ms_p50": float(np.median(t["ttft"])),
             "step_ms_p50": float(np.percentile(t["steps"], 50)),
             "step_ms_p99": float(np.percentile(t["steps"], 99)),
             "generate_ms_p50": float(np.median(t["total"])),
             "tokens_equal": tokens[n] == first} for n, t in times.items()]
    head = ("| layout | files MB | encoder+1st step ms p50 | ms/step p50 | p99 | "
            f"{args.new_tokens} tokens ms p50 | greedy tokens equal |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['layout']} | {r['size_mb']:.1f} | {r['ttft_ms_p50']:.2f} | "
              f"{r['step_ms_p50']:.2f} | {r['step_ms_p99']:.2f} | {r['generate_ms_p50']:.1f} | "
              f"{'yes' if r['tokens_equal'] else 'NO'} |" for r in rows]
    publish(OUT, "layouts", "\n".join(lines), {"rows": rows, "parameters": params,
                                               "args": vars(args)}, loads,
            facts=[f"{params / 1e6:.1f}M parameters",
                   f"{len(TEXTS)} inputs x {args.rounds} rounds, {args.threads} ORT thread(s)"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
