"""The report as one self-contained HTML file: tables, axis effects, figures and prediction GIFs embedded as data
URIs, every run listed with its status (failed cells shown as failed), a link to its folder and its command.

A small script at the end records, once the page has loaded, how many of its images decoded:
``<body data-images="loaded/total">`` (what the headless-browser test reads).
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from analysis.effects import effects_tables, verdicts
from analysis.labels import DATASET_LABELS
from analysis.rows import by_variant, row_axes, row_key, run_name
from analysis.sections import Section
from core.axes import is_present

MEDIA_TYPES = {".png": "image/png", ".gif": "image/gif"}
STOPPED = {"failed", "diverged", "killed", "interrupted", "unreadable", "no summary", "stale"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2.5rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .85rem; }
caption { caption-side: bottom; text-align: left; font-size: .75rem; color: #555; padding-top: .4rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e4e4e4; text-align: right; }
th[scope=row], td.text { text-align: left; }
thead th { border-bottom: 2px solid #444; }
tr.baseline th, tr.baseline td { color: #555; }
tr.published th, tr.published td { color: #777; font-style: italic; }
td.stopped, tr.stopped td.status { color: #b00020; font-weight: 600; }
tr.stopped th { color: #b00020; }
.source { font-weight: normal; font-size: .75rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .8rem; color: #555; }
.gifs { display: flex; flex-wrap: wrap; gap: 1rem; }
.gifs figure { margin: 0; } .gifs img { image-rendering: pixelated; width: 260px; }
code { font-size: .75rem; background: #f5f5f5; padding: .1rem .3rem; }
.problem { color: #b00020; }
.summary { background: #f7f7f7; padding: .6rem 1rem; border-left: 3px solid #888; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", loaded + "/" + images.length);
});
"""


