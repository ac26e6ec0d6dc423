"""Local data store of the reference desktop client (devclient).

The Adiuva desktop app owns the user's workspace in its own SQLite database and
answers the server's client-executed tool calls from it (SPEC §3 and §4).
`LocalStore` is that database for the devclient: the same six tables with the
same camelCase columns, and `LocalStore.execute` turns one ``tool_call`` into the
``tool_result`` payload the app would send back.

Rules the spec leaves open, fixed here:

- ``execute`` never raises on bad input. An unknown action, table, column or
  filter key, a value of the wrong type or outside its allowed set, a missing
  required field and a missing row all come back as ``{"error": "<message>"}``.
- The store generates ``id`` (uuid4 hex), ``createdAt`` and, for notes,
  ``updatedAt`` (Unix ms). Insert data carrying them, or updates changing them,
  are refused: the server never sends them. An update that changes a note bumps
  its ``updatedAt``.
- ``assignee`` is stored as a JSON array string, as ``JSON.stringify`` writes it;
  it may be given as a list of names or as such a string.
- Select filters whose value is ``None`` count as absent. ``search`` matches a
  case-insensitive substring of a task's title or description;
  ``dueDateFrom``/``dueDateTo`` are inclusive and never match a task without a
  due date; projects hide archived ones unless ``includeArchived`` is true.
- Task ``orderBy`` names a column (createdAt, dueDate, priority, title, status)
  for ascending order, or the same name prefixed with ``-`` for descending
  (``"-dueDate"``). Priority sorts by rank (low < medium < high), status by
  workflow (todo < in_progress < done), title case-insensitively, and rows
  without a due date come last either way. Ties, and every select without
  ``orderBy``, go by createdAt ascending, then insertion order.
- Parameters an action does not use are ignored, as the app ignores them.

Table and column names in SQL always come from `SCHEMA`, never from a caller.
"""

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, Final

from devclient.vector_index import VectorIndex, VectorIndexError

TASK_STATUSES: Final = ("todo", "in_progress", "done")
TASK_PRIORITIES: Final = ("low", "medium", "high")
PROJECT_STATUSES: Final = ("active", "archived")
DEFAULT_SEARCH_LIMIT: Final = 10

_MIN_INTEGER: Final = -(2**63)
_MAX_INTEGER: Final = 2**63 - 1


class StoreError(ValueError):
    """A tool call the store refuses; the message is the ``error`` it reports."""


class Kind(Enum):
    """How a column's values are checked and stored."""

    TEXT = "text"
    MILLIS = "millis"  # Unix milliseconds, INTEGER
    FLAG = "flag"  # 0 or 1, INTEGER
    NAMES = "names"  # a JSON array of strings, TEXT


@dataclass(frozen=True)
class Column:
    """One column of the client schema.

    `required` columns must be given on insert; a `default` makes the column
    NOT NULL with that value when absent; `choices` lists the allowed values in
    their semantic order; `generated` columns are set by the store alone.
    """

    name: str
    kind: Kind = Kind.TEXT
    required: bool = False
    default: str | int | None = None
    choices: tuple[str, ...] = ()
    generated: bool = False

    @property
    def nullable(self) -> bool:
        """Whether NULL is a valid stored value."""
        return not (self.required or self.generated or self.default is not None)


_ID = Column("id", generated=True)
_CREATED_AT = Column("createdAt", Kind.MILLIS, generated=True)
_AI_FLAGS = (
    Column("isAiSuggested", Kind.FLAG, default=0),
    Column("isApproved", Kind.FLAG, default=1),
)

SCHEMA: Final[Mapping[str, tuple[Column, ...]]] = MappingProxyType(
    {
        "tasks": (
            _ID,
            Column("projectId"),
            Column("title", required=True),
            Column("description"),
            Column("status", default="todo", choices=TASK_STATUSES),
            Column("priority", default="medium", choices=TASK_PRIORITIES),
            Column("assignee", Kind.NAMES, default="[]"),
            Column("dueDate", Kind.MILLIS),
            *_AI_FLAGS,
            _CREATED_AT,
        ),
        "projects": (
            _ID,
            Column("clientId"),
            Column("name", required=True),
            Column("status", default="active", choices=PROJECT_STATUSES),
            Column("aiSummary"),
            *_AI_FLAGS,
            _CREATED_AT,
        ),
        "timelines": (
            _ID,
            Column("projectId", required=True),
            Column("title", required=True),
            Column("date", Kind.MILLIS),
            *_AI_FLAGS,
            _CREATED_AT,
        ),
        "notes": (
            _ID,
            Column("projectId"),
            Column("title", required=True),
            Column("content", default=""),
            *_AI_FLAGS,
            _CREATED_AT,
            Column("updatedAt", Kind.MILLIS, generated=True),
        ),
        "taskComments": (
            _ID,
            Column("taskId", required=True),
            Column("author"),
            Column("content", required=True),
            _CREATED_AT,
        ),
        "clients": (
            _ID,
            Column("parentId"),
            Column("name", required=True),
            Column("industry"),
            _CREATED_AT,
        ),
    }
)

