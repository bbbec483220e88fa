"""``sweep --optimize`` on a device: the candidates of one build timed here, the winner shipped.

The candidates came as bundles, built and checked against the budget on the build node
(``optimize/prebuild.py``). The choice is ``export --optimize``'s (``optimize/search.py``):
stage 1 times every candidate with the runtime defaults in interleaved rounds
(``bench/interleaved.py``), the fastest by the objective wins; stage 2 loads the winner with
each runtime setting (checked on the bundle's samples against the budget) and keeps one only
when it beats the defaults by the record's margin. Thread counts are this device's (the build
node proposed them for its own cores). The winner's bundle comes back with ``build.search``
(every candidate's figures, the device that timed them) and ``build.runtime_settings``, which
``load`` re-applies. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from modelport.errors import BundleError
from modelport.optimize.candidates import Runtime, thread_choices
from modelport.sweep.outcomes import BundleBlob
from modelport.sweep.payload import sha256

#: stage 1 (recipes) ends at this share of --max-time, the rest is for the runtime settings
RECIPE_SHARE = 0.8
#: the fidelity figures a runtime setting's record keeps (as optimize/search.py's)
FIDELITY_KEYS = ("cosine_mean", "cosine_min", "top1_agreement", "accuracy", "accuracy_drop")


def search_blobs(device: str, candidates: dict[str, list[BundleBlob]],
                 records: dict[str, dict[str, Any]], mains: dict[str, BundleBlob],
                 threads: int | None = None) -> dict[str, Any]:
    """Every searched target of one build: ``{"node_id", "targets": {target: {"blob",
    "record"} or {"error"}}}``; ``mains``: the default bundles (their folder name is kept)."""
    from modelport.sweep.device_tasks import node_id

    out: dict[str, Any] = {}
    for target, blobs in candidates.items():
        try:
            blob, record = search_target(device, blobs, records[target], mains[target], threads)
            out[target] = {"blob": blob, "record": record}
        except Exception as exc:  # noqa: BLE001 - the default recipe ships, the row says why
            out[target] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
    return {"node_id": node_id(), "targets": out}


def search_target(device: str, blobs: list[BundleBlob], record: dict[str, Any],
                  main: BundleBlob, threads: int | None) -> tuple[BundleBlob, dict[str, Any]]:
    from modelport.bundle import open_bundle

    start = time.perf_counter()
    record = json.loads(json.dumps(record))  # ours to fill in
    work = Path(tempfile.mkdtemp(prefix="modelport-sweep-search-"))
    try:
        bundles = {}
        for blob in blobs:
            if sha256(blob.data) != blob.sha256:
                raise BundleError(f"{blob.file_name} arrived on {device} with a different "
                                  "sha256 than it was packed with: refused")
            (work / blob.file_name).write_bytes(blob.data)
            bundle = open_bundle(work / blob.file_name)
            bundles[bundle.manifest["build"]["search_candidate"]] = bundle
        timer = _Timer(record, threads, start)
        by_name = {c["name"]: c for c in record["candidates"]}
        winner = timer.recipes(bundles, by_name)
        runtime, extra = timer.runtimes(bundles[winner], by_name[winner])
        for c in record["candidates"]:  # a peer's recipe built once as modelport's own
            if c.get("same_as") in by_name:
                twin = by_name[c["same_as"]]
                c.update({k: twin.get(k) for k in ("p50_ms", "throughput", "rounds", "batch")})
        record["candidates"] += extra
        record.update(chosen=winner, runtime_settings=runtime.to_dict(), pending=False,
                      timed_on=device, note="", cut_short=record.get("cut_short") or timer.cut,
                      # --max-time bounds the builds and, separately, this timing
                      seconds=round(time.perf_counter() - start, 1))
        blob = _winner_blob(bundles[winner], record, runtime, extra, main, work)
        return blob, record
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _Timer:
    """Both stages' timing and choice, within the record's --max-time."""

    def __init__(self, record: dict[str, Any], threads: int | None, start: float) -> None:
        self.record, self.threads = record, threads
        self.start = start
        self.deadline = start + float(record["max_time_s"])
        self.cut = False

    def recipes(self, bundles: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> str:
        sessions = {}
        for name, bundle in bundles.items():
            try:
                sessions[name] = bundle.session(threads=self.threads)
            except Exception as exc:  # noqa: BLE001 - a candidate that cannot run here
                by_name[name].update(kept=False, why=f"failed to run here: {exc}")
        try:
            self._time(bundles, sessions, by_name, self.start + RECIPE_SHARE *
                       (self.deadline - self.start))
        finally:
            for s in sessions.values():
                s.close()
        timed = [n for n in sessions if self._score(by_name[n]) is not None]
        if not timed:
            raise BundleError("no candidate could be timed here")
        winner = min(timed, key=lambda n: self._score(by_name[n]))
        by_name[winner]["chosen"] = True
        return winner

    def runtimes(self, bundle: Any, winner: dict[str, Any]
                 ) -> tuple[Runtime, list[dict[str, Any]]]:
        """Stage 2 on ``bundle`` (the winner): its defaults and each runtime setting."""
        from modelport.metrics import Budget, budget_misses

        budget = Budget(**((bundle.manifest.get("accuracy") or {}).get("budget") or {}))
        cands: dict[str, tuple[Runtime, dict[str, Any]]] = {}
        sessions = {}
        for rt in [Runtime(), *self.settings_to_try()]:
            name = f"{winner['name']}, " + ("runtime defaults" if rt == Runtime()
                                            else rt.describe())
            rec = {**{k: v for k, v in winner.items() if k not in ("p50_ms", "throughput")},
                   "name": name, "stage": "runtime", "runtime": rt.to_dict(), "chosen": False}
            rec.pop("bundle", None)
            cands[name] = (rt, rec)
            if time.perf_counter() >= self.deadline:
                self.cut = True
                rec.update(kept=False, why="not tried: --max-time reached")
                continue
            try:
                session = bundle.session(threads=rt.threads or self.threads,
                                         runtime_settings=rt.to_dict(), **(
                                             {"inference_precision": rt.inference_precision}
                                             if rt.inference_precision else {}))
            except Exception as exc:  # noqa: BLE001 - a setting the runtime refuses is a row
                rec.update(kept=False, why=f"failed to run: {exc}")
                continue
            metrics = _fidelity(session, bundle)
            if metrics:  # what this setting gives, on the bundle's samples (a hint changes it)
                rec.update(fidelity={k: metrics[k] for k in FIDELITY_KEYS if k in metrics},
                           fidelity_on="bundle samples")
            misses = budget_misses(metrics, budget)
            if misses:
                session.close()
                rec.update(kept=False, why="outside the accuracy budget: " + "; ".join(misses))
                continue
            sessions[name] = session
        records = {n: rec for n, (_, rec) in cands.items()}
        try:
            self._time({n: bundle for n in sessions}, sessions, records, self.deadline)
        finally:
            for s in sessions.values():
                s.close()
        base = next(iter(records))
        best = min((n for n in sessions if self._score(records[n]) is not None),
                   key=lambda n: self._score(records[n]), default=None)
        if best is None:
            best = base
        elif best != base and not self._beats(records[best], records[base]):
            records[best]["why"] = (f"within {100 * self.record['margin']:.0f}% of the "
                                    "defaults: not worth a setting")
            best = base
        records[best]["chosen"] = True
        return cands[best][0], list(records.values())

    def settings_to_try(self) -> list[Runtime]:
        """The build node's proposals, with this device's thread counts."""
        found = [Runtime(**d) for d in self.record.get("runtimes") or ()
                 if d and "threads" not in d]
        return [Runtime(threads=t) for t in thread_choices(self.threads, os.cpu_count() or 1)
                if t] + found

    def _time(self, bundles: dict[str, Any], sessions: dict[str, Any],
              records: dict[str, dict[str, Any]], until: float) -> None:
        from modelport.bench.harness import BenchSettings
        from modelport.bench.interleaved import time_interleaved
        from modelport.shapes import fit_arrays, static_batch

        if not sessions:
            return
        rounds, cap = int(self.record["rounds"]), float(self.record["duration"])
        left = max(until - time.perf_counter(), 0.0)
        # never below a tenth of a second per round: a choice needs figures
        duration = max(min(cap, left / (1.5 * rounds * len(sessions))), min(cap, 0.1))
        settings, pools = {}, {}
        for name, session in sessions.items():
            inputs = bundles[name].inputs
            batch = static_batch(inputs, self.record["batch"])
            settings[name] = BenchSettings(batch_sizes=(batch,), warmup=2, duration=duration,
                                           min_iters=3, streams=getattr(session, "streams", None))
            pools[name] = fit_arrays(bundles[name].samples()[0], inputs)
            records[name]["batch"] = batch
        timed = time_interleaved(sessions, next(iter(pools.values())), settings, rounds=rounds,
                                 pools=pools, deadline=until)
        for name, t in timed.items():
            b = records[name]["batch"]
            records[name].update(p50_ms=t.p50_ms.get(b), throughput=t.throughput.get(b),
                                 rounds=t.rounds)
            precision = getattr(sessions[name], "inference_precision", None)
            if precision is not None:
                records[name]["inference_precision"] = precision

    def _score(self, rec: dict[str, Any]) -> float | None:
        """Lower is better: p50 latency, or seconds per sample for throughput."""
        if self.record["objective"] == "latency":
            return rec.get("p50_ms")
        return 1.0 / rec["throughput"] if rec.get("throughput") else None

    def _beats(self, cand: dict[str, Any], base: dict[str, Any]) -> bool:
        a, b = self._score(cand), self._score(base)
        return a is not None and b is not None and a < b * (1 - float(self.record["margin"]))


def _fidelity(session: Any, bundle: Any) -> dict[str, Any]:
    """The session's outputs on the bundle's samples vs the reference stored at build time."""
    from modelport.bench.device import _run_all
    from modelport.metrics import fidelity
    from modelport.shapes import fit_arrays, static_batch

    pool, refs = bundle.samples()
    if not refs:
        return {}
    got = _run_all(session, fit_arrays(pool, bundle.inputs), static_batch(bundle.inputs, None))
    return fidelity(got, refs, task=bundle.manifest["model"].get("task") or "generic")


def _winner_blob(bundle: Any, record: dict[str, Any], runtime: Runtime,
                 extra: list[dict[str, Any]], main: BundleBlob, work: Path) -> BundleBlob:
    """The winner's bundle, its manifest recording the search, packed under the default
    bundle's name (the files and their checksums are the build node's)."""
    from modelport.bundle.archive import write_archive
    from modelport.io import write_json_atomic

    manifest = dict(bundle.manifest)
    build = {k: v for k, v in (manifest.get("build") or {}).items() if k != "search_candidate"}
    build.update(search=record, runtime_settings=runtime.to_dict())
    if runtime.inference_precision:
        build["inference_precision_hint"] = runtime.inference_precision
        chosen = next((c for c in extra if c.get("chosen")), {})
        if chosen.get("inference_precision"):
            build["inference_precision_effective"] = chosen["inference_precision"]
    manifest["build"] = build
    root = work / "winner" / main.file_name.removesuffix(".tar.gz")
    shutil.copytree(bundle.path, root)
    write_json_atomic(root / "manifest.json", manifest)
    out = write_archive(root, ["manifest.json", *sorted(manifest["files"])],
                        work / "winner.tar.gz")
    data = out.read_bytes()
    return BundleBlob(main.target, main.file_name, sha256(data), data)
