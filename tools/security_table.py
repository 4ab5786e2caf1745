"""Print the access table of care/access.py into docs/security.md (between its markers), or check it.

    python tools/security_table.py            # rewrite the table in docs/security.md
    python tools/security_table.py --check    # exit 1 if the document's table differs from the code
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from care.access import table_markdown  # noqa: E402

DOC = ROOT / "docs" / "security.md"
START = "<!-- access-table:start (tools/security_table.py writes this) -->"
END = "<!-- access-table:end -->"


def with_table(document: str) -> str:
    """The document with the table between the markers replaced by the one the code defines."""
    head, start, rest = document.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"{DOC.name} lacks the table markers")
    return f"{head}{START}\n{table_markdown()}{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when docs/security.md is out of date")
    args = parser.parse_args()
    current = DOC.read_text(encoding="utf-8")
    wanted = with_table(current)
    if args.check:
        if current != wanted:
            print(f"{DOC} is out of date: run python tools/security_table.py")
            return 1
        return 0
    DOC.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
