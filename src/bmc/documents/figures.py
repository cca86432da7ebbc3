"""Figures stated as facts in a document, and finding them in the research as a person would.

A figure is a percentage, an amount of money, a count or measure, a year, or a time of day,
written in digits (`1,650`, `52%`, `£3.0m`, `£180k`, `06:40`) or in words (`eight thousand
pounds`, `forty per cent`). `read_figures` reads them from any text, research or document,
into values: `£3.0m`, `£3 million` and `£3,000,000` are all three million pounds; a range
(`1,650-2,300`, `52-58%`, `£3-5m`, `between 40 and 60`) is its two ends, each carrying the
units written on the other; a bare number in a markdown table cell takes the unit of its
column's header (`11.6` under `£m` is £11.6m, under `Share (%)` a percentage).

`stated_figures` keeps the ones a document states as facts, leaving out (see
docs/validation.md for the reasons):

- a figure inside a forecast, a judgment or a hypothetical: after a word such as "could",
  "would", "if", "expected", "we think" in the same sentence ("could push first installs
  into 2028"); a figure *before* that word is the fact the sentence starts from ("52% would
  use an off-peak fare" states a survey result and is checked);
- the document counting its own contents ("3 segments", "two value propositions") and
  labels ("Stage 2", "line 40", "Proposition 1-2");
- a figure the writer derived and says so with the derivation marker, `(estimate: <how>)`
  or `(derived: <how>)`, written after it in the same sentence: the marker covers the
  figures of its sentence before it and those in its working;
- numbers in names and identifiers (`Q3`, `COVID-19`, `4G`, ordinals), dates' day numbers
  (the year of `31 March 2030` is checked, the 31 is not), list numbering, inline code and
  link addresses, and whole numbers below twenty written as words ("three routes").

A stated figure is found (`FigureIndex.find`) when a source holds a figure of a compatible
kind (a percentage among percentages, money in the same currency, a plain count among plain
numbers and years, a time among times) with the same value, however either is typed: `1,650`
and `1650`, `£3.0m` and `£3,000,000`. A hedged figure ("about", "around", "roughly", "some",
"nearly", "over", "up to" ...) is found within the rounding of its last non-zero digit or
5%, whichever is wider, on the side its hedge allows ("about 40%" for 38%, "over 400" for
410); an unhedged one is not rounded ("40%" is not found for 38%, "£12m" not for £11.6m).
Years and times are found only exactly. A figure is matched by value, not by what it counts:
an altered figure equal to another figure of the same sources is not caught.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

from bmc.documents.grounding import ResourceText, visible_text

Kind = Literal["percent", "money", "number", "year", "time"]
Hedge = Literal["", "about", "above", "below"]

# A hedged figure may differ from its source by this share of its value (or by the rounding
# of its last non-zero digit, when that is wider): "about 45%" is found for 44%.
HEDGE_TOLERANCE = 0.05
# Whole numbers written as words below this are ordinary words ("three routes", "one or two
# days a week"); from twenty up, or with a unit ("forty per cent"), they are figures.
SMALLEST_WORD_FIGURE = 20
# A self-count ("3 segments") is a small number; "410 segments" would be data.
LARGEST_SELF_COUNT = 99

# --- reading figures ----------------------------------------------------------------------

_CURRENCY_SIGNS = {"£": "GBP", "$": "USD", "€": "EUR"}
_CURRENCY_WORDS = {
    "pound": "GBP",
    "pounds": "GBP",
    "sterling": "GBP",
    "gbp": "GBP",
    "dollar": "USD",
    "dollars": "USD",
    "usd": "USD",
    "euro": "EUR",
    "euros": "EUR",
    "eur": "EUR",
}
_MAGNITUDES = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mn": 1e6,
    "million": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
    "trillion": 1e12,
}
_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)

_DIGITS = re.compile(
    r"""
    (?P<cur>[£$€]|\b(?:GBP|USD|EUR)\s?)?
    (?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)
    (?:(?P<mag>k|K|m|M|mn|bn|b)(?![A-Za-z0-9])|\s(?P<magword>thousand|million|billion|trillion|mn|bn)\b)?
    (?:\s?(?P<pct>%|per\s?cent\b|percent\b|percentage\s+points?\b|pp\b))?
    (?:\s(?P<curword>pounds?|sterling|dollars?|euros?|GBP|USD|EUR)\b)?
    """,
    re.VERBOSE,
)
_TIME = re.compile(
    r"(?<![\d:.,])(?P<h>[01]?\d|2[0-4])(?::(?P<m>[0-5]\d)(?:\s?(?P<ap>[ap])\.?m\b)?"
    r"|[.](?P<m2>[0-5]\d)\s?(?P<ap2>[ap])\.?m\b|\s?(?P<ap3>[ap])\.?m\b)(?![\d:])",
    re.IGNORECASE,
)
_WORD_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_WORD_SCALES = {"hundred": 100, "thousand": 1e3, "million": 1e6, "billion": 1e9}
_NUMBER_WORD = "|".join(sorted([*_WORD_UNITS, *_WORD_SCALES], key=len, reverse=True))
_WORDS = re.compile(
    rf"\b(?P<number>(?:(?:a|an)\s+(?=(?:hundred|thousand|million|billion)\b))?"
    rf"(?:{_NUMBER_WORD})(?:(?:\s+|-|(?<=hundred)\s+and\s+|(?<=thousand)\s+and\s+|"
    rf"(?<=million)\s+and\s+)(?:{_NUMBER_WORD}))*)\b"
    r"(?:\s(?P<pct>per\s?cent\b|percent\b)|\s(?P<curword>pounds?|dollars?|euros?)\b)?",
    re.IGNORECASE,
)
_DIGIT_RUN = re.compile(r"\d+")
# How far after its digits a figure's units may reach ("12.5 percentage points pounds").
_UNITS_REACH = 60
_QUICK_WORDS = re.compile(rf"\b(?:{_NUMBER_WORD})\b", re.IGNORECASE)
# What joins the two ends of a range.
_RANGE_JOIN = re.compile(r"\s*(?:-|–|—|to|and)\s*$", re.IGNORECASE)
_BETWEEN = re.compile(r"\b(?:between|from)\s*$", re.IGNORECASE)
_DAY_BEFORE_MONTH = re.compile(rf"\s*{_MONTHS}\b", re.IGNORECASE)
_MONTH_BEFORE_DAY = re.compile(rf"\b{_MONTHS}\s*$", re.IGNORECASE)
_FISCAL_YEAR = re.compile(r"[-–/]\d{2}(?!\d)")

# A markdown table: a row, its separator row, then rows.
_TABLE = re.compile(
    r"^[ \t]*\|.*\n[ \t]*\|?[ \t:|-]*-[ \t:|-]*\n(?:[ \t]*\|.*(?:\n|$))*", re.MULTILINE
)
_HEADER_MONEY = re.compile(
    r"(?P<cur>[£$€]|\b(?:GBP|USD|EUR))\s?(?P<mag>k|m|mn|bn|000s?|thousands?|millions?|billions?)?"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_HEADER_PERCENT = re.compile(r"%|\bper\s?cent\b|\bpercent", re.IGNORECASE)


@dataclass(frozen=True)
class Figure:
    """One figure: what was written, where, and what it means."""

    written: str
    start: int
    end: int
    kind: Kind
    value: float  # absolute; money in whole units of its currency, times in minutes
    unit: float  # the place of the last digit written (0.1m is 100,000 for "£2.2m")
    currency: str = ""
    hedge: Hedge = ""
    words: bool = False  # written in words ("eight thousand pounds")
    magnitude: float = 1.0  # the "m" of "£3m", the "thousand" of "180 thousand"

    def key(self) -> tuple[str, str]:
        return (self.kind, self.currency)


@dataclass(frozen=True)
class _ColumnUnit:
    currency: str = ""
    magnitude: float = 1.0
    percent: bool = False


def read_figures(text: str, *, words: bool = True) -> list[Figure]:
    """Every figure in `text` (markdown), in order; table cells take their column's unit."""
    figures: list[Figure] = []
    position = 0
    for table in _TABLE.finditer(text) if "|" in text else ():
        figures += _read_span(text, position, table.start(), words=words)
        figures += _read_table(text, table.start(), table.end(), words=words)
        position = table.end()
    figures += _read_span(text, position, len(text), words=words)
    return figures


