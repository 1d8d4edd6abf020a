"""Row validation: conversions, problems named by field and raw value, batch = one by one."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from legacy import order, write_mapping

from gateway.ingest.base import FAULTS_KEY, RawRow
from gateway.ingest.mapping import load_mapping
from gateway.ingest.quick import QuickPath
from gateway.ingest.validate import PROBLEM_KEY, Invalid, RowValidator, Valid
from gateway.store.sql import canonical_json


@pytest.fixture
def validator(tmp_path: Path) -> RowValidator:
    mapping = load_mapping(write_mapping(tmp_path / "m.toml"))
    return RowValidator(mapping, drivers=frozenset({"D1", "D2"}))


def test_clean_row_converts_to_claim_values(validator: RowValidator) -> None:
    result = validator.validate(RawRow(1, order("O-1", STATUS=" delayed-wx ", NOTES="  ")))
    assert isinstance(result, Valid)
    assert result.values["status"] == "delayed"
    assert result.values["notes"] is None
    assert result.values["location"] == {"lat": 52.52, "lon": 13.4}
    assert result.values["eta"] == "2026-11-27T10:30:00+01:00"


def test_dbf_types_convert_like_text(validator: RowValidator) -> None:
    raw = {**order("O-1"), "LAT": Decimal("52.520000"), "LON": 13.4,
           "ETA": dt.datetime(2026, 11, 27, 10, 30)}
    result = validator.validate(RawRow(1, raw))
    assert isinstance(result, Valid)
    assert result.values["location"] == {"lat": 52.52, "lon": 13.4}
    assert result.values["eta"] == "2026-11-27T10:30:00+01:00"


def test_every_problem_of_a_row_is_reported(validator: RowValidator) -> None:
    result = validator.validate(RawRow(7, order("O-1", LAT="N/A", STATUS="ZZZ",
                                                DRIVER_ID="D9")))
    assert isinstance(result, Invalid)
    assert result.row == 7 and result.order_id == "O-1"
    assert [(p.field, p.raw) for p in result.problems] == [
        ("status", "ZZZ"), ("lat", "N/A"), ("driver", "D9")]


def test_a_ragged_row_gets_one_reason_not_one_per_absent_column(
    validator: RowValidator,
) -> None:
    raw = {k: v for k, v in order("O-1").items() if k not in ("ETA", "NOTES", "LON")}
    raw[PROBLEM_KEY] = "row has 4 fields, header has 7"
    result = validator.validate(RawRow(3, raw))
    assert isinstance(result, Invalid) and result.order_id == "O-1"
    assert [(p.field, p.reason) for p in result.problems] == [
        ("row", "row has 4 fields, header has 7")]


def test_byte_faults_become_one_problem_each_with_hex_raw(validator: RowValidator) -> None:
    raw: dict[str, object] = {k: v for k, v in order("O-2").items() if k != "LAT"}
    raw[PROBLEM_KEY] = "LAT: invalid number b'N/A'"
    raw[FAULTS_KEY] = [["LAT", "4e 2f 41", "LAT: invalid number b'N/A'"]]
    result = validator.validate(RawRow(4, raw))
    assert isinstance(result, Invalid) and result.order_id == "O-2"
    assert [(p.field, p.raw, p.reason) for p in result.problems] == [
        ("LAT", "4e 2f 41", "LAT: invalid number b'N/A'")]


def test_empty_order_id_is_refused(validator: RowValidator) -> None:
    result = validator.validate(RawRow(1, order("  ")))
    assert isinstance(result, Invalid) and result.order_id is None
    assert result.problems[0].reason == "order_id is empty"


def test_validate_many_gives_what_validate_gives_row_by_row(validator: RowValidator) -> None:
    rows = [RawRow(i, r) for i, r in enumerate([
        order("O-1"), order("O-2", LAT="95"), order("O-3", LON="200", LAT="-91"),
        order("O-4", ETA="soon"), order("O-5", STATUS=""), order("O-6")], 1)]
    assert validator.validate_many(rows) == [validator.validate(r) for r in rows]
    (bad,) = [r for r in validator.validate_many(rows) if r.row == 3]
    assert isinstance(bad, Invalid)
    assert sorted(p.field for p in bad.problems) == ["lat", "lon"]


def test_partial_rows_state_only_their_columns(tmp_path: Path) -> None:
    mapping = load_mapping(write_mapping(tmp_path / "m.toml"))
    validator = RowValidator(mapping, partial=True)
    result = validator.validate(RawRow(1, {"ORDER_ID": "O-1", "DRIVER_ID": "D3"}))
    assert isinstance(result, Valid)
    assert result.values == {"driver": "D3"}


_FULL_MAPPING = """\
required = ["status"]

