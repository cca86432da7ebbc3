"""Client material uploaded from the page: into the research, as `bmc import` would.

Markdown and text files go straight into the client's `resources/` (they need no
conversion, and work with the default install); PDF, Word, PowerPoint, Excel and HTML files
go through `bmc import`, all or nothing. One file per upload, at most `MAX_UPLOAD` bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from starlette.datastructures import UploadFile
from starlette.requests import Request

from bmc.errors import UserError
from bmc.workspace.confine import portability_problem
from bmc.workspace.paths import Project, atomic_write

MAX_UPLOAD = 50 * 1024 * 1024
TEXT = {".md", ".txt"}
CONVERTED = {".pdf", ".docx", ".pptx", ".xlsx", ".html", ".htm"}


async def receive(project: Project, request: Request) -> str:
    """Take the uploaded file into the research; returns one line saying what happened."""
    # Threat: a huge upload filling the disk or memory: the declared size is checked before
    # reading, and the parts are capped by the parser too.
    declared = int(request.headers.get("content-length") or 0)
    if declared > MAX_UPLOAD + 64 * 1024:
        raise UserError("the file is larger than 50 MB: split it, or import it with `bmc import`.")
    form = await request.form(max_files=1, max_fields=4, max_part_size=MAX_UPLOAD)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise UserError("choose a file to upload first.")
        data = await upload.read(MAX_UPLOAD + 1)
        name = Path(upload.filename).name  # Threat: a name with folders in it
    finally:
        await form.close()
    if len(data) > MAX_UPLOAD:
        raise UserError("the file is larger than 50 MB: split it, or import it with `bmc import`.")
    problem = portability_problem(name)
    if problem is not None:
        raise UserError(f"the name {name!r} {problem}: rename the file and upload it again.")
    suffix = Path(name).suffix.lower()
    if suffix in TEXT:
        return _research_text(project, name, data)
    if suffix in CONVERTED:
        return _import(project, name, data)
    raise UserError(
        f"{name} is not a file bmc can read: upload .md or .txt research, or a .pdf, .docx, "
        ".pptx, .xlsx or .html document to import."
    )


def _research_text(project: Project, name: str, data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(
            f"{name} is not UTF-8 text: save it as UTF-8 and upload it again."
        ) from None
    target = project.resources_dir / name
    if target.exists():
        raise UserError(f"resources/{name} already exists: rename the file and upload it again.")
    atomic_write(target, data)
    return f"{name} added to the research (resources/{name})."


def _import(project: Project, name: str, data: bytes) -> str:
    try:
        import markitdown  # noqa: F401 - the optional extra: say how to add it, in one sentence

        from bmc.documents.importer import import_files
    except ImportError:
        raise UserError(
            "importing PDF, Word, PowerPoint, Excel and web pages needs the optional converters: "
            "run pip install 'bmc[import]', then restart bmc serve."
        ) from None
    with tempfile.TemporaryDirectory(prefix="bmc-upload-") as folder:
        source = Path(folder) / name
        source.write_bytes(data)
        results = import_files(project, [source])
    return " ".join(result.summary() for result in results)
