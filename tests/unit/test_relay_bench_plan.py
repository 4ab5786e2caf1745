"""bench/relay_latency.py's round plan: neither server is favoured by the order it gets each kind in."""

from __future__ import annotations

from collections import Counter

from bench.relay_latency import round_plan


def test_each_server_goes_first_equally_often_for_each_kind() -> None:
    servers = ["app", "bare"]
    firsts: Counter[tuple[str, str]] = Counter()
    kinds: Counter[str] = Counter()
    for r in range(20):  # the default: 20 rounds
        kind, order = round_plan(servers, r)
        assert sorted(order) == servers  # every server gets every round
        firsts[(kind, order[0])] += 1
        kinds[kind] += 1
    assert kinds == {"offer": 10, "ice": 10}
    assert firsts == {("offer", "app"): 5, ("offer", "bare"): 5, ("ice", "app"): 5, ("ice", "bare"): 5}


def test_the_plan_leaves_the_targets_list_as_it_was() -> None:
    servers = ["app", "bare"]
    _, order = round_plan(servers, 1)
    assert order == ["bare", "app"] and servers == ["app", "bare"]
