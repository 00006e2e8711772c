"""EvalSpec validation: every problem named by file, line and field, before any model loads."""

from __future__ import annotations

import pytest

from evaluators.evaluate.spec import EvalSpecError, build_job_spec, check_settings
from sessions.demo import demo_session
from sessions.model import EvalSpec
from sessions.store import SessionFile


def _session(tmp_path, *evals):
    s = demo_session()
    s.evals = list(evals)  # only the evaluations under test
    SessionFile.create(tmp_path / "s.toml", s)
    return SessionFile.load(tmp_path / "s.toml")


def test_defaults_are_filled_and_documented_keys_accepted():
    settings, problems = check_settings(EvalSpec(id="t", kind="traits", models=["bundled"]))
    assert problems == []
    assert settings["samples"] == 3 and settings["labeller"] == "markers" and settings["knowledge_by"] == "mean"
    settings, problems = check_settings(EvalSpec(id="t", kind="traits", models=["b"], extra={"judge": "b"}))
    assert settings["labeller"] == "judge" and problems == []


def test_bad_keys_name_the_field_line_and_fix(tmp_path):
    bad = EvalSpec(
        id="bad",
        kind="traits",
        models=["bundled", "nope"],
        extra={"samples": "three", "temperature": -1, "knowledge_by": "max", "sampels": 2},
    )
    sf = _session(tmp_path, bad)
    with pytest.raises(EvalSpecError) as info:
        build_job_spec(sf, "bad")
    problems = info.value.problems
    text = "\n".join(problems)
    assert "evals[0].samples: must be a whole number, not 'three'." in text
    assert "evals[0].temperature: must be at least 0" in text
    assert "evals[0].knowledge_by: 'max' is not allowed here; use 'mean', 'total'." in text
    assert "evals[0].sampels: is not a setting of a traits evaluation" in text
    assert "evals[0].models[1]: 'nope' is not an engine id of the session" in text
    # Each problem starts with the file and the line of the key.
    lines = sf.text.splitlines()
    for p in problems:
        where = p.split(": ", 1)[0]
        path, line = where.rsplit(":", 1)
        assert path == str(sf.path) and lines[int(line) - 1].strip()
    samples_line = next(p for p in problems if ".samples:" in p).split(": ", 1)[0].rsplit(":", 1)[1]
    assert lines[int(samples_line) - 1].startswith("samples")


def test_kind_specific_rules(tmp_path):
    sf = _session(
        tmp_path,
        EvalSpec(id="j1", kind="judge", models=["bundled"]),
        EvalSpec(id="j2", kind="judge", models=["bundled", "bundled+persona"], extra={"judge": "fallback"}),
        EvalSpec(id="r1", kind="reference", models=["bundled+persona"], extra={"data": "missing-ds"}),
        EvalSpec(id="x", kind="bleu", models=["bundled"]),
        EvalSpec(id="t1", kind="traits", models=["bundled"], extra={"labeller": "judge", "rubric": "nope.txt"}),
    )
    with pytest.raises(EvalSpecError) as info:
        build_job_spec(sf, "j1")
    text = "\n".join(info.value.problems)
    assert "evals[0].judge: is missing" in text and "name at least two" in text
    with pytest.raises(EvalSpecError, match='includes "quality", which the judge-free fallback cannot judge'):
        build_job_spec(sf, "j2")
    with pytest.raises(EvalSpecError) as info:
        build_job_spec(sf, "r1")
    text = "\n".join(info.value.problems)
    assert "+persona suffix applies to traits, judge and drift evaluations only" in text
    assert "'missing-ds' is neither a file nor a built dataset" in text
    with pytest.raises(EvalSpecError, match="'bleu' is not an evaluation kind"):
        build_job_spec(sf, "x")
    with pytest.raises(EvalSpecError) as info:
        build_job_spec(sf, "t1")
    text = "\n".join(info.value.problems)
    assert 'evals[4].labeller: is "judge" but no judge is named' in text
    assert "nope.txt cannot be read" in text
    with pytest.raises(EvalSpecError, match="there is no evaluation 'zzz'"):
        build_job_spec(sf, "zzz")


def test_a_persona_without_probes_is_refused(tmp_path):
    s = demo_session()
    for t in s.personas[0].traits:
        t.knowledge_probes.clear()
        t.expression_probes.clear()
    s.evals.append(EvalSpec(id="t", kind="traits", models=["bundled"]))
    SessionFile.create(tmp_path / "s.toml", s)
    sf = SessionFile.load(tmp_path / "s.toml")
    with pytest.raises(EvalSpecError, match="persona 'odile' has no knowledge or expression probes"):
        build_job_spec(sf, "t")


def test_the_job_spec_is_frozen_and_toml_safe(tmp_path):
    from supervisor import jobs

    data = tmp_path / "held.jsonl"
    data.write_text('{"text": "hello"}\n')
    sf = _session(
        tmp_path,
        EvalSpec(id="t", kind="traits", models=["bundled", "bundled+persona", "bundled:smollm2-135m-instruct"]),
        EvalSpec(id="m", kind="perplexity_matrix", models=["bundled"], extra={"data": ["held.jsonl"]}),
    )
    spec = build_job_spec(sf, "t")
    assert [m["label"] for m in spec["models"]] == ["bundled", "bundled+persona", "bundled:smollm2-135m-instruct"]
    assert [m["persona_prompt"] for m in spec["models"]] == [False, True, False]
    assert spec["models"][2]["engine"]["kind"] == "llamacpp"
    assert spec["persona"]["id"] == "odile" and spec["settings"]["persona"] == "odile"
    job_dir = jobs.create_job(sf.workspace, "eval", spec, worker="evaluators.worker")
    frozen = jobs.read_spec(job_dir)
    assert frozen["persona"]["traits"][2]["id"] == "keeps-bees"
    assert build_job_spec(sf, "m")["settings"]["data_path"] == [str(data.resolve())]


def test_the_eval_command_reports_a_bad_spec_and_exits_2(tmp_path, capsys):
    from persona_tui.cli import main

    sf = _session(tmp_path, EvalSpec(id="t", kind="traits", models=["nope"]))
    assert main(["eval", str(sf.path), "--eval", "t"]) == 2
    err = capsys.readouterr().err
    assert "evals[0].models[0]: 'nope' is not an engine id of the session" in err
    assert main(["eval", str(sf.path), "--eval", "missing"]) == 2
    assert "there is no evaluation 'missing'" in capsys.readouterr().err
    assert main(["eval", str(sf.path), "--eval", "t", "--job", "../x"]) == 2
