"""The packaged beta(L) table at fixed xi/L, generated from the committed tuning scans.

``lattice_samplers/data/beta_tuned.csv`` (what ``theory.beta = "tuned"`` reads) is not edited
by hand: this study collects every finished ``tune`` task of the scans under ``data/tuning``
(``scan/`` for L = 6..20, ``L32/scan/`` for L = 32, any later one alike), writes the table
from their results with the tune workflow's own writer, and copies it into the package.  A
test regenerates it and fails if the packaged file differs, so the three places the numbers
appear (the scan records, the package, the results page) cannot drift apart.

Writes: the packaged CSV, the results table (``docs/results/beta_table.md``, between its
markers) and this study's section of ``data/tuning/README.md``.  ``--check`` writes nothing
and exits 1 when the packaged table differs from the generated one.

Examples::

    python -m studies.beta_table            # regenerate after a new `lattice-samplers tune`
    python -m studies.beta_table --check    # CI: is the packaged table up to date?
    python -m studies.beta_table --quick    # CI: into runs/beta_table-quick only
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from lattice_samplers.scan import collect_scan, load_scan
from lattice_samplers.workflows.tune import TuneResult, result_from_dict, write_table
from studies._common import (
    DATA,
    JOBS,
    ROOT,
    plus_minus,
    publish_table,
    report,
    write_data_readme,
    write_text,
)

__all__ = ["PACKAGED", "generate", "main", "markdown_table", "tune_results"]

#: The table the package ships (read by ``theory.beta = "tuned"``).
PACKAGED = ROOT / "lattice_samplers" / "data" / "beta_tuned.csv"
TUNING = DATA / "tuning"


def _fail(message: str) -> NoReturn:
    print(f"beta_table: {message}", file=sys.stderr)
    raise SystemExit(2)


def tune_results(tuning: Path = TUNING) -> list[TuneResult]:
    """Every finished task of every tune scan under ``tuning`` (one per lam, target and L).

    Stops with exit status 2 and a one-line message when a scan has a missing or corrupt
    task, or when two scans hold the same (lam, xi/L, L): which one the package should ship
    would be a guess.
    """
    results: dict[tuple[float, float, int], tuple[Path, TuneResult]] = {}
    for scan_json in sorted(tuning.glob("**/scan.json")):
        folder = scan_json.parent
        config = load_scan(folder)["config"]
        for rec in collect_scan(config, folder, JOBS, base_dir=folder):
            if rec.result is None:
                _fail(f"{folder}: task {rec.task_id} is {rec.status}; rerun its tune")
            r = result_from_dict(rec.result)
            key = (r.lam, r.xi_over_L_target, r.L)
            if key in results:
                other = results[key][0]
                _fail(f"L = {r.L}, lam = {r.lam} is tuned in both {other} and {folder}")
            results[key] = (folder, r)
    if not results:
        _fail(f"no tune scan under {tuning}")
    return [r for _, r in results.values()]


def generate(tuning: Path = TUNING) -> str:
    """The text of the beta table the tune workflow writes for these results."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_table(tune_results(tuning), tmp, meta={}).read_text()


def markdown_table(csv_text: str) -> str:
    """The results table: per L the tuned beta, the check of xi/L, and the paper's value."""
    import csv
    import io

    head = ["L", "lam", "beta (tuned)", "xi/L at the check", "paper", "tuned - paper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in csv.DictReader(io.StringIO(csv_text)):
        beta, paper = float(r["beta"]), r["beta_paper"]
        diff = f"{beta - float(paper):+.4f}" if paper else ""
        cells = [r["L"], r["lam"], plus_minus(beta, float(r["beta_err"]), ".5f", ".5f"),
                 plus_minus(float(r["xi_over_L"]), float(r["xi_over_L_err"]), ".4f", ".4f"),
                 paper, diff]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tuning", type=Path, default=TUNING, help="folder of the tune scans")
    p.add_argument("--check", action="store_true", help="only compare with the packaged table")
    p.add_argument("--quick", action="store_true",
                   help="write into runs/beta_table-quick, not the package")  # fmt: skip
    args = p.parse_args(argv)
    text = generate(args.tuning)
    if args.check:
        same = PACKAGED.read_text() == text
        print(f"{PACKAGED.relative_to(ROOT)}: {'up to date' if same else 'DIFFERS, regenerate'}")
        return 0 if same else 1
    if args.quick:
        out = Path("runs/beta_table-quick")
        report([write_text(out / "beta_tuned.csv", text), write_text(out / "beta_table.md",
                markdown_table(text))])  # fmt: skip
        return 0
    written = [write_text(PACKAGED, text)]
    written += publish_table(args.tuning, "beta_table", "beta_table", markdown_table(text))
    what = (
        "The tune scans (`scan/`, `L32/scan/`: one task record per L with every measurement) "
        "and the tables each `lattice-samplers tune` call wrote. The packaged table "
        "`lattice_samplers/data/beta_tuned.csv` is generated from the scans' task records. "
        "Results page: docs/results/beta_table.md."
    )
    files = ["scan/", "L32/scan/", "beta_tuned.json", "L32/beta_tuned.csv", "beta_table.md"]
    written.append(write_data_readme(args.tuning, "beta_table", what, files))
    report(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
