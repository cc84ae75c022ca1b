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
    return exact if exact is not None else _fuzzy(spoken, services)


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
