"""Sentence splitting, mention detection and polarity rules of the labeler.

The pipeline for one report:

1. :func:`split_sentences` lower-cases the text, cuts it into sentences and normalises each to
   words separated by single spaces, so raw text and R2Gen-cleaned text look the same.
2. :func:`label_sentence` (cached) finds every mention in a sentence, with its observation, and
   decides its value: negated uncertainty ("cannot be excluded") -> uncertain; else a negation
   cue in scope -> negative; else an uncertainty cue in scope -> uncertain; else positive.
   Organ + state phrases ("heart size is normal") carry their own value.
3. :func:`aggregate` merges the mentions of a report: positive over uncertain over negative,
   then derives No Finding.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache

from ekagen.labeler import rules
from ekagen.observations import NEGATIVE, OBSERVATIONS, POSITIVE, UNCERTAIN

NAN = float("nan")
_INDEX = {name: i for i, name in enumerate(OBSERVATIONS)}
_NO_FINDING = _INDEX[rules.NO_FINDING]
_SUPPORT = _INDEX[rules.SUPPORT_DEVICES]
_CARDIOMEGALY = _INDEX[rules.CARDIOMEGALY]
OTHER_FINDING = len(OBSERVATIONS)
"""Index of a mention of one of CheXpert's "other findings" (it only withholds No Finding)."""


def _words(pattern: str) -> str:
    """Wrap a pattern so that it starts and ends on word boundaries."""
    return rf"(?<![a-z0-9])(?:{pattern})(?![a-z0-9])"


