"""Checking the governed documents: shape, grounding in the research, consistency.

A governed document is one whose path matches an entry of `GOVERNED`; each entry names the
check for it. A check parses the document (`bmc.documents.schemas`), then looks beyond the shape:

- segment drafts: the file name is the slug of the title; every evidence file is inside
  `resources/` (or is the agreed brief) and exists, and every quote occurs in it
  (`bmc.documents.grounding`); the segment is not another draft's segment reworded (who they
  are and channels both alike); a value proposition shared with another segment, and a
  segments document that has not caught up with the draft yet, are warnings;
- the segments document: it lists exactly the drafts' segments, with the same value
  proposition names;
- the canvas: shape and attributes (`bmc.documents.schemas.canvas`), every quote grounded as for
  drafts, and built on the agreed segments (`segments/segments.agreed.md`): exactly those
  segments, every agreed value proposition under its segment, a channel, relationship and
  revenue stream for each, and no other segment named anywhere. A value proposition the
  client has not agreed is a warning.

`make_validator` answers the file tools before a write (nothing is written when there are
problems); `validate_project` answers `bmc validate` and `bmc status`, caching every result
in `.bmc/validation.json` under a hash of the document and of everything the check read, so
an unchanged project is re-validated without parsing anything. See docs/validation.md.

Problems and warnings are one-line strings that start with the section they are about.

Threat: the model (or a research file steering it) inventing evidence. A quote counts only
when it occurs in the file it cites, that file lies inside `resources/` (lexically and after
links are followed) or is the agreed brief (written only by a person's yes), and the quote is
long enough to mean something (`MIN_QUOTE_WORDS`).
Threat: a stale "valid" from the cache. A result is reused only under a hash of the document,
every file its check read, and the checker itself (`checker_digest`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from rapidfuzz import fuzz, process

from bmc.documents import figures, grounding, stages
from bmc.documents.schemas import FILE, MAX_DOCUMENT_BYTES, excerpt, name_key, schema_digest
from bmc.workspace.paths import Project, atomic_write, fold_ascii, slugify

if TYPE_CHECKING:
    from bmc.documents.schemas.canvas import CanvasParts
    from bmc.documents.schemas.segments import (
        DocumentParts,
        DraftParts,
        Entry,
        Evidence,
        ValueProposition,
    )


Validator = Callable[[str, str], tuple[list[str], list[str]]]
Status = Literal["valid", "invalid", "missing"]

# Where the governed documents live is the stage table's (the packaged skills' metadata,
# `bmc.documents.stages`); what each schema means is checked here.
SEGMENTS_STAGE = stages.packaged().with_schema("segments")
CANVAS_STAGE = stages.packaged().with_schema("canvas")
DRAFTS_DIR = SEGMENTS_STAGE.drafts_folder()
DRAFTS = DRAFTS_DIR + "*.md"
SEGMENTS_DOCUMENT = SEGMENTS_STAGE.document
AGREED_SEGMENTS = SEGMENTS_STAGE.gate
CANVAS = CANVAS_STAGE.document
# The agreed brief may be cited as evidence as well as the research: the client agreed every
# word of it, and a fact from the kick-off (a target, a contract date) is often only there.
AGREED_BRIEF = stages.packaged().named("brief").gate
CACHE_FILE = "validation.json"
# The dependency recorded when a check searched the whole research base: the list of files.
RESEARCH = "resources/*"

# Two drafts are one segment when "Who they are" and "Channels" are both at least this
# alike (rapidfuzz token_sort_ratio, 0-100, on text folded to ASCII, lowercased, without
# punctuation or stop words). Measured on drafts of one organisation (docs/validation.md):
# genuinely different segments scored 37-53 on both, light rewordings of one segment
# (synonyms, reordered clauses) 69-98. 65 sits in the gap, nearer the rewordings so that
# distinct segments sharing vocabulary are not refused.
SAME_SEGMENT_THRESHOLD = 65
# A value proposition whose description is at least this alike to another segment's is
# "the same proposition" (as is one with the same name): nearly a copy, not a paraphrase.
SAME_PROPOSITION_THRESHOLD = 90
# Evidence must quote at least this many words: "the" is in every file.
MIN_QUOTE_WORDS = 3


@dataclass
class DocumentReport:
    """The result of validating one governed document."""

    path: str
    status: Status
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Findings:
    """What a check found in one document: problems refuse it, warnings do not."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- reading the project, recording what was read ----------------------------------------


