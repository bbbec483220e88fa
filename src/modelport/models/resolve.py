"""Resolve a MODEL string: ``builtin:NAME``, ``file.py:factory``, ``model.pt2``, ``model.onnx``,
a ``modelport compress`` output folder or a Hugging Face checkpoint folder."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import ModelLoadError
from modelport.models.prepared import PreparedModel
from modelport.specs import TensorSpec

FORMS = ("builtin:NAME, path/to/file.py:factory, a torch.export .pt2 file, an .onnx file or "
         "a Hugging Face checkpoint folder")


BUILTINS: dict[str, str] = {
    "minilm": "modelport.models.minilm:load",
    "digits-cnn": "modelport.models.digits_cnn:load",
    "tiny-lm": "modelport.models.tiny_lm:load",
}


def resolve(spec: str, *, task: str | None = None, trust_pickle: bool = False,
            detection_head: str | None = None) -> PreparedModel:
    """``trust_pickle`` applies to Hugging Face checkpoint folders only; ``task`` to those and
    to a ``file.py:factory`` detector or segmenter (``models.factory_task``, with
    ``detection_head``)."""
    prepared = _resolve(spec, task=task, trust_pickle=trust_pickle)
    if task is not None and "hf_task" not in prepared.metadata:
        if ".py:" in spec:
            from modelport.models.factory_task import declare_task

            declared = prepared.metadata.pop("factory_preprocessing", None)
            return declare_task(prepared, task, detection_head=detection_head,
                                declared=declared, where=spec)
        raise ModelLoadError(
            f"--task applies to Hugging Face checkpoint folders and file.py:factory models; "
            f"'{spec}' is neither (its inputs and outputs come from the model itself)"
        )
    if detection_head is not None:
        raise ModelLoadError("--detection-head goes with a file.py:factory and --task "
                             "object-detection (a Hugging Face detector's head is read from it)")
    prepared.metadata.pop("factory_preprocessing", None)
    return prepared


def _resolve(spec: str, *, task: str | None, trust_pickle: bool) -> PreparedModel:
    if spec.startswith("builtin:"):
        return load_builtin(spec.removeprefix("builtin:"))
    if ".py:" in spec:
        file, _, factory = spec.rpartition(":")
        return load_factory(Path(file), factory)
    path = Path(spec)
    if not path.exists():
        raise ModelLoadError(f"model '{spec}' not found; MODEL is {FORMS}")
    from modelport.models.compressed import is_compressed_dir

    if is_compressed_dir(path):  # a `modelport compress` output directory
        from modelport.models.compressed import load as load_compressed

        return load_compressed(path, resolve)
    from modelport.models.hf import is_hf_folder, load_folder

    if is_hf_folder(path):
        return load_folder(path, task=task, trust_pickle=trust_pickle)
    if path.is_dir():
        raise ModelLoadError(
            f"'{spec}' is a folder without config.json: not a Hugging Face checkpoint folder "
            "(what save_pretrained() writes: config.json + model.safetensors + tokenizer files) "
            "nor a `modelport compress` output"
        )
    if path.suffix == ".onnx":
        return load_onnx(path)
    if path.suffix == ".pt2":
        return load_pt2(path)
    raise ModelLoadError(f"'{spec}' is not a model file; MODEL is {FORMS}")


def load_builtin(name: str) -> PreparedModel:
    if name not in BUILTINS:
        close = difflib.get_close_matches(name, BUILTINS, n=1)
        hint = f"did you mean 'builtin:{close[0]}'?" if close else ""
        raise ModelLoadError(
            f"unknown built-in model '{name}' (built-ins: {', '.join(BUILTINS)}) {hint}".strip()
        )
    module_name, _, func = BUILTINS[name].partition(":")
    return getattr(importlib.import_module(module_name), func)()


def load_factory(file: Path, factory: str) -> PreparedModel:
    """Import a user file and call ``factory()`` -> (nn.Module, example_inputs[, dynamic_axes]
    [, output_kind]): ``output_kind`` ("logits", "embedding" or "regression", as
    ``--output-kind``) says what the output is and so how INT8 targets are judged."""
    if not file.is_file():
        raise ModelLoadError(f"model file '{file}' not found")
    import torch

    module_name = f"modelport_user_{abs(hash(file.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import '{file}' as Python")
    user = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = user
    try:
        spec.loader.exec_module(user)
    except Exception as exc:  # noqa: BLE001 - the user's module may raise anything
        raise ModelLoadError(f"importing '{file}' failed: {type(exc).__name__}: {exc}") from None
    fn = getattr(user, factory, None)
    if not callable(fn):
        raise ModelLoadError(f"'{file}' has no function '{factory}'")
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - the user's factory may raise anything
        raise ModelLoadError(
            f"'{file}:{factory}()' raised {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(result, tuple) or not 2 <= len(result) <= 4:
        raise ModelLoadError(
            f"'{file}:{factory}()' must return (nn.Module, example_inputs), optionally followed "
            f"by dynamic_axes and/or an output kind, got {type(result).__name__}"
        )
    module, example = result[0], result[1]
    dynamic, kind = _declaration(result[2:], f"{file}:{factory}")
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(
            f"'{file}:{factory}()' must return a torch.nn.Module first, got {type(module).__name__}"
        )
    examples = _name_examples(example, f"{file}:{factory}", module)
    if isinstance(example, (tuple, list, torch.Tensor)) and not _takes_names(module, examples):
        module = _Positional(module, list(examples))
    module.eval()
    prepared = _from_module(
        module, examples, dynamic, name=file.stem, source=f"{file}:{factory}", output_kind=kind
    )
    if getattr(fn, "preprocessing", None) is not None:  # read by --task (models.factory_task)
        prepared.metadata["factory_preprocessing"] = fn.preprocessing
    return prepared


def _declaration(extra: tuple[Any, ...], where: str) -> tuple[Any, str | None]:
    """(dynamic_axes, output kind) from the values after the example inputs: a dict (or None)
    and/or a string, in that order."""
    from modelport.metrics import OUTPUT_KINDS

    rest, kind = list(extra), None
    if rest and isinstance(rest[-1], str):
        kind = rest.pop()
        if kind not in OUTPUT_KINDS:
            raise ModelLoadError(f"'{where}()': the output kind '{kind}' is not one of "
                                 f"{', '.join(OUTPUT_KINDS)}")
    if len(rest) > 1 or any(isinstance(v, str) for v in rest):
        raise ModelLoadError(f"'{where}()' must return (nn.Module, example_inputs"
                             "[, dynamic_axes][, output_kind]): dynamic_axes first, then the "
                             "output kind")
    return (rest[0] if rest else None), kind


def _name_examples(example: Any, where: str, module: Any = None) -> dict[str, np.ndarray]:
    import torch

    if isinstance(example, torch.Tensor):
        example = (example,)
    if isinstance(example, dict):
        items = list(example.items())
    elif isinstance(example, (tuple, list)) and example:
        # positional examples take forward()'s parameter names, so the ONNX inputs read well
        names = _forward_names(module)[: len(example)]
        if len(names) < len(example):
            names = [f"input_{i}" for i in range(len(example))]
        items = list(zip(names, example, strict=True))
    else:
        raise ModelLoadError(
            f"'{where}' gave no example inputs: return a tensor, a tuple of tensors or a "
            "dict of input name -> tensor as the second value"
        )
    out = {}
    for name, tensor in items:
        if not isinstance(tensor, torch.Tensor):
            raise ModelLoadError(f"'{where}': example input '{name}' is not a torch.Tensor")
        out[str(name)] = tensor.detach().cpu().numpy()
    return out


def _forward_names(module: Any) -> list[str]:
    """forward()'s leading positional parameter names (none if it takes *args)."""
    import inspect

    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError, AttributeError):
        return []
    names = []
    for p in params:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        names.append(p.name)
    return names


