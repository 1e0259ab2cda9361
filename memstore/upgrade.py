"""Store formats and the upgrade from one to the next, run by :meth:`Store.open`.

Format 1 is the first release. Format 2 adds two nullable columns to ``references``:
``original_name`` (the file a reference was registered from) and ``view`` (front, profile, ... of
a turnaround sheet). Upgrading adds the missing columns (all null: nothing is known of old rows)
and then records the new format, so an upgrade a crash cut short is finished by the next open.
A store newer than this code is refused: its rows may carry meaning this version would drop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .errors import StoreError

if TYPE_CHECKING:
    from .store import Store

FORMAT_VERSION = 2
# the columns each format added, by table: (name, Arrow type), all nullable
ADDED_COLUMNS: dict[int, dict[str, list[tuple[str, pa.DataType]]]] = {
    2: {"references": [("original_name", pa.string()), ("view", pa.string())]},
}


def upgrade(store: Store, found: Any) -> None:
    """Bring a store of format ``found`` to :data:`FORMAT_VERSION`, or say why it cannot be read."""
    if found == FORMAT_VERSION:
        return
    if not isinstance(found, int) or isinstance(found, bool) or not 1 <= found < FORMAT_VERSION:
        raise StoreError(
            f"{store.uri} has store format {found}, this version reads formats 1 to {FORMAT_VERSION};"
            " upgrade continuity to open it"
        )
    with store.write_lock():
        for version in range(found + 1, FORMAT_VERSION + 1):
            for table_name, columns in ADDED_COLUMNS.get(version, {}).items():
                _add_missing(store, table_name, columns)
        store.set_config("format", {"version": FORMAT_VERSION})


def _add_missing(store: Store, table_name: str, columns: list[tuple[str, pa.DataType]]) -> None:
    table = store.table(table_name)
    missing = [pa.field(name, kind, nullable=True) for name, kind in columns if name not in table.schema.names]
    if missing:
        try:
            store.retry(lambda: table.add_columns(missing))
        except OSError as exc:
            raise StoreError(
                f"{store.uri} is store format 1 and cannot be upgraded to {FORMAT_VERSION} here ({exc});"
                " open it once where it is writable"
            ) from None
