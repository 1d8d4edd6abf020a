"""What the fuzz tests share: hypothesis profiles, hostile payloads, and a quick fast folder.

Profiles (``CROSSDOCK_FUZZ=<name>``, default ``fuzz``), each a hypothesis settings profile:

==============  ========  ===================================================================
profile         examples  for
==============  ========  ===================================================================
``fuzz``        5,000     the suite as ``pytest`` runs it (each handler 1-3 minutes on the 2-core
                          box under load: hypothesis itself costs ~1-4 ms CPU an example here)
``fuzz-ci``     1,500     ``.ci/run``, which must stay under 15 minutes in all
``fuzz-quick``  300       a developer's edit-test loop
``fuzz-deep``   50,000    a night's run before a release
==============  ========  ===================================================================

The file fuzz runs ``FILE_SHARE`` (a real ingest and merge, ~60 ms an example) and
``INSPECT_SHARE`` of those examples.

``messages(seeds, ...)`` draws what a hostile or broken client sends: arbitrary bytes, JSON of the
wrong shape, an envelope with a random body, a *valid* message (one of ``seeds``) with one
part replaced by a wrong type, a huge or unicode-edge string, or removed, messages near and
over the size limit, nesting 200,000 deep, lone surrogates."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from sync.codec import DEFAULT_MAX_BYTES

_COMMON: dict[str, Any] = {
    "deadline": None, "database": None, "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                              HealthCheck.function_scoped_fixture,
                              HealthCheck.large_base_example]}
settings.register_profile("fuzz", max_examples=5_000, **_COMMON)
settings.register_profile("fuzz-ci", max_examples=1_500, **_COMMON)
settings.register_profile("fuzz-quick", max_examples=300, **_COMMON)
settings.register_profile("fuzz-deep", max_examples=50_000, **_COMMON)
PROFILE = os.environ.get("CROSSDOCK_FUZZ", "fuzz")
FUZZ = settings.get_profile(PROFILE)
EXAMPLES: int = FUZZ.max_examples
FILE_SHARE = 0.06  # 300 of 5,000: each writes an export and runs a real ingest and merge
INSPECT_SHARE = 0.2  # 1,000 of 5,000: each writes a table and inspects it


def share(fraction: float) -> settings:
    """The profile's settings with ``fraction`` of its examples (at least 50)."""
    return settings(FUZZ, max_examples=max(50, int(EXAMPLES * fraction)))


@contextlib.contextmanager
def reported(name: str, seen: collections.Counter[str]) -> Iterator[None]:
    """Around a fuzz run: one line (``pytest -s``) with its examples, wall and CPU seconds (the
    process's, every thread: the box may be shared), and what became of the examples."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"\n{name}: {sum(seen.values())} examples in {wall:.1f} s (CPU {cpu:.1f} s, "
          f"{PROFILE}): " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))


@contextlib.contextmanager
def fast_dir(prefix: str) -> Iterator[Path]:
    """A fresh folder in memory (/dev/shm) when there is one, else in the temp folder: the
    stores' fsyncs then cost nothing, and the fuzz measures the handlers, not the disk."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix=f"crossdock-{prefix}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- strategies -------------------------------------------------------------------------------

EDGE_TEXT = ["", "\x00", "\u202e", "\ufeff", "\ud800", "\udfff", "\uffff", "\U0010ffff",
             "e\u0301", "\u0130", "\u00df", "\u2028", "\r\n", "../../etc/passwd", "%s%n",
             "'; DROP TABLE events;--", "+", "#", "/", "$SYS", " ", "\t", "0" * 129,
             "\U0001f69a" * 40]
"""Strings that broke something somewhere: NUL, bidi override, BOM, lone surrogates,
non-characters, combining marks, case-folding traps, line separators, paths, SQL, MQTT
wildcards and separators, one over the 128-character id limit, astral emoji."""
odd_text = st.one_of(st.sampled_from(EDGE_TEXT),
                     st.text(alphabet=st.characters(codec=None, exclude_categories=()),
                             max_size=40))
huge_text = st.sampled_from([1 << 10, 1 << 16, DEFAULT_MAX_BYTES // 2]).map(lambda n: "x" * n)
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(), odd_text)
_keys = st.one_of(st.sampled_from(("v", "kind", "id", "body", "seq", "event_id", "order_id",
                                   "")), st.sampled_from(EDGE_TEXT))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)), max_leaves=6)
"""Any JSON (keys from the envelope's own names and the edge strings: a recursive strategy
over arbitrary text costs hypothesis ~6 ms an example, this ~2)."""


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


wrong = st.one_of(scalars, scalars, huge_text, st.integers(1, 500).map(_nested), json_values)
"""What replaces a part of a valid message: any JSON, a huge string, a deep list (json.dumps
stops near 1,000 levels; deeper nesting is drawn as raw bytes in ``payloads``)."""


def envelope(kind: Any, body: Any, origin: Any,
             hlc: str = "001795777200000-000000-x") -> dict[str, Any]:
    return {"v": 1, "kind": kind, "id": "x-1", "origin": origin, "hlc": hlc, "body": body}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every part's path, 8 levels deep at most (what a mutation put in is not walked)."""
    yield prefix
    if len(prefix) >= 8:
        return
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value[:20]):
            yield from _paths(inner, (*prefix, i))


