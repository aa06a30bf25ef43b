// The status page itself: one HTML document with its style and script inline, no build step. It
// listens to /ui/events (server-sent events, one snapshot a second; the browser reconnects by itself)
// and redraws two tables: builds with their delivery progress, and checkins with their age.
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>uki-on-demand: status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; }
  h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
  #live { color: #666; font-size: .9em; }
  #live.stale { color: #b00020; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #e3e3e3; vertical-align: middle; white-space: nowrap; }
  th { font-weight: 600; color: #444; }
  code { font: 12px ui-monospace, monospace; }
  .state-completed { color: #0a7d32; } .state-failed { color: #b00020; } .state-running { color: #a05a00; } .state-pending { color: #666; }
  .bar { position: relative; width: 14em; height: 1.2em; background: #eee; border-radius: 3px; overflow: hidden; display: inline-block; vertical-align: middle; }
  .bar > span { position: absolute; inset: 0 auto 0 0; background: #4a90d9; }
  .bar.done > span { background: #2e9e5b; }
  .bar > em { position: relative; font-style: normal; font-size: .8em; padding-left: .4em; }
  .muted { color: #888; }
</style>
</head>
<body>
<h1>uki-on-demand</h1>
<div id="live">connecting…</div>
<h2>Builds</h2>
<table id="builds">
  <thead><tr><th>server</th><th>build</th><th>state</th><th>ISO delivered</th><th>UKI delivered</th><th>rate</th><th>ETA</th><th>readers</th><th>checkin</th></tr></thead>
  <tbody></tbody>
</table>
<h2>Checkins</h2>
<table id="checkins">
  <thead><tr><th>id</th><th>addresses</th><th>age</th></tr></thead>
  <tbody></tbody>
</table>
<script>
"use strict";
const MB = 1e6;
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const age = (iso, now) => {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? s + " s" : s < 7200 ? Math.round(s / 60) + " min" : Math.round(s / 3600) + " h";
};
function bar(file, kind) {
  if (!file) return '<span class="muted">–</span>';
  const pct = file.coveredPercent;
  return '<span class="bar' + (pct >= 100 ? " done" : "") + '" data-file="' + kind + '" data-percent="' + pct + '">' +
    // Rounded down, so that "100.0 %" means every byte.
    '<span style="width:' + Math.min(100, pct) + '%"></span><em>' + (Math.floor(pct * 10) / 10).toFixed(1) + ' %</em></span>';
}
function render(snap) {
  const now = Date.parse(snap.at);
  const checkins = new Map(snap.checkins.map((c) => [c.id, c]));
  document.querySelector("#builds tbody").innerHTML = snap.builds.map((b) => {
    const d = b.delivery;
    // The ISO is what virtual media reads; a build booted by HTTP shows its UKI instead.
    const main = d ? (d.iso.bytesServed > 0 || d.uki.bytesServed === 0 ? d.iso : d.uki) : null;
    const rate = main ? main.rateBytesPerSecond : 0;
    const eta = main && rate > 0 && main.coveredPercent < 100 ? Math.ceil((main.size - main.coveredBytes) / rate) + " s" : "";
    const c = b.checkinId ? checkins.get(b.checkinId) : undefined;
    const checkin = !b.checkinId ? '<span class="muted">–</span>'
      : !c ? '<span class="muted">forgotten</span>'
      : c.addresses.length ? esc(c.addresses.join(", ")) + ' <span class="muted">' + age(c.timestamp, now) + " ago</span>"
      : '<span class="muted">waiting</span>';
    return '<tr data-build="' + esc(b.id) + '"><td>' + esc(b.hostname || "") + '</td><td><code title="' + esc(b.id) + '">' + esc(b.id.slice(0, 12)) +
      '</code></td><td class="state-' + esc(b.state) + '"' + (b.error ? ' title="' + esc(b.error) + '"' : "") + ">" + esc(b.state) +
      "</td><td>" + bar(d && d.iso, "iso") + "</td><td>" + bar(d && d.uki, "uki") + "</td><td>" + (rate ? (rate / MB).toFixed(1) + " MB/s" : "") +
      "</td><td>" + eta + "</td><td>" + (main ? esc(main.readers.join(", ")) : "") + '</td><td class="checkin">' + checkin + "</td></tr>";
  }).join("") || '<tr><td colspan="9" class="muted">no builds</td></tr>';
  document.querySelector("#checkins tbody").innerHTML = snap.checkins.map((c) =>
    '<tr data-checkin="' + esc(c.id) + '"><td><code>' + esc(c.id) + "</code></td><td>" + (c.addresses.length ? esc(c.addresses.join(", ")) : '<span class="muted">waiting</span>') +
    "</td><td>" + age(c.timestamp, now) + "</td></tr>").join("") || '<tr><td colspan="3" class="muted">no checkins</td></tr>';
  const live = document.getElementById("live");
  live.className = "";
  live.textContent = "live, updated " + new Date(snap.at).toLocaleTimeString();
  live.dataset.at = snap.at;
}
const events = new EventSource("/ui/events");
events.addEventListener("snapshot", (e) => render(JSON.parse(e.data)));
events.onerror = () => { const live = document.getElementById("live"); live.className = "stale"; live.textContent = "reconnecting…"; };
</script>
</body>
</html>
`;