_COLUMNS: Final = {table: {c.name: c for c in columns} for table, columns in SCHEMA.items()}


def _column_sql(column: Column) -> str:
    """The column's definition inside CREATE TABLE."""
    sql = f'"{column.name}" {"TEXT" if column.kind in (Kind.TEXT, Kind.NAMES) else "INTEGER"}'
    if column.name == "id":
        sql += " PRIMARY KEY"
    if not column.nullable:
        sql += " NOT NULL"
    if isinstance(column.default, str):
        sql += " DEFAULT '{}'".format(column.default.replace("'", "''"))
    elif column.default is not None:
        sql += f" DEFAULT {column.default}"
    return sql


def _create_table_sql(table: str) -> str:
    """The CREATE TABLE statement of one schema table; a no-op if the table exists."""
    columns = ",\n  ".join(_column_sql(column) for column in SCHEMA[table])
    return f'CREATE TABLE IF NOT EXISTS "{table}" (\n  {columns}\n);\n'


def _coerce(column: Column, value: object) -> object:
    """Return `value` as `column` stores it, or raise a StoreError saying what is wrong."""
    if value is None:
        if column.nullable:
            return None
        msg = f"{column.name} must not be null"
        raise StoreError(msg)
    match column.kind:
        case Kind.TEXT:
            return _text(column, value)
        case Kind.MILLIS:
            if isinstance(value, bool) or not isinstance(value, int):
                msg = f"{column.name} must be an integer (Unix ms), got {value!r}"
                raise StoreError(msg)
            if not _MIN_INTEGER <= value <= _MAX_INTEGER:
                msg = f"{column.name} is out of range: {value!r}"
                raise StoreError(msg)
            return value
        case Kind.FLAG:
            if not isinstance(value, int) or value not in (0, 1):
                msg = f"{column.name} must be 0 or 1, got {value!r}"
                raise StoreError(msg)
            return int(value)
        case Kind.NAMES:
            return _names_json(column, value)


def _text(column: Column, value: object) -> str:
    """Check a TEXT value, including its allowed set when the column has one."""
    if not isinstance(value, str):
        msg = f"{column.name} must be a string, got {value!r}"
        raise StoreError(msg)
    if column.choices and value not in column.choices:
        msg = f"{column.name} must be one of {', '.join(column.choices)}, got {value!r}"
        raise StoreError(msg)
    return value


def _names_json(column: Column, value: object) -> str:
    """Encode a list of names (or its JSON string) the way the app's JSON.stringify does."""
    names = value
    if isinstance(value, str):
        try:
            names = json.loads(value)
        except json.JSONDecodeError:
            names = None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        msg = f"{column.name} must be a list of names or its JSON string, got {value!r}"
        raise StoreError(msg)
    return json.dumps(names, ensure_ascii=False, separators=(",", ":"))


# --- select filters -------------------------------------------------------

_Clause = tuple[str, list[object]]
_FilterBuilder = Callable[[object], _Clause | None]


def _equals(table: str, column: str) -> _FilterBuilder:
    """A filter keeping rows whose `column` equals the (type-checked) filter value."""
    spec = _COLUMNS[table][column]

    def build(value: object) -> _Clause:
        return f'"{column}" = ?', [_coerce(spec, value)]

    return build


def _search_tasks(value: object) -> _Clause:
    """Case-insensitive substring match on a task's title or description."""
    if not isinstance(value, str):
        msg = f"search must be a string, got {value!r}"
        raise StoreError(msg)
    needle = value.casefold()
    return (
        'instr(casefold("title"), ?) > 0 OR instr(casefold("description"), ?) > 0',
        [needle, needle],
    )


