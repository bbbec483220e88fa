"""torch reference options (flag: --torch-compile)."""

from __future__ import annotations

from dataclasses import dataclass

from modelport.backends.options import BackendOptions, option


@dataclass(frozen=True)
class TorchOptions(BackendOptions):
    compile: bool = option(False, flag="--torch-compile",
                           help="torch:cuda:* rows run torch.compile'd instead of eager")
