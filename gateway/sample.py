"""A realistic Visual FoxPro export for demos and tests (``crossdock gateway sample``).

``write_sample(out_dir)`` writes two VFP tables (code page 1252, no memo fields) with the
``dbf`` package and returns a dict describing them, including the rows made dirty on purpose.

``orders.dbf`` columns (names are what a mapping refers to):

    ORDER_ID  C(12)   order id, e.g. "ORD-000123"
    DRIVER_ID C(8)    driver id, e.g. "DRV-007" (one row names an unknown driver)
    ROUTE     C(8)    route code, e.g. "R-07"
    SEQ       N(4,0)  stop sequence on the route
    STATUS    C(12)   legacy spellings: PLANNED, Planned, DLYD, Delayed, delayed-wx, CANC, ...
    CUSTOMER  C(40)   customer name
    ADDRESS   C(60)   street, number, postcode and city
    LAT       N(10,6) latitude (one row is out of range)
    LON       N(10,6) longitude
    WIN_START T       delivery window start (naive local time)
    WIN_END   T       delivery window end
    ETA       T       estimated arrival (one row is blank)
    LOAD_KG   N(8,1)  load in kilograms
    NOTES     C(80)   free text

``drivers.dbf`` columns: DRIVER_ID C(8), NAME C(40), VEHICLE C(12), CAPACITYKG N(8,1)
(a DBF field name has at most 10 characters, hence not CAPACITY_KG).

The output is deterministic for a given ``seed`` (and ``day``).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dbf

__all__ = ["DRIVER_COLUMNS", "ORDER_COLUMNS", "write_sample", "write_vfp_table"]

ORDER_COLUMNS = (
    "ORDER_ID C(12); DRIVER_ID C(8); ROUTE C(8); SEQ N(4,0); STATUS C(12); CUSTOMER C(40); "
    "ADDRESS C(60); LAT N(10,6); LON N(10,6); WIN_START T; WIN_END T; ETA T; LOAD_KG N(8,1); "
    "NOTES C(80)"
)
DRIVER_COLUMNS = "DRIVER_ID C(8); NAME C(40); VEHICLE C(12); CAPACITYKG N(8,1)"

DEPOT_LAT, DEPOT_LON = 52.520008, 13.404954  # Berlin Mitte

STATUS_SPELLINGS = {
    "planned": ["PLANNED", "Planned", "planned", "PLAN"],
    "delayed": ["DLYD", "Delayed", "delayed-wx", "DELAYED", "Verspätet"],
    "cancelled": ["CANC", "Cancelled", "CANCELED"],
    "delivered": ["DELIVERED", "Delivered", "DLVD"],
    "en_route": ["ENROUTE", "En Route"],
}
_STATUS_WEIGHTS = {"planned": 60, "en_route": 15, "delayed": 12, "delivered": 8, "cancelled": 5}

_FIRST = ["Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hakan", "Ines", "Jonas",
          "Katarzyna", "Lukas", "Mara", "Niklas", "Olga", "Paul", "Reza", "Sophie", "Timo", "Ute",
          "Vera", "Yusuf", "Zoe", "Jürgen", "Malgorzata", "Sören"]  # fmt: skip
_LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
         "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Yilmaz", "Nowak", "Krüger",
         "Hartmann", "Lange", "Werner"]  # fmt: skip
_STREETS = ["Karl-Marx-Allee", "Frankfurter Allee", "Sonnenallee", "Kantstraße", "Torstraße",
            "Schönhauser Allee", "Invalidenstraße", "Oranienstraße", "Bergmannstraße",
            "Hermannstraße", "Greifswalder Straße", "Danziger Straße", "Müllerstraße",
            "Wilmersdorfer Straße", "Kurfürstendamm", "Boxhagener Straße"]  # fmt: skip
_DISTRICTS = [("10115", "Berlin-Mitte"), ("10243", "Berlin-Friedrichshain"),
              ("10435", "Berlin-Prenzlauer Berg"), ("10999", "Berlin-Kreuzberg"),
              ("12043", "Berlin-Neukölln"), ("10627", "Berlin-Charlottenburg"),
              ("13353", "Berlin-Wedding")]  # fmt: skip
_COMPANIES = ["Bäckerei", "Apotheke", "Café", "Blumen", "Getränke", "Feinkost", "Praxis Dr.",
              "Buchhandlung", "Kiosk", "Eisenwaren"]  # fmt: skip
_NOTES = ["", "", "", "Hinterhof, 2. Aufgang", "Bitte klingeln bei Nachbarn",
          "Lieferung an Rampe", "Kühlware!", "Nicht vor 9 Uhr", "Hund im Hof",
          "Annahme nur werktags"]  # fmt: skip
_VEHICLES = ["Sprinter", "Crafter", "e-Vito", "Transit", "Cargo-Bike"]
_CAPACITY = {"Sprinter": 1200.0, "Crafter": 1300.0, "e-Vito": 900.0, "Transit": 1100.0,
             "Cargo-Bike": 150.0}  # fmt: skip


def _pick_status(rng: random.Random) -> str:
    kinds = list(_STATUS_WEIGHTS)
    kind = rng.choices(kinds, weights=[_STATUS_WEIGHTS[k] for k in kinds])[0]
    return rng.choice(STATUS_SPELLINGS[kind])


def write_vfp_table(path: Path, spec: str, rows: Iterable[Any]) -> Path:
    """A Visual FoxPro table (cp1252) with ``rows`` (dicts by lower-case column name, or tuples
    in column order), replacing any earlier one; as the legacy system's export writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_suffix(".fpt"), path.with_suffix(".cdx")):
        stale.unlink(missing_ok=True)
    table = dbf.Table(str(path), spec, dbf_type="vfp", codepage="cp1252")
    table.open(dbf.READ_WRITE)
    try:
        for row in rows:
            table.append(row)
    finally:
        table.close()
    return path


