"""The gate's verdict: one :class:`Check` per threshold, serialisable as gate.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

GATE_SCHEMA = 1
PASS, FAIL, NOT_COMPARABLE = "pass", "fail", "not_comparable"


@dataclass
class Check:
    """One threshold applied to one measured number (or one artifact's status).

    ``outcome`` is ``pass``, ``fail`` or ``not_comparable``: a latency comparison against a baseline
    measured on another host is neither (``passed`` stays True so it does not fail the gate, and every
    output shows it as not comparable, never as a pass). ``noisy`` marks a check judged on a latency row
    whose CoV exceeded bench.cov_warning.
    """

    name: str
    kind: str
    passed: bool
    message: str
    measured: float | None = None
    allowed: float | None = None
    unit: str = ""
    outcome: str = ""
    noisy: bool = False

    def __post_init__(self) -> None:
        if not self.outcome:
            self.outcome = PASS if self.passed else FAIL
        if self.outcome not in (PASS, FAIL, NOT_COMPARABLE):
            raise ValueError(f"check outcome must be pass, fail or not_comparable, got {self.outcome!r}")
        if self.outcome == NOT_COMPARABLE:
            self.passed = True

    @classmethod
    def not_comparable(cls, name: str, kind: str, why: str) -> Check:
        return cls(name, kind, True, f"not comparable: {why}", outcome=NOT_COMPARABLE)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateReport:
    """The checks of one run; ``passed`` is True only when every check passed."""

    run: str
    recipe: str | None
    recipe_id: str | None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    created_at: str = ""

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    @property
    def not_comparable(self) -> list[Check]:
        return [check for check in self.checks if check.outcome == NOT_COMPARABLE]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": GATE_SCHEMA,
            "run": self.run,
            "recipe": self.recipe,
            "recipe_id": self.recipe_id,
            "passed": self.passed,
            "counts": {
                "total": len(self.checks),
                "failed": len(self.failed),
                "not_comparable": len(self.not_comparable),
                "noisy": sum(check.noisy for check in self.checks),
            },
            "baseline": self.baseline,
            "notes": list(self.notes),
            "created_at": self.created_at,
            "checks": [check.to_dict() for check in self.checks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateReport:
        checks = [Check(**check) for check in data.get("checks", [])]
        return cls(
            run=data.get("run", ""),
            recipe=data.get("recipe"),
            recipe_id=data.get("recipe_id"),
            checks=checks,
            notes=list(data.get("notes", [])),
            baseline=data.get("baseline"),
            created_at=data.get("created_at", ""),
        )
