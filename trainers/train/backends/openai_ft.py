"""The `openai` backend: fine-tuning through OpenAI's API (or any server that speaks it).

setup uploads the run's chats as a fine-tuning JSONL (`{"messages": [...]}` per line, or the
preference shape for DPO) to `POST /files` and creates the remote job with `POST
/fine_tuning/jobs`; train polls `GET /fine_tuning/jobs/{id}` and `.../events`, turning metrics
events (`data.step`, `data.train_loss`, `data.valid_loss`) into the same step/eval events a local
run writes, until the remote job succeeds; its `fine_tuned_model` becomes the engine in the job
result. The remote ids live in `<job>/openai.json`, so a resumed job follows the same remote job
instead of paying for a second one. Cancel cancels the remote job.

The API key is read from the environment variable the run names (`[runs.openai] api_key_env`)
and is never written anywhere.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from sessions.model import RunSpec
from sessions.run_spec import OpenAISettings, openai_settings
from trainers.train.backends import RunError, TrainContext, TrainOutcome
from trainers.train.metrics import RunMetrics
from trainers.train.run_data import to_openai_chat

STATE_FILE = "openai.json"
UPLOAD_FILE = "openai_train.jsonl"
TERMINAL = ("succeeded", "failed", "cancelled")


def check(run: RunSpec) -> list[str]:
    s = openai_settings(run)
    if isinstance(s.api_key_env, str) and s.api_key_env and not os.environ.get(s.api_key_env):
        return [
            f"openai.api_key_env names {s.api_key_env}, which is not set here; export {s.api_key_env}=<your key> first."
        ]
    return []


def _sentence(e: Exception, settings: OpenAISettings) -> str:
    """One sentence for an API failure (never echoing the key)."""
    import openai

    if isinstance(e, openai.AuthenticationError):
        return f"{settings.base_url} refused the API key in {settings.api_key_env}; check the key."
    if isinstance(e, openai.APIConnectionError):
        return f"cannot reach {settings.base_url} ({type(e).__name__}); check openai.base_url and the network."
    if isinstance(e, openai.APIStatusError):
        msg = ""
        try:
            body = e.response.json()
            msg = (body.get("error") or {}).get("message", "") if isinstance(body, dict) else ""
        except ValueError:
            pass
        return f"{settings.base_url} answered {e.status_code}: {msg or e.message}".rstrip(".") + "."
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class Backend:
    """Fine-tuning at OpenAI, followed as a local job."""

    name = "openai"

    def __init__(self) -> None:
        self.ctx: TrainContext | None = None
        self.client: Any = None
        self.settings = OpenAISettings()
        self.state: dict[str, Any] = {}
        self.metrics: RunMetrics | None = None

    # -- state kept in the job folder (ids only; never the key)
    def _state_path(self) -> Path:
        assert self.ctx is not None
        return self.ctx.job_dir / STATE_FILE

    def _save_state(self) -> None:
        path = self._state_path()
        from sessions.store import atomic_write

        atomic_write(path, json.dumps(self.state, indent=1) + "\n", backup=False, fsync=False)

    def setup(self, ctx: TrainContext) -> None:
        import openai

        self.ctx = ctx
        self.settings = s = openai_settings(ctx.run)
        key = os.environ.get(s.api_key_env, "")
        if not key:
            raise RunError(f"openai.api_key_env names {s.api_key_env}, which is not set; export it and resume the job.")
        self.client = openai.OpenAI(base_url=s.base_url, api_key=key, max_retries=3, timeout=60.0)
        try:
            self.state = json.loads(self._state_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.state = {}
        self.metrics = RunMetrics(ctx.job, ctx.run.training.max_steps)
        try:
            self._start_remote()
        except openai.OpenAIError as e:
            raise RunError(_sentence(e, s)) from None

    def _start_remote(self) -> None:
        ctx = self.ctx
        assert ctx is not None
        client, s = self.client, self.settings
        if self.state.get("job_id"):
            remote = client.fine_tuning.jobs.retrieve(self.state["job_id"])
            if remote.status not in ("failed", "cancelled"):
                ctx.job.log(f"following the remote job {remote.id} ({remote.status})")
                ctx.job.event(
                    event="train_begin",
                    run=ctx.run.id,
                    backend="openai",
                    method=ctx.run.method,
                    base_model=ctx.run.base_model,
                    remote_job=remote.id,
                    resumed=True,
                )
                return
            ctx.job.log(f"the remote job {remote.id} is {remote.status}; starting a new one with the same file")
        if not self.state.get("file_id"):
            records = to_openai_chat(ctx.datasets, ctx.run.method)
            if not records:
                raise RunError(f"run {ctx.run.id!r} has no examples to upload.")
            upload = ctx.job_dir / UPLOAD_FILE
            with open(upload, "w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            with open(upload, "rb") as f:
                uploaded = client.files.create(file=(UPLOAD_FILE, f), purpose="fine-tune")
            self.state.update(file_id=uploaded.id, examples=len(records))
            self._save_state()
            ctx.job.log(f"uploaded {len(records)} examples as {uploaded.id}")
        t = ctx.run.training
        hyper: dict[str, Any] = {}
        if s.n_epochs:
            hyper["n_epochs"] = s.n_epochs
        if ctx.run.method == "dpo":
            hyper["beta"] = t.dpo_beta
            method = {"type": "dpo", "dpo": {"hyperparameters": hyper}}
        else:
            method = {"type": "supervised", "supervised": {"hyperparameters": hyper}}
        kwargs: dict[str, Any] = {
            "model": ctx.run.base_model,
            "training_file": self.state["file_id"],
            "method": method,
            "seed": t.seed,
        }
        if s.suffix:
            kwargs["suffix"] = s.suffix
        remote = client.fine_tuning.jobs.create(**kwargs)
        self.state.update(job_id=remote.id, seen=[])
        self._save_state()
        ctx.job.log(f"created the remote fine-tuning job {remote.id} on {ctx.run.base_model}")
        ctx.job.event(
            event="train_begin",
            run=ctx.run.id,
            backend="openai",
            method=ctx.run.method,
            base_model=ctx.run.base_model,
            remote_job=remote.id,
            examples=self.state.get("examples"),
            resumed=False,
        )

    def _poll_events(self) -> None:
        ctx, metrics = self.ctx, self.metrics
        assert ctx is not None and metrics is not None
        page = self.client.fine_tuning.jobs.list_events(self.state["job_id"], limit=100)
        seen = set(self.state.get("seen", []))
        fresh = [e for e in page.data if e.id not in seen]
        fresh.sort(key=lambda e: (e.created_at, e.id))  # the API lists newest first
        for e in fresh:
            seen.add(e.id)
            data = e.data if isinstance(e.data, dict) else {}
            if e.type == "metrics" and "step" in data:
                step = int(data["step"])
                if data.get("total_steps"):
                    metrics.max_steps = int(data["total_steps"])
                logs = {"loss": data.get("train_loss")}
                if "train_mean_token_accuracy" in data:
                    logs["mean_token_accuracy"] = data["train_mean_token_accuracy"]
                metrics.on_log(step, logs)
                valid = data.get("full_valid_loss", data.get("valid_loss"))
                if valid is not None:
                    metrics.on_log(step, {"eval_loss": valid})
            else:
                ctx.job.log(f"openai: {e.message}")
        if fresh:
            self.state["seen"] = sorted(seen)
            self._save_state()

    def train(self) -> TrainOutcome:
        import openai

        ctx, metrics = self.ctx, self.metrics
        assert ctx is not None and metrics is not None
        s = self.settings
        try:
            while True:
                remote = self.client.fine_tuning.jobs.retrieve(self.state["job_id"])
                self._poll_events()
                if remote.status in TERMINAL:
                    break
                if ctx.should_stop():
                    self.client.fine_tuning.jobs.cancel(self.state["job_id"])
                    ctx.job.log(f"cancelled the remote job {self.state['job_id']}")
                    ctx.job.event(event="train_end", state="cancelled", **metrics.summary(metrics.last_step))
                    return TrainOutcome("cancelled", metrics.last_step, summary=metrics.summary(metrics.last_step))
                ctx.job.progress(metrics.last_step, metrics.max_steps or None, f"remote job {remote.status}")
                deadline = time.monotonic() + s.poll_seconds
                while time.monotonic() < deadline and not ctx.should_stop():
                    time.sleep(min(0.2, s.poll_seconds))
        except openai.OpenAIError as e:
            raise RunError(_sentence(e, s)) from None
        summary = metrics.summary(metrics.last_step)
        if remote.status == "failed":
            err = getattr(remote, "error", None)
            msg = getattr(err, "message", None) or "no reason given"
            raise RunError(f"the remote fine-tuning job {remote.id} failed: {msg}".rstrip(".") + ".")
        if remote.status == "cancelled":
            ctx.job.event(event="train_end", state="cancelled", **summary)
            return TrainOutcome("cancelled", metrics.last_step, summary=summary)
        engine = {
            "id": f"run-{ctx.run.id}",
            "kind": "openai",
            "model": remote.fine_tuned_model,
            "base_url": s.base_url,
            "api_key_env": s.api_key_env,
        }
        summary["trained_tokens"] = getattr(remote, "trained_tokens", None)
        summary["remote_job"] = remote.id
        ctx.job.event(event="train_end", state="finished", fine_tuned_model=remote.fine_tuned_model, **summary)
        return TrainOutcome("finished", metrics.last_step, engine=engine, summary=summary)

    def save_checkpoint(self) -> Path | None:
        """The service keeps the checkpoints; what a resume needs locally is the remote job's id."""
        if self.ctx is None or not self.state:
            return None
        self._save_state()
        return self._state_path()

    def cleanup(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001
                pass
        self.client = None
