"""CalibrationSet: an in-memory list of feed dicts with a content hash and a leak-free split.

Every sample is a complete feed (batch dimension 1), so any backend's calibrator can consume
it as it is, and ``batches(n)`` stacks samples for evaluation and benchmarking.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from modelport.errors import CalibrationDataError
from modelport.specs import TensorSpec

log = logging.getLogger("modelport")

#: Below this many calibration samples, activation ranges get noisy; we warn (never refuse).
MIN_CALIBRATION_SAMPLES = 100


class CalibrationSet:
    """Feed dicts (each with batch dimension 1), optional labels and the texts they came from."""

    def __init__(
        self,
        samples: list[dict[str, np.ndarray]],
        *,
        labels: np.ndarray | None = None,
        texts: list[str] | None = None,
        source: str = "",
    ) -> None:
        if not samples:
            raise CalibrationDataError(
                f"calibration/evaluation data from {source or 'the given source'} is empty: "
                "give at least one sample"
            )
        if labels is not None and len(labels) != len(samples):
            raise CalibrationDataError(
                f"{source}: {len(labels)} labels for {len(samples)} samples"
            )
        self.samples = samples
        self.labels = labels
        self.texts = texts
        self.source = source

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_iterable(
        cls,
        items: Iterable[Any],
        transform: Callable[[Any], Mapping[str, np.ndarray]] | None = None,
        *,
        source: str = "iterable",
    ) -> CalibrationSet:
        """Wrap any iterable (a DataLoader, a list); ``transform`` turns an item into a feed dict.

        Items with a batch dimension larger than 1 are split into single samples.
        """
        samples: list[dict[str, np.ndarray]] = []
        for index, item in enumerate(items):
            feed = transform(item) if transform else item
            if not isinstance(feed, Mapping):
                raise CalibrationDataError(
                    f"{source}: item {index} is a {type(feed).__name__}, not a dict of "
                    "input name -> array; pass transform= to convert it"
                )
            arrays = {k: np.asarray(_to_numpy(v)) for k, v in feed.items()}
            sizes = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
            if len(sizes) != 1:
                raise CalibrationDataError(
                    f"{source}: item {index} has inputs with different batch sizes {sorted(sizes)}"
                )
            for row in range(sizes.pop()):
                samples.append({k: a[row : row + 1] if a.ndim else a for k, a in arrays.items()})
        return cls(samples, source=source)

    # -- protocol -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.samples)

    def __repr__(self) -> str:
        return f"CalibrationSet({len(self)} samples from {self.source or 'memory'})"

    @property
    def input_names(self) -> list[str]:
        return list(self.samples[0])

    def sha256(self) -> str:
        """Content hash: names, dtypes, shapes and bytes of every sample, in order, and labels."""
        digest = hashlib.sha256()
        for sample in self.samples:
            digest.update(_sample_digest(sample))
        if self.labels is not None:
            digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()

    # -- splitting and batching ---------------------------------------------------------
    def split(self, eval_fraction: float = 0.3, *, seed: int = 0) -> tuple[CalibrationSet, CalibrationSet]:
        """Deterministic calib/eval split by content hash.

        Identical samples hash alike, so a duplicated sentence can never sit on both sides.
        """
        if not 0.0 < eval_fraction < 1.0:
            raise CalibrationDataError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
        threshold = int(eval_fraction * 10_000)
        to_eval = []
        for sample in self.samples:
            h = hashlib.sha256(_sample_digest(sample) + seed.to_bytes(8, "little")).digest()
            to_eval.append(int.from_bytes(h[:4], "little") % 10_000 < threshold)
        calib_idx = [i for i, e in enumerate(to_eval) if not e]
        eval_idx = [i for i, e in enumerate(to_eval) if e]
        if not calib_idx or not eval_idx:
            raise CalibrationDataError(
                f"{self.source}: {len(self)} samples are too few to split into calibration "
                "and evaluation sets; give more samples or separate --calib and --eval sources"
            )
        return self.subset(calib_idx, "calib"), self.subset(eval_idx, "eval")

    def subset(self, indices: list[int], tag: str = "") -> CalibrationSet:
        return CalibrationSet(
            [self.samples[i] for i in indices],
            labels=self.labels[indices] if self.labels is not None else None,
            texts=[self.texts[i] for i in indices] if self.texts is not None else None,
            source=f"{self.source}[{tag}]" if tag else self.source,
        )

    def take(self, n: int) -> CalibrationSet:
        return self.subset(list(range(min(n, len(self)))))

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Stack consecutive samples into feeds of up to ``batch_size`` rows."""
        for start in range(0, len(self), batch_size):
            chunk = self.samples[start : start + batch_size]
            yield {k: np.concatenate([s[k] for s in chunk], axis=0) for k in chunk[0]}

    def stacked(self) -> dict[str, np.ndarray]:
        return next(self.batches(len(self)))

    # -- checks -------------------------------------------------------------------------
    def check(self, specs: Mapping[str, TensorSpec], *, role: str = "calibration") -> None:
        """Check every sample against the model inputs; name the first wrong sample."""
        first_shapes: dict[str, tuple[int, ...]] = {}
        for index, sample in enumerate(self.samples):
            where = f"{role} sample {index} ({self.source})"
            if set(sample) != set(specs):
                raise CalibrationDataError(
                    f"{where} has inputs {sorted(sample)}, the model takes {sorted(specs)}"
                )
            for name, spec in specs.items():
                array = sample[name]
                problem = spec.problem_with(array)
                if problem:  # the same wording as a session's feed check
                    raise CalibrationDataError(f"{where}: {problem}")
                if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                    raise CalibrationDataError(
                        f"{where}: input '{name}' contains NaN or Inf; clean the data first"
                    )
                shape = array.shape[1:]
                if first_shapes.setdefault(name, shape) != shape:
                    raise CalibrationDataError(
                        f"{where}: input '{name}' has shape {list(array.shape)} but sample 0 has "
                        f"{[1, *first_shapes[name]]}; pad or resize samples to one shape"
                    )

    def warn_if_small(self, minimum: int = MIN_CALIBRATION_SAMPLES, *, role: str = "calibration") -> None:
        if len(self) < minimum:
            log.warning(
                "%s set has %d samples (fewer than the %d recommended); INT8 ranges may be noisy",
                role, len(self), minimum,
            )

    def value_ranges(self) -> dict[str, tuple[float, float]]:
        """[min, max] per input over all samples; recorded in the manifest for synthetic inputs."""
        out = {}
        for name in self.input_names:
            values = [s[name] for s in self.samples]
            out[name] = (float(min(v.min() for v in values)), float(max(v.max() for v in values)))
        return out


def overlap(a: CalibrationSet, b: CalibrationSet) -> int:
    """Number of samples of ``b`` whose content also appears in ``a``."""
    seen = {_sample_digest(s) for s in a.samples}
    return sum(_sample_digest(s) in seen for s in b.samples)


def _sample_digest(sample: Mapping[str, np.ndarray]) -> bytes:
    digest = hashlib.sha256()
    for name in sorted(sample):
        array = np.ascontiguousarray(sample[name])
        digest.update(f"{name}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.digest()


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    return value
