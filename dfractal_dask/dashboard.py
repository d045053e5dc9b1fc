"""``/fractal`` on the scheduler's dashboard: a live preview of the render
filling in, and per-worker throughput.  Plain HTML + a little JavaScript that
polls two JSON/PNG endpoints, served by the dashboard's own web server (so no
extra port and no CDN: it works offline and behind jupyter-server-proxy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tornado import web

if TYPE_CHECKING:
    from .metrics import FractalMetrics

__all__ = ["PAGE", "install"]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dfractal render</title>
<style>
 body { font-family: sans-serif; margin: 1.5em; background: #fafafa; }
 #preview { image-rendering: pixelated; width: 512px; border: 1px solid #999; background: #222; }
 table { border-collapse: collapse; margin-top: 1em; }
 td, th { padding: 2px 10px; text-align: right; border-bottom: 1px solid #ddd; }
 .bar { display: inline-block; height: 12px; background: #3b7dd8; }
 td:last-child { text-align: left; }
</style></head>
<body>
<h1>dfractal render</h1>
<p id="status">waiting for a render…</p>
<img id="preview" alt="live preview of the render">
<table id="workers"><thead><tr><th>worker</th><th>tasks</th><th>rows</th>
<th>G iterations</th><th>G iterations/s</th><th>throughput</th></tr></thead><tbody></tbody></table>
<script>
// Every value from data.json goes into the page as text (textContent, text
// nodes) or as a checked number, never through innerHTML: worker names,
// addresses and render metadata are whatever a worker or a client said.
function num(x) { const n = Number(x); return Number.isFinite(n) ? n : 0; }
function fixed(x) { const n = Number(x); return Number.isFinite(n) ? (n / 1e9).toFixed(3) : "?"; }
function cell(text) { const td = document.createElement("td"); td.textContent = String(text); return td; }
function workerRow(addr, w, best) {
  const tr = document.createElement("tr");
  tr.className = "worker";
  tr.append(cell(`${w.name ?? "?"} (${addr})`), cell(num(w.tasks)), cell(num(w.rows)), cell(fixed(w.iterations)),
            cell(fixed(w.iterations_per_second)));
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.style.width = Math.max(0, Math.min(200, Math.round(200 * num(w.iterations_per_second) / best))) + "px";
  const td = document.createElement("td");
  td.append(bar);
  tr.append(td);
  return tr;
}
async function tick() {
  try {
    const r = await fetch("fractal/data.json", {cache: "no-store"});
    const d = await r.json();
    if (d.render_id) {
      const m = d.meta || {};
      document.getElementById("status").textContent =
        `render ${String(d.render_id).slice(0, 8)}: ${num(d.blocks_done)} / ${m.n_blocks} blocks` +
        (d.ended ? " (done)" : "");
      document.getElementById("preview").src = "fractal/preview.png?t=" + num(d.blocks_done);
      const rows = Object.entries(d.workers || {}).map(([a, w]) => [a, w && typeof w === "object" ? w : {}]);
      const best = Math.max(1, ...rows.map(([a, w]) => num(w.iterations_per_second)));
      document.querySelector("#workers tbody").replaceChildren(...rows.map(([a, w]) => workerRow(a, w, best)));
    }
  } catch (e) { document.getElementById("status").textContent = "no data: " + e; }
  setTimeout(tick, 500);
}
tick();
</script></body></html>
"""


class _Base(web.RequestHandler):
    def initialize(self, plugin: FractalMetrics) -> None:
        self.plugin = plugin


class _Page(_Base):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(PAGE)


class _Data(_Base):
    def get(self) -> None:
        from .metrics import to_json

        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(to_json(self.plugin.report(self.get_argument("render", None)) or {}))


class _Preview(_Base):
    def get(self) -> None:
        png = self.plugin.preview_png(self.get_argument("render", None))
        if png is None:
            raise web.HTTPError(404, "no render yet")
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "no-store")
        self.write(png)


def install(scheduler, plugin: FractalMetrics) -> None:
    """Add the ``/fractal`` routes to the scheduler's dashboard web server."""
    app = getattr(scheduler, "http_application", None)
    if app is None:  # a scheduler without its HTTP server
        return
    kwargs = {"plugin": plugin}
    prefix = (scheduler.http_prefix or "").rstrip("/") if hasattr(scheduler, "http_prefix") else ""
    app.add_handlers(
        r".*",
        [
            (prefix + r"/fractal", _Page, kwargs),  # relative links below assume no slash
            (prefix + r"/fractal/data\.json", _Data, kwargs),
            (prefix + r"/fractal/preview\.png", _Preview, kwargs),
        ],
    )
