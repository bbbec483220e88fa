"""Causal-LM decode: modelport's bundles beside onnxruntime-genai and optimum-intel, same folder.

A random-init Llama-style folder (hidden 768, 12 layers, 12 heads / 4 KV heads, MLP 2048,
vocab 32000: ~125 M parameters; the BPE tokenizer builtin:tiny-lm makes, trained on the shipped
sentences; nothing from a hub) is exported three ways:

- modelport: ``modelport.export`` to ORT and OpenVINO fp32 / int8wo / int4 bundles;
- onnxruntime-genai's model builder (``python -m onnxruntime_genai.models.builder -i FOLDER
  -o OUT -p int4 -e cpu``), run with its own ``og.Generator`` loop;
- optimum-intel: ``OVModelForCausalLM.from_pretrained(FOLDER, export=True,
  quantization_config=OVWeightQuantizationConfig(bits=4 or 8))``, run with its ``generate``.

Each runtime is a long-lived worker process in its own venv (experiments/lm_peer_workers.py)
fed the same prompt token ids; greedy, exactly ``--new`` tokens (eos never stops it). Rounds
are interleaved: every round runs every (prompt length, batch) on every worker in turn (the
order rotated), after one warm-up generation per worker; the table has medians over the rounds.
TTFT = prompt in -> first token chosen; decode tokens/s = batch x (new - 1) / time of the steps
after the first token.

The peers' venvs (their pins differ from the repo's; ``torch==2.13.0`` takes the local CPU
wheel)::

    python3 -m venv /tmp/lmpeers/genai && /tmp/lmpeers/genai/bin/pip install torch==2.13.0 \\
        onnxruntime-genai==0.18.0 transformers onnx onnxruntime onnx_ir
    python3 -m venv /tmp/lmpeers/optimum && /tmp/lmpeers/optimum/bin/pip install \\
        torch==2.13.0 "optimum-intel[openvino]==2.2.0"
    /tmp/lmpeers/optimum/bin/pip uninstall -y torchvision  # pulled in, built for another torch

    .venv/bin/python experiments/lm_peers.py --update-docs   # ~5 min of timing on 2 cores
    .venv/bin/python experiments/lm_peers.py --rows mp-ort-int4,genai-int4 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
OUT = ROOT / "experiments" / "lm_results"
WORKER = ROOT / "experiments" / "lm_peer_workers.py"
ARCH = {"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048,
        "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 4,
        "max_position_embeddings": 512}
#: modelport targets -> row label
MODELPORT = {"onnxruntime:cpu:fp32": "mp-ort-fp32", "onnxruntime:cpu:int8wo": "mp-ort-int8wo",
             "onnxruntime:cpu:int4": "mp-ort-int4", "openvino:cpu:fp32": "mp-ov-fp32",
             "openvino:cpu:int8wo": "mp-ov-int8wo", "openvino:cpu:int4": "mp-ov-int4"}
OPTIMUM_EXPORT = """
import sys
from optimum.intel import OVModelForCausalLM, OVWeightQuantizationConfig
bits = int(sys.argv[3])
q = OVWeightQuantizationConfig(bits=bits) if bits < 16 else None
m = OVModelForCausalLM.from_pretrained(sys.argv[1], export=True, quantization_config=q,
                                       load_in_8bit=False if q is None else None)
