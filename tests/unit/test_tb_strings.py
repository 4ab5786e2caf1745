"""The patient's TB page shows every refusal of the clip upload by its code, in the page's language: each code
the upload path can answer has a catalog string (web/tb_patient.py CLIP_ERRORS), and the page script reads
the code, never the server's English message."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from db import tb as tb_db
from web import tb_patient
from web.i18n import Catalogs

ROOT = Path(__file__).resolve().parents[2]
CODE = re.compile(r'\b(?:ApiError|ClipError|LinkError|DbError|Conflict)\(\s*"(\w+)"')


def _codes(text: str) -> set[str]:
    return set(CODE.findall(text))


def test_every_code_of_the_upload_path_has_a_patient_message() -> None:
    sources = [(ROOT / "web" / "tb_clips.py").read_text(), (ROOT / "media" / "clip.py").read_text(),
               (ROOT / "web" / "auth.py").read_text(), inspect.getsource(tb_db._check_dose_day),
               inspect.getsource(tb_db.begin_upload), inspect.getsource(tb_db._locked)]
    codes = set().union(*map(_codes, sources)) | {"not_found", "not_authenticated", "invalid", "bad_json"}
    assert {"clip_too_long", "in_future", "link_expired", "offset_mismatch"} <= codes  # the scan sees them
    assert codes - set(tb_patient.CLIP_ERRORS) == set()


def test_patient_messages_exist_in_vietnamese_and_english() -> None:
    catalogs = Catalogs.load()
    for message in tb_patient.CLIP_ERRORS.values():
        vi = catalogs.translator("vi")(message)
        assert vi != message, message
        assert catalogs.translator("en")(message) == message
    strings = catalogs.translator("vi").json(tb_patient.JS_STRINGS, keyed={
        f"error:{c}": m for c, m in tb_patient.CLIP_ERRORS.items()})
    assert '"error:clip_too_long": "Video dài hơn 60 giây. Hãy quay video ngắn hơn."' in strings


def test_the_page_script_shows_codes_not_server_messages() -> None:
    script = (ROOT / "web" / "static" / "tb_record.js").read_text()
    assert "data.error.message" not in script and "t[`error:${code}`]" in script
