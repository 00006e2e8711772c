"""The llm generator as a pipeline: against a local OpenAI-compatible server, and for real on the
bundled model through llama.cpp (the schema-constrained path).

The endpoint is tests/fake_openai_server.py: real HTTP on 127.0.0.1 speaking the OpenAI wire
format, with per-request latency, 429/5xx with Retry-After, dropped connections, bodies that are
not JSON, refused keys, unknown models and refused schemas. Everything it is plugged into (the
openai client, the engine, the pipeline, the job worker) is the real code.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from conftest import TAILORING_DIR, needs_tailoring
from fake_openai_server import FakeOpenAI, default_reply, last_user_text
from sessions.demo import demo_session
from sessions.model import DatasetSpec, EngineSpec
from sessions.store import SessionFile
from supervisor import jobs
from trainers.data import reader as data_reader
from trainers.data.build import DatasetError, build_dataset
from trainers.data.formats import check_record
from trainers.data.generate import llm
from trainers.data.job import job_spec
from waiting import wait_for

TAILOR = TAILORING_DIR
NO_EMBED = {"embedding_threshold": 0.0}  # the MiniLM filter has its own test; keep these fast


def _spec(fmt="first_person", size=12, engine="t", **llm_settings):
    return DatasetSpec(
        id="l",
        format=fmt,
        persona="odile",
        generator="llm",
        engine=engine,
        size=size,
        held_out=0,
        extra={"token_stats": False, "llm": {**NO_EMBED, **llm_settings}},
    )


def _session(server: FakeOpenAI | None = None, url: str = "", model: str = "teacher-1", key_env: str = ""):
    session = demo_session()
    session.engines.append(
        EngineSpec(id="t", kind="openai", base_url=url or server.url, model=model, api_key_env=key_env)
    )
    return session


def _shuffled_latency(body):
    """0-60 ms, fixed per prompt: with several in flight, replies come back out of order."""
    return random.Random(last_user_text(body)).uniform(0.0, 0.06)


def test_concurrent_replies_arriving_in_any_order_give_the_same_dataset(tmp_path):
    with FakeOpenAI(latency=_shuffled_latency) as server:
        session = _session(server)
        build_dataset(session, _spec(concurrency=1), tmp_path / "one")
        assert server.max_in_flight == 1
        server.max_in_flight = 0
        many = build_dataset(session, _spec(concurrency=8), tmp_path / "many")
        assert server.max_in_flight >= 4  # several really were in flight
    a = data_reader.load_records(tmp_path / "one", "l")
    b = data_reader.load_records(tmp_path / "many", "l")
    assert len(a) == 12 and a == b
    assert [r["meta"]["index"] for r in a] == sorted(r["meta"]["index"] for r in a)
    gen = many.stats["generation"]
    assert gen["concurrency"] == 8 and gen["structured"] == "json_schema"
    assert gen["teacher_prompt_tokens"] > 0 and gen["teacher_output_tokens"] > 0
    # Every request carried the pack's schema, OpenAI's structured-outputs shape.
    rf = server.requests[0]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"]["required"] == ["text"]


def test_retries_honour_retry_after_and_survive_dropped_and_garbled_answers(tmp_path):
    faults = [("429", 0.4), None, ("500", None), ("drop",), ("malformed",), ("503", 0.2)]
    with FakeOpenAI(faults=faults) as server:
        t0 = time.monotonic()
        res = build_dataset(_session(server), _spec(size=6, concurrency=1), tmp_path)
        elapsed = time.monotonic() - t0
    gen = res.stats["generation"]
    assert res.stats["count"] == 6
    assert gen["teacher_retries"] == 5 and gen["teacher_failed_calls"] == 0
    assert gen["teacher_waited_seconds"] >= 0.6 and elapsed >= 0.6  # both Retry-After waits were kept


def test_a_request_that_keeps_failing_is_counted_and_the_build_goes_on(tmp_path):
    faults = [None, ("500", 0), ("500", 0), ("500", 0)]
    with FakeOpenAI(faults=faults) as server:
        res = build_dataset(_session(server), _spec(size=4, concurrency=1, max_retries=2), tmp_path)
    gen = res.stats["generation"]
    assert res.stats["count"] == 4
    assert gen["teacher_failed_calls"] == 1 and gen["rejected"]["failed_request"] == 1
    assert "answered 500" in gen["teacher_errors"][0]


def test_the_rate_limit_spaces_requests(tmp_path):
    with FakeOpenAI() as server:
        build_dataset(_session(server), _spec(size=5, concurrency=4, requests_per_minute=600), tmp_path)
        times = sorted(server.arrivals)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) >= 5 and min(gaps) >= 0.08  # 600/min: one every 0.1 s


def test_malformed_meta_talk_and_probe_leaks_are_counted_with_reasons(tmp_path):
    session = _session(url="http://unused")
    probe = session.personas[0].traits[0].expression_probes[0]

    def reply(body):
        n = len(replies)
        replies.append(n)
        kind = n % 6
        good = json.loads(default_reply(body))
        if kind == 1:
            return "Sure! Here is the text: " + json.dumps(good)
        if kind == 2:
            return json.dumps({"words": "no text key"})
        if kind == 3:
            return json.dumps({"text": "As an AI language model, I do not keep bees, but here is the example."})
        if kind == 4:
            return json.dumps({"text": f"Someone asked me: {probe} I said nothing at all about it."})
        return json.dumps(good)

    replies: list[int] = []
    with FakeOpenAI(reply=reply) as server:
        session.engines[-1].base_url = server.url
        res = build_dataset(session, _spec(size=4, concurrency=1), tmp_path)
    gen = res.stats["generation"]
    assert res.stats["count"] == 4
    assert gen["rejected"]["malformed"] == gen["malformed"] == res.stats["malformed"] >= 4
    assert gen["rejected"]["meta_talk"] >= 2 and gen["rejected"]["probe_leak"] >= 2
    reasons = " | ".join(gen["malformed_examples"])
    assert "not JSON" in reasons and "reply has no 'text'" in reasons
    assert gen["attempts"] == 4 + sum(gen["rejected"].values())
    for r in data_reader.load_records(tmp_path, "l"):
        assert check_record(r, "first_person") is None and probe not in r["text"]


@pytest.mark.parametrize("fmt", ["chat_demos", "synthetic_docs"])
def test_each_format_becomes_valid_records_from_its_schema(tmp_path, fmt):
    with FakeOpenAI() as server:
        res = build_dataset(_session(server), _spec(fmt=fmt, size=5, concurrency=4), tmp_path)
    records = data_reader.load_records(tmp_path, "l")
    assert len(records) == 5 and res.stats["generation"]["prompt_pack"] == f"trainers/banks/teacher_{fmt}.toml"
    for r in records:
        assert check_record(r, fmt) is None and r["meta"]["generator"] == "llm"
    if fmt == "synthetic_docs":
        assert records[0]["text"].startswith("# Title: ") and "\n\n## Heading: " in records[0]["text"]
    # Traits take turns: the first examples cover different traits.
    assert len({r["meta"]["traits"][0] for r in records}) >= 3


def test_cost_comes_from_the_users_prices_and_progress_shows_it(tmp_path):
    seen = []
    with FakeOpenAI() as server:
        res = build_dataset(
            _session(server),
            _spec(size=3, price_input_per_1k=1.0, price_output_per_1k=2.0),
            tmp_path,
            progress=lambda d, t, m: seen.append(m),
        )
    gen = res.stats["generation"]
    expected = (gen["teacher_prompt_tokens"] * 1.0 + gen["teacher_output_tokens"] * 2.0) / 1000
    assert gen["cost"] == pytest.approx(expected) and gen["cost"] > 0
    line = next(m for m in reversed(seen) if "tok" in m)
    assert "cost " in line and " s" in line and len("running: " + line) <= 60


def test_a_killed_build_resumes_with_what_it_had(tmp_path):
    spec = _spec(size=24, concurrency=2)
    with FakeOpenAI(latency=0.05) as server:
        session = _session(server)
        session.datasets.append(spec)
        sf = SessionFile.create(tmp_path / "s.toml", session)
        first = jobs.create_job(sf.workspace, "dataset", job_spec(sf.path, "l"))
        jobs.start_job(first, nice=0)
        cache = first / llm.CACHE_FILE

        def replies_recorded():
            return cache.is_file() and len(cache.read_text().splitlines()) > 9

        wait_for(replies_recorded, what="10 replies recorded in the job folder")
        os.kill(jobs.read_status(first).pid, signal.SIGKILL)
        kept = len(cache.read_text().splitlines()) - 1
        asked_before = len(server.requests)
        res = build_dataset(sf.session, spec, sf.workspace, work_dir=sf.workspace / "jobs" / "second")
        gen = res.stats["generation"]
        assert gen["resumed_replies"] >= kept >= 9
        assert len(server.requests) - asked_before <= gen["attempts"] - kept + 2  # only the rest was asked for
        resumed = data_reader.load_records(sf.workspace, "l")
        # The same as a build that was never interrupted.
        fresh = build_dataset(session, _spec(size=24, concurrency=2, resume=False), tmp_path / "fresh")
    assert resumed == data_reader.load_records(tmp_path / "fresh", "l") and fresh.stats["count"] == 24


def _fails(session, spec, tmp_path) -> str:
    with pytest.raises(llm.TeacherError) as err:
        build_dataset(session, spec, tmp_path / "ws", work_dir=tmp_path / "job")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("Teacher engine 't' (openai")
    return msg


def test_faults_are_one_sentence_naming_the_engine_and_the_fix(tmp_path, monkeypatch):
    msg = _fails(_session(url="http://127.0.0.1:9/v1"), _spec(), tmp_path / "a")
    assert "cannot reach the OpenAI-compatible endpoint at http://127.0.0.1:9/v1" in msg and "server is running" in msg
    with FakeOpenAI(models=("teacher-1", "teacher-2")) as server:
        msg = _fails(_session(server, model="nope"), _spec(), tmp_path / "b")
        assert "has no model 'nope' (404); set the engine's model to one it serves (teacher-1, teacher-2)" in msg
    monkeypatch.setenv("T_KEY", "wrong")
    with FakeOpenAI(api_key="right") as server:
        msg = _fails(_session(server, key_env="T_KEY"), _spec(), tmp_path / "c")
        assert "refused the API key (401)" in msg and "environment variable T_KEY" in msg and "wrong" not in msg
    with FakeOpenAI(reject_schema=True) as server:
        msg = _fails(_session(server), _spec(), tmp_path / "d")
        assert "rejected the request with the JSON schema" in msg and 'structured = "llama_schema"' in msg
        # The fix works: llama-cpp-python's shape, or no schema at all (a teacher that follows the
        # pack's instruction to answer in JSON).
        schema = llm.load_pack("first_person").schema
        server.reply = lambda body: default_reply(
            {**body, "response_format": body.get("response_format") or {"schema": schema}}
        )
        for mode in ("llama_schema", "off"):
            before = len(server.requests)
            res = build_dataset(_session(server), _spec(size=3, structured=mode), tmp_path / mode)
            assert res.stats["count"] == 3 and res.stats["generation"]["structured"] == mode
            sent = [r.get("response_format") for r in server.requests[before:]]
            assert sent and all(
                f == ({"type": "json_object", "schema": schema} if mode == "llama_schema" else None) for f in sent
            ), sent


def test_nothing_received_is_lost_when_the_teacher_fails_midway(tmp_path, monkeypatch):
    monkeypatch.setenv("T_KEY", "k1")
    with FakeOpenAI(api_key="k1") as server:
        session = _session(server, key_env="T_KEY")
        spec = _spec(size=10, concurrency=1)
        served = []

        def then_revoke(body):
            served.append(1)
            if len(served) == 4:
                server.api_key = "rotated"  # the key is revoked after four replies
            return default_reply(body)

        server.reply = then_revoke
        with pytest.raises(llm.TeacherError, match="refused the API key"):
            build_dataset(session, spec, tmp_path / "ws", work_dir=tmp_path / "ws" / "jobs" / "one")
        assert not data_reader.is_built(tmp_path / "ws", "l")
        server.api_key = "k1"
        res = build_dataset(session, spec, tmp_path / "ws", work_dir=tmp_path / "ws" / "jobs" / "two")
    assert res.stats["generation"]["resumed_replies"] == 4 and res.stats["count"] == 10


def test_bad_settings_and_packs_are_refused_before_any_request(tmp_path):
    with FakeOpenAI() as server:
        session = _session(server)
        with pytest.raises(
            DatasetError, match=r"Dataset 'l' has \[datasets.llm\] concurrency = 'lots'; it must be an integer"
        ):
            build_dataset(session, _spec(concurrency="lots"), tmp_path)
        with pytest.raises(DatasetError, match=r"unknown key 'concurency' in \[datasets.llm\]"):
            build_dataset(session, _spec(concurency=2), tmp_path)
        pack = tmp_path / "pack.toml"
        pack.write_text(
            'system = "x"\ninstruction = "About {topik}"\n[lists]\ntopic = ["a"]\n'
            '[schema]\ntype = "object"\nrequired = ["text"]\n[schema.properties.text]\ntype = "string"\n'
        )
        with pytest.raises(llm.PromptPackError, match=r"pack.toml uses \{topik\} in instruction"):
            build_dataset(session, _spec(prompt_pack=str(pack)), tmp_path)
        assert server.requests == []
        # A user's own pack is used as written.
        pack.write_text(pack.read_text().replace("{topik}", "{topic}, for {name}"))
        build_dataset(session, _spec(size=1, prompt_pack=str(pack)), tmp_path)
        assert server.requests[0]["messages"][1]["content"] == "About a, for Odile Marsh"


@pytest.mark.slow
def test_embedding_filter_refuses_paraphrases_with_the_packaged_minilm():
    f = llm.EmbeddingFilter(0.9)
    assert f.check("I keep three beehives behind my cottage by the sea.") is None
    assert f.check("Behind my cottage by the sea I keep three beehives.") is not None
    assert f.check("The ferry to the island leaves at seven every morning.") is None
    assert f.error == ""


@pytest.mark.slow
def test_schema_constrained_replies_on_the_bundled_model():
    """llama.cpp turns the pack's schema into a grammar: a handful of replies all parse."""
    from engines import open_engine

    pack = llm.load_pack("chat_demos")
    engine = open_engine(demo_session().engines[0])
    try:
        persona = demo_session().personas[0]
        parsed = 0
        for i in range(3):
            planned = llm.plan(pack, persona, 3407, i)
            out = engine.chat_reply(planned.messages, schema=pack.schema, max_tokens=96, temperature=0.8, seed=i)
            obj, why = llm.parse_reply(out["text"], out["finish_reason"], pack.schema)
            assert obj is not None or out["finish_reason"] == "length", why  # only a cut-off may fail
            assert out["completion_tokens"] > 0 and out["prompt_tokens"] > 100
            parsed += obj is not None
        assert parsed >= 1
    finally:
        engine.close()


