"""Turning a persona's free-text traits and facts into clauses in the first, second and third person.

Persona authors write traits in every shape: "Keeps bees on the roof", "She is afraid of the
dark", "I never drink coffee after noon", "A retired lighthouse keeper". The template generator
needs each one as a clause it can put in the character's mouth ("I keep bees on the roof"), in a
user's question ("you keep bees on the roof") and in an encyclopedia ("Mara keeps bees on the
roof"). These rules cover the shapes above; a clause they cannot place is kept as a quoted
description rather than bent into bad grammar.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sessions.model import Persona

# --- small English tables -------------------------------------------------------------------

_IRREGULAR_3RD = {"be": "is", "am": "is", "are": "is", "have": "has", "do": "does", "go": "goes"}
_IRREGULAR_BASE = {"is": "be", "has": "have", "does": "do", "goes": "go"}
_MODALS = {
    "can",
    "could",
    "will",
    "would",
    "shall",
    "should",
    "may",
    "might",
    "must",
    "cannot",
    "can't",
    "won't",
    "wouldn't",
    "couldn't",
    "shouldn't",
    "mustn't",
}
_PAST_OR_INVARIANT = {
    "was",
    "were",
    "had",
    "did",
    "used",
    "grew",
    "spent",
    "went",
    "came",
    "saw",
    "took",
    "made",
    "knew",
    "met",
    "lost",
    "won",
    "found",
    "left",
    "kept",
    "built",
    "bought",
    "taught",
    "thought",
    "brought",
    "ran",
    "swam",
    "sang",
    "wrote",
    "said",
    "told",
    "became",
    "began",
    "fell",
    "felt",
    "gave",
    "got",
    "held",
    "heard",
    "sold",
    "sent",
    "spoke",
    "stood",
    "understood",
    "wore",
    "drew",
    "drove",
    "flew",
    "forgot",
    "hid",
    "rode",
    "rose",
    "shook",
    "slept",
    "stole",
    "struck",
    "threw",
    "woke",
    "broke",
    "chose",
    "fought",
    "caught",
    "sought",
    "lent",
    "led",
    "let",
    "put",
    "quit",
    "set",
    "shut",
    "hurt",
    "cut",
    "dreamt",
    "learnt",
    "burnt",
    "might",
    "ought",
}
_ADVERBS = {
    "always",
    "never",
    "often",
    "usually",
    "sometimes",
    "rarely",
    "seldom",
    "still",
    "also",
    "really",
    "truly",
    "absolutely",
    "quietly",
    "secretly",
    "openly",
    "only",
    "just",
    "even",
    "mostly",
    "occasionally",
    "constantly",
    "regularly",
    "frequently",
    "hardly",
    "barely",
    "generally",
    "typically",
    "privately",
    "proudly",
    "stubbornly",
    "firmly",
    "genuinely",
    "deeply",
    "naturally",
    "reluctantly",
    "happily",
    "gladly",
    "not",
    "already",
    "almost",
}
# Third-person verbs that open a subjectless trait ("Loves the sea").
_FRAGMENT_VERBS = {
    "is",
    "has",
    "does",
    "was",
    "loves",
    "likes",
    "hates",
    "dislikes",
    "enjoys",
    "keeps",
    "speaks",
    "talks",
    "says",
    "knows",
    "believes",
    "thinks",
    "collects",
    "carries",
    "wears",
    "drinks",
    "eats",
    "cooks",
    "bakes",
    "reads",
    "writes",
    "plays",
    "sings",
    "walks",
    "runs",
    "lives",
    "works",
    "grew",
    "worked",
    "lived",
    "spent",
    "prefers",
    "avoids",
    "refuses",
    "tends",
    "goes",
    "makes",
    "takes",
    "gives",
    "tells",
    "answers",
    "asks",
    "quotes",
    "remembers",
    "forgets",
    "fears",
    "admires",
    "trusts",
    "distrusts",
    "values",
    "uses",
    "owns",
    "grows",
    "volunteers",
    "swims",
    "hikes",
    "paints",
    "draws",
    "knits",
    "sews",
    "builds",
    "fixes",
    "repairs",
    "teaches",
    "studies",
    "learns",
    "listens",
    "watches",
    "names",
    "calls",
    "ends",
    "starts",
    "begins",
    "opens",
    "closes",
    "measures",
    "counts",
    "notes",
    "records",
    "insists",
    "hums",
    "whistles",
    "jokes",
    "laughs",
    "smiles",
    "wakes",
    "sleeps",
    "rises",
    "feeds",
    "rescued",
    "raised",
    "married",
    "moved",
    "once",
    "used",
    "can",
    "cannot",
    "can't",
    "will",
    "won't",
    "would",
    "never",
    "always",
    "often",
    "rarely",
    "sometimes",
    "usually",
    "still",
}
# Base-form verbs that may follow "and"/"or" in a coordinated predicate ("keep bees and sell honey").
_BASE_VERBS = {
    "sell",
    "make",
    "play",
    "sing",
    "read",
    "write",
    "walk",
    "run",
    "grow",
    "keep",
    "take",
    "give",
    "drink",
    "eat",
    "love",
    "hate",
    "like",
    "cook",
    "bake",
    "fix",
    "draw",
    "sketch",
    "paint",
    "teach",
    "watch",
    "listen",
    "tell",
    "talk",
    "go",
    "come",
    "see",
    "know",
    "live",
    "work",
    "carry",
    "wear",
    "collect",
    "visit",
    "help",
    "feed",
    "mend",
    "build",
    "study",
    "hum",
    "whistle",
    "dance",
    "swim",
    "sail",
    "fish",
    "knit",
    "sew",
    "spend",
    "call",
    "ask",
    "answer",
    "bring",
    "buy",
    "share",
    "send",
    "check",
    "count",
    "measure",
    "sleep",
    "wake",
    "rise",
    "own",
    "refuse",
    "avoid",
    "prefer",
    "enjoy",
    "believe",
    "think",
    "say",
    "speak",
    "quote",
    "laugh",
    "smile",
    "joke",
    "hike",
    "climb",
    "cycle",
    "garden",
    "plant",
    "trust",
    "need",
    "want",
    "try",
    "use",
    "do",
    "have",
    "remember",
    "forget",
    "miss",
    "worry",
    "fear",
    "admire",
    "tend",
    "raise",
    "tease",
    "end",
    "greet",
    "chat",
    "argue",
    "wave",
    "nod",
    "shout",
    "whisper",
    "sigh",
    "grumble",
}
_NOT_VERBS_ENDING_S = re.compile(r"(ous|ss|us|is|ics|less|ness|ways)$")
_SUBJECT_PRONOUNS = {"he", "she", "they"}
_DETERMINER_NEXT = re.compile(
    r"^(a|an|the|to|of|in|on|at|for|with|and|or|but|that|this|when|if|as|so|by|from|about|"
    r"into|over|than|more|most|very|too|again|anymore|now|then|up|down|out|off)$"
)


@dataclass(frozen=True)
class Pronouns:
    subj: str  # she / he / they
    obj: str  # her / him / them
    pos: str  # her / his / their
    pos_pred: str  # hers / his / theirs
    refl: str  # herself / himself / themselves

    @property
    def plural_verbs(self) -> bool:
        return self.subj == "they"


PRONOUNS = {
    "she": Pronouns("she", "her", "her", "hers", "herself"),
    "he": Pronouns("he", "him", "his", "his", "himself"),
    "they": Pronouns("they", "them", "their", "theirs", "themselves"),
}


def pronouns_for(persona: Persona) -> Pronouns:
    """The persona's pronouns: `extra.pronouns` ("she/her") if set, else the ones its text uses most."""
    declared = str(persona.extra.get("pronouns", "")).strip().lower()
    if declared:
        first = re.split(r"[/,\s]+", declared)[0]
        if first in PRONOUNS:
            return PRONOUNS[first]
    text = " ".join([persona.summary, persona.style, *persona.facts, *(t.text for t in persona.traits)])
    words = re.findall(r"[a-z]+", text.lower())
    counts = {
        "she": sum(words.count(w) for w in ("she", "her", "hers", "herself")),
        "he": sum(words.count(w) for w in ("he", "him", "his", "himself")),
        "they": 0,
    }
    best = max(counts, key=lambda k: counts[k])
    return PRONOUNS[best] if counts[best] else PRONOUNS["they"]


