"""A bundle as the server holds it: its name, its sessions (one per instance) and how its
requests may be combined into one runtime call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import ModelportError, UsageError

if TYPE_CHECKING:
    from modelport.backends.base import Session
    from modelport.bundle.reader import Bundle
    from modelport.serve.combine import BatchPlan
    from modelport.serve.options import ServeOptions
    from modelport.specs import TensorSpec

#: tasks whose answer needs more than one runtime call per request (generation loops, sliding
#: windows, several graphs): they run through Session.predict, one request at a time
SOLO_TASKS = frozenset({"text-generation", "question-answering", "audio-classification",
                        "automatic-speech-recognition", "zero-shot-image-classification"})
#: natural inputs a request may send (strings, or encoded images decoded in memory); audio is
#: not among them (the tasks read audio files by path, and a request names no server path)
NATURAL = ("text", "image", "question", "prompt")


@dataclass
class ServedModel:
    """One served bundle. ``sessions`` holds one runtime session per instance (a session is
    used by one request batch at a time, so N sessions run N batches at once)."""

    name: str
    bundle: Bundle
    sessions: list[Session] = field(default_factory=list)
    version: str = "1"

    @classmethod
    def open(cls, path: str | Path, *, name: str | None = None, instances: int = 1,
             threads: int | None = None) -> ServedModel:
        """Open (checksums verified) and load ``instances`` sessions of the bundle at ``path``."""
        from modelport.bundle import open_bundle

        bundle = open_bundle(path)
        _keep_tokenizer(bundle)
        served = cls(name or default_name(bundle), bundle)
        check_name(served.name)
        try:
            for _ in range(instances):
                served.sessions.append(bundle.session(threads=threads))
        except BaseException:
            served.close()
            raise
        return served

    # -- what it takes and gives --------------------------------------------------------------
    @property
    def inputs(self) -> list[TensorSpec]:
        return self.bundle.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.bundle.outputs

    @property
    def task(self) -> str | None:
        return (self.bundle.manifest.get("preprocessing") or {}).get("task")

    @property
    def platform(self) -> str:
        """The V2 metadata's platform: the bundle's target (runtime:device:precision)."""
        return str(self.bundle.manifest["target"])

    @cached_property
    def natural_inputs(self) -> tuple[str, ...]:
        """The task's own inputs a request may send as BYTES (text, image, prompt...)."""
        if not self.task:
            return ()
        from modelport.tasks import task_of

        names = task_of(self.bundle).accepts(self.bundle)
        return tuple(n for n in names if n in NATURAL)

    @property
    def solo(self) -> bool:
        """Natural-input requests run one at a time through Session.predict."""
        return self.task in SOLO_TASKS

    @cached_property
    def plan(self) -> BatchPlan:
        """How this bundle's tensor requests combine (concatenate, pad, group, or one by one)."""
        from modelport.serve.combine import plan_for

        return plan_for(self.inputs, self.outputs, pad_id=self._pad_id(),
                        solo=self.task == "text-generation")

    def _pad_id(self) -> int:
        try:
            tokenizer = self.bundle.tokenizer()
        except ModelportError:  # no usable tokenizer: pad ids with 0
            return 0
        return int(tokenizer.pad_id) if tokenizer is not None else 0

    def describe(self) -> dict[str, Any]:
        """What `serve` logs when it starts."""
        return {"name": self.name, "bundle": str(self.bundle.path), "target": self.platform,
                "task": self.task, "batching": self.plan.kind, "instances": len(self.sessions)}

    def close(self) -> None:
        for session in self.sessions:
            session.close()
        self.sessions.clear()


def _keep_tokenizer(bundle: Bundle) -> None:
    """Read tokenizer.json once: the tasks ask the bundle for its tokenizer on every request
    (reading a 30k-word vocabulary costs tens of ms); encoding with one is thread-safe."""
    try:
        tokenizer = bundle.tokenizer()
    except ModelportError:  # e.g. no `tokenizers` here: tensors still work, text says why
        return
    bundle.tokenizer = lambda: tokenizer  # type: ignore[method-assign]


def default_name(bundle: Bundle) -> str:
    """``<model name>-<target slug>``: bundle folders are named after the target alone, so two
    models' folders would collide."""
    model = str((bundle.manifest.get("model") or {}).get("name") or bundle.path.name)
    return f"{model}-{bundle.target.slug}"


def check_name(name: str) -> None:
    if not name or any(c in name for c in "/?#% ") or name in (".", ".."):
        raise UsageError(f"model name '{name}' cannot be part of a URL: use letters, digits, "
                         "'-', '_' and '.'")


def open_models(paths: Sequence[str | Path], names: Sequence[str], options: ServeOptions,
                ) -> list[ServedModel]:
    """The bundles of `modelport serve BUNDLE... --name NAME=BUNDLE...`: each named after its
    manifest unless --name says otherwise; two models of one name are refused."""
    from modelport.serve.names import bundles_with_names

    bundles = bundles_with_names(paths, names)
    for _, name in bundles:
        if name is not None:
            check_name(name)
    if not bundles:
        raise UsageError("give at least one BUNDLE to serve")
    models: list[ServedModel] = []
    try:
        for path, name in bundles:
            served = ServedModel.open(path, name=name,
                                      instances=options.instances,
                                      threads=options.session_threads())
            models.append(served)
            clash = [m for m in models[:-1] if m.name == served.name]
            if clash:
                raise UsageError(f"two bundles would be served as '{served.name}' "
                                 f"({clash[0].bundle.path} and {path}): name one with "
                                 f"--name NAME={path}")
    except BaseException:
        for m in models:
            m.close()
        raise
    return models
