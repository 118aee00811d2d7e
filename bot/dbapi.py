"""Statements straight through the DB-API connection: the busiest work, without a Session.

A broadcast writes the outcome of every message it sends, in a transaction per few of them, and
reads the outbox a batch at a time. Through a Session, such a transaction cost about 0.9 ms of
CPU (SQLite, six rows), more than the send itself; straight through the DB-API connection of a
connection held for the purpose, 0.18 ms. SQLAlchemy still writes the SQL: each Core statement
is compiled once for the engine's dialect, and its values take the same conversions as through
a Session (the types' bind and result processors).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

T = TypeVar("T")
_Processor = Callable[[Any], Any] | None


class Prepared:
    """A Core statement compiled for one dialect: its SQL, and how to bind and read its values."""

    def __init__(self, statement: ClauseElement, dialect: Any) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = str(compiled)
        self.constants: Mapping[str, Any] = compiled.params  # values the statement holds
        self.parameters: list[tuple[str, _Processor]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup or ()
        ]
        columns = getattr(statement, "exported_columns", ())  # selected, or RETURNING
        self.results: list[_Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]

    def bind(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The DB-API's parameters, in order, from the values by name."""
        bound = []
        for name, processor in self.parameters:
            value = values[name] if name in values else self.constants[name]
            bound.append(value if processor is None else processor(value))
        return tuple(bound)

    def read(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A row as the DB-API gave it, with its values as a Session would give them."""
        return tuple(
            value if processor is None else processor(value)
            for processor, value in zip(self.results, row, strict=True)
        )
