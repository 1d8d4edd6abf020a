"""Stream entries out: merged entries held per device and coalesced, entries another
process wrote caught up, and gap repair (replay or snapshot) for a tablet's resync."""

from __future__ import annotations

import time

from gateway.store.core import Store
from gateway.store.devices import DeviceStore, Entry
from gateway.streams.base import ServiceBase
from gateway.streams.views import refresh
from gateway.streams.watch import Handed, Repaired
from gateway.streams.wire import (
    batches,
    snapshot_bytes,
    snapshot_parts,
    view_change_bytes,
    view_changes_bytes,
)
from sync.streams import Replay, SendSnapshot, plan_repair


class Outflow(ServiceBase):
    """The service's outgoing streams (``COALESCE_S``, ``WATCH_S`` in ``service``)."""

    def _refresh_and_publish(self, store: Store) -> None:
        """Merge what is dirty; each device's new entries go out now, or with the next ones
        when the device was sent some less than ``coalesce_s`` ago (``COALESCE_S``)."""
        self._refresh_at = None  # this refresh takes what the ingest's was to take
        self._next_tick = time.monotonic() + self.tick_s  # and does what a tick does

        def hold(entries: dict[str, list[Entry]]) -> None:
            for device, device_entries in entries.items():
                if device_entries:
                    self._held.setdefault(device, []).extend(device_entries)
            self._flush(store, self._due())

        hold(refresh(store, self.policy, self.clock(), on_batch=hold))

    def _watch(self, store: Store) -> None:
        """Every ``watch_s``: when another process committed to the store since the last look,
        merge what it left dirty and publish the stream entries it wrote (``WATCH_S``)."""
        now = time.monotonic()
        if now < self._next_watch:
            return
        self._next_watch = now + self.watch_s
        version = store.data_version()
        if version == self._data_version:
            return
        self._data_version = version
        if store.dirty_count():  # merged as an ingest's refresh request is: once it settles
            if self.ingest_settle_s <= 0:
                self._refresh_and_publish(store)
            elif self._refresh_at is None:
                self._refresh_at = now + self.ingest_settle_s
        self._catch_up(store)

    def _catch_up(self, store: Store) -> None:
        """Hold, for publishing, the changelog entries no one here published or holds: those
        another process (a hand-run ingest's merge) appended."""
        devices = DeviceStore(store)
        for device, (first, last) in devices.bounds_of(d.device for d in devices.all()).items():
            published = self._published.get(device, 0)
            if last <= published:
                continue
            held = self._held.get(device, [])
            have = {e.seq for e in held}
            missing = [q for q in range(max(first, published + 1), last + 1) if q not in have]
            if not missing:
                continue
            wanted = set(missing)
            found = [e for e in devices.entries(device, missing[0], missing[-1])
                     if e.seq in wanted]
            if found:
                self._held[device] = sorted([*held, *found], key=lambda e: e.seq)

    def _due(self) -> list[str]:
        """The devices whose held entries may go out now."""
        now = time.monotonic()
        return [d for d in self._held
                if now - self._sent_at.get(d, float("-inf")) >= self.coalesce_s]

    def _flush(self, store: Store, due: list[str]) -> None:
        """Publish the held entries of these devices: each device's in one message (or a few:
        ``batches``), with the stream's head."""
        if not due:
            return
        with store.transaction():  # one stamp for the flush, every device's head
            hlc = store.next_hlc(self.clock())
            bounds = DeviceStore(store).bounds_of(due)
        now = time.monotonic()
        for device in due:
            held = self._held.pop(device, [])
            if held:
                head = bounds.get(device, (1, held[-1].seq))[1]
                self._publish_entries(store, device, held, hlc=hlc, head=head)
            self._sent_at[device] = now

    def _publish_entries(self, store: Store, device: str, entries: list[Entry], *,
                         hlc: str | None = None, head: int | None = None) -> None:
        if not entries:
            return
        topic = self.topics.inbox(device)
        if hlc is None:
            hlc = self._hlc(store)
        if head is None:
            head = DeviceStore(store).bounds(device)[1]
        self._published[device] = max(self._published.get(device, 0), entries[-1].seq)
        for group in batches(entries):
            if len(group) == 1:
                payload = view_change_bytes(device, group[0], hlc=hlc, head=head)
            else:
                payload = view_changes_bytes(device, group, hlc=hlc, head=head)
            self.link.publish(topic, payload)
            self.published += 1
            self.stream_messages += 1
            self.published_entries += len(group)
            if self._watchers:
                self._tell(Handed(device, topic, len(payload), len(group), self._repairing))

    def _resync(self, store: Store, device: str, after: int) -> None:
        started = time.perf_counter()
        self._repairing = True
        try:
            plan = self._repair(store, device, after)
        finally:
            self._repairing = False
        if self._watchers:
            self._tell(Repaired(device, after, plan, time.perf_counter() - started))

    def _repair(self, store: Store, device: str, after: int) -> str:
        self._held.pop(device, None)  # in the changelog: the repair below sends what is due
        devices = DeviceStore(store)
        first, last = devices.bounds(device)
        plan = plan_repair(after, first=first, last=last)
        if isinstance(plan, Replay):
            self._publish_entries(store, device, devices.entries(device, plan.first, plan.last))
            self._sent_at[device] = time.monotonic()
            self._count(store, "replays")  # a repair served: gateway/status shows how many
            return "replay"
        if isinstance(plan, SendSnapshot):
            with store.transaction():
                seq, bodies = devices.snapshot(device)
                devices.bump("snapshots")
            self._published[device] = max(self._published.get(device, 0), seq)
            hlc = self._hlc(store)
            parts = snapshot_parts(bodies, self.snapshot_part_chars)
            for part, chunk in enumerate(parts, start=1):
                payload = snapshot_bytes(device, seq, chunk, hlc=hlc, part=part,
                                         parts=len(parts))
                self.link.publish(self.topics.inbox(device), payload)
                self.published += 1
                if self._watchers:
                    self._tell(Handed(device, self.topics.inbox(device), len(payload), 0, True))
            self._sent_at[device] = time.monotonic()
            return "snapshot"
        return "up to date"