class Reader:
    """The project's files as the checks see them.

    Every file a check reads is recorded in `deps` with the digest of what it saw, so the
    cache can tell later whether the result still holds. Bytes read are kept for the run.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.deps: dict[str, str] = {}
        self._bytes: dict[str, bytes | None] = {}
        # The research as `research()` read it, and what that recorded: a canvas asks for it
        # once per item whose figures its own evidence lacks, `validate_project` once per
        # document.
        self._research: tuple[list[figures.Source], dict[str, str]] | None = None

    def project_file(self, path: str) -> bytes | None:
        """The bytes of a project file (None when missing), recorded as a dependency."""
        data = self.peek(path)
        self.deps[path] = _digest(data)
        return data

    def drafts(self) -> list[str]:
        """The project paths of the segment drafts on disk, the listing recorded."""
        paths, self.deps[DRAFTS] = self._drafts_listing()
        return paths

    def resource(self, inside: str) -> grounding.ResourceText:
        """The text of `resources/<inside>`, recorded; raises OSError, UnreadableResource."""
        root = self.project.resources_dir
        path = root / inside
        self.deps[f"resources/{inside}"] = self._resource_digest(path)
        # Threat: evidence "found" in a file outside the research (another client's folder,
        # /etc) through a symlink inside resources/; the lexical check kept `..` out.
        if not path.resolve().is_relative_to(root.resolve()):
            raise grounding.UnreadableResource("leads out of resources/ through a link")
        if path.is_dir():
            raise grounding.UnreadableResource("is a folder: cite one of the files in it")
        return grounding.load_resource(path)

    def agreed_brief(self) -> grounding.ResourceText:
        """The text of the agreed brief, recorded; raises OSError, UnreadableResource."""
        path = self.project.project_dir / AGREED_BRIEF
        # Threat: a brief linked in from another client's project "grounding" this one.
        if path.is_symlink() and not path.resolve().is_relative_to(
            self.project.project_dir.resolve()
        ):
            raise grounding.UnreadableResource("leads out of the project folder through a link")
        data = self.project_file(AGREED_BRIEF)
        if data is None:
            raise FileNotFoundError(AGREED_BRIEF)
        try:
            return grounding.ResourceText(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise grounding.UnreadableResource("is not UTF-8 text") from None

    def research(self) -> list[figures.Source]:
        """Every research file that reads as text, the listing and each file recorded;
        listed and read once per reader."""
        if self._research is None:
            recorded, self.deps = self.deps, {}
            names = self.resource_names()
            self.deps[RESEARCH] = self._research_listing(names)
            sources = []
            for name in names:
                with contextlib.suppress(OSError, grounding.UnreadableResource):
                    sources.append(figures.Source(f"resources/{name}", self.resource(name)))
            self._research = (sources, self.deps)
            self.deps = recorded
        sources, deps = self._research
        self.deps.update(deps)
        return list(sources)

    def foundation(self, stage: stages.Stage) -> list[figures.Source]:
        """What every document of `stage` may draw figures from besides the research: the
        organisation's profile and the agreed documents the stage builds on."""
        org = posixpath.relpath(
            (self.project.org_dir / "org.md").as_posix(), self.project.project_dir.as_posix()
        )
        paths = [org] + [upstream.gate for upstream in stages.packaged().upstream_of(stage)]
        sources = []
        for path in paths:
            data = self.project_file(path)
            if data is not None:
                text = data.decode("utf-8-sig", errors="replace")
                sources.append(figures.Source(PurePosixPath(path).name, text))
        return sources

    def resource_names(self) -> list[str]:
        root = self.project.resources_dir
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def current(self, dep: str) -> str:
        """The digest a dependency has now, to compare with the one recorded."""
        if dep == DRAFTS:
            return self._drafts_listing()[1]
        if dep == RESEARCH:
            return self._research_listing(self.resource_names())
        if dep.startswith("resources/"):
            inside = dep.removeprefix("resources/")
            return self._resource_digest(self.project.resources_dir / inside)
        return _digest(self.peek(dep))

    def peek(self, path: str) -> bytes | None:
        """The bytes of a project file (None when missing), not recorded."""
        if path not in self._bytes:
            try:
                self._bytes[path] = (self.project.project_dir / path).read_bytes()
            except OSError:
                self._bytes[path] = None
        return self._bytes[path]

    def _drafts_listing(self) -> tuple[list[str], str]:
        folder = self.project.project_dir / DRAFTS_DIR
        names = sorted(p.name for p in folder.glob("*.md"))
        return [f"{DRAFTS_DIR}{name}" for name in names], _digest("\n".join(names).encode())

    @staticmethod
    def _research_listing(names: list[str]) -> str:
        return _digest("\n".join(names).encode())

    @staticmethod
    def _resource_digest(path: Path) -> str:
        try:
            return grounding.resource_digest(path)
        except OSError:
            return "missing"


def _digest(data: bytes | None) -> str:
    return "missing" if data is None else hashlib.sha256(data).hexdigest()


# Parsing is pure, and in one run every draft is read as "another draft" by all the others:
# remember the parts by content (documents of a sensible size only).
def _remembered(read: Callable[[str | bytes], Any], size: int) -> Callable[[str | bytes], Any]:
    remembered = lru_cache(maxsize=size)(read)

    def parts(data: str | bytes) -> Any:
        return read(data) if len(data) > MAX_DOCUMENT_BYTES else remembered(data)

    return parts


# The document models are imported on the first check that needs them, not here: building
# the pydantic models costs more than everything else `bmc status` does when the cache
# already holds every answer (SPEC section 8: model-free commands answer at once).


