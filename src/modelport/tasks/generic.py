"""Bundles whose manifest names no task (a built-in, a file.py:factory, an .onnx): `run` feeds
text through the bundle's tokenizer or an image through its resize/normalize when it has them,
any ``--input`` feeds, and prints the raw outputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.tasks.base import RunInputs, Task, image_feeds, preprocessing, text_feeds


class Generic(Task):
    name = "generic"
    inputs = ("text", "image")

    def accepts(self, bundle: Any) -> tuple[str, ...]:
        pre = preprocessing(bundle)
        found = [name for name, key in (("text", "tokenizer"), ("image", "image")) if pre.get(key)]
        return (*found, "input") if found else ("text", "input")

    def encode(self, bundle: Any, given: RunInputs) -> tuple[dict[str, np.ndarray], Any]:
        if given.image is not None:
            return image_feeds(bundle, given.image), None
        return text_feeds(bundle, given.text or []), None
