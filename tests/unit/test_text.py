"""care.text.normalize: the search key behind every name and diagnosis search."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.text import normalize


def test_name_with_and_without_diacritics_gives_same_key() -> None:
    assert normalize("Nguyễn Văn An") == normalize("nguyen  van an") == "nguyen van an"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Đặng Thị Hồng", "dang thi hong"),
        ("đồng hành", "dong hanh"),
        ("ĐỒNG HÀNH", "dong hanh"),
        ("Tăng huyết áp vô căn (nguyên phát)", "tang huyet ap vo can (nguyen phat)"),
        ("Lao phổi", "lao phoi"),
        ("Hà Giang", "ha giang"),
        ("Bắc Kạn", "bac kan"),
    ],
)
def test_vietnamese_examples_lose_tone_marks_and_case(text: str, key: str) -> None:
    assert normalize(text) == key


def test_stroked_d_maps_to_plain_d_in_both_cases() -> None:
    assert normalize("Đ") == normalize("đ") == "d"


def test_whitespace_is_trimmed_and_collapsed_including_tabs_and_newlines() -> None:
    assert normalize("  Trần \t Thị\n\nBình  ") == "tran thi binh"


def test_precomposed_and_decomposed_input_give_same_key() -> None:
    name = "Nguyễn Thị Ánh"
    assert normalize(unicodedata.normalize("NFC", name)) == normalize(unicodedata.normalize("NFD", name))


def test_plain_ascii_is_only_lowercased() -> None:
    assert normalize("Hypertension I10") == "hypertension i10"


def test_empty_and_blank_text_give_empty_key() -> None:
    assert normalize("") == ""
    assert normalize(" \t\n ") == ""


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@given(st.text())
def test_key_has_no_combining_marks_no_stroked_d_and_no_edge_whitespace(text: str) -> None:
    key = normalize(text)
    assert not any(unicodedata.combining(ch) for ch in unicodedata.normalize("NFD", key))
    assert "đ" not in key and "Đ" not in key
    assert key == key.strip()
    assert "  " not in key
