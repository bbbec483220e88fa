"""The graph I/O and preprocessing of a Whisper folder (automatic-speech-recognition with an
encoder-decoder), read without loading its weights (``modelport inspect`` and export share it
through ``describe.plan_folder``).

- encoder: ``input_features`` float32 [batch, n_mels, 3000] (the numpy log-mel features of
  ``tasks.whisper_features``, 30 s) -> ``cross.{i}.key/value`` [batch, heads, 1500, head_dim]
- decoder: ``decoder_input_ids`` [batch, 1], ``past.*``, ``cross.*`` -> ``logits`` [batch, 1,
  vocab], ``present.*`` (models.hf.seq2seq's decoder step, without an attention mask: Whisper's
  encoder never pads).

``preprocessing.audio`` holds the feature settings (``kind`` "whisper"), so `run --audio`
computes the features without torch; the tokenizer ships as tokenizer.json.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.specs import TensorSpec

if TYPE_CHECKING:
    from pathlib import Path

    from modelport.models.hf.folder import Folder

TASK = "automatic-speech-recognition"


def plan_whisper(folder: Folder, pre: dict[str, Any]
                 ) -> tuple[list[TensorSpec], TensorSpec, Path, int]:
    """(inputs, output, tokenizer.json, tokenizer max length); fills ``pre``."""
    from modelport.models.hf.tokenizer import text_inputs
    from modelport.tasks.whisper_features import whisper_params

    params = whisper_params(folder.path)
    config = folder.config
    mels = int(config.get("num_mel_bins") or params["feature_size"])
    if mels != params["feature_size"]:
        from modelport.errors import ModelLoadError

        raise ModelLoadError(f"'{folder.path}': the model takes {mels} mel bins, its "
                             f"preprocessor_config.json makes {params['feature_size']}")
    text = text_inputs(folder.path, config)
    pre.update({"task": TASK, "audio": params, "generation_config": "generation_config.json",
                "max_source_length": None,
                "max_target_positions": int(config.get("max_target_positions") or 448)})
    inputs = [TensorSpec("input_features", "float32",
                         ("batch", mels, int(params["nb_max_frames"])))]
    output = TensorSpec("logits", "float32", ("batch", 1, int(config.get("vocab_size", 0))
                                              or "vocab"))
    return inputs, output, text.tokenizer_json, text.max_length