def render_page(sections: list[Section], html_path: Path, link: Callable[[pd.Series], str | None] | None) -> str:
    """The whole page; run links are relative to ``html_path``'s folder unless ``link`` says otherwise."""
    link = link or (lambda run: _default_link(run, html_path.parent))
    body = ["<h1>mentalsim report</h1>"]
    if len(sections) > 1:
        body.append("<ul>" + "".join(f'<li><a href="#s{i}">{_e(s.title)}</a></li>' for i, s in enumerate(sections)))
        body.append("</ul>")
    for index, section in enumerate(sections):
        body.append(_section(section, f"s{index}", link))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>mentalsim report: {_e(', '.join(s.title for s in sections))}</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def _section(section: Section, anchor: str, link: Callable[[pd.Series], str | None]) -> str:
    runs = section.runs
    by_dir = {run["run_dir"]: run for _, run in runs.iterrows()}
    counts = runs["status"].fillna("unknown").value_counts()
    parts = [
        f'<h2 id="{anchor}">{_e(section.title)}</h2>',
        '<p class="summary">'
        + _e(f"{len(runs)} runs: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
        + (f". Files: {_e(str(section.folder))}" if section.folder else "")
        + "</p>",
    ]
    for name, bests in section.bests.items():
        label, several = section.searched[name].label, len(bests) > 1
        for dataset, best in bests.items():
            on = f" on {DATASET_LABELS.get(dataset, dataset)}" if several else ""
            parts.append(
                "<p>"
                + _e(
                    f"Best {label}{on} by validation MSE: {best[name]:.4g} (best val MSE "
                    f"{best['best_val_mse']:.2f}, {best['status']}, {best['name']})."
                )
                + "</p>"
            )
    for table in section.tables:
        parts.append(table.to_html(lambda run_dir: link(by_dir[run_dir]) if run_dir in by_dir else None))
    if section.baseline_losses:
        parts.append('<p>Against the trivial baselines (test set, per predicted frame):</p><ul class="baselines">'
                     + "".join(f"<li>{_e(line)}</li>" for line in section.baseline_losses) + "</ul>")  # fmt: skip
    if section.plateau:
        parts.append(f"<p>{_e(section.plateau[0])}</p><ul class=\"plateau\">"
                     + "".join(f"<li>{_e(line)}</li>" for line in section.plateau[1:]) + "</ul>")  # fmt: skip
    if section.effects is not None and not section.effects.empty:
        lines = verdicts(section.effects, interactions=section.interactions)
        parts.append("<h3>Axis effects</h3>")
        parts.append(_effects_html(section.effects, section.interactions))
        parts.append('<ul class="verdicts">' + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>")
    for name, title in section.figure_titles.items():
        if name in section.figures:
            parts.append(_figure(section.figures[name], title))
        else:
            parts.append(f'<p class="problem">{_e(title)}: not drawn ({_e(section.figure_problems[name])})</p>')
    gifs = _gifs(runs[runs["status"] != "stale"])
    if gifs:
        parts.append("<h3>Predicted test sequences</h3>")
        parts.append('<p>Each animation: ground truth on the left, prediction on the right, one test sequence a row; '
                     "the bar fills with time and brightens once prediction begins.</p>")  # fmt: skip
        parts.append('<div class="gifs">' + "".join(_figure(path, caption) for caption, path in gifs) + "</div>")
    parts.append("<h3>Runs</h3>")
    parts.append(_runs_table(runs, link))
    return "\n".join(parts)


def _effects_html(effects: pd.DataFrame, interactions: pd.DataFrame | None = None) -> str:
    blocks = []
    for caption, header, rows in effects_tables(effects, interactions):
        head = "".join(f"<th>{_e(h)}</th>" for h in header)
        body = "".join(
            f'<tr><th scope="row">{_e(row[0])}</th>' + "".join(f"<td>{_e(c)}</td>" for c in row[1:]) + "</tr>"
            for row in rows
        )
        blocks.append(f'<table class="effects"><caption>{_e(caption)}</caption><thead><tr>{head}</tr></thead>'
                      f"<tbody>{body}</tbody></table>")  # fmt: skip
    return "\n".join(blocks)


def _runs_table(runs: pd.DataFrame, link: Callable[[pd.Series], str | None]) -> str:
    head = ["Run", "Variant", "Seed", "Status", "Steps", "Time", "Best val MSE", "Test MSE", "Test SSIM", "Command"]
    lines = ['<table class="runs"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    axes = row_axes(runs)
    for _, run in runs.sort_values("run_dir").iterrows():
        target = link(run)
        name = _e(run["run_name"])
        name = f'<a href="{_e(target)}">{name}</a>' if target else name
        status = _e(str(run["status"]))
        if is_present(run["status_reason"]):
            status += f'<br><span class="source">{_e(str(run["status_reason"])[:300])}</span>'
        variant = run_name(run, axes) if row_key(run, axes)[0] != "run" else "?"
        css = ' class="stopped"' if run["status"] in STOPPED else ""
        command = f"<code>{_e(run['command'])}</code>" if is_present(run["command"]) else ""
        cells = [
            f'<th scope="row">{name}</th>',
            f'<td class="text">{_e(variant)}</td>',
            f"<td>{_e(_int(run['seed']))}</td>",
            f'<td class="text status">{status}</td>',
            f"<td>{_e(_int(run['step']))}</td>",
            f"<td>{_e(_duration(run['run_time_s']))}</td>",
            f"<td>{_e(_num(run['best_val_mse'], 2))}</td>",
            f"<td>{_e(_num(run['mse'], 2))}</td>",
            f"<td>{_e(_num(run['ssim'], 3))}</td>",
            f'<td class="text">{command}</td>',
        ]
        lines.append(f"<tr{css}>" + "".join(cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _gifs(runs: pd.DataFrame) -> list[tuple[str, Path]]:
    """Each variant's first finished run with a test animation, in table order: (caption, path)."""
    finished = runs[(runs["status"] == "finished") & runs["frames_gif"].notna()]
    shown = []
    for name, group in by_variant(finished, row_axes(runs)):
        paths = [Path(path) for path in group["frames_gif"] if Path(path).is_file()]
        if paths:
            shown.append((name, paths[0]))
    return shown


def _figure(path: Path, caption: str) -> str:
    return f'<figure><img src="{data_uri(path)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def data_uri(path: str | Path) -> str:
    """A PNG or GIF file as a ``data:`` URI, so the page needs no other file."""
    path = Path(path)
    media = MEDIA_TYPES.get(path.suffix.lower())
    if media is None:
        raise ValueError(f"{path}: only {', '.join(MEDIA_TYPES)} images are embedded")
    return f"data:{media};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _default_link(run: pd.Series, base: Path) -> str | None:
    if is_present(run.get("url")):
        return str(run["url"])
    run_dir = str(run["run_dir"])
    if run_dir.startswith("wandb:"):
        return None
    return Path(os.path.relpath(Path(run_dir).resolve(), base.resolve())).as_posix() + "/"


def _e(text: object) -> str:
    return html.escape(str(text))


def _num(value: object, decimals: int) -> str:
    return f"{float(value):.{decimals}f}" if is_present(value) and math.isfinite(float(value)) else "–"


def _int(value: object) -> str:
    return str(int(value)) if is_present(value) else "–"


def _duration(seconds: object) -> str:
    if not is_present(seconds) or not math.isfinite(float(seconds)):
        return "–"
    seconds = float(seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