def write_sample(
    out_dir: Path,
    *,
    drivers: int = 47,
    orders: int = 142,
    seed: int = 1,
    depot: str = "depot-1",
    day: dt.date | None = None,
) -> dict[str, Any]:
    """Write ``orders.dbf`` and ``drivers.dbf`` into ``out_dir``; describe what was written.

    The returned dict has ``paths``, ``counts``, ``columns``, ``depot``, ``day`` and ``dirty``:
    a list of ``{"table", "row", "order_id", "field", "reason"}`` for the rows that are wrong on
    purpose (out-of-range latitude, unknown status, unknown driver, duplicated order id, blank
    ETA). Needs at least 1 driver and 6 orders.
    """
    if drivers < 1 or orders < 6:
        raise ValueError("a sample needs at least 1 driver and 6 orders")
    rng = random.Random(seed)
    day = day or dt.date(2024, 6, 3)
    out_dir.mkdir(parents=True, exist_ok=True)

    driver_rows: list[dict[str, Any]] = []
    for i in range(1, drivers + 1):
        vehicle = rng.choice(_VEHICLES)
        driver_rows.append(
            {
                "driver_id": f"DRV-{i:03d}",
                "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                "vehicle": vehicle,
                "capacitykg": _CAPACITY[vehicle],
            }
        )

    order_rows: list[dict[str, Any]] = []
    seq_by_driver: dict[str, int] = {}
    for i in range(1, orders + 1):
        driver = driver_rows[rng.randrange(drivers)]["driver_id"]
        seq = seq_by_driver.get(driver, 0) + 1
        seq_by_driver[driver] = seq
        start_hour = rng.randint(7, 16)
        win_start = dt.datetime.combine(day, dt.time(start_hour, rng.choice((0, 30))))
        win_end = win_start + dt.timedelta(hours=rng.choice((1, 2, 3)))
        eta = win_start + dt.timedelta(minutes=rng.randint(-20, 150))
        postcode, city = rng.choice(_DISTRICTS)
        customer = f"{rng.choice(_COMPANIES)} {rng.choice(_LAST)}"
        order_rows.append(
            {
                "order_id": f"ORD-{i:06d}",
                "driver_id": driver,
                "route": f"R-{int(driver[4:]):02d}",
                "seq": seq,
                "status": _pick_status(rng),
                "customer": customer,
                "address": f"{rng.choice(_STREETS)} {rng.randint(1, 180)}, {postcode} {city}",
                "lat": round(DEPOT_LAT + rng.uniform(-0.09, 0.09), 6),
                "lon": round(DEPOT_LON + rng.uniform(-0.15, 0.15), 6),
                "win_start": win_start,
                "win_end": win_end,
                "eta": eta,
                "load_kg": round(rng.uniform(2.0, 180.0), 1),
                "notes": rng.choice(_NOTES),
            }
        )

    # Dirty rows, at distinct positions chosen by the seed (row numbers are 1-based).
    picks = rng.sample(range(orders), 5)
    dirty: list[dict[str, Any]] = []

    def mark(index: int, field: str, reason: str) -> None:
        dirty.append(
            {
                "table": "orders.dbf",
                "row": index + 1,
                "order_id": order_rows[index]["order_id"],
                "field": field,
                "reason": reason,
            }
        )

    order_rows[picks[0]]["lat"] = 123.4
    mark(picks[0], "LAT", "latitude 123.4 is out of range")
    order_rows[picks[1]]["status"] = "ZZZ"
    mark(picks[1], "STATUS", "unknown status spelling 'ZZZ'")
    order_rows[picks[2]]["driver_id"] = "DRV-999"
    mark(picks[2], "DRIVER_ID", "unknown driver id 'DRV-999'")
    order_rows[picks[3]]["eta"] = None
    mark(picks[3], "ETA", "ETA is blank")
    twin = dict(order_rows[picks[4]])
    twin["notes"] = "Nachlieferung"
    order_rows.append(twin)
    mark(picks[4], "ORDER_ID", f"order id {twin['order_id']} appears twice")
    dirty.append({**dirty[-1], "row": len(order_rows)})

    orders_path = out_dir / "orders.dbf"
    drivers_path = out_dir / "drivers.dbf"
    write_vfp_table(orders_path, ORDER_COLUMNS, order_rows)
    write_vfp_table(drivers_path, DRIVER_COLUMNS, driver_rows)

    return {
        "depot": depot,
        "day": day.isoformat(),
        "seed": seed,
        "encoding": "cp1252",
        "depot_position": {"lat": DEPOT_LAT, "lon": DEPOT_LON},
        "paths": {"orders": str(orders_path), "drivers": str(drivers_path)},
        "counts": {"orders": len(order_rows), "drivers": len(driver_rows)},
        "columns": {
            "orders": [c.split()[0] for c in ORDER_COLUMNS.split(";")],
            "drivers": [c.split()[0] for c in DRIVER_COLUMNS.split(";")],
        },
        "status_spellings": {k: list(v) for k, v in STATUS_SPELLINGS.items()},
        "dirty": sorted(dirty, key=lambda d: d["row"]),
    }
