"""An HTML report of a store's tags over time: one self-contained file that opens offline.

The charts are drawn by Plotly (its JavaScript is inlined once, so the page makes no network
request): members over time per tag, in small multiples per category (or per exclusive group when no
catalog is given), memberships added and removed per period, the error rate of every tag that
failed, the tier flow of every exclusive group from the first to the last period, an overlap heatmap
of the most held tags, and a table of every tag with its definition, its members now and its trend.
Plotly is an optional dependency: ``pip install 'tagrules[report]'``.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tagrules.catalog import Catalog
from tagrules.stores._base import TagStore
from tagrules.stores._runs import Every, TagStatistics, TierFlow

__all__ = ["HEATMAP_TAGS", "render_report", "write_report"]

#: The most held tags the overlap heatmap shows.
HEATMAP_TAGS = 15
_COLUMNS = 4
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.5rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.3rem 0.6rem; border-bottom: 1px solid #eee; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.85rem; } .muted { color: #777; } .chart { margin: 1rem 0; }
"""


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        raise ImportError(
            "the HTML report draws its charts with plotly: pip install 'tagrules[report]'"
        ) from None
    return go, make_subplots


def _dates(stats: TagStatistics) -> list[str]:
    return [start.date().isoformat() for start in stats.periods]


def _families(
    stats: TagStatistics, catalog: Catalog | None, groups: dict[str, tuple[str, ...]]
) -> dict[str, list[str]]:
    """Tag families for the small multiples: the catalog's categories, or else the exclusive groups."""
    families: dict[str, list[str]] = {}
    for key in sorted(stats.tags):
        if catalog is not None and key in catalog:
            family = catalog[key].category or "other"
        else:
            family = next((group for group, tiers in groups.items() if key in tiers), "other")
        families.setdefault(family, []).append(key)
    return dict(sorted(families.items(), key=lambda item: (item[0] == "other", item[0])))


def _figure_html(figure: Any, name: str) -> str:
    config = {"displaylogo": False, "responsive": True}
    chart = figure.to_html(full_html=False, include_plotlyjs=False, div_id=name, config=config)
    return f'<div class="chart" data-chart="{html.escape(name)}">{chart}</div>'