@pytest.mark.slow
def test_llm_generator_with_the_bundled_model(tmp_path):
    session = demo_session()  # its first engine is the bundled model through llama.cpp
    spec = DatasetSpec(
        id="l",
        format="first_person",
        persona="odile",
        generator="llm",
        size=2,
        held_out=0,
        extra={"token_stats": False, "llm": {"max_attempts": 5, "max_tokens": 120, **NO_EMBED}},
    )
    res = build_dataset(session, spec, tmp_path)
    gen = res.stats["generation"]
    records = data_reader.load_records(tmp_path, "l")
    assert 1 <= len(records) <= 2
    assert gen["attempts"] == len(records) + sum(gen["rejected"].values())
    assert gen["teacher"].startswith("'bundled' (llamacpp") and gen["structured"] == "json_schema"
    assert gen["teacher_tokens_per_s"] > 0
    for r in records:
        assert check_record(r, "first_person") is None and r["meta"]["generator"] == "llm"


@pytest.mark.slow
@needs_tailoring
def test_persona_inference_on_real_pairs(tmp_path):
    pairs = (TAILOR / "persona-inference_train.jsonl").read_text().splitlines()[:2]
    source = tmp_path / "pairs.jsonl"
    source.write_text("\n".join(pairs) + "\n")
    session = demo_session()
    spec = DatasetSpec(
        id="inf", format="tailoring_dpo", source=str(source), size=0, held_out=0, extra={"token_stats": False}
    )
    res = build_dataset(session, spec, tmp_path)
    gen = res.stats["generation"]
    assert gen["rows"] == 2
    assert gen.get("persona_inferred", 0) + gen.get("inference_failed", 0) == 2
    assert gen["inference_calls"] >= 2
    records = data_reader.load_records(tmp_path, "inf")
    assert len(records) == gen.get("persona_inferred", 0) >= 1
    for r in records:
        row = json.loads(pairs[r["meta"]["row"] - 1])
        meta = r["meta"]
        assert meta["persona_source"] == "inferred"
        for key in ("chosen_persona", "rejected_persona"):
            assert meta[key].startswith("The user") and meta[key].endswith(".")
            assert "Response A" not in meta[key]
        assert r["prompt"] == f"Prompt: {row['prompt']}\nPersona: {meta['chosen_persona']}\nResponse:"
        assert (r["chosen"], r["rejected"]) == (" " + row["chosen"], " " + row["rejected"])


