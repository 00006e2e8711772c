"""Quantise an F16 GGUF with llama.cpp's own quantizer, through llama-cpp-python.

The types offered are the file types this llama.cpp build names (`LLAMA_FTYPE_MOSTLY_*`), by
their usual lower-case names (q8_0, q4_k_m, q5_k_m, q4_0, ...), so a newer llama.cpp brings its
new types without a change here. Types that llama.cpp only makes with an importance matrix are
refused up front with that reason rather than failing half-way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trainers.export import ExportError, cpu_threads

# llama.cpp refuses these without an importance matrix, which an export does not make: their
# tensor types need one (tensor_requires_imatrix in llama.cpp's src/llama-quant.cpp).
NEEDS_IMATRIX = frozenset({"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq3_xxs", "q2_k_s"})
# The F16 GGUF is the export's own starting point, not a quantisation.
NOT_QUANTS = frozenset({"f16"})


def quant_types() -> dict[str, int]:
    """Lower-case name -> llama.cpp ftype value, for every type this build can make here."""
    import llama_cpp

    prefix = "LLAMA_FTYPE_MOSTLY_"
    out = {}
    for attr in dir(llama_cpp):
        if attr.startswith(prefix):
            name = attr[len(prefix) :].lower()
            if name not in NOT_QUANTS and name not in NEEDS_IMATRIX:
                out[name] = int(getattr(llama_cpp, attr))
    return dict(sorted(out.items()))


def parse_quant_list(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """'q8_0, Q4_K_M' or a list -> ['q8_0', 'q4_k_m'], checked; ExportError for an unknown name."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        name = str(item).strip().lower().replace("-", "_")
        if name.startswith("mostly_"):
            name = name[len("mostly_") :]
        if not name or name in names:
            continue
        check_quant_type(name)
        names.append(name)
    return names


def check_quant_type(name: str) -> int:
    types = quant_types()
    if name in types:
        return types[name]
    if name in NEEDS_IMATRIX:
        raise ExportError(
            f"quantization type {name!r} needs an importance matrix, which export does not compute; "
            f"choose one of: {', '.join(types)}."
        )
    if name in NOT_QUANTS:
        raise ExportError(
            f"{name!r} is the export's unquantised GGUF and is always written; list only quantization types."
        )
    raise ExportError(f"unknown quantization type {name!r}; llama.cpp offers: {', '.join(types)}.")


def quantize(src: str | Path, dst: str | Path, qtype: str, threads: int | None = None) -> dict[str, Any]:
    """Write `dst` as the `qtype` quantisation of the GGUF `src` (llama_model_quantize).

    It runs in a child process: llama.cpp prints a line per tensor and aborts the whole process
    on some errors, and neither should reach the worker or a terminal. The result holds llama.cpp's
    output under "output" for the job log.
    """
    check_quant_type(qtype)
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ExportError(f"cannot quantize {src}: the file does not exist.")
    threads = int(threads or cpu_threads())
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.export.quantize", str(src), str(dst), qtype, str(threads)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    output = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0 or not dst.is_file():
        dst.unlink(missing_ok=True)
        free = _free_bytes(dst.parent)
        if "No space left" in output or (free is not None and free < src.stat().st_size // 2):
            raise ExportError(
                f"the disk filled up while quantizing {src.name} to {qtype}; free some space and export again."
            )
        reason = next((ln.strip() for ln in reversed(output.splitlines()) if "error" in ln.lower()), "")
        raise ExportError(
            f"llama.cpp could not quantize {src.name} to {qtype} (exit code {proc.returncode}"
            + (f": {reason[:200]}" if reason else "")
            + "); the job log has llama.cpp's output."
        )
    return {"seconds": round(time.monotonic() - t0, 2), "bytes": dst.stat().st_size, "output": output}


def _quantize_here(src: str, dst: str, qtype: str, threads: int) -> int:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = check_quant_type(qtype)
    params.nthread = threads
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


if __name__ == "__main__":
    # python -m trainers.export.quantize SRC DST TYPE THREADS  (the child process of quantize())
    src_arg, dst_arg, type_arg, threads_arg = sys.argv[1:5]
    sys.exit(1 if _quantize_here(src_arg, dst_arg, type_arg, int(threads_arg)) != 0 else 0)