def _read_table(text: str, start: int, end: int, *, words: bool) -> list[Figure]:
    figures: list[Figure] = []
    units: list[_ColumnUnit] = []
    offset = start
    for number, line in enumerate(text[start:end].split("\n")):
        cells = list(_cells(line, offset))
        if number == 0:
            units = [_column_unit(text[a:b]) for a, b in cells]
            figures += [f for a, b in cells for f in _read_span(text, a, b, words=words)]
        elif number > 1:
            for column, (a, b) in enumerate(cells):
                unit = units[column] if column < len(units) else _ColumnUnit()
                figures += [_in_column(f, unit) for f in _read_span(text, a, b, words=words)]
        offset += len(line) + 1
    return figures


def _cells(line: str, offset: int) -> Iterator[tuple[int, int]]:
    bars = [i for i, char in enumerate(line) if char == "|" and (i == 0 or line[i - 1] != "\\")]
    if not bars:
        return
    if line[: bars[0]].strip():
        bars.insert(0, -1)
    for left, right in itertools.pairwise(bars):
        yield offset + left + 1, offset + right
    if line[bars[-1] + 1 :].strip():
        yield offset + bars[-1] + 1, offset + len(line)


def _column_unit(header: str) -> _ColumnUnit:
    money = _HEADER_MONEY.search(header)
    if money:
        currency = _CURRENCY_SIGNS.get(money.group("cur"), money.group("cur").upper())
        mag = (money.group("mag") or "").lower()
        magnitude = (
            1e3
            if mag.startswith(("k", "000", "thousand"))
            else 1e6
            if mag.startswith(("m",))
            else 1e9
            if mag.startswith(("b",))
            else 1.0
        )
        return _ColumnUnit(currency, magnitude)
    return _ColumnUnit(percent=bool(_HEADER_PERCENT.search(header)))


