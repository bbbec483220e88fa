"""`modelport serve BUNDLE --ray ADDR --replicas 2`: two Ray Serve replicas on a two-node
loopback cluster (in its own network namespace, as the sweep tests run theirs) answer the same
Open Inference Protocol requests `serve` answers, with the bundle's own outputs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.support.catalog_support import write_tiny_onnx
from tests.sweep.cluster import ADDRESS, LoopbackCluster, can_run

CLUSTER_MARKS = (pytest.mark.ray, pytest.mark.onnxruntime, pytest.mark.slow)


def on_cluster(test):
    """Marks of a test that starts the namespaced cluster (its fixture skips where the
    cluster cannot start)."""
    for mark in CLUSTER_MARKS:
        test = mark(test)
    return test

ORT = "onnxruntime:cpu:fp32"
PORT = 8000  # inside the cluster's private namespace: nothing else listens there
#: one client inside the namespace: 48 requests from 8 threads, each answer with its replica
CLIENT = """
import json, sys, http.client
from concurrent.futures import ThreadPoolExecutor
feeds = json.loads(sys.argv[1])
def one(i):
    ids = feeds[i % len(feeds)]
    body = json.dumps({"inputs": [{"name": "ids", "shape": [1, len(ids)], "datatype": "INT64",
                                   "data": ids}]})
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    conn.request("POST", "/v2/models/tiny-onnxruntime-cpu-fp32/infer", body=body,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    return {"i": i, "status": resp.status, "replica": resp.getheader("modelport-replica"),
            "outputs": data.get("outputs"), "error": data.get("error")}
with ThreadPoolExecutor(8) as pool:
    print(json.dumps(list(pool.map(one, range(48)))))
""".replace("PORT", str(PORT))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    import modelport

    root = tmp_path_factory.mktemp("ray-serve")
    result = modelport.export(str(write_tiny_onnx(root / "tiny.onnx")), [ORT], out=root / "b",
                              bench=None, progress=False)
    return Path(result.bundles[ORT])


@pytest.fixture(scope="module")
def cluster():
    reason = can_run()  # here, not at import: collecting the file must not import ray
    if reason:
        pytest.skip(reason)
    c = LoopbackCluster(env={"TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT / "src")})
    try:
        c.start_head("alpha")
        c.start_nodes("beta")
        yield c
    finally:
        c.stop()


def _wait_line(proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no '{prefix}' line; serve --ray said:\n{proc.stderr.read()[-3000:]}")


def test_deployment_options_and_replica_header():
    """The flags as Ray Serve's deployment arguments; the ASGI wrapper adds the replica header
    to HTTP answers and passes everything else (lifespan, attributes) to the app."""
    import asyncio

    from modelport.errors import UsageError
    from modelport.serve.ray_deploy import RayServeOptions, TaggedApp, parse_autoscale

    fixed = RayServeOptions("h:1", replicas=3, max_replicas_per_node=1).deployment_options()
    assert fixed == {"max_ongoing_requests": 32, "ray_actor_options": {"num_cpus": 1.0},
                     "max_replicas_per_node": 1, "num_replicas": 3}
    scaled = RayServeOptions("h:1", replicas=1, autoscale=parse_autoscale("2:6"),
                             target_ongoing_requests=4).deployment_options()
    assert scaled["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 6,
                                            "initial_replicas": 2, "target_ongoing_requests": 4}
    assert "num_replicas" not in scaled
    for bad in ({"replicas": 0}, {"autoscale": (3, 2)}, {"max_ongoing_requests": 0}):
        with pytest.raises(UsageError):
            RayServeOptions("h:1", **bad)
    with pytest.raises(UsageError, match="MIN:MAX"):
        parse_autoscale("4")

    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]})
        await send({"type": "http.response.body", "body": b"{}"})
    app.title = "inner"

    async def collect(message):
        sent.append(message)
    tagged = TaggedApp(app, "node/replica")
    asyncio.run(tagged({"type": "http"}, None, collect))
    assert sent[0]["headers"] == [(b"a", b"1"), (b"modelport-replica", b"node/replica")]
    assert sent[1] == {"type": "http.response.body", "body": b"{}"}
    sent.clear()
    asyncio.run(tagged({"type": "lifespan"}, None, collect))
    assert sent[0]["headers"] == [(b"a", b"1")]  # not HTTP: untouched
    assert tagged.title == "inner"


@on_cluster
def test_two_replicas_on_two_nodes_answer_as_the_bundle(cluster, bundle):
    import modelport

    serve = cluster.popen([sys.executable, "-m", "modelport.cli", "serve", str(bundle),
                           "--ray", ADDRESS, "--replicas", "2", "--max-replicas-per-node", "1",
                           "--port", str(PORT), "--max-batch", "2",
                           # Ray's proxy (on the head) prefers its own node's replica and sends
                           # a request elsewhere only when that one holds this many already
                           "--max-ongoing-requests", "2"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _wait_line(serve, "serving on Ray", timeout=240)
        assert f"http://127.0.0.1:{PORT}" in line and "2 replica(s)" in line
        feeds = [[1, 2, 3], [4, 5], [6, 7, 1, 2, 3, 4], [9]]  # texts of different lengths
        done = cluster.run([sys.executable, "-c", CLIENT, json.dumps(feeds)], timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        answers = json.loads(done.stdout)
        serve.send_signal(signal.SIGTERM)  # deletes the application, then exits 0
        _, err = serve.communicate(timeout=120)
        assert serve.returncode == 0, err[-3000:]
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert all(a["status"] == 200 for a in answers), [a for a in answers if a["status"] != 200]
    replicas = {a["replica"] for a in answers}
    assert len(replicas) == 2, replicas  # both replicas answered ...
    assert len({r.split("/")[0] for r in replicas}) == 2  # ... one on each node
    with modelport.load(bundle) as session:
        for a in answers:
            ids = np.array([feeds[a["i"] % len(feeds)]], dtype=np.int64)
            want = session.infer({"ids": ids})["embedding"]
            (out,) = a["outputs"]
            assert out["name"] == "embedding" and out["shape"] == list(want.shape)
            np.testing.assert_allclose(np.array(out["data"]).reshape(want.shape), want,
                                       rtol=1e-5, atol=1e-6)
