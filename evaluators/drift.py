"""Persona drift: does the persona still hold at turn sixteen, not only at turn one?

Each model holds `conversations` conversations of `turns` turns. The other side is, by default,
one user's turns of Synthetic-Persona-Chat conversations replayed in order (so every model hears
the same words, and a weak model cannot derail its own partner), or a simulated user: any engine
with an editable prompt (`evaluators/prompts/drift_user.txt`, or the spec's `user_prompt`).

At the probed turns the persona's knowledge probes and expression prompts are asked on a *fork*
of the conversation so far: `Fork` puts the history in front of each probe request and never
adds anything to the history that goes on. They are scored by the trait evaluation's own
instruments (`evaluators.probes.knowledge_cells`, `expression_cells`, `trait_rows`), and the
model's own reply at that turn is labelled for every trait by the same labeller, so a reply that
contradicts a persona fact mid-conversation counts. Contradictions are the judge's when a judge
is set; without one only what the marker labeller can see counts (its directional phrases), and
the table says so.

Result per model: knowledge and expression rate by probed turn with Wilson 95% intervals, the
contradictions, and the first turn at which a rate falls below `drop` times its turn-1 rate.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluators.probes import CONTRADICTED, LABELS, Rate, render_chat

if TYPE_CHECKING:
    from engines.base import Engine
    from evaluators.evaluate.spec import ModelEntry
    from evaluators.evaluate.state import Run
    from evaluators.probes import ExpressionCell, KnowledgeCell
    from sessions.model import Persona, Session

SPC_CSV = "Synthetic-Persona-Chat_valid.csv"
SPC_USER = "spc"
OUTPUT_KIND = "drift_turn"


class DriftDataError(ValueError):
    """The conversation data cannot feed the drift evaluation as asked; one sentence."""


# ----------------------------------------------------------------------------- settings


def probe_turns(turns: int, chosen: Sequence[int] = ()) -> list[int]:
    """The turns probed: the chosen ones (turn 1 always added: it is the baseline), else 1, 2, 4,
    8, ... and the last turn."""
    if chosen:
        return sorted({1, *(int(t) for t in chosen if 1 <= int(t) <= turns)})
    out, t = [], 1
    while t <= turns:
        out.append(t)
        t *= 2
    return sorted({*out, turns})


def probe_persona(persona: Persona, per_trait: int) -> Persona:
    """A copy of the persona with at most `per_trait` knowledge and expression probes per trait
    (0 = all): each probed turn asks every one of them, so this sets the cost."""
    if not per_trait:
        return persona
    traits = [
        dataclasses.replace(
            t,
            knowledge_probes=list(t.knowledge_probes[:per_trait]),
            expression_probes=list(t.expression_probes[:per_trait]),
        )
        for t in persona.traits
    ]
    return dataclasses.replace(persona, traits=traits)


def spc_file(ref: str, base: Path, session: Session | None = None) -> Path:
    """The SPC CSV a spec's `data` names: a CSV file, a folder holding the valid split, or the id
    of a persona_chat dataset of the session (its source). Paths are relative to the session."""
    if session is not None:
        spec = session.dataset(ref)
        if spec is not None:
            if spec.format != "persona_chat" or not spec.source:
                raise DriftDataError(
                    f"dataset {ref!r} is not an imported persona_chat dataset; name a persona_chat "
                    "dataset or the Synthetic-Persona-Chat CSV itself."
                )
            ref = spec.source
    path = Path(ref).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_dir():
        path = path / SPC_CSV
    if not path.is_file():
        raise DriftDataError(
            f"the conversation file {path} does not exist; give the path of the "
            f"Synthetic-Persona-Chat CSV ({SPC_CSV}) or of its folder."
        )
    return path.resolve()


@dataclass
class Script:
    """One SPC conversation's user turns, replayed in order."""

    row: int  # the CSV line where the conversation starts
    turns: list[str]


def spc_scripts(path: str | Path, side: int, turns: int, conversations: int) -> list[Script]:
    """The first `conversations` conversations of the file with at least `turns` turns by user
    `side`, each cut to `turns`. Raises DriftDataError (one sentence) when none has enough."""
    from trainers.data.formats.persona_chat import read_conversations
    from trainers.data.formats.rows import BrokenRows, ImportFileError

    path = Path(path)
    try:
        convs = read_conversations(path, 0, BrokenRows(path, False), Counter())
    except ImportFileError as e:
        raise DriftDataError(str(e)) from None
    out: list[Script] = []
    longest = 0
    for conv in convs:
        said = [t.text for t in conv.turns if t.speaker == side and t.text.strip()]
        longest = max(longest, len(said))
        if len(said) >= turns:
            out.append(Script(conv.line, said[:turns]))
            if len(out) == conversations:
                break
    if not out:
        raise DriftDataError(
            f"{path} has no conversation with {turns} turns by user {side} (the longest has "
            f"{longest}); set turns to {longest} or fewer, or use a file with longer conversations."
        )
    return out


