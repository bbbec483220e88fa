"""`modelport bench BUNDLE --serve URL`: load on a running Open Inference Protocol server.

For each concurrency level N, N clients (threads, each with one keep-alive HTTP connection:
the standard library, so a runtime-only install can run it) send ``POST /v2/models/NAME/infer``
back to back for ``duration`` seconds, with the bundle's stored sample inputs as the feeds.
Latency is each request's round trip (``perf_counter_ns``); throughput is completed requests
over the timed window. Where the server publishes Prometheus ``/metrics`` with a batch-size
histogram, the mean batch its runtime calls took in each window is read from it.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelport.errors import UsageError

#: numpy dtype name -> the protocol's datatype
V2_DATATYPES = {"bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
                "uint64": "UINT64", "int8": "INT8", "int16": "INT16", "int32": "INT32",
                "int64": "INT64", "float16": "FP16", "float32": "FP32", "float64": "FP64"}


@dataclass(frozen=True)
class LoadSettings:
    concurrency: tuple[int, ...] = (1, 8, 32)
    duration: float = 10.0  # timed seconds per level
    warmup: int = 5  # untimed requests per client before each level
    batch: int = 1  # rows per request
    binary: bool = False  # Triton's binary tensor extension instead of JSON tensors
    timeout: float = 60.0  # seconds one request may take


class Endpoint:
    """``http://HOST:PORT[/PREFIX]``: one connection per client thread."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise UsageError(f"--serve takes the server's http://HOST:PORT address, got '{url}'")
        self.url = f"http://{parts.netloc}{parts.path.rstrip('/')}"
        self.host, self.port, self.prefix = parts.hostname, parts.port or 80, parts.path.rstrip("/")
        self.timeout = timeout

    def connect(self) -> http.client.HTTPConnection:
        return _NoDelayConnection(self.host, self.port, timeout=self.timeout)

    def get(self, path: str) -> tuple[int, bytes]:
        conn = self.connect()
        try:
            conn.request("GET", self.prefix + path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError as exc:
            raise UsageError(f"no Open Inference Protocol server answers at {self.url} "
                             f"({exc.strerror or exc}): start one with `modelport serve BUNDLE`"
                             ) from None
        finally:
            conn.close()


class _NoDelayConnection(http.client.HTTPConnection):
    """Small requests leave at once (Nagle's algorithm would hold one waiting for an ACK the
    server delays: ~40 ms a round trip)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def trim_text(feed: dict[str, np.ndarray], specs: Sequence[Any]) -> dict[str, np.ndarray]:
    """A text feed cut to its longest row's own length (the stored samples are padded to the
    bench length; a client sends its text's tokens): every input whose second axis is dynamic
    and as long as ``attention_mask``'s is cut where the mask's last 1 is."""
    mask = feed.get("attention_mask")
    dynamic = {s.name for s in specs if len(s.shape) > 1 and isinstance(s.shape[1], str)}
    if mask is None or mask.ndim != 2 or "attention_mask" not in dynamic:
        return feed
    cols = np.flatnonzero(mask.any(axis=0))
    length = int(cols[-1]) + 1 if len(cols) else 1
    return {name: (a[:, :length] if name in dynamic and a.ndim >= 2
                   and a.shape[1] == mask.shape[1] else a) for name, a in feed.items()}


def request_bodies(pool: dict[str, np.ndarray], batch: int, *, binary: bool,
                   specs: Sequence[Any] = (), count: int = 16
                   ) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` distinct request bodies of ``batch`` rows each, cycled from the pool; text
    rows at their own length (``trim_text``), so requests differ in length as real ones do."""
    from modelport.bench.harness import make_feeds

    bodies = []
    for feed in make_feeds(pool, batch, count):
        feed = trim_text(feed, specs)
        inputs, tails = [], []
        for name, array in feed.items():
            spec: dict[str, Any] = {"name": name, "shape": list(array.shape),
                                    "datatype": V2_DATATYPES[array.dtype.name]}
            if binary:
                raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
                spec["parameters"] = {"binary_data_size": len(raw)}
                tails.append(raw)
            else:
                spec["data"] = array.reshape(-1).tolist()
            inputs.append(spec)
        head = json.dumps({"inputs": inputs}).encode()
        headers = {"Content-Type": "application/json"}
        if binary:
            headers = {"Content-Type": "application/octet-stream",
                       "Inference-Header-Content-Length": str(len(head))}
        bodies.append((head + b"".join(tails), headers))
    return bodies


def run_level(endpoint: Endpoint, path: str, bodies: list[tuple[bytes, dict[str, str]]],
              clients: int, settings: LoadSettings) -> dict[str, Any]:
    """``clients`` threads sending back to back; the timed window starts once every client
    has done its warm-up requests, and ends ``duration`` seconds later."""
    window: dict[str, int] = {}

    def open_window() -> None:  # run once, after every client is warm, before any goes on
        window["begin"] = time.perf_counter_ns()
        window["end"] = window["begin"] + int(settings.duration * 1e9)

    ready = threading.Barrier(clients + 1, action=open_window)
    results: list[list[tuple[int, int, bool]]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def client(index: int) -> None:
        conn = endpoint.connect()
        k = index
        try:
            for _ in range(settings.warmup):
                _send(conn, path, bodies[k % len(bodies)], errors)
                k += 1
            ready.wait()
            while (start := time.perf_counter_ns()) < window["end"]:
                ok = _send(conn, path, bodies[k % len(bodies)], errors)
                results[index].append((start, time.perf_counter_ns() - start, ok))
                k += 1
        except threading.BrokenBarrierError:
            pass
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    warm_deadline = settings.warmup * settings.timeout + 30
    try:
        ready.wait(timeout=warm_deadline)
    except threading.BrokenBarrierError:
        raise UsageError(f"the server did not answer {clients} clients' warm-up requests within "
                         f"{warm_deadline:.0f} s") from None
    begin = window["begin"]
    for t in threads:
        t.join(settings.duration + settings.timeout + 10)
    elapsed = (time.perf_counter_ns() - begin) / 1e9
    done = [r for rs in results for r in rs]
    lat = np.array([d for _, d, ok in done if ok], dtype=np.float64) / 1e6
    row: dict[str, Any] = {"concurrency": clients, "requests": len(done),
                           "errors": sum(1 for *_, ok in done if not ok),
                           "seconds": elapsed}
    if len(lat):
        row.update(p50_ms=float(np.percentile(lat, 50)), p90_ms=float(np.percentile(lat, 90)),
                   p99_ms=float(np.percentile(lat, 99)), mean_ms=float(lat.mean()))
    row["throughput"] = len(lat) / elapsed if elapsed > 0 else None  # requests/s answered ok
    row["rows_per_s"] = row["throughput"] * settings.batch if row["throughput"] else None
    if errors:
        row["first_error"] = errors[0]
    return row


#: what a kept-alive connection the server has closed meanwhile (its idle timeout: a client
#: waiting for the others' warm-up) raises before any answer; the request never reached it
_STALE = (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected)


def _send(conn: http.client.HTTPConnection, path: str, body: tuple[bytes, dict[str, str]],
          errors: list[str]) -> bool:
    for attempt in (0, 1):
        try:
            conn.request("POST", path, body=body[0], headers=body[1])
            resp = conn.getresponse()
            data = resp.read()
            break
        except _STALE as exc:
            conn.close()  # the next request opens a new connection
            if attempt:
                errors.append(f"{type(exc).__name__}: {exc}")
                return False
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            errors.append(f"{type(exc).__name__}: {exc}")
            return False
    if resp.status != 200:
        errors.append(f"HTTP {resp.status}: {data[:300].decode(errors='replace')}")
        return False
    return True


# -- the server's own view: mean batch from its Prometheus batch-size histogram ----------------
def batch_totals(endpoint: Endpoint, model: str) -> tuple[float, float] | None:
    """(sum, count) of the server's ``modelport_batch_size`` histogram for ``model`` (rows per
    runtime call, `modelport serve`'s /metrics), or None where the server has no /metrics."""
    try:
        status, text = endpoint.get("/metrics")
    except UsageError:
        return None
    if status != 200:
        return None
    totals: dict[str, float] = {}
    for line in text.decode(errors="replace").splitlines():
        match = _SAMPLE.match(line)
        if match and match["labels"] and f'model="{model}"' in match["labels"]:
            totals[match["part"]] = float(match["value"])
    # a histogram has no sample for a model before its first batch: (0, 0) until then
    return totals.get("sum", 0.0), totals.get("count", 0.0)


_SAMPLE = re.compile(r"^modelport_batch_size_(?P<part>sum|count)\{(?P<labels>[^}]*)\}\s+"
                     r"(?P<value>\S+)")


def mean_batch(before: tuple[float, float] | None, after: tuple[float, float] | None
               ) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


# -- the whole run -------------------------------------------------------------------------------
def load_test(bundle_path: str, url: str, settings: LoadSettings, *, model: str | None = None,
              label: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Every concurrency level against the model ``model`` (default: the bundle's served name)
    at ``url``; returns the report (rows per level, settings, machine)."""
    from modelport.bench.fingerprint import fingerprint
    from modelport.bundle import open_bundle
    from modelport.serve.model import default_name
    from modelport.shapes import fit_arrays

    if not settings.concurrency or min(settings.concurrency) < 1:
        raise UsageError("--concurrency takes positive client counts like 1,8,32")
    if settings.duration <= 0 or settings.batch < 1:
        raise UsageError("--duration must be positive and --batch at least 1")
    bundle = open_bundle(bundle_path)
    name = model or default_name(bundle)  # what `modelport serve` calls it
    endpoint = Endpoint(url, settings.timeout)
    status, body = endpoint.get(f"/v2/models/{urllib.parse.quote(name, safe='')}")
    if status != 200:
        listed = _listed_models(endpoint)
        raise UsageError(f"the server at {endpoint.url} does not serve a model '{name}' (HTTP "
                         f"{status}){'; it serves ' + ', '.join(listed) if listed else ''}: "
                         "pass --model NAME")
    pool, _ = bundle.samples()
    if not pool:
        raise UsageError(f"{bundle.path} stores no sample inputs to send")
    pool = fit_arrays(pool, bundle.inputs)
    bodies = request_bodies(pool, settings.batch, binary=settings.binary, specs=bundle.inputs)
    path = f"{endpoint.prefix}/v2/models/{urllib.parse.quote(name, safe='')}/infer"
    rows = []
    for clients in settings.concurrency:
        if progress:
            print(f"concurrency {clients}: {settings.duration:g} s ...", flush=True)
        before = batch_totals(endpoint, name)
        row = run_level(endpoint, path, bodies, clients, settings)
        row["server_mean_batch"] = mean_batch(before, batch_totals(endpoint, name))
        rows.append(row)
    return {"kind": "serve-load", "url": endpoint.url, "model": name,
            "bundle": str(bundle.path), "target": bundle.manifest["target"],
            "label": label, "settings": asdict(settings),
            "server_model": json.loads(body or b"{}"), "machine": fingerprint(), "rows": rows}


def _listed_models(endpoint: Endpoint) -> list[str]:
    try:
        status, body = endpoint.get("/v2/models")
        data = json.loads(body) if status == 200 else {}
    except (UsageError, ValueError):
        return []
    models = data.get("models", data) if isinstance(data, dict) else data
    return [str(m.get("name", m)) if isinstance(m, dict) else str(m) for m in models or []]


def text_table(report: dict[str, Any]) -> str:
    from modelport.bench.table import fmt_num, render

    columns = [("server_max_batch", "max batch", str)] if any(
        "server_max_batch" in r for r in report["rows"]) else []
    columns += [("concurrency", "clients", str), ("requests", "requests", str),
               ("errors", "errors", str), ("p50_ms", "p50 ms", fmt_num(2)),
               ("p90_ms", "p90 ms", fmt_num(2)), ("p99_ms", "p99 ms", fmt_num(2)),
               ("throughput", "req/s", fmt_num(1)), ("rows_per_s", "rows/s", fmt_num(1)),
               ("server_mean_batch", "server batch", fmt_num(2))]
    s = report["settings"]
    head = (f"{report['model']} at {report['url']} ({report['target']}): batch {s['batch']} per "
            f"request, {'binary' if s['binary'] else 'JSON'} tensors, {s['duration']:g} s per "
            "level")
    lines = [head, render(report["rows"], columns)]
    lines += [f"  {r['concurrency']} clients, first error: {r['first_error']}"
              for r in report["rows"] if r.get("first_error")]
    return "\n".join(lines)


def parse_concurrency(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--concurrency takes client counts like 1,8,32, got '{text}'") from None
    if not values or min(values) < 1:
        raise UsageError(f"--concurrency takes positive client counts like 1,8,32, got '{text}'")
    return values


__all__: Sequence[str] = ("LoadSettings", "load_test", "parse_concurrency", "text_table",
                          "trim_text")
