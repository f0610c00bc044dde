"""CHAIR-style scoring of detailed descriptions against object annotations (pure, judge-free).

Rohrbach et al. 2018, "Object Hallucination in Image Captioning": a description's words are mapped
to object categories through a synonym table; a mention of a category the image's annotations lack
is a hallucinated mention.

- `load_synonyms(path)`: the table, word or phrase -> category (format: `coco_synonyms.txt`).
- `restrict_synonyms(table, categories)`: the table for one annotation set; categories without a
  line match their own name.
- `mentioned_categories(text, table)`: every category mention in order (longest phrase first, so
  "hot dog" is not a dog).
- `score_description(text, present, table)`: one description's record fields.
- `chair_metrics(records)`: CHAIR_s (`response_hallucination_rate`), CHAIR_i
  (`mention_hallucination_rate`), `object_recall`, with a Wilson interval for the response rate.
"""

from __future__ import annotations

import re
from pathlib import Path
from statistics import mean
from typing import Iterable, Sequence

from rlhfv_ray.eval.stats import wilson_interval

DEFAULT_SYNONYMS = Path(__file__).with_name("coco_synonyms.txt")
NO_OBJECT = ""  # the category of `!` phrases: consumed, but they name no object
_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: "teddy-bear" -> teddy, bear


class SynonymsError(ValueError):
    """A synonyms file that cannot be read; the message names the file and line."""


def tokenize(text: str) -> list[str]:
    """Lower-case words; punctuation and hyphens separate them."""
    return _WORD.findall(text.lower())


def plural(phrase: str) -> str:
    """Regular English plural of a phrase's last word; irregular ones are listed in the file."""
    head, _, word = phrase.rpartition(" ")
    if word.endswith(("s", "x", "z", "ch", "sh")):
        word += "es"
    elif len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        word = word[:-1] + "ies"
    else:
        word += "s"
    return f"{head} {word}" if head else word


def _parse_line(line: str, where: str) -> tuple[str, list[str]]:
    """(category or NO_OBJECT, normalized phrases) of one non-comment line."""
    excluded = line.startswith("!")
    items = [item.strip() for item in (line[1:] if excluded else line).split(",")]
    phrases = [" ".join(tokenize(item)) for item in items]
    if not all(phrases):
        raise SynonymsError(f"{where}: malformed line {line!r}: every comma-separated item must contain a word "
                            "(expected 'category name, synonym, ...' or '! phrase, ...')")
    return (NO_OBJECT if excluded else items[0]), phrases


def parse_synonyms(lines: Iterable[str], source: str = "<synonyms>") -> dict[str, str]:
    """Word or phrase -> category from synonyms-file lines (see `coco_synonyms.txt` for the format)."""
    explicit: dict[str, tuple[str, str]] = {}  # phrase -> (category, where), to name both lines of a clash
    categories: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        category, phrases = _parse_line(line, where)
        if category != NO_OBJECT:
            if category in categories:
                raise SynonymsError(f"{where}: category {category!r} already has a line ({categories[category]})")
            categories[category] = where
        for phrase in phrases:
            seen = explicit.setdefault(phrase, (category, where))
            if seen[0] != category:
                raise SynonymsError(f"{where}: {phrase!r} is given to {category or 'no object'!r} here but to "
                                    f"{seen[0] or 'no object'!r} at {seen[1]}")
    table = {phrase: category for phrase, (category, _) in explicit.items()}
    for phrase, (category, _) in explicit.items():
        table.setdefault(plural(phrase), category)  # a listed word always beats a generated plural
    return table


def load_synonyms(path: str | Path | None = None) -> dict[str, str]:
    """The synonym table of `path` (None: the packaged COCO file)."""
    path = Path(path) if path is not None else DEFAULT_SYNONYMS
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"synonyms file not found: {path}") from None
    return parse_synonyms(text.splitlines(), str(path))


def restrict_synonyms(table: dict[str, str], categories: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(table for an annotation set with these categories, categories of the table not among them).

    Words of unknown categories are dropped, not scored: whether such an object is in an image is
    not annotated, so a mention is neither right nor wrong. Each category also matches its own
    name, which wins over another category's synonym, and its plural where that is still free.
    """
    wanted = set(categories)
    unknown = sorted({c for c in table.values() if c != NO_OBJECT and c not in wanted})
    restricted = {phrase: c for phrase, c in table.items() if c == NO_OBJECT or c in wanted}
    for category in categories:
        name = " ".join(tokenize(category))
        if name:
            restricted[name] = category
            restricted.setdefault(plural(name), category)
    return restricted, unknown


def mentioned_categories(text: str, table: dict[str, str]) -> list[str]:
    """Category of every mention in `text`, in order; the longest phrase at each word wins."""
    tokens = tokenize(text)
    longest = max((phrase.count(" ") + 1 for phrase in table), default=1)
    found: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(longest, len(tokens) - i), 0, -1):
            category = table.get(" ".join(tokens[i:i + n]))
            if category is not None:
                if category != NO_OBJECT:
                    found.append(category)
                i += n
                break
        else:
            i += 1
    return found


def score_description(text: str, present: set[str] | frozenset[str], table: dict[str, str]) -> dict:
    """One description's record fields; `hallucinated_objects` lists every occurrence, as CHAIR does."""
    mentions = mentioned_categories(text, table)
    hallucinated = [c for c in mentions if c not in present]
    return {"hallucinated": bool(hallucinated), "types": ["object"] if hallucinated else [],
            "mentions": mentions, "hallucinated_objects": hallucinated,
            "recalled": len(set(mentions) & set(present)), "objects": len(present)}


def _rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def chair_metrics(records: Sequence[dict]) -> dict:
    """CHAIR figures of description records (`response` plus the fields of `score_description`).

    Only the response-level rate gets an interval: mentions (and recalled objects) cluster within
    responses, so a binomial interval over them would be too narrow.
    """
    n = len(records)
    hallucinated = sum(bool(r["hallucinated"]) for r in records)
    mentions = sum(len(r["mentions"]) for r in records)
    rate = _rate(hallucinated, n)
    interval = list(wilson_interval(hallucinated, n))
    return {
        "n_responses": n,
        "response_hallucination_rate": rate,
        "mention_hallucination_rate": _rate(sum(len(r["hallucinated_objects"]) for r in records), mentions),
        "n_mentions": mentions,
        "object_recall": _rate(sum(r["recalled"] for r in records), sum(r["objects"] for r in records)),
        "mean_response_words": float(mean(len(tokenize(r["response"])) for r in records)) if records else 0.0,
        "hallucination_by_type": {"object": rate},
        "ci95": {"response_hallucination_rate": interval, "hallucination_by_type": {"object": interval}},
    }
