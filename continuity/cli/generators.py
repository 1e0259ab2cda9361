"""``continuity generators``: every generator, its options with types and defaults, and the weights
it needs (the public repositories to get and whether ``--model`` is required)."""

from __future__ import annotations

import inspect
from typing import Any

import typer
from rich.table import Table

from .common import console, handle_errors, print_json

# set by the loader itself (continuity.generator_setup), never given as --option
_NOT_OPTIONS = {"self", "pipeline", "model_id", "model_id_or_folder", "adapter", "token_cache", "encoder", "library"}


def _options(factory: Any) -> list[dict[str, Any]]:
    """The keyword options of a generator's constructor: name, type and default."""
    out = []
    for name, param in inspect.signature(factory).parameters.items():
        if name in _NOT_OPTIONS or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = None if param.default is inspect.Parameter.empty else param.default
        annotation = param.annotation if param.annotation is not inspect.Parameter.empty else ""
        out.append({"name": name, "type": str(annotation), "default": _plain(default)})
    return out


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def describe() -> list[dict[str, Any]]:
    from generators import generator_entry, list_generators

    rows = []
    for name in list_generators():
        entry = generator_entry(name)
        row: dict[str, Any] = {
            "name": name,
            "needs_model": entry.needs_model,
            "adapter": entry.adapter,
            "weights": entry.hint,
            "extra": entry.extra,
        }
        try:
            row["options"], row["available"] = _options(entry.load()), True
        except Exception as exc:  # noqa: BLE001 - a backend missing its extra is listed, with why
            row["options"], row["available"], row["problem"] = [], False, str(exc).splitlines()[0]
        rows.append(row)
    return rows


@handle_errors
def generators(as_json: bool = typer.Option(False, "--json")) -> None:
    """List every generator with its options, defaults and the weights it needs."""
    rows = describe()
    if as_json:
        print_json({"generators": rows})
        return
    table = Table("generator", "--model", "--adapter", "weights", "options (default)")
    for row in rows:
        options = ", ".join(f"{o['name']}={o['default']!r}" for o in row["options"]) or row.get("problem", "")
        table.add_row(
            row["name"], "yes" if row["needs_model"] else "no", row["adapter"] or "-", row["weights"], options
        )
    console.print(table)
