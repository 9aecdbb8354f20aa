"""The README's Deploying section stays in step with the code: the config table
(Pulumi.yaml's schema) and the GCP services the stack enables. (The event catalog section
is generated: tests/unit/test_catalog_export.py keeps it current.)"""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


# --- the Deploying section ---------------------------------------------------------------


def _between(begin: str, end: str) -> str:
    text = README.read_text()
    start = text.index(begin)
    return text[start + len(begin):text.index(end, start)]


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`"


def test_readme_config_table_matches_the_pulumi_yaml_schema() -> None:
    import yaml

    schema = yaml.safe_load((README.parent / "Pulumi.yaml").read_text())["config"]
    expected = [f"| `{key}` | {e['type']} | {_cell(e.get('default'))} | {e['description']} |"
                for key, e in schema.items()]
    table = _between("<!-- config-table", "<!-- /config-table -->").strip().splitlines()[1:]
    assert table[:2] == ["| key | type | default | what it does |", "|---|---|---|---|"]
    assert table[2:] == expected


def test_readme_lists_the_services_the_gcp_stack_enables() -> None:
    from infra.gcp.components import SERVICES

    listed = _between("<!-- gcp-services -->", "<!-- /gcp-services -->")
    assert [s.strip().strip("`") for s in listed.split(",")] == list(SERVICES)