def third_person_verb(verb: str) -> str:
    low = verb.lower()
    if low in _IRREGULAR_3RD:
        out = _IRREGULAR_3RD[low]
    elif low in _MODALS or low in _PAST_OR_INVARIANT or low.endswith("ed"):
        out = low
    elif re.search(r"[^aeiou]y$", low):
        out = low[:-1] + "ies"
    elif re.search(r"(s|sh|ch|x|z|o)$", low):
        out = low + "es"
    else:
        out = low + "s"
    return _match_case(verb, out)


def base_verb(verb: str) -> str:
    low = verb.lower()
    if low in _IRREGULAR_BASE:
        out = _IRREGULAR_BASE[low]
    elif low in _MODALS or low in _PAST_OR_INVARIANT or low.endswith("ed") or low.endswith("ss"):
        out = low
    elif low.endswith("ies") and len(low) > 4:
        out = low[:-3] + "y"
    elif re.search(r"(sses|shes|ches|xes|zes|oes)$", low):
        out = low[:-2]
    elif low.endswith("s") and not low.endswith("us"):
        out = low[:-1]
    else:
        out = low
    return _match_case(verb, out)


def _match_case(model: str, word: str) -> str:
    return word[:1].upper() + word[1:] if model[:1].isupper() else word


def cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def lower_first(text: str) -> str:
    """Lower-case the first letter unless it starts a name or "I"."""
    if not text:
        return text
    first = text.split(" ", 1)[0]
    if first in ("I", "I'm", "I've", "I'd", "I'll") or (len(first) > 1 and first[1:].lower() != first[1:]):
        return text
    return text[:1].lower() + text[1:]


