"""`bmc diff`'s comparison on the fixtures' real documents: the Tidewater canvas
(fixtures/canvas/tidewater-canvas.md), the demo's segments document and the agreed brief
(fixtures/workspace). Each change is made the way an iteration makes it, on the parsed
document rendered back, and the diff must name exactly it, in the documents' own terms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bmc.documents.diff import Change, diff_documents
from bmc.documents.schemas.canvas import Canvas, parse_canvas, render_canvas
from bmc.documents.schemas.segments import (
    SegmentsDocument,
    parse_segments_document,
    render_segments_document,
)
from bmc.documents.stages import packaged
from projects import FIXTURES, demo_segment_files

STAGES = packaged()
CANVAS = (FIXTURES / "canvas" / "tidewater-canvas.md").read_text("utf-8")
BRIEF = (FIXTURES / "workspace/clients/tidewater/projects/growth-2027/brief.md").read_text("utf-8")
VISITORS = "Visitors and day-trippers"
PUBLIC = "Public-service partners"
RESIDENTS = "Island residents on non-work trips"
COMMUTERS = "Island commuters"


Doc = dict[str, Any]  # a parsed document as plain data, to change (the models are frozen)


def canvas() -> Doc:
    parsed = parse_canvas(CANVAS)
    assert isinstance(parsed, Canvas), parsed
    return parsed.model_dump()


def canvas_diff(change: Callable[[Doc], None]) -> list[Change]:
    after = canvas()
    change(after)
    old = render_canvas(Canvas.model_validate(canvas())).encode()
    new = render_canvas(Canvas.model_validate(after)).encode()
    return diff_documents(STAGES["canvas"], old, new).changes


def kinds(changes: list[Change]) -> list[str]:
    return [c.kind for c in changes]


FLAT = ("relationships", "revenue_streams", "key_resources", "key_activities")
FLAT += ("key_partnerships", "costs")


def named(items: list[Doc], name: str) -> Doc:
    [item] = [i for i in items if i["name"] == name]
    return item


def rename_segment(doc: Doc, old: str, new: str) -> None:
    named(doc["segments"], old)["name"] = new
    for block in ("value_propositions", "channels"):
        doc[block] = {new if k == old else k: v for k, v in doc[block].items()}
    for block in FLAT:
        for item in doc[block]:
            item["serves"] = [new if s == old else s for s in item["serves"]]


def test_the_same_canvas_has_no_changes() -> None:
    assert diff_documents(STAGES["canvas"], CANVAS.encode(), CANVAS.encode()).changes == []
    # Formatting is not content: the canonical rendering of the fixture says the same.
    rendered = render_canvas(canvas()).encode()
    assert diff_documents(STAGES["canvas"], CANVAS.encode(), rendered).changes == []


def test_a_renamed_segment_is_one_rename_and_its_items_follow_it() -> None:
    changes = canvas_diff(lambda doc: rename_segment(doc, VISITORS, "Day visitors"))

    assert kinds(changes) == ["segment-renamed"]
    assert changes[0].text == f'Segment "{VISITORS}" renamed to "Day visitors".'
    assert (changes[0].old, changes[0].new) == (VISITORS, "Day visitors")


def test_a_dropped_segment_takes_the_items_that_served_only_it() -> None:
    def drop(doc: Doc) -> None:
        doc["segments"].remove(named(doc["segments"], PUBLIC))
        doc["value_propositions"].pop(PUBLIC)
        doc["channels"].pop(PUBLIC)
        for block in ("relationships", "key_resources"):
            doc[block] = [i for i in doc[block] if i["serves"] != [PUBLIC]]
        for item in doc["key_resources"]:
            item["serves"] = [s for s in item["serves"] if s != PUBLIC]

    changes = canvas_diff(drop)

    assert changes[0].kind == "segment-removed" and changes[0].name == PUBLIC
    removed = {(c.block, c.name) for c in changes if c.kind == "item-removed"}
    assert ("Customer Relationships", "Contract partnership") in removed
    assert ("Key Resources", "Public Service Contract") in removed
    assert ("Value Propositions", "Lifeline timetable delivered") in removed
    assert ("Channels", "Contract management") in removed
    # The early sailings still serve freight and commuters: re-tagged, not removed.
    [retag] = [c for c in changes if c.kind == "item-retagged"]
    assert retag.name == "Early-morning deck capacity"
    assert PUBLIC in retag.old and PUBLIC not in retag.new
    assert "now serves" in retag.text and f'"{PUBLIC}"' in retag.text
    assert set(kinds(changes)) == {"segment-removed", "item-removed", "item-retagged"}


def test_a_re_tagged_item_names_the_segments_before_and_after() -> None:
    def retag(doc: Doc) -> None:
        named(doc["relationships"], "Personal booking for islanders")["serves"] = [
            RESIDENTS,
            COMMUTERS,
        ]

    [change] = canvas_diff(retag)

    assert change.kind == "item-retagged"
    assert change.block == "Customer Relationships"
    assert change.text == (
        'Customer Relationships: "Personal booking for islanders" now serves '
        f'"{RESIDENTS}", "{COMMUTERS}" (it served "{RESIDENTS}").'
    )


def test_an_item_moved_to_another_block_is_a_move_not_a_removal_and_an_addition() -> None:
    def move(doc: Doc) -> None:
        item = named(doc["key_resources"], "Public Service Contract")
        doc["key_resources"].remove(item)
        doc["key_partnerships"].append(item)

    [change] = canvas_diff(move)

    assert change.kind == "item-moved"
    assert (change.old, change.new) == ("Key Resources", "Key Partnerships")
    assert change.text == '"Public Service Contract" moved from Key Resources to Key Partnerships.'


def test_a_value_proposition_moved_between_segments_is_re_tagged() -> None:
    def move(doc: Doc) -> None:
        item = named(doc["value_propositions"][COMMUTERS], "Commuter work seat")
        doc["value_propositions"][COMMUTERS].remove(item)
        doc["value_propositions"][VISITORS].append(item)

    [change] = canvas_diff(move)

    assert (change.kind, change.block, change.name) == (
        "item-retagged",
        "Value Propositions",
        "Commuter work seat",
    )
    assert (change.old, change.new) == (COMMUTERS, VISITORS)


def test_evidence_added_and_dropped_is_named_with_its_quote() -> None:
    def cite(doc: Doc) -> None:
        item = doc["key_activities"][0]
        item["evidence"] = [{**item["evidence"][0], "quote": "a different passage"}]

    changes = canvas_diff(cite)

    assert sorted(kinds(changes)) == ["evidence-added", "evidence-removed"]
    added = next(c for c in changes if c.kind == "evidence-added")
    assert '"a different passage"' in added.text and added.block == "Key Activities"


def test_a_canvas_item_renamed_with_the_same_content_is_a_rename() -> None:
    def rename(doc: Doc) -> None:
        doc["key_partnerships"][0]["name"] = "Harbour and council partners"

    [change] = canvas_diff(rename)

    assert change.kind == "item-renamed" and change.new == "Harbour and council partners"


# --- the segments document ------------------------------------------------------------------


def segments_doc() -> Doc:
    parsed = parse_segments_document(demo_segment_files()["segments/segments.md"])
    assert isinstance(parsed, SegmentsDocument), parsed
    return parsed.model_dump()


def rendered(doc: Doc) -> bytes:
    return render_segments_document(SegmentsDocument.model_validate(doc)).encode()


def segments_diff(change: Callable[[Doc], None]) -> list[Change]:
    after = segments_doc()
    change(after)
    return diff_documents(STAGES["segments"], rendered(segments_doc()), rendered(after)).changes


def test_segments_renamed_dropped_and_a_proposition_rewritten() -> None:
    def iterate(doc: Doc) -> None:
        named(doc["segments"], VISITORS)["name"] = "Day visitors"
        doc["segments"].remove(named(doc["segments"], PUBLIC))
        commuters = named(doc["segments"], COMMUTERS)
        commuters["value_propositions"][2]["description"] = (
            "a quiet carriage on every early sailing"
        )

    changes = segments_diff(iterate)

    assert [c.text for c in changes] == [
        f'Segment "{VISITORS}" renamed to "Day visitors".',
        f'Segment "{PUBLIC}" removed.',
        f'"{COMMUTERS}": value proposition "Commuter work seat" now says: '
        "a quiet carriage on every early sailing",
    ]
    after = segments_doc()
    iterate(after)
    summary = diff_documents(
        STAGES["segments"], rendered(segments_doc()), rendered(after)
    ).summary()
    assert summary == [
        f'segment "{VISITORS}" renamed to "Day visitors"',
        f'segment "{PUBLIC}" removed',
        "1 value proposition changed",
    ]


def test_a_segment_renamed_and_rewritten_is_a_removal_and_an_addition() -> None:
    def replace(doc: Doc) -> None:
        visitors = named(doc["segments"], VISITORS)
        visitors["name"] = "Cruise passengers"
        visitors["who"] = "Passengers landed for a few hours by cruise ships calling at Holmsey."
        visitors["channels"] = "Cruise lines' shore excursion desks."
        visitors["revenue"] = "A per-head excursion fee paid by the cruise line."
        for vp in visitors["value_propositions"]:
            vp["description"] = "something else entirely, for a ship's passengers on a tight clock"

    assert kinds(segments_diff(replace)) == ["segment-removed", "segment-added"]


def test_a_changed_overview_and_segment_field() -> None:
    def edit(doc: Doc) -> None:
        doc["overview"] += " The council's decision is the deadline."
        doc["segments"][0]["channels"] = "SMS alerts and the app."

    changes = segments_diff(edit)

    assert [c.text for c in changes] == [
        f'"{COMMUTERS}": channels changed.',
        "Overview: rewritten.",
    ]


# --- the brief: sections ----------------------------------------------------------------------


def test_the_brief_is_compared_section_by_section() -> None:
    sections = [line[3:] for line in BRIEF.splitlines() if line.startswith("## ")]
    assert len(sections) >= 3
    first, second = sections[0], sections[1]
    edited = BRIEF.replace(f"## {second}\n", f"## {second}\n\nOne more line from the client.\n")
    edited = edited.replace(f"## {first}\n", f"## {first} (revised)\n")
    edited += "\n## Next review\n\nMarch 2027.\n"

    changes = diff_documents(STAGES["brief"], BRIEF.encode(), edited.encode()).changes

    assert [c.text for c in changes] == [
        f'Section "{first}" renamed to "{first} (revised)".',
        'Section "Next review" added.',
        f'Section "{second}" rewritten.',
    ]


def test_a_half_written_working_document_is_compared_as_far_as_it_reads(tmp_path: Path) -> None:
    # Mid-edit: the canvas lost its last blocks; what can be read is still compared.
    cut = CANVAS.split("## Key Partnerships")[0]
    changes = diff_documents(STAGES["canvas"], CANVAS.encode(), cut.encode()).changes
    removed_blocks = {c.block for c in changes if c.kind == "item-removed"}
    assert removed_blocks == {"Key Partnerships", "Cost Structure"}
    assert "segment-removed" not in kinds(changes)