def _read_draft(data: str | bytes) -> DraftParts:
    from bmc.documents.schemas import segments

    return segments.read_draft(data)


def _read_segments_document(data: str | bytes) -> DocumentParts:
    from bmc.documents.schemas import segments

    return segments.read_segments_document(data)


def _read_canvas(data: str | bytes) -> CanvasParts:
    from bmc.documents.schemas import canvas

    return canvas.read_canvas(data)


_draft_parts = _remembered(_read_draft, 512)
_document_parts = _remembered(_read_segments_document, 16)
_canvas_parts = _remembered(_read_canvas, 8)


# --- segment drafts ------------------------------------------------------------------------


def check_draft(reader: Reader, path: str, data: str | bytes) -> Findings:
    """Everything wrong with a segment draft about to be at `path`, and what to warn of."""
    parts = _draft_parts(data)
    problems = [str(problem) for problem in parts.problems]
    if any(problem.section == FILE for problem in parts.problems):
        return Findings(problems)
    if parts.title:
        problems += _file_name_problems(path, parts.title)
    problems += _evidence_problems(reader, parts)
    problems += _draft_figures(reader, parts, data)
    others = _other_drafts(reader, path)
    problems += _same_segment_problems(parts, others)
    if problems:
        return Findings(problems)
    warnings = _shared_proposition_warnings(parts, others) + _lag_warnings(reader, parts)
    return Findings([], warnings)


# Letters NFKD does not decompose, spelled out as they usually are in ASCII.
def _file_name_problems(path: str, title: str) -> list[str]:
    expected = slugify(title)
    name = PurePosixPath(path).name
    if not expected:
        return [
            f'Title: "{excerpt(title)}" has no letter or digit to make a file name from; '
            "write the segment's name in letters"
        ]
    if name == f"{expected}.md":
        return []
    return [
        f'Title: the file name must be the slug of the title "{excerpt(title)}": write '
        f"this draft to {DRAFTS_DIR}{expected}.md, not {name}"
    ]


def _evidence_problems(reader: Reader, parts: DraftParts) -> list[str]:
    problems = []
    for item in parts.evidence:
        problem = evidence_problem(reader, item)
        if problem:
            problems.append(f"Evidence: {problem}")
    return problems


def evidence_problem(reader: Reader, item: Evidence) -> str | None:
    """What is wrong with one evidence citation (file and quote), without a section name;
    None when the quote is in the file. Shared by every governed document that cites."""
    if len(re.findall(r"\w+", item.quote)) < MIN_QUOTE_WORDS:
        # A word or two occurs almost anywhere: it would "ground" any claim at all.
        return (
            f'quote "{excerpt(item.quote)}" is too short to show anything: quote a whole '
            f"phrase (at least {MIN_QUOTE_WORDS} words) from `{item.file}`"
        )
    if _is_agreed_brief(item.file):
        try:
            text = reader.agreed_brief()
        except grounding.UnreadableResource as err:
            return f"`{item.file}` {err}"
        except OSError:
            return (
                f"`{item.file}` does not exist: the brief is not agreed yet, so cite the "
                "research in `resources/`"
            )
    else:
        try:
            inside = _inside_resources(item.file)
            text = reader.resource(inside)
        except grounding.UnreadableResource as err:
            return f"`{item.file}` {err}"
        except OSError:
            return f"`{item.file}` does not exist{_suggest(reader, inside)}"
    found = grounding.find_quote(item.quote, text)
    if isinstance(found, grounding.ClosestPassage):
        return _quote_problem(item.quote, item.file, found)
    return None


def _is_agreed_brief(file: str) -> bool:
    """True when an evidence line cites the agreed brief (`brief.agreed.md`, or `./` before it)."""
    return "\x00" not in file and "\\" not in file and posixpath.normpath(file) == AGREED_BRIEF


def _inside_resources(file: str) -> str:
    """The path of an evidence file inside resources/, checked lexically.

    Raises `UnreadableResource` saying why a path is refused; `Reader.resource` then
    refuses a symlink inside resources/ that leads out.
    """
    # Threat: a NUL or a backslash naming a different file to the OS than to this check.
    if "\x00" in file or "\\" in file:
        raise grounding.UnreadableResource(
            "is not a plain path; write it as `resources/<file>` with forward slashes"
        )
    if not file.startswith("resources/"):
        raise grounding.UnreadableResource(
            f"is not in resources/: cite research files as `resources/<file>` (or the agreed "
            f"brief as `{AGREED_BRIEF}`)"
        )
    normal = posixpath.normpath(file)
    if not normal.startswith("resources/"):
        raise grounding.UnreadableResource("leads out of resources/: cite a file inside it")
    return normal.removeprefix("resources/")


def _suggest(reader: Reader, inside: str) -> str:
    """A near miss among the resources' names ("did you mean"), else where to look."""
    names = {PurePosixPath(name).stem: name for name in reader.resource_names()}
    best = process.extractOne(
        PurePosixPath(inside).stem, list(names), scorer=fuzz.ratio, score_cutoff=70
    )
    if best:
        return f"; did you mean `resources/{names[best[0]]}`?"
    return "; cite a file listed in resources/index.md"


