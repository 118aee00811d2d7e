"""The layers keep to their rules: what each part of the bot may import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported(path: Path) -> set[str]:
    """Every module a file imports (`from a.b import c` counts as a.b and a.b.c)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def under(names: set[str], *modules: str) -> set[str]:
    """The names that are one of `modules`, or inside one."""
    return {n for n in names if any(n == m or n.startswith(f"{m}.") for m in modules)}


@pytest.mark.parametrize("path", sorted((ROOT / "bot" / "channels").glob("*.py")), ids=str)
def test_the_channels_import_nothing_from_storage(path: Path) -> None:
    # Adapters only send and receive: what a platform reports is an event for the outbox.
    assert under(imported(path), "bot.models", "bot.db", "bot.outbox", "sqlalchemy.orm") == set()


def test_the_engine_knows_no_sender() -> None:
    # It hands its replies to the outbox; the outbox's wake-up tells the sender.
    assert under(imported(ROOT / "bot" / "engine.py"), "bot.sender") == set()


def test_handlers_never_see_a_platform() -> None:
    for path in sorted((ROOT / "handlers").glob("*.py")):
        assert under(imported(path), "telegram", "twilio") == set(), path
