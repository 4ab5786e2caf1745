"""The access policy's table: least privilege holds, refusals say why, the relation twin is right, and
docs/security.md prints the table the code enforces."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from care.access import (
    CLINICIANS,
    IN_SCOPE,
    RULES,
    STAFF_ROLES,
    Action,
    Refusal,
    Relation,
    Role,
    allows,
    decide,
    in_scope,
    may_ever,
    relation_of,
)

ROOT = Path(__file__).resolve().parents[2]

# province 1 ← district 2 ← communes 3, 4; province 1 ← district 5 ← commune 6; province 7 (no parent).
TREE: dict[int, int | None] = {1: None, 2: 1, 3: 2, 4: 2, 5: 1, 6: 5, 7: None}


def test_every_action_has_a_rule_and_only_known_roles() -> None:
    assert set(RULES) == set(Action)
    for rule in RULES.values():
        assert rule.roles <= set(Role)
        assert rule.relations


@pytest.mark.parametrize("action", [Action.read_clinical, Action.write_note, Action.conduct_consultation,
                                    Action.claim, Action.change_level])
def test_clinical_actions_are_for_clinicians_only(action: Action) -> None:
    staff_allowed = {r for r in STAFF_ROLES if may_ever(r, action)}
    assert staff_allowed == CLINICIANS


def test_coordinators_and_admins_get_counts_and_states_but_no_patient_records() -> None:
    for role in (Role.coordinator, Role.admin):
        assert allows(role, Action.read_counts) and allows(role, Action.read_outbox)
        for action in (Action.read_queue, Action.read_demographics, Action.read_clinical,
                       Action.see_live_link, Action.read_invitations, Action.invite):
            assert not may_ever(role, action), (role, action)


def test_nurses_work_the_registry_queue_and_invitations_without_notes() -> None:
    for action in (Action.read_demographics, Action.register_patient, Action.edit_patient, Action.read_queue,
                   Action.invite, Action.send_message, Action.see_live_link):
        assert allows(Role.nurse, action)
    assert not may_ever(Role.nurse, Action.read_clinical)


def test_live_links_only_to_those_who_may_send_them() -> None:
    for role in Role:
        assert may_ever(role, Action.see_live_link) == may_ever(role, Action.send_message)


def test_only_admins_read_the_audit() -> None:
    assert {r for r in Role if may_ever(r, Action.read_audit)} == {Role.admin}


@pytest.mark.parametrize("relation", list(Relation))
def test_scope_is_own_facility_and_below(relation: Relation) -> None:
    assert allows(Role.doctor, Action.read_clinical, relation) == (relation in IN_SCOPE)
    assert allows(Role.nurse, Action.register_patient, relation) == (relation is Relation.own)


def test_a_consultation_is_conducted_only_by_its_own_doctor_or_patient() -> None:
    refused = decide(Role.doctor, Action.write_note, Relation.own)
    assert not refused and refused.refusal is Refusal.assignee
    assert allows(Role.doctor, Action.write_note, Relation.own, assignee=True)
    assert allows(Role.patient, Action.conduct_consultation, Relation.own, assignee=True)
    assert not allows(Role.nurse, Action.conduct_consultation, Relation.own, assignee=True)


def test_refusals_say_why() -> None:
    by_role = decide(Role.coordinator, Action.read_clinical, Relation.own)
    assert by_role.refusal is Refusal.role and "coordinator may not read clinical" in by_role.message
    by_scope = decide(Role.doctor, Action.read_clinical, Relation.sibling)
    assert by_scope.refusal is Refusal.scope and "sibling" in by_scope.message
    unknown = decide("janitor", Action.read_counts)
    assert not unknown and unknown.refusal is Refusal.role


@pytest.mark.parametrize(("staff", "obj", "relation"), [
    (2, 2, Relation.own), (2, 3, Relation.below), (1, 6, Relation.below), (3, 2, Relation.above),
    (3, 1, Relation.above), (3, 4, Relation.sibling), (2, 5, Relation.sibling), (3, 6, Relation.unrelated),
    (2, 6, Relation.unrelated), (1, 7, Relation.unrelated), (7, 1, Relation.unrelated),
])
def test_relation_of_names_where_the_object_sits(staff: int, obj: int, relation: Relation) -> None:
    assert relation_of(staff, obj, TREE) is relation


FACILITIES = st.sampled_from(sorted(TREE))


@given(FACILITIES, FACILITIES)
def test_relations_mirror_each_other(a: int, b: int) -> None:
    mirror = {Relation.own: Relation.own, Relation.below: Relation.above, Relation.above: Relation.below,
              Relation.sibling: Relation.sibling, Relation.unrelated: Relation.unrelated}
    assert relation_of(b, a, TREE) is mirror[relation_of(a, b, TREE)]
    assert in_scope(a, b, TREE) == (relation_of(a, b, TREE) in IN_SCOPE)


def test_a_cycle_in_bad_data_ends_the_walk() -> None:
    assert relation_of(1, 3, {1: 2, 2: 1, 3: 4, 4: 3}) is Relation.unrelated


def test_docs_security_md_prints_the_table_the_code_enforces() -> None:
    spec = importlib.util.spec_from_file_location("security_table", ROOT / "tools" / "security_table.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    document = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert tool.with_table(document) == document, "run: python tools/security_table.py"


def test_counts_only_blanks_who_and_why_in_every_list_of_the_message() -> None:
    from signaling.queue import counts_only

    view = {"type": "queue_list", "total": 1,
            "entries": [{"entry": "e", "level": "NC3", "reason": "đau ngực", "danger_signs": ["chest_pain"],
                         "checkin": {"spo2": 88}, "patient": {"id": 1, "name": "Giàng A Páo"}}],
            "no_shows": [{"entry": "f", "patient": {"id": 2, "name": "Sùng Thị Mai"}}]}
    stripped = counts_only(view)
    assert "Páo" not in str(stripped) and "Mai" not in str(stripped) and "ngực" not in str(stripped)
    assert stripped["total"] == 1 and stripped["entries"][0]["level"] == "NC3"
    assert stripped["entries"][0]["checkin"] is None
    assert stripped["no_shows"][0] == {"entry": "f", "patient": None}
