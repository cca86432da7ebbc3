"""Finding a draft's quotes in the client's research.

A quote counts as found when it occurs in the resource once both are normalised: case,
whitespace runs, typographic quotes and apostrophes (‘’“”«» and friends), dashes (– — ‑),
the ellipsis character (… is ...), invisible characters (soft hyphens, zero-width spaces)
and markdown markup (`*`, `_`, backticks, `|` of tables, `>` of block quotes, `#`). The
markup goes because resources are markdown converted from PDFs and slides: a quote copied
from a bold phrase or a table row should not fail on asterisks or pipes. Links read as their
visible text (`[the tourism partnership](https://...)` is "the tourism partnership", an
image `![alt](src)` its alt text), in the resource and in the quote, so a quote copied from a
rendered page is found; a map from the visible text back to the file keeps the closest
passage pointing at the right place.

When a quote is absent, the closest passage of the resource is reported in its original
form, so the model can copy it verbatim. The search is bounded: exact substring search
first (C speed), and only on failure a fuzzy search with rapidfuzz over fixed windows, then
a fine alignment on the best few. A resource's normalised text is cached per (path,
modification time, size), so fifty drafts citing the same 5 MB report normalise it once.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from rapidfuzz import fuzz, process

_SPACE = " "
_TRANSLATION = str.maketrans(
    {
        **dict.fromkeys("‘’‚‛′‹›", "'"),
        **dict.fromkeys("“”„‟″«»", '"'),
        **dict.fromkeys("‐‑‒–—―−", "-"),
        "…": "...",
        # Markdown markup: a space, so `**bold**` and `| cell |` read as plain words.
        **dict.fromkeys("*_`|>#\\", _SPACE),
        # Invisible characters that converters leave inside words.
        **dict.fromkeys("\u00ad\u200b\u200c\u200d\u2060\ufeff", None),
    }
)

# Characters stripped from both ends of a quote: a quote that starts or stops at a
# different punctuation mark than the source ("grew 12%." vs "grew 12%,") is still found.
_QUOTE_EDGES = " .,;:!?'\"-"

# Only the first characters of a long quote drive the fuzzy search: the cost of an
# alignment grows with the square of the quote's length, and 200 characters are plenty to
# find the passage the model meant.
FUZZY_QUOTE_CHARS = 200
# The window scan looks at no more than this many windows however big the resource.
MAX_WINDOWS = 300_000
# Long lines are cut at whitespace into pieces of at most this many characters, so mapping
# a passage back to the original text walks one short piece, not a whole file.
_PIECE = re.compile(r"[^\n]{1,4096}(?=\s|$)|[^\n]{1,4096}", re.MULTILINE)

# A resource this big is not research text: refuse it rather than hold it in memory.
MAX_RESOURCE_BYTES = 100_000_000


# An inline link or image, `[text](target "title")` or `![alt](src)`, or a reference link
# `[text][label]`: group 1 is what a reader sees. The target may hold one level of
# parentheses (Wikipedia addresses do).
_LINK = re.compile(
    r"!?\[([^\[\]\n]*(?:\n[^\[\]\n]+)*)\]"
    r"(?:\((?:[^()\s]|\([^()\s]*\))*(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)|\[[^\[\]\n]*\])"
)


@dataclass(frozen=True)
class Visible:
    """Markdown with its links read as their visible text, and the way back: `starts[i]`
    is where in `visible` the i-th run copied unchanged from the source begins, `shifts[i]`
    what to add to an offset in that run to get the source's offset."""

    text: str
    starts: tuple[int, ...] = (0,)
    shifts: tuple[int, ...] = (0,)

    def source_offset(self, index: int) -> int:
        at = bisect_right(self.starts, index) - 1
        return index + self.shifts[max(at, 0)]


def visible_text(text: str) -> Visible:
    """`text` with every markdown link replaced by its visible text (see `_LINK`)."""
    if "](" not in text and "][" not in text:
        return Visible(text)
    out: list[str] = []
    starts, shifts = [0], [0]
    length = position = 0
    for link in _LINK.finditer(text):
        out.append(text[position : link.start()])
        length += link.start() - position
        label = link.group(1)
        # The label's characters come from just inside the opening bracket.
        starts.append(length)
        shifts.append(link.start(1) - length)
        out.append(label)
        length += len(label)
        position = link.end()
        # What follows the link maps back past its target.
        starts.append(length)
        shifts.append(position - length)
    out.append(text[position:])
    return Visible("".join(out), tuple(starts), tuple(shifts))


