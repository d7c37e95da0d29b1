"""Exact expected counts, pinned: the default scenario and one small trace per reader. A
change that moves results shows here as changed numbers; regenerate them with
``python tests/regen_expected.py`` and say why in the commit message."""

from __future__ import annotations

import json

import pytest
from expected_counts import EXPECTED, all_cases
from regen_expected import diff

PINNED = json.loads(EXPECTED.read_text())
CASES = all_cases()


def test_every_case_is_pinned():
    assert set(PINNED) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_counts_are_exactly_the_pinned_ones(name):
    got = json.loads(json.dumps(CASES[name]()))       # as the file stores them
    moved = diff(PINNED[name], got)
    assert not moved, (f"{name}: {len(moved)} counts moved (python tests/regen_expected.py "
                       "to accept them):\n" + "\n".join(moved[:40]))
