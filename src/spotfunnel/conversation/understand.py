"""Understanding one caller turn: every slot and intent it carries, whatever the open question was."""
from __future__ import annotations

import re

from rapidfuzz import fuzz

from spotfunnel.conversation.context import CallContext
from spotfunnel.conversation.extract.intents import Intent, detect_intents, yes_or_no
from spotfunnel.conversation.extract.names import PersonName, extract_name, looks_like_person, spelled_word
from spotfunnel.conversation.extract.phones import parse_phone
from spotfunnel.conversation.extract.services import match_service, service_phrases
from spotfunnel.conversation.extract.text import fold
from spotfunnel.conversation.update import DialogueUpdate

_FIRST = re.compile(r"\b(?:first|earlier|earliest|former|sooner|1st)\b")
_SECOND = re.compile(r"\b(?:second|later|latest|last|latter|other|2nd)\b")
_CORRECTION = re.compile(r"\b(?:actually|wait|sorry|instead|rather|make it|change it|i mean|i meant|scratch that)\b")
# A clause that introduces the caller ("I'm Sam Lee", "this is Ana") inside a longer turn.
_INTRO_CLAUSE = re.compile(
    r"\b(?:my name(?:'s| is)|name is|the name's|this is|i'm|i am|it's|put it under|under the name)\s+", re.IGNORECASE
)

# Where a name said inside a longer clause ends: "I'm Ana Ruiz and I'd like a blowout".
_CLAUSE_END = re.compile(
    r"\s+(?:and|but|so|i|i'd|i'm|i'll|need|want|wanted|would|could|calling|looking|for|to|about|here)\b", re.IGNORECASE
)


def understand(
    ctx: CallContext, text: str, *, bare_time: bool = False, name_expected: bool = False
) -> DialogueUpdate:
    """Every slot and intent in `text`; `name_expected` when the agent just asked for a name."""
    spoken = fold(text)
    draft = ctx.state.draft
    service = match_service(text, ctx.services)
    when = ctx.when(text, context_day=draft.day, bare_time=bare_time)
    whole_turn = name_expected or _only_a_name(text, service is None and when.empty)
    name, spelling = _find_name(text, whole_turn, capitals_required=not name_expected)
    if name is not None and not spelling and names_a_service(ctx, name.text):
        name = None  # "Keratin" is the tenant's service, not the caller
    index = 0 if _FIRST.search(spoken) else 1 if _SECOND.search(spoken) else None
    return DialogueUpdate(
        intents=frozenset(detect_intents(text)),
        service_id=service.id if service is not None else None,
        day=when.day,
        at=when.time,
        meridiem_given=when.meridiem_given,
        name=name.text if name is not None else None,
        name_explicit=name is not None and (name.explicit or name_expected),
        spelling=spelling,
        phone=parse_phone(text),
        polar=yes_or_no(text),
        offered_index=index,
        correction=bool(_CORRECTION.search(spoken)) or spoken.startswith("no "),
    )


def names_a_service(ctx: CallContext, name: str) -> bool:
    """Whether a would-be name is one of the tenant's service words (a name never is); exact words
    only, since a fuzzy match would take "de la Cruz" for "a cut"."""
    phrases = {phrase for service in ctx.services for phrase in service_phrases(service)}
    said = fold(name)
    return said in phrases or said.replace(" ", "") in {p.replace(" ", "") for p in phrases}


def _only_a_name(text: str, nothing_else: bool) -> bool:
    """A turn that holds nothing but a name-like phrase is taken as the caller's name."""
    return nothing_else and not (detect_intents(text) - {Intent.AFFIRM, Intent.DENY})


def _find_name(text: str, whole_turn: bool, capitals_required: bool) -> tuple[PersonName | None, str | None]:
    """The caller's name and its spelling if they spelled it; a spelled word wins over the recognizer's."""
    spelled = spelled_word(text)
    if spelled is not None:
        word, rest = spelled
        heard = _name_in(rest, True, False) if rest else None
        if heard is None:
            return PersonName(word, True), " ".join(word.upper())
        words = heard.words
        closest = max(range(len(words)), key=lambda i: fuzz.ratio(words[i].lower(), word.lower()))
        words[closest] = word
        return PersonName(" ".join(words), True), " ".join(word.upper())
    return _name_in(text, whole_turn, capitals_required), None


def _name_in(text: str, whole_turn: bool, capitals_required: bool) -> PersonName | None:
    if whole_turn:
        name = extract_name(text)
        # Unasked, a bare name must be a full one: the first word of any sentence is capitalized.
        full = not capitals_required or len(name.words if name else []) >= 2
        if name is not None and (name.explicit or (full and looks_like_person(name, text, capitals_required))):
            return PersonName(name.text, name.explicit or bool(_INTRO_CLAUSE.search(text)))
    for clause in re.split(r"[.;!?]|,\s*(?=\w)", text):
        intro = _INTRO_CLAUSE.search(clause)
        if intro is None:
            continue
        name = extract_name(_CLAUSE_END.split(clause[intro.end():], maxsplit=1)[0])
        if name is not None and looks_like_person(name, clause, capitals_required):
            return PersonName(name.text, True)
    return None
