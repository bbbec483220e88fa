"""automatic-speech-recognition with Whisper (an encoder-decoder bundle): audio files or
arrays -> transcripts, through the WhisperSession (backends.whisper_session): numpy log-mel
features, the decoder prompt from ``--language`` / ``--task`` or the generation config, greedy
or beam search (``--num-beams``), ``--max-new-tokens`` per 30 s window; longer audio is cut
into 30 s windows transcribed in turn and joined. ``tasks.speech_recognition`` hands Whisper
bundles here."""

from __future__ import annotations

from typing import Any

from modelport.errors import UsageError
from modelport.tasks.base import RunInputs


def is_whisper_bundle(pre: dict[str, Any]) -> bool:
    return (pre.get("audio") or {}).get("kind") == "whisper"


def check_whisper(given: RunInputs) -> None:
    if given.num_beams is not None and given.num_beams < 1:
        raise UsageError(f"--num-beams must be >= 1, got {given.num_beams}")
    if given.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1, got {given.max_new_tokens}")


def transcribe_whisper(session: Any, given: RunInputs) -> tuple[list[str], list[str]]:
    """(clip names, transcripts) of ``given.audio``."""
    from modelport.tasks.audio_classification import clip_names

    check_whisper(given)
    clips = list(given.audio or [])
    texts = session.transcribe(clips, language=given.language, task=given.speech_task,
                               max_new_tokens=given.max_new_tokens, num_beams=given.num_beams)
    return clip_names(clips), texts
