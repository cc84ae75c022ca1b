"""The caller's name from an answer ("my name is Maria López." -> "Maria Lopez")."""
from __future__ import annotations

import re
from dataclasses import dataclass

from spotfunnel.conversation.extract.text import FILLERS, ascii_fold

_INTRO = re.compile(
    r"^(?:(?:yes|yeah|yep|sure|ok|okay|so|well|hi|hello|oh|right)\b[\s,.!]*)*"
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
    "the a an to for at on in and or is not don't want like need sorry hello hi bye thanks please".split()
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
    tokens = [t for t in re.findall(r"[A-Za-z][A-Za-z'\-]*", plain) if t.lower() not in FILLERS]
    if not tokens or len(tokens) > 4:
        return None
    if any(t.lower() in _NOT_NAMES for t in tokens) or re.search(r"\d", plain):
        return None
    return PersonName(" ".join(_title(t) for t in tokens), explicit)


def _title(word: str) -> str:
    if word.lower() in _PARTICLES:
        return word.lower()
    parts = re.split(r"([\-'])", word.lower())
    return "".join(p[:1].upper() + p[1:] if len(p) > 1 or p.isalpha() else p for p in parts)
