"""`modelport serve` as a user runs it: a subprocess on loopback (a free port the server picks
and prints), driven by Triton's own HTTP client (tritonclient.http), compared with
``modelport.load(B).infer`` on the same feeds. Tiny bundles, built once for the module."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.serve.server_process import ServerProcess, metric

pytestmark = [pytest.mark.onnxruntime, pytest.mark.openvino]

ORT, OV, TFL = "onnxruntime:cpu:fp32", "openvino:cpu:fp32", "tflite:cpu:fp32"
IMAGE = "image-classifier"  # a tiny ViT, ORT FP32
#: sentences of different token lengths (1 to ~30 tokens)
WORDS = ["the", "red", "cat", "sat", "on", "a", "mat", "and", "the", "blue", "dog", "runs",
         "fast", "to", "the", "slow", "car", "in", "Paris"]


@pytest.fixture(scope="module")
def tritonclient_http():
    if importlib.util.find_spec("tritonclient") is None:
        pytest.skip('tritonclient not installed (pip install "modelport[dev]")')
    import tritonclient.http as client

    return client


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """A tiny BERT text classifier (a task bundle with a tokenizer, dynamic [batch, seq]) for
    ORT and OpenVINO, a tiny ViT image classifier for ORT, and digits-cnn for TFLite (static
    [1, 1, 8, 8]) when LiteRT is here."""
    import modelport
    from tests.models.checkpoints import bert_multilabel_classifier, vit_image_classifier

    root = tmp_path_factory.mktemp("serve")
    folder = bert_multilabel_classifier(root / "bert")
    text = modelport.export(str(folder), [ORT, OV], out=root / "bert-bundles", bench=None,
                            progress=False)
    out = {t: Path(text.bundles[t]) for t in (ORT, OV)}
    vit = modelport.export(str(vit_image_classifier(root / "vit")), [ORT],
                           out=root / "vit-bundles", bench=None, progress=False)
    out[IMAGE] = Path(vit.bundles[ORT])
    if importlib.util.find_spec("ai_edge_litert") and importlib.util.find_spec("onnx2tf"):
        digits = modelport.export("builtin:digits-cnn", [TFL], out=root / "digits-bundles",
                                  bench=None, progress=False)
        out[TFL] = Path(digits.bundles[TFL])
    return out


@pytest.fixture(scope="module")
def server(bundles):
    """One server for the module: every bundle, batching up to 16 rows within 20 ms, a 1 MiB
    body limit. Stopped (SIGTERM, then kill) when the module ends, even on failure."""
    with ServerProcess([str(b) for b in bundles.values()], "--max-batch", "16",
                       "--max-batch-delay-ms", "20", "--max-request-mb", "1") as proc:
        yield proc


def _name(target: str) -> str:
    return {ORT: "bert-onnxruntime-cpu-fp32", OV: "bert-openvino-cpu-fp32",
            TFL: "digits-cnn-tflite-cpu-fp32", IMAGE: "vit-onnxruntime-cpu-fp32"}[target]


def _client(tritonclient_http, server, concurrency: int = 1):
    return tritonclient_http.InferenceServerClient(
        server.address, concurrency=concurrency, connection_timeout=30, network_timeout=120)


def _inputs(tritonclient_http, feeds: dict[str, np.ndarray], *, binary: bool = True):
    from tritonclient.utils import np_to_triton_dtype

    out = []
    for name, value in feeds.items():
        item = tritonclient_http.InferInput(name, list(value.shape),
                                            np_to_triton_dtype(value.dtype))
        item.set_data_from_numpy(value, binary_data=binary)
        out.append(item)
    return out


def _text_feeds(bundle: Path, text: str) -> dict[str, np.ndarray]:
    from modelport.bundle import open_bundle
    from modelport.tasks.base import text_feeds

    return text_feeds(open_bundle(bundle), [text])


def test_server_and_model_metadata(tritonclient_http, server, bundles):
    assert re.search(r"^serving \d model\(s\) on http://127\.0\.0\.1:\d+$", server.first_line)
    client = _client(tritonclient_http, server)
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "modelport" and "binary_tensor_data" in meta["extensions"]
    index = client.get_model_repository_index()
    assert {m["name"] for m in index} == {_name(t) for t in bundles}
    assert all(m["state"] == "READY" for m in index)
    listed = json.loads(server.request("GET", "/v2/models")[1])
    assert {m["name"] for m in listed["models"]} == {_name(t) for t in bundles}

    ort = client.get_model_metadata(_name(ORT))
    assert ort["platform"] == ORT and ort["versions"] == ["1"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in ort["inputs"]] == [
        ("input_ids", "INT64", [-1, -1]), ("attention_mask", "INT64", [-1, -1]),
        ("token_type_ids", "INT64", [-1, -1])]
    assert [(o["name"], o["datatype"], o["shape"]) for o in ort["outputs"]] == [
        ("logits", "FP32", [-1, 4])]
    assert ort["parameters"]["task"] == "text-classification"
    assert ort["parameters"]["batching"] == "pad"
    assert client.is_model_ready(_name(OV))
    if TFL in bundles:
        tfl = client.get_model_metadata(_name(TFL))
        assert tfl["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [1, 1, 8, 8]}]
        assert tfl["parameters"]["batching"] == "single"


@pytest.mark.parametrize("target,binary", [(ORT, True), (OV, False),
                                           pytest.param(TFL, True, marks=pytest.mark.tflite)])
def test_infer_equals_in_process_infer(tritonclient_http, server, bundles, target, binary):
    """Binary tensors (ORT, TFLite) and JSON tensors (OpenVINO) give what the same bundle gives
    in process on the same feeds."""
    import modelport

    if target not in bundles:
        pytest.skip("no TFLite converter here")
    from modelport.bundle import open_bundle

    feeds, _ = open_bundle(bundles[target]).samples()
    feeds = {k: v[:1] for k, v in feeds.items()}
    with modelport.load(bundles[target]) as session:
        want = session.infer(feeds)
    client = _client(tritonclient_http, server)
    outputs = [tritonclient_http.InferRequestedOutput(n, binary_data=binary) for n in want]
    result = client.infer(_name(target), _inputs(tritonclient_http, feeds, binary=binary),
                          outputs=outputs)
    for name, value in want.items():
        got = result.as_numpy(name)
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-6)


def test_64_concurrent_texts_of_different_lengths(tritonclient_http, server, bundles):
    """Tensor requests (input_ids of 1..N tokens) and natural BYTES text requests, 64 at once:
    each gets its own answer, and the runtime saw batches of more than one request (padded to
    the longest with the pad id, cut back to each request's length)."""
    import modelport

    texts = [" ".join(WORDS[: 1 + (i * 7) % len(WORDS)]) for i in range(64)]
    name = _name(ORT)
    before = metric(server.metrics(), "modelport_batch_size_count", name)
    with modelport.load(bundles[ORT]) as session:
        want = [session.infer(_text_feeds(bundles[ORT], t))["logits"] for t in texts]
        answers = [session.predict(text=t).to_dict() for t in texts[1::2]]
    client = _client(tritonclient_http, server, concurrency=64)
    pending = []
    for i, text in enumerate(texts):
        if i % 2 == 0:
            inputs = _inputs(tritonclient_http, _text_feeds(bundles[ORT], text))
        else:
            inputs = _inputs(tritonclient_http, {"text": np.array([text.encode()], object)})
        pending.append(client.async_infer(name, inputs))
    results = [p.get_result(timeout=120) for p in pending]
    for i, (text, result) in enumerate(zip(texts, results, strict=True)):
        if i % 2 == 0:
            np.testing.assert_allclose(result.as_numpy("logits"), want[i], rtol=1e-4,
                                       atol=1e-5)
            continue
        got = json.loads(result.as_numpy("answer")[0])
        ref = answers[i // 2]
        assert got["predictions"][0]["input"] == text
        np.testing.assert_allclose(got["outputs"]["logits"], want[i], rtol=1e-4, atol=1e-5)
        assert len(got["predictions"][0]["labels"]) == len(ref["predictions"][0]["labels"])
    text = server.metrics()
    calls = metric(text, "modelport_batch_size_count", name) - before
    singles = metric(text, "modelport_batch_size_bucket", name, le="1.0")
    assert 0 < calls < 64, f"{calls} runtime calls for 64 requests: nothing was combined"
    assert singles < metric(text, "modelport_batch_size_count", name)  # batches > 1 seen
    assert metric(text, "modelport_requests_total", name) >= 64


def test_image_bytes_are_answered_by_the_image_task(tritonclient_http, server, bundles):
    """PNG bytes in a BYTES tensor, decoded in memory, answered as `run --image` answers the
    same pixels; two images in one request are two rows of one call."""
    import io

    from PIL import Image

    import modelport

    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(2)]
    pngs = []
    for array in pixels:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    with modelport.load(bundles[IMAGE]) as session:
        want = session.predict(image=pixels).to_dict()
    client = _client(tritonclient_http, server)
    result = client.infer(_name(IMAGE), _inputs(tritonclient_http,
                                                {"image": np.array(pngs, dtype=object)}),
                          parameters={"top_k": 2})
    got = json.loads(result.as_numpy("answer")[0])
    assert got["task"] == "image-classification" and len(got["predictions"]) == 2
    np.testing.assert_allclose(got["outputs"]["logits"], want["outputs"]["logits"], rtol=1e-5,
                               atol=1e-5)
    assert all(len(p["labels"]) == 2 for p in got["predictions"])
    bad = _inputs(tritonclient_http, {"image": np.array([b"not an image"], dtype=object)})
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="cannot be read as PNG/JPEG"):
        client.infer(_name(IMAGE), bad)


