"""Docs that are generated from code must match it."""

from pathlib import Path

from pool import workerstats
from pool.settings import DEPLOYMENT_BY_NAME, RETIRED_SETTINGS, deployment_doc_table, settings_doc_table

ROOT = Path(__file__).resolve().parent.parent


def test_settings_table_in_docs_matches_the_declarations() -> None:
    assert settings_doc_table() in (ROOT / "docs" / "settings.md").read_text()


def test_deployment_settings_table_in_docs_matches_the_declarations() -> None:
    assert deployment_doc_table() in (ROOT / "docs" / "settings.md").read_text()
    # The stats directory's variable is read where the workers publish; the table documents that same name.
    assert DEPLOYMENT_BY_NAME["stats_dir"].env == workerstats.ENV_DIR
    for retired in RETIRED_SETTINGS:  # a setting that stopped working says so where people look it up
        assert f"Retired: `{retired}`" in (ROOT / "docs" / "settings.md").read_text()


def test_metrics_table_in_docs_lists_every_statistic() -> None:
    from pool.metrics import doc_table

    assert doc_table() in (ROOT / "docs" / "observability.md").read_text()
