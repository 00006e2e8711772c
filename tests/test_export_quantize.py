"""Quantization types come from llama.cpp itself; names are checked before any work starts."""

from __future__ import annotations

import pytest

from trainers.export import ExportError
from trainers.export.quantize import NEEDS_IMATRIX, check_quant_type, parse_quant_list, quant_types
from trainers.export.verify import BOUNDS, LOOSE, bounds_for


def test_the_usual_types_are_offered_by_llama_cpp():
    import llama_cpp

    types = quant_types()
    for name in ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q5_0", "q3_k_m", "bf16"):
        assert types[name] == getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name.upper()}")
    assert "f16" not in types and not NEEDS_IMATRIX & set(types)


def test_quant_lists_are_normalised_and_deduplicated():
    assert parse_quant_list("Q8_0, q4-k-m,,q8_0") == ["q8_0", "q4_k_m"]
    assert parse_quant_list(["MOSTLY_Q5_K_M"]) == ["q5_k_m"]
    assert parse_quant_list("") == [] and parse_quant_list(None) == []


def test_bad_types_say_why_in_one_sentence():
    with pytest.raises(ExportError) as e:
        check_quant_type("q9_9")
    assert "unknown quantization type 'q9_9'" in str(e.value) and "q4_k_m" in str(e.value)
    with pytest.raises(ExportError, match="importance matrix"):
        check_quant_type("iq2_xxs")
    with pytest.raises(ExportError, match="always written"):
        check_quant_type("f16")


def test_every_bound_is_looser_for_fewer_bits():
    assert bounds_for("Q8_0") == BOUNDS["q8_0"]
    order = ["f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]
    for a, b in zip(order, order[1:]):
        assert BOUNDS[a].top1_min >= BOUNDS[b].top1_min and BOUNDS[a].kl_max <= BOUNDS[b].kl_max
    assert bounds_for("tq1_0") == LOOSE
    assert BOUNDS["f16"].top1_min == 0.97 and BOUNDS["f16"].kl_max == 0.01
