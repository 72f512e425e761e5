"""The cohort's results for people and programs: ``lesions.tsv`` (one row per scan) and an HTML report.

The table is BIDS-style TSV (``n/a`` for missing values). The report, in the
manner of MRIQC's group reports, is one static page: a summary, the lesion-volume distribution, the failed scans
with their one-line error, and one row per scan with its thumbnail (scan, pseudo-healthy image, anomaly map and
mask on the slice with the most lesion) in a table whose columns sort on a click (or with ``#sort=COLUMN[&desc]``
in the address). Both are written atomically and rebuilt from the outputs on every run.
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass
from pathlib import Path

from disanatdetect import __version__
from disanatdetect.cohort.outputs import FIGURES_FOLDER, PROJECT_NAME, atomic_write_text

MISSING = "n/a"  # BIDS's spelling of an empty cell
# The table's columns and what they hold (the report shows these as its columns' tooltips).
COLUMNS = {
    "scan": "Scan key: the source file's name (BIDS) or its path in the input folder or list, without suffix",
    "subject": "BIDS subject label or the list's subject column",
    "session": "BIDS session label or the list's session column",
    "modality": "Contrast the scan was analysed as (t1, t1c, t2, flair, pd)",
    "status": "done: outputs complete and current; failed: see error; pending: not processed yet",
    "lesion_count": "Number of connected lesions in the lesion mask",
    "lesion_volume_ml": "Total lesion volume in millilitres",
    "threshold": "Anomaly-map threshold that made the lesion mask",
    "model_version": "Version of the model bundle",
    "seconds": "Seconds the scan took on its worker, reading to detection",
    "processed_at": "Local time the scan was processed (an earlier run's time for scans it completed)",
    "error": "Why the scan failed, in one line",
    "input": "Path of the input scan",
    "report": "Path of the scan's report (JSON), relative to this table",
}
NUMERIC = {"lesion_count", "lesion_volume_ml", "threshold", "seconds"}
# The HTML table's columns after the thumbnail (errors have their own table; subject and session only if given).
SHOWN = ("scan", "subject", "session", "modality", "status", "lesion_count", "lesion_volume_ml", "threshold",
         "seconds")
OPTIONAL = ("subject", "session")
DISTRIBUTION_NAME = "lesion_volumes.png"


@dataclass(frozen=True)
class ReportConfig:
    """How the HTML report looks; the defaults are the released ones."""

    title: str = f"{PROJECT_NAME} cohort report"
    thumbnail_width_px: int = 360
    histogram_bins: int = 30


def _cell(value) -> str:
    if value is None or value == "":
        return MISSING
    return str(value).replace("\t", " ").replace("\n", " ")


def write_table(rows: list[dict], path: Path) -> Path:
    """``lesions.tsv``: one row per scan, the columns of :data:`COLUMNS`.

    No JSON data dictionary goes beside it: pybids would read its column descriptions as metadata of the table and
    take "subject" and "session" for entities; the descriptions are the report's column tooltips instead.
    """
    lines = ["\t".join(COLUMNS)] + ["\t".join(_cell(row.get(column)) for column in COLUMNS) for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def read_table(path: Path) -> list[dict]:
    """The rows of a ``lesions.tsv`` (``n/a`` read back as empty)."""
    header, *lines = path.read_text().splitlines()
    columns = header.split("\t")
    return [{column: ("" if value == MISSING else value) for column, value in zip(columns, line.split("\t"))}
            for line in lines]


def _distribution(rows: list[dict], path: Path, config: ReportConfig) -> Path | None:
    from disanatdetect.figures import _pyplot, _save

    volumes = [float(row["lesion_volume_ml"]) for row in rows if row.get("status") == "done"]
    if not volumes:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.0, 2.6))
    from matplotlib.ticker import MaxNLocator

    axis.hist(volumes, bins=config.histogram_bins, color="#c0392b")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("lesion volume (mL)")
    axis.set_ylabel("scans")
    without = sum(volume == 0 for volume in volumes)
    return _save(figure, path, 100, f"{len(volumes)} scans, {without} without lesion")


def _row_html(row: dict, root: Path, shown: list[str], config: ReportConfig) -> str:
    thumbnail = row.get("thumbnail")
    if thumbnail and (root / thumbnail).exists():
        source = html.escape(thumbnail)
        picture = (f'<a href="{source}"><img src="{source}" loading="lazy" width="{config.thumbnail_width_px}" '
                   f'alt="{html.escape(row["scan"])}: scan, pseudo-healthy image, anomaly map, lesion mask"></a>')
    else:
        picture = '<span class="none">no image</span>'
    cells = [f"<td>{picture}</td>"]
    for column in shown:
        value = row.get(column)
        text = html.escape(_cell(value))
        if column == "scan" and row.get("report"):
            text = f'<a href="{html.escape(row["report"])}">{text}</a>'
        if column in NUMERIC:
            number = value if value not in (None, "") else ""
            cells.append(f'<td class="number" data-value="{html.escape(str(number))}">{text}</td>')
        else:
            cells.append(f'<td class="{column}">{text}</td>')
    return f'<tr class="{html.escape(str(row.get("status", "")))}">' + "".join(cells) + "</tr>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: middle; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
#failed td { max-width: 48em; overflow-wrap: anywhere; }
th button { font: inherit; font-weight: bold; border: none; background: none; cursor: pointer; padding: 0; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
tr.failed td { background: #fdecea; } tr.pending td { color: #888; }
.none { color: #888; } #notice { color: #a00; }
"""