def _in_column(figure: Figure, unit: _ColumnUnit) -> Figure:
    """A bare number in a cell, read in its column's unit."""
    if figure.kind not in ("number", "year") or figure.words:
        return figure
    if unit.currency:
        return replace(
            figure,
            kind="money",
            currency=unit.currency,
            value=figure.value * unit.magnitude,
            unit=figure.unit * unit.magnitude,
        )
    if unit.percent:
        return replace(figure, kind="percent")
    return figure


def _read_span(text: str, start: int, end: int, *, words: bool) -> list[Figure]:
    """The figures of text[start:end], ranges joined, in order."""
    found: list[Figure] = []
    done = start
    # The patterns are tried only where a digit is: a plain search for digits runs at C
    # speed, and a 5 MB report of prose has few of them.
    for run in _DIGIT_RUN.finditer(text, start, end):
        at = run.start()
        if at < done:
            continue
        window = min(end, run.end() + _UNITS_REACH)
        time = _time_figure(_TIME.match(text, at, window))
        if time is not None:
            found.append(time)
            done = time.end
            continue
        match = _DIGITS.match(text, _prefix_start(text, start, at), window)
        if match is None:
            continue
        done = match.end()
        figure = _digit_figure(text, match)
        if figure is not None:
            found.append(figure)
            done = max(done, figure.end)
    if words and _QUICK_WORDS.search(text, start, end):
        found += _word_figures(text, start, end)
    found.sort(key=lambda f: f.start)
    return _join_ranges(text, found)


def _prefix_start(text: str, start: int, at: int) -> int:
    """Where a figure whose digits start at `at` starts: at its currency sign or code."""
    if at > start and text[at - 1] in _CURRENCY_SIGNS:
        return at - 1
    for code in ("GBP", "USD", "EUR"):
        for spelled in (code + " ", code):
            if at - len(spelled) >= start and text.startswith(spelled, at - len(spelled)):
                return at - len(spelled)
    return at


