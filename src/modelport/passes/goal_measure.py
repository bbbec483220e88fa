"""What the compression search measures: speed and the task metric, the same way for every
candidate (and for the teacher it is compared with).

Speed is latency at batch 1 (the fastest call, see TeacherClock.against) against the torch
FP32 teacher timed in the same process, in alternating rounds, on the same rows, at the model's benchmark shape (text padded to its bench length). A candidate is
timed as a bundle of ``--target`` (built by the real export pipeline), or, for a QAT student,
as its own Q/DQ graph on that backend's FP32 target. The metric is computed on the validation
slice of the calibration data against the teacher's outputs: the label-free similarity proxy for
embedders, accuracy (labels) or top-1 agreement (none) for classifiers.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modelport.calibration_data import CalibrationSet
    from modelport.models import PreparedModel

log = logging.getLogger("modelport")

#: calibration rows of an INT8 build while searching (the builds dominate a candidate's time)
CALIB_ROWS = 128


@dataclasses.dataclass
class Timing:
    """How each latency is taken (seconds per measurement; few iterations on a busy box)."""

    duration: float = 2.0
    warmup: int = 3
    min_iters: int = 10
    threads: int | None = None
    rounds: int = 3  # teacher and candidate alternate this many times

    def kwargs(self) -> dict[str, Any]:
        return {"batch_sizes": (1,), "warmup": self.warmup, "duration": self.duration,
                "min_iters": self.min_iters, "threads": self.threads}


def metric_name(task: str, data: CalibrationSet) -> str:
    """The task metric --keep is a fraction of."""
    if task == "embedding":
        return "similarity_spearman"
    if task == "classification":
        return "accuracy" if data.labels is not None else "top1_agreement"
    return "cosine_to_teacher"


def metric_value(name: str, got: np.ndarray, ref: np.ndarray, data: CalibrationSet) -> float:
    """``name`` of outputs ``got`` against the teacher's ``ref`` on ``data`` (same row order)."""
    from modelport.metrics import row_cosines, similarity_spearman

    if name == "accuracy":
        return float((got.argmax(-1) == data.labels).mean())
    if name == "top1_agreement":
        return float((got.argmax(-1) == ref.argmax(-1)).mean())
    a = got.reshape(len(got), -1).astype(np.float64)
    b = ref.reshape(len(ref), -1).astype(np.float64)
    if name == "similarity_spearman":
        return float(similarity_spearman(a, b))
    return float(row_cosines(a, b).mean())


class TeacherClock:
    """The torch FP32 teacher, kept open, timed in rounds alternating with each candidate: on a
    shared machine a burst of load then lands on both sides of the speed ratio, not on one."""

    def __init__(self, prepared: PreparedModel, module: Any, pool: dict[str, np.ndarray],
                 timing: Timing) -> None:
        from modelport.backends.torch.backend import TorchSession
        from modelport.specs import TensorSpec

        outputs = (prepared.onnx_artifact.outputs if prepared.onnx_artifact is not None else
                   [TensorSpec(n, "float32", ("batch", "?")) for n in prepared.output_names])
        self.session = TorchSession(module, prepared.inputs, outputs, threads=timing.threads)
        self.pool, self.timing = pool, timing

    def close(self) -> None:
        self.session.close()

    def alone(self) -> float:
        return _time(self.session, self.pool, self.timing, self.timing.duration)[0]

    def against(self, session: Any, pool: dict[str, np.ndarray]) -> dict[str, float]:
        """Teacher and candidate latency (``*_ms``: the fastest batch-1 call, ``*_p50_ms``:
        the median one), medians over ``rounds`` alternating timings. The speed ratio uses the
        fastest call: on a shared CPU, load inflates the median of torch's OpenMP threads far
        more than that of the runtimes (measured here: 40x apart at load 15 on 2 cores), and
        least the fastest call of each."""
        import statistics

        share = self.timing.duration / self.timing.rounds
        teacher, cand = [], []
        for _ in range(self.timing.rounds):
            teacher.append(_time(self.session, self.pool, self.timing, share))
            cand.append(_time(session, pool, self.timing, share))
        return {"teacher_ms": statistics.median(t[0] for t in teacher),
                "latency_ms": statistics.median(c[0] for c in cand),
                "teacher_p50_ms": statistics.median(t[1] for t in teacher),
                "p50_ms": statistics.median(c[1] for c in cand)}


def _time(session: Any, pool: dict[str, np.ndarray], timing: Timing, duration: float
          ) -> tuple[float, float]:
    """(fastest, median) ms of batch-1 calls."""
    import modelport

    kwargs = {**timing.kwargs(), "duration": duration}
    stats = modelport.benchmark(session, pool, progress=False, **kwargs).at(1)
    return float(stats.min_ms), float(stats.p50_ms)


def measure_bundle(model_dir: Path, target: str, bundles: Path, *, train: CalibrationSet,
                   validation: CalibrationSet, ref: np.ndarray, metric: str,
                   pool: dict[str, np.ndarray], clock: TeacherClock) -> dict[str, Any]:
    """Export ``model_dir`` to ``target`` (INT8: calibrated on up to 128 rows of the training
    part), time it at batch 1 on ``pool`` alternating with the teacher, and score it on the
    validation slice. The export's own fidelity check runs on the validation slice too (the
    evaluation split is never touched while searching)."""
    import modelport
    from modelport.metrics import run_session
    from modelport.shapes import fit_arrays, fit_set

    out = bundles / f"{Path(model_dir).name}-{target.replace(':', '-')}"
    result = modelport.export(str(model_dir), [target], out=out,
                              calib=train.take(min(len(train), CALIB_ROWS)), eval=validation,
                              bench=None, progress=False, allow_accuracy_drop=True, force=True,
                              threads=clock.timing.threads)
    bundle = result.bundles[target]
    with modelport.load(bundle, threads=clock.timing.threads) as session:
        specs = list(session.inputs.values()) if isinstance(session.inputs, dict) \
            else session.inputs
        got = next(iter(run_session(session, fit_set(validation, specs)).values()))
        timed = clock.against(session, fit_arrays(pool, specs))
    size = sum(p.stat().st_size for p in Path(bundle).iterdir() if p.is_file())
    return {**timed, "metric": metric_value(metric, got, ref, validation),
            "bundle_mb": size / 1e6, "bundle": str(bundle)}