def _quote_problem(quote: str, file: str, found: grounding.ClosestPassage) -> str:
    if not found.passage:
        return f'quote "{excerpt(quote, 80)}" is not in {file}, which has no text'
    hint = " (quote one passage as it stands: do not shorten with ...)" if "..." in quote else ""
    return (
        f'quote "{excerpt(quote, 80)}" is not in {file}{hint}; closest passage '
        f'({found.score:.0f}% alike): "{found.passage}"'
    )


# --- figures stated as facts ------------------------------------------------------------------


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8-sig", errors="replace")


def _cited(reader: Reader, evidence: list[Evidence]) -> list[figures.Source]:
    """The readable files among the evidence's, each once."""
    sources: dict[str, figures.Source] = {}
    for item in evidence:
        with contextlib.suppress(OSError, grounding.UnreadableResource):
            inside = _inside_resources(item.file)
            name = f"resources/{inside}"
            if name not in sources:
                sources[name] = figures.Source(name, reader.resource(inside))
    return list(sources.values())


def _figure_problems(
    where: str,
    prose: str,
    sources: list[figures.Source],
    elsewhere: Callable[[], list[figures.Source]] | None = None,
    cites: str = "",
) -> list[str]:
    """The figures `prose` states as facts that no source holds, a problem each. `where`
    starts each line (the section); `elsewhere` gives the research a passage that cites
    could have cited, to name the report that holds a figure it did not cite (the fix is
    then one quote); `cites` names who cites ("this draft")."""
    missing, empty_markers = figures.missing_figures(prose, sources, elsewhere)
    names = ", ".join(source.name for source in sources) or "no readable source"
    problems = []
    for miss in missing:
        message = (
            f'{where}: the figure "{miss.figure.written}" is not in the sources {cites} '
            f"draws on ({names})"
        )
        if miss.found_in:
            # The figure is real and only its evidence is missing: naming the report is
            # the whole fix. The estimate marker stays open for a figure the writer worked
            # out that happens to equal one of another report.
            problems.append(
                f"{message}; it is in {', '.join(miss.found_in)}: add a quote from there as "
                'evidence (if it was worked out instead, follow it with "(estimate: <how>)")'
            )
            continue
        if miss.nearest:
            nearest = ", ".join(f'"{written}" ({name})' for written, name in miss.nearest)
            message += f"; the nearest figures there: {nearest}"
        message += (
            "; write the figure as the source has it, or if it was worked out, follow it with "
            '"(estimate: <how>)"'
        )
        if empty_markers:
            message += ' (a bare "(estimate)" does not count: say how)'
        problems.append(message)
    return problems


def _draft_figures(reader: Reader, parts: DraftParts, data: str | bytes) -> list[str]:
    """The figures of a draft's prose against the reports it cites and the documents the
    segments build on (the evidence quotes themselves are checked as quotes)."""
    from bmc.documents.schemas.segments import EVIDENCE

    sources = _cited(reader, parts.evidence) + reader.foundation(SEGMENTS_STAGE)
    problems = []
    for passage in figures.passages(_text(data)):
        if passage.section and EVIDENCE.accepts(passage.section):
            continue
        where = passage.section or "Title"
        problems += _figure_problems(where, passage.text, sources, reader.research, "this draft")
    return problems


def _other_drafts(reader: Reader, path: str) -> list[tuple[str, DraftParts]]:
    """The other drafts on disk (readable far enough to have a title), by path."""
    others = []
    for other in reader.drafts():
        if other.casefold() == path.casefold():
            continue
        data = reader.project_file(other)
        parts = _draft_parts(data) if data is not None else None
        if parts is not None and parts.title:
            others.append((other, parts))
    return others


# Words too common to tell two segments apart.
# fmt: off
_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in",
    "into", "is", "it", "its", "of", "on", "or", "our", "that", "the", "their", "them",
    "they", "this", "those", "to", "via", "we", "which", "who", "with",
})
# fmt: on


@lru_cache(maxsize=4096)
def _lexical(text: str) -> str:
    """Text reduced to its content words, for lexical similarity."""
    words = re.findall(r"[a-z0-9]+", fold_ascii(text).lower())
    return " ".join(word for word in words if word not in _STOP_WORDS)


def _alike(a: str | None, b: str | None) -> float:
    if not a or not b:
        return 0.0
    return fuzz.token_sort_ratio(_lexical(a), _lexical(b))


