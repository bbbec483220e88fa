"""The one rule for token inputs past a model's limit (tasks/input_limit.py): refused with
both numbers and the way out, never cut; used by causal-LM generate and seq2seq inputs."""

from __future__ import annotations

import pytest

from modelport.errors import InputError
from modelport.tasks.input_limit import check_length, untruncated


@pytest.mark.parametrize("count, limit, new, message", [
    (35, 32, 1, ("the prompt is 35 tokens, longer than the model's context length 32 (1 more "
                "to generate): shorten it to at most 31 tokens")),
    (32, 32, 1, "fills the model's context length 32, leaving no room for new tokens"),
    (30, 32, 5, "lower --max-new-tokens to at most 2 or shorten the prompt"),
    (600, 512, 0, ("the prompt is 600 tokens, longer than the model's context length 512: "
                  "shorten it to at most 512 tokens")),
])
def test_past_the_limit_is_one_line_with_the_numbers(count, limit, new, message):
    with pytest.raises(InputError) as info:
        check_length(count, limit, new_tokens=new)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_within_the_limit_or_no_limit_passes_and_tokenizer_truncation_is_off():
    from tokenizers import Tokenizer, models, pre_tokenizers

    check_length(32, 32)
    check_length(30, 32, new_tokens=2)
    check_length(10_000, None, new_tokens=10)
    with pytest.raises(InputError, match="the input is 9 tokens"):
        check_length(9, 8, what="input")
    tok = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.enable_truncation(4)
    assert len(untruncated(tok).encode("a a a a a a a a").ids) == 8