def normalise(text: str) -> str:
    """`text` as compared: translated (see the module docstring), case-folded, one space
    between words."""
    return _SPACE.join(text.translate(_TRANSLATION).casefold().split())


def quote_key(quote: str) -> str:
    """A quote as searched for: links read as their text, normalised, without punctuation
    at either end."""
    return normalise(visible_text(quote).text).strip(_QUOTE_EDGES)


@dataclass(frozen=True)
class Match:
    """Where the quote is, as offsets into the normalised text."""

    start: int
    end: int


@dataclass(frozen=True)
class ClosestPassage:
    """The quote is absent; this original passage is the most similar (score 0-100)."""

    passage: str
    score: float


@dataclass
class ResourceText:
    """A resource's text, its visible text (links read as their text), its normalised form,
    and (built on demand) the map between them.

    `memo` holds what other checks derive from the text (the figures index), so it is
    built once per version of the file, like the normalised text.
    """

    original: str
    normalised: str = ""
    visible: Visible = field(init=False, repr=False)
    memo: dict[str, object] = field(default_factory=dict, repr=False)
    _pieces: list[tuple[int, int, int]] | None = field(default=None, repr=False)
    _starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.visible = visible_text(self.original)
        if not self.normalised:
            self.normalised = normalise(self.visible.text)

    def passage(self, start: int, end: int, limit: int = 300) -> str:
        """The original text behind normalised offsets [start, end), widened to whole
        words and put on one line."""
        if not self.normalised or start >= end:
            return ""
        begin = self.visible.source_offset(self._visible_offset(start))
        stop = self.visible.source_offset(self._visible_offset(end - 1)) + 1
        text = self.original
        # Widen to whole words (a word longer than 40 characters is left cut).
        for _ in range(40):
            if begin == 0 or text[begin - 1].isspace():
                break
            begin -= 1
        for _ in range(40):
            if stop >= len(text) or text[stop].isspace():
                break
            stop += 1
        flat = " ".join(text[begin:stop].split())
        return flat if len(flat) <= limit else flat[: limit - 1] + "…"

    def _visible_offset(self, index: int) -> int:
        """The offset in the visible text of normalised offset `index`."""
        pieces = self._piece_table()
        at = max(bisect_right(self._starts, index) - 1, 0)
        norm_start, orig_start, orig_end = pieces[at]
        char_map = _char_map(self.visible.text[orig_start:orig_end])
        offset = min(max(index - norm_start, 0), len(char_map) - 1)
        return orig_start + char_map[offset]

    def _piece_table(self) -> list[tuple[int, int, int]]:
        # (normalised start, original start, original end) of every piece with text. Joining
        # the pieces' normalised forms with one space gives `normalised` exactly, because
        # pieces are cut at whitespace and normalisation never crosses whitespace.
        if self._pieces is None:
            self._pieces, position = [], 0
            for found in _PIECE.finditer(self.visible.text):
                norm = normalise(found.group())
                if norm:
                    self._pieces.append((position, found.start(), found.end()))
                    position += len(norm) + 1
            self._starts = [piece[0] for piece in self._pieces]
        return self._pieces


def _char_map(text: str) -> list[int]:
    """For each character of `normalise(text)`, the index in `text` it came from."""
    index: list[int] = []
    pending_space = False
    for i, char in enumerate(text):
        for out in char.translate(_TRANSLATION).casefold():
            if out.isspace():
                pending_space = bool(index)
                continue
            if pending_space:
                index.append(i)
                pending_space = False
            index.append(i)
    return index or [0]


def find_quote(quote: str, text: str | ResourceText) -> Match | ClosestPassage:
    """Where `quote` occurs in `text` (both normalised), or the closest passage when it
    does not."""
    resource = text if isinstance(text, ResourceText) else ResourceText(text)
    needle = quote_key(quote)
    if not needle:
        return ClosestPassage("", 0.0)
    at = resource.normalised.find(needle)
    if at >= 0:
        return Match(at, at + len(needle))
    return _closest(needle, resource)


