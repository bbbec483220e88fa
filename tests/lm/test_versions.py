"""transformers outside the tested range: one clear warning at export (models/hf/versions.py);
constraints.txt pins the Hugging Face stack inside that range."""

from __future__ import annotations

import logging
from pathlib import Path

from modelport.models.hf import versions

ROOT = Path(__file__).resolve().parents[2]


def test_constraints_pin_the_hugging_face_stack_inside_the_tested_range():
    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().split()
                if "==" in line)
    assert {"transformers", "tokenizers", "safetensors", "huggingface-hub"} <= set(pins)
    assert versions.in_tested_range(pins["transformers"])


def test_untested_transformers_is_one_warning(monkeypatch, caplog):
    import transformers

    assert versions.in_tested_range("5.24.0") and versions.in_tested_range("5.24.3.dev0")
    assert not versions.in_tested_range("4.57.1") and not versions.in_tested_range("6.0.0")
    monkeypatch.setattr(transformers, "__version__", "4.46.0")
    versions.warn_untested_transformers.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="modelport"):
            assert versions.warn_untested_transformers() is False
            versions.warn_untested_transformers()  # once per process
    finally:
        versions.warn_untested_transformers.cache_clear()
    lines = [r.getMessage() for r in caplog.records if "outside the range" in r.getMessage()]
    assert len(lines) == 1 and "transformers 4.46.0" in lines[0] and ">=5.24, <5.25" in lines[0]