def _due_date_bound(key: str, operator: str) -> _FilterBuilder:
    """An inclusive due-date bound named `key`; `operator` is ">=" or "<="."""
    bound = Column(key, Kind.MILLIS)

    def build(value: object) -> _Clause:
        return f'"dueDate" {operator} ?', [_coerce(bound, value)]

    return build


def _include_archived(value: object) -> _Clause | None:
    """Hide archived projects unless the caller asks for them."""
    if not isinstance(value, bool):
        msg = f"includeArchived must be true or false, got {value!r}"
        raise StoreError(msg)
    return None if value else ('"status" != ?', ["archived"])


_FILTERS: Final[Mapping[str, Mapping[str, _FilterBuilder]]] = {
    "tasks": {
        "projectId": _equals("tasks", "projectId"),
        "status": _equals("tasks", "status"),
        "search": _search_tasks,
        "dueDateFrom": _due_date_bound("dueDateFrom", ">="),
        "dueDateTo": _due_date_bound("dueDateTo", "<="),
    },
    "taskComments": {"taskId": _equals("taskComments", "taskId")},
    "projects": {
        "clientId": _equals("projects", "clientId"),
        "includeArchived": _include_archived,
    },
    "timelines": {"projectId": _equals("timelines", "projectId")},
    "notes": {"projectId": _equals("notes", "projectId")},
    "clients": {},
}

# Filters applied when the caller leaves them out.
_FILTER_DEFAULTS: Final[Mapping[str, Mapping[str, object]]] = {
    "projects": {"includeArchived": False},
}


def _rank(column: str, ordered_values: tuple[str, ...]) -> str:
    """An SQL expression ranking `column` by its values' position in `ordered_values`."""
    cases = " ".join(f"WHEN '{value}' THEN {rank}" for rank, value in enumerate(ordered_values))
    return f'CASE "{column}" {cases} END'


# Tables whose select accepts orderBy, and the SQL expression each key sorts by.
_ORDERINGS: Final[Mapping[str, Mapping[str, str]]] = {
    "tasks": {
        "createdAt": '"createdAt"',
        "dueDate": '"dueDate"',
        "priority": _rank("priority", TASK_PRIORITIES),
        "title": '"title" COLLATE NOCASE',
        "status": _rank("status", TASK_STATUSES),
    },
}
_DEFAULT_ORDER: Final = '"createdAt" ASC, rowid ASC'


def _order_sql(table: str, order_by: object) -> str:
    """The ORDER BY terms for an orderBy filter value (None: the default order)."""
    if order_by is None:
        return _DEFAULT_ORDER
    orderings = _ORDERINGS[table]
    if not isinstance(order_by, str) or order_by.removeprefix("-") not in orderings:
        msg = (
            f"orderBy must be one of {', '.join(orderings)}, optionally prefixed with '-'"
            f" for descending order, got {order_by!r}"
        )
        raise StoreError(msg)
    direction = "DESC" if order_by.startswith("-") else "ASC"
    return f"{orderings[order_by.removeprefix('-')]} {direction} NULLS LAST, {_DEFAULT_ORDER}"


def _select_sql(table: str, filters: Mapping[str, object]) -> tuple[str, list[object]]:
    """The SELECT statement and its parameters for `filters` on `table`."""
    builders = _FILTERS[table]
    allowed = [*builders, *(["orderBy"] if table in _ORDERINGS else [])]
    unknown = [key for key in filters if key not in allowed]
    if unknown:
        msg = (
            f"unknown filter(s) for {table}: {', '.join(unknown)}; "
            f"expected {', '.join(allowed) or 'none'}"
        )
        raise StoreError(msg)
    given = {key: value for key, value in filters.items() if value is not None}
    effective = {**_FILTER_DEFAULTS.get(table, {}), **given}
    order = _order_sql(table, effective.pop("orderBy", None))
    conditions: list[str] = []
    params: list[object] = []
    for key, value in effective.items():
        clause = builders[key](value)
        if clause is not None:
            conditions.append(f"({clause[0]})")
            params.extend(clause[1])
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    # Every name and SQL fragment here comes from SCHEMA and the tables above; values are bound.
    return f'SELECT * FROM "{table}"{where} ORDER BY {order}', params  # noqa: S608


# --- input checks -----------------------------------------------------------