def test_bad_requests_get_4xx_and_the_server_keeps_serving(tritonclient_http, server, bundles):
    from tritonclient.utils import InferenceServerException

    name = _name(ORT)
    path = f"/v2/models/{name}/infer"
    ids = {"name": "input_ids", "datatype": "INT64", "shape": [1, 3], "data": [1, 2, 3]}
    mask = {**ids, "name": "attention_mask", "data": [1, 1, 1]}
    types = {**ids, "name": "token_type_ids", "data": [0, 0, 0]}
    cases = [
        (b'{"inputs": [', 400, "not valid JSON"),
        (json.dumps({"inputs": [{**ids, "datatype": "FP32"}, mask, types]}), 400,
         "input 'input_ids' must be INT64, got FP32"),
        (json.dumps({"inputs": [{**ids, "shape": [3]}, mask, types]}), 400,
         "must have shape [-1, -1]"),
        (json.dumps({"inputs": [{**ids, "shape": [1, 4]}, mask, types]}), 400,
         "holds 4 elements, 'data' has 3"),
        (json.dumps({"inputs": [ids, {**mask, "shape": [1, 1], "data": [1]}, types]}), 400,
         "disagree on 'seq'"),
        (json.dumps({"inputs": [ids, mask]}), 400, "missing input(s) ['token_type_ids']"),
        (json.dumps({"inputs": [ids, mask, {**types, "name": "pixel_values"}]}), 400,
         "has no input(s) ['pixel_values']"),
    ]
    for body, status, words in cases:
        got, reply = server.request("POST", path, body)
        assert got == status, (body, reply)
        assert words in json.loads(reply)["error"], reply
    got, reply = server.request("POST", "/v2/models/nope/infer", json.dumps({"inputs": [ids]}))
    assert got == 404 and "unknown model 'nope'" in json.loads(reply)["error"]
    got, reply = server.request("POST", path, b"x" * (2 * 2**20))
    assert got == 413 and "limit" in json.loads(reply)["error"]
    # Triton's client sees the same refusal as an exception carrying the message
    bad = _inputs(tritonclient_http, {"input_ids": np.ones((1, 3), np.int32),
                                      "attention_mask": np.ones((1, 3), np.int64),
                                      "token_type_ids": np.zeros((1, 3), np.int64)})
    with pytest.raises(InferenceServerException, match="must be INT64, got INT32"):
        _client(tritonclient_http, server).infer(name, bad)
    # still serving, and the errors were counted
    feeds = _text_feeds(bundles[ORT], "the cat sat")
    result = _client(tritonclient_http, server).infer(name, _inputs(tritonclient_http, feeds))
    assert result.as_numpy("logits").shape == (1, 4)
    assert metric(server.metrics(), "modelport_request_errors_total", name, code="400") >= 8


