"""Repository paths for tests (a module of its own: `conftest` names clash across folders)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
