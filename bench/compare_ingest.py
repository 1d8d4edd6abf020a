"""Two checkouts' ``crossdock gateway ingest`` on one VFP export, beside a bare dbfread loop,
in one sitting (issue 9's before/after table): the command an operator runs, as a subprocess,
wall time, each checkout twice in alternating order.

    .venv/bin/python bench/compare_ingest.py ROWS BEFORE_REPO AFTER_REPO

Each repo needs its own ``.venv`` with crossdock installed; the table and mapping come from
AFTER_REPO's ``bench.bench_ingest``, so both read the same file the same way. Unlike
``bench_ingest`` (one checkout, phase shares, re-ingest, RSS) this works for any two commits,
also ones from before ``bench_ingest`` measured the CLI.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    rows, before, after = int(argv[0]), Path(argv[1]), Path(argv[2])
    sys.path.insert(0, str(after))
    from bench.bench_foxpro import generate
    from bench.bench_ingest import CONFIG, MAPPING

    root = Path(f"/tmp/cmp-ingest-{rows}")
    pristine = root / "orders.dbf"
    if not pristine.exists():
        root.mkdir(parents=True, exist_ok=True)
        generate(pristine, rows)

    def bare() -> float:
        code = ("import time,dbfread,sys;t=time.perf_counter();"
                "n=sum(1 for _ in dbfread.DBF(sys.argv[1],encoding='cp1252'));"
                "print(time.perf_counter()-t, n)")
        out = subprocess.run([str(after / ".venv/bin/python"), "-c", code, str(pristine)],
                             check=True, capture_output=True, text=True).stdout.split()
        return float(out[0])

    def ingest(repo: Path) -> tuple[float, str]:
        work = root / f"run-{repo.name}"
        shutil.rmtree(work, ignore_errors=True)
        (work / "work").mkdir(parents=True)
        for suffix in (".dbf", ".fpt"):
            shutil.copy(pristine.with_suffix(suffix), work / "work" / f"orders{suffix}")
        (work / "bench.mapping.toml").write_text(MAPPING)
        (work / "gateway.toml").write_text(CONFIG)
        t = time.perf_counter()
        out = subprocess.run([str(repo / ".venv/bin/crossdock"), "gateway", "ingest", "--config",
                              str(work / "gateway.toml"), "--json"], capture_output=True, text=True,
                             cwd=work)
        wall = time.perf_counter() - t
        try:
            status = json.loads(out.stdout)["runs"][0]["status"]
        except Exception:
            status = f"exit {out.returncode}: {out.stderr.strip()[-200:]}"
        return wall, status

    results: dict[str, list[float]] = {"bare": [], "before": [], "after": []}
    for order in (("bare", "before", "after"), ("bare", "after", "before")):
        for name in order:
            if name == "bare":
                s = bare()
                results["bare"].append(s)
                print(f"bare dbfread {s:6.2f} s", flush=True)
            else:
                s, st = ingest(before if name == "before" else after)
                results[name].append(s)
                print(f"{name:6} ingest {s:6.2f} s  ({st})", flush=True)
    for name in ("before", "after"):
        ratios = [b / s for b, s in zip(results["bare"], results[name], strict=True)]
        print(f"{name}: ratio to bare dbfread {min(ratios):.2f}-{max(ratios):.2f} "
              f"({rows / min(results[name]):,.0f} rows/s best)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