def _takes_names(module: Any, examples: dict[str, np.ndarray]) -> bool:
    return list(examples) == _forward_names(module)[: len(examples)] and not any(
        n.startswith("input_") for n in examples if n not in _forward_names(module))


def _positional_class():
    import torch

    class Positional(torch.nn.Module):
        """Calls a module whose forward takes *args with the named feeds, in order."""

        def __init__(self, inner: Any, names: list[str]) -> None:
            super().__init__()
            self.inner = inner
            self.names = names

        def forward(self, **feeds):
            return self.inner(*[feeds[n] for n in self.names])

    return Positional


def _Positional(inner: Any, names: list[str]) -> Any:
    return _positional_class()(inner, names)


def _from_module(
    module: Any,
    examples: dict[str, np.ndarray],
    dynamic: dict[str, dict[int, str]] | None,
    *,
    name: str,
    source: str,
    output_kind: str | None = None,
) -> PreparedModel:
    """Specs from example tensors: axis 0 is the dynamic 'batch' unless told otherwise. The
    task is the declared ``output_kind``'s, else a guess from the output's shape."""
    import torch

    dynamic = _with_batch_axis(examples, dynamic, source)
    specs = []
    for input_name, array in examples.items():
        axes = dynamic.get(input_name, {})
        shape = tuple(axes.get(i, d) for i, d in enumerate(array.shape))
        specs.append(TensorSpec(input_name, str(array.dtype), shape))
    try:
        with torch.no_grad():
            out = module(**{k: torch.from_numpy(v) for k, v in examples.items()})
    except Exception as exc:  # noqa: BLE001 - the user's forward, said in one line
        first = str(exc).strip().splitlines()
        raise ModelLoadError(
            f"'{source}': the model raised {type(exc).__name__} on its own example inputs "
            f"({first[0][:200] if first else ''}); fix forward() or the example inputs"
        ) from None
    if isinstance(out, torch.Tensor):
        output_names = ["output"]
    elif isinstance(out, dict):
        output_names = list(out)
    elif isinstance(out, (tuple, list)):
        output_names = [f"output_{i}" for i in range(len(out))]
    else:
        raise ModelLoadError(f"'{source}': the model returned {type(out).__name__}, not tensors")
    if output_kind is not None:
        from modelport.metrics import OUTPUT_KINDS

        task, task_from = OUTPUT_KINDS[output_kind], "declared"
    else:
        task = "classification" if len(output_names) == 1 and _looks_like_logits(out) \
            else "generic"
        task_from = "output shape"
    return PreparedModel(
        name=name, source=source, task=task, inputs=specs, output_names=output_names,
        example_inputs=examples, module=module, output_kind=output_kind, task_from=task_from,
    )


