"""The report's pictures (PNG) and its standalone HTML page, from `range_report`'s dict."""

from __future__ import annotations

import base64
import html
import io
import os
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: charts are rendered to bytes only

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 90


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def _dates(rows: list[dict]) -> pd.Series:
    return pd.to_datetime(pd.Series([r["day"] for r in rows], dtype=object))


def funnel_chart(report: dict) -> bytes:
    totals = report["email_funnel"]["totals"]
    steps = ["sent", "delivered", "opened", "clicked"]
    figure, ax = plt.subplots(figsize=(6.5, 3))
    bars = ax.barh(steps[::-1], [totals[s] for s in steps[::-1]], color="#4c72b0")
    ax.bar_label(bars, labels=[f"{totals[s]:,}" for s in steps[::-1]], padding=3)
    ax.set_title(
        f"Email funnel {report['start_date']} to {report['end_date']} "
        f"(unsubscribed {totals['unsubscribed']:,}, bounced {totals['bounced']:,})"
    )
    ax.set_xlabel("messages")
    ax.margins(x=0.15)
    return _png(figure)


def trends_chart(report: dict) -> bytes:
    revenue = pd.DataFrame(report["revenue"]["daily"])
    activity = report["customers"]["daily"]
    redemptions = report["redemptions"]["daily"]
    figure, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True)
    if not revenue.empty:
        for currency, rows in revenue.groupby("currency"):
            axes[0].plot(pd.to_datetime(rows.day), rows.net_revenue, label=currency)
        axes[0].legend(loc="upper left", fontsize="small")
    axes[0].set_title("Revenue net of refunds per day")
    axes[1].plot(_dates(activity), [r["active_customers"] for r in activity], color="#55a868")
    axes[1].set_title("Active customers per day")
    axes[2].plot(_dates(redemptions), [r["redemptions"] for r in redemptions], color="#c44e52")
    axes[2].set_title("Redemptions per day")
    figure.autofmt_xdate()
    return _png(figure)


def uplift_chart(report: dict) -> bytes:
    uplift = report["uplift"]
    days = [d for d in uplift["daily"] if d["ci_low"] is not None]
    figure, (daily_ax, range_ax) = plt.subplots(
        1, 2, figsize=(8, 3.2), gridspec_kw={"width_ratios": [3, 1]}
    )
    if days:
        x = _dates(days)
        daily_ax.fill_between(
            x, [d["ci_low"] for d in days], [d["ci_high"] for d in days], alpha=0.25, label="95% CI"
        )
        daily_ax.plot(x, [d["uplift"] for d in days], label="uplift")
        daily_ax.legend(loc="upper left", fontsize="small")
    daily_ax.axhline(0, color="grey", linewidth=0.8)
    daily_ax.set_title("Daily uplift: redemptions per customer")
    for label in daily_ax.get_xticklabels():
        label.set_rotation(30)
    if uplift["ci_low"] is not None:
        range_ax.errorbar(
            [0],
            [uplift["uplift"]],
            yerr=[[uplift["uplift"] - uplift["ci_low"]], [uplift["ci_high"] - uplift["uplift"]]],
            fmt="o",
            capsize=6,
        )
    range_ax.axhline(0, color="grey", linewidth=0.8)
    range_ax.set_xticks([])
    range_ax.set_title("Whole range, 95% CI")
    return _png(figure)


def charts(report: dict) -> dict[str, bytes]:
    return {
        "Email funnel": funnel_chart(report),
        "Trends": trends_chart(report),
        "Uplift (contacted minus holdout)": uplift_chart(report),
    }


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown(report: dict) -> str:
    """The report's summary table as Markdown (the pictures are in the HTML page and, as
    small charts for the UI, in `ui_charts`)."""
    return f"**{report['start_date']} to {report['end_date']}**\n\n{_summary_markdown(report)}"