def _replace(value: Any, path: tuple[Any, ...], new: Any, *, delete: bool) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        out = dict(value)
        if delete and not rest:
            out.pop(head, None)
        elif not rest:
            out[head] = new
        else:
            out[head] = _replace(value[head], rest, new, delete=delete)
        return out
    out_list = list(value)
    if delete and not rest:
        del out_list[head]
    else:
        out_list[head] = _replace(value[head], rest, new, delete=delete)
    return out_list


_SWAP = st.one_of(odd_text, st.sampled_from(("1", "x" * 128, "A" * 2001)))
_HOWS = st.integers(0, 3)
_COIN = st.booleans()


def _mutate(draw: st.DrawFn, message: Any) -> Any:
    """A valid message with 1-3 parts replaced (a wrong type, a huge or edge string, deep
    nesting), removed, or a key added. (Plain functions taking ``draw``, not composites: a
    strategy built per draw costs hypothesis more than the handler under test.)"""
    for _ in range(draw(st.integers(1, 3))):
        paths = tuple(_paths(message))
        path = paths[draw(st.integers(min(1, len(paths) - 1), len(paths) - 1))]
        how = draw(_HOWS)
        if how == 0 and path:
            message = _replace(message, path, None, delete=True)
        elif how == 1:
            parent = path[:-1] if path else ()
            target = message
            for step in parent:
                target = target[step]
            if isinstance(target, dict):
                message = _replace(message, (*parent, draw(odd_text)), draw(wrong),
                                   delete=False)
        else:
            message = _replace(message, path, draw(wrong), delete=False)
    return message if isinstance(message, dict) else {"v": 1, "body": message}


def _odd_strings(draw: st.DrawFn, value: Any, key: Any = None) -> Any:
    """``value`` with some of its strings (not ``kind``, ``hlc``) swapped for edge-case text:
    often still valid, so the message reaches the handler's own checks."""
    if isinstance(value, dict):
        return {k: _odd_strings(draw, v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_odd_strings(draw, v) for v in value]
    if isinstance(value, str) and key not in ("kind", "hlc") and draw(_ONE_IN_4) == 3:
        return draw(_SWAP)
    return value


_ONE_IN_4 = st.integers(0, 3)


def _dump(draw: st.DrawFn, value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=draw(_COIN))
    return text.encode("utf-8", "surrogatepass")


_CHOICES = st.sampled_from((0, 1, 2, 3, 3, 3, 3, 3, 4, 5, 6, 7, 8, 8, 8))
Seed = tuple[str, dict[str, Any]]
"""A valid message and the topic it belongs on."""


_BINARY = st.binary(max_size=300)
_HLCS = st.one_of(st.just("001795777200000-000000-x"), odd_text)
_SIZES = st.sampled_from((DEFAULT_MAX_BYTES - 2000, DEFAULT_MAX_BYTES + 1, 3 << 20))
_DEPTHS = st.integers(10, 200_000)
_BAD_UTF8 = st.sampled_from((b"\xc0\xaf", b"\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\xff",
                             b"\x00"))


def messages(seeds: list[Seed], kinds: list[str],
             topics: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, bytes]]:
    """(topic, hostile bytes) for a handler whose valid messages are ``seeds``: half the time
    on the seed's own topic (where it passes the broker and meets the handler's checks)."""
    pick = st.sampled_from(tuple(seeds))
    kind = st.one_of(st.sampled_from(tuple(kinds)), odd_text)

    @st.composite
    def draw_message(draw: st.DrawFn) -> tuple[str, bytes]:
        topic, seed = draw(pick)
        payload = _payload(draw, draw(_CHOICES), seed, kind)
        return (topic if draw(_COIN) else draw(topics)), payload

    return draw_message()


def _payload(draw: st.DrawFn, choice: int, seed: dict[str, Any],
             kind: st.SearchStrategy[str]) -> bytes:
    if choice == 0:
        return draw(_BINARY)
    if choice == 1:
        return _dump(draw, draw(json_values))
    if choice == 2:  # an envelope of a real or odd kind, a random body, odd origin and hlc
        return _dump(draw, envelope(draw(kind), draw(json_values), draw(odd_text),
                                    hlc=draw(_HLCS)))
    if choice == 3:  # the valid message, its strings swapped for edge-case text
        return _dump(draw, _odd_strings(draw, seed))
    if choice == 4:  # just under and over the size limit
        return json.dumps({**seed, "pad": "x" * draw(_SIZES)}).encode()
    if choice == 5:  # deep nesting, in a list or in objects
        depth = draw(_DEPTHS)
        if draw(_COIN):
            return b'{"v":1,"kind":"status","body":' + b"[" * depth + b"]" * depth + b"}"
        return b'{"v":1,"kind":"ack","body":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    raw = _dump(draw, seed)
    if choice == 6:  # broken UTF-8 inside a valid message: overlong, a lone continuation
        # byte, a surrogate encoded, a truncated sequence, NUL
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(_BAD_UTF8) + raw[at:]
    if choice == 7:  # a valid message cut short (never to nothing: that clears a retained one)
        return raw[:draw(st.integers(1, max(1, len(raw) - 1)))]
    return _dump(draw, _mutate(draw, seed))
