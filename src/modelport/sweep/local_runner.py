"""The sweep on this machine alone (no ``--ray``): same plan, tasks, rows and report, no Ray."""

from __future__ import annotations

import logging

from modelport.sweep import device_tasks, search_steps, steps
from modelport.sweep.build_task import run_build
from modelport.sweep.cache import BuildCache
from modelport.sweep.outcomes import BenchOutcome, BuildOutcome
from modelport.sweep.plan import BuildJob, SweepSpec, cpu_kind, plan_builds
from modelport.sweep.progress import Progress
from modelport.sweep.state import DeviceInfo, SweepResults

log = logging.getLogger("modelport")


def run_local(spec: SweepSpec, *, device: str, cache: BuildCache, progress: Progress
              ) -> tuple[list[DeviceInfo], list[BuildJob], SweepResults]:
    probe = device_tasks.probe(list(spec.targets))
    info = DeviceInfo(device, probe, cpu_kind(probe["fingerprint"]))
    progress.done("probe", device, "ok", cpu_kind=info.cpu_kind)
    jobs = plan_builds(spec, [info.cpu_kind])
    results = SweepResults()
    for job in jobs:
        outcome = cache.get(job.key)
        if outcome is None:
            outcome = _build(job, info.cpu_kind)
            if search_steps.wants_search(outcome):  # --optimize: the candidates timed here
                _search(outcome, info, job, progress, spec)
            cache.put(outcome)
        progress.done("build", job.label, "cached" if outcome.cached else
                      ("ok" if outcome.error is None else f"failed: {outcome.error}"),
                      bundles=len(outcome.bundles), key=job.key)
        to_time, settled = steps.bench_plan(info, job, outcome)
        for target, row in settled.items():
            results.put(device, job.key, target, row)
        if steps.wants_reference(info, job, outcome):
            from modelport.sweep.reference_task import TARGET, bench_reference

            progress.add(1)
            model, blob = steps.reference_model(job, outcome), steps.first_blob(outcome)
            _time(results, progress, device, job, outcome, TARGET, cache,
                  lambda model=model, blob=blob: bench_reference(device, model, blob,
                                                                 spec.settings))
        progress.add(len(to_time))
        for target in to_time:
            blob = outcome.bundles[target]
            _time(results, progress, device, job, outcome, target, cache,
                  lambda blob=blob: device_tasks.bench_blob(device, blob, spec.settings))
    return [info], jobs, results


def _search(outcome: BuildOutcome, info: DeviceInfo, job: BuildJob, progress: Progress,
            spec: SweepSpec) -> None:
    from modelport.sweep.search_task import search_blobs

    progress.add(1)
    got, failure = None, None
    try:
        got = search_blobs(info.name, *search_steps.search_args(outcome),
                           threads=spec.settings.get("threads"))
    except Exception as exc:  # noqa: BLE001 - the default recipes ship, the rows say why
        failure = f"{type(exc).__name__}: {exc}"
    lines = search_steps.apply_search(outcome, got, info.name, failure)
    progress.done("search", job.label, "; ".join(lines), device=info.name)


def _build(job: BuildJob, kind: str) -> BuildOutcome:
    try:
        return run_build(job, cpu_kind=kind)
    except Exception as exc:  # noqa: BLE001 - a model that does not load is a row
        log.warning("build of %s failed: %s", job.label, exc)
        return BuildOutcome(job.key, [], error=f"{type(exc).__name__}: {exc}")


def _time(results: SweepResults, progress: Progress, device: str, job: BuildJob,
          outcome: BuildOutcome, target: str, cache: BuildCache, bench) -> None:
    try:
        got: BenchOutcome = bench()
    except Exception as exc:  # noqa: BLE001 - one broken bundle must not hide the rest
        row = steps.failed_row(target, f"{type(exc).__name__}: {exc}")
    else:
        results.model = results.model or (got.model or {})
        bundle = cache.archive_path(job.key, target)
        row = steps.device_row(outcome, target, got.row, str(bundle) if bundle else None)
    results.put(device, job.key, target, row)
    progress.done("bench", f"{target} [{job.label}]", row["status"],
                  p50_ms=_ms(row.get("p50_ms")), reason=row.get("reason"))


def _ms(value: float | None) -> str | None:
    return None if value is None else f"{value:.3f}"
