"""The project's train / held-out split: disjoint, complete, stable, and the same in every stage."""

from __future__ import annotations

import pytest

from mtr_hpc.data import load_sample
from mtr_hpc.data.splits import is_heldout, select_part
from mtr_hpc.errors import ConfigError


@pytest.mark.parametrize("bench", ["hotpotqa", "musique", "2wiki", "bamboogle"])
def test_parts_are_disjoint_and_complete(bench):
    examples = load_sample(bench)
    train, held = select_part(examples, "train"), select_part(examples, "heldout")
    ids = {e.id for e in examples}
    assert {e.id for e in train} | {e.id for e in held} == ids
    assert not {e.id for e in train} & {e.id for e in held}
    assert 0 < len(held) < len(train)  # about a quarter held out
    assert select_part(examples, "all") == examples


def test_membership_does_not_depend_on_the_other_examples():
    examples = load_sample("musique")
    held = {e.id for e in select_part(examples, "heldout")}
    alone = [e.id for e in examples[:7] if select_part([e], "heldout")]
    assert set(alone) == held & {e.id for e in examples[:7]}
    assert all(is_heldout(e) == (e.id in held) for e in examples)


def test_bad_part_names_the_key():
    with pytest.raises(ConfigError, match="sources.part"):
        select_part(load_sample("bamboogle"), "test", key="sources.part")
