"""What an attachment to a request for an opinion may be (pure): photos (JPEG, PNG, WebP) and PDFs, at
most 10 MB each and 10 per request, the type decided by the file's first bytes (never by its name), and
a file name that is only a name. Refusals carry a stable code (docs/protocol.md)."""

from __future__ import annotations

import unicodedata
from enum import StrEnum

MAX_BYTES = 10 * 1024 * 1024
MAX_PER_REQUEST = 10
MAX_NAME = 200


class Kind(StrEnum):
    jpeg = "jpeg"
    png = "png"
    webp = "webp"
    pdf = "pdf"

    @property
    def content_type(self) -> str:
        return {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "pdf": "application/pdf"}[self.value]

    @property
    def is_image(self) -> bool:
        return self is not Kind.pdf

    @property
    def extension(self) -> str:
        return {"jpeg": "jpg"}.get(self.value, self.value)


class AttachmentError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sniff(head: bytes) -> Kind:
    """The file's type from its first bytes (at least 12). AttachmentError `unsupported_type` otherwise —
    an executable renamed `.jpg` is refused here."""
    if head.startswith(b"\xff\xd8\xff"):
        return Kind.jpeg
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Kind.png
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Kind.webp
    if head.startswith(b"%PDF-"):
        return Kind.pdf
    raise AttachmentError("unsupported_type", "only photos (JPEG, PNG, WebP) and PDF documents can be attached; "
                                              "this file's content is neither")


def check_size(size: int) -> None:
    if size == 0:
        raise AttachmentError("empty_file", "the file is empty (0 bytes)")
    if size > MAX_BYTES:
        raise AttachmentError("file_too_large", f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")


def check_count(existing: int) -> None:
    if existing >= MAX_PER_REQUEST:
        raise AttachmentError("too_many_files", f"a request carries at most {MAX_PER_REQUEST} files")


def clean_name(name: str) -> str:
    """The file name as shown to people (never used as a path: files are stored by id). AttachmentError
    `bad_file_name` for a path (`/`, `\\`, `..`), control characters, an empty or overlong name."""
    name = unicodedata.normalize("NFC", name.strip())
    if not name or len(name) > MAX_NAME:
        raise AttachmentError("bad_file_name", f"the file name must have 1 to {MAX_NAME} characters")
    if "/" in name or "\\" in name or ".." in name or any(unicodedata.category(c)[0] == "C" for c in name):
        raise AttachmentError("bad_file_name", "the file name may not contain a path, '..' or control characters")
    return name
