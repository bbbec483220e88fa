"""The contract every task module fills: which inputs it takes, how raw input becomes feeds,
how outputs become an answer, and (optionally) the task's own fidelity metric.

``modelport run``, ``Session.predict`` and the server all go through ``Task.predict``; nothing
task-specific lives in ``cli/``. Torch-free: numpy, tokenizers and Pillow only (imported lazily).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.errors import UsageError

#: the main inputs of `run` (one per call), in the order they are named in messages
MAIN_INPUTS: tuple[str, ...] = ("text", "image", "audio", "question", "prompt", "input")
#: options that refine a main input; a task lists those it uses
OPTIONS: tuple[str, ...] = ("labels", "threshold", "save_mask")
#: how each input is spelled on the command line
FLAGS: dict[str, str] = {
    "text": "--text", "image": "--image", "audio": "--audio",
    "question": "--question/--context", "prompt": "--prompt", "input": "--input",
    "labels": "--labels", "threshold": "--threshold", "save_mask": "--save-mask",
}
#: "is not <what> model" wording of a refused main input
_KIND = {"text": "a text", "image": "an image", "audio": "an audio",
         "question": "a question-answering", "prompt": "a text-generation"}

#: a task's fidelity metric: (candidate outputs, reference outputs, the evaluation feeds or
#: None, the manifest's preprocessing) -> metrics holding at least ``accuracy``,
#: ``reference_accuracy`` and ``accuracy_drop`` (fractions), so the budget applies in points
TaskMetric = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray],
                       Mapping[str, np.ndarray] | None, Mapping[str, Any]], dict[str, float]]


def as_points(score: float, **metrics: Any) -> dict[str, Any]:
    """A task metric's ``metrics`` plus ``score`` (1.0 = the reference's own answers) as the
    accuracy fields every budget reads: the reference scores 1.0, the drop is 1 - score."""
    return {**metrics, "accuracy": score, "reference_accuracy": 1.0,
            "accuracy_drop": 1.0 - score}


def _strings(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _items(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return [value] if isinstance(value, (str, Path, np.ndarray)) else list(value)


@dataclass
class RunInputs:
    """What `run` (or ``Session.predict``) was given. Lists are one item per answer row."""

    text: list[str] | None = None
    image: list[Any] | None = None  # paths (PNG/JPEG/.npy) or H x W x 3 arrays
    audio: list[Any] | None = None
    question: list[str] | None = None
    context: str | None = None
    prompt: str | None = None
    feeds: Mapping[str, np.ndarray] | None = None  # --input feeds.npz / predict(feeds=...)
    labels: list[str] | None = None
    threshold: float | None = None
    save_mask: Path | None = None
    top_k: int = 3
    max_new_tokens: int = 32
    num_beams: int | None = None  # text2text-generation: beams (1 greedy; None: the model's)
    language: str | None = None  # Whisper: the spoken language (None: the model's default)
    speech_task: str | None = None  # Whisper: "transcribe" or "translate" (None: the model's)
    temperature: float | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, **given: Any) -> RunInputs:
        """From ``Session.predict``'s keywords (a single string or a list for the repeatables)."""
        known = set(cls.__dataclass_fields__) - {"extra"}
        unknown = sorted(set(given) - known - {"input"})
        if unknown:
            raise UsageError(f"predict() got unknown input(s) {unknown}; it takes "
                             f"{', '.join(sorted(known))}")
        if "input" in given:
            given["feeds"] = given.pop("input")
        for name in ("text", "question", "labels"):
            given[name] = _strings(given.get(name))
        for name in ("image", "audio"):
            given[name] = _items(given.get(name))
        if given.get("save_mask") is not None:
            given["save_mask"] = Path(given["save_mask"])
        return cls(**{k: v for k, v in given.items() if v is not None or k == "temperature"})

    def given(self) -> list[str]:
        """The main inputs present (the `run` flags a user passed)."""
        present = {"text": self.text, "image": self.image, "audio": self.audio,
                   "question": self.question, "prompt": self.prompt, "input": self.feeds}
        return [name for name in MAIN_INPUTS if present[name] is not None]

    def options_given(self) -> list[str]:
        present = {"labels": self.labels, "threshold": self.threshold,
                   "save_mask": self.save_mask}
        return [name for name in OPTIONS if present[name] is not None]


class Answer:
    """What a task returns: ``str(answer)`` is what `run` prints, ``to_dict()`` its JSON."""

    def lines(self) -> list[str]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return "\n".join(self.lines())


@dataclass
class Outputs(Answer):
    """The graph's raw outputs (feature extraction, ``--input`` feeds, bundles of no task)."""

    outputs: dict[str, np.ndarray]

    def lines(self) -> list[str]:
        out = []
        with np.printoptions(precision=5, suppress=True, threshold=64, edgeitems=4,
                             linewidth=100):
            for name, value in self.outputs.items():
                out.append(f"{name}: {value.dtype}{list(value.shape)}")
                out.append(np.array2string(value))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: np.asarray(v).tolist() for k, v in self.outputs.items()}


