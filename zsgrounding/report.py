"""Plain-text tables of metrics for terminals and markdown files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

STVG_COLUMNS = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5", "n")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown_table(rows: Mapping[str, Mapping[str, object]], columns: Sequence[str] = STVG_COLUMNS) -> str:
    """A markdown table: one row per entry of ``rows``, one column per metric name."""
    header = ["", *columns]
    body = [[name, *(_cell(r.get(c, "")) for c in columns)] for name, r in rows.items()]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: Sequence[str]) -> str:
        cells = [line[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(line[1:], widths[1:], strict=True)]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([fmt(header), rule, *(fmt(line) for line in body)])


def stvg_rows(report: Mapping[str, object], name: str = "all") -> dict[str, Mapping[str, object]]:
    """Rows of an ``STVGResult.report()``: the overall row, then one per sentence type."""
    rows: dict[str, Mapping[str, object]] = {name: {c: report[c] for c in STVG_COLUMNS}}
    for key, value in report.items():
        if isinstance(value, Mapping):
            rows[key] = value
    return rows
