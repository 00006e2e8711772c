"""Downloads from the Hugging Face Hub into the normal HF cache: base models and study data.

Only the files a model needs are fetched (config, tokenizer files, safetensors and their index,
generation config; `.bin` weights only when a repo has no safetensors; no other formats), one file
at a time through `huggingface_hub.hf_hub_download`, so a kill loses at most the file being
written and a rerun skips every finished one. A token is never written anywhere: huggingface_hub
reads `HF_TOKEN` or the login of `hf auth login` itself. Every failure is one `HubError` sentence
(gated, not found, no weights, Hub unreachable, disk full).

The endpoint and cache folder are read from the environment at each call (`HF_ENDPOINT`,
`HF_HUB_CACHE` / `HF_HOME`), not from huggingface_hub's import-time constants, so a process that
imported it earlier still follows them. huggingface_hub is imported only inside functions.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.base import EngineError

DEFAULT_ENDPOINT = "https://huggingface.co"

# What a causal LM needs to load with transformers: matched against the file's name (not its folder).
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "*.tiktoken",
)
SAFETENSORS = ("*.safetensors", "model.safetensors.index.json")
BIN_WEIGHTS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")

# The studies' public data: the short names of `persona-tui data pull`.
STUDY_DATASETS = {
    "spc": "google/Synthetic-Persona-Chat",
    "tailoring": "nbalepur/persona-tailoring",
    "persona-inference": "nbalepur/persona-inference",
}
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubError(EngineError):
    """A Hub download that cannot be done; the message is one sentence with the fix."""


class PullStopped(Exception):
    """Raised from the progress callback when the caller asks the pull to stop."""


# ----------------------------------------------------------------------------- where


def hub_cache_dir() -> Path:
    """The HF cache huggingface_hub uses: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_repo_id(name: str) -> bool:
    return bool(REPO_ID.match(name or "")) and not Path(name).expanduser().exists()


# ----------------------------------------------------------------------------- which files


