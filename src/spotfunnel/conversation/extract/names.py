"""The caller's name from an answer ("my name is Maria López." -> "Maria Lopez")."""
from __future__ import annotations

import re
from dataclasses import dataclass

from spotfunnel.conversation.extract.text import FILLERS, ascii_fold

_INTRO = re.compile(
    r"^(?:(?:yes|yeah|yep|sure|ok|okay|so|well|hi|hello|oh|right|no|nope|actually|wait|sorry|um|uh|and)\b[\s,.!]*)*"
    r"(?:(?:(?:my )?(?:full |first |last )?name(?:'s| is)|it's|it is|its|this is|i'm|i am|you can put|put it under|"
    r"under|the name is|name)\b\s*[:,]?\s*)*",  # repeated: "it's under Grace Kim"
    re.IGNORECASE,
)
_EXPLICIT = re.compile(r"\b(?:my (?:full |last )?name(?:'s| is)|the name is|name's|put it under)\b", re.IGNORECASE)
_TRAILING = re.compile(
    r"[\s,.!]*(?:\b(?:thanks|thank you|please|thank you very much|cheers|that's me|here)\b[\s,.!]*)+$", re.IGNORECASE
)
_NOT_NAMES = frozenset(
    "yes yeah yep no nope okay ok sure book booking appointment haircut cut trim beard color colour "
    "blowout cancel reschedule move change tomorrow today monday tuesday wednesday thursday friday "
    "saturday sunday morning afternoon am pm what when where how why can could would i my you "
    "the a an to for at on in and or is not don't want like need sorry hello hi bye thanks please "
    # common words a phrase is made of, never a person's name: "sounds good", "I'm free", "not sure"
    "good great fine free sure just really maybe hoping looking calling wondering going trying thinking "
    "basically wait actually so well also still here there this that it's its be been was were "
    "any some all one two three four five six seven eight nine ten eleven twelve noon midday "
    "earlier later first second last other same time day week next evening tonight weekend "
    "perfect works work right wrong correct okay alright great lovely busy open closed much "
    "price prices hours address services service dry blow hair color style styling".split()
)
_PARTICLES = frozenset({"de", "da", "del", "della", "van", "von", "der", "la", "le", "di", "du", "bin", "al"})


@dataclass(frozen=True)
class PersonName:
    """A name the caller gave; `explicit` when introduced ("my name is ...")."""

    text: str
    explicit: bool

    @property
    def words(self) -> list[str]:
        return self.text.split()

    @property
    def is_full(self) -> bool:
        return len(self.words) >= 2


def extract_name(text: str) -> PersonName | None:
    """The name in an answer to "what's your name", title-cased and without accents; None if none."""
    plain = ascii_fold(text).strip()
    explicit = bool(_EXPLICIT.search(plain))
    if explicit:
        plain = plain[_EXPLICIT.search(plain).end():]  # type: ignore[union-attr]
    else:
        plain = _INTRO.sub("", plain, count=1)
    plain = _TRAILING.sub("", plain)
    plain = re.split(r"[.!?;]|,\s*(?:and|but|so)\b", plain)[0]
    tokens = _self_repaired([t for t in re.findall(r"[A-Za-z][A-Za-z'\-]*", plain) if t.lower() not in FILLERS])
    if not tokens or len(tokens) > 4:
        return None
    if any(t.lower() in _NOT_NAMES for t in tokens) or re.search(r"\d", plain):
        return None
    return PersonName(" ".join(_title(t) for t in tokens), explicit)


def _self_repaired(tokens: list[str]) -> list[str]:
    """A caller who restarts their name says it from its first word again ("Maria, Maria Lopez"):
    keep what follows the last restart. A lower-case "a" first is a hesitation, never a name."""
    if not tokens:
        return tokens
    if tokens[0] == "a" and len(tokens) > 1:  # a hesitation written as "a": "It's a Nina, Nina Patel"
        tokens = tokens[1:]
    first = tokens[0].lower()
    restarts = [i for i, t in enumerate(tokens) if t.lower() == first]
    return tokens[restarts[-1]:]


_SPELLED = re.compile(r"(?<![A-Za-z'])(?:[A-Z][\s,.\-]+){2,}[A-Z](?![A-Za-z'])")
_SPELL_CUE = re.compile(r"\b(?:that's|that is|it's|its|spelled|spelt|spelling|as in)\b[\s,:]*$", re.IGNORECASE)


def spelled_word(text: str) -> tuple[str, str] | None:
    """A word spelled out letter by letter ("R, E, I, D") as (word, the text without the spelling)."""
    match = _SPELLED.search(ascii_fold(text))
    if match is None:
        return None
    letters = re.findall(r"[A-Z]", match.group())
    before = _SPELL_CUE.sub("", ascii_fold(text)[: match.start()].rstrip(" ,.-"))
    rest = (before + " " + ascii_fold(text)[match.end():]).strip(" ,.")
    return "".join(letters).capitalize(), rest


def looks_like_person(name: PersonName, source: str, capitals_required: bool = False) -> bool:
    """A name, not a phrase: at most three words, none a common word, and written as a name
    (recognizers capitalize names; an all-lower-case transcript says nothing either way, so a name
    nobody asked for needs `capitals_required`)."""
    core = [w for w in name.words if w.lower() not in _PARTICLES]
    if len(core) > 3:
        return False
    folded = ascii_fold(source)
    if folded == folded.lower():
        return not capitals_required
    for word in name.words:
        said = re.search(rf"\b{re.escape(word)}\b", folded, re.IGNORECASE)
        if said is not None and said.group()[0].islower() and word.lower() not in _PARTICLES:
            return False
    return True


def _title(word: str) -> str:
    if word.lower() in _PARTICLES:
        return word.lower()
    parts = re.split(r"([\-'])", word.lower())
    return "".join(p[:1].upper() + p[1:] if len(p) > 1 or p.isalpha() else p for p in parts)
