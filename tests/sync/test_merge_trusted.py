"""The merge builds its views without validation (``sync.model.trusted``): they must equal, and
serialise exactly as, the views built by validating every model (the reference)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import sync.merge
from sync.merge import merge
from sync.model import Candidate, Claim, FieldView, OrderView, Policy, trusted
from tests.sync.factories import at
from tests.sync.test_merge_properties import histories

POLICIES = (Policy(), Policy(escalate_after=timedelta(minutes=5), rules=()))


def _validating(cls: type[BaseModel], **values: Any) -> BaseModel:
    return cls(**values)


def _same(got: BaseModel, want: BaseModel) -> None:
    assert got == want
    try:
        expected_hash = hash(want)
    except TypeError:  # a dict inside (OrderView.fields): neither hashes
        with pytest.raises(TypeError):
            hash(got)
    else:
        assert hash(got) == expected_hash
    assert got.model_dump_json() == want.model_dump_json()
    assert got.model_dump_json(exclude_defaults=True) == want.model_dump_json(exclude_defaults=True)
    assert got.model_dump_json(exclude_unset=True) == want.model_dump_json(exclude_unset=True)
    assert got.model_dump() == want.model_dump()
    assert repr(got) == repr(want)
    # and a validated copy of it is equal too (nothing in it that validation would change)
    assert type(want).model_validate_json(got.model_dump_json()) == want


@settings(max_examples=300, deadline=None)
@given(history=histories(), now=st.integers(min_value=0, max_value=300),
       policy=st.sampled_from(POLICIES))
def test_trusted_views_equal_validated_views(history, now, policy):
    claims, resolutions = history
    got = merge(claims, resolutions, policy, at(now))
    with mock.patch.object(sync.merge, "trusted", _validating):
        want = merge(claims, resolutions, policy, at(now))
    assert list(got.views) == list(want.views)
    for order_id, view in got.views.items():
        _same(view, want.views[order_id])
        for name, fv in view.fields.items():
            _same(fv, want.views[order_id].fields[name])
    assert got.conflicts == want.conflicts


def test_trusted_fills_defaults_and_refuses_unknown_or_missing_fields():
    fv = trusted(FieldView, field="eta", state="withdrawn")
    _same(fv, FieldView(field="eta", state="withdrawn"))
    assert fv.model_fields_set == {"field", "state"}
    with pytest.raises(TypeError, match="unknown"):
        trusted(FieldView, field="eta", state="agreed", colour="red")
    with pytest.raises(TypeError, match="required"):
        trusted(Candidate, source="legacy")
    view = trusted(OrderView, order_id="X", fields={"eta": fv})
    _same(view, OrderView(order_id="X", fields={"eta": FieldView(field="eta", state="withdrawn")}))
    claim = dict(claim_id="c#eta", order_id="X", field="eta", value={"b": [1, 2], "a": None},
                 source="legacy", as_of=at(1), received_at=at(2), hlc="h", based_on=("a",))
    _same(trusted(Claim, **claim), Claim(**claim))
