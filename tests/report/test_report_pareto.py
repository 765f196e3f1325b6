"""Pareto front of (latency, top-1) points: fastest-for-its-accuracy points only, ordered by latency."""

from __future__ import annotations

from cidpipe.report import pareto_front


def test_front_on_hand_made_points() -> None:
    points = [
        (0.41, 96.1),  # 0: fastest -> front
        (0.55, 96.4),  # 1: more accurate -> front
        (0.70, 96.4),  # 2: as accurate as 1 but slower -> dominated
        (0.50, 95.0),  # 3: slower and less accurate than 0 -> dominated
        (2.00, 97.5),  # 4: slowest but most accurate -> front
        (0.45, 96.2),  # 5: between 0 and 1 -> front
    ]
    assert pareto_front(points) == [0, 5, 1, 4]


def test_ties_and_degenerate_inputs() -> None:
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 50.0)]) == [0]
    # Same latency: only the more accurate one; identical points: only the first.
    assert pareto_front([(1.0, 90.0), (1.0, 95.0), (1.0, 95.0)]) == [1]
    # Same accuracy: only the faster one.
    assert pareto_front([(3.0, 90.0), (2.0, 90.0)]) == [1]
