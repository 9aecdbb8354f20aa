"""The README stays in step with the code: the event catalog table, the config table
(Pulumi.yaml's schema) and the GCP services the stack enables."""

from __future__ import annotations

from pathlib import Path

from handlers.app import APP

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_catalog_matches_the_catalog() -> None:
    rows = []
    for line in README.read_text().splitlines():
        if line.startswith("| `") and "com.switchyard." in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            source, detail_type = [p.strip(" `") for p in cells[0].split(" / ")]
            consumers = [] if cells[2] == "—" else [c.strip() for c in cells[2].split(",")]
            rows.append((source, detail_type, cells[1].strip("`"), consumers))
    expected = [(t.source, t.detail_type, t.type, [c.name for c in APP.routes(t.type)])
                for t in APP.catalog]
    assert rows == expected


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
