"""A small depot on disk for the board's tests: gateway.toml with ``[board]``, a FoxPro export,
its mapping, a store ingested and merged, a login, and helpers that make a conflict or a held
proposal the way the gateway does (its command functions, not SQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gateway.config import GatewayConfig, load_config
from gateway.ingest.pipeline import ingest_source
from gateway.store.accounts import AccountStore
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.streams import commands
from gateway.streams.views import refresh, sync_driver
from sync.envelope import AssignCommand
from tests.system.depot import MAPPING, write_orders

PASSWORD = "correct horse"
ROWS = [("O-1", "D1", 1, "PLANNED"), ("O-2", "D1", 2, "PLANNED"), ("O-3", "D2", 1, "PLANNED")]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_depot(root: Path, *, broker: tuple[str, int] = ("127.0.0.1", 1883),
                board_port: int = 8080, rows: list[tuple[str, str, int, str]] | None = None
                ) -> GatewayConfig:
    (root / "export").mkdir(parents=True, exist_ok=True)
    (root / "legacy.mapping.toml").write_text(MAPPING, encoding="utf-8")
    (root / "gateway.toml").write_text(
        f'depot = "test-depot"\ndb = "gateway.sqlite"\n\n[broker]\n'
        f'url = "mqtt://{broker[0]}:{broker[1]}"\n\n'
        f'[board]\nhost = "127.0.0.1"\nport = {board_port}\n\n'
        '[[sources]]\nname = "legacy"\nkind = "foxpro"\npath = "export/orders.dbf"\n'
        'mapping = "legacy.mapping.toml"\n', encoding="utf-8")
    write_orders(root / "export" / "orders.dbf", rows or ROWS)
    cfg = load_config(root / "gateway.toml")
    with Store(cfg.db_path) as store:
        ingest_source(store, cfg, cfg.sources[0], now=now)
        refresh(store, cfg.merge_policy(), now())
        AccountStore(store).add_user("anna", PASSWORD, now())
    return cfg


def add_device(cfg: GatewayConfig, device: str, driver: str) -> None:
    with Store(cfg.db_path) as store:
        with store.transaction():
            DeviceStore(store).add(device, driver, "pw-" + device, now())
        sync_driver(store, driver, cfg.merge_policy(), now())


def dispatch_assign(cfg: GatewayConfig, order_id: str, driver: str, command_id: str) -> None:
    """A dispatcher's plain ``assign`` (no override): where legacy differs, a conflict."""
    with Store(cfg.db_path) as store:
        with store.transaction():
            commands.assign(store, AssignCommand(action="assign", order_id=order_id,
                                                 driver=driver, client="cli"),
                            command_id=command_id, policy=cfg.merge_policy(), now=now())
        refresh(store, cfg.merge_policy(), now())


def fetch(url: str, path: str, *, method: str = "GET", form: dict[str, str] | None = None,
          cafile: Path | None = None) -> tuple[int, dict[str, str], str]:
    """One plain HTTP(S) request, no redirects followed: (status, headers, text)."""
    import http.client
    import ssl
    from urllib.parse import urlencode, urlsplit

    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=10,
                                           context=ssl.create_default_context(
                                               cafile=None if cafile is None else str(cafile)))
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        body = None if form is None else urlencode(form)
        headers = {} if form is None else {"Content-Type": "application/x-www-form-urlencoded"}
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read().decode("utf-8", "replace"))
    finally:
        conn.close()
