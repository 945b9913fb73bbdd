"""The demo's HTML report: one self-contained page (tables, the evaluation plots found under
``runs/``, the demo's creatives and trailer) beside ``summary.json``."""

from __future__ import annotations

import html
import os
from pathlib import Path

__all__ = ["write_html_report"]

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#1d232a}table{border-collapse:collapse;margin:.5rem 0 1.5rem}"
          "td,th{border:1px solid #ccd;padding:.25rem .6rem;text-align:left;font-size:.9rem}th{background:#eef}"
          "img.plot{max-width:48%;margin:.3rem;border:1px solid #ccd}img.thumb{height:120px}img.poster{height:220px}"
          "div.copy{max-width:28rem}")


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Raw) else html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _rel(path: Path, base: Path) -> str:
    return html.escape(os.path.relpath(path.resolve(), base.resolve()))


def _creatives(report, out: Path) -> list[str]:
    """The creatives table (poster, copy, scores per (user, item)) and the trailer player."""
    if not report.creatives:
        return []
    rows = []
    for c in report.creatives:
        poster = _Raw(f"<img class='poster' src='{_rel(Path(c.folder) / 'poster.png', out)}'>")
        copy = f"<b>{html.escape(c.headline)}</b><br>{html.escape(c.tagline)}<br><small>{html.escape(c.body)}</small>"
        score = "unscored" if c.poster_score is None else f"{c.poster_score:.3f}"
        scores = (f"poster {score} (gate {'passed' if c.gate_passed else 'failed: best-ranked kept'}), "
                  f"{c.variants} variant(s) kept; copy: {c.copy_source}, similarity to the item {c.copy_similarity:.2f}; "
                  f"taste from {c.liked} liked items; {'from the cache' if c.cache_hit else f'made in {c.seconds:.1f} s'}")
        rows.append([c.user_id, f"{c.item_id} {c.title}", poster, _Raw(f"<div class='copy'>{copy}</div>"), scores])
    parts = ["<h2>Creatives</h2>", "<p>Personalised copy and posters (labelled AI-generated, watermarked, C2PA-signed) "
             "for the users' top recommendations; files and <code>scores.json</code> in each folder.</p>",
             _table(["user", "item", "poster", "copy", "scores"], rows)]
    t = report.trailer
    if t is not None:
        parts.append(f"<h3>Trailer of {html.escape(t.title)} for user {t.user_id} ({t.duration_s:.0f} s)</h3>"
                     f"<video controls src='{_rel(Path(t.path), out)}' style='max-height:480px'></video>")
    return parts


def write_html_report(report, out_dir: str | os.PathLike, plots_root: str | os.PathLike = "runs") -> Path:
    """Write ``<out_dir>/report.html`` from a ``DemoReport`` and return its path. Images are linked
    (relative paths), not copied: the data's licence keeps them out of any shared artefact."""
    from crossrec_core.persist import atomic_write_text

    out = Path(out_dir)
    parts = [f"<!doctype html><meta charset='utf-8'><title>crossrec demo</title><style>{_STYLE}</style>",
             "<h1>crossrec demo</h1>", f"<p>Total {report.total_seconds:.0f} s.</p>", "<h2>Steps</h2>",
             _table(["step", "seconds", "note"], [[s.name, f"{s.seconds:.1f}", s.note] for s in report.steps]),
             "<h2>Cross-media search</h2>"]
    for s in report.searches:
        query = (_Raw(f"<img class='thumb' src='{_rel(Path(s.query), out)}'>") if s.target_id is not None
                 else s.query)
        parts.append(_table(["query", "space", "own product rank"], [[query, s.space, s.target_rank or "-"]]))
        parts.append(_table(["rank", "item", "name", "score"], [[r, h.item_id, h.name, f"{h.score:.3f}"]
                                                                for r, h in enumerate(s.hits, 1)]))
    st = report.stream
    parts += ["<h2>Kafka stream into the live profile store</h2>", _table(
        ["published", "publish/s", "applied", "end-to-end/s", "p50 ms", "p99 ms", "lag", "dead-lettered"],
        [[st.published, f"{st.publish_events_per_s:.0f}", st.applied, f"{st.end_to_end_events_per_s:.0f}",
          st.p50_ms if st.p50_ms is None else f"{st.p50_ms:.0f}", st.p99_ms if st.p99_ms is None else f"{st.p99_ms:.0f}",
          st.lag, st.dlq]])]
    c = report.change
    parts.append(f"<h2>Recommendations of user {c.user_id} before and after a click on {html.escape(c.clicked_title)}</h2>")
    rows = []
    for r in range(max(len(c.before), len(c.after))):
        b = c.before[r] if r < len(c.before) else None
        a = c.after[r] if r < len(c.after) else None
        rows.append([r + 1, b.title if b else "", "+".join(b.sources) if b else "",
                     (a.title + (" (new)" if a.item_id in c.added else "")) if a else "", "+".join(a.sources) if a else ""])
    parts.append(_table(["rank", "before", "sources", "after", "sources"], rows))
    n = report.new_item
    parts.append(f"<p>New catalogue item {n.item_id} from the stream: rank for “{html.escape(n.query)}” "
                 f"{n.rank_before or 'absent'} → {n.rank_after or 'absent'}.</p>")
    parts += _creatives(report, out)
    plots = sorted(p for p in Path(plots_root).rglob("*.png") if "demo" not in p.parts) if Path(plots_root).is_dir() else []
    parts.append("<h2>Evaluation plots</h2>" + ("".join(f"<img class='plot' title='{_rel(p, out)}' src='{_rel(p, out)}'>"
                                                        for p in plots[:16])
                                                or "<p>none yet: run <code>crossrec retrieval eval</code> and "
                                                   "<code>crossrec rank eval</code>.</p>"))
    parts.append(_table(["output", "path"], [[k, v] for k, v in report.outputs.items()]))
    path = out / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path
