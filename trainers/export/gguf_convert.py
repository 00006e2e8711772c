"""HF folder -> GGUF, and PEFT adapter -> LoRA GGUF, with llama.cpp's own converters.

The converters and their matching gguf-py come from the llama-cpp-python source distribution the
project installs (unpacked by scripts/setup), so the GGUF they write is one this llama.cpp reads.
They run as subprocesses with that gguf-py first on PYTHONPATH (the PyPI `gguf` may differ) and
with the Hugging Face hub offline: a converter must never reach for the network.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trainers.export import ExportError

OUTTYPES = ("f32", "f16", "bf16", "q8_0")


def _converter_env(converters: Path) -> dict[str, str]:
    env = dict(os.environ)
    gguf_py = str(converters / "gguf-py")
    env["PYTHONPATH"] = gguf_py + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _why(output: str) -> str:
    """The converter's own reason for failing, in one line."""
    if "No space left on device" in output:
        return "the disk is full"
    errors = [ln.split(":", 2)[-1].strip() for ln in output.splitlines() if ln.startswith("ERROR:")]
    errors = [e for e in errors if e]
    if errors:
        return errors[0]
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln):
            return ln
    return lines[-1] if lines else "no output"


def run_converter(script: str, args: list[str], what: str, timeout: float | None = None) -> str:
    """Run one of llama.cpp's converter scripts; its output, or an ExportError with its reason."""
    from engines.base import EngineError
    from engines.models import converter_dir

    try:
        converters = converter_dir()
    except EngineError as e:
        raise ExportError(str(e)) from None
    cmd = [sys.executable, str(converters / script), *args]
    try:
        proc = subprocess.run(
            cmd,
            env=_converter_env(converters),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ExportError(f"llama.cpp's {script} took longer than {timeout:.0f} s {what}; see the job log.") from None
    output = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        reason = _why(output)
        if reason == "the disk is full":
            raise ExportError(f"the disk filled up while {what}; free some space and export again.")
        raise ExportError(f"llama.cpp's {script} failed {what}: {reason}.")
    return output


def _check_outtype(outtype: str, allowed: tuple[str, ...]) -> None:
    if outtype not in allowed:
        raise ExportError(f"the converter's output type {outtype!r} is not one of {', '.join(allowed)}.")


def convert_model(
    hf_dir: str | Path, out_path: str | Path, outtype: str = "f16", model_name: str = ""
) -> dict[str, Any]:
    """`convert_hf_to_gguf.py hf_dir --outfile out_path --outtype f16 [--model-name NAME]`."""
    _check_outtype(outtype, OUTTYPES)
    hf_dir, out_path = Path(hf_dir), Path(out_path)
    if not (hf_dir / "config.json").is_file():
        raise ExportError(f"{hf_dir} has no config.json, so llama.cpp's converter cannot read it as an HF model.")
    t0 = time.monotonic()
    output = run_converter(
        "convert_hf_to_gguf.py",
        [
            str(hf_dir),
            "--outfile",
            str(out_path),
            "--outtype",
            outtype,
            *(["--model-name", model_name] if model_name else []),
        ],
        f"converting {hf_dir.name} to GGUF {outtype.upper()}",
    )
    if not out_path.is_file():
        raise ExportError(f"llama.cpp's convert_hf_to_gguf.py ended without writing {out_path}: {_why(output)}.")
    return {"seconds": round(time.monotonic() - t0, 2), "bytes": out_path.stat().st_size}


def convert_lora(
    adapter_dir: str | Path, base_hf_dir: str | Path, out_path: str | Path, outtype: str = "f16"
) -> dict[str, Any]:
    """`convert_lora_to_gguf.py adapter_dir --base base_hf_dir --outfile out_path --outtype f16`."""
    _check_outtype(outtype, OUTTYPES)
    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    t0 = time.monotonic()
    output = run_converter(
        "convert_lora_to_gguf.py",
        [str(adapter_dir), "--base", str(base_hf_dir), "--outfile", str(out_path), "--outtype", outtype],
        f"converting the adapter {adapter_dir} to a LoRA GGUF",
    )
    if not out_path.is_file():
        raise ExportError(f"llama.cpp's convert_lora_to_gguf.py ended without writing {out_path}: {_why(output)}.")
    return {"seconds": round(time.monotonic() - t0, 2), "bytes": out_path.stat().st_size}
