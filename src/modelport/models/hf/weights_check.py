"""A folder's safetensors files checked before anything loads them: a truncated download, a
file of other bytes or a missing shard is a one-line ModelLoadError naming the file, not a
traceback from the safetensors reader deep inside transformers.

Only the header is read (8 bytes of length, then a JSON table of tensors with their byte
ranges), so the check costs the same for a 10 GB file as for a 10 kB one. The file must end
exactly where the header's last tensor ends, as the safetensors reader itself requires.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelport.errors import ModelLoadError

#: the safetensors reader's own limit on the header (bigger means: not a safetensors file)
MAX_HEADER = 100_000_000
FIX = "copy it again, or re-save the model with save_pretrained()"


def check_safetensors(path: Path, names: tuple[str, ...]) -> None:
    """Check the safetensors weights of folder ``path``: the first of ``names`` present (a
    single file, or an ``.index.json`` whose shards are each checked)."""
    for name in names:
        file = path / name
        if not file.is_file():
            continue
        if name.endswith(".index.json"):
            for shard in _shards(file):
                check_file(shard)
        else:
            check_file(file)
        return


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        raise ModelLoadError(f"'{index}' is not a safetensors index (no weight_map); {FIX}") from None
    missing = [n for n in names if not (index.parent / n).is_file()]
    if missing:
        raise ModelLoadError(
            f"'{index}' lists {len(names)} weight shards but {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''} {'is' if len(missing) == 1 else 'are'} "
            f"missing: copy the whole folder again"
        )
    return [index.parent / n for n in names]


def check_file(file: Path) -> None:
    """Raise ModelLoadError unless ``file`` is a complete safetensors file."""
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 0 or length > MAX_HEADER or 8 + length > size:
            raise ModelLoadError(_not_safetensors(file, size))
        header = _header(f.read(length))
    if header is None:
        raise ModelLoadError(_not_safetensors(file, size))
    end = 8 + length + max((t["data_offsets"][1] for t in header.values()), default=0)
    if end != size:
        how = "truncated" if size < end else "longer than its header says"
        raise ModelLoadError(
            f"'{file}' is damaged: {how} ({size} bytes, its header describes {end}); {FIX}"
        )


def _header(raw: bytes) -> dict[str, Any] | None:
    """The tensor table of a header, or None when it is not one."""
    try:
        table = json.loads(raw.decode("utf-8"))
        tensors = {k: v for k, v in table.items() if k != "__metadata__"}
        for info in tensors.values():
            start, stop = info["data_offsets"]
            if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start <= stop):
                return None
        return tensors
    except (ValueError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
        return None


def _not_safetensors(file: Path, size: int) -> str:
    what = "is empty" if size == 0 else "is not a safetensors file (no valid header)"
    return f"'{file}' {what}: the weights are damaged or were never downloaded; {FIX}"
