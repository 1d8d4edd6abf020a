"""A merged view as the gateway stores and streams it (``Merged``), and the shortcut for the
common order whose claims are one claim set's (``OneSet``, ``Merged.of_one_set``).

``Merged.of_one_set`` is the merge of ``sync.merge`` for such an order, decided there: each
field has one live claim (rule 2), so rules 3 to 9, which need a second one, leave it
``agreed`` on that claim. It writes the text ``Merged.of(merge_order(...))`` writes, byte for
byte, with string templates instead of models (a first ingest merges every order of an
export this way: the models cost a third of its refresh, pydantic's ``to_json`` over a dict
of the view two thirds of what was left). Property tests hold the two paths together
(tests/sync/test_merge_one_set.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from pydantic import JsonValue
from pydantic_core import to_json

from sync.merge import drivers_of
from sync.model import OrderView
from sync.rules import RULE_FIELDS, rule_inputs


class OneSet(NamedTuple):
    """All an order's merge depends on when its one source's latest claim set covers every
    field that source ever claimed, and is present: each field then has one live claim, from
    this set (rule 2), and rules 3 to 9 need a second one. The common order: one export,
    run after run."""

    set_id: str
    source: str
    vals: Mapping[str, JsonValue]
    as_of: datetime
    received_at: datetime


class Merged(NamedTuple):
    """A merged view as the gateway stores and streams it: its JSON (the wire's compact form,
    ``model_dump_json(exclude_defaults=True)``), its drivers (``drivers_of``), its rule inputs
    (``sync.rules.rule_inputs``) and the earliest deadline of its open, unescalated conflicts."""

    order_id: str
    body: str
    drivers: list[str]
    inputs: dict[str, JsonValue]
    deadline: datetime | None

    @classmethod
    def of(cls, view: OrderView) -> Merged:
        deadlines = [c.deadline for c in view.conflicts() if not c.escalated]
        return cls(view.order_id, view.model_dump_json(exclude_defaults=True), drivers_of(view),
                   rule_inputs(view), min(deadlines) if deadlines else None)

    @classmethod
    def of_one_set(cls, order_id: str, one: OneSet) -> Merged:
        """``Merged.of(merge_order(...))`` for an order whose claims are ``one``'s, built from
        the set's values without the claims and views: every field agreed on its one
        candidate. The same text, byte for byte: a template per shape (source, field names,
        times; ``_template``) filled with the order's id, set id and value texts."""
        vals = one.vals
        names = tuple(vals)
        key = (one.source, names, one.as_of, one.as_of.utcoffset(), one.received_at,
               one.received_at.utcoffset())  # equal instants in other zones are written apart
        found = _TEMPLATES.get(key)
        if found is None:
            if len(_TEMPLATES) > 256:
                _TEMPLATES.clear()
            found = _TEMPLATES[key] = _template(one.source, names, one.as_of, one.received_at)
        template, order = found
        set_text = encode_basestring(one.set_id)[:-1]  # the claim id's text up to the '#'
        args = [encode_basestring(order_id)]
        for name in order:
            v: Any = vals[name]
            cls_ = v.__class__
            if cls_ is str:  # json_text, inlined for the kinds of an export's values
                text = ',"value":' + encode_basestring(v)
            elif v is None:  # the models' default: left out, as exclude_defaults does
                text = ""
            elif cls_ is int:
                text = ',"value":' + int.__repr__(v)
            elif cls_ is float and (1e-4 <= abs(v) < 1e16 or v == 0.0):
                text = ',"value":' + float.__repr__(v)
            else:
                text = ',"value":' + json_text(v)
            args += (text, text, set_text)
        return cls(order_id, template % tuple(args), set_drivers(vals), settled_inputs(vals),
                   None)


def set_drivers(vals: Mapping[str, JsonValue]) -> list[str]:
    """``sync.merge.drivers_of`` a one-set view, from its set's values."""
    driver = vals.get("driver")
    return [driver] if isinstance(driver, str) and driver else []


def settled_inputs(vals: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """``sync.rules.rule_inputs`` of a one-set view, from its set's values (of a stored rule
    inputs mapping: the same mapping back)."""
    return {n: v for n in RULE_FIELDS if (v := vals.get(n)) is not None}


def _template(source: str, names: tuple[str, ...], as_of: datetime, received_at: datetime
              ) -> tuple[str, tuple[str, ...]]:
    """The ``%``-template of a one-set view's JSON and the field order of its arguments: the
    order id's text, then per field (by name) its ``,"value":...`` text (empty for None)
    twice and the claim id's text up to the ``#``."""
    def lit(text: str) -> str:
        return text.replace("%", "%%")

    order = tuple(sorted(names))
    src, times = lit(encode_basestring(source)), lit(to_json(as_of).decode())
    received = lit(to_json(received_at).decode())
    parts = []
    for name in order:
        key, tail = lit(encode_basestring(name)), lit(encode_basestring("#" + name)[1:])
        parts.append(f'{key}:{{"field":{key},"state":"agreed"%s,"candidates":[{{"source":'
                     f'{src}%s,"as_of":{times},"claim_id":%s{tail},"received_at":'
                     f'{received}}}]}}')
    return '{"order_id":%s,"fields":{' + ",".join(parts) + "}}", order


def json_text(value: JsonValue) -> str:
    """A JSON value's text as ``pydantic_core.to_json`` writes it (compact, UTF-8 unescaped),
    without a call into it for strings, integers, booleans and the floats that both Python's
    ``repr`` and to_json's (ryu's) shortest form write positionally (1e-4 <= |x| < 1e16: below
    Python writes ``1e-05`` where ryu writes ``0.00001``, above ``1e+16`` for
    ``10000000000000000.0``). JSON's string escapes are the same in both: ``\\"``, ``\\\\``,
    ``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\f`` and ``\\u00XX`` for the other control
    characters, lower-case hex."""
    v: Any = value  # dispatched on its exact class (a subclass goes to to_json)
    cls = v.__class__
    if cls is str:
        return encode_basestring(v)
    if cls is int:
        return int.__repr__(v)
    if cls is float and (1e-4 <= abs(v) < 1e16 or v == 0.0):
        return float.__repr__(v)
    if cls is bool:
        return "true" if v else "false"
    return to_json(v).decode()


_TEMPLATES: dict[tuple[object, ...], tuple[str, tuple[str, ...]]] = {}
