"""Files an operator starts from: ``gateway init``, ``gateway sample``, a tablet's config.

Everything written here is plain TOML a person can read and edit; files holding secrets
(gateway.toml, dispatch.toml, a tablet's config) are written 0600, and the gateway's folder is
0700, whatever the umask (``gateway.private``).
"""

from __future__ import annotations

import datetime as _dt
import secrets
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, load_config, read_toml
from gateway.errors import ConfigError
from gateway.ingest.mapping import known_drivers, source_mapping
from gateway.private import private_dir, write_private
from gateway.store.core import Store
from gateway.store.devices import DeviceStore
from gateway.timefmt import depot_zone

MAPPING_TEMPLATE = """\
# How crossdock reads this legacy system's export. Fields on the left, the export's columns
# on the right. `crossdock gateway inspect FILE` shows the columns a file has.
required = ["driver", "status", "eta"]

[source]
timezone = "{timezone}"
cadence = "0 0 * * *"     # the legacy system exports nightly at 00:00 (its values are as of then)

[columns]
order_id = "ORDER_ID"
driver = "DRIVER_ID"
route = "ROUTE"
sequence = "SEQ"
status = "STATUS"
customer = "CUSTOMER"
address = "ADDRESS"
lat = "LAT"
lon = "LON"
window_start = "WIN_START"
window_end = "WIN_END"
eta = "ETA"
load = "LOAD_KG"
notes = "NOTES"

[status]                  # every spelling the export uses; an unknown one is quarantined
planned = ["PLANNED", "Planned", "PLAN"]
en_route = ["ENROUTE", "En Route"]
delayed = ["DLYD", "Delayed", "delayed-wx", "DELAYED", "Verspätet"]
cancelled = ["CANC", "Cancelled", "CANCELED"]
delivered = ["DELIVERED", "Delivered", "DLVD"]
{drivers}"""

OPENSSL_RECIPE = (
    'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 '
    '-subj "/CN=crossdock broker" -addext "subjectAltName=DNS:depot-gw,IP:192.168.1.10" '
    "-keyout broker-key.pem -out broker-cert.pem && chmod 600 broker-key.pem"
)
"""How to make the broker's self-signed certificate by hand (``gateway init`` writes it)."""

CONFIG_TEMPLATE = """\
# crossdock gateway. Paths are relative to this file.
depot = "{depot}"
db = "gateway.sqlite"

[broker]
url = ""                  # "mqtt://host:port" of a running broker; empty: run Mosquitto here
host = "127.0.0.1"        # plain MQTT: loopback only, unless allow_plain_beyond_loopback = true
port = {port}
data_dir = "broker"
username = "gateway"
password = "{gateway_password}"
# TLS for the tablets on the depot network (README "TLS"): the listener above stays on
# loopback for the gateway and dispatch. `crossdock gateway tls-cert --host NAME_OR_IP` makes
# a self-signed certificate; by hand: {openssl_recipe}
# tls_port = 8883
# tls_host = "0.0.0.0"            # every interface
# certfile = "broker-cert.pem"
# keyfile = "broker-key.pem"
# public_host = "192.168.1.10"    # the name or IP tablets reach this box by (in the certificate)
# ca_file = "broker-cert.pem"     # what tablets trust; a self-signed certificate is its own CA

[policy]
escalate_after_min = 30   # an open conflict puts its stop on hold after this long
shift_cap_h = 10

# The only ways a value wins besides a person's choice: named rules, shown on screen by name.
# A legacy status older than a driver's outcome (delivered at 14:10, export as of 00:00) is
# shown as stale, not as a conflict. Remove the block (and write `rules = []` under [policy])
# to make every such case a conflict for dispatch.
[[policy.rules]]
name = "driver-outcome-over-older-export"
field = "status"
newer = "driver"
older = "legacy"
values = ["arrived", "delivered", "failed", "refused"]

[[sources]]
name = "legacy"
kind = "foxpro"
path = "{orders}"
mapping = "legacy.mapping.toml"
encoding = "cp1252"
cron = "30 0 * * *"       # read the nightly export at 00:30

[writeback]
kind = "csv"              # csv | dbf | odbc
path = "import"

# The dispatch board, served by `gateway run` (logins: `crossdock gateway users add NAME`).
# Beyond loopback it needs the depot's certificate (certfile, keyfile) and serves HTTPS.
# [board]
# host = "127.0.0.1"
# port = 8080
# timezone = "Europe/Berlin"   # the depot's zone; default: the first mapping's
"""

