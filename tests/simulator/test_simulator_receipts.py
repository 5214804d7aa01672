"""The simulator's receipt plan: truth, order, repeats and foreign ids (docs/simulator.md)."""

from __future__ import annotations

from bridge.simulator.receipts import ReceiptPlan


def test_the_default_plan_is_delivered_then_read() -> None:
    plan = ReceiptPlan()
    assert plan.schedule("m1", 0.2) == [(0.2, "m1", "delivered"), (0.4, "m1", "read")]
    assert plan.truth == {"m1": ["delivered", "read"]}


def test_failures_shuffles_duplicates_and_foreign_ids_follow_the_rates() -> None:
    plan = ReceiptPlan()
    plan.configure({"failRate": 0.2, "readRate": 0.5, "shuffleRate": 0.3, "duplicateRate": 0.2,
                    "foreignRate": 0.1, "jitter": 0.5, "seed": 7})  # fmt: skip
    plans = [plan.schedule(f"m{n}", 0.1) for n in range(1000)]
    truths = list(plan.truth.values())
    assert 150 < truths.count(["failed"]) < 250
    assert all(t in (["failed"], ["delivered"], ["delivered", "read"]) for t in truths)
    own = [[s for _, mid, s in p if mid == f"m{n}"] for n, p in enumerate(plans)]
    reversed_ = sum(1 for o, t in zip(own, truths, strict=True) if len(t) == 2 and o[0] == "read")
    assert reversed_ > 50
    assert sum(len(o) > len(t) for o, t in zip(own, truths, strict=True)) > 100
    assert 50 < len(plan.foreign) < 150
    assert all(len(p) > 0 and all(at > 0 for at, _, _ in p) for p in plans)