def _time_figure(match: re.Match[str] | None) -> Figure | None:
    if match is None:
        return None
    hour = int(match.group("h"))
    minute = int(match.group("m") or match.group("m2") or 0)
    meridiem = (match.group("ap") or match.group("ap2") or match.group("ap3") or "").lower()
    if meridiem:
        if hour > 12:
            return None
        hour = hour % 12 + (12 if meridiem == "p" else 0)
    elif match.group("m") is None:
        return None
    return Figure(match.group(), match.start(), match.end(), "time", hour * 60 + minute, 1)


def _digit_figure(text: str, match: re.Match[str]) -> Figure | None:
    number = match.group("num")
    begin = match.start()
    before = text[begin - 1] if begin else " "
    # Part of a name or identifier: "Q3", "A9", "COVID-19", "v2.1", "MV2".
    if (
        before.isalnum()
        or before in "_./\\"
        or (before == "-" and begin > 1 and text[begin - 2].isalpha())
    ):
        return None
    stop = match.end()
    after = text[stop : stop + 2]
    # Glued to letters or a slash: "4G", "3rd", "10x", "24/7", "3/4".
    if after and (
        after[0].isalnum() or after[0] in "_/\\" or (after[0] == "." and after[1:].isdigit())
    ):
        return None
    if _DAY_BEFORE_MONTH.match(text, stop) and _is_day(number):
        return None
    if _MONTH_BEFORE_DAY.search(text, max(0, begin - 12), begin) and _is_day(number):
        return None
    written = match.group()
    value = float(number.replace(",", ""))
    decimals = len(number.partition(".")[2])
    unit = 10.0**-decimals
    mag_word = match.group("mag") or match.group("magword")
    magnitude = _MAGNITUDES[mag_word.lower()] if mag_word else 1.0
    currency = ""
    if match.group("cur"):
        sign = match.group("cur").strip()
        currency = _CURRENCY_SIGNS.get(sign, sign.upper())
    elif match.group("curword"):
        currency = _CURRENCY_WORDS[match.group("curword").lower()]
    kind: Kind = "number"
    if match.group("pct"):
        kind = "percent"
    elif currency:
        kind = "money"
    elif not mag_word and "," not in number and "." not in number and 1800 <= value < 2200:
        kind = "year"
        fiscal = _FISCAL_YEAR.match(text, stop)
        if fiscal:  # "2024-25", "2025/26": the year the period starts
            stop = fiscal.end()
            written = text[begin:stop]
    return Figure(
        written,
        begin,
        stop,
        kind,
        value * magnitude,
        unit * magnitude,
        currency,
        "",
        False,
        magnitude,
    )


def _is_day(number: str) -> bool:
    return number.isdigit() and 1 <= int(number) <= 31


def _word_figures(text: str, start: int, end: int) -> list[Figure]:
    """Numbers written in words: "two hundred and fifty" is one number, "forty and sixty"
    two."""
    read: list[Figure] = []
    for match in _WORDS.finditer(text, start, end):
        words = re.split(r"[\s-]+", match.group("number").lower())
        value = _word_value([word for word in words if word != "and"])
        if value is None:
            continue
        curword = match.group("curword")
        currency = _CURRENCY_WORDS[curword.lower()] if curword else ""
        kind: Kind = "percent" if match.group("pct") else "money" if currency else "number"
        figure = Figure(match.group(), match.start(), match.end(), kind, value, 1.0, currency)
        read.append(figure)
    return [
        replace(f, unit=_last_place(f.value), words=True)
        for f in read
        if f.value >= SMALLEST_WORD_FIGURE or f.kind != "number"
    ]


def _word_value(words: list[str]) -> float | None:
    """ "two hundred fifty thousand" -> 250000; None for a scale alone ("hundred")."""
    total, current, counted = 0.0, 0.0, False
    for word in words:
        if word in ("a", "an"):
            current, counted = 1, True
        elif word in _WORD_UNITS:
            current += _WORD_UNITS[word]
            counted = True
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _WORD_SCALES:
            total += (current or 1) * _WORD_SCALES[word]
            current = 0
    return total + current if counted else None


