"""Every page script parses as an ES module (a duplicated import or a stray merge line would silently
leave a page dead in the browser)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"
SCRIPTS = sorted(STATIC.glob("*.js"))


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_page_script_parses_as_a_module(script: Path, tmp_path: Path) -> None:
    copy = tmp_path / (script.stem + ".mjs")  # .mjs: node checks it as a module, imports and all
    copy.write_text(script.read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(["node", "--check", str(copy)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_there_are_page_scripts() -> None:
    assert len(SCRIPTS) >= 5
