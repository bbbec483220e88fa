"""Fidelity of any session against the reference outputs, and the accuracy budget it must keep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: what a model's output is (``--output-kind``; a factory may declare it) -> the fidelity kind
#: (PreparedModel.task) it is judged as: logits by their decisions, the others by cosine
OUTPUT_KINDS: dict[str, str] = {"logits": "classification", "embedding": "embedding",
                                "regression": "generic"}


@dataclass(frozen=True)
class Budget:
    """How a target is judged. Classifiers with labels lose <= 1 accuracy point; without labels
    they keep >= 99% top-1 agreement with the reference AND mean cosine >= 0.99; everything
    else keeps mean cosine >= 0.99. ``output_kind`` (logits / embedding / regression) says what
    the model's output is when the resolver cannot know it (None: the model's declaration, else
    a guess from the reference outputs)."""

    min_cosine: float = 0.99
    max_accuracy_drop: float = 0.01  # a fraction: 0.01 = one point
    #: language models: max relative perplexity increase (None: per precision, metrics_lm)
    max_perplexity_increase: float | None = None
    #: classifiers judged without labels: the share of top-1 decisions kept (a fraction)
    min_top1_agreement: float = 0.99
    output_kind: str | None = None

    def __post_init__(self) -> None:
        from modelport.errors import UsageError

        if not 0.0 < float(self.min_top1_agreement) <= 1.0:
            raise UsageError(f"--min-top1-agreement is a fraction in (0, 1] like --min-cosine "
                             f"(0.99 = 99% of decisions kept), got {self.min_top1_agreement}")
        if self.output_kind is not None and self.output_kind not in OUTPUT_KINDS:
            raise UsageError(f"--output-kind takes one of {', '.join(OUTPUT_KINDS)}, got "
                             f"'{self.output_kind}'")

    def to_dict(self) -> dict[str, Any]:
        """The limits (the manifest's ``accuracy.budget``); the output kind is recorded with
        the model (``model.output_kind``)."""
        return {k: v for k, v in asdict(self).items() if k != "output_kind"}


def run_session(session, data, *, batch_size: int = 32,
                static: bool = False) -> dict[str, np.ndarray]:
    """Outputs of ``session`` over a CalibrationSet, concatenated in sample order.
    ``static``: the session takes exactly ``batch_size`` rows (a static-shape artifact): a
    short last batch is filled with copies of its last row, whose outputs are dropped."""
    chunks: dict[str, list[np.ndarray]] = {}
    for feeds in data.batches(batch_size):
        rows = len(next(iter(feeds.values())))
        if static and rows < batch_size:
            feeds = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - rows, axis=0)])
                     for k, v in feeds.items()}
        for name, value in session.infer(feeds).items():
            value = np.asarray(value)
            chunks.setdefault(name, []).append(value[:rows] if static else value)
    return {k: concat_batches(v) for k, v in chunks.items()}


def concat_batches(parts: list[np.ndarray]) -> np.ndarray:
    """Per-batch outputs stacked along axis 0. An output whose other axes follow a batch too
    (zero-shot ``logits_per_image`` [images, texts]: the last batch has fewer texts) is
    zero-padded to the widest batch: the same cells in every session's outputs, since every
    session runs the same batches, so cosines and errors are unchanged."""
    if len({p.shape[1:] for p in parts}) <= 1 or len({p.ndim for p in parts}) != 1:
        return np.concatenate(parts, axis=0)
    wide = np.max([p.shape for p in parts], axis=0)
    return np.concatenate([np.pad(p, [(0, 0)] + [(0, int(w - s)) for w, s in
                                                zip(wide[1:], p.shape[1:], strict=True)])
                           for p in parts], axis=0)


def fidelity(
    outputs: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    *,
    task: str,
    labels: np.ndarray | None = None,
    feeds: Any = None,
    preprocessing: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Cosine (mean/min over samples), max abs error; top-1 agreement and accuracy for
    classifiers; a task's own metric (``modelport.tasks``: exact match of QA spans, ...) when
    ``task`` names one (``feeds``: the evaluation inputs in the outputs' sample order, a dict of
    arrays or a CalibrationSet)."""
    cos_mean, cos_min, max_abs = [], [], []
    for name, ref in reference.items():
        got = np.asarray(outputs[name], dtype=np.float64).reshape(len(ref), -1)
        ref64 = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
        cos = row_cosines(got, ref64)
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
    from modelport.tasks import metric_for

    hook = metric_for(task)
    if hook is not None:
        if feeds is not None and hasattr(feeds, "stacked"):
            feeds = feeds.stacked()
        metrics.update(hook(outputs, reference, feeds, preprocessing or {}))
    return metrics


def row_cosines(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Cosine of each sample's output with the reference's (axis 0 = samples, the rest
    flattened), in float64. Two all-zero rows agree (1.0); a zero row against a non-zero one
    does not (0.0). The one cosine every fidelity check, compare and pass report uses."""
    g = np.asarray(got, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    g = g.reshape(len(g), -1) if g.ndim else g.reshape(1, -1)
    r = r.reshape(len(r), -1) if r.ndim else r.reshape(1, -1)
    norms = np.linalg.norm(g, axis=1) * np.linalg.norm(r, axis=1)
    cos = np.sum(g * r, axis=1) / np.maximum(norms, 1e-30)
    zero = norms == 0
    if zero.any():
        cos[zero] = np.all(g[zero] == r[zero], axis=1).astype(np.float64)
    return cos


def similarity_spearman(student: np.ndarray, teacher: np.ndarray) -> float:
    """Spearman correlation of all pairwise cosine similarities, student vs teacher.

    What an embedding is used for (search, clustering, STS) depends on how it ranks pairs, not
    on matching the teacher's vectors exactly: 1.0 = every pair ordered as the teacher orders it.
    """
    def pair_sims(x: np.ndarray) -> np.ndarray:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sims = x @ x.T
        return sims[np.triu_indices(len(x), k=1)]

    def ranks(v: np.ndarray) -> np.ndarray:
        r = np.empty(len(v))
        r[np.argsort(v, kind="stable")] = np.arange(len(v))
        return r

    rs, rt = ranks(pair_sims(student)), ranks(pair_sims(teacher))
    return float(np.corrcoef(rs, rt)[0, 1])


def judged_by(metrics: Mapping[str, Any] | None) -> str:
    """The metric the budget judges ``metrics`` by (what the manifest and the table name)."""
    if not metrics:
        return "-"
    if "perplexity" in metrics:
        return "perplexity"
    if "accuracy_drop" in metrics:
        return "accuracy drop"
    if "top1_agreement" in metrics:
        return "top-1 agreement + cosine"
    return "cosine"


def budget_misses(metrics: Mapping[str, Any], budget: Budget) -> list[str]:
    """The reasons a result misses its budget (empty when it passes): the accuracy drop when
    labels were known; else mean cosine, and top-1 agreement for classifier outputs (a cosine
    cannot see a changed decision)."""
    misses = []
    if "perplexity" in metrics:  # language models (metrics_lm)
        from modelport.metrics_lm import perplexity_misses

        return perplexity_misses(metrics)
    if "wer" in metrics:  # speech recognition: WER of the transcripts vs the reference's
        if metrics["wer"] > budget.max_accuracy_drop + 1e-12:
            misses.append(f"word error rate vs the reference's transcripts "
                          f"{100 * metrics['wer']:.2f} points > "
                          f"{100 * budget.max_accuracy_drop:.2f}")
        return misses
    if "accuracy_drop" in metrics:
        if metrics["accuracy_drop"] > budget.max_accuracy_drop + 1e-12:
            misses.append(
                f"accuracy {metrics['accuracy']:.4f} vs reference {metrics['reference_accuracy']:.4f} "
                f"(drop {100 * metrics['accuracy_drop']:.2f} points > "
                f"{100 * budget.max_accuracy_drop:.2f})"
            )
        return misses
    if "top1_agreement" in metrics and \
            metrics["top1_agreement"] < budget.min_top1_agreement - 1e-12:
        misses.append(
            f"top-1 agreement {100 * metrics['top1_agreement']:.2f}% < "
            f"{100 * budget.min_top1_agreement:.2f}% (decisions changed)"
        )
    if metrics["cosine_mean"] < budget.min_cosine:
        misses.append(
            f"mean cosine {metrics['cosine_mean']:.4f} < {budget.min_cosine} "
            f"(min {metrics['cosine_min']:.4f})"
        )
    return misses