def _known_table(table: object) -> str:
    """Return `table` if the client schema has it."""
    if not isinstance(table, str) or table not in SCHEMA:
        msg = f"unknown table {table!r}; expected one of {', '.join(SCHEMA)}"
        raise StoreError(msg)
    return table


def _object(name: str, value: object) -> Mapping[str, object]:
    """Return `value` if it is a JSON object (a dict with string keys)."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        msg = f"{name} must be an object, got {value!r}"
        raise StoreError(msg)
    return value


def _required_string(data: Mapping[str, object], name: str) -> str:
    """Read ``data[name]``, which must be a non-empty string (an id, say)."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        msg = f"data.{name} must be a non-empty string, got {value!r}"
        raise StoreError(msg)
    return value


def _required_vector(vector: list[float] | None) -> list[float]:
    """The vector a vector action needs; its contents are the index's to check."""
    if vector is None:
        msg = "this action needs a vector"
        raise StoreError(msg)
    return vector


def _column_values(table: str, fields: Mapping[str, object]) -> dict[str, object]:
    """Check caller-given `fields` against `table`'s columns and return the values to store."""
    values: dict[str, object] = {}
    for name, value in fields.items():
        column = _COLUMNS[table].get(name)
        if column is None:
            msg = f"unknown column {name!r} for {table}"
            raise StoreError(msg)
        if column.generated:
            msg = f"{name} is generated by the client and cannot be given"
            raise StoreError(msg)
        values[name] = _coerce(column, value)
    return values


