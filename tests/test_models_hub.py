"""Base models and study data from the Hub, against a local fake Hub (tests/hub_fixtures.py).

The CLI runs in subprocesses with HF_ENDPOINT pointing at the fake server and HF_HUB_CACHE /
HF_HOME / PERSONA_TUI_CACHE in tmp_path (HF_HUB_OFFLINE unset for these processes only), so
huggingface_hub reads them at import as it would for a user.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hub_fixtures import FakeHub
from waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- fixtures


def make_tiny_model(folder: Path) -> Path:
    """A real (tiny) Llama saved by transformers as two safetensors shards + index, a word-level
    tokenizer with a chat template, and files a pull must skip."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(509)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(words),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder, max_shard_size="200KB")
    fast.save_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(b"\0" * 1000)  # safetensors exist: never fetched
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(b"\0" * 1000)  # another format: never fetched
    (folder / "README.md").write_text("# tiny\n")
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def hub(tiny_model):
    fake = FakeHub().start()
    fake.add_folder("acme/tiny-llama", tiny_model)
    fake.add_folder("acme/gated-llama", tiny_model, gated=True)
    fake.add("acme/no-weights", {"config.json": b'{"model_type": "llama"}', "README.md": b"# none\n"})
    yield fake
    fake.stop()


@pytest.fixture
def hf_env(tmp_path, hub, monkeypatch):
    """The environment of a user whose Hub is the fake server (this process and its children)."""
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_CACHE": str(tmp_path / "hf-home" / "hub"),
        "PERSONA_TUI_CACHE": str(tmp_path / "pt-cache"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PERSONA_TUI_JOB_NICE": "0",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    return env


def cli(*args: str, timeout: float = 180, columns: int = 200) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", COLUMNS=str(columns))
    return subprocess.run(
        [sys.executable, "-m", "persona_tui.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shard_names(folder: Path) -> list[str]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    return sorted(set(index["weight_map"].values()))


# ----------------------------------------------------------------------------- which files


def test_only_the_files_a_model_needs_are_chosen():
    from engines.hub import select_model_files

    repo = [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "tf_model.h5",
        "flax_model.msgpack",
        "onnx/model.onnx",
        "original/consolidated.00.pth",
        "README.md",
        ".gitattributes",
        "model.gguf",
        "chat_template.jinja",
    ]
    assert select_model_files(repo) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    # .bin only where there are no safetensors; nothing when there are no weights at all.
    assert select_model_files(["config.json", "pytorch_model.bin", "tokenizer.json"]) == [
        "config.json",
        "tokenizer.json",
        "pytorch_model.bin",
    ]
    assert select_model_files(["config.json", "tokenizer.json", "model.onnx", "onnx/model.safetensors"]) == []


def test_a_partial_file_is_dropped_only_when_no_pull_holds_its_lock(tmp_path):
    from filelock import FileLock

    from engines.hub import _drop_stale_partials

    storage = tmp_path / "models--acme--x"
    (storage / "blobs").mkdir(parents=True)
    part = storage / "blobs" / "abc123.1f2e3d4c.incomplete"
    part.write_bytes(b"half")
    (tmp_path / ".locks" / storage.name).mkdir(parents=True)
    with FileLock(str(tmp_path / ".locks" / storage.name / "abc123.lock")):  # a pull at work on it
        _drop_stale_partials(tmp_path, storage)
        assert part.exists()
    _drop_stale_partials(tmp_path, storage)
    assert not part.exists()


# ----------------------------------------------------------------------------- pull, list, load


def test_pull_lists_and_loads_with_transformers(hf_env, hub, tiny_model, tmp_path):
    r = cli("models", "pull", "acme/tiny-llama")
    assert r.returncode == 0, r.stderr
    assert "acme/tiny-llama is ready" in r.stdout
    # Only what a model needs went over the wire; the .bin, onnx/ and README were never fetched.
    fetched = {p.rsplit("/", 1)[-1] for m, p, _ in hub.requests if m == "GET" and "/resolve/" in p}
    on_disk = {p.name for p in tiny_model.iterdir() if p.is_file()}
    assert fetched == on_disk - {"pytorch_model.bin", "README.md"}
    assert not hub.gets("pytorch_model.bin") and not hub.gets("model.onnx") and not hub.gets("README.md")
    # The pull was a job with progress in bytes that reached its total.
    jobs_dir = Path(hf_env["PERSONA_TUI_CACHE"]) / "hub" / "jobs"
    (job_dir,) = list(jobs_dir.iterdir())
    status = json.loads((job_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["kind"] == "hub_pull"
    assert status["total"] > 100_000 and status["done"] == status["total"]

    listed = cli("models")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "acme/tiny-llama" in line)
    assert "hub" in row and "main" in row and "KiB" in row and "ready" in row
    assert "bundled:smollm2-135m-instruct" in listed.stdout

    # The workbench resolves the id to the snapshot, and transformers loads it from there.
    from engines.models import load_hf_model, load_tokenizer, resolve_model

    m = resolve_model("acme/tiny-llama")
    assert m.kind == "hf" and Path(hf_env["HF_HUB_CACHE"]) in m.path.parents
    model = load_hf_model("acme/tiny-llama")
    tok = load_tokenizer("acme/tiny-llama")
    ids = tok("w1 w2 w3", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == 512
    assert not (Path(hf_env["HF_HOME"]) / "token").exists()  # no token was written anywhere


def test_a_killed_pull_is_not_a_model_and_a_rerun_resumes_without_refetching(hf_env, hub, tiny_model):
    last = shard_names(tiny_model)[-1]
    hub.throttle[last] = 0.2  # ~25 chunks of 8 KiB, ~5 s: the kill lands in the middle of this shard
    r = cli("models", "pull", "acme/tiny-llama", "--detach")
    assert r.returncode == 0, r.stderr
    job_dir = Path(hf_env["PERSONA_TUI_CACHE"]) / "hub" / "jobs" / r.stdout.strip()

    from supervisor import jobs

    size = len((tiny_model / last).read_bytes())
    # The job names the file it is on; the server has sent part of it.
    wait_for(
        lambda: jobs.read_status(job_dir).message.endswith(f"MiB {last}") and 0 < hub.sent.get(last, 0) < size * 0.8,
        what="the pull to be part-way through the throttled shard",
    )
    status = jobs.read_status(job_dir)
    os.killpg(status.pid, signal.SIGKILL)  # a kill, not a cancel: nothing runs after it
    wait_for(lambda: jobs.read_status(job_dir, stale_after=0).state == "died", what="the job to read died")

    # Nothing half-written looks complete: the id does not resolve, the list says partial.
    from engines.base import EngineError
    from engines.models import resolve_model

    with pytest.raises(EngineError, match="models pull acme/tiny-llama"):
        resolve_model("acme/tiny-llama")
    listed = cli("models")
    assert "partly downloaded" in next(ln for ln in listed.stdout.splitlines() if "acme/tiny-llama" in ln)

    storage = Path(hf_env["HF_HUB_CACHE"]) / "models--acme--tiny-llama"
    assert len(list(storage.glob("blobs/*.incomplete"))) == 1  # what the kill left behind

    hub.throttle.clear()
    before = {f: len(hub.gets(f)) for f in ("config.json", "tokenizer.json", *shard_names(tiny_model))}
    r = cli("models", "pull", "acme/tiny-llama")
    assert r.returncode == 0, r.stderr
    assert resolve_model("acme/tiny-llama").kind == "hf"
    assert not list(storage.glob("blobs/*.incomplete"))  # the rerun dropped the dead partial file
    # Files finished before the kill were not fetched again; the interrupted shard was.
    for f, n in before.items():
        assert n >= 1
        assert len(hub.gets(f)) == (n + 1 if f == last else n), f


def test_a_cancelled_pull_ends_cancelled_and_keeps_only_whole_files(hf_env, hub, tiny_model):
    from engines.hub import cached_snapshot
    from supervisor import jobs

    last = shard_names(tiny_model)[-1]
    hub.throttle[last] = 0.2
    r = cli("models", "pull", "acme/tiny-llama", "--detach")
    assert r.returncode == 0, r.stderr
    job_dir = Path(hf_env["PERSONA_TUI_CACHE"]) / "hub" / "jobs" / r.stdout.strip()
    wait_for(lambda: 0 < hub.sent.get(last, 0), what="the throttled shard to start")
    assert jobs.cancel_job(job_dir)  # SIGTERM: the worker stops at its next progress report
    wait_for(lambda: jobs.read_status(job_dir).terminal, what="the pull to stop")
    assert jobs.read_status(job_dir).state == "cancelled"
    snapshot = Path(hf_env["HF_HUB_CACHE"]) / "models--acme--tiny-llama" / "snapshots"
    (folder,) = snapshot.iterdir()
    assert not (folder / last).exists() and (folder / "config.json").is_file()
    assert cached_snapshot("acme/tiny-llama") is None
    assert "finished files are kept" in jobs.log_tail(job_dir)


def test_models_lists_what_the_session_names(hf_env, hub, tiny_model, tmp_path):
    from sessions.model import RunSpec, Session
    from sessions.store import SessionFile

    gguf = tmp_path / "local.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    path = tmp_path / "s.toml"
    SessionFile.create(
        path,
        Session(
            name="s",
            runs=[
                RunSpec(id="a", base_model=str(tiny_model)),
                RunSpec(id="b", base_model="acme/absent"),
                RunSpec(id="c", base_model=str(gguf)),
            ],
        ),
    )
    # A GGUF repo another tool put in the HF cache: its GGUF file is listed as a model.
    storage = Path(hf_env["HF_HUB_CACHE"]) / "models--acme--ggufs"
    (storage / "snapshots" / ("c" * 40)).mkdir(parents=True)
    (storage / "blobs").mkdir()
    (storage / "blobs" / "b1").write_bytes(b"GGUF" + b"\0" * 60)
    (storage / "snapshots" / ("c" * 40) / "m-q4.gguf").symlink_to("../../blobs/b1")
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text("c" * 40)
    r = cli("models", str(path), columns=500)  # one line per model
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.startswith("│")}
    assert "ready" in rows[str(tiny_model)] and " hf " in rows[str(tiny_model)]
    assert "ready" in rows[str(gguf)] and " gguf " in rows[str(gguf)]
    assert "not downloaded: persona-tui models pull acme/absent" in rows["acme/absent"]
    assert "ready" in rows["bundled:smollm2-135m-instruct"]
    hub_gguf = str(storage / "snapshots" / ("c" * 40) / "m-q4.gguf")
    assert "ready" in rows[hub_gguf] and "acme/ggufs main" in rows[hub_gguf]


def test_missing_repo_gated_repo_and_repo_without_weights_each_say_one_sentence(hf_env, hub):
    r = cli("models", "pull", "acme/nothing-here")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"persona-tui: acme/nothing-here does not exist on {hub.url}; check the repo id (owner/name)."
    )

    r = cli("models", "pull", "acme/gated-llama")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "gated" in last and "HF_TOKEN" in last and "hf auth login" in last and "Traceback" not in r.stderr
    assert not (Path(hf_env["HF_HOME"]) / "token").exists()

    r = cli("models", "pull", "acme/no-weights")
    assert r.returncode == 1
    assert "has no weights transformers can load" in r.stderr.strip().splitlines()[-1]

    r = cli("models", "pull", "not a repo")
    assert r.returncode == 2 and "owner/name" in r.stderr


def test_an_unreachable_hub_says_so(hf_env, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    r = cli("models", "pull", "acme/tiny-llama")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "cannot be reached" in last and "Traceback" not in r.stderr


def test_a_full_disk_mid_pull_fails_in_one_sentence_and_leaves_no_model(hf_env, hub, tiny_model, monkeypatch):
    """ENOSPC injected where huggingface_hub writes a file's bytes, half-way through the first shard."""
    import huggingface_hub.constants
    from huggingface_hub import file_download

    from engines.hub import cached_snapshot
    from supervisor import jobs
    from trainers.hub_job import create_pull_job, run_inline

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    real_http_get = file_download.http_get

    def full_disk(url, temp_file, *a, **k):
        if "safetensors" in url and "index" not in url:
            temp_file.write(b"\0" * 4096)  # half-written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_http_get(url, temp_file, *a, **k)

    monkeypatch.setattr(file_download, "http_get", full_disk)
    job_dir = create_pull_job("acme/tiny-llama")
    status = run_inline(job_dir)
    assert status.state == "failed"
    assert status.error.startswith("the disk filled up while downloading acme/tiny-llama") and "\n" not in status.error
    assert cached_snapshot("acme/tiny-llama") is None
    storage = Path(hf_env["HF_HUB_CACHE"]) / "models--acme--tiny-llama"
    assert not list(storage.rglob("*.safetensors"))  # no shard, whole or half, under any name
    assert not list(storage.rglob("*.incomplete"))
    assert not (storage / "refs" / "main").exists()
    assert jobs.read_status(job_dir).state == "failed"


# ----------------------------------------------------------------------------- study data


SPC_CSV = (
    "User 1 personas,user 2 personas,Best Generated Conversation\n"
    '"I love to bake cookies.\nKnitting is my passion.","I am a boy.\nI like trains.",'
    '"User 1: Hi!\nUser 2: Hello!\nUser 1: Do you bake?\nUser 2: No, I like trains."\n'
)
TAILORING_ROW = {
    "prompt": "Loquacious",
    "chosen": "sounds like talkative",
    "rejected": "talk-a-cious",
    "chosen_persona_gold": "a direct thinker",
    "rejected_persona_gold": "a punster",
    "chosen_persona_retr": "a",
    "rejected_persona_retr": "b",
}


def parquet_bytes(rows: list[dict]) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


@pytest.fixture
def data_hub(hub):
    hub.add(
        "google/Synthetic-Persona-Chat",
        {
            "data/Synthetic-Persona-Chat_valid.csv": SPC_CSV.encode(),
            "README.md": b"# SPC\n",
            ".gitattributes": b"*.csv text\n",
        },
        repo_type="dataset",
    )
    splits = {"sft_train": 3, "dpo_train": 2, "sft_val": 2, "test": 1, "fewshot": 1}
    files = {
        f"{d}/{split}-00000-of-00001.parquet": parquet_bytes(
            [{**TAILORING_ROW, "prompt": f"{d}{split}{i}"} for i in range(n)]
        )
        for split, n in splits.items()
        for d in ("Mnemonic", "Other")
    }
    hub.add("nbalepur/persona-tailoring", files, repo_type="dataset")
    return hub


def test_data_pull_fetches_the_study_data_and_the_studies_use_it(hf_env, data_hub, tmp_path):
    from evaluators.experiments import persona_chat as pc
    from evaluators.experiments import tailoring as tl
    from evaluators.experiments.state import ExperimentError

    for env in (pc.DATA_ENV, tl.DATA_ENV):
        os.environ.pop(env, None)
    with pytest.raises(ExperimentError, match="run 'persona-tui data pull spc'"):
        pc.PersonaChatStudy().csv()
    with pytest.raises(ExperimentError, match="run 'persona-tui data pull tailoring'"):
        tl.TailoringStudy().folder()

    r = cli("data", "pull", "spc")
    assert r.returncode == 0, r.stderr
    assert not data_hub.gets(".gitattributes")
    csv = pc.PersonaChatStudy().csv()
    assert csv.name == "Synthetic-Persona-Chat_valid.csv" and Path(hf_env["HF_HUB_CACHE"]) in csv.parents
    assert csv.read_text() == SPC_CSV
    assert pc.PersonaChatStudy(data=str(tmp_path)).csv() == (tmp_path / pc.CSV_NAME).resolve()  # --data wins

    r = cli("data", "pull", "tailoring")
    assert r.returncode == 0, r.stderr
    folder = tl.TailoringStudy().folder()
    rows = [json.loads(line) for line in (folder / "persona-tailoring_sft_train.jsonl").read_text().splitlines()]
    assert [row["prompt"] for row in rows] == ["Mnemonicsft_train0", "Mnemonicsft_train1", "Mnemonicsft_train2"]
    assert rows[0]["chosen_persona_gold"] == "a direct thinker"
    assert all((folder / name).is_file() for name in tl.FILES.values())
    assert tl.TailoringStudy().folder() == folder  # written once, found again

    r = cli("data", "pull", "nonsense")
    assert r.returncode == 2 and "spc|tailoring|persona-inference" in r.stderr


def test_experiment_without_its_data_says_what_to_run(hf_env, tmp_path):
    session = tmp_path / "s.toml"
    assert cli("new", str(session)).returncode == 0
    env_keep = {k: os.environ.pop(k) for k in ("PERSONA_TUI_SPC_DIR", "PERSONA_TUI_TAILORING_DIR") if k in os.environ}
    try:
        r = cli("experiment", str(session), "--study", "persona-chat", "--quick")
    finally:
        os.environ.update(env_keep)
    assert r.returncode == 2  # bad input to a command: exit 2, one sentence
    assert r.stderr.strip().splitlines()[-1] == (
        "persona-tui: the Synthetic-Persona-Chat data is not on this machine; run 'persona-tui data pull spc' "
        "(or pass --data DIR, the folder holding Synthetic-Persona-Chat_valid.csv)."
    )


# ----------------------------------------------------------------------------- will it fit


SMOLLM2_135M = {
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "vocab_size": 49152,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "tie_word_embeddings": True,
}
QWEN3_4B = {
    "hidden_size": 2560,
    "num_hidden_layers": 36,
    "vocab_size": 151936,
    "intermediate_size": 9728,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "tie_word_embeddings": True,
}
GIB = 2**30


def test_parameter_counts_match_the_published_sizes():
    from trainers.train.memory_estimate import PROJECTIONS, count_params, lora_params, shape_of

    s = shape_of(SMOLLM2_135M)
    assert count_params(s)[0] == 134_515_008  # SmolLM2-135M's own count
    assert lora_params(s, 16, list(PROJECTIONS)) == 4_884_480  # "4.9 M trainable" (PLATFORM.md)
    assert lora_params(s, 16, ["q_proj", "v_proj"]) < lora_params(s, 16, ["all-linear"])
    assert 4.0e9 < count_params(shape_of(QWEN3_4B))[0] < 4.05e9  # Qwen3-4B, with its own head_dim
    # A multimodal wrapper's text_config is what counts.
    assert shape_of({"text_config": SMOLLM2_135M, "model_type": "llava"}).hidden == 576


def test_the_estimate_moves_with_each_lever():
    from trainers.train.memory_estimate import estimate

    base = dict(device="cuda", precision="bf16", batch_size=4, seq_len=2048)
    full = estimate(QWEN3_4B, **base)
    four = estimate(QWEN3_4B, **base, load_in_4bit=True)
    small = estimate(QWEN3_4B, **{**base, "batch_size": 1})
    short = estimate(QWEN3_4B, **{**base, "seq_len": 512})
    ckpt = estimate(QWEN3_4B, **base, gradient_checkpointing=True)
    assert 7.4 * GIB < full.weights < 7.6 * GIB  # 4.02 B x 2 bytes
    assert four.weights < full.weights / 2.5
    assert small.activations == full.activations / 4 and short.logits == full.logits / 4
    assert ckpt.activations < full.activations / 10
    assert all(x.total < full.total for x in (four, small, short, ckpt))
    cpu = estimate(SMOLLM2_135M, device="cpu", precision="bf16", batch_size=2, seq_len=256)
    assert cpu.weights == 134_515_008 * 4  # bf16 on a CPU is autocast over fp32 weights


def test_advice_says_what_to_change_and_only_refuses_past_the_total():
    from trainers.train.memory_estimate import advice, estimate

    need = estimate(QWEN3_4B, device="cuda", precision="bf16", batch_size=8, seq_len=4096)
    kw = dict(load_in_4bit=False, batch_size=8, seq_len=4096, gradient_checkpointing=False, can_4bit=True)
    level, text = advice(need, 24 * GIB, 20 * GIB, "the GPU (RTX 4090)", **kw)
    assert level == "error" and text.startswith(f"this run needs about {need.total / GIB:.1f} GiB (")
    for fix in (
        "training.load_in_4bit = true",
        "training.batch_size",
        "training.max_seq_length",
        "training.gradient_checkpointing = true",
    ):
        assert fix in text
    assert text.count(".") >= 1 and "\n" not in text and text.endswith(".")
    level, text = advice(need, need.total * 2, need.total / 2, "this machine's RAM", **kw)
    assert level == "warning" and "is free now" in text
    assert advice(need, need.total * 2, need.total * 1.5, "x", **kw) is None
    # Nothing left to turn down: a smaller model.
    done = dict(load_in_4bit=True, batch_size=1, seq_len=128, gradient_checkpointing=True, can_4bit=True)
    assert "pick a smaller base model" in advice(need, 1 * GIB, None, "x", **done)[1]


def test_train_refuses_a_run_that_cannot_fit_and_says_what_to_change(tmp_path):
    from sessions.model import RunSpec, Session
    from sessions.store import SessionFile

    huge = tmp_path / "huge-model"
    huge.mkdir()
    (huge / "config.json").write_text(
        json.dumps(
            {
                **QWEN3_4B,
                "hidden_size": 16384,
                "num_hidden_layers": 160,
                "intermediate_size": 65536,
                "num_attention_heads": 128,
                "num_key_value_heads": 16,
                "head_dim": 128,
            }
        )
    )
    path = tmp_path / "big.toml"
    SessionFile.create(path, Session(name="big", runs=[RunSpec(id="r1", base_model=str(huge))]))
    r = cli("train", str(path), "--run", "r1")
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert line.startswith("persona-tui: run 'r1': this run needs about ") and "\n" not in line
    assert "training.gradient_checkpointing = true" in line and "--skip-memory-check" in line
    assert not (tmp_path / "big" / "jobs").exists()  # no job was created


# ----------------------------------------------------------------------------- the Train form


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_train_form_picks_from_the_list_and_offers_to_pull_a_missing_id(hf_env, hub, tmp_path, anyio_backend):
    from textual.widgets import Input, Select

    from engines.hub import cached_snapshot
    from persona_tui.app import make_app
    from persona_tui.panes.train import TrainPane
    from persona_tui.screens.choice import ChoiceScreen
    from sessions.store import SessionFile
    from supervisor import jobs
    from train_fixtures import CHATS, make_session, tiny_run
    from waiting import wait_until

    run = tiny_run("r1", ["chats"])
    run.base_model = "acme/tiny-llama"
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [run])
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        pane = app.query_one(TrainPane)
        pane.query_one("#train-tabs").active = "train-settings"
        # The pick list is `persona-tui models` for this session: the bundled model is ready,
        # the session's Hub id is listed as not downloaded (and so not offered as a pick).
        await wait_until(pilot, lambda: pane.model_choices, what="the model list")
        names = {m.name: m for m in pane.model_choices}
        assert names["bundled:smollm2-135m-instruct"].usable
        assert not names["acme/tiny-llama"].usable and "models pull" in names["acme/tiny-llama"].note
        pick = pane.query_one("#base-model-pick", Select)
        field = pane.query_one("#f-base_model", Input)
        assert field.value == "acme/tiny-llama"
        pick.value = "bundled:smollm2-135m-instruct"
        await pilot.pause()
        assert field.value == "bundled:smollm2-135m-instruct"
        assert app.session_file.session.run("r1").base_model == "bundled:smollm2-135m-instruct"
        field.value = "acme/tiny-llama"
        await pilot.pause()
        assert app.session_file.session.run("r1").base_model == "acme/tiny-llama"

        # Start: the id is not here, so the form asks to download it instead of starting the run.
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the download question")
        assert "acme/tiny-llama is not on this machine" in app.screen.message
        await pilot.press("y")
        await wait_until(pilot, lambda: pane.pull_jobs, what="the pull job to start")
        (job_id,) = pane.pull_jobs
        await wait_until(pilot, lambda: pane.pull_jobs[job_id] != "running", what="the pull job to end")
        assert pane.pull_jobs[job_id] == "finished"
        assert jobs.read_status(jobs.jobs_root(sf.workspace) / job_id).state == "finished"  # a job of the session
        assert not [j for j in jobs.list_jobs(sf.workspace) if j.kind == "train"]  # no run was started
        assert cached_snapshot("acme/tiny-llama") is not None
        assert {m.name: m for m in pane.model_choices}["acme/tiny-llama"].usable  # the list was read again
        assert pane.offer_pull("acme/tiny-llama") is False  # now it is here: no question

        # A gated repo: the pull fails and the form says why, in the job's one sentence.
        field.value = "acme/gated-llama"
        await pilot.pause()
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the second question")
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: len(pane.pull_jobs) == 2 and "running" not in pane.pull_jobs.values(),
            what="the gated pull to end",
        )
        assert sorted(pane.pull_jobs.values()) == ["failed", "finished"]
        # App.notify posts a message: the notice lands on the app's next turn, not in the same call.
        await wait_until(
            pilot,
            lambda: any(
                "gated" in n.message and "HF_TOKEN" in n.message and "hf auth login" in n.message
                for n in app._notifications
            ),
            what="the gated notice",
        )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_train_pane_refuses_a_run_that_cannot_fit(tmp_path, anyio_backend):
    from persona_tui.app import make_app
    from persona_tui.panes.train import TrainPane
    from sessions.store import SessionFile
    from supervisor import jobs
    from train_fixtures import CHATS, make_session, tiny_run
    from waiting import wait_until

    huge = tmp_path / "huge-model"
    huge.mkdir()
    (huge / "config.json").write_text(
        json.dumps(
            {
                **QWEN3_4B,
                "hidden_size": 16384,
                "num_hidden_layers": 160,
                "intermediate_size": 65536,
                "num_attention_heads": 128,
                "num_key_value_heads": 16,
                "head_dim": 128,
            }
        )
    )
    run = tiny_run("r1", ["chats"])
    run.base_model = str(huge)
    sf = make_session(tmp_path, {"chats": ("chat_demos", CHATS)}, [run])
    app = make_app(SessionFile.load(sf.path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        pane = app.query_one(TrainPane)
        await pilot.press("s")
        said = lambda: [n.message for n in app._notifications if "this run needs about" in n.message]  # noqa: E731
        await wait_until(pilot, said, what="the memory refusal")
        assert "run 'r1': this run needs about" in said()[0] and "training.batch_size" in said()[0]
        assert not jobs.list_jobs(sf.workspace)  # nothing started
        assert pane.selected_job is None


def test_a_pull_at_a_revision_into_a_session_and_a_revision_that_does_not_exist(hf_env, hub, tmp_path):
    from engines.models import resolve_model
    from sessions.model import Session
    from sessions.store import SessionFile

    commit = hub.repos[("model", "acme/tiny-llama")].commit
    path = tmp_path / "s.toml"
    SessionFile.create(path, Session(name="s"))
    r = cli("models", "pull", "acme/tiny-llama", "--revision", commit, "--session", str(path))
    assert r.returncode == 0, r.stderr
    listed = cli("jobs", str(path))
    assert "hub_pull" in listed.stdout and "finished" in listed.stdout  # the session's Jobs list has it
    # Pulled by commit, the repo has no "main" yet: the list names it with its short commit,
    # and that name resolves.
    row = next(ln for ln in cli("models").stdout.splitlines() if "acme/tiny-llama" in ln)
    name = f"acme/tiny-llama@{commit[:12]}"
    assert name in row and "ready" in row
    assert resolve_model(name).path.name == commit

    r = cli("models", "pull", "acme/tiny-llama", "--revision", "v9")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "persona-tui: acme/tiny-llama has no revision 'v9'; name a branch, tag or commit that exists."
    )