# The Dagster UI shows a Markdown entry inline only under 1,000 characters; longer ones
# hide behind "Show Markdown". The UI's charts are small SVG line charts (a data URI the
# UI's Markdown renders as an image) and text bars, each entry under that limit whatever
# the range's length: a long range is averaged into at most POINTS points.
INLINE_MARKDOWN_LIMIT = 1000
POINTS = (48, 32, 16)  # tried in turn until the entry fits
SVG_WIDTH, SVG_HEIGHT = 300, 60
BAR_WIDTH = 24
_URI_ESCAPES = (("%", "%25"), (" ", "%20"), ("#", "%23"), ("<", "%3C"), (">", "%3E"))


def bucketed(values: list[float | None], width: int) -> list[float | None]:
    """`values` averaged into `width` buckets when there are more; None where a bucket
    has no value."""
    if len(values) <= width:
        return values
    size = len(values) / width
    buckets = [values[int(i * size) : int((i + 1) * size)] for i in range(width)]
    return [
        sum(known) / len(known) if (known := [v for v in b if v is not None]) else None
        for b in buckets
    ]


def _svg_uri(body: str) -> str:
    svg = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{SVG_WIDTH}' height='{SVG_HEIGHT}'>"
        f"{body}</svg>"
    )
    for raw, escaped in _URI_ESCAPES:
        svg = svg.replace(raw, escaped)
    return "data:image/svg+xml," + svg


def line_chart(title: str, values: list[float | None], points: int, zero: bool = False) -> str:
    """A Markdown image of `values` as a line (and the zero line when `zero` and the
    values cross it), with their range as a caption."""
    values = bucketed(values, points)
    known = [v for v in values if v is not None]
    if not known:
        return f"{title}: no data in this range"
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    step = SVG_WIDTH / max(len(values) - 1, 1)

    def y(value: float) -> int:
        return round(SVG_HEIGHT - 3 - (value - low) / span * (SVG_HEIGHT - 6))

    drawn = [(round(i * step), y(v)) for i, v in enumerate(values) if v is not None]
    if len(drawn) == 1:  # one day: a dot, since a line of one point draws nothing
        body = f"<circle cx='{max(drawn[0][0], 3)}' cy='{drawn[0][1]}' r='3' fill='#4c72b0'/>"
    else:
        line = ",".join(f"{x},{y_}" for x, y_ in drawn)
        body = f"<polyline fill='none' stroke='#4c72b0' stroke-width='2' points='{line}'/>"
    if zero and low < 0 < high:
        body += f"<line x1='0' x2='{SVG_WIDTH}' y1='{y(0)}' y2='{y(0)}' stroke='#999'/>"
    return f"![{title}]({_svg_uri(body)})\n\nfrom {_fmt(low)} to {_fmt(high)} per day"


def _bar(value: float, largest: float) -> str:
    return "█" * round(value / largest * BAR_WIDTH) if largest else ""


def funnel_text_chart(report: dict) -> str:
    totals = report["email_funnel"]["totals"]
    steps = ["sent", "delivered", "opened", "clicked"]
    largest = max(totals[s] for s in steps)
    rows = [f"| {s} | `{_bar(totals[s], largest)}` | {totals[s]:,} |" for s in steps]
    return "\n".join(["| step | | messages |", "|---|---|---:|", *rows])


def _daily_series(report: dict) -> dict[str, tuple[list[float | None], bool]]:
    """Each daily line the UI charts: its values and whether zero matters to it."""
    series: dict[str, tuple[list[float | None], bool]] = {}
    revenue = pd.DataFrame(report["revenue"]["daily"])
    if not revenue.empty:
        for currency, money in revenue.groupby("currency"):
            by_day = money.groupby("day").net_revenue.sum()
            series[f"net revenue per day ({currency})"] = ([float(v) for v in by_day], True)
    series["active customers per day"] = (
        [r["active_customers"] for r in report["customers"]["daily"]],
        False,
    )
    series["redemptions per day"] = (
        [r["redemptions"] for r in report["redemptions"]["daily"]],
        False,
    )
    series["uplift per day (contacted minus holdout)"] = (
        [d["uplift"] for d in report["uplift"]["daily"]],
        True,
    )
    return series


