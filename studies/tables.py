"""Every table of the results pages, rebuilt from the committed data by the studies' own code.

Each study writes its tables into ``docs/results/<study>.md`` between ``<!-- table:NAME -->``
and ``<!-- /table -->`` when it runs on its committed data folder.  This module rebuilds all
of them from the committed summaries at once, without running anything: ``--check`` (CI and
``tests/test_results_pages.py``) exits 1 if a page's table differs from what its data give
(a hand edit, or data changed without the page), otherwise the tables are rewritten.

Examples::

    python -m studies.tables --check
    python -m studies.tables                 # rewrite every table from the committed data
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

from studies import (
    beta_table,
    cnf_density_error,
    flow_families,
    flow_hmc,
    sampler_cost,
    training_cost,
)
from studies._common import DATA, RESULTS, report, write_between_markers

__all__ = ["TABLES", "main", "marked", "tables"]


def _summary(folder: str, name: str) -> dict:
    return json.loads((DATA / folder / name).read_text())


def _training(folder: str) -> str:
    saved = _summary(folder, "training_summary.json")
    return training_cost.markdown_table(saved["rows"], saved["config"]["study"]["targets"])


def _families() -> str:
    saved = _summary("flow_families", "training_summary.json")
    return flow_families.markdown_table(saved["aggregate"], saved["config"]["study"]["targets"])


def _samplers(folder: str) -> str:
    return sampler_cost.markdown_table(_summary(folder, "sampler_summary.json")["rows"])


#: (page, table name) -> the table as its study writes it from the committed data.
TABLES: dict[tuple[str, str], Callable[[], str]] = {
    ("beta_table", "beta_table"): lambda: beta_table.markdown_table(beta_table.generate()),
    ("training_cost", "training_gpu"): lambda: _training("training_cost/gpu"),
    ("training_cost", "training_cpu"): lambda: _training("training_cost/cpu"),
    ("flow_families", "training_table"): _families,
    ("sampler_cost", "samplers_gpu"): lambda: _samplers("training_cost/gpu"),
    ("sampler_cost", "samplers_cpu"): lambda: _samplers("training_cost/cpu"),
    ("sampler_cost", "samplers_flow_families"): lambda: _samplers("flow_families"),
    ("cnf_density_error", "density_error"): lambda: cnf_density_error.markdown_table(
        _summary("cnf_density_error", "density_error.json")["rows"]
    ),
    ("flow_hmc", "flow_hmc"): lambda: flow_hmc.markdown_table(
        _summary("flow_hmc", "flow_hmc.json")["rows"]
    ),
}


def marked(page: Path, name: str) -> str | None:
    """The text between the ``table:NAME`` markers of ``page`` (None without the markers)."""
    match = re.search(
        rf"<!-- table:{re.escape(name)} -->\n(.*?)\n?<!-- /table -->", page.read_text(), re.S
    )
    return None if match is None else match.group(1)


def tables(results: Path = RESULTS) -> list[tuple[Path, str, str, str | None]]:
    """(page, name, table from the data, table on the page) for every table of every page."""
    out = []
    for (page, name), build in TABLES.items():
        path = results / f"{page}.md"
        out.append((path, name, build().rstrip(), marked(path, name)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    p.add_argument("--results", type=Path, default=RESULTS, help="the results pages' folder")
    args = p.parse_args(argv)
    differ = 0
    written = []
    for path, name, table, shown in tables(args.results):
        same = shown is not None and shown.rstrip() == table
        if args.check:
            state = "missing markers" if shown is None else ("ok" if same else "DIFFERS")
            print(f"{path.name} table:{name}: {state}")
            differ += not same
        elif not same:
            written.append(write_between_markers(path, f"table:{name}", table))
    report(written)
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
