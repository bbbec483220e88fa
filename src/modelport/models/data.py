"""The data files shipped with the package (CC0 sentences; see data/SENTENCES_LICENSE.md)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
SENTENCES = DATA_DIR / "sentences.txt"


def sentences() -> list[str]:
    return [line.strip() for line in SENTENCES.read_text("utf-8").splitlines() if line.strip()]
