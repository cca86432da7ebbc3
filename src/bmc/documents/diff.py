"""What changed between two versions of a stage's document, in the document's own terms.

Not a line diff: both sides are read with the documents' own parsers
(`bmc.documents.schemas`) and compared as segments, value propositions, canvas items and
sections. The readers never raise, so a working document half-way through an edit is
compared as far as it can be read.

What is reported:
- segments document: segments added, removed or renamed; per segment its value
  propositions added, removed, renamed or changed, and its other fields changed; the
  other sections changed;
- canvas: segments added, removed or renamed (its Customer Segments block); items added,
  removed, renamed, moved to another block, re-tagged to other segments, changed
  (description or attribute) or with their evidence changed; cost orientation and tensions;
- any other document (the brief): its `##` sections added, removed, renamed or changed.

The rename rule: a segment (item, value proposition, section) that disappears and one that
appears are the same one renamed when what they say apart from the name is at least
`RENAME_SIMILARITY` percent alike (rapidfuzz's `ratio` on the text with case and spacing
folded), pairing the most alike first. A rename that also rewrote most of the content is a
removal and an addition. In the canvas, a renamed segment's items that follow the new name
(their `###` subsection or `Serves:` line) are not re-tagged; only real re-tags are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from rapidfuzz import fuzz

from bmc.documents.schemas import name_key, outline
from bmc.documents.stages import Stage

if TYPE_CHECKING:
    from bmc.documents.schemas.canvas import CanvasParts

RENAME_SIMILARITY = 80.0
SUMMARY_LIMIT = 6

T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """One change, as a sentence for a person and as fields for a tool."""

    kind: str  # e.g. segment-renamed, item-moved, item-retagged, evidence-added
    text: str
    block: str = ""  # the canvas block or document section it is in
    name: str = ""  # the segment, item or section (the new name when renamed)
    old: str | None = None
    new: str | None = None


@dataclass(frozen=True)
class Diff:
    stage: str
    old_label: str
    new_label: str
    changes: list[Change] = field(default_factory=list)

    def summary(self, limit: int = SUMMARY_LIMIT) -> list[str]:
        """A few words per kind of change, for the decisions entry and `bmc status`.
        Segment changes are named one by one; item changes are counted."""
        named = [
            c for c in self.changes if c.kind.startswith("segment-") and c.kind != "segment-changed"
        ]
        lines = [_short(c) for c in named[:limit]]
        if len(named) > limit:
            lines.append(f"{len(named) - limit} more segment changes")
        counted: dict[str, int] = {}
        listed = {id(c) for c in named}
        for change in self.changes:
            if id(change) not in listed:
                counted[change.kind] = counted.get(change.kind, 0) + 1
        for kind, count in counted.items():
            lines.append(_count(kind, count))
        return lines

    def as_dict(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "from": self.old_label,
            "to": self.new_label,
            "changes": [asdict(c) for c in self.changes],
        }


_NOUNS = {
    "segment-changed": ("segment detail changed", "segment details changed"),
    "proposition-added": ("value proposition added", "value propositions added"),
    "proposition-removed": ("value proposition removed", "value propositions removed"),
    "proposition-renamed": ("value proposition renamed", "value propositions renamed"),
    "proposition-changed": ("value proposition changed", "value propositions changed"),
    "item-added": ("item added", "items added"),
    "item-removed": ("item removed", "items removed"),
    "item-renamed": ("item renamed", "items renamed"),
    "item-moved": ("item moved to another block", "items moved to another block"),
    "item-retagged": ("item re-tagged to other segments", "items re-tagged to other segments"),
    "item-changed": ("item changed", "items changed"),
    "evidence-added": ("quote added as evidence", "quotes added as evidence"),
    "evidence-removed": ("quote dropped from the evidence", "quotes dropped from the evidence"),
    "section-added": ("section added", "sections added"),
    "section-removed": ("section removed", "sections removed"),
    "section-renamed": ("section renamed", "sections renamed"),
    "section-changed": ("section changed", "sections changed"),
    "title-changed": ("title changed", "title changed"),
}


def _count(kind: str, count: int) -> str:
    one, many = _NOUNS.get(kind, (kind, kind))
    return f"{count} {one if count == 1 else many}"


def _short(change: Change) -> str:
    if change.kind == "segment-renamed":
        return f'segment "{change.old}" renamed to "{change.new}"'
    verb = change.kind.removeprefix("segment-")
    return f'segment "{change.name}" {verb}'


def diff_documents(
    stage: Stage, old: bytes, new: bytes, *, old_label: str = "", new_label: str = ""
) -> Diff:
    """The changes from `old` to `new`, two versions of `stage`'s document."""
    if stage.schema == "segments":
        changes = _segments_changes(old, new)
    elif stage.schema == "canvas":
        changes = _canvas_changes(old, new)
    else:
        changes = _section_changes(old, new)
    return Diff(stage.key, old_label, new_label, changes)


