"""CalibrationSet: sources, leak-free split, hashing, and checks that name the bad sample."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from modelport.calibration_data import CalibrationSet, from_npz_dir, load_source
from modelport.calibration_data.dataset import overlap
from modelport.errors import CalibrationDataError
from modelport.specs import TensorSpec

IMAGE = {"image": TensorSpec("image", "float32", ("batch", 1, 8, 8))}


def _images(n: int, seed: int = 0) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    return CalibrationSet.from_iterable([{"image": rng.random((n, 1, 8, 8), dtype=np.float32)}])


def test_split_is_deterministic_disjoint_and_keeps_duplicates_together():
    data = _images(200)
    dup = CalibrationSet(data.samples + data.samples[:20], source="dup")
    calib, evalset = dup.split(0.3)
    again_calib, again_eval = dup.split(0.3)
    assert calib.sha256() == again_calib.sha256() and evalset.sha256() == again_eval.sha256()
    assert len(calib) + len(evalset) == 220
    assert overlap(calib, evalset) == 0  # a duplicated sample never lands on both sides
    assert 40 < len(evalset) < 100


def test_builtin_sentence_split_never_shares_a_sentence(minilm_data):
    calib, evalset = minilm_data
    assert len(calib) >= 300 and len(evalset) >= 300
    assert not set(calib.texts) & set(evalset.texts)
    assert len(calib) + len(evalset) >= 800


def test_hash_changes_with_content():
    a, b = _images(10), _images(10)
    assert a.sha256() == b.sha256()
    b.samples[3]["image"] = b.samples[3]["image"] + 1e-3
    assert a.sha256() != b.sha256()


def test_npz_dir_with_and_without_batch_dim_and_labels(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "a.npz", image=rng.random((4, 1, 8, 8), dtype=np.float32),
             label=np.arange(4))
    np.savez(tmp_path / "b.npz", image=rng.random((1, 8, 8), dtype=np.float32), label=np.array([7]))
    data = from_npz_dir(tmp_path, IMAGE)
    assert len(data) == 5
    assert data.labels.tolist() == [0, 1, 2, 3, 7]
    data.check(IMAGE)


def test_check_names_the_wrong_sample():
    data = _images(5)
    data.samples[3] = {"image": data.samples[3]["image"].astype(np.float64)}
    with pytest.raises(CalibrationDataError, match="sample 3 .*must be float32, got float64"):
        data.check(IMAGE)
    data = _images(5)
    data.samples[2]["image"][0, 0, 0, 0] = np.nan
    with pytest.raises(CalibrationDataError, match="sample 2.*NaN or Inf"):
        data.check(IMAGE)
    with pytest.raises(CalibrationDataError, match="is empty"):
        CalibrationSet([], source="empty")


def test_small_calibration_set_warns_with_the_count(caplog):
    with caplog.at_level(logging.WARNING, logger="modelport"):
        _images(12).warn_if_small()
    assert "12 samples" in caplog.text


def test_text_file_skips_blank_lines_and_rejects_bad_utf8(minilm, tmp_path, caplog):
    good = tmp_path / "s.txt"
    good.write_text("First sentence here.\n\n   \nSecond one, a bit longer than the first.\n")
    with caplog.at_level(logging.WARNING, logger="modelport"):
        data = load_source(good, minilm.input_specs, tokenizer_json=minilm.tokenizer_json)
    assert len(data) == 2 and "skipped 2 blank line(s)" in caplog.text
    ids = data.stacked()["input_ids"]
    mask = data.stacked()["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == 2
    assert mask[0].sum() < mask[1].sum()  # padded to one length, mask marks real tokens
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbroken \xff\xfe line\n")
    with pytest.raises(CalibrationDataError, match="not valid UTF-8 \\(line 2\\)"):
        load_source(bad, minilm.input_specs, tokenizer_json=minilm.tokenizer_json)


# -- padding with the tokenizer's own pad id -------------------------------------------------
def _word_level_tokenizer(path, vocab: dict[str, int], *, padding: dict | None = None):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if padding is not None:
        tok.enable_padding(**padding)
    tok.save(str(path))
    return path


@pytest.mark.parametrize("vocab, padding, want", [
    # RoBERTa's layout: <s>=0, <pad>=1; positions are numbered from the non-pad tokens
    ({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "hello": 4, "world": 5}, None, 1),
    # the file's own padding setting wins over a token name
    ({"[PAD]": 0, "<unk>": 1, "hello": 2, "world": 3, "<pad>": 4},
     {"pad_id": 4, "pad_token": "<pad>"}, 4),
    # no pad token at all (a decoder vocabulary): 0, hidden by the attention mask
    ({"<unk>": 0, "hello": 1, "world": 2}, None, 0),
])
def test_text_feeds_pad_with_the_tokenizers_pad_id(tmp_path, vocab, padding, want):
    from modelport.calibration_data.text import TextTokenizer
    from modelport.specs import TensorSpec

    path = _word_level_tokenizer(tmp_path / "tokenizer.json", vocab, padding=padding)
    tok = TextTokenizer(path, max_length=8)
    specs = {n: TensorSpec(n, "int64", ("batch", "seq")) for n in ("input_ids", "attention_mask")}
    feeds = tok.encode(["hello world hello", "world"], specs, pad_to=5)
    assert tok.pad_id == want
    assert feeds["input_ids"][1].tolist() == [vocab["world"], want, want, want, want]
    assert feeds["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]