def _wall_clock_ms() -> int:
    """Current Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


def _casefold(value: object) -> str | None:
    """SQL ``casefold()``: Unicode-aware lower-casing (SQLite's lower() is ASCII-only)."""
    return value.casefold() if isinstance(value, str) else None


class LocalStore:
    """The desktop app's SQLite database and vector index, answering tool calls.

    `path` is a database file (created if missing, reopened with its data if not)
    or ":memory:". `clock` returns the current Unix time in ms; tests pass a fake
    one to get predictable timestamps. One store serves one thread.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], int] = _wall_clock_ms
    ) -> None:
        self._clock = clock
        self._conn = sqlite3.connect(path)
        self._conn.row_factory = sqlite3.Row
        self._conn.create_function("casefold", 1, _casefold, deterministic=True)
        self._conn.executescript("".join(_create_table_sql(table) for table in SCHEMA))
        self._add_missing_columns()
        self._vectors = VectorIndex(self._conn)

    def execute(
        self,
        *,
        action: str,
        table: str | None = None,
        data: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        vector: list[float] | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Run one tool call; return its ``tool_result`` payload, or ``{"error": ...}``."""
        try:
            return self._run(action, table, data, filters, vector, limit)
        except (StoreError, VectorIndexError) as error:
            return {"error": str(error)}
        except sqlite3.Error as error:
            return {"error": f"database error: {error}"}

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of `table` in insertion order, for tests and benchmarks."""
        sql = f'SELECT * FROM "{_known_table(table)}" ORDER BY rowid'  # noqa: S608 -- a SCHEMA table
        cursor = self._conn.execute(sql)
        return [dict(row) for row in cursor]

    def close(self) -> None:
        """Close the database file."""
        self._conn.close()

    def _add_missing_columns(self) -> None:
        """Bring a database made by an older devclient up to `SCHEMA` (new columns only)."""
        for table, columns in SCHEMA.items():
            pragma = f'PRAGMA table_info("{table}")'
            present = {row["name"] for row in self._conn.execute(pragma)}
            for column in columns:
                if column.name not in present:
                    # Names and the definition come from SCHEMA, never from a caller.
                    self._conn.execute(f'ALTER TABLE "{table}" ADD COLUMN {_column_sql(column)}')
        self._conn.commit()

    def _run(
        self,
        action: str,
        table: str | None,
        data: object,
        filters: object,
        vector: list[float] | None,
        limit: int | None,
    ) -> dict[str, Any]:
        """Dispatch one tool call by action; errors propagate as exceptions."""
        match action:
            case "select":
                return {"rows": self._select(_known_table(table), filters)}
            case "get":
                row_id = _required_string(_object("data", data), "id")
                return {"row": self._fetch(_known_table(table), row_id)}
            case "insert":
                return {"row": self._insert(_known_table(table), _object("data", data))}
            case "update":
                return {"row": self._update(_known_table(table), _object("data", data))}
            case "delete":
                self._delete(_known_table(table), _required_string(_object("data", data), "id"))
                return {"deleted": True}
            case "vector_upsert":
                self._vector_upsert(_object("data", data), vector)
                return {"ok": True}
            case "vector_search":
                results = self._vectors.search(
                    vector=_required_vector(vector),
                    limit=DEFAULT_SEARCH_LIMIT if limit is None else limit,
                )
                return {"results": results}
            case _:
                msg = (
                    f"unknown action {action!r}; expected select, get, insert, update, delete,"
                    " vector_upsert or vector_search"
                )
                raise StoreError(msg)

    def _select(self, table: str, filters: object) -> list[dict[str, Any]]:
        """Rows of `table` matching `filters`, in the requested order."""
        sql, params = _select_sql(table, _object("filters", {} if filters is None else filters))
        return [dict(row) for row in self._conn.execute(sql, params)]

    def _fetch(self, table: str, row_id: str) -> dict[str, Any] | None:
        """The row with `row_id`, or None."""
        sql = f'SELECT * FROM "{table}" WHERE "id" = ?'  # noqa: S608 -- a SCHEMA table
        row = self._conn.execute(sql, (row_id,)).fetchone()
        return None if row is None else dict(row)

    def _fetch_existing(self, table: str, row_id: str) -> dict[str, Any]:
        """The row with `row_id`; a missing row is an error."""
        row = self._fetch(table, row_id)
        if row is None:
            msg = f"no {table} row with id {row_id!r}"
            raise StoreError(msg)
        return row

    def _insert(self, table: str, data: Mapping[str, object]) -> dict[str, Any]:
        """Insert `data` with a new id and timestamps, and return the stored row."""
        values = _column_values(table, data)
        missing = [c.name for c in SCHEMA[table] if c.required and c.name not in values]
        if missing:
            msg = f"{table} insert is missing required field(s): {', '.join(missing)}"
            raise StoreError(msg)
        row_id = uuid.uuid4().hex
        now = self._clock()
        values |= {c.name: now for c in SCHEMA[table] if c.generated and c.kind is Kind.MILLIS}
        values["id"] = row_id
        names = ", ".join(f'"{name}"' for name in values)
        placeholders = ", ".join("?" for _ in values)
        # Column names were checked against SCHEMA; values are bound.
        sql = f'INSERT INTO "{table}" ({names}) VALUES ({placeholders})'  # noqa: S608
        with self._conn:
            self._conn.execute(sql, list(values.values()))
        return self._fetch_existing(table, row_id)

    def _update(self, table: str, data: Mapping[str, object]) -> dict[str, Any]:
        """Change only the fields in ``data.updates`` of row ``data.id``; return the row."""
        row_id = _required_string(data, "id")
        values = _column_values(table, _object("data.updates", data.get("updates")))
        if values:
            if "updatedAt" in _COLUMNS[table]:
                values["updatedAt"] = self._clock()
            assignments = ", ".join(f'"{name}" = ?' for name in values)
            # Column names were checked against SCHEMA; values are bound.
            sql = f'UPDATE "{table}" SET {assignments} WHERE "id" = ?'  # noqa: S608
            with self._conn:
                self._conn.execute(sql, [*values.values(), row_id])
        return self._fetch_existing(table, row_id)

    def _delete(self, table: str, row_id: str) -> None:
        """Delete the row with `row_id`; a missing row is an error."""
        sql = f'DELETE FROM "{table}" WHERE "id" = ?'  # noqa: S608 -- a SCHEMA table
        with self._conn:
            cursor = self._conn.execute(sql, (row_id,))
        if cursor.rowcount == 0:
            msg = f"no {table} row with id {row_id!r}"
            raise StoreError(msg)

    def _vector_upsert(self, data: Mapping[str, object], vector: list[float] | None) -> None:
        """Put ``{id, projectId, content}`` with `vector` into the vector index."""
        content, project_id = data.get("content"), data.get("projectId")
        if not isinstance(content, str):
            msg = f"data.content must be a string, got {content!r}"
            raise StoreError(msg)
        if project_id is not None and not isinstance(project_id, str):
            msg = f"data.projectId must be a string or null, got {project_id!r}"
            raise StoreError(msg)
        self._vectors.upsert(
            item_id=_required_string(data, "id"),
            project_id=project_id,
            content=content,
            vector=_required_vector(vector),
        )
