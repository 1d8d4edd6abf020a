"""Encode and decode envelopes. ``decode`` raises CodecError and nothing else, whatever the bytes.

The reason tags: ``too-large`` (over ``max_bytes``), ``not-json`` (not UTF-8 JSON, or nested
too deep), ``not-object``, ``bad-version`` (``v`` missing or not one we speak), ``unknown-kind``,
``invalid`` (a field fails validation, or a string holds a lone UTF-16 surrogate escape such as
``"\\udfff"``, which no store or wire can write back as UTF-8; the message names the first one).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from sync.envelope import ENVELOPE, KINDS, PROTOCOL_VERSION, Envelope
from sync.errors import CodecError

DEFAULT_MAX_BYTES = 1024 * 1024

# A surrogate (U+D800-DFFF) can reach a decoded string two ways: a JSON escape ("\\udfff"; a
# pair, an escaped emoji, decodes to one character and is fine) or its 3 bytes ED A0-BF xx,
# which strict UTF-8 forbids but pydantic-core's parser lets through. Either then fails in
# whoever writes the string as UTF-8 (found by tests/security/test_fuzz_handlers: the agent's
# snapshot). One scan for both; the careful look runs only on a hit.
_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]|\xed[\xa0-\xbf]")


def encode(envelope: Envelope) -> bytes:
    """The envelope as compact UTF-8 JSON; fields at their default are left out (decode
    fills them in), which keeps a view change small on the wire."""
    return envelope.model_dump_json(exclude_defaults=True).encode()


def decode(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Envelope:
    """Decode and validate one envelope; CodecError says what was wrong in one line.

    A good message is parsed and validated in one pass by pydantic-core's JSON parser (no
    intermediate dicts: a 250 KB ``view_changes`` decodes in about half the time of
    ``json.loads`` + validation). Anything it refuses is looked at again step by step, to
    name the first thing wrong with the reason tags above."""
    if len(data) > max_bytes:
        raise CodecError("too-large", f"payload of {len(data)} bytes is over the {max_bytes} limit")
    if _SURROGATE.search(data):
        _refuse_lone_surrogates(data)
    try:
        return ENVELOPE.validate_json(data)
    except (ValidationError, ValueError, TypeError, RecursionError):
        pass
    return _diagnose(data)


def _refuse_lone_surrogates(data: bytes) -> None:
    try:
        raw = json.loads(data)  # decodes with surrogatepass: encoded ones come through too
    except (ValueError, RecursionError):
        return  # not JSON at all: the decode below names that
    try:
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        kind = raw.get("kind") if isinstance(raw, dict) else None
        where = f"{kind}: " if isinstance(kind, str) and kind in KINDS else ""
        raise CodecError("invalid", f"{where}a string holds a lone UTF-16 surrogate "
                                    f"({exc.object[exc.start:exc.end]!a})") from None
    except (ValueError, RecursionError):
        return


def _diagnose(data: bytes) -> Envelope:
    """The step-by-step decode of a payload the one-pass parser refused: raises CodecError
    with its reason (or returns the envelope, should the two parsers ever disagree)."""
    try:
        raw: Any = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CodecError("not-json", f"payload is not UTF-8 JSON: {_short(exc)}") from None
    if not isinstance(raw, dict):
        raise CodecError("not-object", f"payload is a JSON {type(raw).__name__}, not an object")
    version = raw.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise CodecError(
            "bad-version", f"protocol version {_short(version)} is not {PROTOCOL_VERSION}"
        )
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise CodecError("unknown-kind", f"unknown message kind {_short(kind)}")
    try:
        return ENVELOPE.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "envelope"
        raise CodecError("invalid", f"{kind}: {where}: {err['msg']}") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise CodecError("invalid", f"{kind}: {_short(exc)}") from None


def _short(thing: object, limit: int = 80) -> str:
    text = repr(thing) if not isinstance(thing, BaseException) else str(thing)
    return text if len(text) <= limit else text[: limit - 1] + "…"