# ----------------------------------------------------------------------------- the fork


class Fork:
    """An engine seen through a conversation: every request gets `history` in front of it.

    The history is a frozen copy, so nothing asked here can enter the conversation that goes on.
    `render_chat` is what evaluators.probes uses to build a knowledge probe's prompt.
    """

    def __init__(self, engine: Engine, history: Sequence[Mapping[str, str]], model_name: str | None = None) -> None:
        self.engine = engine
        self.history = tuple({"role": m["role"], "content": m["content"]} for m in history)
        self.model_name = model_name

    def messages(self, messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        asked = [dict(m) for m in messages]
        if self.history and self.history[0]["role"] == "system":
            asked = [m for m in asked if m["role"] != "system"]  # one system prompt: the conversation's
        return [*(dict(m) for m in self.history), *asked]

    def chat(self, messages: Sequence[Mapping[str, str]], **sampling: Any) -> str:
        return self.engine.chat(self.messages(messages), **sampling)

    def render_chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        return render_chat(self.engine, self.messages(messages), self.model_name)

    def logprobs(self, prompt: str, continuation: str) -> list[float]:
        return self.engine.logprobs(prompt, continuation)


# ----------------------------------------------------------------------------- the user side


def conversation_text(visible: Sequence[Mapping[str, str]]) -> str:
    """The conversation as the simulated user sees it: its own lines as "You", the model's as "Them"."""
    lines = [f"{'You' if m['role'] == 'user' else 'Them'}: {m['content'].strip()}" for m in visible]
    return "\n".join(lines) if lines else "(nothing yet: you speak first)"


class SimulatedUser:
    """Any engine playing the user, from an editable prompt with a {{conversation}} placeholder."""

    FALLBACK_LINE = "Tell me more about that."

    def __init__(self, engine: Engine, name: str, prompt: Any, sampling: Mapping[str, Any]) -> None:
        self.engine = engine
        self.name = name
        self.prompt = prompt
        self.sampling = dict(sampling)
        self.empty = 0  # answers with nothing usable, replaced by FALLBACK_LINE

    def say(self, visible: Sequence[Mapping[str, str]], seed: int) -> str:
        question = self.prompt.render(conversation=conversation_text(visible))
        text = self.engine.chat([{"role": "user", "content": question}], **self.sampling, seed=seed)
        for line in text.strip().splitlines():
            line = line.strip().strip('"').strip()
            for prefix in ("You:", "Me:", "User:"):
                if line.lower().startswith(prefix.lower()):
                    line = line[len(prefix) :].strip()
            if line:
                return line
        self.empty += 1
        return self.FALLBACK_LINE


# ----------------------------------------------------------------------------- the rates


def turn_rows(
    traits: Sequence[str],
    model: str,
    knowledge: Sequence[Any],
    expression: Sequence[Any],
    conversation_labels: Sequence[Mapping[str, Any]],
    turns: Sequence[int],
) -> list[dict[str, Any]]:
    """Per probed turn, one model's rates over all traits and conversations (cells are the probe
    outputs, each with its `turn`); the per-trait numbers come from evaluators.probes.trait_rows."""
    from evaluators.probes import trait_rows

    def at(cells: Sequence[Any], turn: int) -> list[Any]:
        return [c for c in cells if c.get("turn") == turn]

    rows = []
    for turn in turns:
        per_trait = trait_rows(traits, at(knowledge, turn), at(expression, turn), model)
        k = Rate(sum(r.knowledge.k for r in per_trait), sum(r.knowledge.n for r in per_trait))
        e = Rate(sum(r.expression.k for r in per_trait), sum(r.expression.n for r in per_trait))
        probe_x = Rate(sum(r.contradicted.k for r in per_trait), sum(r.contradicted.n for r in per_trait))
        said = [
            lab
            for row in at(conversation_labels, turn)
            for lab in (row.get("trait_labels") or {}).values()
            if lab in LABELS
        ]
        conv_x = Rate(sum(lab == CONTRADICTED for lab in said), len(said))
        both = Rate(probe_x.k + conv_x.k, probe_x.n + conv_x.n)
        rows.append(
            {
                "model": model,
                "turn": turn,
                "conversations": len({c.get("conversation") for c in at(conversation_labels, turn)}),
                "knowledge": k.to_dict(),
                "expression": e.to_dict(),
                "contradicted": both.to_dict(),
                "contradicted_probes": probe_x.to_dict(),
                "contradicted_conversation": conv_x.to_dict(),
                "unscored": sum(r.unscored for r in per_trait),
                "scorers": sorted({s for r in per_trait for s in r.scorers}),
                "by_trait": [r.to_dict() for r in per_trait],
            }
        )
    return rows


def first_drop(rows: Sequence[Mapping[str, Any]], measure: str, fraction: float) -> int | None:
    """The first probed turn whose rate is below `fraction` of the turn-1 rate (None: never, or no
    turn-1 rate above zero to fall from)."""
    rows = sorted(rows, key=lambda r: r["turn"])
    if not rows or rows[0]["turn"] != 1:
        return None
    start = (rows[0].get(measure) or {}).get("rate")
    if not start:
        return None
    for row in rows[1:]:
        rate = (row.get(measure) or {}).get("rate")
        if rate is not None and rate < fraction * start:
            return int(row["turn"])
    return None


def drops(scores: Mapping[str, Any]) -> dict[str, dict[str, int | None]]:
    """model -> {"knowledge": turn or None, "expression": turn or None}."""
    fraction = float((scores.get("settings") or {}).get("drop", 0.5))
    out: dict[str, dict[str, int | None]] = {}
    for model in dict.fromkeys(r["model"] for r in scores.get("rows", [])):
        rows = [r for r in scores["rows"] if r["model"] == model]
        out[model] = {m: first_drop(rows, m, fraction) for m in ("knowledge", "expression")}
    return out


def summary(scores: Mapping[str, Any]) -> dict[str, Any]:
    """What the session keeps per model: turn-1 and last-turn rates and the first drops."""
    out: dict[str, Any] = {}
    found = drops(scores)
    for model, d in found.items():
        rows = sorted((r for r in scores["rows"] if r["model"] == model), key=lambda r: r["turn"])
        cell: dict[str, Any] = {}
        for measure in ("knowledge", "expression"):
            first, last = (rows[0].get(measure) or {}).get("rate"), (rows[-1].get(measure) or {}).get("rate")
            if first is not None:
                cell[f"{measure}_turn_{rows[0]['turn']}"] = round(first, 4)
            if last is not None:
                cell[f"{measure}_turn_{rows[-1]['turn']}"] = round(last, 4)
            if d[measure] is not None:
                cell[f"{measure}_drop_turn"] = d[measure]
        out[model] = cell
    return out


# ----------------------------------------------------------------------------- the job


def freeze(settings: dict[str, Any], session: Session, base: Path, resolve: Any, add: Any, job: dict[str, Any]) -> None:
    """The drift part of evaluators.evaluate.spec.build_job_spec: data and user side checked now, not
    mid-job; `add(key, message)` records a problem."""
    from evaluators.evaluate.spec import ModelEntry, resolve_model
    from evaluators.judge import PromptFileError, load_prompt

    settings["probe_turns"] = probe_turns(settings["turns"], settings["probe_turns"])
    if settings["user"] == SPC_USER:
        if not settings["data"]:
            add(
                "data",
                "is empty; name the Synthetic-Persona-Chat CSV (or its folder, or a persona_chat "
                "dataset id) whose user turns are replayed, or set user to an engine that plays the user.",
            )
            return
        try:
            path = spc_file(settings["data"], base, session)
            settings["data_path"] = str(path)
            found = spc_scripts(path, int(settings["side"]), settings["turns"], settings["conversations"])
        except DriftDataError as e:
            add("data", str(e))
            return
        settings["available_conversations"] = len(found)
        return
    try:
        job["user"] = {
            "label": settings["user"],
            "engine": ModelEntry(settings["user"], resolve_model(session, settings["user"], base, resolve)).to_plain()[
                "engine"
            ],
        }
    except ValueError as e:
        add("user", str(e))
    if settings["user_prompt"]:
        path = (base / Path(settings["user_prompt"]).expanduser()).resolve()
        try:
            load_prompt("drift_user", path)
        except PromptFileError as e:
            add("user_prompt", str(e))
        settings["user_prompt"] = str(path)


def run_drift(run: Run) -> None:
    """The work of a drift eval job (evaluators.evaluate.state.Run holds the settings and the outputs)."""
    from evaluators.evaluate.state import close_engine, model_lanes
    from evaluators.probes import MarkerLabeller

    s = run.settings
    persona = run.persona
    assert persona is not None, "create_eval_job freezes the persona of a drift evaluation"
    probed = probe_persona(persona, s["probes"])
    checkpoints = list(s["probe_turns"])
    traits = [t.id for t in persona.traits]
    scripts: list[Script] = []
    if s["user"] == SPC_USER:
        try:
            scripts = spc_scripts(s["data_path"], int(s["side"]), s["turns"], s["conversations"])
        except DriftDataError as e:
            run.job.fail(str(e))
        if len(scripts) < s["conversations"]:
            run.problem(
                f"{s['data_path']} has only {len(scripts)} conversation(s) with {s['turns']} turns by "
                f"user {s['side']}; {s['conversations']} were asked for."
            )
        n_conv = len(scripts)
    else:
        n_conv = s["conversations"]
    labeller: Any = None
    if s["labeller"] == "judge":
        labeller = run.open_judge()
    elif s["labeller"] == "fallback":
        from evaluators.fallback import FallbackScorer

        labeller = FallbackScorer()
    else:
        labeller = MarkerLabeller()
    n_know = sum(len(t.knowledge_probes) for t in probed.traits) if s["knowledge"] else 0
    n_expr = sum(len(t.expression_probes) for t in probed.traits) * s["samples"] if s["expression"] else 0
    per_conv = s["turns"] + len(checkpoints) * (n_know + n_expr)
    run.total = per_conv * n_conv * len(run.models)
    judged = s["labeller"] == "judge"
    run.scores.update(
        persona=persona.id,
        traits=traits,
        turns=s["turns"],
        probe_turns=checkpoints,
        conversations=n_conv,
        user=s["user"] if s["user"] != SPC_USER else f"Synthetic-Persona-Chat user {s['side']}",
        data=s.get("data_path", ""),
        labeller=getattr(labeller, "name", ""),
        contradictions_by="judge" if judged else "markers",
        drop=s["drop"],
        rows=[],
    )
    if not judged:
        run.note(
            "No judge is set: contradictions count only what the marker labeller's directional "
            'phrases catch; set judge = "<engine>" for judged contradictions.'
        )
    users: list[SimulatedUser] = []

    def new_user() -> SimulatedUser | None:
        """The user side of one model's conversations: the SPC scripts (None), or a simulated
        user of the model's own, so that two models scored at once never share its context."""
        if s["user"] == SPC_USER:
            return None
        from engines import open_engine
        from evaluators.judge import load_prompt
        from sessions.model import EngineSpec

        spec = run.job.spec["user"]
        try:
            user_engine = open_engine(EngineSpec(**spec["engine"]))
        except (ValueError, OSError, RuntimeError) as e:
            run.job.fail(f"the simulated user {spec['label']!r} could not be opened: {e}")
        user = SimulatedUser(
            user_engine,
            spec["label"],
            load_prompt("drift_user", s["user_prompt"] or None),
            {"max_tokens": s["user_max_tokens"], "temperature": s["temperature"], "top_p": s["top_p"]},
        )
        with run.lock:
            users.append(user)
        return user

    def one(entry: ModelEntry, stopping: threading.Event) -> None:
        user = new_user()
        try:
            _one_model(run, entry, probed, scripts, user, labeller, n_conv, checkpoints, traits, stopping)
        finally:
            if user is not None:
                close_engine(user.engine)

    # Two models at once unless a judge labels the turns: one engine, whose calls would interleave.
    lanes = model_lanes(run.models) if s["labeller"] not in ("judge", "fallback") else 1
    try:
        run.each_model(one, lanes)
    finally:
        empty = sum(u.empty for u in users)
        if empty:
            run.problem(
                f"the simulated user gave {empty} empty answer(s); {SimulatedUser.FALLBACK_LINE!r} was said instead."
            )
        if hasattr(labeller, "stats"):
            run.scores["judge_stats"] = dict(labeller.stats)
        run.scores["drops"] = drops(run.scores)
        run.write_scores()
        close_engine(getattr(labeller, "engine", None))


def _one_model(
    run: Run,
    entry: ModelEntry,
    probed: Persona,
    scripts: list[Script],
    user: SimulatedUser | None,
    labeller: Any,
    n_conv: int,
    checkpoints: list[int],
    traits: list[str],
    stopping: threading.Event | None = None,
) -> None:
    """One model's conversations, each probed on forks at the chosen turns; it stops at its
    next reply once `stopping` is set (the other lane failed)."""
    from engines import EngineError
    from evaluators.evaluate.state import cannot_score, close_engine
    from evaluators.probes import expression_cells, knowledge_cells

    s = run.settings
    persona = run.persona
    assert persona is not None  # run_drift checked it
    n_know = sum(len(t.knowledge_probes) for t in probed.traits) if s["knowledge"] else 0
    n_expr = sum(len(t.expression_probes) for t in probed.traits) * s["samples"] if s["expression"] else 0
    engine = run.open(entry)
    if engine is None:
        run.tick((s["turns"] + len(checkpoints) * (n_know + n_expr)) * n_conv)
        return
    system = run.system_for(entry)
    k_cells: list[dict[str, Any]] = []
    e_cells: list[dict[str, Any]] = []
    said: list[dict[str, Any]] = []
    logprobs = s["knowledge"]
    try:
        for c in range(n_conv):
            history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
            start = len(history)
            for t in range(1, s["turns"] + 1):
                run.stop_if_cancelled()
                if stopping is not None and stopping.is_set():
                    return
                seed = s["seed"] + 1000 * c + t
                text = scripts[c].turns[t - 1] if user is None else user.say(history[start:], seed)
                history.append({"role": "user", "content": text})
                try:
                    reply = engine.chat(history, **run.sampling(), seed=seed)
                except EngineError as e:  # most often: the conversation outgrew the context
                    run.problem(f"model {entry.label!r}, conversation {c + 1} stopped at turn {t}: {e}")
                    left = s["turns"] - t + 1 + sum(1 for x in checkpoints if x >= t) * (n_know + n_expr)
                    run.tick(left)
                    break
                visible = [dict(m) for m in history[start:]]
                history.append({"role": "assistant", "content": reply})
                row: dict[str, Any] = {
                    "kind": OUTPUT_KIND,
                    "model": entry.label,
                    "conversation": c + 1,
                    "turn": t,
                    "prompt": visible,
                    "reply": reply,
                    "prompt_system": bool(system),
                    "source_row": scripts[c].row if scripts else None,
                    "metrics": {"turn": float(t)},
                }
                if t in checkpoints and labeller is not None:
                    labels, scorers = {}, set()
                    for trait in persona.traits:
                        got = labeller.label(persona, trait, text, reply)
                        labels[trait.id] = got.label
                        scorers.add(got.scorer)
                    row.update(trait_labels=labels, scorer=", ".join(sorted(scorers)))
                run.output(**row)
                said.append(row)
                run.tick(message=f"{entry.label}: conversation {c + 1}, turn {t}")
                if t not in checkpoints:
                    continue
                fork = Fork(engine, history, entry.engine.model)
                where = {"turn": t, "conversation": c + 1, "fork": True}
                try:
                    if logprobs:

                        def on_k(cell: KnowledgeCell) -> None:
                            d = {**cell.to_dict(), **where}
                            k_cells.append(d)
                            run.output(
                                **d, prompt=cell.question, metrics={"logp_margin": cell.logp_affirm - cell.logp_deny}
                            )
                            run.tick(message=f"{entry.label}: turn {t} knowledge {cell.trait}")

                        try:
                            knowledge_cells(
                                fork, probed, entry.label, None, s["knowledge_by"], entry.engine.model, on_cell=on_k
                            )
                        except Exception as e:  # noqa: BLE001
                            if not cannot_score(e):
                                raise
                            run.problem(
                                f"model {entry.label!r} offers no log-probabilities ({e}); its knowledge probes are left out."
                            )
                            logprobs = False
                    if s["expression"]:

                        def on_e(cell: ExpressionCell) -> None:
                            d = {**cell.to_dict(), **where}
                            e_cells.append(d)
                            run.output(
                                **d, metrics={"expressed": 1.0 if cell.label == "expressed" else 0.0, "turn": float(t)}
                            )
                            run.tick(message=f"{entry.label}: turn {t} expression {cell.trait}")

                        expression_cells(
                            fork,
                            probed,
                            entry.label,
                            labeller,
                            s["samples"],
                            None,
                            run.sampling(),
                            seed=s["seed"] + 1_000_000 * (c + 1) + 10_000 * t,
                            on_cell=on_e,
                            should_stop=lambda: run.job.cancelled or bool(stopping and stopping.is_set()),
                        )
                except EngineError as e:
                    run.problem(
                        f"model {entry.label!r}, conversation {c + 1}: the probes at turn {t} were cut short: {e}"
                    )
                run.stop_if_cancelled()
    finally:
        with run.lock:
            run.scores["rows"].extend(turn_rows(traits, entry.label, k_cells, e_cells, said, checkpoints))
            run.write_scores()
        close_engine(engine)


# ----------------------------------------------------------------------------- tables


def _cell(d: Mapping[str, Any] | None, bars: bool = True) -> Any:
    """'██▌  67% 21–94 2/3': bar (the text chart), rate, Wilson interval, counts."""
    from rich.text import Text

    from evaluators.tables import bar

    if not d or not d.get("n"):
        return Text("–", style="dim")
    text = Text(bar(d["rate"], 4) + " ", style="cyan") if bars else Text()
    text.append(f"{d['rate']:>4.0%}", style="bold")
    text.append(f" {d['low'] * 100:.0f}–{d['high'] * 100:.0f} {d['k']}/{d['n']}", style="dim")
    return text


def drift_tables(scores: Mapping[str, Any]) -> list[Any]:
    """The headline (models side by side: turn-1 rate, last rate, first drop) and, per measure, a
    turn-by-turn table whose bars are the text chart of the rate against the turn."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = list(scores.get("rows", []))
    models = list(dict.fromkeys(r["model"] for r in rows))
    turns = sorted({int(r["turn"]) for r in rows})
    found = drops(scores)
    fraction = float(scores.get("drop", (scores.get("settings") or {}).get("drop", 0.5)))
    last_turn = turns[-1] if turns else "?"
    head = Table(
        title=f"Persona drift · {scores.get('eval', '')} · {scores.get('turns', '?')} turns × "
        f"{scores.get('conversations', '?')} conversations · user: {scores.get('user', '')}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        min_width=60,
    )
    head.add_column("Model", overflow="fold", min_width=16, max_width=24)
    head.add_column("", no_wrap=True)
    head.add_column("turn 1", no_wrap=True)
    head.add_column(f"turn {last_turn}", no_wrap=True)
    head.add_column("drop", justify="right", no_wrap=True)
    judged = scores.get("contradictions_by") == "judge"
    for n, model in enumerate(models):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["turn"])
        first, last = mine[0], mine[-1]
        d = found.get(model, {})
        for measure, word in (("knowledge", "knows"), ("expression", "shows")):
            head.add_row(
                model if measure == "knowledge" else "",
                word,
                _cell(first.get(measure), bars=False),
                _cell(last.get(measure), bars=False),
                f"t{d[measure]}" if d.get(measure) else "–",
            )
        contra_k = sum((r.get("contradicted") or {}).get("k", 0) for r in mine)
        contra_n = sum((r.get("contradicted") or {}).get("n", 0) for r in mine)
        head.add_row(
            "",
            "contradicts" + ("" if judged else "*"),
            _cell(first.get("contradicted"), bars=False),
            _cell(last.get("contradicted"), bars=False),
            Text(f"{contra_k}/{contra_n}", style="dim") if contra_n else "–",
            end_section=n < len(models) - 1,
        )
    head.caption = (
        "drop: the first probed turn whose rate is "
        f"below {fraction:g} × its turn-1 rate (for contradicts: all turns' count). Rate, Wilson 95% "
        "interval (%), k/n over conversations and traits. Probes are asked on a fork of the conversation, never in it."
        + ("" if judged else " *No judge set, so only the markers' directional phrases count as contradictions.")
    )
    head.caption_justify = "left"
    out: list[Any] = [head]
    for measure, title in (("knowledge", "Knows (knowledge probes)"), ("expression", "Shows (expression prompts)")):
        table = Table(title=f"{title} by turn", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, min_width=48)
        table.add_column("Turn", justify="right", no_wrap=True)
        for model in models:
            table.add_column(model, no_wrap=True)
        for turn in turns:
            cells = []
            for model in models:
                row = next((r for r in rows if r["model"] == model and r["turn"] == turn), None)
                cells.append(_cell(row.get(measure)) if row else Text("–", style="dim"))
            table.add_row(str(turn), *cells)
        out.append(table)
    return out
