"""One "quiet transformers" helper (engines.models.quiet_transformers): loading, export and the
metrics silence transformers the same way, and each gives the settings back afterwards."""

from __future__ import annotations

import os

from engines.models import quiet_transformers


def test_one_helper_quiets_and_restores():
    from transformers.utils import logging as tlog

    import evaluators.metrics.reference as reference
    import trainers.export
    from engines.embeddings import offline_quiet

    assert trainers.export.quiet_transformers is quiet_transformers
    assert reference.offline_quiet is offline_quiet  # BERTScore and the embedder load the MiniLM the same way
    tlog.enable_progress_bar()
    tlog.set_verbosity_info()
    try:
        with quiet_transformers():
            assert not tlog.is_progress_bar_enabled() and tlog.get_verbosity() == tlog.ERROR
        assert tlog.is_progress_bar_enabled() and tlog.get_verbosity() == tlog.INFO
        offline_before = os.environ.get("HF_HUB_OFFLINE")
        with offline_quiet():  # the MiniLM model loads offline, through the same helper
            assert os.environ["HF_HUB_OFFLINE"] == "1"
            assert not tlog.is_progress_bar_enabled() and tlog.get_verbosity() == tlog.ERROR
        assert os.environ.get("HF_HUB_OFFLINE") == offline_before
        assert tlog.is_progress_bar_enabled() and tlog.get_verbosity() == tlog.INFO
    finally:
        tlog.set_verbosity_warning()