def _matches(path: str, patterns: Iterable[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def select_model_files(paths: Iterable[str]) -> list[str]:
    """The files of a model repo worth downloading: config, tokenizer, generation config and the
    weights as safetensors (or `.bin` only where there are no safetensors). Files in sub-folders
    are other variants (onnx/, original/, gguf/...) and are left out. Empty when the repo has no
    loadable weights."""
    top = [p for p in paths if "/" not in p]
    weights = [p for p in top if _matches(p, SAFETENSORS)]
    if not any(p.endswith(".safetensors") for p in weights):
        weights = [p for p in top if _matches(p, BIN_WEIGHTS)]
    if not any(p.endswith((".safetensors", ".bin")) for p in weights):
        return []
    # Index files first: a snapshot holding shards but no index could pass for a whole model.
    return sorted(p for p in top if _matches(p, MODEL_FILES)) + sorted(
        weights, key=lambda p: (not p.endswith(".json"), p)
    )


def select_dataset_files(paths: Iterable[str]) -> list[str]:
    return sorted(p for p in paths if not p.rsplit("/", 1)[-1].startswith(".gitattributes"))


# ----------------------------------------------------------------------------- errors


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return out


def explain(exc: BaseException, repo_id: str, repo_type: str = "model", revision: str | None = None) -> str | None:
    """One sentence for a failed Hub call, or None when it is not a Hub or disk failure."""
    from huggingface_hub import errors as hf_errors

    what = f"{'dataset ' if repo_type == 'dataset' else ''}{repo_id}"
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return (
                f"the disk filled up while downloading {what} into {hub_cache_dir()}; free some space "
                "(or point HF_HUB_CACHE at a bigger disk) and pull again: finished files are kept."
            )
    for e in _chain(exc):
        if isinstance(e, hf_errors.GatedRepoError):
            return (
                f"{what} is gated: accept its terms on the Hub page, then set HF_TOKEN or run "
                "'hf auth login' and pull again (the workbench never stores a token)."
            )
        if isinstance(e, hf_errors.RevisionNotFoundError):
            return f"{what} has no revision {revision!r}; name a branch, tag or commit that exists."
        if isinstance(e, hf_errors.RepositoryNotFoundError):
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status == 401:
                return (
                    f"{what} was not found or needs a login: check the id, and for a private or gated "
                    "repo set HF_TOKEN or run 'hf auth login'."
                )
            return f"{what} does not exist on {hub_endpoint()}; check the repo id (owner/name)."
        if isinstance(e, hf_errors.OfflineModeIsEnabled):
            return f"cannot download {what}: HF_HUB_OFFLINE is set; unset it to reach the Hub."
        if isinstance(e, hf_errors.HfHubHTTPError):
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status in (401, 403):
                return (
                    f"the Hub refused {what} ({status}): set HF_TOKEN or run 'hf auth login' with an account "
                    "that can read it."
                )
            return f"the Hub answered {status} for {what}; try again later (finished files are kept)."
    for e in _chain(exc):
        name = type(e).__name__
        if name in (
            "ConnectError",
            "ConnectTimeout",
            "ReadTimeout",
            "TimeoutException",
            "RemoteProtocolError",
            "ReadError",
            "NetworkError",
            "ConnectionError",
        ) or isinstance(e, (ConnectionError, hf_errors.LocalEntryNotFoundError)):
            return (
                f"the Hub at {hub_endpoint()} cannot be reached to download {what}; check the network "
                "(or HF_ENDPOINT) and pull again: finished files are kept."
            )
    return None


# ----------------------------------------------------------------------------- pulling


@dataclass(frozen=True)
class PullPlan:
    repo_id: str
    repo_type: str
    revision: str  # what was asked ("main" by default)
    commit: str  # the commit it resolved to
    files: tuple[tuple[str, int], ...]  # (path, size) of each file to fetch

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


def plan_pull(repo_id: str, revision: str | None = None, repo_type: str = "model") -> PullPlan:
    """Ask the Hub what `repo_id` holds at `revision` and pick the files to fetch (HubError when
    the repo cannot be read or, for a model, has no weights)."""
    if not REPO_ID.match(repo_id or ""):
        raise HubError(f"{repo_id!r} is not a Hub repo id; write it as owner/name, e.g. Qwen/Qwen3-0.6B.")
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    revision = revision or "main"
    api = HfApi(endpoint=hub_endpoint())
    try:
        info = api.repo_info(repo_id, repo_type=repo_type, revision=revision)
        commit = info.sha
        entries = [
            f
            for f in api.list_repo_tree(repo_id, repo_type=repo_type, revision=commit, recursive=True)
            if isinstance(f, RepoFile)
        ]
    except Exception as e:  # noqa: BLE001 - translated below; anything else is re-raised
        msg = explain(e, repo_id, repo_type, revision)
        if msg:
            raise HubError(msg) from e
        raise
    sizes = {f.path: int(f.size or 0) for f in entries}
    chosen = select_model_files(sizes) if repo_type == "model" else select_dataset_files(sizes)
    if not chosen:
        if repo_type == "model":
            raise HubError(
                f"{repo_id} has no weights transformers can load (no .safetensors or pytorch_model .bin "
                "at its top level); pick a repo with safetensors, or name a .gguf file as the base model."
            )
        raise HubError(f"dataset {repo_id} holds no files at revision {revision!r}.")
    return PullPlan(repo_id, repo_type, revision, str(commit), tuple((p, sizes[p]) for p in chosen))


class _Bytes:
    """A tqdm stand-in for huggingface_hub's per-file bar: forwards byte counts to a callback."""

    def __init__(self, on_bytes: Callable[[int], None], **kwargs: Any) -> None:
        self.on_bytes = on_bytes
        self.n = int(kwargs.get("initial") or 0)
        self.total = kwargs.get("total")
        if self.n:
            on_bytes(self.n)

    def __enter__(self) -> _Bytes:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def update(self, n: int | float | None = 1) -> None:
        n = int(n or 0)
        self.n += n
        self.on_bytes(n)

    def close(self) -> None:
        pass

    def set_postfix_str(self, *a: Any, **k: Any) -> None:
        pass

    def refresh(self, *a: Any, **k: Any) -> None:
        pass


def pull(
    plan: PullPlan,
    on_progress: Callable[[int, int, str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Fetch the plan's files into the HF cache and return the snapshot folder.

    `on_progress(done_bytes, total_bytes, file)` is called as bytes arrive; raising from it (e.g.
    PullStopped on a cancel) stops the download, and the file being written is dropped by
    huggingface_hub (finished files stay, so a rerun resumes). The revision's ref is written last,
    by `snapshot_download` over the same files, so a name resolves only once every file is in.
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    cache = hub_cache_dir()
    total = plan.total_bytes
    snapshot = cache / f"{plan.repo_type}s--{plan.repo_id.replace('/', '--')}" / "snapshots" / plan.commit
    missing = [(p, s) for p, s in plan.files if not (snapshot / p).is_file()]
    need = sum(s for _, s in missing)
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    if need > free:
        raise HubError(
            f"{plan.repo_id} needs {need / 2**30:.2f} GiB more but {cache} has {free / 2**30:.2f} GiB free; "
            "free some space or point HF_HUB_CACHE at a bigger disk."
        )
    _drop_stale_partials(cache, snapshot.parent.parent)
    done = total - need
    if on_progress:
        on_progress(done, total, "")
    for path, size in plan.files:
        if (snapshot / path).is_file():
            continue
        if log:
            log(f"downloading {path} ({size / 2**20:.1f} MiB)")
        start = done
        if on_progress:
            on_progress(done, total, path)  # names the file now: huggingface_hub reports bytes per 10 MB

        def on_bytes(n: int, path: str = path) -> None:
            nonlocal done
            done += n
            if on_progress:
                on_progress(done, total, path)

        def bar(*args: Any, **kwargs: Any) -> _Bytes:
            return _Bytes(on_bytes, **kwargs)

        try:
            hf_hub_download(
                plan.repo_id,
                path,
                repo_type=plan.repo_type,
                revision=plan.commit,
                cache_dir=str(cache),
                endpoint=hub_endpoint(),
                tqdm_class=bar,
            )
        except PullStopped:
            raise
        except Exception as e:  # noqa: BLE001 - translated below; anything else is re-raised
            msg = explain(e, plan.repo_id, plan.repo_type, plan.revision)
            if msg:
                raise HubError(msg) from e
            raise
        done = start + size  # the bar may not report a file served without Content-Length
        if on_progress:
            on_progress(done, total, path)
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # its "Fetching n files" bar would land in the job's log; progress is ours
    try:
        folder = snapshot_download(
            plan.repo_id,
            repo_type=plan.repo_type,
            revision=plan.revision,
            cache_dir=str(cache),
            endpoint=hub_endpoint(),
            allow_patterns=[p for p, _ in plan.files],
        )
    except Exception as e:  # noqa: BLE001
        msg = explain(e, plan.repo_id, plan.repo_type, plan.revision)
        if msg:
            raise HubError(msg) from e
        raise
    finally:
        if not quiet:
            enable_progress_bars()
    return Path(folder)


def _drop_stale_partials(cache: Path, storage: Path) -> None:
    """Remove the `<etag>.<id>.incomplete` files a killed pull left in the repo's blobs.

    huggingface_hub writes each file to a temporary of its own and cannot reuse it after a kill, so
    such files only take space (up to a shard each). One whose blob lock nobody holds is stale; a
    pull of the same repo running in another process holds it, and its file is left alone.
    """
    from filelock import FileLock, Timeout

    for part in (storage / "blobs").glob("*.incomplete"):
        lock = cache / ".locks" / storage.name / f"{part.name.split('.', 1)[0]}.lock"
        try:
            with FileLock(str(lock), timeout=0):
                part.unlink(missing_ok=True)
        except (Timeout, OSError):
            continue


# ----------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class CachedRepo:
    repo_id: str
    repo_type: str
    revision: str  # a ref name (main, a tag) or the short commit
    commit: str
    path: Path  # the snapshot folder
    size: int  # bytes on disk (all revisions share blobs; this is the repo's)
    complete: bool  # every weight file the config needs is present


def snapshot_complete(folder: Path) -> bool:
    """A model snapshot with config.json and every weight file (all shards of an index)."""
    import json

    if not (folder / "config.json").is_file():
        return False
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            try:
                shards = set(json.loads((folder / index).read_text()).get("weight_map", {}).values())
            except (OSError, ValueError):
                return False
            return bool(shards) and all((folder / s).is_file() for s in shards)
    weights = [*folder.glob("*.safetensors"), *folder.glob("pytorch_model*.bin")]
    # A shard ("-00001-of-00004") is never a whole model without its index.
    return bool(weights) and not any(re.search(r"-\d{5}-of-\d{5}\.", w.name) for w in weights)


def cached_repos(repo_type: str = "model") -> list[CachedRepo]:
    """Repos of `repo_type` in the HF cache, one entry per snapshot, newest first."""
    cache = hub_cache_dir()
    if not cache.is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(cache)
    except Exception:  # noqa: BLE001 - an unreadable cache lists as empty
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != repo_type:
            continue
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            name = ", ".join(sorted(rev.refs)) or rev.commit_hash[:12]
            complete = snapshot_complete(rev.snapshot_path) if repo_type == "model" else bool(rev.refs)
            out.append(
                CachedRepo(
                    repo.repo_id, repo_type, name, rev.commit_hash, rev.snapshot_path, repo.size_on_disk, complete
                )
            )
    return out


def cached_snapshot(repo_id: str, repo_type: str = "model", revision: str = "main") -> Path | None:
    """The local snapshot of `repo_id` at `revision` (a ref or commit), without the network;
    None when it is not fully downloaded."""
    storage = hub_cache_dir() / f"{repo_type}s--{repo_id.replace('/', '--')}"
    ref = storage / "refs" / revision
    try:
        commit = ref.read_text().strip() if ref.is_file() else revision
    except OSError:
        return None
    folder = storage / "snapshots" / commit
    if not folder.is_dir() and re.fullmatch(r"[0-9a-f]{7,39}", commit):  # a short commit, as `models` lists it
        matches = list((storage / "snapshots").glob(f"{commit}*"))
        folder = matches[0] if len(matches) == 1 else folder
    if not folder.is_dir():
        return None
    if repo_type == "model" and not snapshot_complete(folder):
        return None
    return folder