def _join_ranges(text: str, figures: list[Figure]) -> list[Figure]:
    """Give each end of a range ("52-58%", "£3-5m", "between 40 and 60") the units written
    on the other end."""
    out = list(figures)
    for i in range(len(out) - 1):
        left, right = out[i], out[i + 1]
        between = text[left.end : right.start]
        if len(between) > 6 or not _RANGE_JOIN.match(between) or left.kind == "time":
            continue
        if between.strip().lower() == "and" and not _BETWEEN.search(
            text, max(0, left.start - 12), left.start
        ):
            continue
        left, right = _share_units(left, right)
        whole = text[left.start : right.end]
        # Both ends start where the range does: what stands before it (a hedge, a label)
        # stands before each end.
        out[i] = replace(left, written=whole)
        out[i + 1] = replace(right, written=whole, start=left.start)
    return out


def _share_units(left: Figure, right: Figure) -> tuple[Figure, Figure]:
    if left.words or right.words:
        return left, right
    if left.magnitude == 1.0 and right.magnitude != 1.0:
        scaled = left.value * right.magnitude
        if scaled <= right.value:  # "£3-5m"; not "£500-2m", which is £500 to £2m
            left = replace(
                left,
                value=scaled,
                unit=left.unit * right.magnitude,
                magnitude=right.magnitude,
                kind="number" if left.kind == "year" else left.kind,
            )
    if right.kind == "percent" and left.kind in ("number", "year"):
        left = replace(left, kind="percent")
    if right.currency and not left.currency and left.kind in ("number", "year"):
        left = replace(left, kind="money", currency=right.currency)
    if left.currency and not right.currency and right.kind in ("number", "year"):
        right = replace(right, kind="money", currency=left.currency)
    return left, right


def _last_place(value: float) -> float:
    """The place of the last non-zero digit of a whole number (1,700 -> 100)."""
    if value <= 0 or value != int(value):
        return 1.0
    place, rest = 1.0, int(value)
    while rest and rest % 10 == 0:
        rest //= 10
        place *= 10
    return place


# --- what a document states as fact ------------------------------------------------------

