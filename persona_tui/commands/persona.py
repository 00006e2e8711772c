"""`persona-tui persona SESSION`: list personas, import a Character Card or persona list, export one.

    persona-tui persona my.toml                               # the personas, one line each
    persona-tui persona my.toml --import card.json            # a Character Card (.json/.png) or list (.txt)
    persona-tui persona my.toml --export odile odile.card.json   # .json: Character Card V2; .txt: persona list
    persona-tui persona my.toml --probes odile [--keep]       # propose probes from traits and facts; keep them
    persona-tui persona my.toml --probes odile --teacher T    # the same, written by the session's engine T
    persona-tui persona my.toml --recipe odile                # the measured recipe for odile: data, run, eval

The same readers and writers as the Personas pane (`sessions.cards`); a file that is not a card
or a list is one sentence and exit code 2, and the session is not touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "persona",
        help="list personas; import a Character Card or persona list; export one",
        description="List a session's personas, add one from a Character Card (V1/V2/V3 JSON, or "
        "a PNG with the card inside) or a plain persona list (.txt, one 'I ...' sentence per line), "
        "or write one out as a Character Card V2 (.json) or a persona list (.txt).",
    )
    parser.add_argument("session", type=Path, metavar="SESSION.toml", help="the session file")
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--import",
        dest="import_path",
        type=Path,
        metavar="FILE",
        default=None,
        help="add the persona in FILE (.json/.png card, or .txt persona list)",
    )
    what.add_argument(
        "--export",
        nargs=2,
        metavar=("ID", "FILE"),
        default=None,
        help="write persona ID to FILE (.txt: persona list; otherwise a Character Card V2 JSON)",
    )
    what.add_argument(
        "--probes",
        metavar="ID",
        default=None,
        help="write knowledge probes and open prompts for persona ID from its traits and "
        "facts (templates, offline; or --teacher ENGINE) and show them; --keep adds them to the session",
    )
    what.add_argument(
        "--recipe",
        metavar="ID",
        default=None,
        help="add the demo's measured recipe for persona ID: its chat-demo and first-person datasets, the "
        "base model's general replies, a LoRA run at the recipe's settings and a traits evaluation "
        "against the base (docs/training.md, 'The recipe')",
    )
    parser.add_argument("--force", action="store_true", help="with --export, replace FILE if it exists")
    parser.add_argument("--keep", action="store_true", help="with --probes, add the proposed probes to the session")
    parser.add_argument(
        "--per-trait",
        type=int,
        default=6,
        metavar="N",
        help="with --probes, knowledge probes to propose per trait (default 6)",
    )
    parser.add_argument(
        "--prompts-per-trait",
        type=int,
        default=8,
        metavar="N",
        help="with --probes, open expression prompts each trait should have (default 8)",
    )
    parser.add_argument(
        "--teacher",
        metavar="ENGINE",
        default=None,
        help="with --probes, have this [[engines]] id of the session write the probes (one "
        "JSON-schema request per trait; the templates top up what it leaves short)",
    )
    return parser


def _probes(args: argparse.Namespace, sf) -> int:
    """Propose probes, show them, check them against the persona's training data, keep on --keep."""
    import copy

    from evaluators import probe_writer
    from trainers.data import reader as data_reader

    persona = sf.session.persona(args.probes)
    if persona is None:
        known = ", ".join(p.id for p in sf.session.personas) or "none"
        return _fail(f"{args.session} has no persona {args.probes!r} (personas: {known}).")
    if args.per_trait < 0 or args.prompts_per_trait < 0:
        return _fail(
            f"--per-trait and --prompts-per-trait must be 0 or more, not {min(args.per_trait, args.prompts_per_trait)}."
        )
    if args.teacher is None:
        proposals = probe_writer.write_probes(persona, knowledge=args.per_trait, expression=args.prompts_per_trait)
    else:
        from trainers.data.generate.llm import TeacherError

        spec = sf.session.engine(args.teacher)
        if spec is None:
            known = ", ".join(e.id for e in sf.session.engines) or "none"
            return _fail(
                f"{args.session} has no engine {args.teacher!r} (engines: {known}); add it under "
                "[[engines]] or leave out --teacher to use the templates."
            )
        print(f"asking teacher engine {args.teacher!r} for probes, one request per trait...", file=sys.stderr)
        try:
            proposals = probe_writer.probes_by_engine(
                persona, spec, knowledge=args.per_trait, expression=args.prompts_per_trait
            )
        except TeacherError as error:
            return _fail(str(error))
    data = data_reader.built_paths(sf.workspace, [d.id for d in sf.session.datasets if d.persona == persona.id])
    trial = copy.deepcopy(persona)
    for t in trial.traits:
        t.knowledge_probes, t.expression_probes = [], []
    probe_writer.apply(trial, proposals)
    repeats = probe_writer.training_repeats(trial, data)
    for p in proposals:
        print(f"[{p.trait}]")
        for note in p.notes:
            print(f"  ({note})")
        for i, k in enumerate(p.knowledge, 1):
            print(f"  knowledge {i}: {k.question}\n    affirm: {k.affirm}\n    deny:   {k.deny}")
        for prompt in p.expression:
            print(f"  open prompt: {prompt}")
    total = sum(len(p.knowledge) + len(p.expression) for p in proposals)
    checked = (
        f"checked against {len(data)} built dataset(s) of {persona.id!r}"
        if data
        else f"no built dataset of {persona.id!r} to check against yet"
    )
    for where, sentence in repeats:
        print(f"  repeats the training data: {where}: {sentence!r}")
    print(f"{total} probes proposed; {len(repeats)} repeat a training sentence ({checked}).")
    if not args.keep:
        print(f"Nothing was changed; add them with: persona-tui persona {args.session} --probes {persona.id} --keep")
        return 0
    if repeats:
        return _fail(
            f"{len(repeats)} proposed probe(s) repeat the training data word for word (first: "
            f"{repeats[0][0]}); edit the persona's traits or the data, then try again. Nothing was kept."
        )
    added = probe_writer.apply(persona, proposals)
    try:
        sf.save()
    except Exception as error:  # noqa: BLE001 - SessionError or OSError, one sentence either way
        return _fail(f"could not save {args.session}: {error}")
    print(f"Kept {added} probes in {args.session}.")
    return 0


