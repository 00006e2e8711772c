"""The installed llama.cpp must decode the bundled quantised GGUF without crashing.

A native llama.cpp build segfaults while decoding quantised GGUFs on AMX CPUs (the "amx repack"
path; see PLATFORM.md). scripts/setup builds it portable; this test fails if the installed build
crashes, which only a subprocess can observe.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

DECODE = textwrap.dedent(
    """
    import json
    from llama_cpp import Llama
    from engines.models import resolve_model

    path = resolve_model("bundled:smollm2-135m-instruct").path
    llm = Llama(model_path=str(path), n_ctx=256, seed=0, verbose=False)
    prompt = llm.tokenize(b"The capital of France is", add_bos=True)
    out = []
    for token in llm.generate(prompt, top_k=1, temp=0.0):
        out.append(int(token))
        if len(out) == 16:
            break
    print(json.dumps({"tokens": out, "text": llm.detokenize(out).decode("utf-8", "replace")}))
    """
)


@pytest.mark.slow
def test_bundled_q4_gguf_decodes_16_tokens_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-c", DECODE], capture_output=True, text=True, timeout=300)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        pytest.fail(
            f"decoding the bundled Q4_1 GGUF killed the process with {name} (the AMX crash of a "
            f"native llama.cpp build?); rebuild llama-cpp-python portable with scripts/setup.\n"
            f"stderr:\n{proc.stderr[-3000:]}"
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["tokens"]) == 16
    assert result["text"].strip()
