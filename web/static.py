"""Static files from memory, gzipped once at start-up: patient pages travel over 3G."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from importlib.resources.abc import Traversable

from aiohttp import web


@dataclass(frozen=True)
class _Asset:
    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


class StaticFiles:
    """Serves `web/static/<name>` with ETag and gzip; names are flat (no sub-folders)."""

    def __init__(self, root: Traversable) -> None:
        self._assets: dict[str, _Asset] = {}
        for entry in root.iterdir():
            if not entry.is_file():
                continue
            body = entry.read_bytes()
            content_type = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            if entry.name.endswith(".js"):
                content_type = "text/javascript"
            self._assets[entry.name] = _Asset(body, gzip.compress(body, 9, mtime=0), content_type,
                                              '"' + hashlib.sha256(body).hexdigest()[:16] + '"')

    def version(self, name: str) -> str:
        return self._assets[name].etag.strip('"')

    async def handle(self, request: web.Request) -> web.StreamResponse:
        asset = self._assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        headers = {"ETag": asset.etag, "Cache-Control": "public, max-age=3600", "Vary": "Accept-Encoding"}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        ctype = asset.content_type + ("; charset=utf-8" if asset.content_type.startswith("text/") else "")
        if "gzip" in request.headers.get("Accept-Encoding", "") and len(asset.gzipped) < len(asset.body):
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=asset.gzipped, headers={**headers, "Content-Type": ctype})
        return web.Response(body=asset.body, headers={**headers, "Content-Type": ctype})