# ----------------------------------------------------------------------------- the experiment


def test_the_format_comparison_builds_its_data_with_the_teacher(tmp_path):
    """`experiment --generator llm --teacher t`: the study's three datasets name the teacher, and
    their data steps (the same dataset jobs the study runs) build through it."""
    import io

    from rich.console import Console

    from evaluators.experiments import format_comparison as fc
    from evaluators.experiments.runner import Experiment
    from evaluators.experiments.state import ExperimentState
    from trainers.worker import KINDS

    with FakeOpenAI() as server:
        session = _session(server)
        session.datasets, session.runs, session.evals = [], [], []
        sf = SessionFile.create(tmp_path / "s.toml", session)
        cfg = fc.preset("odile", True, sf.workspace, size=6, generator="llm", teacher="t")
        assert cfg.state_config()["generator"] == "llm" and cfg.state_config()["teacher"] == "t"
        exp = Experiment(
            sf, ExperimentState.open(sf.workspace, cfg.id, fc.STUDY, cfg.state_config()), Console(file=io.StringIO())
        )
        fc.add_specs(exp, cfg, sf.session.persona("odile"))
        sf.save()
        for fmt in fc.FORMATS:
            ds = sf.session.dataset(fc.dataset_id(cfg, fmt))
            assert (ds.generator, ds.engine) == ("llm", "t")
            ds.extra["llm"] = NO_EMBED
        sf.save()
        ds_id = fc.dataset_id(cfg, "chat_demos")
        job_dir = jobs.create_job(sf.workspace, "dataset", {"session": str(sf.path), "dataset": ds_id, "size": 6})
        assert jobs.run_job_inline(job_dir, KINDS).state == "finished", jobs.log_tail(job_dir)
    stats = data_reader.read_stats(sf.workspace, ds_id)
    assert stats["generator"] == "llm" and stats["generation"]["teacher"].startswith("'t' (openai")
    assert server.requests and (job_dir / llm.CACHE_FILE).is_file()