def _closest(needle: str, resource: ResourceText) -> ClosestPassage:
    haystack = resource.normalised
    if not haystack:
        return ClosestPassage("", 0.0)
    probe = needle[:FUZZY_QUOTE_CHARS]
    score, start, end = _best_alignment(probe, haystack)
    start, end = _trim(probe, haystack, start, end)
    return ClosestPassage(resource.passage(start, end), round(score, 1))


def _trim(probe: str, text: str, start: int, end: int) -> tuple[int, int]:
    """Drop up to three words at either end of an alignment while that does not make it
    less like the probe: the alignment's edges often take in a stray word of the
    neighbouring sentence, which the model would then copy."""
    best = fuzz.ratio(probe, text[start:end])
    for _ in range(3):
        cut = text.find(" ", start, end)
        score = fuzz.ratio(probe, text[cut + 1 : end]) if cut >= 0 else -1.0
        if score < best:
            break
        start, best = cut + 1, score
    for _ in range(3):
        cut = text.rfind(" ", start, end)
        score = fuzz.ratio(probe, text[start:cut]) if cut > start else -1.0
        if score < best:
            break
        end, best = cut, score
    return start, end


def _best_alignment(probe: str, haystack: str) -> tuple[float, int, int]:
    """(score, start, end) of the passage of `haystack` most like `probe`.

    Small texts get one `partial_ratio_alignment`. Large ones are cut into windows the
    length of the probe, half overlapping; `fuzz.ratio` ranks them in C, and the best five
    (with a probe's length of margin each side) get the fine alignment.
    """
    size = len(probe)
    if len(haystack) <= 4 * size:
        found = fuzz.partial_ratio_alignment(probe, haystack)
        return found.score, found.dest_start, found.dest_end
    step = max(size // 2, len(haystack) // MAX_WINDOWS, 1)
    starts = range(0, len(haystack) - size + 1, step)
    windows = [haystack[i : i + size] for i in starts]
    best = (-1.0, 0, 0)
    for _, _, index in process.extract(probe, windows, scorer=fuzz.ratio, limit=5):
        low = max(starts[index] - size, 0)
        found = fuzz.partial_ratio_alignment(probe, haystack[low : starts[index] + 2 * size])
        if found.score > best[0]:
            best = (found.score, low + found.dest_start, low + found.dest_end)
    return best


# --- resources on disk -----------------------------------------------------------------


class UnreadableResource(Exception):
    """A cited file that cannot be searched; `str(error)` says why, in a phrase that
    follows the file's name ("is not UTF-8 text ...")."""


@dataclass(frozen=True)
class _Stamp:
    mtime_ns: int
    size: int


_texts: dict[Path, tuple[_Stamp, ResourceText | UnreadableResource]] = {}
_digests: dict[Path, tuple[_Stamp, str]] = {}


def _stamp(path: Path) -> _Stamp:
    stat = path.stat()
    return _Stamp(stat.st_mtime_ns, stat.st_size)


def load_resource(path: Path) -> ResourceText:
    """The text of resource `path`, normalised once per (path, mtime, size).

    Raises `UnreadableResource` (binary, not UTF-8, too large) and `OSError`.
    """
    stamp = _stamp(path)
    cached = _texts.get(path)
    if cached is None or cached[0] != stamp:
        cached = (stamp, _read_resource(path, stamp))
        _texts[path] = cached
    if isinstance(cached[1], UnreadableResource):
        raise cached[1]
    return cached[1]


def resource_digest(path: Path) -> str:
    """sha256 of the bytes of `path`, hashed once per (path, mtime, size)."""
    stamp = _stamp(path)
    cached = _digests.get(path)
    if cached is None or cached[0] != stamp:
        cached = (stamp, hashlib.sha256(path.read_bytes()).hexdigest())
        _digests[path] = cached
    return cached[1]


def _read_resource(path: Path, stamp: _Stamp) -> ResourceText | UnreadableResource:
    if stamp.size > MAX_RESOURCE_BYTES:
        return UnreadableResource(f"is {stamp.size // 1_000_000} MB, too large to search")
    data = path.read_bytes()
    _digests[path] = (stamp, hashlib.sha256(data).hexdigest())
    if b"\x00" in data:
        return UnreadableResource("is binary, not text: cite the markdown made by `bmc import`")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return UnreadableResource(
            "is not UTF-8 text: cite the markdown made by `bmc import` instead"
        )
    return ResourceText(text)
