"""`bmc render`: the client-ready canvas and segments pages (SPEC section 8).

The first half reads the HTML (blocks, legend, colours, escaping, nothing fetched, agreed or
draft); the second opens the pages in a real headless Chromium and checks what a person
would see: the nine blocks, every segment's colour in the legend and on its notes, no text
running out of a note or a block, and the sheet printing on one A3 landscape page. Only the
browser tests are skipped when no Chromium is installed.

Runtime: about 20 s on two busy cores, nearly all of it Chromium (7 launches).
"""

from __future__ import annotations

import html
import json
import math
import random
import re
import shutil
import struct
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

import browser
from bmc.documents import gate, render
from bmc.documents.schemas.canvas import Canvas, parse_canvas
from bmc.errors import PrerequisiteError, UserError
from bmc.workspace.paths import Project

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CANVAS = ROOT / "fixtures" / "canvas" / "tidewater-canvas.md"
DEMO_SCENARIO = ROOT / "fixtures" / "scenarios" / "demo-segments.json"
CHROMIUM = browser.find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium binary found (install it with `apt-get install -y chromium`, or set "
    "BMC_CHROMIUM): the browser checks of the rendered pages cannot run",
)

BLOCK_TITLES = {
    "key_partnerships": "Key Partners",
    "key_activities": "Key Activities",
    "key_resources": "Key Resources",
    "value_propositions": "Value Propositions",
    "relationships": "Customer Relationships",
    "channels": "Channels",
    "segments": "Customer Segments",
    "costs": "Cost Structure",
    "revenue_streams": "Revenue Streams",
}
TIDEWATER_SEGMENTS = [
    "Island commuters",
    "Island residents on non-work trips",
    "Visitors and day-trippers",
    "Freight hauliers and island businesses",
    "Public-service partners",
]


# --- building projects ------------------------------------------------------------------------


