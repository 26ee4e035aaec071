"""Read Markov chains written by any program into ``{name: ndarray (n_chains, n_draws)}``.

Formats (``fmt="auto"`` picks one from the file suffix):

- ``nc`` (``.nc``, ``.nc4``, ``.netcdf``, ``.h5``): this package's results files
  (:mod:`lattice_samplers.driver.results_file`, group ``observables``) and any
  ArviZ/xarray netCDF, legacy
  InferenceData or DataTree, read with ``xarray.open_datatree``: the ``posterior`` group, else
  ``observables``, else the root.  Every variable with dims exactly (chain, draw), in either
  order, is a series; variables with more dims are skipped unless asked for (then an error).
- ``npy``: one array, the variable named by the file stem; 1-D is one chain, 2-D is
  chains x draws (``layout="draws,chains"`` for the transpose).  Several ``.npy`` files are
  several chains of ONE variable, named by the files' common stem (``c0.npy c1.npy`` -> ``c``);
  chains of different lengths are an error naming each file and its length.  Complex arrays
  are refused (save the real and imaginary parts).
- ``npz``: each array is a variable, 1-D or 2-D as for ``npy``; other arrays (a scalar, a 3-D
  field) are skipped, and refused only when asked for with ``var_names``.
- ``csv`` / ``txt`` (comma or whitespace separated, ``#`` comments): with a header line, one
  column per variable and one row per draw, and each file is one chain of the same variables;
  without a header, a numeric matrix of one variable named by the file stem, read like ``npy``.

Several files are several chains: their chains are stacked (netCDF, npy and header-less text
files of the same stem, header CSVs).  Every problem is a :class:`ChainsError` (a
``ValueError``) with a one-line message: unknown format, missing variable or column, ragged
chains, a layout that gives more chains than draws per chain unless ``layout`` was given
explicitly, NaN or inf (naming the variable and the (chain, draw) position).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "FORMATS",
    "LAYOUTS",
    "ChainsError",
    "check_finite",
    "detect_format",
    "read_chains",
]

FORMATS: tuple[str, ...] = ("auto", "nc", "npy", "npz", "csv", "txt")
LAYOUTS: tuple[str, ...] = ("chains,draws", "draws,chains")

_SUFFIXES = {
    ".nc": "nc",
    ".nc4": "nc",
    ".netcdf": "nc",
    ".h5": "nc",
    ".npy": "npy",
    ".npz": "npz",
    ".csv": "csv",
    ".txt": "txt",
    ".dat": "txt",
    ".tsv": "txt",
}


class ChainsError(ValueError):
    """Input that cannot be read as chains; the message is one line for the user."""


def detect_format(path: str | Path) -> str:
    """The format of ``path`` from its suffix (one of :data:`FORMATS` except ``auto``)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ChainsError(
            f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; "
            f"give --format ({', '.join(FORMATS[1:])})"
        )
    return _SUFFIXES[suffix]


def _check_choice(value: str | None, choices: Sequence[str], what: str) -> None:
    if value is not None and value not in choices:
        raise ChainsError(f"unknown {what} {value!r} (use one of: {', '.join(choices)})")


def _as_2d(array: np.ndarray, layout: str | None, where: str) -> np.ndarray:
    """A 1-D (one chain) or 2-D array as (n_chains, n_draws) following ``layout``."""
    x = np.asarray(array)
    if np.iscomplexobj(x):
        raise ChainsError(
            f"{where}: complex values (dtype {x.dtype}); analyze the real and imaginary parts "
            "as two variables (save numpy.real(x) and numpy.imag(x))"
        )
    if x.dtype == object or not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise ChainsError(f"{where}: not a numeric array (dtype {x.dtype}); ragged chains?")
    if x.ndim == 1:
        return x[np.newaxis, :].astype(np.float64)
    if x.ndim != 2:
        raise ChainsError(
            f"{where}: expected a 1-D chain or a 2-D chains x draws array, got shape {x.shape}"
        )
    if layout == "draws,chains":
        x = x.T
    elif layout is None and x.shape[0] > x.shape[1]:
        raise ChainsError(
            f"{where}: shape {x.shape} read as chains x draws gives {x.shape[0]} chains of "
            f"{x.shape[1]} draws; if rows are draws give --layout draws,chains "
            "(or --layout chains,draws to keep it)"
        )
    return x.astype(np.float64)