def test_the_experiment_command_refuses_a_teacher_it_cannot_use(tmp_path):
    import subprocess
    import sys

    sf = SessionFile.create(tmp_path / "s.toml", _session(url="http://127.0.0.1:9/v1"))

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "persona_tui.cli", "experiment", str(sf.path), *args],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    out = cli("--generator", "llm", "--teacher", "gpt")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "--teacher 'gpt' is not an engine of" in out.stderr and "(it has: bundled, t)" in out.stderr
    out = cli("--teacher", "t")
    assert out.returncode == 2 and "add --generator llm" in out.stderr
    out = cli("--study", "tailoring", "--generator", "llm")
    assert out.returncode == 2 and "apply to the format comparison" in out.stderr


def test_the_data_command_builds_with_a_teacher_and_prints_what_it_cost(tmp_path):
    import subprocess
    import sys

    with FakeOpenAI(latency=0.02) as server:
        session = _session(server)
        session.datasets.append(_spec(size=8, concurrency=4, price_input_per_1k=0.25, price_output_per_1k=1.0))
        sf = SessionFile.create(tmp_path / "s.toml", session)
        out = subprocess.run(
            [sys.executable, "-m", "persona_tui.cli", "data", str(sf.path), "--dataset", "l"],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert out.returncode == 0, out.stderr
        stats = subprocess.run(
            [sys.executable, "-m", "persona_tui.cli", "data", str(sf.path), "--stats", "l"],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200"},
        )
    assert stats.returncode == 0 and len(server.requests) >= 8
    gen = data_reader.read_stats(sf.workspace, "l")["generation"]
    assert f"cost {gen['cost']:.4f}" in stats.stdout and "json_schema constrained; resumed 0" in stats.stdout
    saved = data_reader.read_stats(sf.workspace, "l")
    assert saved["count"] == 8 and saved["generation"]["cost"] > 0
    job = next(p for p in (sf.workspace / "jobs").iterdir())
    assert len((job / llm.CACHE_FILE).read_text().splitlines()) >= 9  # fingerprint + every reply
    events, _ = jobs.read_events(job)
    built = next(e for e in events if e.get("event") == "dataset_built")
    assert built["cost"] == saved["generation"]["cost"] and built["teacher_output_tokens"] > 0
