"""The README's event catalog table stays in step with the catalog."""

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