class Task:
    """One task: subclass it in ``tasks/<task>.py`` and name it in ``tasks.TASK_MODULES``."""

    name: ClassVar[str]
    #: the fidelity kind of export's check (``PreparedModel.task``): embedding, classification,
    #: text-generation, or the task's own name when it brings ``metric``
    fidelity: ClassVar[str] = "embedding"
    #: the main inputs it turns into feeds (``input`` is always accepted)
    inputs: ClassVar[tuple[str, ...]] = ("text",)
    #: the options it uses (labels, threshold, save_mask)
    options: ClassVar[tuple[str, ...]] = ()
    #: the name of the task's own fidelity metric (in ``metric``'s result), if any
    metric_name: ClassVar[str | None] = None
    #: budget points are counted in this metric (its drop vs the reference)
    metric: ClassVar[TaskMetric | None] = None

    # -- inputs ----------------------------------------------------------------------------
    def accepts(self, bundle: Any) -> tuple[str, ...]:
        """The main inputs this bundle takes (``input`` last)."""
        return (*self.inputs, "input")

    def check(self, bundle: Any, given: RunInputs) -> None:
        """One-line UsageError for a wrong combination, before any session is loaded."""
        accepted = self.accepts(bundle)
        names = given.given()
        takes = describe_inputs(accepted)
        what = f"{bundle.path} ({self.name} bundle)"
        if given.context is not None and "question" not in names:
            raise UsageError(f"--context goes with --question (the passage a question-"
                             f"answering model reads); {what} takes {takes}")
        if not names:
            raise UsageError(f"{what}: give an input; it takes {takes}")
        if len(names) > 1:
            raise UsageError(f"{what}: give one input kind, not "
                             f"{' and '.join(FLAGS[n] for n in names)}; it takes {takes}")
        name = names[0]
        if name not in accepted:
            kind = _KIND.get(name)
            head = f"{bundle.path} is not {kind} model" if kind else what
            raise UsageError(f"{head} ({self.name} bundle): {FLAGS[name]} does not apply; "
                             f"it takes {takes}")
        for option in given.options_given():
            if option not in self.options or name == "input":
                raise UsageError(f"{FLAGS[option]} does not apply to {what} with "
                                 f"{FLAGS[name]}; it takes {takes}")
        if name != "input":  # raw feeds skip the task's own pre- and post-processing
            self.check_more(bundle, given)

    def check_more(self, bundle: Any, given: RunInputs) -> None:
        """Task-specific checks (a question without a context, an empty label list...); not
        called for ``--input`` feeds."""

    # -- running -----------------------------------------------------------------------------
    def predict(self, bundle: Any, session: Any, given: RunInputs) -> Answer:
        """Raw input -> feeds -> the session -> the answer."""
        if given.feeds is not None:
            return Outputs(run_feeds(bundle, session, given.feeds))
        feeds, state = self.encode(bundle, given)
        return self.decode(bundle, session.infer(feeds), given, state)

    def encode(self, bundle: Any, given: RunInputs) -> tuple[dict[str, np.ndarray], Any]:
        """Feeds for the session, and whatever ``decode`` needs besides the outputs."""
        raise NotImplementedError

    def decode(self, bundle: Any, outputs: dict[str, np.ndarray], given: RunInputs,
               state: Any) -> Answer:
        return Outputs(outputs)


def describe_inputs(accepted: Sequence[str]) -> str:
    return " or ".join(FLAGS[name] + (" FEEDS.npz" if name == "input" else "")
                       for name in accepted)


def positions_on(where: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A [batch, seq] mask made from the feeds, laid on the outputs' [batch, seq] (a graph
    built for a fixed length pads seq; positions past the feeds are False)."""
    out = np.zeros(shape[:2], bool)
    rows, cols = min(shape[0], where.shape[0]), min(shape[1], where.shape[1])
    out[:rows, :cols] = where[:rows, :cols]
    return out


def preprocessing(bundle: Any) -> dict[str, Any]:
    return bundle.manifest.get("preprocessing") or {}


def run_feeds(bundle: Any, session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``--input``: feeds read from an .npz (or given as a dict), run as given (the session
    checks them and says what is wrong in one line)."""
    return session.infer(feeds)


def text_feeds(bundle: Any, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Sentences -> the bundle's text inputs with its own tokenizer.json."""
    tokenizer = bundle.tokenizer()
    if tokenizer is None:
        raise UsageError(f"{bundle.path} has no tokenizer: use --input file.npz instead")
    from modelport.shapes import fit_arrays

    return fit_arrays(tokenizer.encode(list(texts), {s.name: s for s in bundle.inputs}),
                      bundle.inputs)


def image_feeds(bundle: Any, images: Sequence[Any]) -> dict[str, np.ndarray]:
    """Image files (or H x W x 3 arrays) -> ``pixel_values`` as the manifest says."""
    params = preprocessing(bundle).get("image")
    if not params:
        raise UsageError(f"{bundle.path} is not an image model: use --text or --input")
    from modelport.shapes import fit_arrays
    from modelport.tasks.image import load_pixels, pixels_of_array

    pixels = np.concatenate([pixels_of_array(im, params) if isinstance(im, np.ndarray)
                             else load_pixels(im, params) for im in images])
    return fit_arrays({bundle.inputs[0].name: pixels}, bundle.inputs)
