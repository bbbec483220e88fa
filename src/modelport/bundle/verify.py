"""verify: is this bundle intact, and does it still compute what it computed when it was built?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelport.errors import AccuracyBudgetExceeded, ValidationError


def verify_bundle(path: str | Path, *, threads: int | None = None) -> dict[str, Any]:
    """Checksums + schema (open_bundle), then the stored samples vs their reference outputs."""
    from modelport.bundle import open_bundle
    from modelport.metrics import Budget, budget_misses, fidelity

    bundle = open_bundle(path)
    if bundle.manifest.get("graphs"):  # an encoder-decoder: generate again, compare text
        from modelport.bundle.manifest_graphs import verify_graphs

        return verify_graphs(bundle, threads=threads)
    feeds, refs = bundle.samples()
    report: dict[str, Any] = {"bundle": str(bundle.archive or bundle.path),
                              "target": bundle.manifest["target"],
                              "files_checked": len(bundle.manifest["files"])}
    if not feeds:
        report["outputs_checked"] = False
        return report
    with bundle.session(threads=threads) as session:
        from modelport.bench.harness import make_feeds
        from modelport.shapes import static_batch

        batch = static_batch(bundle.inputs, len(next(iter(feeds.values()))))
        rows = len(next(iter(feeds.values())))
        outs: dict[str, list] = {}
        for feed in make_feeds(feeds, batch, -(-rows // batch)):
            for k, v in session.infer(feed).items():
                outs.setdefault(k, []).append(v)
    import numpy as np

    got = {k: np.concatenate(v)[:rows] for k, v in outs.items()}
    task = bundle.manifest["model"].get("task", "generic")
    metrics = fidelity(got, refs, task="generic" if task == "classification" else task)
    if task == "classification":
        ref_top1 = next(iter(refs.values())).argmax(-1)
        metrics["top1_agreement"] = float((next(iter(got.values())).argmax(-1) == ref_top1).mean())
    recorded = (bundle.manifest.get("accuracy") or {}).get("metrics") or {}
    budget = Budget(**(bundle.manifest.get("accuracy") or {}).get("budget", {}))
    report.update(outputs_checked=True, metrics=metrics, recorded=recorded)
    # the few stored samples check the outputs, not the decisions: one changed decision among
    # them says little (the build judged top-1 agreement on the whole evaluation split)
    misses = budget_misses({k: v for k, v in metrics.items()
                            if k not in ("accuracy_drop", "top1_agreement")}, budget)
    allowed = (bundle.manifest.get("accuracy") or {}).get("allowed_drop", False)
    if misses and not allowed:
        raise ValidationError(
            f"{bundle.path}: outputs on this machine differ from the stored reference: "
            f"{'; '.join(misses)}"
        )
    accuracy = bundle.manifest.get("accuracy") or {}
    if accuracy.get("passed") is False:  # built below budget, kept with --allow-accuracy-drop
        built = budget_misses(accuracy.get("metrics") or {}, budget) if accuracy.get("metrics") \
            else ["no fidelity was measured"]
        raise AccuracyBudgetExceeded(
            f"{bundle.path}: intact, but built below its accuracy budget ({'; '.join(built)}; "
            "kept with --allow-accuracy-drop): not a bundle to ship")
    return report