def tidewater(tmp_path: Path, canvas: str | None = None) -> Project:
    """The Tidewater fixture after the segments stage (the demo scenario's drafts and
    segments document, replayed) with `canvas` (default: the fixture canvas) as canvas.md."""
    workspace = tmp_path / "ws"
    shutil.copytree(ROOT / "fixtures" / "workspace", workspace)
    project = Project(workspace, "tidewater", "growth-2027")
    scenario = json.loads(DEMO_SCENARIO.read_text("utf-8"))
    for step in scenario["steps"]:
        for block in step.get("reply", {}).get("content", []):
            if block["type"] != "tool_use" or block["name"] not in ("write", "edit"):
                continue
            args = block["input"]
            target = project.project_dir / args["file_path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if block["name"] == "write":
                target.write_text(args["content"], "utf-8")
            else:
                old = target.read_text("utf-8")
                target.write_text(old.replace(args["old_string"], args["new_string"]), "utf-8")
    write_canvas(project, canvas if canvas is not None else FIXTURE_CANVAS.read_text("utf-8"))
    return project


def bare_project(tmp_path: Path) -> Project:
    project = Project(tmp_path / "ws", "acme", "growth")
    project.project_dir.mkdir(parents=True)
    return project


def write_canvas(project: Project, text: str, name: str = "canvas.md") -> None:
    path = project.project_dir / "canvas" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")


LONG_WORDS = (
    "Donaudampfschifffahrtsgesellschaftskapitänsmützenabteilung",
    "www.tidewater-ferries.example/timetables/winter-2027/skerry-holmsey-carra-fennick/print",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
)
# A small vocabulary for the generated notes.
WORDS = re.findall(
    r"\S+",
    "ferry island sailing deck freight season ticket crossing harbour timetable reliable "
    "early weekday booking desk portal alert commuter visitor haulier contract council "
    "capacity lane metre vessel crew fuel fare cruise coach partner account invoice monthly",
)


def generated_canvas(segments: list[str], items: int = 60, seed: int = 7) -> str:
    """A canonical canvas with `items` items over the nine blocks (every segment served,
    items serving one, several or all segments), descriptions of very uneven length and a
    few words too long for any note."""
    rng = random.Random(seed)
    counter = iter(range(1, 10_000))

    def text(low: int, high: int) -> str:
        words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words)), rng.choice(LONG_WORDS))
        return " ".join(words).capitalize()

    def item(attribute: str | None, serves: str | None) -> str:
        n = next(counter)
        name = f"{text(1, 4)} {n}" if n % 11 else f"{LONG_WORDS[n % 3]} {n}"
        head = f"- **{name}**" + (f" ({attribute})" if attribute else "") + f" — {text(3, 20)}."
        lines = [head]
        if serves:
            lines.append(f"  - Serves: {serves}")
        lines.append(f'  - Evidence: `resources/research-{n % 4}.md`: "{text(4, 12)}"')
        return "\n".join(lines)

    def serves() -> str:
        roll = rng.random()
        if roll < 0.15:
            return "all segments"
        return "; ".join(rng.sample(segments, 1 if roll < 0.6 else min(3, len(segments))))

    # Like a real canvas: a few value propositions and channels per segment (a fifth of
    # the items each), the rest spread over the other six blocks.
    grouped = max(len(segments), items // 5)
    flat_total = items - len(segments) - 2 * grouped
    flat_blocks = ["rel", "rev", "res", "act", "par", "cost"]
    flat_counts = {b: max(1, flat_total // len(flat_blocks)) for b in flat_blocks}
    flat_counts["rel"] += flat_total - sum(flat_counts.values())
    phases = ("awareness", "evaluation", "purchase", "delivery", "after-sales")
    out = ["# Business Model Canvas — Generated Ferries & Co", "", "## Customer Segments", ""]
    out += [
        f'- **{s}** — {text(5, 25)}.\n  - Evidence: `resources/research-0.md`: "{text(4, 8)}"'
        for s in segments
    ]
    for heading in ("Value Propositions", "Channels"):
        out += ["", f"## {heading}", ""]
        for number, s in enumerate(segments):
            share = grouped // len(segments) + (number < grouped % len(segments))
            attribute = (lambda: rng.choice(phases)) if heading == "Channels" else (lambda: None)
            out += [f"### {s}", ""] + [item(attribute(), None) for _ in range(share)] + [""]
    sections = (
        ("Customer Relationships", "rel", ("personal", "automated", "self-service")),
        ("Revenue Streams", "rev", ("usage fee; fixed list price", "subscription; negotiated")),
        ("Key Resources", "res", ("physical", "intellectual", "human", "financial")),
        ("Key Activities", "act", ("production", "problem solving", "platform/network")),
        ("Key Partnerships", "par", ("supplier", "strategic alliance", "joint venture")),
    )
    for heading, key, attributes in sections:
        out += [f"## {heading}", ""]
        out += [item(rng.choice(attributes), serves()) for _ in range(flat_counts[key])]
        out.append("")
    out += ["## Cost Structure", "", "Orientation: value-driven — quality first.", ""]
    out += [
        item(rng.choice(("fixed", "variable")), serves() if i % 2 else None)
        for i in range(flat_counts["cost"])
    ]
    out += ["", "## Tensions and Observations", "", "- " + text(10, 30), ""]
    return "\n".join(out)


FIVE = [
    "Island commuters",
    "Visitors and day-trippers from the mainland and cruise ships",
    "Freight hauliers",
    "Public-service partners",
    "Supercalifragilisticexpialidociousislandbusinesses",
]


def parsed(text: str) -> Canvas:
    canvas = parse_canvas(text)
    assert isinstance(canvas, Canvas), canvas
    return canvas


# --- reading HTML -------------------------------------------------------------------------------


class Page(HTMLParser):
    """The parts of a rendered page the tests look at: every element with its attributes and
    its text, in document order."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self.style = ""
        self.feed(source)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {
            "tag": tag,
            "attrs": dict(attrs),
            "text": "",
            "id": len(self.elements),
            "ancestors": {e["id"] for e in self._open},
        }
        self.elements.append(element)
        if tag not in ("meta", "br", "img", "link", "input", "hr"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1]["tag"] == "style":
            self.style += data
        for element in self._open:
            element["text"] += data

    def find(
        self,
        tag: str | None = None,
        cls: str | None = None,
        within: dict | None = None,
        **attrs: str,
    ) -> list[dict]:
        """Elements by tag, class and attributes, optionally only those inside `within`."""
        found = []
        for e in self.elements:
            if within is not None and within["id"] not in e["ancestors"]:
                continue
            classes = (e["attrs"].get("class") or "").split()
            if tag and e["tag"] != tag:
                continue
            if cls and cls not in classes:
                continue
            if any(e["attrs"].get(k.replace("_", "-")) != v for k, v in attrs.items()):
                continue
            found.append(e)
        return found


def text_of(element: dict) -> str:
    return " ".join(element["text"].split())


def classes(element: dict) -> set[str]:
    return set((element["attrs"].get("class") or "").split())


def read_page(path: Path) -> Page:
    return Page(path.read_text("utf-8"))


# --- the canvas page ----------------------------------------------------------------------------


def test_canvas_page_has_the_nine_labelled_blocks_in_the_classic_places(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    written = render.render_project(project)
    canvas_html = project.project_dir / "canvas" / "canvas.html"
    assert written == [canvas_html, project.project_dir / "segments" / "segments.html"]
    page = read_page(canvas_html)
    blocks = page.find("section", "block")
    assert [b["attrs"]["data-block"] for b in blocks] == list(BLOCK_TITLES)
    for block in blocks:
        (heading,) = page.find("h2", within=block)
        assert text_of(heading) == BLOCK_TITLES[block["attrs"]["data-block"]]
    # The classic arrangement: partners left, segments right, costs and revenue underneath.
    assert '"kp ka vp vp cr cs"' in page.style
    assert '"kp kr vp vp ch cs"' in page.style
    assert '"cost cost cost rev rev rev"' in page.style
    assert "@page { size: A3 landscape" in page.style
    assert text_of(page.find("h1")[0]) == "Tidewater Ferries Ltd"
    assert text_of(page.find(cls="status")[0]) == "Draft"


def test_every_item_is_a_note_in_its_block_with_its_evidence(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    render.render_project(project)
    page = read_page(project.project_dir / "canvas" / "canvas.html")
    canvas = parsed(FIXTURE_CANVAS.read_text("utf-8"))
    expected = {
        "segments": canvas.segments,
        "value_propositions": [i for items in canvas.value_propositions.values() for i in items],
        "channels": [i for items in canvas.channels.values() for i in items],
        "relationships": canvas.relationships,
        "revenue_streams": canvas.revenue_streams,
        "key_resources": canvas.key_resources,
        "key_activities": canvas.key_activities,
        "key_partnerships": canvas.key_partnerships,
        "costs": canvas.costs,
    }
    notes_by_block = {
        block["attrs"]["data-block"]: page.find(cls="note", within=block)
        for block in page.find(cls="block")
    }
    footnotes = {e["attrs"]["id"]: text_of(e) for e in page.find("li") if "id" in e["attrs"]}
    for block, items in expected.items():
        notes = notes_by_block[block]
        assert len(notes) == len(items), block
        for note, item in zip(notes, items, strict=True):
            assert text_of(note).startswith(item.name), (block, item.name)
            assert item.description in text_of(note)
            if item.attribute:
                assert item.attribute in text_of(note)
            # The evidence is the note's tooltip and a numbered footnote it links to.
            for evidence in item.evidence:
                assert f'{evidence.file}: "{evidence.quote}"' in note["attrs"]["title"]
            (link,) = page.find("a", "ref", within=note)
            number = link["attrs"]["href"].removeprefix("#ev-")
            assert text_of(link) == number
            assert item.name in footnotes[f"ev-{number}"]
            assert all(e.quote in footnotes[f"ev-{number}"] for e in item.evidence)
    # The cost orientation is shown with its reason.
    assert "Cost-driven — 79% of the £31.5m cost base is fixed" in text_of(page.find(cls="lead")[0])
    assert "Skerry fixed link" in text_of(page.find(cls="tensions")[0])


def test_legend_names_every_segment_and_notes_wear_their_segments_colours(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    render.render_project(project)
    page = read_page(project.project_dir / "canvas" / "canvas.html")
    legend = page.find(cls="legend-entry")
    assert [e["attrs"]["data-segment"] for e in legend] == TIDEWATER_SEGMENTS
    assert [text_of(e) for e in legend] == TIDEWATER_SEGMENTS
    # Each segment has its own palette colour, declared once in the page's CSS.
    colour_class = {}
    for entry, colour in zip(legend, render.PALETTE, strict=False):
        (swatch,) = page.find(cls="swatch", within=entry)
        (seg_class,) = [c for c in classes(swatch) if c.startswith("seg-")]
        colour_class[entry["attrs"]["data-segment"]] = seg_class
        assert f".{seg_class} {{ --fill: {colour.fill}; --mark: {colour.mark}; }}" in page.style
    assert len(set(colour_class.values())) == 5
    notes = page.find(cls="note")
    kinds = Counter()
    for note in notes:
        served = [s for s in note["attrs"]["data-segments"].split("|") if s]
        stripes = page.find("i", within=note)
        if "single" in classes(note):
            kinds["single"] += 1
            assert colour_class[served[0]] in classes(note)  # the note is the segment's colour
        elif "multi" in classes(note):
            kinds["multi"] += 1
            assert len(served) >= 2
            # One stripe per segment, each in that segment's colour.
            segment_stripes = [s for s in stripes if s["attrs"].get("data-segment")]
            assert [s["attrs"]["data-segment"] for s in segment_stripes] == served
            for stripe in segment_stripes:
                assert colour_class[stripe["attrs"]["data-segment"]] in classes(stripe)
        elif "all" in classes(note):
            kinds["all"] += 1
            assert note["attrs"]["data-all"] == "true"
            assert "all segments" in text_of(note)
        else:
            kinds["none"] += 1
    # The fixture has all four kinds: single-segment items, shared ones, `all segments`,
    # and costs tied to no segment.
    assert kinds["single"] >= 30 and kinds["multi"] >= 5 and kinds["all"] >= 5
    assert kinds["none"] == 3
    styles = [text_of(e) for e in page.find(cls="legend-style")]
    assert styles == [
        "Several segments: a stripe for each",
        "All segments",
        "No particular segment",
    ]


def test_palette_colours_are_far_apart() -> None:
    """At least 8 hues a person tells apart: every pair of note fills and every pair of
    stripe colours differs clearly in CIELAB (ΔE*ab > 25 for marks, > 14 for pale fills)."""

    def lab(hex_colour: str) -> tuple[float, float, float]:
        rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        x = (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047
        y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
        z = (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883

        def f(t: float) -> float:
            return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

        return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))

    assert len(render.PALETTE) >= 8
    for attribute, floor in (("mark", 25), ("fill", 14)):
        colours = [lab(getattr(c, attribute)) for c in render.PALETTE]
        closest = min(math.dist(a, b) for i, a in enumerate(colours) for b in colours[i + 1 :])
        assert closest > floor, (attribute, closest)


def test_more_segments_than_colours_stay_distinct(tmp_path: Path) -> None:
    names = [f"Segment {chr(65 + i)}" for i in range(12)]
    project = bare_project(tmp_path)
    write_canvas(project, generated_canvas(names, items=80))
    render.render_project(project)
    page = read_page(project.project_dir / "canvas" / "canvas.html")
    legend = page.find(cls="legend-entry")
    assert [e["attrs"]["data-segment"] for e in legend] == names
    looks = set()
    for entry in legend:
        (swatch,) = page.find(cls="swatch", within=entry)
        (seg_class,) = [c for c in classes(swatch) if c.startswith("seg-")]
        fill = re.search(rf"\.{seg_class} {{ --fill: (#\w+);", page.style).group(1)
        looks.add((fill, "hatched" in classes(swatch)))
    assert len(looks) == 12  # the 11th and 12th reuse a hue, hatched


NASTY_SEGMENT = 'R&D <labs> "quoted"'
NASTY_NAME = '<script>alert("name")</script> & <b>bold</b>'
NASTY_DESCRIPTION = (
    'Text with <img src="http://evil.example/x.png" onerror="alert(1)"> and '
    "[a link](https://evil.example/) and ![an image](https://evil.example/i.png)"
)
NASTY_QUOTE = '"><script>alert(2)</script>'
NASTY_TENSIONS = '<iframe src="https://evil.example"></iframe> **bold** and `code <x>`'


def nasty_canvas() -> str:
    evidence = f'  - Evidence: `resources/a.md`: "{NASTY_QUOTE}"'
    item = f"- **{NASTY_NAME}** — {NASTY_DESCRIPTION}\n{evidence}"
    serves = f"  - Serves: {NASTY_SEGMENT}"
    served = f"{item}\n{serves}"
    return (
        "\n".join(
            [
                "# Business Model Canvas — Generated Ferries & Co",
                "## Customer Segments",
                f"- **{NASTY_SEGMENT}** — who\n{evidence}",
                "## Value Propositions",
                f"### {NASTY_SEGMENT}",
                item,
                "## Channels",
                f"### {NASTY_SEGMENT}",
                f"- **Web** (awareness) — {NASTY_DESCRIPTION}\n{evidence}",
                "## Customer Relationships",
                f"- **Desk** (personal) — {NASTY_DESCRIPTION}\n{serves}\n{evidence}",
                "## Revenue Streams",
                f"- **Fares** (usage fee; <list> price) — x\n{serves}\n{evidence}",
                "## Key Resources",
                f"- **Boats** (physical) — x\n  - Serves: all segments\n{evidence}",
                "## Key Activities",
                f"- **Sailing** (production) — x\n  - Serves: all segments\n{evidence}",
                "## Key Partnerships",
                served.replace(" — ", " (<supplier>) — ", 1),
                "## Cost Structure",
                "Orientation: cost-driven — <because> & so",
                f"- **Fuel** (variable) — x\n{evidence}",
                "## Tensions and Observations",
                NASTY_TENSIONS,
            ]
        )
        + "\n"
    )


def test_document_text_is_escaped_everywhere(tmp_path: Path) -> None:
    """Names, descriptions, quotes and free text from the documents never become markup,
    not in element text and not in attributes (the tooltips)."""
    text = nasty_canvas()
    assert parsed(text).organisation == "Generated Ferries & Co"
    project = bare_project(tmp_path)
    write_canvas(project, text)
    render.render_project(project)
    source = (project.project_dir / "canvas" / "canvas.html").read_text("utf-8")
    page = Page(source)
    assert not {e["tag"] for e in page.elements} & {"script", "img", "iframe", "b"}
    assert "<script" not in source and "<img" not in source and "<iframe" not in source
    # The text reads exactly as written, in text and in attributes.
    legend = page.find(cls="legend-entry")
    assert [e["attrs"]["data-segment"] for e in legend] == [NASTY_SEGMENT]
    assert [text_of(e) for e in legend] == [NASTY_SEGMENT]
    names = [text_of(e) for e in page.find(cls="name")]
    assert sum(n.startswith(NASTY_NAME) for n in names) == 2  # the VP and the partnership
    descriptions = [text_of(e) for e in page.find(cls="desc")]
    assert descriptions.count(NASTY_DESCRIPTION) == 4
    assert all(NASTY_QUOTE in e["attrs"]["title"] for e in page.find(cls="note"))
    assert "(<supplier>)" not in source and "&lt;supplier&gt;" in source
    assert text_of(page.find(cls="lead")[0]) == "Cost-driven — <because> & so"
    # Links in a document stay text: nothing on the page points off the page.
    assert all(e["attrs"]["href"].startswith("#") for e in page.find("a"))
    tensions = page.find(cls="tensions")[0]
    assert text_of(tensions) == (
        'Tensions and observations <iframe src="https://evil.example"></iframe> bold and code <x>'
    )
    assert [text_of(e) for e in page.find("strong", within=tensions)] == ["bold"]
    assert [text_of(e) for e in page.find("code", within=tensions)] == ["code <x>"]
    assert "<title>Business Model Canvas — Generated Ferries &amp; Co (Draft)</title>" in source


NETWORK = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def assert_loads_nothing(source: str) -> None:
    page = Page(source)
    # No element that fetches anything, and no attribute pointing off the page.
    assert not {e["tag"] for e in page.elements} & {
        "script",
        "link",
        "img",
        "iframe",
        "object",
        "embed",
        "video",
        "audio",
        "source",
        "base",
    }
    for element in page.elements:
        for name in ("src", "href", "srcset", "action", "poster", "data", "background"):
            value = element["attrs"].get(name)
            if value is not None:
                assert not NETWORK.match(value), (element["tag"], name, value)
                assert value.startswith("#"), (element["tag"], name, value)
        assert "url(" not in (element["attrs"].get("style") or "")
    assert "http://" not in page.style and "https://" not in page.style
    assert "url(" not in page.style and "@import" not in page.style
    assert "@font-face" not in page.style
    assert "system-ui" in page.style  # the system font stack, nothing downloaded
    csp = page.find("meta", http_equiv="Content-Security-Policy")
    assert csp and csp[0]["attrs"]["content"].startswith("default-src 'none'")


def test_pages_load_nothing_from_anywhere(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    written = render.render_project(project)
    assert [p.name for p in written] == ["canvas.html", "segments.html"]
    for path in written:
        assert_loads_nothing(path.read_text("utf-8"))


def test_value_proposition_canvases_below_the_blocks(tmp_path: Path) -> None:
    """Segments whose draft has Value Proposition Canvas sections get one, under the nine
    blocks: the value map (their value propositions, pain relievers, gain creators) beside
    the customer profile (jobs, pains, gains)."""
    project = tidewater(tmp_path)
    render.render_project(project)
    page = read_page(project.project_dir / "canvas" / "canvas.html")
    vpcs = page.find("article", "vpc")
    # Only the commuters' and the freight drafts describe one in the demo.
    assert [v["attrs"]["data-segment"] for v in vpcs] == [
        "Island commuters",
        "Freight hauliers and island businesses",
    ]
    part = {
        c: text_of(page.find(cls=c, within=vpcs[0])[0])
        for c in ("vm-products", "vm-creators", "vm-relievers", "cp-gains", "cp-pains", "cp-jobs")
    }
    assert "Sailings that run" in part["vm-products"]
    assert "Commuter work seat" in part["vm-products"]
    assert "A reserved seat with a table and working Wi-Fi" in part["vm-creators"]
    assert "Online season-ticket renewal" in part["vm-relievers"]
    assert "Get to work on the mainland on time" in part["cp-jobs"]
    assert "Alerts that arrive after they have already driven" in part["cp-pains"]
    assert "A sailing that runs exactly as timetabled" in part["cp-gains"]
    # They come after the sheet, never inside it.
    sheet = page.find(cls="sheet")[0]
    assert not page.find("article", "vpc", within=sheet)
    assert all(v["id"] > page.find(cls="note")[-1]["id"] for v in vpcs)


def test_segments_page_is_a_client_ready_view(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    render.render_project(project)
    page = read_page(project.project_dir / "segments" / "segments.html")
    assert text_of(page.find("h1")[0]) == "Tidewater Ferries Ltd"
    assert text_of(page.find(cls="status")[0]) == "Draft"
    cards = page.find("article", "segment")
    assert [c["attrs"]["data-segment"] for c in cards] == TIDEWATER_SEGMENTS
    freight = text_of(cards[3])
    for name in ("Guaranteed slots", "Project block booking", "Account billing"):
        assert name in freight
    assert "212,000 tonnes" in freight  # size and scale
    assert "Certainty is worth more to me than the rate" in freight  # the draft's evidence
    # The Value Proposition Canvas sits in the cards of segments whose draft has one.
    with_vpc = [c["attrs"]["data-segment"] for c in cards if "Customer jobs" in text_of(c)]
    assert with_vpc == ["Island commuters", "Freight hauliers and island businesses"]
    assert "Drop-trailer" not in freight and "drop-trailer service" in freight  # gain creator
    closing = text_of(page.find(cls="closing")[0])
    assert "Which commuter figure should the engagement plan on" in closing
    assert "Tidewater Marine Engineering Ltd" in closing
    # The same colour for a segment as on the canvas page.
    canvas = read_page(project.project_dir / "canvas" / "canvas.html")
    canvas_classes = {
        e["attrs"]["data-segment"]: {c for c in classes(e) if c.startswith("seg-")}
        for e in canvas.find("article", "vpc")
    }
    for card in cards:
        if card["attrs"]["data-segment"] in canvas_classes:
            seg = {c for c in classes(card) if c.startswith("seg-")}
            assert seg == canvas_classes[card["attrs"]["data-segment"]]


def test_an_agreed_canvas_is_rendered_as_agreed_with_its_date(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    working = FIXTURE_CANVAS.read_text("utf-8")
    agreed = working.replace("**Fuel**", "**Marine fuel**")
    write_canvas(project, agreed, "canvas.agreed.md")
    decisions = project.project_dir / "decisions.md"
    digest = gate.digest(agreed.encode("utf-8"))
    decisions.write_text(
        decisions.read_text("utf-8") + "\n## 2027-02-20 — Stage 3: Business model canvas agreed\n\n"
        "**Agreed**: Business model canvas signed off.\n**Scope**: all\n"
        "**Digest**: sha256:000000000000\n**Agreed by**: P\n"
        "\n## 2027-03-04 — Stage 3: Business model canvas re-agreed\n\n"
        f"**Agreed**: Business model canvas signed off again.\n**Scope**: all\n"
        f"**Digest**: {digest}\n**Agreed by**: P\n",
        "utf-8",
    )
    render.render_project(project)
    page = read_page(project.project_dir / "canvas" / "canvas.html")
    assert text_of(page.find(cls="status")[0]) == "Agreed 2027-03-04"
    assert "canvas.agreed.md" in text_of(page.find(cls="source")[0])
    names = [text_of(e) for e in page.find(cls="name")]
    assert any(n.startswith("Marine fuel") for n in names)
    assert not any(n.startswith("Fuel") for n in names)
    # The consultant sees that the working canvas has moved on since.
    assert "canvas/canvas.md has changed since this was agreed" in text_of(
        page.find(cls="notice")[0]
    )


def test_agreed_segments_page_says_so(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    segments = project.project_dir / "segments"
    (segments / "segments.agreed.md").write_bytes((segments / "segments.md").read_bytes())
    with (project.project_dir / "decisions.md").open("a", encoding="utf-8") as decisions:
        decisions.write(
            "\n## 2027-02-02 — Stage 2: Customer segments agreed\n\n"
            f"**Digest**: {gate.digest((segments / 'segments.md').read_bytes())}\n"
        )
    render.render_project(project)
    page = read_page(segments / "segments.html")
    assert text_of(page.find(cls="status")[0]) == "Agreed 2027-02-02"
    assert not page.find(cls="notice")
    canvas = read_page(project.project_dir / "canvas" / "canvas.html")
    assert text_of(canvas.find(cls="status")[0]) == "Draft"  # the canvas is not agreed yet


def test_an_item_serving_a_segment_not_on_the_canvas_names_it(tmp_path: Path) -> None:
    """A hand-edited canvas can name a segment that is not among its segments: the note
    says which, rather than silently dropping it or colouring it wrongly."""
    text = FIXTURE_CANVAS.read_text("utf-8").replace(
        "  - Serves: Public-service partners\n",
        "  - Serves: Public-service partners; Cruise lines\n",
        1,
    )
    project = tidewater(tmp_path, canvas=text)
    render.render_project(project)
    page = read_page(project.project_dir / "canvas" / "canvas.html")
    (note,) = [n for n in page.find(cls="note") if "Cruise lines" in n["attrs"]["title"]]
    assert "multi" in classes(note)
    assert [text_of(e) for e in page.find(cls="unknown", within=note)] == ["Cruise lines"]
    assert [e["attrs"]["data-segment"] for e in page.find("i", within=note)] == [
        "Public-service partners"
    ]
    assert "Cruise lines" not in [e["attrs"]["data-segment"] for e in page.find(cls="legend-entry")]


def test_agreed_without_a_decisions_entry_uses_the_gate_file_date(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    write_canvas(project, FIXTURE_CANVAS.read_text("utf-8"), "canvas.agreed.md")
    (project.project_dir / "decisions.md").unlink()
    render.render_project(project)
    page = read_page(project.project_dir / "canvas" / "canvas.html")
    label = text_of(page.find(cls="status")[0])
    assert re.fullmatch(r"Agreed \d{4}-\d{2}-\d{2}", label)
    assert not page.find(cls="notice")  # canvas.md and the gate are the same bytes


def test_before_the_canvas_only_the_segments_page_is_written(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    (project.project_dir / "canvas" / "canvas.md").unlink()
    written = render.render_project(project)
    assert written == [project.project_dir / "segments" / "segments.html"]
    assert not (project.project_dir / "canvas" / "canvas.html").exists()


def test_with_nothing_to_render_it_says_which_skill_to_run(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    (project.project_dir / "canvas" / "canvas.md").unlink()
    (project.project_dir / "segments" / "segments.md").unlink()
    with pytest.raises(PrerequisiteError, match=r"run `bmc run bmc-segments`"):
        render.render_project(project)
    assert not (project.project_dir / "segments" / "segments.html").exists()


def test_an_unreadable_canvas_is_refused_and_the_old_page_kept(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    render.render_project(project)
    page = project.project_dir / "canvas" / "canvas.html"
    before = page.read_bytes()
    write_canvas(project, "# Business Model Canvas — Tidewater\n\nnothing else\n")
    with pytest.raises(UserError, match=r"canvas/canvas\.md cannot be rendered: .*bmc validate"):
        render.render_project(project)
    assert page.read_bytes() == before
    assert not list(page.parent.glob(".canvas.html.*"))  # no temp file left behind


def test_free_text_markdown_is_rendered_safely() -> None:
    out = render.markdown(
        "First *line* with **bold** and `<code>`\ncontinues here.\n\n"
        "- one\n- two with [link](https://x.example)\n  wrapped\n\n1. first\n2. second\n\n"
        "### A heading <b>\n<script>alert(1)</script>"
    )
    assert out == (
        "<p>First <em>line</em> with <strong>bold</strong> and <code>&lt;code&gt;</code> "
        "continues here.</p>"
        "<ul><li>one</li><li>two with [link](https://x.example) wrapped</li></ul>"
        "<ol><li>first</li><li>second</li></ol>"
        '<p class="subhead">A heading &lt;b&gt;</p>'
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    )
    assert render.inline("file_name_here and 2*3*4") == "file_name_here and 2*3*4"


def test_layout_estimate_fits_a_crowded_canvas_on_the_sheet() -> None:
    """The estimate behind the printed page: a crowded canvas gets smaller type in its
    crowded blocks only, and rows that add up to the sheet."""
    canvas = parsed(generated_canvas(FIVE, items=60))
    styles = render.segment_styles(s.name for s in canvas.segments)
    blocks = render.canvas_blocks(canvas, styles)
    height = render.sheet_height(canvas, [*FIVE, "All segments"], notice=False)
    layout = render.fit_sheet(blocks, height)
    assert sum(layout.rows) == pytest.approx(height)
    assert 0 in {b.density for b in blocks}  # not everything shrinks
    sparse = render.canvas_blocks(parsed(generated_canvas(FIVE[:2], items=14)), styles)
    render.fit_sheet(sparse, height)
    assert {b.density for b in sparse} == {0}


# --- in a real browser ----------------------------------------------------------------------------

MEASURE = """<script>
addEventListener("load", () => {
  const box = (r) => ({l: r.left, t: r.top, r: r.right, b: r.bottom, w: r.width, h: r.height});
  const within = (r, o, slack) => r.left >= o.left - slack && r.right <= o.right + slack
    && r.top >= o.top - slack && r.bottom <= o.bottom + slack;
  const out = {viewport: [innerWidth, innerHeight], blocks: [], notes: [], legend: []};
  const sheet = document.querySelector(".canvas").getBoundingClientRect();
  out.sheet = box(sheet);
  for (const b of document.querySelectorAll(".block")) {
    const r = b.getBoundingClientRect(), h = b.querySelector("h2");
    out.blocks.push({key: b.dataset.block, title: h.textContent, rect: box(r),
      heading: box(h.getBoundingClientRect()), font: getComputedStyle(h).fontSize,
      overflow: b.scrollWidth > b.clientWidth + 1 || b.scrollHeight > b.clientHeight + 1});
  }
  for (const n of document.querySelectorAll(".note")) {
    const r = n.getBoundingClientRect(), block = n.closest(".block").getBoundingClientRect();
    let textInside = true;
    const walker = document.createTreeWalker(n, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(walker.currentNode);
      for (const t of range.getClientRects()) if (!within(t, r, 1)) textInside = false;
    }
    out.notes.push({block: n.closest(".block").dataset.block,
      name: n.querySelector(".name").textContent, segments: n.dataset.segments,
      kind: n.classList[1], fill: getComputedStyle(n).backgroundColor,
      stripes: [...n.querySelectorAll(".stripes i")].map((i) => ({segment: i.dataset.segment,
        colour: getComputedStyle(i).backgroundColor, w: i.getBoundingClientRect().width,
        h: i.getBoundingClientRect().height})),
      font: parseFloat(getComputedStyle(n).fontSize),
      overflow: n.scrollWidth > n.clientWidth + 1, textInside, inBlock: within(r, block, 0.5),
      rect: box(r)});
  }
  for (const li of document.querySelectorAll(".legend-entry")) {
    const s = getComputedStyle(li.querySelector(".swatch"));
    out.legend.push({segment: li.dataset.segment, fill: s.backgroundColor,
      mark: s.borderTopColor, rect: box(li.getBoundingClientRect())});
  }
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.append(pre);
});
</script>"""


def page_copy(
    page: Path, name: str, *, script: bool = False, printed: bool = False, sheet_only: bool = False
) -> Path:
    """A test-only copy of a rendered page: with the measuring script (and a CSP that lets it
    run), with the print rules applied on screen, or with only the sheet left."""
    source = page.read_text("utf-8")
    if script:
        source = source.replace(
            "default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';"
        ).replace("</body>", MEASURE + "</body>")
    if printed:
        # Print rules on, screen-only rules off (they now ask for print, which a screen isn't).
        source = source.replace("@media print", "@media all").replace(
            "@media screen", "@media print"
        )
    if sheet_only:
        source = source.replace("</style>", ".after-sheet { display: none; }</style>")
    copy = page.with_name(name)
    copy.write_text(source, "utf-8")
    return copy


def measure(page: Path, size: tuple[int, int]) -> dict:
    dom = browser.dump_dom(page, size)
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def assert_looks_right(m: dict, segments: list[str], *, check_fit: bool = True) -> None:
    """What a person sees: nine labelled blocks on screen, a legend colour per segment that
    its notes wear, and no text outside its note or a note outside its block."""
    width = m["viewport"][0]
    assert sorted(b["key"] for b in m["blocks"]) == sorted(BLOCK_TITLES)
    for block in m["blocks"]:
        assert block["title"] == BLOCK_TITLES[block["key"]]
        rect, heading = block["rect"], block["heading"]
        assert rect["w"] > 120 and rect["h"] > 60, block
        assert rect["l"] >= 0 and rect["r"] <= width + 0.5, block
        assert heading["w"] > 0 and heading["r"] <= rect["r"] + 0.5, block
        assert not block["overflow"], block
    legend = {e["segment"]: e for e in m["legend"]}
    assert list(legend) == segments
    assert len({e["mark"] for e in legend.values()}) == len(segments)
    for e in legend.values():
        assert e["rect"]["w"] > 0 and e["rect"]["r"] <= width + 0.5
    for note in m["notes"]:
        assert note["inBlock"], note["name"]
        assert note["textInside"], note["name"]
        assert not note["overflow"], note["name"]
        if check_fit:
            assert note["font"] >= 8, note  # never shrunk past reading on A3
        served = [s for s in note["segments"].split("|") if s]
        if note["kind"] == "single":
            assert note["fill"] == legend[served[0]]["fill"], note["name"]
        if note["kind"] in ("single", "multi"):
            assert [s["segment"] for s in note["stripes"]] == served
            for stripe in note["stripes"]:
                assert stripe["colour"] == legend[stripe["segment"]]["mark"]
                assert stripe["w"] >= 3 and stripe["h"] >= 4  # visible
    served_somewhere = {s for n in m["notes"] for s in n["segments"].split("|") if s}
    assert served_somewhere == set(segments)


@needs_chromium
def test_fixture_canvas_in_chromium(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    page = render.render_project(project)[0]
    m = measure(page_copy(page, "measured.html", script=True), browser.A3_LANDSCAPE)
    assert_looks_right(m, TIDEWATER_SEGMENTS)
    # The legend shows the palette's colours, in order.
    assert [e["fill"] for e in m["legend"]] == [rgb(c.fill) for c in render.PALETTE[:5]]
    # On an A3-sized window the whole sheet is in view.
    assert m["sheet"]["b"] <= browser.A3_LANDSCAPE[1]
    # And in the screenshot a person would look at, every segment's colour is there in
    # quantity (its notes), not just as a legend swatch.
    # (A quarter-scale shot: plenty for solid note colours, and quick to decode.)
    png = browser.screenshot(page, tmp_path / "canvas.png", scale=0.25)
    counts = colour_counts(png)
    for colour in render.PALETTE[:5]:
        r, g, b = (int(colour.fill[i : i + 2], 16) for i in (1, 3, 5))
        assert counts[(r, g, b)] > 1_500, colour


@needs_chromium
def test_crowded_canvas_never_overflows(tmp_path: Path) -> None:
    """5 segments, 60 items, words longer than any note: nothing spills, on an A3 window,
    a laptop window, a phone-width window, and the printed page."""
    text = generated_canvas(FIVE, items=60)
    canvas = parsed(text)
    blocks = [canvas.segments, *canvas.value_propositions.values(), *canvas.channels.values()]
    blocks += [canvas.relationships, canvas.revenue_streams, canvas.key_resources]
    blocks += [canvas.key_activities, canvas.key_partnerships, canvas.costs]
    assert sum(map(len, blocks)) == 60 and len(canvas.segments) == 5
    assert all(word in text for word in LONG_WORDS)
    project = bare_project(tmp_path)
    write_canvas(project, text)
    page = render.render_project(project)[0]
    measured = page_copy(page, "measured.html", script=True)
    for size in (browser.A3_LANDSCAPE, (1280, 800)):
        assert_looks_right(measure(measured, size), FIVE)
    narrow = measure(measured, (420, 900))  # one block under another
    assert_looks_right(narrow, FIVE, check_fit=False)
    printed = measure(page_copy(page, "printed.html", script=True, printed=True), (1527, 1062))
    assert_looks_right(printed, FIVE)
    assert printed["sheet"]["b"] <= 1062  # the sheet fits the A3 page's height
    assert min(n["font"] for n in printed["notes"]) < max(n["font"] for n in printed["notes"])


@needs_chromium
@pytest.mark.parametrize("which", ["fixture", "crowded"])
def test_sheet_prints_on_one_a3_landscape_page(tmp_path: Path, which: str) -> None:
    if which == "fixture":
        project = tidewater(tmp_path)
    else:
        project = bare_project(tmp_path)
        write_canvas(project, generated_canvas(FIVE, items=60))
    page = render.render_project(project)[0]
    pdf = browser.print_pdf(page_copy(page, "sheet.html", sheet_only=True), tmp_path / "sheet.pdf")
    data = pdf.read_bytes()
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", data)
    assert len(re.findall(rb"/Type /Page\b", data)) == 1
    width, height = (float(v) for v in boxes[0])
    assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (420, 297)  # A3 landscape


def colour_counts(png: Path) -> Counter:
    """How many pixels of each RGB colour a PNG screenshot has (8-bit RGB or RGBA, as
    Chromium writes them)."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunk = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        position += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    counts: Counter = Counter()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (
                    line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)
                ) & 0xFF
        counts.update(bytes(line[i : i + 3]) for i in range(0, stride, channels))
        previous = line
    return Counter({tuple(k): v for k, v in counts.items()})
