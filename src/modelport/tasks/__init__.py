"""What a task means on a device: the task names, and the torch-free pre/postprocessing that
`modelport run` applies from a bundle's manifest (numpy, tokenizers and Pillow only).

A task decides the graph's inputs/outputs, the fidelity metric and what `run` prints; the
torch side (loading a Hugging Face folder for a task) lives in ``modelport.models.hf``.
"""

from __future__ import annotations

#: tasks a Hugging Face checkpoint folder can be exported for
TASKS: tuple[str, ...] = (
    "feature-extraction",
    "text-classification",
    "token-classification",
    "image-classification",
    "text-generation",
)

#: the fidelity kind (PreparedModel.task) of each task: classifiers compare top-1 labels
FIDELITY_KIND: dict[str, str] = {
    "feature-extraction": "embedding",
    "text-classification": "classification",
    "token-classification": "classification",
    "image-classification": "classification",
    "text-generation": "text-generation",  # perplexity (modelport.metrics_lm)
}

TEXT_TASKS = frozenset({"feature-extraction", "text-classification", "token-classification"})