DISPATCH_TEMPLATE = """\
# crossdock dispatch: how `crossdock dispatch ...` reaches the gateway.
depot = "{depot}"
client = "dispatch"

[broker]
host = "127.0.0.1"
port = {port}
username = "dispatch"
password = "{password}"
"""


def _write_private(path: Path, text: str) -> None:
    """A file holding a secret: 0600, its folder created 0700 when missing."""
    if not path.parent.exists():
        private_dir(path.parent)
    write_private(path, text)


DEPOT_FILES = ("gateway.toml", "legacy.mapping.toml", "dispatch.toml", "gateway.sqlite")
"""What ``init`` writes: a folder holding any of them holds a depot."""
SAMPLE_FILES = (*DEPOT_FILES, "export/orders.dbf", "export/drivers.dbf")


def check_folder(directory: Path, *, command: str, names: tuple[str, ...] | None,
                 force: bool) -> None:
    """ConfigError unless ``directory`` can be written into without destroying anything.

    ``names``: the files ``command`` would replace (None: anything in the folder counts).
    ``force`` allows replacing them; a path that is a file is refused even then.
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{command}: {directory} is a file, not a folder")
    if force or not directory.is_dir():
        return
    if names is None:
        found = sorted(p.name for p in directory.iterdir())
    else:
        found = [name for name in names if (directory / name).exists()]
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        what = "holds a depot" if names is not None else "is not empty"
        raise ConfigError(f"{command}: {directory} {what} ({shown}); nothing was changed "
                          "(--force replaces it)")


def init_dir(directory: Path, *, depot: str, port: int, now: _dt.datetime,
             orders: str = "export/orders.dbf", drivers_file: str | None = None,
             timezone: str = "Europe/Berlin", force: bool = False) -> list[Path]:
    """gateway.toml, legacy.mapping.toml, dispatch.toml and an empty store in ``directory``
    (made 0700: it holds the store and the secrets, each 0600).

    ConfigError if the folder already holds a depot (any of ``DEPOT_FILES``), unless
    ``force``: then the files are rewritten (new passwords) and the store is kept."""
    check_folder(directory, command="gateway init", names=DEPOT_FILES, force=force)
    private_dir(directory)
    written = []
    drivers = (f'\n[drivers]\nfile = "{drivers_file}"\ncolumn = "DRIVER_ID"\n'
               if drivers_file else "")
    mapping = directory / "legacy.mapping.toml"
    mapping.write_text(MAPPING_TEMPLATE.format(timezone=timezone, drivers=drivers),
                       encoding="utf-8")
    written.append(mapping)
    config = directory / "gateway.toml"
    _write_private(config, CONFIG_TEMPLATE.format(
        depot=depot, port=port, orders=orders, gateway_password=secrets.token_urlsafe(18),
        openssl_recipe=OPENSSL_RECIPE))
    written.append(config)
    dispatch = directory / "dispatch.toml"
    _write_private(dispatch, DISPATCH_TEMPLATE.format(depot=depot, port=port,
                                                      password=secrets.token_urlsafe(18)))
    written.append(dispatch)
    (directory / "import").mkdir(exist_ok=True)
    cfg = load_config(config)
    with Store(cfg.db_path) as store, store.transaction():
        store.audit(now, "cli", "init", depot=depot)
    written.append(cfg.db_path)
    return written


def write_sample_config(out: Path, *, drivers: int, orders: int, seed: int, depot: str,
                        port: int, now: _dt.datetime, force: bool = False) -> dict[str, Any]:
    """A sample FoxPro export for today plus a gateway set-up that reads it as it is.

    ConfigError if ``out`` already holds a depot or an export, unless ``force``."""
    from gateway.sample import write_sample  # the dbf writer: +40 ms to every command

    check_folder(out, command="gateway sample", names=SAMPLE_FILES, force=force)
    info = write_sample(out / "export", drivers=drivers, orders=orders, seed=seed, depot=depot,
                        day=now.date())
    init_dir(out, depot=depot, port=port, now=now, orders="export/orders.dbf",
             drivers_file="export/drivers.dbf", force=True)
    info["config"] = str(out / "gateway.toml")
    info["dispatch_config"] = str(out / "dispatch.toml")
    return info


def dispatch_password(cfg: GatewayConfig) -> str | None:
    """The dispatch identity's password from dispatch.toml beside gateway.toml, if present."""
    path = cfg.path("dispatch.toml")
    if not path.exists():
        return None
    broker = read_toml(path).get("broker", {})
    value = broker.get("password") if isinstance(broker, dict) else None
    return str(value) if value else None


