"""One real export per test session, shared by tests/test_export_*.py and tests/test_chat_*.py.

A session with a persona and a run; a "training job" run through the real job protocol whose
work saves a LoRA adapter for the bundled model (r=8 on all seven projections, lora_B set to
small random values so the adapter visibly changes the model); then `persona-tui export` run as
a person would (a subprocess) with q8_0 and q4_k_m. Built once under pytest's base temp folder,
behind a lock, so every module's fixture that asks for it gets the same folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sessions.model import Persona, RunSpec, Session, Trait
from sessions.store import SessionFile

BASE = "bundled:smollm2-135m-instruct"
PERSONA = Persona(
    id="ada",
    name="Ada",
    summary="A beekeeper from Lisbon who loves the sea.",
    style="warm, short sentences",
    traits=[Trait(id="keeps-bees", text="I keep three hives of bees.")],
)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_B_STD = 0.1  # measured: KL(base || merged) ~0.14 nats, top-1 ~0.8, still fluent


@dataclass
class SharedExport:
    session: Path
    workspace: Path
    train_job: Path
    export_job: Path
    cli_output: str

    @property
    def out(self) -> Path:
        return self.export_job / "export"

    @property
    def report(self) -> dict:
        return json.loads((self.out / "report.json").read_text())


def make_adapter(job) -> None:
    """The work of the fake training job: a perturbed LoRA saved in the standard PEFT format."""
    import torch
    from peft import LoraConfig, get_peft_model

    from engines.models import load_hf_model

    model = load_hf_model(BASE)
    peft_model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    )
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * LORA_B_STD)
    peft_model.save_pretrained(str(Path(job.dir) / "adapter"))
    job.progress(1, 1, "adapter saved")


def make_session(root: Path) -> SessionFile:
    session = Session(name="export-test", personas=[PERSONA], runs=[RunSpec(id="r1", base_model=BASE)])
    return SessionFile.create(root / "s.toml", session)


def make_train_job(sf: SessionFile, run_id: str = "r1") -> Path:
    from supervisor import jobs

    job_dir = jobs.create_job(sf.workspace, "train", {"run": {"id": run_id, "base_model": BASE}})
    status = jobs.run_job_inline(job_dir, {"train": make_adapter})
    assert status.state == "finished", status.error
    return job_dir


def build_shared_export(base_temp: Path) -> SharedExport:
    # PERSONA_TUI_TEST_EXPORT_DIR keeps the export between pytest runs (while iterating on tests).
    root = Path(os.environ.get("PERSONA_TUI_TEST_EXPORT_DIR") or base_temp / "shared-export")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "done.json"
        if done.is_file():
            d = json.loads(done.read_text())
            return SharedExport(**{k: Path(v) if k != "cli_output" else v for k, v in d.items()})
        sf = make_session(root)
        train_job = make_train_job(sf)
        env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="160")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "persona_tui.cli",
                "export",
                str(sf.path),
                "--run",
                "r1",
                "--quant",
                "q8_0,q4_k_m",
                "--persona",
                "ada",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=1500,
            stdin=subprocess.DEVNULL,
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-4000:]
        exports = [d for d in (sf.workspace / "jobs").iterdir() if d.name.startswith("export-")]
        assert len(exports) == 1, exports
        shared = SharedExport(sf.path, sf.workspace, train_job, exports[0], output)
        done.write_text(json.dumps({k: str(v) for k, v in shared.__dict__.items()}))
        return shared