def _with_batch_axis(
    examples: dict[str, np.ndarray], dynamic: Any, source: str
) -> dict[str, dict[int, str]]:
    """Axis 0 stays the dynamic 'batch' of every input whose dict does not name axis 0 itself
    (``{0: None}`` makes it static): naming extra axes must not lose the batch."""
    if dynamic is not None and not (
        isinstance(dynamic, dict)
        and all(isinstance(v, dict) and all(isinstance(a, int) for a in v) for v in dynamic.values())
    ):
        raise ModelLoadError(
            f"'{source}': the third value must be {{input name: {{axis: 'dim_name'}}}}, e.g. "
            "{'input_ids': {1: 'seq'}}"
        )
    given = dynamic or {}
    out: dict[str, dict[int, str]] = {}
    for name, array in examples.items():
        axes = dict(given.get(name, {}))
        if array.ndim >= 1 and 0 not in axes:
            axes[0] = "batch"
        out[name] = {a: str(d) for a, d in sorted(axes.items()) if d is not None}
    return out


def _looks_like_logits(out: Any) -> bool:
    return getattr(out, "ndim", 0) == 2 and out.shape[1] > 1 and out.dtype.is_floating_point


def load_pt2(path: Path) -> PreparedModel:
    """A ``torch.export.save`` archive; the user asked for it, so torch reads it (their file)."""
    import torch

    # torch.export.load logs the real cause (with a traceback) before raising a generic error:
    # keep that log off the user's terminal and put its last line into our one-line message
    records: list[logging.LogRecord] = []
    handler = _ListHandler(records)
    torch_log = logging.getLogger("torch.export")
    saved = torch_log.propagate, torch_log.handlers[:]
    torch_log.handlers[:], torch_log.propagate = [handler], False
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a bad archive
        cause = _last_line(records) or (str(exc).splitlines()[0] if str(exc) else "")
        raise ModelLoadError(
            f"cannot load '{path}' with torch.export.load ({type(exc).__name__}: {cause[:300]}); "
            f"it may come from another torch version (this is torch {torch.__version__}): "
            "re-export it with this version"
        ) from None
    finally:
        torch_log.propagate, torch_log.handlers[:] = saved[0], saved[1]
    args, kwargs = program.example_inputs or ((), {})
    positional = list(program.graph_signature.user_inputs)[: len(args)]
    keywords = list(kwargs)
    examples = {name: t.detach().numpy() for name, t in zip(positional, args, strict=True)}
    examples.update({k: v.detach().numpy() for k, v in kwargs.items()})
    if not examples:
        raise ModelLoadError(f"'{path}' has no example inputs; re-export it with torch.export")
    module = program.module()

    class _Kw(torch.nn.Module):  # one keyword interface, whatever the program was traced with
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, **feeds):
            return self.inner(*[feeds[n] for n in positional], **{k: feeds[k] for k in keywords})

        def train(self, mode: bool = True):  # an exported program has no train/eval switch
            return self

    prepared = _from_module(_Kw(), examples, None, name=path.stem, source=str(path))
    prepared.exported_program = program
    # dims that torch.export marked dynamic stay dynamic in the ONNX; read them back after export
    return prepared


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _last_line(records: list[logging.LogRecord]) -> str:
    """The last logged exception (or message): torch's real reason for a failed load."""
    for record in reversed(records):
        text = str(record.exc_info[1]) if record.exc_info and record.exc_info[1] else ""
        text = text or record.getMessage()
        lines = [line for line in text.strip().splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return ""


def load_onnx(path: Path) -> PreparedModel:
    from modelport.exporters.onnx_io import read_io_specs

    inputs, outputs = read_io_specs(path)
    rng = np.random.default_rng(0)
    examples = {}
    for spec in inputs:
        shape = [2 if isinstance(d, str) else d for d in spec.shape]
        if np.issubdtype(np.dtype(spec.dtype), np.floating):
            examples[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        else:
            examples[spec.name] = np.ones(shape, dtype=spec.dtype)
    return PreparedModel(
        name=path.stem, source=str(path), task="generic", inputs=inputs,
        output_names=[o.name for o in outputs], example_inputs=examples, onnx_path=path,
    )