def _same_segment_problems(parts: DraftParts, others: list[tuple[str, DraftParts]]) -> list[str]:
    problems = []
    for path, other in others:
        who = _alike(parts.who, other.who)
        if who < SAME_SEGMENT_THRESHOLD:
            continue
        channels = _alike(parts.channels, other.channels)
        if channels < SAME_SEGMENT_THRESHOLD:
            continue
        problems.append(
            f'Who they are: this is the segment "{other.title}" ({path}) again: who they are '
            f"({who:.0f}% alike) and channels ({channels:.0f}% alike) both match it (the limit "
            f"is {SAME_SEGMENT_THRESHOLD}%); merge the two drafts, or state the real "
            "difference in needs or channels that the research shows; if this is a renamed "
            f"segment, {path} must go first: move it to the new name with `rename` where that "
            "tool is offered, or else ask the consultant to delete it"
        )
    return problems


def _shared_proposition_warnings(
    parts: DraftParts, others: list[tuple[str, DraftParts]]
) -> list[str]:
    warnings = []
    for vp in parts.value_propositions:
        for path, other in others:
            if any(_same_proposition(vp, theirs) for theirs in other.value_propositions):
                warnings.append(
                    f'Value propositions: "{vp.name}" is also a value proposition of '
                    f'"{other.title}" ({path}); say what this segment in particular gets'
                )
    return warnings


def _same_proposition(a: ValueProposition, b: ValueProposition) -> bool:
    if name_key(a.name) == name_key(b.name):
        return True
    score = fuzz.token_sort_ratio(
        _lexical(a.description), _lexical(b.description), score_cutoff=SAME_PROPOSITION_THRESHOLD
    )
    return score >= SAME_PROPOSITION_THRESHOLD


def _lag_warnings(reader: Reader, parts: DraftParts) -> list[str]:
    """What segments.md, if written already, says differently about this draft's segment.

    A warning, not a problem: drafts change first and the document catches up; the
    mismatch is a problem of segments.md itself (see `check_segments_document`).
    """
    data = reader.project_file(SEGMENTS_DOCUMENT)
    if data is None or not parts.title:
        return []
    entries = _document_parts(data).entries
    if not entries:
        return []
    entry = next((e for e in entries if name_key(e.name) == name_key(parts.title)), None)
    if entry is None:
        return [
            f'Title: {SEGMENTS_DOCUMENT} does not list "{parts.title}" yet; update it '
            "before asking for agreement"
        ]
    difference = _proposition_difference(parts.value_propositions, entry.value_propositions)
    if difference:
        return [
            f"Value propositions: {SEGMENTS_DOCUMENT} has not caught up with this draft "
            f"({difference}); update it before asking for agreement"
        ]
    return []


def _proposition_difference(drafted: list[ValueProposition], listed: list[ValueProposition]) -> str:
    """How the listed value proposition names differ from the draft's ("" when they match)."""
    drafted_keys = {name_key(vp.name) for vp in drafted}
    listed_keys = {name_key(vp.name) for vp in listed}
    missing = [f'"{vp.name}"' for vp in drafted if name_key(vp.name) not in listed_keys]
    extra = [f'"{vp.name}"' for vp in listed if name_key(vp.name) not in drafted_keys]
    parts = []
    if missing:
        parts.append(f"the draft has {', '.join(missing)}, which it does not list")
    if extra:
        parts.append(f"it lists {', '.join(extra)}, which the draft does not have")
    return "; ".join(parts)


# --- the segments document ------------------------------------------------------------------


def check_segments_document(reader: Reader, path: str, data: str | bytes) -> Findings:
    """Everything wrong with the segments document: its shape, and whether it lists
    exactly the drafts' segments with their value proposition names."""
    parts = _document_parts(data)
    problems = [str(problem) for problem in parts.problems]
    if any(problem.section == FILE for problem in parts.problems):
        return Findings(problems)
    if parts.entries:
        problems += _cross_check(parts.entries, _other_drafts(reader, path))
    problems += _segments_figure_problems(reader, data)
    return Findings(problems)


def _segments_figure_problems(reader: Reader, data: str | bytes) -> list[str]:
    """The segments document cites nothing item by item: its figures may come from any of
    the research, the documents the segments build on, and the drafts it consolidates."""
    sources = reader.research() + reader.foundation(SEGMENTS_STAGE)
    for draft in reader.drafts():
        text = reader.project_file(draft)
        if text is not None:
            sources.append(figures.Source(draft, _text(text)))
    problems = []
    for passage in figures.passages(_text(data)):
        where = passage.section or "Title"
        if passage.subsection:
            where += f': "{_entry_name(passage.subsection)}"'
        problems += _figure_problems(where, passage.text, sources, cites="it")
    return problems


def _entry_name(heading: str) -> str:
    """ "2. Island commuters" -> "Island commuters"."""
    return re.sub(r"^\d{1,3}[.)]\s*", "", heading)