def _tablet_tls(cfg: GatewayConfig) -> tuple[str, int, bytes] | None:
    """With a TLS listener: the host and port tablets connect to and the certificate they
    trust; ConfigError when ``public_host`` is not set or the certificate cannot be read.
    None without TLS."""
    b = cfg.broker
    if b.tls_port is None or b.tablet_ca_file is None:  # certfile comes with tls_port
        return None
    if b.public_host is None:
        raise ConfigError("broker.public_host is not set: the name or IP tablets reach this "
                          "box by (one of the certificate's hosts)")
    source = cfg.path(b.tablet_ca_file)
    try:
        return b.public_host, b.tls_port, source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"broker ca_file {source}: cannot read: {exc.strerror}") from None


def check_agent_config(cfg: GatewayConfig) -> None:
    """ConfigError when a tablet's config could not be written from ``cfg`` (TLS without a
    public host, or a certificate that cannot be read): checked before a device is registered,
    so nothing half-done."""
    _tablet_tls(cfg)


def check_agent_file(path: Path, *, device: str, force: bool = False) -> None:
    """ConfigError when ``path`` is no place for ``device``'s tablet config: its folder does not
    exist, it is a folder, or it is another device's file (replaced only with ``force``).
    The same device's file is rewritten (a new credential, a new broker address)."""
    if not path.parent.is_dir():
        raise ConfigError(f"--agent-config {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise ConfigError(f"--agent-config {path}: is a folder, not a file")
    if not path.exists() or force:
        return
    try:
        owner = read_toml(path).get("device")
    except ConfigError:
        owner = None
    if owner != device:
        whose = f"device {owner}" if owner else "something else (not a tablet config)"
        raise ConfigError(f"--agent-config {path}: the file belongs to {whose}; nothing was "
                          "changed (choose another file, or --force replaces it)")


def check_driver(cfg: GatewayConfig, store: Store, driver: str) -> None:
    """ConfigError when the depot knows its drivers and ``driver`` is not one of them.

    Known: the ids a source's mapping lists (``[drivers]``), else the drivers on the orders
    ingested, and those already bound to a tablet. A depot that knows none yet (nothing
    ingested, no list) accepts any id."""
    listed: set[str] = set()
    lists = False
    for src in cfg.sources:
        if src.mapping is None:
            continue
        ids = known_drivers(cfg, source_mapping(cfg, src))
        if ids is not None:
            lists = True
            listed |= ids
    devices = DeviceStore(store)
    known = listed if lists else set(devices.drivers_with_routes())
    known |= {d.driver for d in devices.all()}
    if known and driver not in known:
        where = "the drivers list of the mapping" if lists else "any ingested order"
        near = sorted(known)[:3]
        raise ConfigError(f"driver {driver} is not known to depot {cfg.depot} (not in {where}; "
                          f"known are e.g. {', '.join(near)}); nothing was registered "
                          "(--force registers it anyway)")


def write_agent_config(path: Path, cfg: GatewayConfig, *, device: str, driver: str,
                       password: str, timezone: str | None = None) -> list[Path]:
    """The files a tablet needs: its config (broker, depot, device id, credential) and, when
    the broker has a TLS listener, the certificate it trusts beside it as ``<device>-ca.pem``.

    With TLS the tablet connects to ``public_host:tls_port`` and verifies the broker against
    that copy (``ca_file`` relative to the config, so both files move together). Returns the
    paths written; ConfigError if TLS is configured without ``public_host`` or a readable
    certificate. ``timezone``: the zone in which the tablet shows times; by default the
    depot's zone (``gateway.timefmt.depot_zone``, the one the CLI and the board show), so the
    driver reads the same clock as the dispatcher and a time said on the phone matches both.
    """
    if timezone is None:
        timezone = depot_zone(cfg).key
    host, port = cfg.broker.address
    tls_lines = "tls = false\n"
    written = [path]
    tls = _tablet_tls(cfg)
    if tls is not None:
        host, port, ca_text = tls
        ca_copy = path.with_name(f"{device}-ca.pem")
        if not ca_copy.parent.exists():  # the folder of a secret file: 0700
            private_dir(ca_copy.parent)
        ca_copy.write_bytes(ca_text)  # a certificate is public: the default mode is fine
        tls_lines = f'tls = true\nca_file = "{ca_copy.name}"\n'
        written.append(ca_copy)
    _write_private(path, (
        f'depot = "{cfg.depot}"\n'
        f'device = "{device}"\n'
        f'driver = "{driver}"\n'
        f'db = "{device}.sqlite"\n'
        f'timezone = "{timezone}"\n'
        + "\n[broker]\n"
        f'host = "{host}"\n'
        f"port = {port}\n"
        f'username = "{device}"\n'
        f'password = "{password}"\n'
        f"{tls_lines}"
    ))
    return written
