"""Fidelity of any session against the reference outputs, and the accuracy budget it must keep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelport.errors import AccuracyBudgetExceeded


@dataclass(frozen=True)
class Budget:
    """Defaults: embeddings keep mean cosine >= 0.99; classifiers lose <= 1 accuracy point."""

    min_cosine: float = 0.99
    max_accuracy_drop: float = 0.01  # a fraction: 0.01 = one point

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def run_session(session, data, *, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Outputs of ``session`` over a CalibrationSet, concatenated in sample order."""
    chunks: dict[str, list[np.ndarray]] = {}
    for feeds in data.batches(batch_size):
        for name, value in session.infer(feeds).items():
            chunks.setdefault(name, []).append(np.asarray(value))
    return {k: np.concatenate(v, axis=0) for k, v in chunks.items()}


def fidelity(
    outputs: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    *,
    task: str,
    labels: np.ndarray | None = None,
) -> dict[str, float]:
    """Cosine (mean/min over samples), max abs error; top-1 agreement and accuracy for classifiers."""
    cos_mean, cos_min, max_abs = [], [], []
    for name, ref in reference.items():
        got = np.asarray(outputs[name], dtype=np.float64).reshape(len(ref), -1)
        ref64 = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
        norms = np.linalg.norm(got, axis=1) * np.linalg.norm(ref64, axis=1)
        cos = np.sum(got * ref64, axis=1) / np.maximum(norms, 1e-12)
        cos_mean.append(cos.mean())
        cos_min.append(cos.min())
        max_abs.append(np.abs(got - ref64).max(initial=0.0))
    metrics = {
        "cosine_mean": float(min(cos_mean)),
        "cosine_min": float(min(cos_min)),
        "max_abs_err": float(max(max_abs)),
        "samples": len(next(iter(reference.values()))),
    }
    if task == "classification":
        name = next(iter(reference))
        got_top1 = np.asarray(outputs[name]).argmax(-1)
        ref_top1 = np.asarray(reference[name]).argmax(-1)
        metrics["top1_agreement"] = float((got_top1 == ref_top1).mean())
        if labels is not None:
            metrics["accuracy"] = float((got_top1 == labels).mean())
            metrics["reference_accuracy"] = float((ref_top1 == labels).mean())
            metrics["accuracy_drop"] = metrics["reference_accuracy"] - metrics["accuracy"]
    return metrics


def budget_misses(metrics: Mapping[str, Any], budget: Budget) -> list[str]:
    """The reasons a result misses its budget (empty when it passes)."""
    misses = []
    if "accuracy_drop" in metrics:
        if metrics["accuracy_drop"] > budget.max_accuracy_drop + 1e-12:
            misses.append(
                f"accuracy {metrics['accuracy']:.4f} vs reference {metrics['reference_accuracy']:.4f} "
                f"(drop {100 * metrics['accuracy_drop']:.2f} points > "
                f"{100 * budget.max_accuracy_drop:.2f})"
            )
    elif metrics["cosine_mean"] < budget.min_cosine:
        misses.append(
            f"mean cosine {metrics['cosine_mean']:.4f} < {budget.min_cosine} "
            f"(min {metrics['cosine_min']:.4f})"
        )
    return misses


def check_budget(target: str, metrics: Mapping[str, Any], budget: Budget) -> None:
    misses = budget_misses(metrics, budget)
    if misses:
        raise AccuracyBudgetExceeded(
            f"{target} misses its accuracy budget: {'; '.join(misses)}; try another INT8 "
            "setting (--int8-mode / --calib-method), or keep it with --allow-accuracy-drop"
        )