def _cross_check(entries: list[Entry], drafts: list[tuple[str, DraftParts]]) -> list[str]:
    listed = {name_key(entry.name): entry for entry in entries}
    drafted = {name_key(str(draft.title)): (path, draft) for path, draft in drafts}
    problems = []
    for key, (path, draft) in drafted.items():
        entry = listed.get(key)
        if entry is None:
            problems.append(
                f'Segments: "{draft.title}" has a draft ({path}) but is not listed; '
                f"add it as `### N. {draft.title}`, or if the segment was dropped, its draft "
                "must go: delete it with `remove` where that tool is offered, or else ask the "
                "consultant to delete it"
            )
            continue
        difference = _proposition_difference(draft.value_propositions, entry.value_propositions)
        if difference:
            problems.append(
                f'Segments: the value propositions of "{entry.name}" differ from '
                f"its draft ({path}): {difference}; use the draft's names"
            )
    for key, entry in listed.items():
        if key not in drafted:
            problems.append(
                f'Segments: "{entry.name}" (line {entry.line}) has no draft; write '
                f"{DRAFTS_DIR}{slugify(entry.name)}.md first, or remove the "
                "entry"
            )
    return problems


# --- the canvas -----------------------------------------------------------------------------


def check_canvas(reader: Reader, path: str, data: str | bytes) -> Findings:
    """Everything wrong with the canvas: its shape and attributes, its evidence, and whether
    it is built on exactly the agreed segments and value propositions."""
    from bmc.documents.schemas import canvas

    parts = _canvas_parts(data)
    problems = [str(problem) for problem in parts.problems]
    if any(problem.section == FILE for problem in parts.problems):
        return Findings(problems)
    for item in parts.all_items():
        for evidence in item.evidence:
            problem = evidence_problem(reader, evidence)
            if problem:
                problems.append(f"{item.block.name}: {item.label()}: {problem}")
    problems += _canvas_figures(reader, parts, _text(data))
    agreed = reader.project_file(AGREED_SEGMENTS)
    if agreed is None:
        problems.append(
            f"{canvas.SEGMENTS.name}: {AGREED_SEGMENTS} does not exist: the segments must be "
            f"agreed (`bmc run {SEGMENTS_STAGE.skill}`, or `bmc agree {SEGMENTS_STAGE.key}`) "
            "before the canvas can be checked against them"
        )
        return Findings(problems)
    entries = _document_parts(agreed).entries
    if not entries:
        problems.append(
            f"{canvas.SEGMENTS.name}: no segment can be read in {AGREED_SEGMENTS}; ask the "
            f"consultant to agree the segments again (`bmc agree {SEGMENTS_STAGE.key}`)"
        )
        return Findings(problems)
    more, warnings = _canvas_cross_check(parts, entries)
    return Findings(problems + more, warnings)


# A sub-bullet that is not the item's prose: its evidence (checked as quotes) and the
# segments it serves (names).
_CANVAS_REFERENCE = re.compile(r"^\s*[-*+]\s+(?:\*\*|__)?(?:evidence|serves)\b", re.IGNORECASE)


def _canvas_figures(reader: Reader, parts: CanvasParts, text: str) -> list[str]:
    """Each item's figures against the reports it cites (and the documents the canvas
    builds on); the text outside items (the cost orientation, the tensions) against all
    the research, as it cites nothing."""
    lines = text.splitlines()
    items = sorted(parts.all_items(), key=lambda item: item.line)
    starts = {item.line for item in items}
    foundation = reader.foundation(CANVAS_STAGE)
    problems = []
    in_items: set[int] = set()
    for item in items:
        end = item.line
        while end < len(lines) and end + 1 not in starts and _continues_item(lines[end]):
            end += 1
        span = range(item.line, end + 1)
        in_items.update(span)
        prose = "\n".join(lines[n - 1] for n in span if not _CANVAS_REFERENCE.match(lines[n - 1]))
        sources = _cited(reader, item.evidence) + foundation
        where = f"{item.block.name}: {item.label()}"
        problems += _figure_problems(where, prose, sources, reader.research, "the item")
    research: list[figures.Source] | None = None
    for passage in figures.passages(text):
        prose = "\n".join(
            lines[n - 1]
            for n in range(passage.first, passage.last + 1)
            if n not in in_items and not _CANVAS_REFERENCE.match(lines[n - 1])
        )
        if not prose.strip():
            continue
        if research is None:
            research = reader.research() + foundation
        problems += _figure_problems(passage.section or "Title", prose, research, cites="it")
    return problems


def _continues_item(line: str) -> bool:
    """Whether a line after an item's first still belongs to it (a sub-bullet or a
    wrapped line), rather than starting a heading, a new top-level line, or a gap."""
    return bool(line.strip()) and (
        line[:1].isspace() or not line.lstrip().startswith(("#", "-", "*", "+"))
    )


