"""What made a job: `manifest.json` in its folder, and the differences between two of them.

Every job records, when its worker starts, the project's commit (or version), the versions of
the packages that shape results, each model it used (name, revision or sha256 of the files), the
sha256 of each data file, the seed, its settings and the machine (CPU model and flags, cores,
RAM, GPUs with memory through `nvidia-smi`). Results of two jobs whose manifests differ in any of
these are flagged with what differs (`manifest_differences`), wherever results are compared.

Written by the worker, not when the job is created: the worker runs where the work runs (the
machine, the packages it imports), the data files exist by then (a dataset job created just
before may still be building them), and hashing a multi-GB model never blocks the TUI. A resumed
job writes it again; the previous one stays as `manifest.json.bak` and a change is an event.

Stdlib only (the lowest floor): models are passed in already located (`engines.models`
resolves names) or as names with a `resolve` callable; nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
SCHEMA = 1

# Distributions whose versions change what a job computes (pip names). Absent ones are left out.
PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "tokenizers",
    "safetensors",
    "huggingface-hub",
    "unsloth",
    "unsloth-zoo",
    "bitsandbytes",
    "xformers",
    "flash-attn",
    "deepspeed",
    "llama-cpp-python",
    "gguf",
    "numpy",
    "sacrebleu",
    "rouge-score",
    "bert-score",
    "openai",
    "tensorboard",
    "wandb",
)
# CPU flags that change speed or numerics of training and llama.cpp kernels.
CPU_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "bf16",
    "i8mm",
)
# Files of an HF folder that define the model (hashed when no Hub revision is known).
_MODEL_FILE = re.compile(r"\.(safetensors|bin|json|model|gguf|txt|jinja|tiktoken)$")
_HUB_SNAPSHOT = re.compile(r"models--(?P<repo>[^/]+)/snapshots/(?P<rev>[0-9a-f]{40})")


# ----------------------------------------------------------------------------- the parts


def project_info() -> dict[str, Any]:
    """The checkout's commit (and whether it has uncommitted changes), else the package version."""
    root = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {"name": "persona-tui"}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        info["version"] = importlib.metadata.version("persona-tui")
    if (root / ".git").exists() and shutil.which("git"):
        try:
            head = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
            info.update(commit=head, dirty=bool(dirty))
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions (from package metadata: nothing is imported), plus Python's own."""
    out = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def _cpuinfo() -> tuple[str, frozenset[str], int]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), frozenset(), 0
    model, cores = "", set()
    flags: frozenset[str] = frozenset()
    phys = core = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "cpu model") and not model:
            model = value
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
            cores.add((phys, core))
    return model or platform.processor() or platform.machine(), flags, len(cores)


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def gpus() -> list[dict[str, Any]]:
    """Each NVIDIA GPU with its memory, through nvidia-smi (no torch); [] without one."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4 and parts[0].isdigit():
            mem = int(parts[2]) if parts[2].isdigit() else None
            found.append({"index": int(parts[0]), "name": parts[1], "memory_mib": mem, "driver": parts[3]})
    return found


def hardware() -> dict[str, Any]:
    model, flags, physical = _cpuinfo()
    ram = _ram_bytes()
    out: dict[str, Any] = {
        "cpu": model,
        "cpu_flags": sorted(f for f in CPU_FLAGS if f in flags),
        "cores_logical": os.cpu_count() or 0,
        "cores_physical": physical or None,
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "gpus": gpus(),
    }
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        out["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return out


# ----------------------------------------------------------------------------- hashing


def hash_cache_path() -> Path:
    """Where file hashes are kept between jobs: the project's cache root, as engines.models.cache_root
    has it (PERSONA_TUI_CACHE, else XDG_CACHE_HOME or ~/.cache, then persona-tui)."""
    env = os.environ.get("PERSONA_TUI_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "persona-tui"
    return root / "sha256.json"


class HashCache:
    """sha256 of files, remembered by path, size and mtime so a big model is hashed once."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or hash_cache_path()
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False
        self.hashed = 0  # files actually read in this process (for tests and the log)
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self.entries = data

    def sha256(self, file: Path) -> str:
        real = os.path.realpath(file)
        st = os.stat(real)
        known = self.entries.get(real)
        if isinstance(known, list) and len(known) == 3 and known[:2] == [st.st_size, st.st_mtime_ns]:
            return str(known[2])
        digest = hashlib.sha256()
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        self.hashed += 1
        value = digest.hexdigest()
        self.entries[real] = [st.st_size, st.st_mtime_ns, value]
        self.dirty = True
        return value

    def save(self) -> None:
        """Merge into the file on disk (another job may have added entries) and write it atomically."""
        if not self.dirty:
            return
        from sessions.store import atomic_write

        with contextlib.suppress(OSError, ValueError):
            on_disk = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(on_disk, dict):
                self.entries = {**on_disk, **self.entries}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(self.entries) + "\n", backup=False)
            self.dirty = False
        except OSError:
            pass  # a read-only cache costs a re-hash next time, nothing more