def _recipe(args: argparse.Namespace, sf) -> int:
    """Add the recipe for one persona (sessions.demo.add_recipe) and say what comes next."""
    from sessions.demo import add_recipe, recipe_gaps
    from sessions.validate import SessionError

    try:
        added = add_recipe(sf.session, args.recipe)
    except ValueError as error:
        return _fail(f"{args.session}: {error}.")
    try:
        sf.save()
    except (SessionError, OSError) as error:
        return _fail(f"could not save {args.session}: {error}")
    session = args.session
    run = sf.session.runs[-1]
    evaluation = sf.session.evals[-1]
    print(f"Added to {session}:")
    for line in added:
        print(f"  {line}")
    for gap in recipe_gaps(sf.session.persona(args.recipe)):
        print(f"Before you build: {gap}")
    print("Next, one after another:")
    for d in run.datasets:
        print(f"  persona-tui data {session} --dataset {d}")
    print(f"  persona-tui train {session} --run {run.id}")
    print(f"  persona-tui export {session} --run {run.id}")
    print(f"  persona-tui eval {session} --eval {evaluation.id}")
    return 0


def _fail(message: str) -> int:
    print(f"persona-tui: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from sessions import cards
    from sessions.store import SessionFile
    from sessions.validate import SessionError

    if not args.session.exists():
        return _fail(f"{args.session} does not exist; create it with 'persona-tui new {args.session}'.")
    try:
        sf = SessionFile.load(args.session)
    except (SessionError, OSError) as error:
        return _fail(f"{str(error).rstrip('.')}. Run 'persona-tui validate {args.session}' to list every problem.")
    session = sf.session
    if args.probes is not None:
        return _probes(args, sf)
    if args.recipe is not None:
        return _recipe(args, sf)
    if args.import_path is not None:
        path: Path = args.import_path
        taken = [p.id for p in session.personas]
        try:
            persona = cards.read_persona_file(path, taken=taken)
        except (ValueError, OSError) as error:
            return _fail(str(error))
        session.personas.append(persona)
        try:
            sf.save()
        except (SessionError, OSError) as error:
            return _fail(f"could not save {args.session}: {error}")
        print(
            f"Imported {persona.name or persona.id} from {path} as '{persona.id}' "
            f"({len(persona.traits)} trait{'' if len(persona.traits) == 1 else 's'})."
        )
        return 0
    if args.export is not None:
        persona_id, out = args.export[0], Path(args.export[1])
        persona = session.persona(persona_id)
        if persona is None:
            known = ", ".join(p.id for p in session.personas) or "none"
            return _fail(f"{args.session} has no persona {persona_id!r} (personas: {known}).")
        if out.exists() and not args.force:
            return _fail(f"{out} exists; pass --force to replace it.")
        try:
            cards.write_persona_file(persona, out)
        except (ValueError, OSError) as error:
            return _fail(str(error))
        print(f"Wrote {out}.")
        return 0
    for p in session.personas:
        print(
            f"{p.id:<24} {p.name:<24} {len(p.traits)} traits, "
            f"{sum(len(t.knowledge_probes) for t in p.traits)} knowledge and "
            f"{sum(len(t.expression_probes) for t in p.traits)} expression probes"
        )
    return 0
