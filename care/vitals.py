"""Vital signs on a consult note: plausible ranges, so a typo (BP 1400/90) is caught at entry."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Plausible physiological ranges for data entry (not clinical targets); outside them is almost surely a typo.
RANGES: dict[str, tuple[float, float]] = {
    "systolic": (50, 300),      # mmHg
    "diastolic": (20, 200),     # mmHg
    "pulse": (20, 250),         # beats/min
    "temperature": (30.0, 44.0),  # °C
    "spo2": (50, 100),          # %
    "weight": (0.3, 400.0),     # kg
}


class VitalsError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Vitals:
    systolic: int | None = None
    diastolic: int | None = None
    pulse: int | None = None
    temperature: float | None = None
    spo2: int | None = None
    weight: float | None = None

    def __post_init__(self) -> None:
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if value is not None and not (low <= value <= high):
                raise VitalsError(name, f"{name} must be between {low:g} and {high:g}, got {value:g}")
        if (self.systolic is None) != (self.diastolic is None):
            raise VitalsError("systolic", "blood pressure needs both systolic and diastolic")
        if self.systolic is not None and self.diastolic is not None and self.systolic <= self.diastolic:
            raise VitalsError("systolic", "systolic must be higher than diastolic")

    def as_dict(self) -> dict[str, float]:
        """Only the values that were measured."""
        return {k: v for k, v in asdict(self).items() if v is not None}
