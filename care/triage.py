"""Suggested triage level for the waiting queue, from a patient's self-reported check-in.

The levels are the seed network's NC0–NC4 (see ``CLINICAL.md``, "Triage for the
waiting queue"). The result is a *suggestion*: a doctor can change it, and the
change is audited elsewhere. Danger signs are reported separately from the level
so that the patient page can show emergency advice (115) at once and the entry
can be flagged to every doctor online, instead of being queued silently.

Example::

    >>> result = assess(CheckIn(symptoms=frozenset({Symptom.fever, Symptom.cough}), spo2=93))
    >>> result.level, result.danger_signs, result.emergency
    (<TriageLevel.NC4: 'NC4'>, ('low_spo2',), True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = [
    "DANGER_SIGN_CODES",
    "DEFAULT_THRESHOLDS",
    "REASON_CODES",
    "CheckIn",
    "CheckInError",
    "Colour",
    "KeyGroup",
    "Symptom",
    "TriageLevel",
    "TriageResult",
    "TriageThresholds",
    "assess",
    "evidence",
]


class Symptom(StrEnum):
    """A symptom the patient can tick on the check-in form (value == name)."""

    fever = "fever"
    cough = "cough"
    sore_throat = "sore_throat"
    runny_nose = "runny_nose"
    headache = "headache"
    fatigue = "fatigue"
    diarrhoea = "diarrhoea"
    vomiting = "vomiting"
    loss_of_smell = "loss_of_smell"
    mild_breathlessness = "mild_breathlessness"
    severe_breathlessness = "severe_breathlessness"
    chest_pain = "chest_pain"
    confusion = "confusion"
    dizziness = "dizziness"
    blurred_vision = "blurred_vision"
    one_sided_weakness = "one_sided_weakness"
    fainting = "fainting"
    bleeding = "bleeding"
    other = "other"


class KeyGroup(StrEnum):
    """Key-group flag kept on the patient and shown in the queue (value == name)."""

    elderly_alone = "elderly_alone"
    pregnant = "pregnant"
    dialysis = "dialysis"
    chemotherapy = "chemotherapy"
    hypertension = "hypertension"
    diabetes = "diabetes"
    tb = "tb"


# ---------------------------------------------------------------------------
# Thresholds: the one table of clinical numbers in this module. A deployment may
# pass its own TriageThresholds to assess(); these are the product defaults.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TriageThresholds:
    """Clinical cut-offs used by :func:`assess`; every BP pair means systolic OR diastolic."""

    # CLINICAL.md triage: SpO2 < 94 % is a danger sign.
    spo2_danger_below: int = 94
    # Product default (lead's spec; CLINICAL.md gives no number): SpO2 94–95 % is NC3 "severe signs".
    spo2_severe_below: int = 96
    # CLINICAL.md triage: BP >= 180/120 with symptoms is a danger sign (hypertensive emergency).
    bp_emergency_systolic: int = 180
    bp_emergency_diastolic: int = 120
    # CLINICAL.md hypertension: BP >= 180/110 -> flag for same-day review (hypertensive urgency).
    bp_urgent_systolic: int = 180
    bp_urgent_diastolic: int = 110
    # WHO/ISH grade 2 hypertension (>= 160/100): worsening, a doctor follows up (NC2).
    bp_high_systolic: int = 160
    bp_high_diastolic: int = 100
    # Product default for seed-network NC2 "worsening" (no number in CLINICAL.md): fever >= 3 days.
    fever_days_worsening: int = 3
    # Product default for CLINICAL.md key groups (elderly): age >= 65 counts when symptomatic.
    elderly_age: int = 65
    # CLINICAL.md triage "with symptoms": signs of target-organ damage that make high BP an emergency.
    bp_emergency_symptoms: frozenset[Symptom] = frozenset(
        {
            Symptom.headache,
            Symptom.chest_pain,
            Symptom.mild_breathlessness,
            Symptom.severe_breathlessness,
            Symptom.confusion,
            Symptom.blurred_vision,
            Symptom.one_sided_weakness,
            Symptom.dizziness,
        }
    )
    # CLINICAL.md key-group ledgers (Tianjin, Beijing): any symptom in these groups -> NC2.
    key_groups_worsening: frozenset[KeyGroup] = frozenset(
        {KeyGroup.elderly_alone, KeyGroup.pregnant, KeyGroup.dialysis, KeyGroup.chemotherapy}
    )


DEFAULT_THRESHOLDS = TriageThresholds()

# Ranges a self-reported reading must fall in to be believed (typing errors, not clinical cut-offs).
_SPO2_RANGE = (50, 100)
_SYSTOLIC_RANGE = (60, 300)
_DIASTOLIC_RANGE = (30, 200)
_DAYS_ILL_RANGE = (0, 365)
_AGE_RANGE = (0, 130)


Colour = Literal["green", "yellow", "red"]


class TriageLevel(StrEnum):
    """Seed-network risk level: NC0 no risk … NC4 danger."""

    NC0 = "NC0"
    NC1 = "NC1"
    NC2 = "NC2"
    NC3 = "NC3"
    NC4 = "NC4"

    @property
    def rank(self) -> int:
        """0 for NC0 up to 4 for NC4; higher ranks are seen first in the queue."""
        return int(self.value[2:])

    @property
    def colour(self) -> Colour:
        """Screen colour from CLINICAL.md: NC0–NC1 green, NC2 yellow, NC3–NC4 red."""
        if self.rank <= 1:
            return "green"
        if self.rank == 2:
            return "yellow"
        return "red"


class CheckInError(ValueError):
    """A check-in value a person cannot have typed correctly; ``field`` names the form field."""

    def __init__(self, field: str, message: str, *, code: str = "out_of_range") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        # Stable machine-readable reason, for translated form errors.
        self.code = code


def _check_range(name: str, value: int | None, bounds: tuple[int, int]) -> None:
    if value is None:
        return
    # bool is an int subclass; a JSON `true` must not pass as a reading of 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckInError(name, f"must be a whole number, got {value!r}", code="not_an_integer")
    low, high = bounds
    if not low <= value <= high:
        raise CheckInError(name, f"must be between {low} and {high}, got {value}")


@dataclass(frozen=True)
class CheckIn:
    """What the patient reported before joining the queue; validated on construction.

    SpO2 and blood pressure are optional because many patients own neither an
    oximeter nor a cuff. Raises :class:`CheckInError` for impossible values.
    """

    symptoms: frozenset[Symptom] = frozenset()
    spo2: int | None = None
    systolic: int | None = None
    diastolic: int | None = None
    days_ill: int | None = None
    age: int | None = None
    key_groups: frozenset[KeyGroup] = frozenset()

    def __post_init__(self) -> None:
        for symptom in self.symptoms:
            if not isinstance(symptom, Symptom):
                raise CheckInError("symptoms", f"unknown symptom {symptom!r}", code="unknown_symptom")
        for group in self.key_groups:
            if not isinstance(group, KeyGroup):
                raise CheckInError("key_groups", f"unknown key group {group!r}", code="unknown_key_group")
        _check_range("spo2", self.spo2, _SPO2_RANGE)
        _check_range("systolic", self.systolic, _SYSTOLIC_RANGE)
        _check_range("diastolic", self.diastolic, _DIASTOLIC_RANGE)
        _check_range("days_ill", self.days_ill, _DAYS_ILL_RANGE)
        _check_range("age", self.age, _AGE_RANGE)
        # Half a blood pressure cannot be classified; ask for the missing part.
        if self.systolic is None and self.diastolic is not None:
            raise CheckInError("systolic", "enter both blood pressure numbers", code="bp_incomplete")
        if self.diastolic is None and self.systolic is not None:
            raise CheckInError("diastolic", "enter both blood pressure numbers", code="bp_incomplete")
        if self.systolic is not None and self.diastolic is not None and self.systolic <= self.diastolic:
            raise CheckInError(
                "systolic",
                f"must be higher than diastolic ({self.systolic}/{self.diastolic}); were they swapped?",
                code="bp_inverted",
            )


@dataclass(frozen=True)
class TriageResult:
    """Suggested level, the danger signs found, and every rule that fired (stable codes)."""

    level: TriageLevel
    danger_signs: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def emergency(self) -> bool:
        """True when the patient must get 115 advice now and every doctor online is alerted."""
        return self.level is TriageLevel.NC4 or bool(self.danger_signs)


def _bp_at_least(checkin: CheckIn, systolic: int, diastolic: int) -> bool:
    # "BP >= S/D" means either number reaches its limit: one high number is enough.
    if checkin.systolic is None or checkin.diastolic is None:
        return False
    return checkin.systolic >= systolic or checkin.diastolic >= diastolic


@dataclass(frozen=True)
class _Rule:
    code: str
    level: TriageLevel
    danger_sign: bool
    applies: Callable[[CheckIn, TriageThresholds], bool]


# Ordered from most to least severe so that reasons read in that order.
_RULES: tuple[_Rule, ...] = (
    _Rule("chest_pain", TriageLevel.NC4, True, lambda c, t: Symptom.chest_pain in c.symptoms),
    _Rule(
        "severe_breathlessness",
        TriageLevel.NC4,
        True,
        lambda c, t: Symptom.severe_breathlessness in c.symptoms,
    ),
    _Rule(
        "low_spo2",
        TriageLevel.NC4,
        True,
        lambda c, t: c.spo2 is not None and c.spo2 < t.spo2_danger_below,
    ),
    _Rule("confusion", TriageLevel.NC4, True, lambda c, t: Symptom.confusion in c.symptoms),
    _Rule(
        "hypertensive_emergency",
        TriageLevel.NC4,
        True,
        lambda c, t: (
            _bp_at_least(c, t.bp_emergency_systolic, t.bp_emergency_diastolic)
            and bool(c.symptoms & t.bp_emergency_symptoms)
        ),
    ),
    # Stroke (FAST) and syncope are emergencies in their own right.
    _Rule(
        "one_sided_weakness",
        TriageLevel.NC4,
        True,
        lambda c, t: Symptom.one_sided_weakness in c.symptoms,
    ),
    _Rule("fainting", TriageLevel.NC4, True, lambda c, t: Symptom.fainting in c.symptoms),
    # Fires with or without symptoms: symptoms can only raise it to an emergency, never lower it.
    _Rule(
        "hypertensive_urgency",
        TriageLevel.NC3,
        False,
        lambda c, t: _bp_at_least(c, t.bp_urgent_systolic, t.bp_urgent_diastolic),
    ),
    _Rule(
        "borderline_spo2",
        TriageLevel.NC3,
        False,
        lambda c, t: c.spo2 is not None and t.spo2_danger_below <= c.spo2 < t.spo2_severe_below,
    ),
    _Rule(
        "mild_breathlessness",
        TriageLevel.NC2,
        False,
        lambda c, t: Symptom.mild_breathlessness in c.symptoms,
    ),
    _Rule(
        "prolonged_fever",
        TriageLevel.NC2,
        False,
        lambda c, t: (
            Symptom.fever in c.symptoms and c.days_ill is not None and c.days_ill >= t.fever_days_worsening
        ),
    ),
    _Rule(
        "high_bp",
        TriageLevel.NC2,
        False,
        lambda c, t: _bp_at_least(c, t.bp_high_systolic, t.bp_high_diastolic),
    ),
    _Rule(
        "key_group_with_symptoms",
        TriageLevel.NC2,
        False,
        lambda c, t: bool(c.symptoms) and bool(c.key_groups & t.key_groups_worsening),
    ),
    _Rule(
        "elderly_with_symptoms",
        TriageLevel.NC2,
        False,
        lambda c, t: bool(c.symptoms) and c.age is not None and c.age >= t.elderly_age,
    ),
    _Rule("has_symptoms", TriageLevel.NC1, False, lambda c, t: bool(c.symptoms)),
)

DANGER_SIGN_CODES: tuple[str, ...] = tuple(rule.code for rule in _RULES if rule.danger_sign)
"""Every code that can appear in :attr:`TriageResult.danger_signs`."""

REASON_CODES: tuple[str, ...] = tuple(rule.code for rule in _RULES)
"""Every code that can appear in :attr:`TriageResult.reasons`, most severe first."""


def assess(checkin: CheckIn, thresholds: TriageThresholds = DEFAULT_THRESHOLDS) -> TriageResult:
    """Suggest a queue triage level for a check-in, with the danger signs and reasons behind it.

    The level is the highest of all rules that fire (NC0 when none does: no
    symptoms and normal or missing readings). ``reasons`` lists every rule that
    fired, most severe first, so a doctor can see why, and ``danger_signs`` the
    subset that must not wait in the queue.
    """
    fired = [rule for rule in _RULES if rule.applies(checkin, thresholds)]
    level = max((rule.level for rule in fired), key=lambda lv: lv.rank, default=TriageLevel.NC0)
    return TriageResult(
        level=level,
        danger_signs=tuple(rule.code for rule in fired if rule.danger_sign),
        reasons=tuple(rule.code for rule in fired),
    )


# Which check-in answers each rule reads, so a screen can highlight the values that raised the level.
# Keys: "symptoms.<symptom>", "spo2", "bp", "days_ill", "age", "key_groups". Two rules read more than
# their own answers and are completed in evidence(): hypertensive_emergency (the target-organ symptoms
# the patient has) and has_symptoms (every symptom).
_EVIDENCE: dict[str, tuple[str, ...]] = {
    "chest_pain": ("symptoms.chest_pain",),
    "severe_breathlessness": ("symptoms.severe_breathlessness",),
    "low_spo2": ("spo2",),
    "confusion": ("symptoms.confusion",),
    "hypertensive_emergency": ("bp",),
    "one_sided_weakness": ("symptoms.one_sided_weakness",),
    "fainting": ("symptoms.fainting",),
    "hypertensive_urgency": ("bp",),
    "borderline_spo2": ("spo2",),
    "mild_breathlessness": ("symptoms.mild_breathlessness",),
    "prolonged_fever": ("symptoms.fever", "days_ill"),
    "high_bp": ("bp",),
    "key_group_with_symptoms": ("key_groups",),
    "elderly_with_symptoms": ("age",),
    "has_symptoms": (),
}

Highlight = Literal["danger", "raised"]


def evidence(reasons: Iterable[str], symptoms: Iterable[str],
             thresholds: TriageThresholds = DEFAULT_THRESHOLDS) -> dict[str, Highlight]:
    """The answers that raised a check-in's suggested level: answer key → "danger" (a danger sign's) or
    "raised". ``reasons`` are :attr:`TriageResult.reasons` as stored with the check-in; codes this
    version does not know are ignored.

    Any symptom lifts NC0 to NC1 (``has_symptoms``); the symptoms are highlighted for it only when no
    other rule fired, so that at NC2 and above the answers that made the difference stand out.

    >>> evidence(["hypertensive_emergency", "hypertensive_urgency", "has_symptoms"], ["headache", "cough"])
    {'bp': 'danger', 'symptoms.headache': 'danger'}
    """
    fired = [code for code in reasons if code in _EVIDENCE]
    had = [s for s in symptoms if s in Symptom.__members__]
    out: dict[str, Highlight] = {}
    for code in fired:
        keys = list(_EVIDENCE[code])
        if code == "hypertensive_emergency":
            keys += [f"symptoms.{s}" for s in had if Symptom(s) in thresholds.bp_emergency_symptoms]
        elif code == "has_symptoms" and len(fired) == 1:
            keys = [f"symptoms.{s}" for s in had]
        mark: Highlight = "danger" if code in DANGER_SIGN_CODES else "raised"
        for key in keys:
            if out.get(key) != "danger":
                out[key] = mark
    return out
