"""Which of the tenant's services the caller means: by id, name, synonym or a close (fuzzy) match."""
from __future__ import annotations

import re

from rapidfuzz import fuzz

from spotfunnel.business import Service
from spotfunnel.conversation.extract.text import fold

FUZZY_THRESHOLD = 82.0
_MIN_FUZZY_CHARS = 5


def service_phrases(service: Service) -> list[str]:
    """Every folded phrase that names `service`: id, name, synonyms."""
    phrases = {fold(service.id.replace("-", " ")), fold(service.name), *(fold(s) for s in service.synonyms)}
    return sorted((p for p in phrases if p), key=len, reverse=True)


def match_service(text: str, services: list[Service]) -> Service | None:
    """The service `text` names: the longest exact phrase wins, then the best fuzzy match."""
    spoken = fold(text).replace("-", " ")
    if not spoken:
        return None
    exact = _exact(spoken, services)
    if exact is not None:
        return exact
    fuzzy = _fuzzy(spoken, services)
    return fuzzy if fuzzy is not None else _sound_alike(spoken, services)


def mentions_service(text: str, services: list[Service]) -> bool:
    return match_service(text, services) is not None


def _exact(spoken: str, services: list[Service]) -> Service | None:
    best: tuple[int, Service] | None = None
    for service in services:
        for phrase in service_phrases(service):
            if re.search(rf"\b{re.escape(phrase)}\b", spoken) or re.search(
                rf"\b{re.escape(phrase.replace(' ', ''))}\b", spoken
            ):
                if best is None or len(phrase) > best[0]:
                    best = (len(phrase), service)
                break
    return best[1] if best else None


def _fuzzy(spoken: str, services: list[Service]) -> Service | None:
    tokens = spoken.split()
    windows = {" ".join(tokens[i : i + n]) for n in (1, 2, 3) for i in range(len(tokens) - n + 1)}
    best: tuple[float, Service] | None = None
    for service in services:
        for phrase in service_phrases(service):
            if len(phrase) < _MIN_FUZZY_CHARS:
                continue
            for window in windows:
                if len(window) < _MIN_FUZZY_CHARS:
                    continue
                score = max(fuzz.ratio(window, phrase), fuzz.ratio(window.replace(" ", ""), phrase.replace(" ", "")))
                if score >= FUZZY_THRESHOLD and (best is None or score > best[0]):
                    best = (score, service)
    return best[1] if best else None


def _sound_alike(spoken: str, services: list[Service]) -> Service | None:
    """A two-word name misheard word by word ("beer turn" for beard trim, "blow drive" for blow dry).

    Only phrases whose first word names a single service count (so "hair done" is never "hair dye"),
    and each word must still sound close: the head word roughly, the tail nearly exactly ("bird trim")
    or roughly with the same first letter ("beer turn")."""
    tokens = spoken.split()
    pairs = list(zip(tokens, tokens[1:]))
    heads: dict[str, set[str]] = {}
    for service in services:
        for phrase in service_phrases(service):
            for word in phrase.split():
                heads.setdefault(word, set()).add(service.id)
    best: tuple[float, Service] | None = None
    for service in services:
        for phrase in service_phrases(service):
            words = phrase.split()
            if len(words) != 2 or heads[words[0]] != {service.id}:
                continue
            head, tail = words
            for first, second in pairs:
                h, t = fuzz.ratio(first, head), fuzz.ratio(second, tail)
                total = max(fuzz.ratio(f"{first} {second}", phrase), fuzz.ratio(first + second, head + tail))
                close = h >= 65 and (t >= 80 or (t >= 50 and second[0] == tail[0]))
                if close and total >= 60 and (best is None or total > best[0]):
                    best = (total, service)
    return best[1] if best else None
