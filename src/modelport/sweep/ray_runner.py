"""The sweep on a Ray cluster: probe every device, build once per CPU kind, time everywhere.

Builds run on the driver's node (or on nodes offering ``modelport-build``) and are retried at
most twice when their node is lost. Each bench asks for its device's resource, a hard pin to
that device's node and all of the node's CPUs, so it runs alone there and never moves to
another node: when a device's node dies its rows say ``failed: node lost`` and the rest of
the sweep goes on. Ctrl-C cancels every task still running before the interrupt propagates.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from modelport.errors import UsageError
from modelport.sweep import device_tasks, ray_cluster, reference_task, search_steps, steps
from modelport.sweep.build_task import run_build
from modelport.sweep.cache import BuildCache
from modelport.sweep.outcomes import BuildOutcome
from modelport.sweep.plan import BuildJob, SweepSpec, cpu_kind, plan_builds
from modelport.sweep.progress import Progress
from modelport.sweep.state import DeviceInfo, SweepResults

log = logging.getLogger("modelport")

PROBE_TIMEOUT_S = 180  # a fresh node starts a worker and imports its runtimes
BUILD_RETRIES = 2  # on node loss only; an exception in the build is a row, not a retry


def run_on_ray(spec: SweepSpec, *, address: str, devices: list[str], cache: BuildCache,
               progress: Progress) -> tuple[list[DeviceInfo], list[BuildJob], SweepResults]:
    ray = ray_cluster.import_ray()
    ray_cluster.connect(ray, address)
    try:
        nodes = ray_cluster.check_devices(ray, devices, address)
        return _RaySweep(ray, spec, cache, progress).run(nodes)
    finally:
        ray.shutdown()


class _RaySweep:
    def __init__(self, ray: Any, spec: SweepSpec, cache: BuildCache, progress: Progress) -> None:
        self.ray = ray
        self.spec = spec
        self.cache = cache
        self.progress = progress
        self.results = SweepResults()
        self.devices: dict[str, DeviceInfo] = {}
        self.pending: dict[Any, tuple[Any, ...]] = {}  # ObjectRef -> what it is
        self.blobs: dict[tuple[str, str], Any] = {}  # (build key, target) -> ObjectRef
        self.probe_fn = ray.remote(device_tasks.probe)
        self.build_fn = ray.remote(run_build)
        self.bench_fn = ray.remote(device_tasks.bench_blob)
        self.search_fn = None  # --optimize: made when a build has candidates
        # torch gets a worker of its own: a reused worker would carry torch's memory into the
        # peak RSS of every bundle timed after it
        self.reference_fn = ray.remote(max_calls=1)(reference_task.bench_reference)

    def run(self, nodes: dict[str, dict[str, Any]]
            ) -> tuple[list[DeviceInfo], list[BuildJob], SweepResults]:
        try:
            self._probe(nodes)
            live = [d for d in self.devices.values() if not d.lost]
            jobs = plan_builds(self.spec, [d.cpu_kind for d in live])
            self.progress.add(len(jobs))
            for job in jobs:
                cached = self.cache.get(job.key)
                if cached is not None:
                    self._built(job, cached)
                else:
                    self.pending[self._submit_build(job)] = ("build", job)
            self._drain()
        except KeyboardInterrupt:
            self._cancel_all()
            raise
        return list(self.devices.values()), jobs, self.results

    # -- probes -------------------------------------------------------------------------------
    def _probe(self, nodes: dict[str, dict[str, Any]]) -> None:
        from modelport._version import SCHEMA_VERSION, __version__

        refs = {name: self.probe_fn.options(
                    num_cpus=0, scheduling_strategy=ray_cluster.pinned(self.ray, node["NodeID"])
                ).remote(list(self.spec.targets)) for name, node in nodes.items()}
        for name, ref in refs.items():
            self.pending[ref] = ("probe", name)  # so that Ctrl-C cancels them too
        ready: list[Any] = []
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while len(ready) < len(refs) and time.monotonic() < deadline:  # 1 s steps: Ctrl-C
            ready, _ = self.ray.wait(list(refs.values()), num_returns=len(refs), timeout=1.0)
        for name, ref in refs.items():
            node = nodes[name]
            self.pending.pop(ref, None)
            info = DeviceInfo(name, {}, "?", ray_cluster.node_cpus(node), node["NodeID"])
            self.devices[name] = info
            try:
                if ref not in ready:
                    raise TimeoutError(f"no answer in {PROBE_TIMEOUT_S} s")
                probe = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - node gone or silent: its rows say so
                info.lost = True
                self.progress.done("probe", name, f"failed: {_reason(self.ray, exc)}",
                                   device=name)
                continue
            if (probe["modelport"], probe["schema_version"]) != (__version__, SCHEMA_VERSION):
                raise UsageError(
                    f"device '{name}' runs modelport {probe['modelport']} (bundle schema "
                    f"{probe['schema_version']}), this driver modelport {__version__} (bundle "
                    f"schema {SCHEMA_VERSION}): install the same modelport version on both")
            info.probe, info.cpu_kind = probe, cpu_kind(probe["fingerprint"])
            self.progress.done("probe", name, "ok", device=name, node=info.node_id,
                               cpu_kind=info.cpu_kind, extras=",".join(probe["extras"]))

    # -- builds -------------------------------------------------------------------------------
    def _submit_build(self, job: BuildJob) -> Any:
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": BUILD_RETRIES,
                                   "retry_exceptions": False}
        if ray_cluster.has_build_nodes(self.ray):
            options["resources"] = {ray_cluster.BUILD_RESOURCE: 0.01}
        else:  # the driver's node has the build side installed: it is running this
            driver = self.ray.get_runtime_context().get_node_id()
            options["scheduling_strategy"] = ray_cluster.pinned(self.ray, driver)
        return self.build_fn.options(**options).remote(job, cpu_kind=job.cpu_kind)

    def _build_done(self, ref: Any, job: BuildJob) -> None:
        try:
            outcome: BuildOutcome = self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - the build's error or node loss: a row
            outcome = BuildOutcome(job.key, [], error=_reason(self.ray, exc, build=True))
        else:
            if not search_steps.wants_search(outcome):  # else cached once the winners are in
                self.cache.put(outcome)
        self._built(job, outcome)

    def _built(self, job: BuildJob, outcome: BuildOutcome) -> None:
        status = "cached" if outcome.cached else (
            "ok" if outcome.error is None else f"failed: {outcome.error}")
        self.progress.done("build", job.label, status, node=outcome.node_id, key=job.key,
                           cpu_kind=job.cpu_kind, bundles=len(outcome.bundles))
        if search_steps.wants_search(outcome) and self._submit_search(job, outcome):
            return  # the benches follow the search
        for device in self.devices.values():
            if device.cpu_kind == job.cpu_kind:
                self._submit_benches(device, job, outcome)

    # -- --optimize: the candidates timed on one device of the build's kind --------------------
    def _submit_search(self, job: BuildJob, outcome: BuildOutcome) -> bool:
        from modelport.sweep.search_task import search_blobs

        device = search_steps.searcher(list(self.devices.values()), job.cpu_kind)
        if device is None:
            search_steps.apply_search(outcome, None, "any device", "no live device of its kind")
            return False
        self.search_fn = self.search_fn or self.ray.remote(search_blobs)
        self.progress.add(1)
        ref = self.search_fn.options(**self._device_options(device)).remote(
            device.name, *search_steps.search_args(outcome),
            threads=self.spec.settings.get("threads"))
        self.pending[ref] = ("search", device.name, job, outcome)
        return True

    def _search_done(self, ref: Any, device: str, job: BuildJob, outcome: BuildOutcome,
                     failure: str | None = None) -> None:
        got = None
        if failure is None:
            try:
                got = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the default recipes ship, rows say why
                failure = _reason(self.ray, exc)
        lines = search_steps.apply_search(outcome, got, device, failure)
        if failure is None:
            self.cache.put(outcome)
        self.progress.done("search", job.label, "; ".join(lines), device=device,
                           node=(got or {}).get("node_id"))
        for info in self.devices.values():
            if info.cpu_kind == job.cpu_kind:
                self._submit_benches(info, job, outcome)

    # -- benches ------------------------------------------------------------------------------
    def _submit_benches(self, device: DeviceInfo, job: BuildJob, outcome: BuildOutcome) -> None:
        to_time, settled = steps.bench_plan(device, job, outcome)
        for target, row in settled.items():
            self.results.put(device.name, job.key, target, row)
        work: list[tuple[str, Any, tuple[Any, ...]]] = []
        if steps.wants_reference(device, job, outcome):
            blob = steps.first_blob(outcome)
            work.append((reference_task.TARGET, self.reference_fn,
                         (device.name, steps.reference_model(job, outcome),
                          self._blob_ref(job, blob.target, outcome), self.spec.settings)))
        for target in to_time:
            work.append((target, self.bench_fn, (device.name, self._blob_ref(job, target, outcome),
                                                 self.spec.settings)))
        self.progress.add(len(work))
        options = self._device_options(device)
        for target, fn, args in work:
            if device.lost:
                self._row(device.name, job, outcome, target, None, steps.NODE_LOST)
                continue
            self.pending[fn.options(**options).remote(*args)] = ("bench", device.name, job,
                                                                  outcome, target)

    def _device_options(self, device: DeviceInfo) -> dict[str, Any]:
        """Alone on the device's node: its resource, all its CPUs, pinned there."""
        return {"num_cpus": device.cpus, "resources": {f"device:{device.name}": 1},
                "max_retries": 0,
                "scheduling_strategy": ray_cluster.pinned(self.ray, device.node_id)}

    def _blob_ref(self, job: BuildJob, target: str, outcome: BuildOutcome) -> Any:
        """One copy of each bundle in the object store, however many devices time it."""
        key = (job.key, target)
        if key not in self.blobs:
            self.blobs[key] = self.ray.put(outcome.bundles[target])
        return self.blobs[key]

    def _bench_done(self, ref: Any, device: str, job: BuildJob, outcome: BuildOutcome,
                    target: str) -> None:
        try:
            got = self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - the bundle's error or node loss: a row
            if isinstance(exc, self.ray.exceptions.RayTaskError):
                self._row(device, job, outcome, target, None, _reason(self.ray, exc))
                return
            # the task died with its node (a bench is never retried elsewhere) or its worker
            info = self.devices[device]
            gone = isinstance(exc, self.ray.exceptions.NodeDiedError) or \
                not _node_alive(self.ray, info.node_id)
            self._row(device, job, outcome, target, None,
                      steps.NODE_LOST if gone else f"worker died ({type(exc).__name__})")
            if gone:
                self._lose(info)
            return
        self.results.model = self.results.model or (got.model or {})
        self._row(device, job, outcome, target, got, None)

    def _row(self, device: str, job: BuildJob, outcome: BuildOutcome, target: str,
             got: Any, failure: str | None) -> None:
        if got is None:
            row = steps.failed_row(target, failure or "failed")
        else:
            bundle = self.cache.archive_path(job.key, target)
            row = steps.device_row(outcome, target, got.row, str(bundle) if bundle else None)
        self.results.put(device, job.key, target, row, got.node_id if got else None)
        p50 = row.get("p50_ms")
        self.progress.done("bench", f"{target} [{job.label}]", row["status"], device=device,
                           node=got.node_id if got else None, reason=row.get("reason"),
                           p50_ms=None if p50 is None else f"{p50:.3f}")

    # -- the loop -----------------------------------------------------------------------------
    def _drain(self) -> None:
        checked = time.monotonic()
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=1.0)
            for ref in ready:
                what = self.pending.pop(ref)
                if what[0] == "build":
                    self._build_done(ref, what[1])
                elif what[0] == "search":
                    self._search_done(ref, *what[1:])
                else:
                    self._bench_done(ref, *what[1:])
            if time.monotonic() - checked >= 1.0:
                self._check_nodes()
                checked = time.monotonic()

    def _check_nodes(self) -> None:
        """A device whose node died: cancel what waits for it, its rows say ``node lost``."""
        alive = {n["NodeID"] for n in ray_cluster.alive_nodes(self.ray)}
        for device in self.devices.values():
            if not device.lost and device.node_id not in alive:
                self._lose(device)

    def _lose(self, device: DeviceInfo) -> None:
        if not device.lost:
            device.lost = True
            log.warning("device '%s' lost its node %s: its rows are marked '%s'", device.name,
                        (device.node_id or "?")[:8], steps.NODE_LOST)
        for ref, what in list(self.pending.items()):
            if what[0] == "search" and what[1] == device.name:
                self.pending.pop(ref)
                _cancel(self.ray, ref)
                self._search_done(ref, *what[1:], failure=steps.NODE_LOST)
            elif what[0] == "bench" and what[1] == device.name:
                self.pending.pop(ref)
                _cancel(self.ray, ref)
                self._row(device.name, what[2], what[3], what[4], None, steps.NODE_LOST)

    def _cancel_all(self) -> None:
        for ref in list(self.pending):
            _cancel(self.ray, ref)
        self.pending.clear()


def _node_alive(ray: Any, node_id: str | None) -> bool:
    return any(n["NodeID"] == node_id for n in ray_cluster.alive_nodes(ray))


def _cancel(ray: Any, ref: Any) -> None:
    try:
        ray.cancel(ref, force=True)
    except Exception as exc:  # noqa: BLE001 - finished already, or its node is gone
        log.debug("cancel: %s", exc)


def _reason(ray: Any, exc: BaseException, *, build: bool = False) -> str:
    """One line: the task's own exception, or what happened to its node."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None) or exc
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1]}"
    if build and isinstance(exc, ray.exceptions.RayError):
        return f"node lost (tried {1 + BUILD_RETRIES} times): {type(exc).__name__}"
    if isinstance(exc, ray.exceptions.RayError):
        return f"{steps.NODE_LOST} ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"