[source]
timezone = "Europe/Berlin"

[columns]
order_id = "ORDER_ID"
driver = "DRIVER_ID"
route = "ROUTE"
status = "STATUS"
sequence = "SEQ"
lat = "LAT"
lon = "LON"
window_start = "WIN_START"
window_end = "WIN_END"
eta = "ETA"
load = "LOAD_KG"
notes = "NOTES"

[status]
planned = ["PLANNED", "Planned"]
delayed = ["DLYD", " delayed-wx "]
"""

_texts = st.one_of(st.none(), st.sampled_from(["", "  ", " D1 ", "PLANNED", " planned ", "DLYD",
                                               "delayed-wx", "ZZZ", "Kühl\u00a0", "x" * 70,
                                               "a\udc81", "\u00a0"]), st.text(max_size=6))
_numbers = st.one_of(
    st.none(), st.booleans(), st.integers(-(2 ** 60), 2 ** 60), st.sampled_from([0, 1, -1]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["52.5", "N/A", ""]),
    st.decimals(allow_nan=True, allow_infinity=True, places=6),
    st.sampled_from([Decimal("-0.0"), Decimal("1E+400"), Decimal("90.000001")]))
_times = st.one_of(
    st.none(), st.sampled_from(["", "2026-11-27 10:30", "soon"]), st.dates(),
    st.datetimes(min_value=dt.datetime(1890, 1, 1), max_value=dt.datetime(2100, 1, 1)),
    st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5))])),
    st.sampled_from([dt.datetime(2024, 3, 31, 2, 30), dt.datetime(2024, 10, 27, 2, 30)]))
_COLUMN_VALUES = {"ORDER_ID": _texts, "DRIVER_ID": _texts, "ROUTE": _texts, "STATUS": _texts,
                  "SEQ": _numbers, "LAT": _numbers, "LON": _numbers, "WIN_START": _times,
                  "WIN_END": _times, "ETA": _times, "LOAD_KG": _numbers, "NOTES": _texts}


@settings(max_examples=400, deadline=None)
@given(values=st.fixed_dictionaries({}, optional=_COLUMN_VALUES),
       drivers=st.sampled_from([None, frozenset({"D1"})]))
def test_the_quick_path_accepts_only_what_validate_accepts_with_the_same_values(
    tmp_path_factory: pytest.TempPathFactory, values: dict[str, object],
    drivers: frozenset[str] | None,
) -> None:
    path = tmp_path_factory.mktemp("m") / "m.toml"
    path.write_text(_FULL_MAPPING, encoding="utf-8")
    validator = RowValidator(load_mapping(path), drivers=drivers)
    quick = QuickPath(validator.mapping, drivers)(values)
    careful = validator.validate(RawRow(1, values))
    if quick is not None:
        assert isinstance(careful, Valid)
        assert quick[0] == careful.order_id
        assert canonical_json(quick[1]) == canonical_json(careful.values)
    (many,) = validator.validate_many([RawRow(1, values)])
    assert many == careful


def test_the_quick_path_takes_a_clean_dbf_row(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(_FULL_MAPPING, encoding="utf-8")
    validator = RowValidator(load_mapping(path))
    row = {"ORDER_ID": "O-1 ", "DRIVER_ID": "D1", "ROUTE": None, "STATUS": "Planned ",
           "SEQ": 3, "LAT": Decimal("52.520000"), "LON": Decimal("13.4"),
           "WIN_START": None, "WIN_END": dt.datetime(2026, 7, 1, 12, 0), "ETA":
           dt.datetime(2026, 11, 27, 10, 30), "LOAD_KG": Decimal("12.5"), "NOTES": " Kühl "}
    quick = QuickPath(validator.mapping, None)(row)
    assert quick == ("O-1", {
        "driver": "D1", "route": None, "notes": "Kühl", "sequence": 3, "load": 12.5,
        "status": "planned", "location": {"lat": 52.52, "lon": 13.4},
        "window": {"start": None, "end": "2026-07-01T12:00:00+02:00"},
        "eta": "2026-11-27T10:30:00+01:00"})
    careful = validator.validate(RawRow(1, row))
    assert isinstance(careful, Valid) and careful.values == quick[1]
