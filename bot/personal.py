"""The one declaration of personal data: what each of a person's tables holds about them.

Every column of a person's tables (PERSON_TABLES) says, in its `info`, either how "My data"
shows it (`shown`, `personal`) or why it is not shown (`internal`). A personal column is
encrypted at rest (its type is Encrypted or EncryptedJSON), blanked by "Delete my data" and by
retention, and left out of public exports. tests/test_personal.py fails on a column of these
tables that says none of this, so a new field cannot be forgotten.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Table

# How "My data" shows a value: handlers/privacy.py has a formatter for each of these.
KINDS = frozenset(
    {
        "text",
        "address",
        "datetime",
        "bool",
        "language",
        "place",
        "places",
        "count",
        "needs",
        "need",
        "shelter",
        "when",
        "point",
        "report_status",
        "org_type",
        "signature_status",
        "photo",
        "conversation",
        "member_role",
    }
)


def shown(label: str, kind: str = "text") -> dict[str, Any]:
    """A column "My data" shows under `label` (an N_ message), not personal by itself."""
    assert kind in KINDS, kind
    return {"label": label, "kind": kind, "personal": False}


def personal(
    label: str, kind: str = "text", blank: Any = None, plain: str | None = None
) -> dict[str, Any]:
    """A personal column: shown in "My data", encrypted (unless `plain` says why not), set to
    `blank` when forgotten."""
    assert kind in KINDS, kind
    return {"label": label, "kind": kind, "personal": True, "blank": blank, "plain": plain}


def internal(why: str) -> dict[str, Any]:
    """A column that says nothing about the person (an id, bookkeeping): `why`, for readers."""
    return {"why": why, "personal": False}


def is_personal(column: Column[Any]) -> bool:
    """Whether a column holds a personal value."""
    return bool(column.info.get("personal"))


def personal_columns(table: Table) -> list[Column[Any]]:
    """The personal columns of a table, in order."""
    return [column for column in table.columns if is_personal(column)]


def blanks(table: Table) -> dict[str, Any]:
    """Each personal column's value once the person is forgotten."""
    return {column.key: column.info.get("blank") for column in personal_columns(table)}


def shown_columns(table: Table) -> list[Column[Any]]:
    """The columns "My data" shows, in order."""
    return [column for column in table.columns if "label" in column.info]
