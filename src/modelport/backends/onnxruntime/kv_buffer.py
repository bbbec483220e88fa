"""The KV cache of an ORT LM bundle as one preallocated buffer per layer, written in place.

Without it every decode step feeds the whole cache in and gets a new, one-token-longer copy
back (the presents): per step a copy of the whole cache, growing with the context. When the
attention was rewritten to ``com.microsoft.GroupQueryAttention`` (lm_attention.py, runtime
setting ``kv_buffer: shared``), the generation loop instead allocates, per past input, one
buffer ``[batch, kv_heads, prompt + max_new_tokens, head_dim]`` and binds it, through ONNX
Runtime's IO binding, as both the past input and the present output of its layer: the kernel
sees the same memory on both sides (its ``past_present_share_buffer`` mode, as
onnxruntime-genai runs it), reads ``total_sequence_length`` valid positions and writes only
the new tokens' keys and values after them. The graph computes the valid length from
``attention_mask`` (the past length is ``len(mask) - len(input_ids)``), so the feeds are the
same as on the concat path, less the pasts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelport.specs import TensorSpec


class SharedKVCache:
    """One generation's cache: ``step(feeds)`` runs the graph on ``input_ids``,
    ``attention_mask`` and ``position_ids`` and returns ``{"logits": ...}``; the keys and
    values stay in the buffers for the next step."""

    def __init__(self, session: Any, past_specs: Sequence[TensorSpec], batch: int,
                 length: int) -> None:
        import onnxruntime as ort

        self.session = session
        self.length = length
        self.binding = session.io_binding()
        self._buffers = []  # the numpy arrays behind the OrtValues: alive as long as the cache
        for spec in past_specs:
            array = np.zeros((batch, spec.shape[1], length, spec.shape[3]), np.float32)
            value = ort.OrtValue.ortvalue_from_numpy(array)
            self._buffers.append((array, value))
            self.binding.bind_ortvalue_input(spec.name, value)
            self.binding.bind_ortvalue_output(
                spec.name.replace("past_key_values", "present", 1), value)
        self._feeds: dict[str, Any] = {}
        self._inputs = {i.name for i in session.get_inputs()}
        #: inputs with a default (logits_to_keep: lm_head.py); IO binding takes them only as
        #: OrtValues (bind_cpu_input looks the name up among the required inputs)
        self._optional = {i.name for i in session.get_overridable_initializers()}

    def step(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        total = int(feeds["attention_mask"].shape[1])
        if total > self.length:
            raise ValueError(f"{total} tokens do not fit the KV buffer of {self.length}")
        # the feeds the graph takes (input_ids, attention_mask, position_ids, and at
        # prefill logits_to_keep: lm_head.py); a binding outlives its step, so the arrays
        # stay referenced until the next binding of the same name
        for name, array in feeds.items():
            if name in self._inputs:
                self._feeds[name] = np.ascontiguousarray(array, np.int64)
                self.binding.bind_cpu_input(name, self._feeds[name])
            elif name in self._optional:
                import onnxruntime as ort

                self._feeds[name] = ort.OrtValue.ortvalue_from_numpy(
                    np.ascontiguousarray(array, np.int64))
                self.binding.bind_ortvalue_input(name, self._feeds[name])
        # logits change shape between prefill and decode: ORT allocates them on every call
        self.binding.bind_output("logits")
        self.session.run_with_iobinding(self.binding)
        # the outputs come back in binding order; logits are the only rank-3 one
        logits = next(v for v in self.binding.get_outputs() if len(v.shape()) == 3)
        return {"logits": logits.numpy()}
