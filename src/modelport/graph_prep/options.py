"""``--cnn-recipe``: which steps of the CNN INT8 recipe run before every backend's quantizer.

Parsed and checked when BuildOptions is made, before any work starts; imports nothing heavy.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from modelport.errors import UsageError

#: in the order they run
STEPS = ("bn-fold", "equalize", "relu6-to-relu", "bias-correct")
#: what ``auto`` (the default) runs on a convolutional graph
AUTO_STEPS = ("bn-fold", "equalize", "bias-correct")
HELP = ("CNN INT8 recipe run on the ONNX graph before each backend's INT8 quantizer: 'auto' "
        "(default: bn-fold,equalize,bias-correct on graphs with Conv and no attention), 'off', "
        "or a comma list of " + ",".join(STEPS) + " (relu6-to-relu: replace ReLU6 between "
        "equalized convs by ReLU instead of equalizing only where the clip stays exact)")


@dataclass(frozen=True)
class CnnRecipe:
    """The steps to run; ``auto``: the default steps, only on convolutional graphs."""

    steps: tuple[str, ...] = AUTO_STEPS
    auto: bool = True

    @property
    def off(self) -> bool:
        return not self.steps

    def describe(self) -> str:
        return "auto" if self.auto else ",".join(self.steps) or "off"


def parse_recipe(value: str | CnnRecipe | tuple[str, ...] | list[str] | None) -> CnnRecipe:
    """'auto' | 'off' | 'bn-fold,equalize,...' (or a list of step names) -> CnnRecipe."""
    if value is None or isinstance(value, CnnRecipe):
        return value or CnnRecipe()
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", ""):
            return CnnRecipe()
        if text in ("off", "none"):
            return CnnRecipe((), auto=False)
        names = [x.strip() for x in text.split(",") if x.strip()]
    elif isinstance(value, list | tuple):
        names = [str(x).strip().lower() for x in value]
    else:
        raise UsageError(f"--cnn-recipe takes a string or a list of steps, got "
                         f"{type(value).__name__}")
    for name in names:
        if name not in STEPS:
            close = difflib.get_close_matches(name, STEPS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"--cnn-recipe: unknown step '{name}'{hint}; use auto, off or a "
                             f"comma list of {', '.join(STEPS)}")
    return CnnRecipe(tuple(s for s in STEPS if s in names), auto=False)
