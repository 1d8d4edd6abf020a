"""Mapping files: vocabulary, cadence and as_of, one-line errors naming file and key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from legacy import write_mapping

from gateway.errors import ConfigError
from gateway.ingest.mapping import load_mapping


def test_vocabulary_maps_every_spelling_trimmed_and_case_folded(tmp_path: Path) -> None:
    mapping = load_mapping(write_mapping(tmp_path / "m.toml"))
    vocab = mapping.vocabulary()
    assert vocab["dlyd"] == vocab["delayed-wx"] == vocab["delayed"] == "delayed"
    assert "zzz" not in vocab


def test_nightly_cadence_sets_as_of_to_the_last_export(tmp_path: Path) -> None:
    mapping = load_mapping(write_mapping(tmp_path / "m.toml"))
    run_at = dt.datetime(2026, 11, 27, 8, 12, tzinfo=dt.UTC)
    assert mapping.as_of(run_at).isoformat() == "2026-11-27T00:00:00+01:00"
    assert mapping.cadence_seconds() == 86400


def test_a_changed_mapping_has_a_new_digest(tmp_path: Path) -> None:
    path = write_mapping(tmp_path / "m.toml")
    before = load_mapping(path).digest
    write_mapping(path, extra_status='cancelled = ["ZZZ"]\n')
    assert load_mapping(path).digest != before


@pytest.mark.parametrize(("text", "message"), [
    ("[columns]\ndriver = 'D'\n", "order_id must be mapped"),
    ("[columns]\norder_id = 'O'\ncolour = 'C'\n", "unknown field 'colour'"),
    ("[source]\ntimezone = 'Mars/Olympus'\n[columns]\norder_id = 'O'\n", "unknown time zone"),
    ("[source]\ncadence = '0 25 * * *'\n[columns]\norder_id = 'O'\n", "out of range"),
    ("[status]\nsnoozing = ['Z']\n[columns]\norder_id = 'O'\n", "status.snoozing"),
    ("columns = [", "not valid TOML"),
], ids=["no-order-id", "unknown-field", "zone", "cadence", "status", "toml"])
def test_a_wrong_mapping_is_a_one_line_config_error(tmp_path: Path, text: str,
                                                    message: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_mapping(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)
