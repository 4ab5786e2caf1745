"""Every user-facing string has a Vietnamese translation, and placeholders survive translation."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from web.i18n import Catalogs

ROOT = Path(__file__).resolve().parents[2]


def _catalog_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("catalog", ROOT / "tools" / "catalog.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_used_string_has_a_vietnamese_translation() -> None:
    used = _catalog_tool().used_messages()
    catalogs = Catalogs.load()
    missing = [m for m in used if m not in catalogs.messages["vi"]]
    assert len(used) > 150
    assert missing == []


def test_placeholders_are_kept_in_vietnamese() -> None:
    catalogs = Catalogs.load()
    for msgid, text in catalogs.messages["vi"].items():
        assert set(re.findall(r"{\w+}", msgid)) == set(re.findall(r"{\w+}", text)), msgid


def test_english_falls_back_to_the_message_id_and_vietnamese_is_translated() -> None:
    catalogs = Catalogs.load()
    assert catalogs.gettext("en", "Waiting room") == "Waiting room"
    assert catalogs.gettext("vi", "Waiting room") == "Phòng chờ"
    assert catalogs.translator("vi")("You are number {position} in the queue.", position=3) == (
        "Bạn là người thứ 3 trong hàng chờ.")