m.save_pretrained(sys.argv[2])
"""
log = logging.getLogger("lm_peers")


@dataclass
class Row:
    label: str
    kind: str  # worker kind: modelport / genai / optimum
    python: str
    path: Path
    peer: bool
    how: str


def make_folder(path: Path) -> Path:
    """The random-init Llama-style checkpoint folder (seeded; reused when present)."""
    if (path / "model.safetensors").is_file():
        return path
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from modelport.models.data import sentences
    from modelport.models.tiny_lm import make_bpe_tokenizer, save_tokenizer

    path.mkdir(parents=True, exist_ok=True)
    save_tokenizer(make_bpe_tokenizer(sentences(), vocab_size=4000), path,
                   context=ARCH["max_position_embeddings"])
    torch.manual_seed(0)
    config = LlamaConfig(**ARCH, eos_token_id=2, bos_token_id=None, pad_token_id=0,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    log.info("%s: %.1f M parameters", path, sum(p.numel() for p in model.parameters()) / 1e6)
    model.save_pretrained(str(path), safe_serialization=True)
    GenerationConfig(eos_token_id=2, pad_token_id=0).save_pretrained(str(path))
    return path


def build_modelport(folder: Path, work: Path, targets: list[str]) -> dict[str, Path]:
    import modelport
    from modelport.models.data import sentences

    out = work / "modelport"
    wanted = {t: out / t.replace(":", "-") for t in targets}
    todo = [t for t, p in wanted.items() if not (p / "manifest.json").is_file()]
    if todo:
        evalfile = work / "eval.txt"  # perplexity is not what this measures: a few lines
        evalfile.write_text("\n".join(sentences()[-6:]), encoding="utf-8")
        modelport.export(str(folder), todo, out=out, bench=None, eval=evalfile, force=True,
                         progress=False, allow_accuracy_drop=True)
    return wanted


def build_genai(venv: Path, folder: Path, work: Path, precision: str) -> Path:
    out = work / f"genai-{precision}"
    if not (out / "genai_config.json").is_file():
        subprocess.run([str(venv / "bin" / "python"), "-m", "onnxruntime_genai.models.builder",
                        "-i", str(folder), "-o", str(out), "-p", precision, "-e", "cpu",
                        "-c", str(work / "genai-cache")], check=True, capture_output=True)
    return out


def build_optimum(venv: Path, folder: Path, work: Path, bits: int) -> Path:
    out = work / f"optimum-int{bits}" if bits < 16 else work / "optimum-fp32"
    if not (out / "openvino_model.xml").is_file():
        subprocess.run([str(venv / "bin" / "python"), "-c", OPTIMUM_EXPORT, str(folder),
                        str(out), str(bits)], check=True, capture_output=True)
    return out


def plan_rows(args: argparse.Namespace, folder: Path, work: Path) -> list[Row]:
    wanted = set(args.rows.split(",")) if args.rows else None

    def want(label: str) -> bool:
        return wanted is None or label in wanted

    rows: list[Row] = []
    targets = [t for t, label in MODELPORT.items() if want(label)]
    if targets:
        for target, path in build_modelport(folder, work, targets).items():
            rows.append(Row(MODELPORT[target], "modelport", sys.executable, path, False,
                            f"modelport export --target {target}"))
    genai = Path(args.genai_venv)
    for precision in ("int4",):
        if want(f"genai-{precision}") and (genai / "bin" / "python").exists():
            rows.append(Row(f"genai-{precision}", "genai", str(genai / "bin" / "python"),
                            build_genai(genai, folder, work, precision), True,
                            f"onnxruntime_genai.models.builder -p {precision} -e cpu"))
    optimum = Path(args.optimum_venv)
    for bits in (4, 8):
        if want(f"optimum-int{bits}") and (optimum / "bin" / "python").exists():
            rows.append(Row(f"optimum-int{bits}", "optimum", str(optimum / "bin" / "python"),
                            build_optimum(optimum, folder, work, bits), True,
                            f"OVModelForCausalLM export=True, OVWeightQuantizationConfig(bits={bits})"))
    return rows


class Worker:
    def __init__(self, row: Row) -> None:
        self.row = row
        self.proc = subprocess.Popen([row.python, str(WORKER), row.kind, str(row.path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=ROOT)
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.row.label} exited (code {self.proc.wait()})")
        return json.loads(line)

    def ask(self, ids: list[list[int]], new: int) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"ids": ids, "new": new}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def time_rows(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds: per round, per (prompt, batch), every worker in a rotated order."""
    rng = random.Random(0)
    configs = [(p, b) for p in args.prompts for b in args.batches]
    prompts = {(p, b): [[rng.randrange(3, 4000) for _ in range(p)] for _ in range(b)]
               for p, b in configs}
    workers = [Worker(row) for row in rows]
    samples: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    try:
        for worker in workers:  # warm-up: the shortest prompt, batch 1
            worker.ask(prompts[configs[0]][:1], args.new)
        for rnd in range(args.rounds):
            for i, (p, b) in enumerate(configs):
                shift = (rnd + i) % len(workers)
                for worker in workers[shift:] + workers[:shift]:
                    got = worker.ask(prompts[(p, b)], args.new)
                    samples.setdefault((worker.row.label, p, b), []).append(got)
            log.info("round %d/%d done", rnd + 1, args.rounds)
    finally:
        for worker in workers:
            worker.close()
    table = []
    for row in rows:
        for p, b in configs:
            got = samples[(row.label, p, b)]
            table.append({"row": row.label, "peer": row.peer, "how": row.how, "prompt": p,
                          "batch": b, "ttft_ms": statistics.median(g["ttft_ms"] for g in got),
                          "tokens_per_s": statistics.median(g["tokens_per_s"] for g in got),
                          "rounds": len(got), "tokens": got[-1]["tokens"]})
    return {"configs": configs, "rows": table}