def test_sigterm_finishes_every_accepted_request_and_exits_0(tritonclient_http, bundles):
    """16 requests held in the batcher (a 1 s batching delay), SIGTERM while they wait: every
    one is answered correctly, then the server exits 0."""
    import modelport

    feeds = [_text_feeds(bundles[ORT], " ".join(WORDS[: 2 + i])) for i in range(16)]
    with modelport.load(bundles[ORT]) as session:
        want = [session.infer(f)["logits"] for f in feeds]
    with ServerProcess([str(bundles[ORT])], "--max-batch", "64",
                       "--max-batch-delay-ms", "1000") as proc:
        def one(f):
            client = _client(tritonclient_http, proc)
            return client.infer(_name(ORT), _inputs(tritonclient_http, f)).as_numpy("logits")

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(one, f) for f in feeds]
            proc.wait_for_metric("modelport_requests_in_flight", 16, timeout=60)
            proc.popen.send_signal(signal.SIGTERM)
            got = [f.result(timeout=120) for f in futures]
        assert proc.popen.wait(timeout=60) == 0, proc.stderr_text()
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)



def test_cli_refuses_bad_flags_and_names_in_one_line(bundles, tmp_path, capsys):
    """User mistakes: one `error:` line and exit 2, before anything listens."""
    from modelport.cli import main

    ort = str(bundles[ORT])
    cases = [
        ([str(tmp_path / "nope")], "is not a bundle directory"),
        ([ort, "--max-batch", "0"], "--max-batch must be at least 1"),
        ([ort, "--name", "noequals"], "--name takes NAME=BUNDLE"),
        ([ort, "--name", f"a/b={ort}"], "cannot be part of a URL"),
        ([ort, ort], "two bundles would be served as 'bert-onnxruntime-cpu-fp32'"),
    ]
    for argv, words in cases:
        assert main(["-q", "serve", *argv]) == 2, argv
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in err, err