def ui_charts(report: dict) -> dict[str, str]:
    """The charts for the Dagster UI, one Markdown entry each: text bars of the funnel and
    an SVG line per daily series, each under the UI's inline limit, so a reader sees them
    on the asset without a click and a materialisation stores well under 10 kB of them."""
    uplift = report["uplift"]
    pictures = {"email funnel": funnel_text_chart(report)}
    for title, (values, zero) in _daily_series(report).items():
        for points in POINTS:
            pictures[title] = line_chart(title, values, points, zero)
            if len(pictures[title]) < INLINE_MARKDOWN_LIMIT - 200:
                break
    pictures["uplift per day (contacted minus holdout)"] += (
        f"; whole range {_fmt(uplift['uplift'])} "
        f"(95% CI {_fmt(uplift['ci_low'])} to {_fmt(uplift['ci_high'])})"
    )
    for name, text in pictures.items():
        if len(text) >= INLINE_MARKDOWN_LIMIT:
            raise ValueError(f"chart {name} is {len(text)} characters, over the inline limit")
    return {f"chart: {name}": text for name, text in pictures.items()}


def _fmt(value, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str | bool):
        return str(value)
    if percent:
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    return f"{value:,}"


def summary_rows(report: dict) -> list[tuple[str, str]]:
    funnel = report["email_funnel"]
    uplift = report["uplift"]
    rows = [(name, _fmt(v)) for name, v in funnel["totals"].items()]
    rows += [(name, _fmt(v, percent=True)) for name, v in funnel["rates"].items()]
    rows += [
        ("redemptions", _fmt(report["redemptions"]["redemptions"])),
        ("points spent", _fmt(report["redemptions"]["points_spent"])),
    ]
    for money in report["revenue"]["by_currency"]:
        rows.append((f"net revenue ({money['currency']})", _fmt(float(money["net_revenue"]))))
        rows.append((f"refunded ({money['currency']})", _fmt(float(money["refunded"]))))
    rows += [
        ("new customers", _fmt(report["customers"]["new_customers"])),
        ("mean daily active customers", _fmt(report["customers"]["mean_daily_active"])),
        (
            "uplift, redemptions per customer (95% CI)",
            f"{_fmt(uplift['uplift'])} ({_fmt(uplift['ci_low'])} to {_fmt(uplift['ci_high'])})",
        ),
        (
            "arms: contacted / holdout customers",
            f"{uplift['contacted_customers']:,} / {uplift['holdout_customers']:,}",
        ),
    ]
    return rows


def _summary_markdown(report: dict) -> str:
    lines = ["| metric | value |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in summary_rows(report)]
    return "\n".join(lines)


def _table_html(rows: list[dict]) -> str:
    if not rows:
        return "<p>No rows in this range.</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(report: dict, pictures: dict[str, bytes]) -> str:
    """One self-contained file: the charts are embedded, nothing is fetched."""
    title = f"Analytics {report['start_date']} to {report['end_date']}"
    summary = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(value)}</td></tr>"
        for name, value in summary_rows(report)
    )
    figures = "".join(
        f'<h2>{html.escape(name)}</h2><img alt="{html.escape(name)}" src="{data_uri(png)}">'
        for name, png in pictures.items()
    )
    sections = {
        "Redemptions by category": report["redemptions"]["by_category"],
        "Top rewards": report["redemptions"]["top_rewards"],
        "Revenue by currency": report["revenue"]["by_currency"],
        "Churn-risk mix (latest scoring day)": report["churn_risk"]["bands"],
        "Recommendation coverage and acceptance": report["recommendations"]["daily"],
        "Email funnel per day": report["email_funnel"]["daily"],
    }
    tables = "".join(f"<h2>{html.escape(k)}</h2>{_table_html(v)}" for k, v in sections.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; font-size: 0.9rem; }}
td, th {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{html.escape(report["uplift"]["definition"])}</p>
<table><tbody>{summary}</tbody></table>
{figures}
{tables}
</body></html>
"""


def write_report(report: dict, pictures: dict[str, bytes], folder: Path) -> Path:
    """The page for the report's range under `folder`, replaced whole: readers and a
    concurrent run for the same range never see half a file."""
    path = Path(folder) / f"analytics_{report['start_date']}_{report['end_date']}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    staged.write_text(html_page(report, pictures), encoding="utf-8")
    os.replace(staged, path)
    return path
