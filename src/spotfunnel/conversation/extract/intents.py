"""What the caller wants from a turn: book, reschedule, cancel, a question, a person, yes, no, goodbye."""
from __future__ import annotations

import re
from enum import Enum

from spotfunnel.conversation.extract.text import fold


class Intent(str, Enum):
    BOOK = "book"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"
    HOURS = "question-hours"
    ADDRESS = "question-address"
    SERVICES = "question-services"
    PRICES = "question-prices"
    HANDOFF = "handoff"
    GOODBYE = "goodbye"
    AFFIRM = "affirm"
    DENY = "deny"


QUESTIONS = frozenset({Intent.HOURS, Intent.ADDRESS, Intent.SERVICES, Intent.PRICES})
TASKS = frozenset({Intent.BOOK, Intent.RESCHEDULE, Intent.CANCEL})

_PERSON = r"(?:a |an |the |some |real |actual |live )*(?:person|human|human being|someone|somebody|people|staff|representative|rep|operator|receptionist|manager|owner|stylist|agent)"
_PATTERNS: dict[Intent, str] = {
    Intent.HANDOFF: (
        rf"\b(?:talk|speak|chat) (?:to|with) {_PERSON}\b|\b(?:transfer|connect|put) me\b|"
        rf"\b(?:representative|operator|human|real person|live person)\b|^(?:an? )?(?:person|agent|someone)(?: please)?$|"
        rf"\b(?:get|want|need) {_PERSON}\b(?! (?:to|who|that|for) (?!talk|speak|chat|help|answer))"
    ),
    Intent.CANCEL: r"\bcancel+(?:ing|ed|lation)?\b|\bcall (?:it )?off\b|\bwon't be able to make\b|\bcan't make it\b",
    Intent.RESCHEDULE: (
        r"\bre ?schedul\w*|\b(?:move|change|shift|push|switch|bump) (?:back )?(?:my|the|our|it|that)\b|"
        r"\bdifferent (?:time|day)\b|\bnew time\b"
    ),
    Intent.BOOK: (
        r"\bbook\w*\b|\bappointment\b|\bschedule\b|\bcome in\b|\bmake (?:a|an) (?:booking|reservation)\b|"
        r"\breserv\w*|\b(?:i'd|i would|i'd like|i want|i need|can i get|could i get|get me) (?:a|an|to get)\b|"
        r"\bavailab\w*|\bopenings?\b|\bslot\b|\bfit me in\b"
    ),
    Intent.HOURS: (
        r"\bhours\b|\bopen\b|\bclos(?:e|ed|ing)\b|\bwhat time do you\b|\bwhen do you\b|\bwhen are you\b"
    ),
    Intent.ADDRESS: r"\baddress\b|\bwhere (?:are|is)\b|\blocat\w+|\bdirections\b|\bhow do i get\b|\bwhere's\b",
    Intent.SERVICES: r"\bwhat (?:services|do you (?:do|offer|have))\b|\bservices\b|\bdo you (?:do|offer)\b|\bmenu\b",
    Intent.PRICES: r"\bprices?\b|\bpricing\b|\bcosts?\b|\bhow much\b|\bcharge\b|\brates?\b|\bfees?\b|\bexpensive\b",
    Intent.GOODBYE: (
        r"\b(?:good ?)?bye\b|\bthat's (?:all|it|everything)\b|\bthat is (?:all|it)\b|\bthat'll be all\b|"
        r"\bnothing else\b|\bi'm (?:good|all set|fine)\b|\ball set\b|\bthat's all i need"
        r"|\bno thanks?\b|\bno thank you\b|\bhave a (?:good|great|nice) (?:one|day)\b|\bsee you\b"
    ),
}
_NEGATED_YES = (
    r"\b(?:not|isn't|ain't|that's not) (?:right|correct|good|fine|it)\b|\bwrong\b|\bincorrect\b|"
    r"\bdon't\b|\bdoesn't work\b|\bwon't work\b|\bcan't\b"
)
_AFFIRM_WORDS = (
    r"yes|yeah|yea|yep|yup|ya|yah|sure|correct|right|ok|okay|alright|absolutely|definitely|perfect|"
    r"great|fine|good|exactly|certainly|of course|please do|go ahead|sounds good|sounds great|"
    r"that works|works for me|that's it|affirmative|please|indeed|do it|mhm|uh huh"
)
_DENY_WORDS = r"no|nope|nah|not|negative|never mind|nevermind"


def detect_intents(text: str) -> set[Intent]:
    """Every intent `text` expresses (a turn may hold several: "no, that's all" is deny and goodbye)."""
    spoken = fold(text)
    found = {intent for intent, pattern in _PATTERNS.items() if re.search(pattern, spoken)}
    polar = yes_or_no(text)
    if polar is True:
        found.add(Intent.AFFIRM)
    elif polar is False:
        found.add(Intent.DENY)
    if Intent.RESCHEDULE in found or Intent.CANCEL in found:
        found.discard(Intent.BOOK)
    if Intent.CANCEL in found:
        found.discard(Intent.RESCHEDULE)
    return found


def yes_or_no(text: str) -> bool | None:
    """The caller's answer to a yes/no question: True, False, or None when it holds neither."""
    spoken = fold(text)
    if not spoken:
        return None
    first_no = re.search(rf"\b(?:{_DENY_WORDS})\b", spoken)
    first_yes = re.search(rf"\b(?:{_AFFIRM_WORDS})\b", spoken)
    if re.search(_NEGATED_YES, spoken):
        if first_yes is None or (first_no is not None and first_no.start() <= first_yes.start()) or not re.match(
            rf"(?:{_AFFIRM_WORDS})\b", spoken
        ):
            return False
    if first_no and (first_yes is None or first_no.start() < first_yes.start()):
        return False
    if first_yes:
        return True
    return None


def is_goodbye(text: str) -> bool:
    return Intent.GOODBYE in detect_intents(text)