def _alternation(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile(_words("|".join(f"(?:{p})" for p in patterns)))


# (observation index, pattern, highest value a mention can take)
_MENTIONS = [(_INDEX[obs], _alternation(pats), POSITIVE) for obs, pats in rules.MENTIONS.items()]
_MENTIONS += [(_INDEX[obs], _alternation(pats), UNCERTAIN)
              for obs, pats in rules.UNCERTAIN_MENTIONS.items()]
_MENTIONS.append((OTHER_FINDING, _alternation(rules.OTHER_FINDINGS), POSITIVE))
_HEART_FAILURE = re.compile(_words(rules.HEART_FAILURE))
_STATES = [
    (re.compile(_words(subject)),
     re.compile(_words("|".join(f"(?P<p{i}>{pred})" for i, (pred, _) in enumerate(preds)))),
     [{_INDEX[o]: v for o, v in values.items()} for _, values in preds])
    for subject, preds in rules.STATE_PHRASES
]
_PRE_STATES = [(re.compile(_words(p)), {_INDEX[o]: v for o, v in values.items()})
               for p, values in rules.PRE_STATE_PHRASES]
_OTHER_ORGAN = re.compile(rules.OTHER_ORGAN)
_COPULA = re.compile(r"\b(?:is|are|was|were|appears?|remains?|seems?)\b")
_BREAKS = re.compile(rules.BREAKS)
_NEG_U_PRE = re.compile(rules.NEG_UNCERTAIN_PRE)
_NEG_U_POST = re.compile(rules.NEG_UNCERTAIN_POST)
_PSEUDO = re.compile(rules.PSEUDO_NEGATION)
_NEG_PRE = re.compile(rules.NEGATION_PRE)
_NEG_POST = re.compile(rules.NEGATION_POST)
_UNC_PRE = re.compile(rules.UNCERTAINTY_PRE)
_UNC_POST = re.compile(rules.UNCERTAINTY_POST)
_UNC_LONG = re.compile(rules.UNCERTAINTY_LONG)
_IGNORE_POST = re.compile(rules.IGNORE_POST)
_CONNECTOR = re.compile(rules.CONNECTORS)
_UNC_RESETS = re.compile(rules.UNCERTAINTY_RESETS)
_STATUS_RESETS = re.compile(rules.STATUS_RESETS)
_KEEPERS = re.compile(rules.NEGATION_KEEPERS)

# Sentence ends: a full stop that is not a decimal point, ';', '?', '!', or a blank line.
_SENTENCE_END = re.compile(r"\.(?!\d)|(?<!\d)\.|[;?!]|\n\s*\n")
_WORD = re.compile(r"[a-z0-9]+")
_DROPPED = re.compile(r"['\"`\u2018\u2019\u201c\u201d]")


@lru_cache(maxsize=65_536)
def _unglue(token: str) -> str:
    """Split a token made of two glued known words ("scarringatelectasis"); else keep it."""
    if len(token) < 6 or token in rules.GLUE_WORDS:
        return token
    for cut in range(2, len(token) - 1):
        if token[:cut] in rules.GLUE_WORDS and token[cut:] in rules.GLUE_WORDS:
            return f"{token[:cut]} {token[cut:]}"
    return token


def split_sentences(text: str) -> Iterator[str]:
    """Yield the normalised sentences of a report (lower case, one space between words)."""
    text = _DROPPED.sub("", html.unescape(text).lower()).replace("(s)", "s")
    for part in _SENTENCE_END.split(text):
        words = _WORD.findall(part)
        if words:
            yield " ".join(_unglue(w) for w in words)


def normalize(text: str) -> str:
    """The whole report as normalised sentences joined by ' . ' (R2Gen style)."""
    return " . ".join(split_sentences(text))


def _word_count(fragment: str) -> int:
    return len(fragment.split())


def _last_words(fragment: str, n: int) -> str:
    words = fragment.split()
    return " ".join(words[-n:]) if n else ""


def _clause(breaks: list[tuple[int, int]], start: int, end: int, length: int) -> tuple[int, int]:
    """Character span of the clause around [start, end): from the last break before to the next."""
    lo, hi = 0, length
    for b_start, b_end in breaks:
        if b_end <= start:
            lo = max(lo, b_end)
        elif b_start >= end:
            hi = min(hi, b_start)
            break
    return lo, hi


def _is_reset(between: str, first_word_exempt: bool, uncertainty_words: bool) -> bool:
    """Does the text between a cue and a mention end the cue's scope?"""
    between = between.strip()
    if not between:
        return False
    if uncertainty_words and _UNC_RESETS.search(between):
        return True
    first_end = between.find(" ")
    tail_start = first_end + 1 if (first_word_exempt and first_end > 0) else 0
    if first_word_exempt and first_end < 0:
        return False
    last = None
    for m in _STATUS_RESETS.finditer(between, tail_start):
        last = m
    if last is None:
        return False
    return not _KEEPERS.search(between, last.end())


def _last_cue(pattern: re.Pattern[str], text: str,
              masked: list[tuple[int, int]]) -> re.Match[str] | None:
    last = None
    for m in pattern.finditer(text):
        if not any(s <= m.start() < e for s, e in masked):
            last = m
    return last


def classify(sentence: str, start: int, end: int, breaks: list[tuple[int, int]],
             limit: int | None = None) -> float | None:
    """Value of the mention at ``sentence[start:end]``: 1 positive, 0 negative, -1 uncertain.

    Cues after the mention are looked for before ``limit`` (default: the end of the clause).
    None means the mention is a disclaimer ("fractures may not be demonstrated") and is dropped.
    """
    lo, hi = _clause(breaks, start, end, len(sentence))
    if limit is not None:
        hi = min(hi, max(limit, end))
    pre = sentence[lo:start]
    post = sentence[end:hi].strip()
    if _IGNORE_POST.search(post):
        return None

    # 1. Negated uncertainty ("cannot be excluded", "cannot exclude", "no new"), unless a plain
    # negation follows it ("no new opacity, no effusion": the effusion is negative).
    unc_pre = _last_words(pre, rules.UNCERTAINTY_WINDOW)
    neg_u = _last_cue(_NEG_U_PRE, unc_pre, [])
    if neg_u is not None and not _NEG_PRE.search(unc_pre, neg_u.end()):
        return UNCERTAIN
    if _NEG_U_POST.search(post):
        return UNCERTAIN

    # 2. Negation before the mention, within the window, not reset in between.
    neg_pre = _last_words(pre, rules.NEGATION_WINDOW)
    masked = [(m.start(), m.end()) for m in _PSEUDO.finditer(neg_pre)]
    masked += [(m.start(), m.end()) for m in _NEG_U_PRE.finditer(neg_pre)]
    cue = _last_cue(_NEG_PRE, neg_pre, masked)
    if cue is not None and not _is_reset(neg_pre[cue.end():], True, True):
        return NEGATIVE
    # ... or after it ("pneumothorax is not seen", "the effusion has resolved").
    if _NEG_POST.search(post):
        return NEGATIVE

    # 3. Uncertainty before or after.
    cue = _last_cue(_UNC_PRE, unc_pre, [])
    if cue is not None and not _is_reset(unc_pre[cue.end():], True, False):
        return UNCERTAIN
    if _UNC_POST.search(post) or _UNC_LONG.search(pre):
        return UNCERTAIN
    return POSITIVE


def _state_mentions(sentence: str, breaks: list[tuple[int, int]]
                    ) -> Iterator[tuple[int, int, dict[int, float]]]:
    """Organ + state phrases: (start, end, {observation index: value}) of each predicate."""
    for subject, predicates, values in _STATES:
        for m in subject.finditer(sentence):
            _, hi = _clause(breaks, m.start(), m.end(), len(sentence))
            pred = predicates.search(sentence, m.end(), hi)
            if pred is None:
                continue
            filler = sentence[m.end():pred.start()]
            if _word_count(filler) > rules.STATE_WINDOW:
                continue
            copula = _COPULA.search(filler)
            if copula and _OTHER_ORGAN.search(filler, copula.end()):
                continue
            group = int(pred.lastgroup[1:])
            yield pred.start(), pred.end(), values[group]
    for pattern, values in _PRE_STATES:
        for m in pattern.finditer(sentence):
            yield m.start(), m.end(), values


@lru_cache(maxsize=262_144)
def label_sentence(sentence: str) -> tuple[tuple[int, float], ...]:
    """All (observation index, value) mentions of one normalised sentence."""
    breaks = [(m.start(), m.end()) for m in _BREAKS.finditer(sentence)]
    # (start, end, observation index or state values, only_negative)
    # (start, end, observation index or state values, highest value)
    spans: list[tuple[int, int, int | dict[int, float], float]] = []
    for index, pattern, ceiling in _MENTIONS:
        spans += [(m.start(), m.end(), index, ceiling) for m in pattern.finditer(sentence)]
    spans += [(start, end, values, POSITIVE)
              for start, end, values in _state_mentions(sentence, breaks)]
    if not spans:
        return ()
    # Finding mentions (not state predicates) bound the post-cue window of earlier mentions.
    starts = sorted({span[0] for span in spans
                     if isinstance(span[2], int) and span[2] != OTHER_FINDING})

    found: list[tuple[int, float]] = []
    for start, end, what, ceiling in spans:
        # What follows a mention belongs to it up to the next mention, unless the two are
        # adjacent or joined by a conjunction ("effusion or pneumothorax is not seen").
        limit = next((s for s in starts if s >= end), len(sentence))
        between = sentence[end:limit]
        if not between.strip() or _CONNECTOR.search(between):
            limit = len(sentence)
        if isinstance(what, int):
            value = classify(sentence, start, end, breaks, limit)
            if value is None:
                continue
            if value == POSITIVE and ceiling == UNCERTAIN:
                value = UNCERTAIN
            found.append((what, value))
            if value != NEGATIVE and _HEART_FAILURE.fullmatch(sentence, start, end):
                found.append((_CARDIOMEGALY, UNCERTAIN))
            continue
        # A positive state goes through the cue analysis; an uncertain companion of it
        # ("enlarged cardiomediastinal silhouette" -> Cardiomegaly uncertain) follows a negation.
        polarity = (classify(sentence, start, end, breaks, limit)
                    if POSITIVE in what.values() else None)
        for index, value in what.items():
            if value == POSITIVE:
                value = polarity
                if value is None:
                    continue
            elif value == UNCERTAIN and polarity == NEGATIVE:
                value = NEGATIVE
            found.append((index, value))
    return tuple(found)


def aggregate(mentions: Iterable[tuple[int, float]], empty: bool = False) -> list[float]:
    """One value per observation: positive over uncertain over negative; No Finding derived.

    No Finding is 1 when no mention other than of Support Devices is positive or uncertain,
    CheXpert's "other findings" included, and blank otherwise (CheXpert writes 1 or blank). An
    ``empty`` report has every value blank.
    """
    values = [NAN] * len(OBSERVATIONS)
    rank = {POSITIVE: 3, UNCERTAIN: 2, NEGATIVE: 1}
    finding = False
    for index, value in mentions:
        if value != NEGATIVE and index not in (_SUPPORT, _NO_FINDING):
            finding = True
        if index == OTHER_FINDING:
            continue
        current = values[index]
        if math.isnan(current) or rank[value] > rank[current]:
            values[index] = value
    if not empty and not finding:
        values[_NO_FINDING] = POSITIVE
    return values


def label_text(text: str) -> list[float]:
    """Label vector (OBSERVATIONS order) of one report."""
    sentences = list(split_sentences(text))
    mentions = [m for s in sentences for m in label_sentence(s)]
    return aggregate(mentions, empty=not sentences)
