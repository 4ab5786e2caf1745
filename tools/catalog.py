"""Find every translatable string in the code and keep the .po catalogs in step.

    python tools/catalog.py --check     # exit 1 if a string lacks a Vietnamese translation
    python tools/catalog.py --update    # add new msgids to both catalogs (empty translations)

Strings are found as `_("…")` in templates and `N_("…")` / `t("…")` in web/*.py.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "web" / "translations"
_TEMPLATE = re.compile(r'''\b_\(\s*"((?:[^"\\]|\\.)*)"|\b_\(\s*'((?:[^'\\]|\\.)*)\'''')
_PYTHON = re.compile(r'''\b(?:N_|t)\(\s*"((?:[^"\\]|\\.)*)"''')


def used_messages() -> list[str]:
    found: list[str] = []
    for path in sorted((ROOT / "web" / "templates").glob("*.html")):
        found += [m.group(1) or m.group(2) for m in _TEMPLATE.finditer(path.read_text(encoding="utf-8"))]
    for path in sorted((ROOT / "web").glob("*.py")):
        found += [m.group(1) for m in _PYTHON.finditer(path.read_text(encoding="utf-8"))]
    return list(dict.fromkeys(s.encode().decode("unicode_escape").encode("latin-1").decode() if "\\" in s else s
                              for s in found))


def load(lang: str, name: str = "messages") -> Catalog:
    with (TRANSLATIONS / lang / "LC_MESSAGES" / f"{name}.po").open("rb") as fh:
        return read_po(fh, locale=lang)


def translated(lang: str) -> set[str]:
    """Message ids with a translation in any of the language's .po files."""
    found: set[str] = set()
    for po in (TRANSLATIONS / lang / "LC_MESSAGES").glob("*.po"):
        with po.open("rb") as fh:
            found |= {str(m.id) for m in read_po(fh, locale=lang) if m.id and m.string}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when a used string has no Vietnamese text")
    parser.add_argument("--update", action="store_true", help="add new strings to the catalogs")
    args = parser.parse_args()
    used = used_messages()
    if args.update:
        for lang in ("vi", "en"):
            catalog = load(lang)
            known = translated(lang) | {str(m.id) for m in catalog if m.id}
            for message in used:
                if message not in known:
                    catalog.add(message, "")
            with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("wb") as fh:
                write_po(fh, catalog, width=120, sort_output=False)
    vi = translated("vi")
    missing = [m for m in used if m not in vi]
    for message in missing:
        print(f"missing Vietnamese: {message!r}")
    print(f"{len(used)} strings used, {len(missing)} without Vietnamese")
    return 1 if args.check and missing else 0


if __name__ == "__main__":
    sys.exit(main())
