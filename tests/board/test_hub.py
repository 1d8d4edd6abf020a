"""The hub hands every open board what changed, once per change: a section whose frame changed
goes whole, a section whose rows alone changed goes as those rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

from gateway.board.hub import Hub
from gateway.store.core import Store


def frames(tablets: dict[str, str], header: str = "2 online") -> dict[str, str]:
    rows = {f"row-tablet-{d}": f"<tr id='row-tablet-{d}'>{v}</tr>" for d, v in tablets.items()}
    empty = "".join(f"<tr id='row-tablet-{d}'></tr>" for d in tablets)
    return {"summary": f"<p>{header}</p>",
            "tablets": f"<h2>{header}</h2>{''.join(rows.values())}",
            "tablets@shape": f"<h2>{header}</h2>{empty}", **rows}


def test_a_change_to_one_tablet_sends_that_row_and_a_new_frame_sends_the_section(
        tmp_path: Path) -> None:
    db = tmp_path / "gateway.sqlite"
    Store(db).close()
    renders = [frames({"a": "1/3", "b": "3/3"}), frames({"a": "2/3", "b": "3/3"}),
               frames({"a": "2/3", "b": "3/3"}, header="1 online")]
    seen: list[dict[str, Any]] = []
    hub = Hub(db, lambda _store, _now: (renders[min(len(seen), len(renders) - 1)], {}),
              clock=lambda: dt.datetime.now(dt.UTC), poll_s=0.02, min_gap_s=0.0)

    def commit(n: int) -> None:  # another connection commits: data_version moves
        with Store(db) as store, store.transaction():
            store.set_meta("test", str(n))

    async def follow() -> None:
        _key, queue = hub.subscribe()
        for n in range(3):
            seen.append(json.loads(await asyncio.wait_for(queue.get(), 10)))
            await asyncio.to_thread(commit, n)

    hub.start()
    try:  # a loop of its own in its own thread, as the server's (Playwright may hold this one)
        runner = threading.Thread(target=lambda: asyncio.run(follow()))
        runner.start()
        runner.join(30)
    finally:
        hub.stop()
    assert len(seen) == 3
    first, one_row, new_frame = seen
    assert set(first["sections"]) == {"summary", "tablets"} and first["rows"] == {}
    assert one_row["sections"] == {} and list(one_row["rows"]) == ["row-tablet-a"]
    assert "2/3" in one_row["rows"]["row-tablet-a"]
    assert set(new_frame["sections"]) == {"summary", "tablets"} and new_frame["rows"] == {}
    assert hub.sections["tablets"] == renders[2]["tablets"]  # what a new board gets first
