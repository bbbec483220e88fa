"""The tasks framework: the registry, `run`'s input checks (one line, before any session is
loaded) and the answers' JSON. No model is built here: the QA/fill-mask modules build theirs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from modelport.errors import UsageError
from modelport.tasks import FIDELITY_KIND, REGISTRY, TASKS, get_task, metric_for
from modelport.tasks.base import Outputs, RunInputs


def _bundle(task: str | None, **pre) -> SimpleNamespace:
    return SimpleNamespace(path=Path("B"), manifest={"preprocessing": {"task": task, **pre}})


def test_every_registered_task_loads_and_names_itself():
    assert set(TASKS) == set(REGISTRY) and set(FIDELITY_KIND) == set(REGISTRY)
    for name in TASKS:
        task = get_task(name)
        assert task.name == name
        assert task.fidelity == FIDELITY_KIND[name]
        # a task with a metric of its own is judged by it, under its own name
        assert (metric_for(FIDELITY_KIND[name]) is not None) == (task.metric is not None)
    assert get_task(None).name == get_task("not-a-task-yet").name == "generic"


@pytest.mark.parametrize(("task", "given", "fragment"), [
    ("text-classification", {"audio": ["x.wav"]}, "is not an audio model"),
    ("text-classification", {"image": ["x.png"]}, "is not an image model"),
    ("image-classification", {"text": "hi"}, "is not a text model"),
    ("feature-extraction", {"prompt": "hi"}, "is not a text-generation model"),
    ("text-classification", {"text": "a", "image": ["x.png"]}, "give one input kind"),
    ("text-classification", {}, "give an input"),
    ("text-classification", {"text": "a", "labels": ["x"]}, "--labels does not apply"),
    ("text-classification", {"text": "a", "threshold": 0.5}, "--threshold does not apply"),
    ("text-classification", {"text": "a", "context": "c"}, "--context goes with --question"),
])
def test_a_wrong_input_is_one_line_naming_what_the_bundle_takes(task, given, fragment):
    bundle = _bundle(task, tokenizer="tokenizer.json")
    with pytest.raises(UsageError) as info:
        get_task(task).check(bundle, RunInputs.of(**given))
    message = str(info.value)
    assert fragment in message and "\n" not in message
    if "takes" in message:
        assert "--input FEEDS.npz" in message


def test_input_feeds_are_accepted_by_every_task():
    for name in TASKS:
        get_task(name).check(_bundle(name), RunInputs.of(feeds={"x": np.zeros(1)}))


def test_predict_keywords_take_one_string_or_a_list_and_refuse_unknown_ones():
    assert RunInputs.of(text="a").text == ["a"]
    assert RunInputs.of(text=("a", "b")).text == ["a", "b"]
    assert RunInputs.of(image="x.png").image == ["x.png"]
    with pytest.raises(UsageError, match="unknown input"):
        RunInputs.of(txt="a")


def test_raw_outputs_print_shape_and_serialize_to_json():
    answer = Outputs({"logits": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert str(answer).startswith("logits: float32[2, 3]")
    assert json.loads(answer.to_json()) == {"logits": [[0, 1, 2], [3, 4, 5]]}