def _canvas_cross_check(parts: CanvasParts, entries: list[Entry]) -> tuple[list[str], list[str]]:
    """The canvas against the agreed segments: (problems, warnings)."""
    from bmc.documents.schemas import canvas

    agreed = {name_key(entry.name): entry for entry in entries}
    names = ", ".join(f'"{entry.name}"' for entry in entries)
    unknown = (
        f"which is not an agreed segment (the agreed ones are {names}): use the agreed "
        f"names, or change the segments in {SEGMENTS_STAGE.skill} and have them agreed again"
    )
    problems: list[str] = []
    warnings: list[str] = []

    # Customer Segments: exactly the agreed ones.
    listed = {name_key(item.name): item for item in parts.items.get(canvas.SEGMENTS.spec.key, [])}
    if canvas.SEGMENTS.spec.key in parts.present:
        problems += [
            f'{canvas.SEGMENTS.name}: the agreed segment "{entry.name}" is missing; add '
            f"`- **{entry.name}** — <one line>` with its evidence"
            for key, entry in agreed.items()
            if key not in listed
        ]
        problems += [
            f"{canvas.SEGMENTS.name}: {item.label()} is listed, {unknown}"
            for key, item in listed.items()
            if key not in agreed
        ]

    # Value propositions and channels: a subsection per agreed segment, none for others.
    for block in (canvas.VALUE_PROPOSITIONS, canvas.CHANNELS):
        if block.spec.key not in parts.present:
            continue
        subsections = {name_key(sub.name): sub for sub in parts.subsections.get(block.spec.key, [])}
        for sub in subsections.values():
            if name_key(sub.name) not in agreed:
                problems.append(
                    f"{block.name}: `### {sub.name}` (line {sub.line}) names a segment {unknown}"
                )
        for key, entry in agreed.items():
            if key not in subsections:
                what = (
                    "its agreed value propositions "
                    + ", ".join(f'"{vp.name}"' for vp in entry.value_propositions)
                    if block is canvas.VALUE_PROPOSITIONS
                    else "at least one channel and its phase"
                )
                problems.append(
                    f'{block.name}: the agreed segment "{entry.name}" has no '
                    f"`### {entry.name}` subsection; add it with {what}"
                )

    # Every agreed value proposition under its segment; others are the client's to agree.
    items = parts.items.get(canvas.VALUE_PROPOSITIONS.spec.key, [])
    for key, entry in agreed.items():
        under = [item for item in items if item.segment and name_key(item.segment) == key]
        if not under:
            continue  # the missing subsection is reported above
        present = {name_key(item.name) for item in under}
        agreed_vps = {name_key(vp.name) for vp in entry.value_propositions}
        problems += [
            f'{canvas.VALUE_PROPOSITIONS.name}: the agreed value proposition "{vp.name}" of '
            f'"{entry.name}" is missing; add `- **{vp.name}** — <description>` under '
            f"`### {entry.name}`"
            for vp in entry.value_propositions
            if name_key(vp.name) not in present
        ]
        warnings += [
            f"{canvas.VALUE_PROPOSITIONS.name}: {item.label()} is not among the value propositions "
            f'agreed for "{entry.name}"; the client has not agreed it yet, so raise it with '
            "the consultant"
            for item in under
            if name_key(item.name) not in agreed_vps
        ]

    # Every segment served by at least one relationship and one revenue stream.
    for block, what in (
        (canvas.RELATIONSHIPS, "relationship"),
        (canvas.REVENUE_STREAMS, "revenue stream"),
    ):
        if block.spec.key not in parts.present:
            continue
        served = {
            name_key(name) for item in parts.items.get(block.spec.key, []) for name in item.serves
        }
        for key, entry in agreed.items():
            if key not in served and canvas.ALL_SEGMENTS not in served:
                problems.append(
                    f'{block.name}: no {what} serves "{entry.name}"; add one with '
                    f"`  - Serves: {entry.name}` (or extend an item's `Serves:` line)"
                )

    # Every segment named on a `Serves:` line is an agreed one.
    for block in (
        canvas.RELATIONSHIPS,
        canvas.REVENUE_STREAMS,
        canvas.KEY_RESOURCES,
        canvas.KEY_ACTIVITIES,
        canvas.KEY_PARTNERSHIPS,
        canvas.COSTS,
    ):
        problems += [
            f'{block.name}: {item.label()} serves "{name}", {unknown}'
            for item in parts.items.get(block.spec.key, [])
            for name in item.serves
            if name != canvas.ALL_SEGMENTS and name_key(name) not in agreed
        ]
    return problems, warnings


# --- which paths are governed, by what ------------------------------------------------------

Check = Callable[[Reader, str, "str | bytes"], Findings]


@dataclass(frozen=True)
class Governed:
    """A governed path pattern (`*` matches within one path segment) and its check."""

    pattern: str
    check: Check
    # A fixed path is listed by `validate_project` even before it is written (as missing),
    # once this file exists: the canvas is owed only when the segments are agreed, and
    # listing it earlier would report a missing document nobody can write yet.
    listed_after: str | None = None

    def matches(self, path: str) -> bool:
        # Case-folded and without trailing dots or spaces, so a case-insensitive file
        # system cannot be used to slip a draft past its check ("Segments/Drafts/X.md.").
        parts = [part.casefold().rstrip(". ") for part in path.split("/")]
        pattern = self.pattern.split("/")
        return len(parts) == len(pattern) and all(
            fnmatchcase(part, want) for part, want in zip(parts, pattern, strict=True)
        )


