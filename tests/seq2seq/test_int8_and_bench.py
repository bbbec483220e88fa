"""Encoder-decoders: `int8` = W+A INT8 encoder + int8wo decoder, judged on chrF (over budget:
no bundle); the generation bench columns (encoder, TTFT, ms/step, tokens/s, peak memory) in
the bench report; `bench MODEL --targets all` keeps the targets that apply."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

INT8 = ["onnxruntime:cpu:int8", "openvino:cpu:int8"]


def test_int8_is_an_int8_encoder_and_an_int8wo_decoder_judged_on_chrf(marian_bundles):
    import modelport

    _, out, rows = marian_bundles
    by_target = {r["target"]: r for r in rows}
    for target in INT8:
        row, bundle = by_target[target], out / target.replace(":", "-")
        assert row["graphs"] == {"encoder": "int8", "decoder": "int8wo"}, row
        metrics = row["fidelity"]
        assert row["judged_by"] == "chrF" and metrics["max_chrf_drop"] == 0.05
        within = metrics["accuracy_drop"] <= metrics["max_chrf_drop"] + 1e-9
        assert bundle.is_dir() == within and row["status"] == ("ok" if within
                                                               else "below budget"), row
        if not within:  # over budget: no bundle, the reason in the export's failures
            assert "chrF" in row["failure"]
            continue
        manifest = json.loads((bundle / "manifest.json").read_text())
        graphs = manifest["graphs"]
        assert graphs["encoder"]["precision"] == "int8"
        assert graphs["decoder"]["precision"] == "int8wo"
        # the runtime's own W+A quantizer ran on the encoder: ORT's mode or NNCF's record
        assert graphs["encoder"]["build"].get("mode") or graphs["encoder"]["build"].get(
            "quantizer", "").startswith("nncf")
        assert modelport.verify(bundle)["outputs_checked"]


def test_fp32_and_weight_only_bundles_say_each_graphs_precision(marian_bundles):
    _, out, _ = marian_bundles
    graphs = json.loads((out / "onnxruntime-cpu-int8wo" / "manifest.json").read_text())["graphs"]
    assert {n: g["precision"] for n, g in graphs.items()} == {"encoder": "fp32",
                                                              "decoder": "int8wo"}


def test_bench_model_all_skips_what_an_encoder_decoder_cannot_take():
    from modelport.bench.matrix import expand_targets
    from modelport.lm_steps import bench_lm_targets

    wanted = expand_targets("all")
    kept, skipped = bench_lm_targets(SimpleNamespace(task="text2text-generation"), "all",
                                     wanted)
    assert {str(t) for t in kept} >= {"onnxruntime:cpu:int8", "openvino:cpu:int4"}
    assert not any(t.runtime in ("tflite", "tensorrt") or str(t.precision) in ("fp16", "bf16")
                   for t in kept)
    # torch:cpu:fp32 is the reference row the export adds, neither kept nor skipped
    assert {r["target"] for r in skipped} == {str(t) for t in wanted} - {
        str(t) for t in kept} - {"torch:cpu:fp32"}
    assert all(r["reason"].startswith("not for encoder-decoder models: ") for r in skipped)


def test_bench_report_has_the_generation_columns(pegasus_bundles, tmp_path):
    from modelport.bench.device import bench_bundles
    from modelport.bench.harness import BenchSettings
    from modelport.bench.report_tables import markdown_report

    _, out, _ = pegasus_bundles
    report = bench_bundles([out / "openvino-cpu-fp32"],
                           BenchSettings(batch_sizes=(1,), warmup=1, duration=0.1),
                           progress=False)
    row = report["rows"][0]
    for key in ("encoder_ms", "ttft_ms", "decode_ms_p50", "decode_ms_p99", "tokens_per_s",
                "peak_rss_mb"):
        assert row[key] is not None and row[key] > 0, (key, row)
    assert row["decode_ms_p50"] <= row["decode_ms_p99"]
    table = markdown_report(report).splitlines()
    header = next(line for line in table if line.startswith("| target"))
    assert all(c in header for c in ("encoder ms", "TTFT ms", "ms/token p50", "tokens/s",
                                     "peak MB"))
    jsonschema = pytest.importorskip("jsonschema")
    from modelport.bench.report_doc import schema

    jsonschema.validate(json.loads(json.dumps(report, default=str)), schema())
