"""The stream messages, composed around the stored bodies: ``view_change``, ``view_changes``
and ``snapshot`` envelopes as bytes, and how entries and routes are cut into messages.
Exports ``view_change_bytes``, ``view_changes_bytes``, ``snapshot_bytes``, ``batches``,
``snapshot_parts``, ``older_than``, ``READS_VIEW_CHANGES``, ``READS_REFUSALS``, ``BATCH_BYTES``,
``SNAPSHOT_PART_CHARS``."""

from __future__ import annotations

import json

from gateway.store.devices import Entry
from sync.envelope import MAX_BATCH

# A stored view body (``Store.put_views``, ``DeviceStore.append``) is already an OrderView's JSON
# in the wire's compact form, so a ``view_change`` or ``snapshot`` is the envelope text around
# it: the same message ``sync.codec.encode`` makes of the models (tests/gateway/test_stream_wire
# decodes both and compares), without parsing and re-encoding the view per entry. Key order and
# left-out defaults follow ``encode``; the scalar parts go through ``json.dumps``.

_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def view_change_bytes(device: str, entry: Entry, *, hlc: str, head: int | None) -> bytes:
    """Stream entry ``entry`` of ``device`` as a ``view_change`` envelope (as ``encode``)."""
    view = "" if entry.body is None else f',"view":{entry.body}'
    tail = "" if head is None else f',"head":{int(head)}'
    return (f'{{"v":1,"id":{_json(f"{device}:{entry.seq}")},"origin":"gateway",'
            f'"hlc":{_json(hlc)},"kind":"view_change","body":{{"seq":{int(entry.seq)},'
            f'"order_id":{_json(entry.order_id)}{view}{tail}}}}}').encode()


READS_VIEW_CHANGES = (0, 2)
"""The first tablet version that reads ``view_changes`` (docs/PROTOCOL.md, Compatibility)."""

READS_REFUSALS = (0, 3)
"""The first tablet version that reads an ack's ``refused`` (docs/PROTOCOL.md, Compatibility);
older ones (and one that never sent its version) are acked refused events plainly."""


def older_than(version: str, wanted: tuple[int, ...]) -> bool:
    """True for a version like ``0.1.0`` below ``wanted``; False when it cannot be read."""
    try:
        parts = tuple(int(p) for p in version.split("+")[0].split(".")[:len(wanted)])
    except ValueError:
        return False
    return len(parts) == len(wanted) and parts < wanted


BATCH_BYTES = 64 * 1024
"""A ``view_changes`` message stops growing at this many bytes of view bodies (~35 stops): a
tablet gets a burst in pieces it commits one by one, and decoding one never builds so many
objects that Python runs a full collection of the tablet's heap. At 256 KiB it did (one gen-2
collection per tablet per big export): bench_fanout, one 50,000-change run to 200 tablets,
agents' CPU 13.3 s at 256 KiB, 5.2 s at 64 KiB."""


def batches(entries: list[Entry], *, max_entries: int = MAX_BATCH,
            max_bytes: int = BATCH_BYTES) -> list[list[Entry]]:
    """Consecutive entries cut into messages of at most ``max_entries`` entries and about
    ``max_bytes`` of bodies (a single larger entry goes alone)."""
    out: list[list[Entry]] = []
    group: list[Entry] = []
    size = 0
    for entry in entries:
        length = 0 if entry.body is None else len(entry.body)
        if group and (len(group) >= max_entries or size + length > max_bytes
                      or entry.seq != group[-1].seq + 1):
            out.append(group)
            group, size = [], 0
        group.append(entry)
        size += length
    if group:
        out.append(group)
    return out


def _entry_text(entry: Entry) -> str:
    view = "" if entry.body is None else f',"view":{entry.body}'
    return f'{{"seq":{int(entry.seq)},"order_id":{_json(entry.order_id)}{view}}}'


def view_changes_bytes(device: str, entries: list[Entry], *, hlc: str, head: int | None
                       ) -> bytes:
    """Consecutive entries of ``device``'s stream as one ``view_changes`` envelope."""
    tail = "" if head is None else f',"head":{int(head)}'
    first, last = entries[0].seq, entries[-1].seq
    return (f'{{"v":1,"id":{_json(f"{device}:{first}-{last}")},"origin":"gateway",'
            f'"hlc":{_json(hlc)},"kind":"view_changes","body":{{"entries":['
            f'{",".join(_entry_text(e) for e in entries)}]{tail}}}}}').encode()


def snapshot_bytes(device: str, seq: int, bodies: list[str], *, hlc: str, part: int = 1,
                   parts: int = 1) -> bytes:
    """The device's route at ``seq`` (stored view bodies) as a ``snapshot`` envelope; with
    ``parts`` > 1, part ``part`` of it (``bodies``: that part's views)."""
    views = f',"views":[{",".join(bodies)}]' if bodies else ""
    if parts == 1:
        msg_id, tail = f"{device}:snapshot:{seq}", ""
    else:
        msg_id = f"{device}:snapshot:{seq}:{part}"
        tail = (f',"part":{int(part)}' if part != 1 else "") + f',"parts":{int(parts)}'
    return (f'{{"v":1,"id":{_json(msg_id)},"origin":"gateway",'
            f'"hlc":{_json(hlc)},"kind":"snapshot","body":{{"seq":{int(seq)}{views}{tail}}}}}'
            ).encode()


SNAPSHOT_PART_CHARS = 512 * 1024
"""A snapshot whose views are longer than this goes in parts of about this much (the codec's
limit is 1 MiB a message: a route of ~600 stops would not fit in one)."""


def snapshot_parts(bodies: list[str], limit: int = SNAPSHOT_PART_CHARS) -> list[list[str]]:
    """The route's bodies cut into consecutive parts of about ``limit`` characters (a single
    larger body goes alone); one part, maybe empty, for a small route."""
    out: list[list[str]] = [[]]
    size = 0
    for body in bodies:
        if out[-1] and size + len(body) > limit:
            out.append([])
            size = 0
        out[-1].append(body)
        size += len(body)
    return out