# --- pairing what disappeared with what appeared ------------------------------------------


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


def _alike(a: str, b: str) -> float:
    return fuzz.ratio(_fold(a), _fold(b))


def _pair_renames(gone: list[T], came: list[T], content: Callable[[T], str]) -> list[tuple[T, T]]:
    """Pairs (old, new) whose content is alike enough to be one thing renamed, most alike
    first; each thing in at most one pair."""
    scored = sorted(
        (
            (_alike(content(a), content(b)), i, j)
            for i, a in enumerate(gone)
            for j, b in enumerate(came)
        ),
        key=lambda s: (-s[0], s[1], s[2]),
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for score, i, j in scored:
        if score < RENAME_SIMILARITY:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((gone[i], came[j]))
    return pairs


def _quoted(names: Iterable[str]) -> str:
    listed = [f'"{n}"' for n in names]
    return ", ".join(listed) if listed else "no segment"


def _renamed_removed_added(
    kind: str,
    renamed: list[tuple[T, T]],
    gone: list[T],
    came: list[T],
    *,
    name: Callable[[T], str],
    block: Callable[[T], str],
    called: Callable[[T], str],
    body: Callable[[T], str] | None = None,
    removed_note: Callable[[T], str] = lambda _: "",
    added_note: Callable[[T], str] = lambda _: "",
) -> list[Change]:
    """The `{kind}-renamed`, `-removed` and `-added` changes, in that order; what is one side
    of a rename is neither removed nor added. Segments, value propositions, canvas items and
    sections are reported alike, so one function words them all: `called` names a thing at
    the start of a sentence (`Segment "X"`), `body` is what a removal's `old` and an
    addition's `new` hold (its name unless given), a note follows "removed" or "added"."""
    body = body or name
    paired = {id(x) for pair in renamed for x in pair}
    changes = [
        Change(
            f"{kind}-renamed",
            f'{called(a)} renamed to "{name(b)}".',
            block(b),
            name(b),
            name(a),
            name(b),
        )
        for a, b in renamed
    ]
    changes += [
        Change(
            f"{kind}-removed",
            f"{called(x)} removed{removed_note(x)}.",
            block(x),
            name(x),
            old=body(x),
        )
        for x in gone
        if id(x) not in paired
    ]
    changes += [
        Change(
            f"{kind}-added", f"{called(x)} added{added_note(x)}.", block(x), name(x), new=body(x)
        )
        for x in came
        if id(x) not in paired
    ]
    return changes


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def _segments_renamed_removed_added(
    block: str, renamed: list[tuple[N, N]], gone: list[N], came: list[N]
) -> list[Change]:
    """Segments added, removed or renamed, worded alike in the segments document and the
    canvas (its Customer Segments block)."""
    return _renamed_removed_added(
        "segment",
        renamed,
        gone,
        came,
        name=lambda s: s.name,
        block=lambda _: block,
        called=lambda s: f'Segment "{s.name}"',
    )


def _organisation_change(old: str, new: str) -> list[Change]:
    if old == new:
        return []
    return [
        Change(
            "title-changed",
            f'The organisation in the title changed from "{old}" to "{new}".',
            old=old,
            new=new,
        )
    ]


# --- the segments document ------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    name: str
    fields: dict[str, str]  # who, size, channels, relationship, revenue (as written)
    propositions: dict[str, str]  # name -> description, document order

    def content(self) -> str:
        props = " ".join(f"{k} {v}" for k, v in self.propositions.items())
        return " ".join([*self.fields.values(), props])


_SEGMENT_FIELDS = {
    "who": "who they are",
    "size": "size",
    "channels": "channels",
    "relationship": "relationship",
    "revenue": "revenue",
}
_DOCUMENT_SECTIONS = {
    "overview": "Overview",
    "interactions": "Segment Interactions",
    "excluded": "Excluded Segments",
    "open_questions": "Open Questions",
}


def _read_segments(data: bytes) -> tuple[str, dict[str, str], list[_Segment]]:
    from bmc.documents.schemas.segments import read_segments_document

    parts = read_segments_document(data)
    complete = {name_key(s.name): s for s in parts.segments}
    segments = []
    for entry in parts.entries:
        summary = complete.get(name_key(entry.name))
        fields = (
            {key: str(getattr(summary, key) or "") for key in _SEGMENT_FIELDS} if summary else {}
        )
        props = {vp.name: vp.description for vp in entry.value_propositions}
        segments.append(_Segment(entry.name, fields, props))
    sections = {key: str(value) for key, value in parts.fields.items()}
    return parts.organisation or "", sections, segments


def _segments_changes(old: bytes, new: bytes) -> list[Change]:
    old_org, old_sections, old_segments = _read_segments(old)
    new_org, new_sections, new_segments = _read_segments(new)
    changes = _organisation_change(old_org, new_org)
    pairs, gone, came = _match(old_segments, new_segments, lambda s: s.name)
    renamed = _pair_renames(gone, came, _Segment.content)
    changes += _segments_renamed_removed_added("Segments", renamed, gone, came)
    for a, b in [*pairs, *renamed]:
        changes += _segment_detail(a, b)
    for key, heading in _DOCUMENT_SECTIONS.items():
        before, after = old_sections.get(key), new_sections.get(key)
        if before != after:
            kind = (
                "section-added"
                if before is None
                else "section-removed"
                if after is None
                else "section-changed"
            )
            changes.append(
                Change(kind, f"{heading}: {_section_verb(kind)}.", heading, heading, before, after)
            )
    return changes


def _section_verb(kind: str) -> str:
    return {"section-added": "added", "section-removed": "removed"}.get(kind, "rewritten")


def _segment_detail(a: _Segment, b: _Segment) -> list[Change]:
    changes = []
    for key, label in _SEGMENT_FIELDS.items():
        if a.fields and b.fields and _fold(a.fields.get(key, "")) != _fold(b.fields.get(key, "")):
            changes.append(
                Change(
                    "segment-changed",
                    f'"{b.name}": {label} changed.',
                    "Segments",
                    b.name,
                    a.fields.get(key),
                    b.fields.get(key),
                )
            )
    changes += _named_text_changes(
        "proposition",
        list(a.propositions.items()),
        list(b.propositions.items()),
        block=lambda _: b.name,
        called=lambda name: f'"{b.name}": value proposition "{name}"',
        rewritten=lambda name, text: f'"{b.name}": value proposition "{name}" now says: {text}',
    )
    return changes


def _named_text_changes(
    kind: str,
    old: list[tuple[str, str]],
    new: list[tuple[str, str]],
    *,
    block: Callable[[str], str],
    called: Callable[[str], str],
    rewritten: Callable[[str, str], str],
) -> list[Change]:
    """The changes to things that are a name and a text (a segment's value propositions, a
    document's sections): `{kind}-renamed`, `-removed`, `-added`, then `-changed` where the
    text of one kept or renamed was rewritten. `block` gives the block of a thing by name,
    `called` how a sentence names it, `rewritten` the sentence for a new text."""
    pairs, gone, came = _match(old, new, lambda t: t[0])
    renamed = _pair_renames(gone, came, lambda t: t[1])
    changes = _renamed_removed_added(
        kind,
        renamed,
        gone,
        came,
        name=lambda t: t[0],
        block=lambda t: block(t[0]),
        called=lambda t: called(t[0]),
        body=lambda t: t[1],
    )
    for (_, old_text), (name, new_text) in [*pairs, *renamed]:
        if _fold(old_text) != _fold(new_text):
            changes.append(
                Change(
                    f"{kind}-changed",
                    rewritten(name, new_text),
                    block(name),
                    name,
                    old_text,
                    new_text,
                )
            )
    return changes


def _match(
    old: list[T], new: list[T], name: Callable[[T], str]
) -> tuple[list[tuple[T, T]], list[T], list[T]]:
    """Pairs with the same name (compared loosely), then what is only in old, only in new."""
    by_name = {name_key(name(x)): x for x in new}
    pairs = []
    gone = []
    for x in old:
        found = by_name.pop(name_key(name(x)), None)
        if found is None:
            gone.append(x)
        else:
            pairs.append((x, found))
    kept = {id(x) for x in by_name.values()}
    came = [x for x in new if id(x) in kept]
    return pairs, gone, came


# --- the canvas -------------------------------------------------------------------------------


@dataclass
class _Item:
    block: str  # the block's name, as the canvas heads it
    name: str
    attribute: str
    descriptions: list[str]
    served: list[str]
    evidence: list[tuple[str, str]]

    def content(self) -> str:
        return " ".join([*self.descriptions, *(q for _, q in self.evidence)])


def _read_items(data: bytes) -> tuple[CanvasParts, list[_Item], list[_Item]]:
    """The canvas's parts, its segments (Customer Segments items) and its other items. An
    item listed under several segments' `###` subsections is one item serving them all."""
    from bmc.documents.schemas.canvas import BLOCKS, read_canvas

    parts = read_canvas(data)
    segments: list[_Item] = []
    items: list[_Item] = []
    for block in BLOCKS:
        merged: dict[str, _Item] = {}
        for read in parts.items.get(block.spec.key, []):
            evidence = [(e.file, e.quote) for e in read.evidence]
            key = name_key(read.name)
            if block.by_segment and key in merged:
                found = merged[key]
                found.served += [s for s in read.served() if s not in found.served]
                if read.description not in found.descriptions:
                    found.descriptions.append(read.description)
                found.evidence += [e for e in evidence if e not in found.evidence]
                continue
            item = _Item(
                block.name,
                read.name,
                read.attribute or "",
                [read.description],
                list(read.served()),
                evidence,
            )
            if block.by_segment:
                merged[key] = item
            (segments if block.spec.key == "segments" else items).append(item)
    return parts, segments, items


def _canvas_changes(old: bytes, new: bytes) -> list[Change]:
    old_parts, old_segments, old_items = _read_items(old)
    new_parts, new_segments, new_items = _read_items(new)
    changes = _organisation_change(old_parts.organisation or "", new_parts.organisation or "")

    # Segments first: their renames decide which tags merely follow a new name.
    def segment_content(segment: _Item) -> str:
        own = [
            i.name
            for i in old_items + new_items
            if segment.name in i.served and i.block == "Value Propositions"
        ]
        return " ".join([segment.content(), *own])

    pairs, gone, came = _match(old_segments, new_segments, lambda s: s.name)
    renamed = _pair_renames(gone, came, segment_content)
    renames = {name_key(a.name): b.name for a, b in renamed}
    changes += _segments_renamed_removed_added("Customer Segments", renamed, gone, came)
    for a, b in [*pairs, *renamed]:
        if _fold(" ".join(a.descriptions)) != _fold(" ".join(b.descriptions)):
            changes.append(
                Change(
                    "segment-changed",
                    f'Segment "{b.name}": its description changed.',
                    "Customer Segments",
                    b.name,
                    " ".join(a.descriptions),
                    " ".join(b.descriptions),
                )
            )
        changes += _evidence_changes(a, b)

    def following(served: list[str]) -> list[str]:
        return [renames.get(name_key(s), s) for s in served]

    changes += _item_changes(old_items, new_items, following)

    old_cost = (old_parts.cost_orientation, old_parts.cost_orientation_note)
    new_cost = (new_parts.cost_orientation, new_parts.cost_orientation_note)
    if old_cost != new_cost:
        changes.append(
            Change(
                "section-changed",
                f"Cost Structure: the orientation is now {new_cost[0] or 'not stated'}"
                + (f" ({new_cost[1]})" if new_cost[1] else "")
                + ".",
                "Cost Structure",
                "orientation",
                " ".join(filter(None, old_cost)),
                " ".join(filter(None, new_cost)),
            )
        )
    old_t, new_t = old_parts.tensions, new_parts.tensions
    if _fold(old_t or "") != _fold(new_t or ""):
        changes.append(
            Change(
                "section-changed",
                "Tensions and Observations: rewritten.",
                "Tensions and Observations",
                "Tensions and Observations",
                old_t,
                new_t,
            )
        )
    return changes


def _item_changes(
    old_items: list[_Item], new_items: list[_Item], following: Callable[[list[str]], list[str]]
) -> list[Change]:
    changes: list[Change] = []
    # Same block, same name: the same item.
    pairs, gone, came = _match(old_items, new_items, lambda i: f"{i.block}\0{i.name}")
    # Same name, another block: moved.
    moved, gone, came = _match(gone, came, lambda i: i.name)
    for a, b in moved:
        changes.append(
            Change(
                "item-moved",
                f'"{b.name}" moved from {a.block} to {b.block}.',
                b.block,
                b.name,
                a.block,
                b.block,
            )
        )
    # Same block, new name, much the same content: renamed.
    renamed: list[tuple[_Item, _Item]] = []
    for block in dict.fromkeys(i.block for i in gone):
        renamed += _pair_renames(
            [i for i in gone if i.block == block],
            [i for i in came if i.block == block],
            _Item.content,
        )
    changes += _renamed_removed_added(
        "item",
        renamed,
        gone,
        came,
        name=lambda i: i.name,
        block=lambda i: i.block,
        called=lambda i: f'{i.block}: "{i.name}"',
        removed_note=lambda i: f" (it served {_quoted(i.served)})",
        added_note=lambda i: f", serving {_quoted(i.served)}",
    )
    for a, b in [*pairs, *moved, *renamed]:
        was = following(a.served)
        if {name_key(s) for s in was} != {name_key(s) for s in b.served}:
            changes.append(
                Change(
                    "item-retagged",
                    f'{b.block}: "{b.name}" now serves {_quoted(b.served)} '
                    f"(it served {_quoted(a.served)}).",
                    b.block,
                    b.name,
                    ", ".join(a.served),
                    ", ".join(b.served),
                )
            )
        if _fold(a.attribute) != _fold(b.attribute) or _fold(" ".join(a.descriptions)) != _fold(
            " ".join(b.descriptions)
        ):
            changes.append(
                Change(
                    "item-changed",
                    f'{b.block}: "{b.name}" now says: {" / ".join(b.descriptions)}'
                    + (f" ({b.attribute})" if b.attribute else ""),
                    b.block,
                    b.name,
                    " / ".join(a.descriptions),
                    " / ".join(b.descriptions),
                )
            )
        changes += _evidence_changes(a, b)
    return changes


def _evidence_changes(a: _Item, b: _Item) -> list[Change]:
    def key(evidence: tuple[str, str]) -> tuple[str, str]:
        return evidence[0], _fold(evidence[1])

    before = {key(e) for e in a.evidence}
    after = {key(e) for e in b.evidence}
    changes = []
    for file, quote in b.evidence:
        if key((file, quote)) not in before:
            changes.append(
                Change(
                    "evidence-added",
                    f'{b.block}: "{b.name}" cites a new quote from {file}: "{quote}"',
                    b.block,
                    b.name,
                    new=f"{file}: {quote}",
                )
            )
    for file, quote in a.evidence:
        if key((file, quote)) not in after:
            changes.append(
                Change(
                    "evidence-removed",
                    f'{b.block}: "{b.name}" no longer cites {file}: "{quote}"',
                    b.block,
                    b.name,
                    old=f"{file}: {quote}",
                )
            )
    return changes


# --- any other document: its sections -------------------------------------------------------


def _sections(data: bytes) -> tuple[str, dict[str, tuple[str, str]]]:
    text = data.decode("utf-8", errors="replace")
    doc = outline(text)
    title = doc.title.text if doc.title else ""
    found = {}
    for section in doc.sections:
        found.setdefault(name_key(section.heading), (section.heading, section.text()))
    return title, found


def _section_changes(old: bytes, new: bytes) -> list[Change]:
    old_title, old_sections = _sections(old)
    new_title, new_sections = _sections(new)
    changes: list[Change] = []
    if old_title != new_title:
        changes.append(
            Change(
                "title-changed",
                f'The title changed from "{old_title}" to "{new_title}".',
                old=old_title,
                new=new_title,
            )
        )
    changes += _named_text_changes(
        "section",
        list(old_sections.values()),
        list(new_sections.values()),
        block=lambda name: name,
        called=lambda name: f'Section "{name}"',
        rewritten=lambda name, _: f'Section "{name}" rewritten.',
    )
    return changes