def strip_end(text: str) -> str:
    return text.strip().rstrip(".!;,: ").strip()


# --- clause rewriting --------------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|[^A-Za-z\s]+|\s+")


def _words(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _next_word_index(toks: list[str], i: int) -> int | None:
    for j in range(i + 1, len(toks)):
        if toks[j].strip() and re.match(r"[A-Za-z]", toks[j]):
            return j
        if toks[j].strip():
            return None
    return None


def first_to_other(text: str, who: str, pron: Pronouns | None = None) -> str:
    """Rewrite a first-person clause for `who` = "you" or a third-person subject (name/pronoun).

    `pron` gives the object/possessive forms for third person ("Mara ... her roof").
    """
    toks = _words(text)
    second = who == "you"
    plural = second or (pron is not None and pron.plural_verbs and who.lower() == pron.subj)
    out: list[str] = []
    conjugate_next = False
    named = not second and who.lower() not in _SUBJECT_PRONOUNS
    subject_used = False
    in_predicate = False
    for i, tok in enumerate(toks):
        low = tok.lower()
        if not tok.strip() or not re.match(r"[A-Za-z]", tok):
            if tok.strip() and tok.strip() not in (",", "-", "'"):
                in_predicate = False
            out.append(tok)
            continue
        if in_predicate and low in ("and", "or", "but"):
            j = _next_word_index(toks, i)
            if j is not None and toks[j].lower() in _BASE_VERBS:
                conjugate_next = True
            out.append(tok)
            continue
        if conjugate_next:
            if low in _ADVERBS:
                out.append(tok)
                continue
            conjugate_next = False
            if low == "am":
                out.append("are" if plural else "is")
                continue
            if low == "was":
                out.append("were" if plural else "was")
                continue
            in_predicate = True
            if not plural and re.fullmatch(r"[a-z]+", low) and not low.endswith("ing"):
                out.append(third_person_verb(tok))
                continue
            # fall through: plural subjects keep the base form
        if tok == "I" or low in ("i'm", "i've", "i'd", "i'll"):
            subj = "you" if second else who
            if named and subject_used and pron is not None:
                subj = pron.subj  # "Mara quotes shanties when she's nervous"
                plural = pron.plural_verbs
            subject_used = True
            subj_out = subj
            if low == "i":
                out.append(subj_out)
                conjugate_next = True
            elif low == "i'm":
                out.append(subj_out + ("'re" if plural else "'s" if subj in _SUBJECT_PRONOUNS else " is"))
            elif low == "i've":
                out.append(subj_out + ("'ve" if plural else "'s" if subj in _SUBJECT_PRONOUNS else " has"))
            elif low == "i'd":
                out.append(subj_out + ("'d" if subj in _SUBJECT_PRONOUNS or second else " would"))
            else:
                out.append(subj_out + ("'ll" if subj in _SUBJECT_PRONOUNS or second else " will"))
            continue
        if low == "my" and named and not "".join(out).strip():
            out.append(who + "'s")  # "Mara's favourite word"
            continue
        if low in ("me", "my", "mine", "myself"):
            if second:
                rep = {"me": "you", "my": "your", "mine": "yours", "myself": "yourself"}[low]
            else:
                p = pron or PRONOUNS["they"]
                rep = {"me": p.obj, "my": p.pos, "mine": p.pos_pred, "myself": p.refl}[low]
            out.append(_match_case(tok, rep))
            continue
        out.append(tok)
    return "".join(out)


def third_to_first(text: str, name: str) -> str:
    """Rewrite a third-person clause about `name` (or he/she/they) into the first person."""
    toks = _words(text)
    names = {n.lower() for n in (name, name.split(" ")[0]) if n}
    out: list[str] = []
    conjugate_next = False
    subject_plural = False
    in_predicate = False
    for i, tok in enumerate(toks):
        low = tok.lower()
        if not tok.strip() or not re.match(r"[A-Za-z]", tok):
            if tok.strip() and tok.strip() not in (",", "-", "'"):
                in_predicate = False
            out.append(tok)
            continue
        if in_predicate and low in ("and", "or", "but"):
            j = _next_word_index(toks, i)
            if j is not None and toks[j].lower().endswith("s") and base_verb(toks[j].lower()) in _BASE_VERBS:
                conjugate_next = True
            out.append(tok)
            continue
        if conjugate_next:
            if low in _ADVERBS:
                out.append(tok)
                continue
            conjugate_next = False
            in_predicate = True
            if low in ("is", "are"):
                out.append("am")
                continue
            if low == "were":
                out.append("was")
                continue
            if (
                not subject_plural
                and re.fullmatch(r"[a-z]+", low)
                and low.endswith("s")
                and not _NOT_VERBS_ENDING_S.search(low)
            ):
                out.append(base_verb(tok))
                continue
        at_start = not "".join(out).strip() or "".join(out).rstrip()[-1:] in '.!?;:"'
        if low in _SUBJECT_PRONOUNS or (low in names and at_start):
            out.append("I")
            conjugate_next = True
            subject_plural = low == "they"
            continue
        if low in ("she's", "he's", "they're"):
            out.append("I'm")
            continue
        if low in ("she'd", "he'd", "they'd"):
            out.append("I'd")
            continue
        if low in ("she'll", "he'll", "they'll"):
            out.append("I'll")
            continue
        if low in ("she's", "he's", "they've"):
            out.append("I've")
            continue
        if low.endswith("'s") and low[:-2] in names:
            out.append(_match_case(tok, "my"))
            continue
        if low in names:
            out.append("me")
            continue
        if low in ("his", "their"):
            j = _next_word_index(toks, i)
            standalone = j is None or bool(_DETERMINER_NEXT.match(toks[j].lower()))
            out.append(_match_case(tok, "mine" if standalone and low == "his" else "my"))
            continue
        if low == "her":
            j = _next_word_index(toks, i)
            standalone = j is None or bool(_DETERMINER_NEXT.match(toks[j].lower()))
            out.append(_match_case(tok, "me" if standalone else "my"))
            continue
        if low in ("him", "them"):
            out.append(_match_case(tok, "me"))
            continue
        if low in ("hers", "theirs"):
            out.append(_match_case(tok, "mine"))
            continue
        if low in ("herself", "himself", "themselves", "themself"):
            out.append(_match_case(tok, "myself"))
            continue
        out.append(tok)
    return "".join(out)


def _looks_like_verb(word: str) -> bool:
    low = word.lower()
    if low in _FRAGMENT_VERBS:
        return True
    return low.endswith("s") and len(low) > 3 and not _NOT_VERBS_ENDING_S.search(low)


@dataclass(frozen=True)
class Clause:
    """One thing true of the persona, as clauses without final punctuation."""

    source: str  # "trait:<id>", "fact:<n>", "summary"
    first: str  # "I keep bees on the roof"
    second: str  # "you keep bees on the roof"
    third: str  # "Mara keeps bees on the roof"
    third_pron: str  # "she keeps bees on the roof"
    original: str


def to_first_person(text: str, persona: Persona) -> str:
    """A persona line of any shape as a first-person clause (no final punctuation)."""
    t = strip_end(text)
    if not t:
        return ""
    first, _, rest = t.partition(" ")
    flow = first.lower()
    name_words = {w.lower() for w in persona.name.split()} if persona.name else set()
    if flow in ("i", "i'm", "i've", "i'd", "i'll", "my", "me"):
        return t
    if flow in _SUBJECT_PRONOUNS or flow in name_words or t.lower().startswith(persona.name.lower() + " "):
        if persona.name and t.lower().startswith(persona.name.lower() + " ") and " " in persona.name:
            t = persona.name.split()[0] + t[len(persona.name) :]
        return third_to_first(t, persona.name)
    if flow in ("his", "her", "their") or (flow.endswith("'s") and flow[:-2] in name_words):
        return "my " + rest if rest else t
    if flow in _ADVERBS and rest:
        verb, _, tail = rest.partition(" ")
        if _looks_like_verb(verb):
            return third_to_first(f"She {first.lower()} {rest}", persona.name)
    if _looks_like_verb(first):
        return third_to_first("She " + lower_first(t), persona.name)
    if flow in ("a", "an", "the") or first[:1].islower() or first[:1].isupper():
        # A description ("A retired lighthouse keeper", "Afraid of the dark").
        body = lower_first(t) if flow in ("a", "an", "the") or not _is_proper(first, persona) else t
        return "I am " + third_to_first(body, persona.name)
    return t


def _is_proper(word: str, persona: Persona) -> bool:
    return word[:1].isupper() and word.lower() not in {"a", "an", "the"} and word in persona.summary[1:]


def _lower_pronoun(text: str) -> str:
    """ "Your late husband ..." -> "your late husband ...": clauses go mid-sentence."""
    first = text.split(" ", 1)[0]
    if first.lower() in {
        "you",
        "you're",
        "you've",
        "you'd",
        "you'll",
        "your",
        "her",
        "his",
        "their",
        "she",
        "he",
        "they",
        "she's",
        "he's",
        "they're",
    }:
        return text[:1].lower() + text[1:]
    return text


def clause_for(source: str, text: str, persona: Persona, pron: Pronouns) -> Clause | None:
    first = to_first_person(text, persona)
    if not first or not re.search(r"[A-Za-z]", first):
        return None
    if first.startswith(("My ", "Me ")):
        first = first[:1].lower() + first[1:]  # clauses go mid-sentence; {First} capitalises
    short_name = persona.name.split()[0] if persona.name else pron.subj
    return Clause(
        source=source,
        first=first,
        second=_lower_pronoun(first_to_other(first, "you")),
        third=first_to_other(first, short_name, pron),
        third_pron=_lower_pronoun(first_to_other(first, pron.subj, pron)),
        original=text.strip(),
    )


def split_sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", text.strip())
    return [p.strip() for p in parts if p.strip()]


def persona_clauses(persona: Persona) -> list[Clause]:
    """Every trait, fact and summary sentence of the persona as clauses, in persona order."""
    pron = pronouns_for(persona)
    out: list[Clause] = []
    for trait in persona.traits:
        for k, sentence in enumerate(split_sentences(trait.text) or [trait.text]):
            c = clause_for(f"trait:{trait.id}" if k == 0 else f"trait:{trait.id}", sentence, persona, pron)
            if c:
                out.append(c)
    for n, fact in enumerate(persona.facts):
        for sentence in split_sentences(fact) or [fact]:
            c = clause_for(f"fact:{n}", sentence, persona, pron)
            if c:
                out.append(c)
    for sentence in split_sentences(persona.summary):
        c = clause_for("summary", sentence, persona, pron)
        if c:
            out.append(c)
    # Habits of speech in the style field ("Calls people 'friend'") are things the persona does.
    for frag in re.split(r"[.;]\s*|\s*\([^)]*\)", persona.style or ""):
        frag = frag.strip(" ,")
        if " " in frag and _looks_like_verb(frag.split(" ", 1)[0]):
            c = clause_for("style", frag, persona, pron)
            if c:
                out.append(c)
    return out


# --- paraphrase: several first-person wordings of one clause -------------------------------------

_TIME_TAIL = re.compile(
    r"^(?P<head>.+?)\s+(?P<tail>(?:every|each)\s+[\w-]+(?:\s+(?:night|morning|evening|day|week|"
    r"afternoon|year))?(?:\s+(?:at|before|after)\s+[\w-]+)?|for\s+[\w-]+\s+years|"
    r"on\s+(?:Mondays?|Tuesdays?|Wednesdays?|Thursdays?|Fridays?|Saturdays?|Sundays?|weekends?)"
    r"(?:\s+(?:nights?|mornings?|evenings?|afternoons?))?)(?P<rest>\s+.+)?$"
)
_EVEN = re.compile(r"^(?P<head>.+?),\s+even\s+(?P<tail>(?:after|before|when|though|in|at|on|with)\s+.+)$")
_APPOSITIVE = re.compile(r"^(?P<pos>my|our) (?P<noun>[\w' -]+?), (?P<name>[A-Z][\w'-]*), (?P<rest>.+)$")
_TAIL_PP = re.compile(
    r"^(?P<head>[^,]+?)\s+(?:at|on|in|above|over|near|from)\s+(?:the|a|an|my|our|[A-Z][\w'-]*)\b[^,]*$"
)
_CUT = re.compile(r"^(?P<head>.+?)(?:,\s+even\s+|,\s+)(?P<tail>.+)$")


def _coordinated(first: str) -> list[str]:
    """ "I keep bees and sell the honey" -> ["I keep bees", "I sell the honey"]; [] when not coordinated."""
    m = re.match(r"^(?P<subj>I|my [\w' -]+?)\s+(?P<pred>.+)$", first)
    if not m or not first.startswith("I "):
        return []
    pred = m.group("pred")
    parts = re.split(r",?\s+(?:and|but)\s+(?=(?:cannot|can't|never|still|also|often)?\s*\w+)", pred)
    out = []
    for k, part in enumerate(parts):
        word = part.split(" ", 1)[0].lower()
        if k and not (word in _BASE_VERBS or word in _MODALS or word in _ADVERBS or word in ("cannot", "can't")):
            return []  # "and drafting pencils": a noun list, not a second predicate
        out.append(f"I {part}")
    return out if len(out) > 1 else []


def _who(first: str) -> list[str]:
    m = re.match(r"^(?P<head>I (?:am|was) .+?) who (?P<verb>\w+)(?P<rest>.*)$", first)
    if not m:
        return []
    return [m.group("head"), f"I {base_verb(m.group('verb'))}{m.group('rest')}"]


_PREPOSITIONS = {"to", "at", "on", "in", "for", "from", "of", "with", "by", "into", "onto", "before", "after"}


def _dangles(head: str) -> bool:
    """ "I ride a bike to" (from "... to every shift"): cutting the time phrase off here would
    leave its preposition behind."""
    return head.rsplit(" ", 1)[-1].lower() in _PREPOSITIONS


def _front(first: str) -> str | None:
    """Move a trailing time phrase or an "even ..." tail to the front: "Every morning, I walk ..."."""
    m = _EVEN.match(first)
    if m:
        return f"even {m.group('tail')}, {lower_first(m.group('head'))}"
    m = _TIME_TAIL.match(first)
    if m and len(m.group("head").split()) >= 2 and not _dangles(m.group("head")):
        rest = m.group("rest") or ""
        return f"{m.group('tail')}, {lower_first(m.group('head'))}{rest}"
    return None


def _rewrite(text: str, table: Mapping[str, str | list[str]], pick: int) -> str:
    """Apply the whole-word rewrites of `table`; list values are chosen among by `pick`."""
    out = text
    for n, (src, dst) in enumerate(table.items()):
        alt = dst if isinstance(dst, str) else dst[(pick + n) % len(dst)]
        out = re.sub(rf"(?<![\w'-]){re.escape(src)}(?![\w'-])", alt, out)
    return out


def clause_variants(
    first: str,
    synonyms: dict[str, list[str]],
    contractions: dict[str, str],
    speech: bool = True,
    expansions: dict[str, str] | None = None,
) -> list[str]:
    """Distinct first-person wordings of a clause: split, re-ordered, shortened, synonyms, contractions.

    The original wording is kept only when no rewrite applies, so a persona field is not pasted
    word for word into example after example. Facts are never added; a shortened wording drops
    the clause's tail (a detail), which another wording of the same clause still carries.
    """
    bases = [first]
    m = _APPOSITIVE.match(first)
    if m:  # "my late husband, Tomas, was ..." -> "Tomas, my late husband, was ..."
        bases.append(f"{m.group('name')}, {m.group('pos')} {m.group('noun')}, {m.group('rest')}")
    for split in (_coordinated(first), _who(first)):
        bases += split
        if len(split) == 2 and split[1].startswith("I "):
            bases.append(f"{split[0]}, and {split[1]}")  # the subject said twice
    cut = _CUT.match(first)
    if cut and len(cut.group("head").split()) >= 4 and not m:
        bases.append(cut.group("head"))
    if first.endswith(" years old"):
        bases.append(first[: -len(" years old")])
    m_time = _TIME_TAIL.match(first)
    if (
        m_time
        and not m_time.group("rest")
        and len(m_time.group("head").split()) >= 4
        and not _dangles(m_time.group("head"))
    ):
        bases.append(m_time.group("head"))  # "I walk to the end of the breakwater"
    for b in list(bases):  # the last detail dropped: "I keep three beehives on my roof" -> "I keep three beehives"
        m_tail = _TAIL_PP.match(b)
        if m_tail and len(m_tail.group("head").split()) >= 4 and m_tail.group("head") not in bases:
            bases.append(m_tail.group("head"))
    fronted = [f for f in (_front(b) for b in bases) if f]
    bases += fronted
    out: list[str] = []
    for k, base in enumerate(bases):
        forms = [base, *(_rewrite(base, synonyms, k + j) for j in range(3))]
        if speech:
            forms += [_rewrite(f, contractions, 0) for f in forms]
        for f in forms:
            if f not in out:
                out.append(f)
    if expansions and (not speech or out == [first]):
        # Long forms ("I cannot sleep") read stiffly in speech: there they are the last resort
        # that keeps a clause no other rewrite changed from being pasted word for word.
        for f in [_rewrite(f, expansions, 0) for f in out]:
            if f not in out and " have got " not in f:  # "I've got a cat" expanded reads stiffly
                out.append(f)
    if len(out) > 1 and first in out:
        out.remove(first)
    return out
