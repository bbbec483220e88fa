"""Task bundles' natural inputs over V2: BYTES tensors of text (``text``, ``question`` +
``context``, ``prompt``, ``labels``) or of encoded images (``image``: PNG/JPEG bytes), answered
through the same ``tasks/`` code as `modelport run` (encode -> the batcher -> decode, or
``Session.predict`` one request at a time for multi-call tasks). The answer comes back as one
BYTES element ``answer`` holding the task's JSON (what `run --json` prints). Request
parameters ``top_k``, ``threshold``, ``max_new_tokens``, ``temperature``, ``seed`` refine it."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.serve.protocol import InferRequest, ProtocolError

if TYPE_CHECKING:
    from modelport.serve.batcher import Batcher
    from modelport.serve.model import ServedModel

#: inputs that are lists of strings, one answer row each
_LISTS = ("text", "question", "labels")
#: inputs that are one string
_SINGLE = ("context", "prompt")
#: request parameters passed on to the task, with their types
_OPTIONS: dict[str, type] = {"top_k": int, "threshold": float, "max_new_tokens": int,
                             "temperature": float, "seed": int}
#: an encoded image may decode to at most this many pixels
MAX_IMAGE_PIXELS = 40_000_000


def is_natural(model: ServedModel, request: InferRequest) -> bool:
    """The request sends the task's own inputs, not the graph's tensors."""
    names = set(request.inputs)
    if not model.natural_inputs or names & {s.name for s in model.inputs}:
        return False
    allowed = set(model.natural_inputs) | {"context", "labels"}
    return bool(names) and names <= allowed


async def answer(model: ServedModel, batcher: Batcher,
                 request: InferRequest) -> dict[str, np.ndarray]:
    """The task's answer to a natural-input request, as the ``answer`` output."""
    from modelport.tasks import task_of
    from modelport.tasks.base import RunInputs

    kwargs = {**_inputs(request.inputs), **_options(request.parameters)}
    given = RunInputs.of(**kwargs)
    task = task_of(model.bundle)
    task.check(model.bundle, given)  # a UsageError: the app answers 400 with its message
    if model.solo:
        result = await batcher.run_alone(lambda session: session.predict(**kwargs))
    else:
        feeds, state = await asyncio.to_thread(task.encode, model.bundle, given)
        outputs = await batcher.infer(feeds)
        result = await asyncio.to_thread(task.decode, model.bundle, outputs, given, state)
    text = json.dumps(result.to_dict(), default=_plain)
    out = np.empty(1, dtype=object)
    out[0] = text.encode("utf-8")
    return {"answer": out}


def _inputs(tensors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name, value in tensors.items():
        if value.dtype != object:
            raise ProtocolError(f"input '{name}' is the task's {name}: send it as BYTES")
        items = list(value.reshape(-1))
        if not items:
            raise ProtocolError(f"input '{name}' is empty")
        if name == "image":
            kwargs[name] = [_image(raw, i) for i, raw in enumerate(items)]
            continue
        strings = [_utf8(name, raw) for raw in items]
        if name in _SINGLE:
            if len(strings) != 1:
                raise ProtocolError(f"input '{name}' takes one string, got {len(strings)}")
            kwargs[name] = strings[0]
        else:
            kwargs[name] = strings
    return kwargs


def _utf8(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"input '{name}' must be UTF-8 text") from None


def _image(raw: bytes, index: int) -> np.ndarray:
    """Encoded PNG/JPEG bytes -> H x W x 3 uint8, decoded in memory (never written to disk)."""
    from modelport.tasks.image import _pil

    image_mod = _pil()
    try:
        with image_mod.open(io.BytesIO(raw)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ProtocolError(f"image {index} is {image.width}x{image.height}: more than "
                                    f"{MAX_IMAGE_PIXELS} pixels")
            if image.format not in ("PNG", "JPEG"):
                raise ProtocolError(f"image {index} is {image.format}: send PNG or JPEG bytes")
            return np.asarray(image.convert("RGB"))
    except (OSError, image_mod.DecompressionBombError) as exc:
        raise ProtocolError(f"image {index} cannot be read as PNG/JPEG: {exc}") from None


def _options(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, kind in _OPTIONS.items():
        if name in params:
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ProtocolError(f"parameter '{name}' must be a number, got {value!r}")
            out[name] = kind(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
