"""Write a bundle: artifact files, samples.npz, tokenizer.json, README.md, manifest.json."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from modelport.io import publish_dir, sha256_file, write_json_atomic

SAMPLES_FILE = "samples.npz"
TOKENIZER_FILE = "tokenizer.json"


def write_bundle(
    out: Path,
    *,
    manifest: dict[str, Any],
    artifact_dir: Path,
    artifact_files: list[str],
    samples: dict[str, np.ndarray] | None = None,
    tokenizer_json: Path | None = None,
    extra_files: dict[str, bytes] | None = None,
    force: bool = False,
) -> Path:
    """Publish a complete bundle at ``out`` (atomically; see ``publish_dir``).

    ``manifest`` holds every field but ``files``/``artifact`` checksums and ``created_at``,
    which are computed here from what was actually written.
    """
    from modelport._version import SCHEMA_VERSION, __version__

    def fill(tmp: Path) -> None:
        for name in artifact_files:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(artifact_dir / name, tmp / name)
        if samples:
            # plain arrays only: the reader opens it with allow_pickle=False
            np.savez(tmp / SAMPLES_FILE, **samples)
        data = dict(manifest)
        data["schema_version"] = SCHEMA_VERSION
        data["modelport_version"] = __version__
        data["created_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if tokenizer_json is not None:
            shutil.copyfile(tokenizer_json, tmp / TOKENIZER_FILE)
            data.setdefault("preprocessing", {})["tokenizer"] = TOKENIZER_FILE
        for name, content in (extra_files or {}).items():
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"bundle file name must be relative and inside: {name!r}")
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(content)
        data["samples"] = SAMPLES_FILE if samples else None
        (tmp / "README.md").write_text(render_readme(data), encoding="utf-8")
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        data["files"] = {f: sha256_file(tmp / f) for f in files}
        main = data["artifact"]["file"]
        data["artifact"]["sha256"] = data["files"].get(main)
        data["artifact"]["size_bytes"] = sum((tmp / f).stat().st_size for f in artifact_files)
        write_json_atomic(tmp / "manifest.json", data)

    return publish_dir(fill, Path(out), force=force)


def render_readme(m: dict[str, Any]) -> str:
    target = m["target"]
    runtime = m["runtime"]["name"]
    extra = m["runtime"].get("extra", runtime)
    audio = bool((m.get("preprocessing") or {}).get("audio"))
    if audio:  # decoding and resampling audio files: soundfile + soxr
        extra += ",audio"
    acc = m.get("accuracy") or {}
    metrics = acc.get("metrics") or {}
    lines = [
        f"# {m['model']['name']} for `{target}`",
        "",
        (f"Made by modelport {m.get('modelport_version', '')} on {m.get('created_at', '')} from "
         f"`{m['model']['source']}`."),
        "",
        f"- artifact: `{m['artifact']['file']}` ({runtime} {m['runtime'].get('version', '')})",
        "- inputs: " + ", ".join(f"`{i['name']}` {i['dtype']}{i['shape']}" for i in m["inputs"]),
        "- outputs: " + ", ".join(f"`{o['name']}` {o['dtype']}{o['shape']}" for o in m["outputs"]),
    ]
    if metrics:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
        lines.append(f"- fidelity vs {acc.get('reference', 'the reference')}: {shown}")
    lines += [
        "",
        "## Run it",
        "",
        "```bash",
        f'pip install "modelport[{extra}]"   # the runtime only: no torch needed',
        "modelport verify .      # checksums + outputs vs the stored reference",
        "modelport bench .       # latency / throughput on this machine",
        *(["modelport run . --audio clip.wav   # labels / transcript of a WAV/FLAC/OGG file"]
          if audio else []),
        "```",
        "",
        "```python",
        "import modelport",
        "session = modelport.load('.')",
        "outputs = session.infer(feeds)   # dict of input name -> numpy array",
        "```",
        "",
        "`manifest.json` lists every file with its sha256; a modified bundle is refused.",
    ]
    return "\n".join(lines) + "\n"