GOVERNED: tuple[Governed, ...] = (
    Governed(DRAFTS, check_draft),
    Governed(SEGMENTS_DOCUMENT, check_segments_document),
    Governed(CANVAS, check_canvas, listed_after=AGREED_SEGMENTS),
)


def _project_path(path: str) -> str | None:
    """`path` relative to the project directory, lexically normalised; None if it leaves."""
    normal = posixpath.normpath(path.strip())
    if normal.startswith(("/", "../")) or normal in ("..", "."):
        return None
    return normal


def governing(path: str) -> Governed | None:
    """The entry of `GOVERNED` for a project-relative path, if any."""
    normal = _project_path(path)
    if normal is None:
        return None
    return next((g for g in GOVERNED if g.matches(normal)), None)


# --- the two entry points ------------------------------------------------------------------


def make_validator(project: Project) -> Validator:
    """The check the file tools run before writing: (path, full new content) ->
    (problems, warnings); an ungoverned path gets ([], [])."""

    def validate(path: str, content: str) -> tuple[list[str], list[str]]:
        governed = governing(path)
        if governed is None:
            return [], []
        outcome = governed.check(Reader(project), str(_project_path(path)), content)
        return outcome.problems, outcome.warnings

    return validate


def validate_project(project: Project, files: list[str] | None = None) -> list[DocumentReport]:
    """Validate every governed document of the project (or only `files`), using the cache."""
    if files is None:
        paths = _governed_documents(project)
    else:
        paths = [_project_path(file) or file for file in files]
    cache = _Cache.load(project)
    reader = Reader(project)
    reports = [_validate(reader, cache, path) for path in paths]
    if files is None:
        cache.keep_only(paths)
    cache.save()
    return reports


def _governed_documents(project: Project) -> list[str]:
    """Every governed document: the fixed paths whether or not written (once their stage is
    open, see `Governed.listed_after`), the patterns' files as they exist."""
    paths = []
    root = project.project_dir
    for governed in GOVERNED:
        if "*" in governed.pattern:
            found = root.glob(governed.pattern)
            paths += sorted(p.relative_to(root).as_posix() for p in found)
        elif (
            governed.listed_after is None
            or (root / governed.listed_after).is_file()
            or (root / governed.pattern).is_file()
        ):
            paths.append(governed.pattern)
    return paths


def _validate(reader: Reader, cache: _Cache, path: str) -> DocumentReport:
    governed = governing(path)
    data = reader.peek(path)
    if data is None:
        return DocumentReport(path, "missing")
    if governed is None:
        return DocumentReport(path, "valid", [], ["no schema governs this file: nothing checked"])
    content = _digest(data)
    outcome = cache.lookup(path, content, reader)
    if outcome is None:
        reader.deps = {}
        outcome = run_check(governed, reader, path, data)
        cache.store(path, content, reader.deps, outcome)
    status: Status = "invalid" if outcome.problems else "valid"
    return DocumentReport(path, status, outcome.problems, outcome.warnings)


def run_check(governed: Governed, reader: Reader, path: str, data: bytes) -> Findings:
    """Run one check (a seam for tests that count how often checks really run)."""
    return governed.check(reader, path, data)


# --- the cache ------------------------------------------------------------------------------


@cache
def checker_digest() -> str:
    """Changes whenever the rules change: schemas, templates, this module, grounding."""
    digest = hashlib.sha256(schema_digest().encode())
    # workspace/paths.py holds the slug rule the file-name check uses.
    from bmc.workspace import paths

    for module in (__file__, grounding.__file__, figures.__file__, paths.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()[:16]


class _Cache:
    """`.bmc/validation.json`: per document, the content digest, the digests of what the
    check read, and the result. An entry holds only while all of them are unchanged."""

    def __init__(self, path: Path, documents: dict[str, dict]) -> None:
        self.path = path
        self.documents = documents
        self.changed = False

    @classmethod
    def load(cls, project: Project) -> _Cache:
        path = project.state_dir / CACHE_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            documents = saved["documents"] if saved.get("checker") == checker_digest() else {}
            if not isinstance(documents, dict):
                documents = {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            documents = {}  # missing or damaged: it is only a cache, start again
        return cls(path, documents)

    def lookup(self, path: str, content: str, reader: Reader) -> Findings | None:
        entry = self.documents.get(path)
        try:
            if entry["content"] != content:
                return None
            if any(reader.current(dep) != digest for dep, digest in entry["deps"].items()):
                return None
            return Findings(list(entry["problems"]), list(entry["warnings"]))
        except (TypeError, KeyError, AttributeError):
            return None

    def store(self, path: str, content: str, deps: dict[str, str], outcome: Findings) -> None:
        self.documents[path] = {"content": content, "deps": dict(deps), **asdict(outcome)}
        self.changed = True

    def keep_only(self, paths: list[str]) -> None:
        for path in set(self.documents) - set(paths):
            del self.documents[path]
            self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        data = {"checker": checker_digest(), "documents": self.documents}
        # A read-only checkout still validates; it only re-checks everything next time.
        with contextlib.suppress(OSError):
            atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")
