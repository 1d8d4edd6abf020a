"""Claims read back from the store are built without validation: they must equal, and serialise
exactly as, the same claims validated."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gateway.store.core import Store
from sync.model import Claim

T = dt.datetime(2024, 6, 3, 6, 0, tzinfo=dt.UTC)


def test_claims_read_back_equal_validated_claims(tmp_path: Path) -> None:
    with Store(tmp_path / "g.sqlite") as store, store.transaction():
        store.add_claim_set(set_id="legacy:1:A", source="legacy", order_id="A",
                            vals={"driver": "D7", "eta": "2024-06-03T08:00:00+00:00",
                                  "window": {"start": "08:00", "end": None}, "load": 1.5,
                                  "sequence": 3, "ok": True},
                            as_of=T, received_at=T + dt.timedelta(minutes=5), hlc="h1",
                            source_rev="run1")
        store.add_claim_set(set_id="driver:e1", source="driver", order_id="A",
                            vals={"status": "delivered"}, as_of=T, received_at=T, hlc="h2",
                            based_on=["legacy:1:A#status"], present=False)
        claims = store.claims_for(["A", "B"])
    assert set(claims) == {"A"} and len(claims["A"]) == 7
    for claim in claims["A"]:
        validated = Claim(**{name: getattr(claim, name) for name in claim.model_fields_set})
        assert claim == validated
        assert claim.model_dump_json() == validated.model_dump_json()
        assert claim.model_dump_json(exclude_unset=True) == validated.model_dump_json(
            exclude_unset=True)
        assert Claim.model_validate_json(claim.model_dump_json()) == claim