def file_entry(path: str | os.PathLike[str], cache: HashCache) -> dict[str, Any]:
    """{"path", "bytes", "sha256"} of one file, or {"path", "missing": true}."""
    p = Path(path).expanduser()
    try:
        return {"path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": cache.sha256(p)}
    except FileNotFoundError:
        return {"path": str(p), "missing": True}
    except OSError as e:
        return {"path": str(p), "error": f"{type(e).__name__}: {e.strerror or e}"}


def folder_digest(folder: Path, cache: HashCache) -> tuple[str, int]:
    """One sha256 over the model-defining files at the top of an HF folder (name + file hash)."""
    digest = hashlib.sha256()
    total = 0
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and _MODEL_FILE.search(f.name):
            digest.update(f"{f.name}\0{cache.sha256(f)}\n".encode())
            total += f.stat().st_size
    return digest.hexdigest(), total


def model_entry(model: Any, cache: HashCache, resolve: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """A model as the manifest keeps it. `model` is a located model (an object with `name` and
    `path`, like engines.models.ResolvedModel), a path, or a name that `resolve` can locate; a name
    nothing locates (a remote API's model) is kept as a name."""
    name = str(getattr(model, "name", model))
    path = getattr(model, "path", None)
    if path is None and resolve is not None and isinstance(model, str):
        try:
            located = resolve(model)
            path = getattr(located, "path", None)
        except Exception:  # noqa: BLE001 - not locatable here (remote, missing): recorded by name
            path = None
    if path is None and isinstance(model, (str, os.PathLike)) and Path(model).expanduser().exists():
        path = Path(model).expanduser()
    entry: dict[str, Any] = {"name": name}
    if path is None:
        entry["kind"] = "remote"
        return entry
    path = Path(path).resolve()
    entry["path"] = str(path)
    try:
        if path.is_file():
            entry.update(kind="file", bytes=path.stat().st_size, sha256=cache.sha256(path))
            return entry
        entry["kind"] = "folder"
        config = path / "config.json"
        if config.is_file():
            with contextlib.suppress(OSError, ValueError):
                cfg = json.loads(config.read_text(encoding="utf-8"))
                for key in ("_name_or_path", "_commit_hash"):
                    if isinstance(cfg.get(key), str) and cfg[key]:
                        entry[key.lstrip("_")] = cfg[key]
        hub = _HUB_SNAPSHOT.search(str(path))
        if hub:
            entry.update(repo=hub["repo"].replace("--", "/"), revision=hub["rev"])
        else:
            entry["sha256"], entry["bytes"] = folder_digest(path, cache)
    except OSError as e:
        entry["error"] = f"{type(e).__name__}: {e.strerror or e}"
    return entry


# ----------------------------------------------------------------------------- writing and reading


def _flat_files(datasets: Any) -> dict[str, str]:
    """Data files as key -> path, from a mapping or a list of paths (key: the file name); None skipped."""
    if datasets is None:
        return {}
    if isinstance(datasets, Mapping):
        return {str(k): os.fspath(v) for k, v in datasets.items() if v}
    out: dict[str, str] = {}
    for item in datasets:
        if isinstance(item, (list, tuple)):
            out.update(_flat_files(item))
        elif item:
            out[Path(item).name] = os.fspath(item)
    return out


def build_manifest(
    *,
    kind: str = "",
    job_id: str = "",
    models: Mapping[str, Any] | None = None,
    datasets: Any = None,
    seed: Any = None,
    settings: Mapping[str, Any] | None = None,
    resolve: Callable[[str], Any] | None = None,
    cache: HashCache | None = None,
) -> dict[str, Any]:
    cache = cache or HashCache()
    started = time.monotonic()
    manifest = {
        "schema": SCHEMA,
        "job": job_id,
        "kind": kind,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "project": project_info(),
        "packages": package_versions(),
        "models": {role: model_entry(m, cache, resolve) for role, m in (models or {}).items() if m},
        "datasets": {key: file_entry(p, cache) for key, p in _flat_files(datasets).items()},
        "seed": seed,
        "settings": dict(settings or {}),
        "hardware": hardware(),
    }
    manifest["seconds"] = round(time.monotonic() - started, 3)
    cache.save()
    return manifest


def write_manifest(
    job: Any,  # a JobReporter, trainers.train.job's RankReporter, or a job folder
    *,
    models: Mapping[str, Any] | None = None,
    datasets: Any = None,
    seed: Any = None,
    settings: Mapping[str, Any] | None = None,
    resolve: Callable[[str], Any] | None = None,
    cache: HashCache | None = None,
) -> dict[str, Any]:
    """Write `manifest.json` into the job's folder (atomically, the previous one kept as .bak).

    `job` is the worker's JobReporter (its spec is the default settings; a change from an earlier
    attempt's manifest becomes a "manifest_changed" event) or a job folder.
    """
    from sessions.store import atomic_write

    job_dir = Path(getattr(job, "dir", job))
    spec = getattr(job, "spec", None) or {}
    manifest = build_manifest(
        kind=str(spec.get("kind", "")),
        job_id=str(spec.get("id", job_dir.name)),
        models=models,
        datasets=datasets,
        seed=seed,
        settings=settings if settings is not None else spec,
        resolve=resolve,
        cache=cache,
    )
    before = read_manifest(job_dir)
    atomic_write(job_dir / MANIFEST_FILE, json.dumps(manifest, indent=1, default=str) + "\n", backup=True)
    if before is not None and hasattr(job, "event"):
        changed = manifest_differences(before, manifest)
        if changed:
            job.event(event="manifest_changed", differences=changed)
            job.log("this attempt runs with a different manifest than the last: " + "; ".join(changed))
    return manifest


def read_manifest(job_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The job's manifest, or None when it has none (an older job) or it cannot be read."""
    try:
        data = json.loads((Path(job_dir) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------------- comparing and showing


def _model_id(entry: Mapping[str, Any]) -> str:
    if entry.get("revision"):
        return f"revision {str(entry['revision'])[:12]}"
    if entry.get("sha256"):
        return f"sha256 {str(entry['sha256'])[:12]}"
    return "no hash" if entry.get("kind") != "remote" else "remote"


def _content_id(entry: Mapping[str, Any]) -> str:
    """What identifies a model's or a data file's contents, for a difference line."""
    if entry.get("missing"):
        return "missing"
    return _model_id(entry)


def _gpu_text(gpus_: Any) -> str:
    if not gpus_:
        return "no GPU"
    return ", ".join(f"{g.get('name')} {round((g.get('memory_mib') or 0) / 1024)} GiB" for g in gpus_)


def manifest_differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> list[str]:
    """What differs between two jobs' manifests in what can change results without being the point
    of the comparison: package versions, the project's commit, the files behind a model or data
    set of the same name, and the hardware. Different models or data sets (another run's adapter,
    another format's data) are what a comparison compares, so only a same name with other
    contents is flagged. Seeds and settings are left to the results themselves. [] when either
    manifest is missing."""
    if not a or not b:
        return []
    out: list[str] = []
    pa, pb = a.get("packages") or {}, b.get("packages") or {}
    for name in sorted(set(pa) | set(pb)):
        if pa.get(name) != pb.get(name):
            out.append(f"package {name} {pa.get(name) or 'not installed'} vs {pb.get(name) or 'not installed'}")
    ca, cb = (a.get("project") or {}).get("commit"), (b.get("project") or {}).get("commit")
    if ca and cb and ca != cb:
        out.append(f"project commit {ca[:10]} vs {cb[:10]}")
    for section, what in (("models", "model"), ("datasets", "data")):
        ma, mb = a.get(section) or {}, b.get(section) or {}
        for key in sorted(set(ma) & set(mb)):
            ea, eb = ma[key] or {}, mb[key] or {}
            if section == "models" and ea.get("name") != eb.get("name"):
                continue
            if section == "datasets" and ea.get("missing") and eb.get("missing"):
                continue
            ida, idb = _content_id(ea), _content_id(eb)
            if ida != idb:
                label = f"{what} {key}" + (
                    f" ({ea.get('name')})" if section == "models" and ea.get("name") != key else ""
                )
                out.append(f"{label}: {ida} vs {idb}")
    ha, hb = a.get("hardware") or {}, b.get("hardware") or {}
    if ha.get("cpu") != hb.get("cpu"):
        out.append(f"CPU {ha.get('cpu') or '?'} vs {hb.get('cpu') or '?'}")
    fa, fb = set(ha.get("cpu_flags") or []), set(hb.get("cpu_flags") or [])
    if fa != fb:
        parts = [
            f"only in the {which}: {' '.join(sorted(only))}"
            for which, only in (("first", fa - fb), ("second", fb - fa))
            if only
        ]
        out.append("CPU flags " + "; ".join(parts))
    for key, label in (("cores_logical", "cores"), ("ram_gib", "RAM GiB")):
        if ha.get(key) != hb.get(key):
            out.append(f"{label} {ha.get(key)} vs {hb.get(key)}")
    if _gpu_text(ha.get("gpus")) != _gpu_text(hb.get("gpus")):
        out.append(f"GPUs {_gpu_text(ha.get('gpus'))} vs {_gpu_text(hb.get('gpus'))}")
    return out


KEY_PACKAGES = ("torch", "transformers", "peft", "trl", "llama-cpp-python", "unsloth")


def manifest_summary(m: Mapping[str, Any] | None) -> list[str]:
    """A few lines for a pane: project, key packages, models, data, seed, machine."""
    if not m:
        return ["no manifest (the job was made before jobs recorded one, or has not started)"]
    p = m.get("project") or {}
    where = f"{p.get('name', 'persona-tui')} {p.get('version', '')}".strip()
    if p.get("commit"):
        where += f" @ {p['commit'][:10]}" + (" (uncommitted changes)" if p.get("dirty") else "")
    pk = m.get("packages") or {}
    lines = [where, " · ".join(f"{n} {pk[n]}" for n in KEY_PACKAGES if n in pk) or "no ML packages"]
    for role, e in (m.get("models") or {}).items():
        lines.append(
            f"model {role}: {e.get('name')} ({_model_id(e)})"
            if e.get("name") != role
            else f"model {role} ({_model_id(e)})"
        )
    for key, e in (m.get("datasets") or {}).items():
        lines.append(f"data {key}: " + (f"sha256 {e['sha256'][:12]}" if e.get("sha256") else "missing"))
    if m.get("seed") is not None:
        lines.append(f"seed {m['seed']}")
    h = m.get("hardware") or {}
    flags = " ".join(f for f in h.get("cpu_flags") or [] if f.startswith(("amx", "avx512_bf16")))
    lines.append(
        f"{h.get('cpu') or 'CPU ?'} · {h.get('cores_logical')} cores · {h.get('ram_gib')} GiB"
        + (f" · {flags}" if flags else "")
    )
    lines.append(_gpu_text(h.get("gpus")))
    return lines


def format_manifest(m: Mapping[str, Any]) -> str:
    """The whole manifest as indented JSON (what `jobs --manifest` prints and the pane opens)."""
    return json.dumps(m, indent=2, default=str)


def job_differences(job_dirs: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Each job's differences from the first one's manifest, as "JOB: what" lines; jobs without a
    manifest are named as such (nothing can be said about them)."""
    dirs = [Path(d) for d in job_dirs]
    if len(dirs) < 2:
        return []
    first = read_manifest(dirs[0])
    out = []
    if first is None:
        out.append(f"{dirs[0].name}: no manifest, so its packages, data and machine are unknown")
    for d in dirs[1:]:
        m = read_manifest(d)
        if m is None:
            out.append(f"{d.name}: no manifest, so its packages, data and machine are unknown")
            continue
        out += [f"{d.name} vs {dirs[0].name}: {line}" for line in manifest_differences(first, m)]
    return out


def source_jobs(job_dir: str | os.PathLike[str], spec: Mapping[str, Any]) -> list[Path]:
    """The jobs of the same workspace whose products a job's spec uses (an eval's adapters, an
    export's training job): folders under `jobs/` with a status, found from the paths in `spec`."""
    root = Path(job_dir).resolve().parent
    found: dict[Path, None] = {}

    def visit(value: Any) -> None:
        if isinstance(value, Mapping):
            for v in value.values():
                visit(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        elif isinstance(value, str) and value.startswith(str(root) + os.sep):
            top = root / Path(value).relative_to(root).parts[0]
            if top != Path(job_dir).resolve() and (top / "status.json").is_file():
                found[top] = None

    visit(spec)
    return list(found)
