"""TOML configuration: loading, ``--set KEY=VALUE`` overrides, validated frozen dataclasses.

Every command reads a TOML file with sections (``[theory]``, ``[sampler]``, ``[run]``,
``[flow]``, ``[train]``, ...).  Each section maps onto a frozen dataclass with defaults;
:func:`section_to_dataclass` rejects unknown keys and wrong types with a one-line
:class:`ConfigError`, and the dataclass's ``__post_init__`` checks ranges.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "set_dotted",
    "MEMORY_FRACTION",
    "physical_memory",
    "require_memory",
    "ConfigError",
    "T",
    "apply_overrides",
    "check_sections",
    "load_config",
    "section_to_dataclass",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one line (no traceback)."""


def load_config(path: str | Path | None) -> dict[str, Any]:
    """Read a TOML file into a nested dict (an empty dict for ``None``).

    Raises
    ------
    ConfigError
        If the file is missing or is not valid TOML.
    """
    if path is None:
        return {}
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config {p} is a folder; give a TOML file")
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text (UTF-8) file; a config is a TOML text file") from None


def _parse_value(text: str) -> Any:
    """Parse an override value as a TOML value; bare words stay strings (``kind=hmc``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``config`` with ``SECTION.KEY=VALUE`` overrides applied.

    Values are parsed as TOML (``8``, ``0.5``, ``true``, ``"x"``, ``[1, 2]``); anything that is
    not valid TOML is taken as a string.  Dotted keys create nested tables; an inline table
    (``run={n_steps=600}``) sets the keys it names and keeps the table's others.
    """
    out = copy.deepcopy(dict(config))
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. theory.L=8), got {item!r}")
        set_dotted(out, key, _parse_value(value.strip()), where=f"--set {key}", merge=True)
    return out


def set_dotted(
    config: dict[str, Any], key: str, value: Any, where: str | None = None, merge: bool = False
) -> None:
    """Set ``config["a"]["b"] = value`` for ``key = "a.b"``, creating missing sections.

    With ``merge`` a table value is merged into an existing table key by key (recursively),
    never replacing the keys it does not name (what ``--set`` does); an empty table ``{}``
    names no key, so it empties the table.

    Raises
    ------
    ConfigError
        If a part of the key names a value, not a section.
    """
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where or f'cannot set {key}'}: {part!r} is a value, not a section")
        node = child
    old = node.get(parts[-1])
    if merge and value and isinstance(value, dict) and isinstance(old, dict):
        # an inline table sets the keys it names; the table's other keys stay as they were
        # (--set 'run={n_steps=600}' must not reset run.seed and the rest to defaults)
        _merge(old, value)
        return
    node[parts[-1]] = copy.deepcopy(value)


def _merge(table: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Merge ``update`` into ``table``: sub-tables key by key, anything else replaced.

    Keys are literal (``{"theory.L" = [...]}`` in a scan grid is one key).
    """
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(table.get(key), dict):
            _merge(table[key], value)
        else:
            table[key] = copy.deepcopy(value)


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        if not isinstance(value, list | tuple):
            return False
        item = args[0] if args else Any
        return all(_type_ok(v, item) for v in value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def section_to_dataclass(cls: type[T], data: Mapping[str, Any] | None, section: str) -> T:
    """Build the frozen dataclass ``cls`` from one config section, checking keys and types.

    Integers are accepted for float fields (and converted); lists for tuple fields.

    Raises
    ------
    ConfigError
        For an unknown key, a wrong type, or a value rejected by ``cls.__post_init__``.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"[{section}] must be a table, got {data!r}")
    data = dict(data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [{section}]: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(fields))})"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        ann = hints[name]
        if not _type_ok(value, ann):
            raise ConfigError(
                f"[{section}] {name} must be {_type_name(ann)}, got {value!r} "
                f"({type(value).__name__})"
            )
        if ann is float and isinstance(value, int):
            value = float(value)
        if isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"[{section}] {exc}") from None


def check_sections(config: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Raise :class:`ConfigError` if ``config`` has a top-level section not in ``allowed``."""
    allowed = list(allowed)
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown config section(s): {', '.join(unknown)} (allowed: {', '.join(allowed)})"
        )


#: Largest share of the machine's memory one run's arrays may take.
MEMORY_FRACTION = 0.8


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def require_memory(n_bytes: float, what: str, hint: str) -> None:
    """Refuse up front, in one line, work whose arrays would not fit in memory.

    Raises
    ------
    ConfigError
        Naming what needs the memory, the bytes needed and available, and ``hint``.
    """
    have = physical_memory()
    if have is not None and n_bytes > MEMORY_FRACTION * have:
        raise ConfigError(
            f"{what} needs {n_bytes / 2**30:.3g} GiB, more than this machine's "
            f"{have / 2**30:.3g} GiB allows; {hint}"
        )