def ratios(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (prompt, batch): modelport's best tokens/s over the best peer's."""
    out = []
    for p, b in result["configs"]:
        cell = [r for r in result["rows"] if r["prompt"] == p and r["batch"] == b]
        ours = [r for r in cell if not r["peer"]]
        peers = [r for r in cell if r["peer"]]
        if not ours or not peers:
            continue
        best = max(ours, key=lambda r: r["tokens_per_s"])
        peer = max(peers, key=lambda r: r["tokens_per_s"])
        out.append({"prompt": p, "batch": b, "modelport": best["row"], "peer": peer["row"],
                    "ratio": best["tokens_per_s"] / peer["tokens_per_s"]})
    return out


def markdown(result: dict[str, Any], note: str) -> str:
    configs = result["configs"]
    head = "| row | how | " + " | ".join(
        f"p{p} b{b} TTFT ms / tok/s" for p, b in configs) + " |"
    lines = [head, "|---|---|" + "---|" * len(configs)]
    by_row: dict[str, list[dict[str, Any]]] = {}
    for r in result["rows"]:
        by_row.setdefault(r["row"], []).append(r)
    for label, cells in by_row.items():
        vals = {(c["prompt"], c["batch"]): c for c in cells}
        lines.append(f"| {label} | {cells[0]['how']} | " + " | ".join(
            f"{vals[k]['ttft_ms']:.0f} / {vals[k]['tokens_per_s']:.1f}" for k in configs) + " |")
    lines.append("")
    for r in result["ratios"]:
        lines.append(f"- p{r['prompt']} b{r['batch']}: modelport best ({r['modelport']}) / best "
                     f"peer ({r['peer']}) tokens/s = **{r['ratio']:.2f}x**")
    return "\n".join(lines) + f"\n\n{note}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/lmpeers/work",
                   help="folder for the checkpoint and every build (reused when present)")
    p.add_argument("--genai-venv", default="/tmp/lmpeers/genai", help="onnxruntime-genai venv")
    p.add_argument("--optimum-venv", default="/tmp/lmpeers/optimum", help="optimum-intel venv")
    p.add_argument("--rows", default="", help="comma-separated row labels (default: all)")
    p.add_argument("--prompts", default="32,256", help="prompt lengths (tokens)")
    p.add_argument("--batches", default="1,4", help="batch sizes")
    p.add_argument("--new", type=int, default=32, help="new tokens per generation")
    p.add_argument("--rounds", type=int, default=2,
                   help="timed rounds (after one warm-up generation per worker)")
    p.add_argument("--update-docs", action="store_true",
                   help="write the table into docs/language-models.md (block lm-peers)")
    args = p.parse_args()
    args.prompts = [int(x) for x in args.prompts.split(",")]
    args.batches = [int(x) for x in args.batches.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("nncf", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import os

    from stamp import stamp

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    folder = make_folder(work / "llama-125m")
    rows = plan_rows(args, folder, work)
    load = os.getloadavg()[0]
    result = time_rows(rows, args)
    result["ratios"] = ratios(result)
    result["load_avg"] = [load, os.getloadavg()[0]]
    note = (f"{stamp()} · load average {load:.1f} before / {result['load_avg'][1]:.1f} after · "
            f"{args.new} new tokens, greedy, medians of {args.rounds} interleaved rounds")
    text = markdown(result, note)
    OUT.mkdir(exist_ok=True)
    (OUT / "peers.json").write_text(json.dumps(result, indent=1))
    (OUT / "peers.md").write_text(text + "\n")
    print(text)
    if args.update_docs:
        from results_md import DOCS, update_doc_block

        update_doc_block(DOCS / "language-models.md", "lm-peers", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