_HEDGES: dict[Hedge, re.Pattern[str]] = {
    "about": re.compile(
        r"(?:\b(?:about|around|roughly|approximately|approx\.?|c\.|ca\.|circa|some|"
        r"close\s+to|an\s+estimated|estimated|of\s+the\s+order\s+of)|~|≈)\s*$",
        re.IGNORECASE,
    ),
    "above": re.compile(
        r"\b(?:over|more\s+than|above|at\s+least|upwards\s+of|in\s+excess\s+of|just\s+over|"
        r"exceeding|no\s+fewer\s+than|no\s+less\s+than)\s*$",
        re.IGNORECASE,
    ),
    "below": re.compile(
        r"\b(?:under|less\s+than|fewer\s+than|below|up\s+to|at\s+most|nearly|almost|"
        r"just\s+under|not\s+quite|no\s+more\s+than)\s*$",
        re.IGNORECASE,
    ),
}
_FORECAST = re.compile(
    r"\b(?:could|might|may|would|should|possibly|perhaps|probably|likely|unlikely|if|unless|"
    r"forecasts?|forecasted|projected|projections?|predicts?|predicted|expects?|expected|"
    r"hopes?|recommends?|recommended|proposes?|proposed|suggests?|suggested|assum(?:e|es|ed|ing)|"
    r"we\s+think|we\s+believe|we\s+judge|in\s+our\s+view|in\s+our\s+judgement)\b",
    re.IGNORECASE,
)
_DERIVATION = re.compile(
    r"\((?:our\s+|my\s+|consultant'?s?\s+)?(?:estimated?|estimates|derived|derivation|"
    r"calculated|calculation)\s*:\s*(?P<working>[^()]*(?:\([^()]*\)[^()]*)*)\)",
    re.IGNORECASE,
)
# A marker with no working says nothing a reader can check: it does not count.
_BARE_MARKER = re.compile(
    r"\((?:our\s+|my\s+)?(?:estimated?|estimates|derived|derivation|calculated|calculation)"
    r"\s*:?\s*\)",
    re.IGNORECASE,
)
_LABEL_BEFORE = re.compile(
    r"\b(?:stage|phase|step|option|section|line|lines|segment|block|tier|round|wave|part|"
    r"chapter|page|pages|proposition|item|question|hypothesis|figure|table|appendix|annex|"
    r"no\.|number|version|priority|scenario)\s*$",
    re.IGNORECASE,
)
_SELF_COUNT_AFTER = re.compile(
    r"\s+(?:[a-z-]+\s+){0,2}?(?:segments?|value\s+propositions?|propositions?|blocks?|items?|"
    r"sections?|questions?|drafts?|streams?|tensions?|observations?|hypothes[ie]s|"
    r"channels?|relationships?|partnerships?|activities|bullets?|points?|entries)\b",
    re.IGNORECASE,
)
# Where a sentence ends: . ! ? ; before a capital, a figure or a bullet; or a line break
# before a list item or a blank line.
_SENTENCE_END = re.compile(
    r"(?:[.!?;]['\"”’)]*\s+(?=[A-Z0-9£$€\"“(*_-]))|\n\s*\n|\n(?=\s*(?:[-*+]|\d{1,3}[.)])\s)"
)
_CLAUSE = re.compile(r",\s+(?:and|but|while|whereas|yet|although|though)\s+|\s(?:—|–|--)\s|[;:]\s")
_LIST_NUMBER = re.compile(r"^[ \t]*(?:[-*+][ \t]+)?\d{1,3}[.)](?=[ \t])", re.MULTILINE)
_CODE = re.compile(r"`[^`\n]*`")


@dataclass(frozen=True)
class Stated:
    """The figures a passage states as facts, and whether it carries a derivation marker
    without a working (so the problem can say how to write one)."""

    figures: list[Figure]
    empty_markers: int = 0


def stated_figures(prose: str) -> Stated:
    """The figures `prose` (markdown of one section or item) states as facts."""
    text = _blank(_LIST_NUMBER, _blank(_CODE, visible_text(prose).text))
    figures = read_figures(text)
    if not figures:
        return Stated([])
    sentences = _sentence_starts(text)
    covered: list[tuple[int, int]] = []
    empty = len(_BARE_MARKER.findall(text))
    for marker in _DERIVATION.finditer(text):
        if len(re.findall(r"\w+", marker.group("working"))) < 2:
            empty += 1
            continue
        covered.append((_sentence_start(sentences, marker.start()), marker.end()))
    kept = []
    for figure in figures:
        if any(a <= figure.start < b for a, b in covered):
            continue
        if _not_a_claim(text, figure, _sentence_start(sentences, figure.start)):
            continue
        kept.append(replace(figure, hedge=_hedge(text, figure)))
    return Stated(_hedge_ranges(text, kept), empty)


def _blank(pattern: re.Pattern[str], text: str) -> str:
    """`text` with the matches of `pattern` turned to spaces (offsets kept)."""
    return pattern.sub(lambda m: " " * len(m.group()), text)


def _sentence_starts(text: str) -> list[int]:
    return [0, *(m.end() for m in _SENTENCE_END.finditer(text))]


def _sentence_start(starts: list[int], index: int) -> int:
    return starts[bisect.bisect_right(starts, index) - 1]


def _not_a_claim(text: str, figure: Figure, sentence: int) -> bool:
    before = text[sentence : figure.start]
    # A forecast word governs its own clause: in "52% would use it, and 47% would buy
    # one", 52% and 47% are both survey results.
    clauses = list(_CLAUSE.finditer(before))
    if clauses:
        before = before[clauses[-1].end() :]
    if any(m.group() != "May" for m in _FORECAST.finditer(before)):
        return True
    if _LABEL_BEFORE.search(text, max(sentence, figure.start - 20), figure.start):
        return True
    return (
        figure.kind == "number"
        and figure.value <= LARGEST_SELF_COUNT
        and _SELF_COUNT_AFTER.match(text, figure.end) is not None
    )


