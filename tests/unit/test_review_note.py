"""Pure parts of a specialist's review note: the text check shared by both registers, the TB note's ICD-10 code."""

from __future__ import annotations

import pytest

from care.tb import Site, icd10_code
from db.errors import DbError
from db.reviews import REVIEW_MAX, checked_text


def test_review_text_is_stripped_and_must_hold_1_to_4000_characters() -> None:
    assert checked_text("  ổn định  ") == "ổn định"
    assert checked_text("x" * REVIEW_MAX) == "x" * REVIEW_MAX
    for bad in ("", "   \n", "x" * (REVIEW_MAX + 1)):
        with pytest.raises(DbError) as refused:
            checked_text(bad)
        assert refused.value.code == "bad_review"


@pytest.mark.parametrize(("site", "confirmed", "code"), [
    (Site.pulmonary, True, "A15.0"), (Site.pulmonary, False, "A16.2"),
    (Site.extrapulmonary, True, "A18"), (Site.extrapulmonary, False, "A18")])
def test_tb_note_code_follows_site_and_confirmation(site: Site, confirmed: bool, code: str) -> None:
    assert icd10_code(site, confirmed) == code