def _members_charts(stats: TagStatistics, families: dict[str, list[str]]) -> list[str]:
    go, make_subplots = _plotly()
    dates = _dates(stats)
    charts = []
    for number, (family, keys) in enumerate(families.items()):
        rows = -(-len(keys) // _COLUMNS)
        figure = make_subplots(rows=rows, cols=_COLUMNS, subplot_titles=keys, vertical_spacing=0.5 / rows)
        for index, key in enumerate(keys):
            figure.add_trace(
                go.Scatter(x=dates, y=list(stats.tags[key].members), mode="lines+markers", name=key),
                row=index // _COLUMNS + 1,
                col=index % _COLUMNS + 1,
            )
        figure.update_layout(
            title=f"Members — {family}", showlegend=False, height=220 * rows + 80, margin={"t": 80}
        )
        charts.append(_figure_html(figure, f"members-{number}"))
    return charts


def _changes_chart(stats: TagStatistics) -> str:
    go, _ = _plotly()
    dates = _dates(stats)
    figure = go.Figure()
    for key in sorted(stats.tags):
        series = stats.tags[key]
        if any(series.added):
            figure.add_trace(go.Bar(x=dates, y=list(series.added), name=f"{key} +", legendgroup="added"))
        if any(series.removed):
            removed = [-count for count in series.removed]
            figure.add_trace(go.Bar(x=dates, y=removed, name=f"{key} -", legendgroup="removed"))
    figure.update_layout(
        barmode="relative", title="Memberships added (up) and removed (down) per period", height=480
    )
    return _figure_html(figure, "changes")


def _errors_chart(stats: TagStatistics) -> str:
    go, _ = _plotly()
    dates = _dates(stats)
    figure = go.Figure()
    failing = [key for key, series in sorted(stats.tags.items()) if any(rate for rate in series.error_rate)]
    for key in failing:
        figure.add_trace(
            go.Scatter(x=dates, y=list(stats.tags[key].error_rate), mode="lines+markers", name=key)
        )
    title = "Error rate per tag" if failing else "Error rate per tag: no rule failed"
    figure.update_layout(title=title, yaxis={"tickformat": ".1%", "rangemode": "tozero"}, height=380)
    return _figure_html(figure, "errors")


def _flow_chart(flow: TierFlow, number: int) -> str:
    go, _ = _plotly()
    sources = sorted(flow.moves)
    targets = sorted({target for moves in flow.moves.values() for target in moves})
    labels = [f"{label} (from)" for label in sources] + [f"{label} (to)" for label in targets]
    link: dict[str, list[Any]] = {"source": [], "target": [], "value": []}
    for row, source in enumerate(sources):
        for target, count in flow.moves[source].items():
            link["source"].append(row)
            link["target"].append(len(sources) + targets.index(target))
            link["value"].append(count)
    figure = go.Figure(go.Sankey(node={"label": labels, "pad": 18}, link=link))
    start, end = flow.start.date().isoformat(), flow.end.date().isoformat()
    figure.update_layout(title=f"Tier flow — {flow.group}: {start} to {end}", height=420)
    return _figure_html(figure, f"flow-{number}")


def _overlap_chart(store: TagStore, held: Sequence[str]) -> str:
    go, _ = _plotly()
    counts = store.overlap(held)
    matrix = [[counts.get((min(a, b), max(a, b)), 0) for b in held] for a in held]
    figure = go.Figure(go.Heatmap(z=matrix, x=list(held), y=list(held), colorscale="Blues"))
    figure.update_layout(
        title=f"Customers holding both tags (the {len(held)} most held tags)", height=160 + 32 * len(held)
    )
    return _figure_html(figure, "overlap")


def _flows(
    store: TagStore, groups: Sequence[str], start: datetime.datetime, end: datetime.datetime
) -> list[TierFlow]:
    """Every group's flow: a SQL store counts them together where its database does that faster."""
    from tagrules.stores.sql import SQLStore

    if isinstance(store, SQLStore):
        return store.flows(groups, start, end)
    return [store.flow(group, start, end) for group in groups]


def _trend(members: Sequence[int]) -> str:
    if not members:
        return ""
    first, last = members[0], members[-1]
    change = last - first
    share = f" ({change / first:+.0%})" if first else ""
    return f"{change:+,}{share}"


def _tag_table(stats: TagStatistics, catalog: Catalog | None) -> str:
    rows = []
    for key in sorted(stats.tags, key=lambda key: -(stats.tags[key].members[-1] if stats.periods else 0)):
        series = stats.tags[key]
        definition = catalog[key] if catalog is not None and key in catalog else None
        rule = (
            f"<code>{html.escape(definition.rule)}</code>" if definition else '<span class="muted">—</span>'
        )
        name = html.escape(definition.name or "") if definition else ""
        members = series.members[-1] if series.members else 0
        trend = html.escape(_trend(series.members))
        rows.append(
            f"<tr><td><b>{html.escape(key)}</b><br><span class=muted>{name}</span></td><td>{rule}</td>"
            f'<td class="number">{members:,}</td><td class="number">{trend}</td></tr>'
        )
    head = "<tr><th>tag</th><th>definition</th><th>members now</th><th>trend over the range</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def render_report(
    store: TagStore,
    *,
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    every: Every = "week",
    catalog: Catalog | None = None,
    title: str = "tagrules report",
) -> str:
    """The report of ``store``'s tags from ``since`` to ``until`` (default: its first record to now),
    one period per ``every``, as one HTML document. ``catalog`` gives the tags' definitions and
    categories (without it, definitions are left out and the small multiples follow the groups).

    Raises:
        ImportError: plotly is not installed.
        ValueError: a bad range (as :meth:`~tagrules.TagStore.stats`).
    """
    _plotly()  # a missing plotly is said before any query runs
    import plotly.offline

    stats = store.stats(since=since, until=until, every=every)
    runs = store.runs()
    groups: dict[str, tuple[str, ...]] = {}
    for run in runs:  # the latest run's tiers of each group
        groups.update(run.groups)
    sections = [f"<h1>{html.escape(title)}</h1>"]
    if not stats.periods or not stats.tags:
        sections.append("<p>The store holds no tag history yet.</p>")
    else:
        first, last = stats.periods[0].date().isoformat(), stats.periods[-1].date().isoformat()
        sections.append(
            f"<p class=muted>{len(stats.tags)} tags, {len(stats.periods)} periods of a {every} from {first} "
            f"to {last}; {len(runs)} recorded runs.</p>"
        )
        sections.append("<h2>Members over time</h2>")
        sections.extend(_members_charts(stats, _families(stats, catalog, groups)))
        sections.append("<h2>Added and removed</h2>")
        sections.append(_changes_chart(stats))
        sections.append("<h2>Error rate</h2>")
        sections.append(_errors_chart(stats))
        start, end = stats.periods[0], stats.periods[-1]
        flows = _flows(store, sorted(groups), start, end)
        if flows:
            sections.append("<h2>Tier flows</h2>")
            sections.extend(_flow_chart(flow, number) for number, flow in enumerate(flows) if flow.moves)
        held = sorted(stats.tags, key=lambda key: -stats.tags[key].members[-1])[:HEATMAP_TAGS]
        held = [key for key in held if stats.tags[key].members[-1]]
        if len(held) >= 2:
            sections.append("<h2>Overlap</h2>")
            sections.append(_overlap_chart(store, held))
        sections.append("<h2>Every tag</h2>")
        sections.append(_tag_table(stats, catalog))
    script = plotly.offline.get_plotlyjs()
    meta = json.dumps({"periods": len(stats.periods), "tags": len(stats.tags)})
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script>{script}</script></head>"
        f"<body data-report='{html.escape(meta)}'>{''.join(sections)}</body></html>\n"
    )


def write_report(store: TagStore, path: str | Path, **options: Any) -> Path:
    """Write :func:`render_report` to ``path`` (through a temporary file, moved in place when done)."""
    target = Path(path)
    text = render_report(store, **options)
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target