def _hedge(text: str, figure: Figure) -> Hedge:
    before = text[max(0, figure.start - 30) : figure.start]
    for hedge, pattern in _HEDGES.items():
        if pattern.search(before):
            return hedge
    return ""


def _hedge_ranges(text: str, figures: list[Figure]) -> list[Figure]:
    """A hedge before a range ("about 40-60%") hedges both ends."""
    out = list(figures)
    for i in range(1, len(out)):
        left, right = out[i - 1], out[i]
        if left.hedge and not right.hedge and _RANGE_JOIN.match(text[left.end : right.start]):
            out[i] = replace(right, hedge=left.hedge)
    return out


# --- the research's figures ---------------------------------------------------------------


@dataclass
class FigureIndex:
    """The figures of one source, by kind and currency, sorted by value."""

    text: str
    _values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    _written: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _words_read: bool = False

    @classmethod
    def of(cls, text: str) -> FigureIndex:
        index = cls(text)
        index._add(read_figures(text, words=False))
        return index

    def _add(self, figures: Iterable[Figure]) -> None:
        grouped: dict[tuple[str, str], list[tuple[float, str]]] = {}
        for key in self._values:
            grouped[key] = list(zip(self._values[key], self._written[key], strict=True))
        for figure in figures:
            grouped.setdefault(figure.key(), []).append((figure.value, _one_line(figure.written)))
        for key, pairs in grouped.items():
            pairs.sort()
            self._values[key] = [value for value, _ in pairs]
            self._written[key] = [written for _, written in pairs]

    def _with_words(self) -> None:
        # Figures in words are rare in research: read them only when a figure is not found
        # among the digits, so most checks never pay for it.
        if not self._words_read:
            self._words_read = True
            self._add(f for f in read_figures(self.text) if f.words)

    def find(self, figure: Figure) -> bool:
        """Whether this source holds `figure` (see the module docstring)."""
        low, high = _bounds(figure)
        for key in _compatible(figure, self._values):
            values = self._values[key]
            at = bisect.bisect_left(values, low)
            if at < len(values) and values[at] <= high:
                return True
        return False

    def find_all_ways(self, figure: Figure) -> bool:
        if self.find(figure):
            return True
        self._with_words()
        return self.find(figure)

    def nearest(self, figure: Figure, count: int = 3) -> list[tuple[float, str]]:
        """Up to `count` (distance, figure as written) of this source nearest `figure`."""
        scored: list[tuple[float, str]] = []
        for key in _compatible(figure, self._values):
            values, written = self._values[key], self._written[key]
            at = bisect.bisect_left(values, figure.value)
            for i in range(max(0, at - count), min(len(values), at + count)):
                scored.append((_distance(values[i], figure.value), written[i]))
        return sorted(set(scored))[:count]


def _one_line(text: str) -> str:
    return " ".join(text.replace("|", " ").split())


