"""Attachment files under the data directory (never under anything served statically).

`<data_dir>/escalations/<escalation id>/<attachment id>.<ext>`: named by id, never by the uploaded name.
A file is written to a temporary name in the same directory and renamed when complete, so a crash or a
refused upload leaves no partial file where a reader could find it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from aiohttp import BodyPartReader

from care.attachments import MAX_BYTES, AttachmentError, Kind, check_size, sniff

CHUNK = 64 * 1024


class AttachmentStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "escalations"

    def path(self, escalation_id: uuid.UUID, attachment_id: uuid.UUID, kind: Kind) -> Path:
        return self.root / str(escalation_id) / f"{attachment_id}.{kind.extension}"

    def thumbnail_path(self, escalation_id: uuid.UUID, attachment_id: uuid.UUID) -> Path:
        return self.root / str(escalation_id) / f"{attachment_id}.thumb.jpg"

    async def receive(self, part: BodyPartReader, escalation_id: uuid.UUID,
                      attachment_id: uuid.UUID) -> tuple[Kind, int, str, Path]:
        """Stream an uploaded part to disk: (kind, size, sha256, final path). AttachmentError (and nothing
        left on disk) for an empty, oversize or unsupported file."""
        directory = self.root / str(escalation_id)
        directory.mkdir(parents=True, exist_ok=True)
        temp = directory / f".{attachment_id}.part"
        digest = hashlib.sha256()
        size = 0
        kind: Kind | None = None
        head = b""
        try:
            with temp.open("wb") as fh:
                while chunk := await part.read_chunk(CHUNK):
                    size += len(chunk)
                    if size > MAX_BYTES:
                        check_size(size)
                    if kind is None:
                        head += chunk
                        if len(head) >= 12:
                            kind = sniff(head)
                    digest.update(chunk)
                    fh.write(chunk)
            check_size(size)
            if kind is None:
                kind = sniff(head)
            final = self.path(escalation_id, attachment_id, kind)
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return kind, size, digest.hexdigest(), final

    def write(self, path: Path, data: bytes) -> None:
        """Write bytes whole (an enhanced copy, a thumbnail): temporary name, then rename."""
        temp = path.with_name(f".{path.name}.part")
        temp.write_bytes(data)
        os.replace(temp, path)


__all__ = ["AttachmentError", "AttachmentStore"]
