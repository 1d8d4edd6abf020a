"""Row validation: a source's raw row → the order's field values, or the reasons it is refused.

Two steps, both per row and cheap enough for a million-row export:

1. convert (plain functions): the mapping's columns are read, text trimmed, statuses looked up
   in the vocabulary, naive times put in the mapping's zone, numbers parsed. A value that
   cannot be converted is a problem naming the field, the raw value and why.
2. validate (pydantic, one module-level TypeAdapter): types and ranges of the converted values
   (latitude -90..90, longitude -180..180, sequence and load not negative, a known driver).

The values that come out are plain JSON, ready to be claims: ``location`` is
``{"lat", "lon"}``, ``window`` is ``{"start", "end"}`` and times are ISO 8601 with offset.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError
from pydantic import JsonValue as _Json
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from gateway.ingest.base import FAULTS_KEY, PROBLEM_KEY, RawRow
from gateway.ingest.mapping import Mapping
from gateway.ingest.quick import TEXT_FIELDS, QuickPath


@dataclass(frozen=True)
class Problem:
    field: str
    raw: str
    reason: str


@dataclass(frozen=True)
class Valid:
    row: int
    order_id: str
    values: dict[str, _Json]


@dataclass(frozen=True)
class Invalid:
    row: int
    order_id: str | None
    problems: tuple[Problem, ...]


class _Location(TypedDict):
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class _Window(TypedDict, total=False):
    start: str | None
    end: str | None


class _Order(TypedDict, total=False):
    driver: Annotated[str, Field(min_length=1, max_length=64)] | None
    route: str | None
    sequence: Annotated[int, Field(ge=0)] | None
    status: str
    customer: str | None
    address: str | None
    location: _Location | None
    window: _Window | None
    eta: str | None
    load: Annotated[float, Field(ge=0)] | None
    notes: str | None


_ORDER: TypeAdapter[_Order] = TypeAdapter(_Order)
_ORDERS: TypeAdapter[list[_Order]] = TypeAdapter(list[_Order])


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _raw_text(value: object) -> str:
    if value is None:
        return "NULL"
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def _text(value: object) -> str | None:
    if value.__class__ is str:
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, Decimal | float) and value == int(value):
        value = int(value)
    text = str(value).strip()
    return text or None


def _number(value: object) -> float | None:
    cls = value.__class__
    if cls is Decimal or cls is float or cls is int:
        try:
            return float(value)  # type: ignore[arg-type]
        except (ValueError, OverflowError):  # a signalling NaN, an int past float's range
            raise _Bad("is not a number") from None
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Bad("is a logical, not a number")
    if isinstance(value, int | float | Decimal):
        return float(value)
    text = str(value).strip().replace(",", ".") if isinstance(value, str) else None
    if not text:
        if text == "":
            return None
        raise _Bad(f"is a {type(value).__name__}, not a number")
    try:
        return float(Decimal(text))
    except (InvalidOperation, ValueError):
        raise _Bad("is not a number") from None


def _integer(value: object) -> int | None:
    number = _number(value)
    if number is None:
        return None
    if not math.isfinite(number) or number != int(number):  # int(inf) would raise
        raise _Bad("is not a whole number")
    return int(number)


_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%Y%m%d%H%M%S",
)


class _Times:
    """Parses times in a mapping's zone; remembers the last format that worked (exports are
    consistent, so the first try almost always hits)."""

    def __init__(self, mapping: Mapping) -> None:
        self.zone = mapping.zone
        self.last_format = _TIME_FORMATS[0]

    def __call__(self, value: object) -> str | None:
        if value.__class__ is _dt.datetime:
            if value.tzinfo is None:
                return value.replace(tzinfo=self.zone).isoformat()
            return value.isoformat()
        if value is None:
            return None
        if isinstance(value, _dt.datetime):
            moment = value
        elif isinstance(value, _dt.date):
            raise _Bad("is a date without a time")
        elif isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            moment = self._parse(text)
        else:
            raise _Bad(f"is a {type(value).__name__}, not a time")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.isoformat()

    def _parse(self, text: str) -> _dt.datetime:
        for fmt in (self.last_format, *_TIME_FORMATS):
            try:
                moment = _dt.datetime.strptime(text, fmt)
            except ValueError:
                continue
            self.last_format = fmt
            return moment
        try:
            return _dt.datetime.fromisoformat(text)
        except ValueError:
            raise _Bad("is not a time this mapping can read") from None


def _adapter_problems(values: Any) -> tuple[Problem, ...]:
    faults = values.get(FAULTS_KEY)
    if isinstance(faults, list) and faults:
        return tuple(Problem(str(f[0]), str(f[1]), str(f[2])) for f in faults)
    return (Problem("row", "", str(values[PROBLEM_KEY])),)


_MISSING = object()
_NUMBER_TYPES = (int, float, Decimal)


class RowValidator:
    """Validates one source's rows against its mapping (and the known drivers, when listed).

    ``validate_many`` is the fast path for a stream: the rows are converted one by one, then the
    converted values of a whole batch go through pydantic in one call (the same checks as
    ``validate``, without a Python-to-pydantic round trip per row).
    """

    def __init__(self, mapping: Mapping, *, drivers: frozenset[str] | None = None,
                 partial: bool = False) -> None:
        """``partial``: a row states only the fields whose columns it has (an optimizer's
        proposal names what it changes); a column it lacks is not stated, not a problem."""
        self.partial = partial
        self._partial_cache: dict[frozenset[str], RowValidator] = {}
        self.mapping = mapping
        self.columns = mapping.columns
        self.vocab = mapping.vocabulary()
        self.drivers = drivers
        self.times = _Times(mapping)
        col = self.columns
        self._texts = tuple((f, col[f]) for f in TEXT_FIELDS if f in col)
        self._location = "lat" in col or "lon" in col
        self._window = "window_start" in col or "window_end" in col
        self._required = tuple(mapping.required)
        self._quick = QuickPath(mapping, drivers)

    def validate(self, raw: RawRow) -> Valid | Invalid:
        result = self._convert(raw)
        if isinstance(result, Valid):
            try:
                _ORDER.validate_python(result.values)
            except ValidationError as exc:
                return Invalid(raw.row, result.order_id,
                               tuple(self._pydantic_problems(raw, exc.errors())))
        return result

    def validate_many(self, raws: Sequence[RawRow]) -> list[Valid | Invalid]:
        """``validate`` for each row, in order: a clean row in one call (``QuickPath``), the
        others converted one by one, then pydantic sees them in one call."""
        results: list[Valid | Invalid] = []
        careful: list[int] = []
        quick = None if self.partial else self._quick
        for raw in raws:
            done = quick(raw.values) if quick is not None else None
            if done is None:
                careful.append(len(results))
                results.append(self._convert(raw))
            else:
                results.append(Valid(raw.row, done[0], done[1]))
        index = [i for i in careful if isinstance(results[i], Valid)]
        if not index:
            return results
        try:
            _ORDERS.validate_python([results[i].values for i in index])  # type: ignore[union-attr]
        except ValidationError as exc:
            by_item: dict[int, list[Any]] = {}
            for err in exc.errors():
                by_item.setdefault(int(err["loc"][0]), []).append(
                    {**err, "loc": err["loc"][1:]})
            for item, errors in by_item.items():
                i = index[item]
                raw = raws[i]
                results[i] = Invalid(raw.row, results[i].order_id,
                                     tuple(self._pydantic_problems(raw, errors)))
        return results

    def _pydantic_problems(self, raw: RawRow, errors: Sequence[Any]) -> list[Problem]:
        out = []
        col = self.columns
        for err in errors:
            loc = [str(p) for p in err["loc"]]
            field = {"lat": "lat", "lon": "lon"}.get(loc[-1], loc[0])
            raw_value = _raw_text(raw.values.get(col.get(field, ""), err.get("input")))
            out.append(Problem(field, raw_value, f"{field}: {err['msg']}"))
        return out

    def _for_columns(self, keys: frozenset[str]) -> RowValidator:
        found = self._partial_cache.get(keys)
        if found is None:
            columns = {f: c for f, c in self.columns.items() if c in keys or f == "order_id"}
            mapping = self.mapping.model_copy(update={"columns": columns, "required": ()})
            found = self._partial_cache[keys] = RowValidator(mapping, drivers=self.drivers)
        return found

    def _convert(self, raw: RawRow) -> Valid | Invalid:
        """Step 1 (plain functions): a Valid whose values pydantic has still to check, or the
        row's problems."""
        if self.partial:
            return self._for_columns(frozenset(raw.values))._convert(raw)
        values = raw.values
        problems: list[Problem] = []
        if PROBLEM_KEY in values:
            # a row the adapter could not read whole: its own reason(s), not one per column
            return Invalid(raw.row, _text(values.get(self.columns["order_id"])),
                           _adapter_problems(values))
        col = self.columns
        out: dict[str, Any] = {}

        def get(field: str) -> object:
            name = col.get(field)
            if name is None:
                return None
            value = values.get(name, _MISSING)
            if value is _MISSING:
                problems.append(Problem(field, "", f"column {name} is missing"))
                return None
            return value

        def convert(field: str, fn: Any, raw_value: object) -> Any:
            try:
                return fn(raw_value)
            except _Bad as bad:
                problems.append(Problem(field, _raw_text(raw_value), f"{field} {bad.reason}"))
                return None

        order_id = _text(get("order_id"))
        if order_id is None:
            problems.append(Problem("order_id", _raw_text(values.get(col["order_id"])),
                                    "order_id is empty"))
        for field, name in self._texts:
            value = values.get(name, _MISSING)
            if value.__class__ is str:
                out[field] = value.strip() or None
            elif value is _MISSING:
                problems.append(Problem(field, "", f"column {name} is missing"))
                out[field] = None
            else:
                out[field] = _text(value)
        if "sequence" in col:
            out["sequence"] = convert("sequence", _integer, get("sequence"))
        if "load" in col:
            out["load"] = convert("load", _number, get("load"))
        if "status" in col:
            raw_status = get("status")
            spelled = _text(raw_status)
            status = self.vocab.get(spelled.casefold()) if spelled else None
            if status is None:
                why = "status is empty" if spelled is None else (
                    f"status spelling {spelled!r} is not in the mapping's vocabulary"
                )
                problems.append(Problem("status", _raw_text(raw_status), why))
            else:
                out["status"] = status
        if self._location:
            lat = convert("lat", _number, get("lat"))
            lon = convert("lon", _number, get("lon"))
            out["location"] = None if lat is None or lon is None else {"lat": lat, "lon": lon}
        if self._window:
            start = convert("window_start", self.times, get("window_start"))
            end = convert("window_end", self.times, get("window_end"))
            out["window"] = None if start is None and end is None else {"start": start, "end": end}
        if "eta" in col:
            out["eta"] = convert("eta", self.times, get("eta"))
        for req in self._required:
            if req in out and out[req] is None and not any(p.field == req for p in problems):
                problems.append(Problem(req, "", f"{req} is empty"))
        driver = out.get("driver")
        if self.drivers is not None and driver is not None and driver not in self.drivers:
            problems.append(Problem("driver", driver, f"driver {driver!r} is not a known driver"))
        if problems or order_id is None:
            return Invalid(raw.row, order_id, tuple(problems))
        return Valid(raw.row, order_id, out)