def _compatible(figure: Figure, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if figure.kind == "percent":
        wanted = {("percent", "")}
        return [k for k in keys if k in wanted]
    if figure.kind == "money":
        return [k for k in keys if k == ("money", figure.currency)]
    if figure.kind == "time":
        return [k for k in keys if k[0] == "time"]
    # A plain number is a count or a measure: "31 years" is not found in "31%".
    return [k for k in keys if k[0] in ("year", "number")]


def _bounds(figure: Figure) -> tuple[float, float]:
    """The source values that count as this figure."""
    value = figure.value
    tiny = max(abs(value), 1.0) * 1e-9
    if figure.kind in ("year", "time"):
        return value - tiny, value + tiny
    if not figure.hedge:
        return value - tiny, value + tiny
    rounding = figure.unit / 2 + tiny
    loose = max(_last_place_of(figure) / 2, value * HEDGE_TOLERANCE) + tiny
    if figure.hedge == "above":
        return value - rounding, value + loose
    if figure.hedge == "below":
        return value - loose, value + rounding
    return value - loose, value + loose


def _last_place_of(figure: Figure) -> float:
    """The place of the last non-zero digit of a figure as written (£1.70m -> 0.1m)."""
    place = figure.unit
    steps = 0
    while place < figure.value and steps < 30:
        bigger = place * 10
        if not math.isclose(round(figure.value / bigger) * bigger, figure.value, rel_tol=1e-9):
            break
        place = bigger
        steps += 1
    return place


def _distance(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-9)


@lru_cache(maxsize=64)
def _index_of_text(text: str) -> FigureIndex:
    return FigureIndex.of(text)


def index_of(source: ResourceText | str) -> FigureIndex:
    """The figures of a research file (built once per version of it) or of a text."""
    if isinstance(source, str):
        return _index_of_text(source)
    index = source.memo.get("figures")
    if not isinstance(index, FigureIndex):
        index = FigureIndex.of(source.visible.text)
        source.memo["figures"] = index
    return index


# --- checking a passage -------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a figure may be found: a name for messages and the text."""

    name: str
    text: ResourceText | str


@dataclass(frozen=True)
class Missing:
    """A stated figure no source holds: the nearest figures of the sources searched (as
    written, with the source's name), and the other sources that do hold it."""

    figure: Figure
    nearest: list[tuple[str, str]]
    found_in: list[str]


def missing_figures(
    prose: str,
    sources: Sequence[Source],
    elsewhere: Callable[[], Sequence[Source]] | None = None,
) -> tuple[list[Missing], int]:
    """The figures `prose` states that none of `sources` holds, each once, and how many
    derivation markers it has without a working. `elsewhere` gives sources the passage may
    not draw on (those among `sources` left out), searched only to say where a missing
    figure is; it is asked for only when a figure is missing."""
    stated = stated_figures(prose)
    missing: list[Missing] = []
    seen: set[tuple[str, str, float, str]] = set()
    indexes = [(source.name, index_of(source.text)) for source in sources]
    others: list[Source] | None = None
    for figure in stated.figures:
        marker = (figure.kind, figure.currency, figure.value, figure.hedge)
        if marker in seen:
            continue
        seen.add(marker)
        if any(index.find(figure) for _, index in indexes):
            continue
        if any(index.find_all_ways(figure) for _, index in indexes):
            continue
        nearest = sorted(
            (distance, written, name)
            for name, index in indexes
            for distance, written in index.nearest(figure)
        )
        if others is None:
            drawn_on = {source.name for source in sources}
            others = [s for s in (elsewhere() if elsewhere else ()) if s.name not in drawn_on]
        found_in = [source.name for source in others if index_of(source.text).find_all_ways(figure)]
        missing.append(Missing(figure, [(w, n) for _, w, n in nearest[:3]], found_in))
    return missing, stated.empty_markers


# --- the passages of a document -----------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")


@dataclass(frozen=True)
class Passage:
    """The text under one heading: its `##` section and `###` subsection as written, and
    the lines (1-based, inclusive) it spans."""

    section: str
    subsection: str
    first: int
    last: int
    text: str


def passages(markdown: str) -> list[Passage]:
    """The document cut at its headings (the heading lines and the title left out)."""
    found: list[Passage] = []
    section = subsection = ""
    body: list[str] = []
    first = 1

    def close(last: int) -> None:
        if any(line.strip() for line in body):
            found.append(Passage(section, subsection, first, last, "\n".join(body)))

    lines = markdown.splitlines()
    for number, line in enumerate(lines, start=1):
        heading = _HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        close(number - 1)
        level, name = len(heading.group(1)), _plain_heading(heading.group(2))
        if level <= 2:
            section, subsection = (name, "") if level == 2 else ("", "")
        else:
            subsection = name
        body, first = [], number + 1
    close(len(lines))
    return found


def _plain_heading(text: str) -> str:
    return text.strip().strip("*_").strip().rstrip(":").strip()
