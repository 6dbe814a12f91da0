"use strict";
const $ = (id) => document.getElementById(id);
const mbps = (b) => b == null ? "–" : (b / 1e6).toFixed(b % 1e6 === 0 ? 0 : 1) + " Mbps";
const limit = (b) => b <= 0 ? "server default" : mbps(b);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const time = (t) => new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
const pct = (v, max) => Math.max(0, Math.min(100, max > 0 ? 100 * v / max : 0)) + "%";

// Under a user's rate: a push on its way, or a client that ignores limits.
function streamNotes(u) {
  return (u.stream_details || []).map((st) => st.uncontrolled
      ? `<div class="reason warn-text">ignores limits: ${esc(st.uncontrolled)}</div>`
      : st.push ? `<div class="reason">pushed ${esc(st.push.direction)} to ${mbps(st.push.bitrate_bps)}</div>` : "").join("");
}

function rows(tbody, items, render, empty) {
  tbody.innerHTML = items.length ? items.map(render).join("")
    : `<tr><td colspan="5" class="empty">${empty}</td></tr>`;
}

async function refreshState() {
  let s;
  try {
    s = await (await fetch("api/state", {cache: "no-store"})).json();
  } catch (e) {
    $("health").textContent = "unreachable"; $("health").className = "pill bad"; return;
  }
  const h = await fetch("healthz", {cache: "no-store"}).then((r) => r.ok).catch(() => false);
  $("health").textContent = h ? "healthy" : "unhealthy";
  $("health").className = "pill " + (h ? "ok" : "bad");
  $("mode").textContent = s.mode + (s.dry_run ? " · dry run" : "");
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  const d = s.last_decision;
  const users = d ? d.users : [];
  const active = users.filter((u) => u.role === "active");
  const budget = s.budget_bps;
  const rate = d ? d.streaming_bps : 0;
  const held = d ? d.held_bps : 0;
  // The bar's scale is the budget, or what streams when that is more (over budget).
  const scale = Math.max(budget, rate, held);
  $("budget").textContent = mbps(budget);
  $("rate").textContent = d ? mbps(rate) : "–";
  $("held").textContent = d ? mbps(held) : "–";
  $("bar-held").style.width = pct(held, scale);
  $("bar-rate").style.width = pct(rate, scale);
  $("bar-budget").style.left = pct(budget, scale);
  $("warnings").innerHTML = (d ? d.warnings : []).map((w) => `<p class="warn">⚠ ${esc(w)}</p>`).join("")
    + (s.poll.last_error ? `<p class="warn">⚠ ${esc(s.poll.last_error)}</p>` : "");
  $("claimants").textContent = active.length;
  $("pending").textContent = s.writes.pending;
  $("written").textContent = s.writes.written;
  $("failed").textContent = s.writes.failed;
  $("pushes-down").textContent = s.writes.pushes.down;
  $("pushes-up").textContent = s.writes.pushes.up;
  $("pushes-per-start").textContent = s.writes.pushes_per_item_start == null ? "–" : s.writes.pushes_per_item_start.toFixed(2);
  $("uncontrolled").textContent = d ? d.uncontrolled_streams : "–";
  $("ev-start").textContent = s.events.PlaybackStart;
  $("ev-stop").textContent = s.events.PlaybackStop;
  $("ev-progress").textContent = s.events.PlaybackProgress;
  $("ev-rejected").textContent = s.events.rejected + s.events.unauthorized;
  $("poll-age").textContent = s.poll.last_ok_age_seconds == null ? "never" : Math.round(s.poll.last_ok_age_seconds) + " s ago";
  $("algorithm").textContent = d ? d.algorithm : "–";
  rows($("remote"), active, (u) => `<tr><td><b>${esc(u.user)}</b><div class="reason">${esc(u.reason)}</div></td>
      <td class="hide-s">${esc(u.endpoints.join(", "))}</td><td class="num">${u.streams}</td>
      <td class="num">${mbps(u.stream_rate_bps)}${streamNotes(u)}</td><td class="num"><b>${limit(u.limit_bps)}</b></td></tr>`,
      "nobody streams from outside");
  rows($("idle"), users.filter((u) => u.role === "idle"),
      (u) => `<tr><td>${esc(u.user)}</td><td class="num">${limit(u.limit_bps)}</td></tr>`, "none");
  rows($("local"), d ? d.local_streams : [],
      (l) => `<tr><td>${esc(l.user ?? "–")}</td><td>${esc(l.device)}</td><td class="num">${mbps(l.rate_bps)}${l.paused ? " (paused)" : ""}</td></tr>`,
      "none");
  $("recent").innerHTML = s.recent.length ? s.recent.map((r) =>
      `<li><time>${time(r.t)}</time><b>${esc(r.trigger)}</b> · ${r.changes} change(s) · ${esc(r.summary)}</li>`).join("")
      : `<li class="empty">no decision yet</li>`;
}

async function refreshChart() {
  let h;
  try { h = (await (await fetch("api/history", {cache: "no-store"})).json()).samples; } catch (e) { return; }
  const svg = $("chart");
  if (!h.length) { svg.innerHTML = ""; return; }
  const W = 600, H = 190, pad = 4;
  const t0 = h[0].t, t1 = Math.max(h[h.length - 1].t, t0 + 60);
  const max = Math.max(...h.map((p) => Math.max(p.budget, p.held, p.remote_rate))) * 1.1 || 1;
  const x = (t) => pad + (W - 2 * pad) * (t - t0) / (t1 - t0);
  const y = (v) => H - pad - (H - 2 * pad) * v / max;
  // Step lines: a value holds until the next sample.
  const path = (f) => h.map((p, i) => (i ? `H${x(p.t).toFixed(1)}V` : `M${x(p.t).toFixed(1)},`) + y(f(p)).toFixed(1)).join("")
      + `H${x(t1).toFixed(1)}`;
  const line = (f, color, width, dash) =>
      `<path d="${path(f)}" fill="none" stroke="${color}" stroke-width="${width}" ${dash ? 'stroke-dasharray="5 4"' : ""} vector-effect="non-scaling-stroke"/>`;
  svg.innerHTML = line((p) => p.budget, "var(--muted)", 1.5, true)
    + line((p) => p.held, "var(--accent)", 2)
    + line((p) => p.remote_rate, "var(--blue)", 2);
  $("chart-range").textContent = `${time(t0)} – ${time(t1)}, max ${mbps(max / 1.1)}`;
}

refreshState(); refreshChart();
setInterval(refreshState, 2000);
setInterval(refreshChart, 10000);