# Runs first: any script error or image that fails to load is counted on <html data-errors> and shown in #notice.
_ERRORS_SCRIPT = """
window.reportErrors = [];
document.documentElement.dataset.errors = "0";
window.addEventListener("error", function (event) {
  var target = event.target;
  var what = target && target.tagName === "IMG" ? "image not found: " + target.getAttribute("src")
                                                 : (event.message || "script error");
  window.reportErrors.push(what);
  document.documentElement.dataset.errors = String(window.reportErrors.length);
  var notice = document.getElementById("notice");
  if (notice) { notice.hidden = false; notice.textContent = window.reportErrors.join("; "); }
}, true);
"""

# Sorting: a click on a column's header sorts by it (again: the other way); "#sort=COLUMN[&desc]" sorts on opening.
_SORT_SCRIPT = """
(function () {
  var table = document.getElementById("scans");
  var body = table.tBodies[0];
  var headers = Array.prototype.slice.call(table.querySelectorAll("th[data-column]"));
  function key(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
    if (!numeric) { return raw.toLowerCase(); }
    var number = parseFloat(raw);
    return isNaN(number) ? -Infinity : number;
  }
  function sortBy(column, descending) {
    var header = headers.filter(function (h) { return h.dataset.column === column; })[0];
    if (!header) { return; }
    var index = header.cellIndex, numeric = header.dataset.type === "number", sign = descending ? -1 : 1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, index, numeric), y = key(b, index, numeric);
      return sign * (x < y ? -1 : x > y ? 1 : 0);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (h) {
      h.setAttribute("aria-sort", h === header ? (descending ? "descending" : "ascending") : "none");
    });
  }
  headers.forEach(function (header) {
    header.querySelector("button").addEventListener("click", function () {
      var descending = header.getAttribute("aria-sort") === "ascending";
      sortBy(header.dataset.column, descending);
      try { history.replaceState(null, "", "#sort=" + header.dataset.column + (descending ? "&desc" : "")); }
      catch (error) { /* some browsers refuse to rewrite a file: address; sorting still works */ }
    });
  });
  var match = /^#sort=([a-z_]+)(&desc)?$/.exec(window.location.hash);
  if (match) { sortBy(match[1], Boolean(match[2])); }
  document.documentElement.dataset.ready = "true";
})();
"""


def write_html(rows: list[dict], root: Path, path: Path, model_version: str = "",
               config: ReportConfig = ReportConfig()) -> Path:
    """The group report; thumbnails and the plot are referenced relative to ``root`` (the report's folder)."""
    counts = {status: sum(row.get("status") == status for row in rows) for status in ("done", "failed", "pending")}
    plot = _distribution(rows, root / FIGURES_FOLDER / DISTRIBUTION_NAME, config)
    failed = [row for row in rows if row.get("status") == "failed"]
    shown = [column for column in SHOWN if column not in OPTIONAL or any(row.get(column) for row in rows)]
    headers = ['<th scope="col">thumbnail</th>'] + [
        f'<th scope="col" data-column="{column}" data-type="{"number" if column in NUMERIC else "text"}" '
        f'aria-sort="none" title="{html.escape(COLUMNS[column])}"><button type="button">'
        f'{column.replace("_", " ")}</button></th>' for column in shown]
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(config.title)}</title>", f"<script>{_ERRORS_SCRIPT}</script>",
        f"<style>{_STYLE}</style>", "</head>", "<body>", f"<h1>{html.escape(config.title)}</h1>",
        f'<p id="summary">{len(rows)} scans: {counts["done"]} done, {counts["failed"]} failed, '
        f'{counts["pending"]} pending. Model {html.escape(model_version or MISSING)}, {PROJECT_NAME} {__version__}, '
        f'{time.strftime("%Y-%m-%d %H:%M")}. Table: <a href="lesions.tsv">lesions.tsv</a>.</p>',
        '<p id="notice" hidden></p>',
        "<h2>Lesion volume</h2>",
        (f'<img id="distribution" src="{FIGURES_FOLDER}/{DISTRIBUTION_NAME}" alt="histogram of lesion volumes">'
         if plot else "<p>No scan is done yet.</p>"),
        f"<h2>Failed scans ({len(failed)})</h2>",
    ]
    if failed:
        parts.append('<table id="failed"><thead><tr><th scope="col">scan</th><th scope="col">error</th></tr></thead>'
                     "<tbody>")
        parts += [f"<tr><td>{html.escape(row['scan'])}</td><td>{html.escape(_cell(row.get('error')))}</td></tr>"
                  for row in failed]
        parts.append("</tbody></table>")
    else:
        parts.append("<p>None.</p>")
    parts += [f"<h2>Scans ({len(rows)})</h2>", '<table id="scans">', "<thead><tr>" + "".join(headers) + "</tr></thead>",
              "<tbody>"]
    parts += [_row_html(row, root, shown, config) for row in rows]
    parts += ["</tbody></table>", f"<script>{_SORT_SCRIPT}</script>", "</body>", "</html>"]
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (links in the report and the table)."""
    return Path(os.path.relpath(path, root)).as_posix()