def _stack(name: str, parts: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Stack the chains of one variable from several sources; refuse ragged lengths.

    The message names every source (its path as given) with its draws per chain.
    """
    lengths = [(src, p.shape[1]) for src, p in parts]
    if len({n for _, n in lengths}) > 1:
        detail = ", ".join(f"{src}: {n}" for src, n in lengths)
        raise ChainsError(
            f"ragged chains of {name!r}: draws per chain differ ({detail}); "
            "chains must have equal length (trim them to one length)"
        )
    return np.concatenate([p for _, p in parts], axis=0)


# --------------------------------------------------------------------------- NumPy

_NPY_MAGIC = b"\x93NUMPY"


def _load_npy(path: Path) -> np.ndarray:
    """One numeric array from a ``.npy`` file; one line for anything else."""
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if head != _NPY_MAGIC:
        raise ChainsError(f"{path}: not a .npy file (it does not start with the NumPy header)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ChainsError(
                f"{path}: holds Python objects, not numbers (ragged chains?); save a numeric "
                "array of equal-length chains"
            ) from None
        raise ChainsError(f"{path}: not a readable .npy array ({exc})") from None


def _load_npz(path: Path, layout: str | None, skipped: dict[str, str]) -> dict[str, np.ndarray]:
    """The series of a ``.npz`` archive; arrays that are not series go to ``skipped``."""
    out = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for name in data.files:
                try:
                    out[name] = _as_2d(data[name], layout, f"{path}[{name}]")
                except ChainsError as exc:  # refused only if asked for (or nothing is left)
                    skipped[name] = str(exc)
    except (ValueError, OSError) as exc:
        reason = "holds Python objects" if "pickle" in str(exc) else str(exc)
        raise ChainsError(f"{path}: not a readable .npz archive ({reason})") from None
    return out


def _common_stem(paths: Sequence[Path]) -> str:
    """The variable name of several one-variable files: their common stem prefix.

    ``c0.npy c1.npy`` and ``run/x.npy other/x.npy`` name ``c`` and ``x``; stems with nothing
    in common name ``x``.
    """
    prefix = os.path.commonprefix([p.stem for p in paths]).rstrip("_-. ")
    return prefix or "x"


# --------------------------------------------------------------------------- netCDF


def _read_nc(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Scalar (chain, draw) series of a netCDF file, and why other variables were skipped."""
    import xarray as xr

    try:
        tree = xr.open_datatree(path)
    except (OSError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ChainsError(f"{path}: not a readable netCDF file ({first})") from None
    with tree:
        groups = set(tree.children)
        if "posterior" in groups:
            node = tree["posterior"]
        elif "observables" in groups:
            node = tree["observables"]
        else:
            node = tree
        ds = node.to_dataset()
        out: dict[str, np.ndarray] = {}
        skipped: dict[str, str] = {}
        for name, da in ds.data_vars.items():
            if set(da.dims) == {"chain", "draw"}:
                out[str(name)] = np.asarray(da.transpose("chain", "draw").values, dtype=float)
            else:
                skipped[str(name)] = f"dims {tuple(da.dims)}, not (chain, draw)"
    if not out and not skipped:
        raise ChainsError(f"{path}: no variables in the posterior, observables or root group")
    return out, skipped


# --------------------------------------------------------------------------- text


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _split(line: str, fmt: str) -> list[str]:
    if fmt == "csv" or "," in line:
        return [t.strip() for t in line.split(",")]
    return line.split()


def _read_text(path: Path, fmt: str) -> tuple[list[str] | None, np.ndarray]:
    """(header or None, numeric rows) of a CSV or whitespace text file."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ChainsError(f"{path}: not a text file") from None
    body = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip()[0] == "#"]
    if not body:
        raise ChainsError(f"{path}: no data")
    header = None
    first = _split(body[0][1], fmt)
    if not all(_is_number(t) for t in first):
        header = [t.strip().strip('"').strip("'") for t in first]
        if len(set(header)) != len(header):
            raise ChainsError(f"{path}: repeated column names in the header {header}")
        body = body[1:]
    if not body:
        raise ChainsError(f"{path}: a header but no rows of numbers")
    n_cols = len(header) if header is not None else len(first)
    delimiter = "," if fmt == "csv" or "," in body[0][1] else None
    try:  # fast path; the loop below finds the line of any problem
        table = np.loadtxt(
            path, delimiter=delimiter, comments="#", skiprows=0 if header is None else
            body[0][0] - 1, ndmin=2, dtype=np.float64,
        )  # fmt: skip
        if table.shape[1] == n_cols and table.shape[0] == len(body):
            return header, table
    except ValueError:
        pass
    rows = []
    for lineno, ln in body:
        tokens = _split(ln, fmt)
        if len(tokens) != n_cols:
            raise ChainsError(
                f"{path}:{lineno}: {len(tokens)} columns, expected {n_cols} (ragged rows)"
            )
        try:
            rows.append([float(t) for t in tokens])
        except ValueError:
            raise ChainsError(f"{path}:{lineno}: not a number in {ln.strip()[:60]!r}") from None
    if not rows:
        raise ChainsError(f"{path}: a header but no rows of numbers")
    return header, np.array(rows, dtype=np.float64)


# --------------------------------------------------------------------------- front end


def read_chains(
    paths: Sequence[str | Path],
    *,
    fmt: str = "auto",
    layout: str | None = None,
    var_names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Read the series of one or several files as ``{name: (n_chains, n_draws) float64}``.

    Parameters
    ----------
    paths : sequence of path
        One or several files of the same format; several files are several chains.
    fmt : str, default "auto"
        One of :data:`FORMATS`; ``auto`` decides by suffix.
    layout : {"chains,draws", "draws,chains"}, optional
        Axis order of 2-D arrays (npy, npz, header-less text). Without it a 2-D array is
        chains x draws, and one with more chains than draws is refused as probably transposed.
    var_names : sequence of str, optional
        Variables to return (default all, in file order); a missing one is an error.

    Returns
    -------
    dict
        Name -> (n_chains, n_draws) array. Values are not checked for NaN here: see
        :func:`check_finite`.
    """
    _check_choice(fmt, FORMATS, "format")
    _check_choice(layout, LAYOUTS, "layout")
    if not paths:
        raise ChainsError("no input files")
    paths = [Path(p) for p in paths]
    for p in paths:
        if p.is_dir():
            raise ChainsError(f"{p} is a folder; give the files in it (e.g. {p}/*.npy)")
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {p}")
    formats = {detect_format(p) if fmt == "auto" else fmt for p in paths}
    if len(formats) > 1:
        raise ChainsError(f"files of different formats ({', '.join(sorted(formats))}); give one")
    kind = formats.pop()

    # several one-variable files (npy, header-less text) are several chains of ONE variable,
    # named by the files' common stem (their own stem when there is one file)
    single = _common_stem(paths) if len(paths) > 1 else None
    parts: dict[str, list[tuple[str, np.ndarray]]] = {}
    skipped: dict[str, str] = {}
    headers: dict[str, list[str]] = {}
    for p in paths:
        if kind == "nc":
            found, skip = _read_nc(p)
            skipped.update(skip)
            for name, x in found.items():
                parts.setdefault(name, []).append((str(p), x))
        elif kind == "npy":
            x = _load_npy(p)
            parts.setdefault(single or p.stem, []).append((str(p), _as_2d(x, layout, str(p))))
        elif kind == "npz":
            for name, x in _load_npz(p, layout, skipped).items():
                parts.setdefault(name, []).append((str(p), x))
        else:
            header, table = _read_text(p, kind)
            if header is None:
                x = table[:, 0] if table.shape[1] == 1 else table
                parts.setdefault(single or p.stem, []).append((str(p), _as_2d(x, layout, str(p))))
            else:
                if layout == "chains,draws":
                    raise ChainsError(
                        f"{p}: a text file with a header has one column per variable and one "
                        "row per draw; --layout chains,draws does not apply"
                    )
                headers[p.name] = header
                for j, name in enumerate(header):
                    parts.setdefault(name, []).append((str(p), table[np.newaxis, :, j]))
    if len(headers) > 1 and len({tuple(h) for h in headers.values()}) > 1:
        detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in headers.items())
        raise ChainsError(f"files have different columns ({detail})")

    names = list(parts) if var_names is None else list(dict.fromkeys(var_names))
    what = "column" if kind in ("csv", "txt") and headers else "variable"
    for name in names:
        if name in skipped:
            raise ChainsError(f"{what} {name!r} cannot be analyzed: {skipped[name]}")
        if name not in parts:
            have = ", ".join(parts) or "none"
            raise ChainsError(
                f"{what} {name!r} not found in {', '.join(p.name for p in paths)} (has: {have})"
            )
        # npy and header-less text name a variable by file stem, so only the other formats
        # must hold every variable in every file.
        if (kind in ("nc", "npz") or headers) and len(parts[name]) != len(paths):
            missing = sorted({str(p) for p in paths} - {src for src, _ in parts[name]})
            raise ChainsError(f"{what} {name!r} is missing from {', '.join(missing)}")
    if not names:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise ChainsError(
            f"no (chain, draw) series in {', '.join(p.name for p in paths)}"
            + (f" ({why})" if why else "")
        )
    return {name: _stack(name, parts[name]) for name in names}


def check_finite(name: str, chains: np.ndarray, burn: int = 0, thin: int = 1) -> None:
    """Refuse NaN or inf, naming the variable and the first bad (chain, draw) position.

    ``burn`` and ``thin`` map the position back to the draw index of the input file when the
    array is ``original[:, burn::thin]``.
    """
    bad = ~np.isfinite(chains)
    if bad.any():
        chain, draw = (int(i) for i in np.argwhere(bad)[0])
        value = chains[chain, draw]
        raise ChainsError(
            f"variable {name!r} has {int(bad.sum())} non-finite value(s); first {value} at "
            f"(chain {chain}, draw {burn + draw * thin})"
        )
