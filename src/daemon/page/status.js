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

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// The last decisions, newest first; a run of passes that changed nothing is one line.
function recentItems(recent) {
  const out = [];
  for (let i = 0; i < recent.length; i++) {
    const r = recent[i];
    if (r.changes > 0) {
      out.push(`<li><time>${time(r.t)}</time><b>${esc(r.trigger)}</b> · ${plural(r.changes, "change", "changes")} · ${esc(r.summary)}</li>`);
      continue;
    }
    let j = i;
    while (j + 1 < recent.length && recent[j + 1].changes === 0) j++;
    const run = recent.slice(i, j + 1);
    const triggers = [...new Set(run.map((p) => p.trigger))].map(esc).join(", ");
    const first = time(run[run.length - 1].t), last = time(r.t);
    const when = first === last ? last : `${first} – ${last}`;
    out.push(`<li class="noop"><time>${when}</time>${plural(run.length, "pass", "passes")} (${triggers}): nothing to change</li>`);
    i = j;
  }
  return out.join("");
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
  $("signout").hidden = !(s.sign_in_required || s.control.signed_in);
  showControl(s);
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  const d = s.last_decision;
  const users = d ? d.users : [];
  const active = users.filter((u) => u.role === "active");
  // What the streams may use: the link's budget less what the owner keeps free.
  const budget = Math.max(0, s.budget_bps - s.reserved_bps);
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
  $("budget-cause").textContent = s.budget ? s.budget.cause : "";
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
  // With [transcoding] capacity: the video transcodes the limits leave, against it.
  const tc = d && d.transcodes;
  $("transcodes-line").hidden = !tc;
  if (tc) {
    $("transcodes").textContent = `${tc.count} (the server runs ${tc.capacity}`
      + (tc.beyond_capacity ? ", beyond it)" : ")");
    $("transcodes").className = tc.beyond_capacity ? "bad-text" : "";
  }
  $("ev-start").textContent = s.events.PlaybackStart;
  $("ev-stop").textContent = s.events.PlaybackStop;
  $("ev-progress").textContent = s.events.PlaybackProgress;
  $("ev-rejected").textContent = s.events.rejected + s.events.unauthorized;
  $("poll-age").textContent = s.poll.last_ok_age_seconds == null ? "never" : Math.round(s.poll.last_ok_age_seconds) + " s ago";
  $("algorithm").textContent = d ? d.algorithm : "–";
  rows($("remote"), active, (u) => `<tr><td><b>${esc(u.user)}</b><div class="reason show-s">from ${esc(u.endpoints.join(", "))}</div><div class="reason">${esc(u.reason)}</div></td>
      <td class="hide-s">${esc(u.endpoints.join(", "))}</td><td class="num">${u.streams}</td>
      <td class="num">${mbps(u.stream_rate_bps)}${streamNotes(u)}</td><td class="num"><b>${limit(u.limit_bps)}</b></td></tr>`,
      "nobody streams from outside");
  rows($("idle"), users.filter((u) => u.role === "idle"),
      (u) => `<tr><td>${esc(u.user)}</td><td class="num">${limit(u.limit_bps)}</td></tr>`, "none");
  rows($("local"), d ? d.local_streams : [],
      (l) => `<tr><td>${esc(l.user ?? "–")}</td><td>${esc(l.device)}</td><td class="num">${mbps(l.rate_bps)}${l.paused ? " (paused)" : ""}</td></tr>`,
      "none");
  const dl = s.downloaders || [];
  $("downloaders-card").hidden = !dl.length;
  if (dl.length) {
    $("downloaders-limit").textContent = s.downloaders_limit_bps == null ? "no plan yet"
      : "together at most " + mbps(s.downloaders_limit_bps) + ": what the remote streams leave";
    rows($("downloaders"), dl, (c) => `<tr><td><b>${esc(c.name)}</b><div class="reason">${esc(c.kind)} at ${esc(c.url)}</div></td>
        <td class="num">${c.rate_bps == null ? "–" : mbps(c.rate_bps)}</td>
        <td class="num"><b>${c.up ? (c.limit_bps == null ? "unlimited" : mbps(c.limit_bps)) : "–"}</b>${c.mode === "alternative" ? '<div class="reason">alternative limits on</div>' : ""}</td>
        <td class="hide-s">${c.up ? "managed" : `<span class="bad-text">${esc(c.last_error || "not read yet")}</span>`}</td></tr>`, "none");
  }
  const sv = (s.budget && s.budget.servers) || [];
  const ms = s.media_servers || [];
  $("servers-card").hidden = !sv.length && !ms.length;
  if (sv.length || ms.length) {
    const plex = sv.map((v) => `<tr><td><b>${esc(v.name)}</b><div class="reason">${esc(v.kind)} at ${esc(v.url)}</div></td>
        <td class="num">${v.remote_streams == null ? "–" : v.remote_streams}</td>
        <td class="num">${v.remote_bps == null ? "–" : mbps(v.remote_bps)}</td>
        <td class="hide-s">${v.up ? serverState(v, s)
          : `<span class="bad-text">${esc(v.last_error || "not read yet")}</span>`}</td></tr>`);
    // Jellyfin and Emby members: their users are among the users above, named user@server.
    const members = ms.map((v) => `<tr><td><b>${esc(v.name)}</b><div class="reason">${esc(v.kind)} at ${esc(v.url)}</div></td>
        <td class="num">${plural(v.playing, "playing", "playing")}</td>
        <td class="num">${plural(v.users, "user", "users")}</td>
        <td class="hide-s">${v.up ? "its users share the budget (named user@" + esc(v.name) + ")"
          : `<span class="bad-text">${esc(v.last_error || "not read yet")}</span>`
            + (v.read_age_seconds == null ? "" : `<div class="reason">its read of ${v.read_age_seconds} s ago stands in</div>`)}</td></tr>`);
    $("servers").innerHTML = plex.concat(members).join("");
  }
  const nt = s.notifications;
  $("notify-card").hidden = !nt || !nt.targets.length;
  if (nt && nt.targets.length) {
    $("notify-active").textContent = (nt.active.length
      ? "in force: " + nt.active.map((a) => a.about ? `${a.event} (${a.about})` : a.event).join(", ")
      : "nothing in force") + " · targets: " + nt.targets.join(", ");
    $("notify-recent").innerHTML = nt.recent.length ? nt.recent.map((r) =>
        `<li><time>${time(r.t)}</time><b>${esc(r.target)}</b> · ${esc(r.title)} · ${esc(r.result)}</li>`).join("")
      : `<li class="empty">nothing sent yet</li>`;
  }
  $("recent").innerHTML = s.recent.length ? recentItems(s.recent)
      : `<li class="empty">no decision yet</li>`;
}

// How an other media server counts: one claimant whose share is its total limit
// (managed), taken off the budget, or measured by the meter.
function serverState(v, s) {
  if (!v.managed) return v.counted ? "taken off the budget" : "measured by the meter";
  const l = (s.server_limits || []).find((x) => x.name === v.name);
  const share = (s.server_shares || []).find((x) => x.name === v.name);
  if (l && l.last_error) return `<span class="bad-text">${esc(l.last_error)}</span>`;
  const total = l && l.limit_bps != null ? "total limit " + mbps(l.limit_bps) : "total limit not set yet";
  return share ? `${total}<div class="reason">${esc(share.reason)}</div>` : total;
}

// A step of 1, 2 or 5 x 10^k bit/s giving at most 5 gridlines up to `max`.
function niceStep(max) {
  const raw = max / 5;
  const p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
}

let history = [];
async function refreshChart() {
  try { history = (await (await fetch("api/history", {cache: "no-store"})).json()).samples; } catch (e) { return; }
  drawChart();
}

// The chart's series, widest first so every line stays visible where two coincide. Each can
// be hidden from its legend entry; the choice and the window are kept in this browser.
const SERIES = [
  {key: "budget", cls: "line-budget", v: (p) => p.budget},
  {key: "held", cls: "line-held", v: (p) => p.held},
  {key: "measured", cls: "line-measured", v: (p) => p.measured ?? 0, metered: true},
  {key: "other", cls: "line-other", v: (p) => p.other ?? 0, metered: true},
  {key: "seeding", cls: "line-seeding", v: (p) => p.downloaders_limit ?? 0, seeding: true},
  {key: "seeded", cls: "line-seeded", v: (p) => p.downloaders_rate ?? 0, seeding: true},
  {key: "rate", cls: "line-rate", v: (p) => p.remote_rate},
];
const saved = (k, d) => { try { return JSON.parse(localStorage.getItem(k)) ?? d; } catch (e) { return d; } };
const hidden = new Set(saved("jd-hidden", []));
let windowSeconds = saved("jd-window", 3600);

// At most one point per `bucket` seconds: each series keeps its highest value of the bucket,
// so a short peak still shows and a busy hour is not a dense sawtooth.
function thin(h, bucket) {
  if (bucket <= 0) return h;
  const out = [];
  for (const p of h) {
    const last = out[out.length - 1];
    if (last && Math.floor(p.t / bucket) === Math.floor(last.t / bucket)) {
      for (const k of ["budget", "held", "remote_rate", "measured", "other", "downloaders_limit", "downloaders_rate"]) {
        if (p[k] != null) last[k] = Math.max(last[k] ?? 0, p[k]);
      }
    } else {
      out.push({...p});
    }
  }
  return out;
}

// Drawn at the SVG's own pixel size (text is not stretched), over the chosen window.
function drawChart() {
  const svg = $("chart");
  const end = history.length ? history[history.length - 1].t : 0;
  const inWindow = windowSeconds > 0 ? history.filter((p) => p.t >= end - windowSeconds) : history;
  const W = Math.max(svg.clientWidth || 600, 200), H = 190, left = 64, right = 8, top = 8, bottom = 14;
  const span = inWindow.length ? Math.max(end - inWindow[0].t, 60) : 60;
  const h = thin(inWindow, span / ((W - left - right) / 3));
  for (const b of document.querySelectorAll("#chart-window button")) {
    b.setAttribute("aria-pressed", String(Number(b.dataset.seconds) === windowSeconds));
  }
  const metered = h.some((p) => p.measured != null);
  const seeding = h.some((p) => p.downloaders_limit != null);
  const absent = (s) => (s.metered && !metered) || (s.seeding && !seeding);
  for (const s of SERIES) {
    const el = $("legend-" + s.key);
    el.hidden = absent(s);
    el.setAttribute("aria-pressed", String(!hidden.has(s.key)));
  }
  if (!h.length) { svg.innerHTML = ""; $("chart-range").textContent = ""; return; }
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const shown = SERIES.filter((s) => !hidden.has(s.key) && !absent(s));
  const t0 = h[0].t, t1 = Math.max(h[h.length - 1].t, t0 + 60);
  const peak = Math.max(0, ...h.flatMap((p) => shown.map((s) => s.v(p)))) || 1e6;
  const step = niceStep(peak * 1.05);
  const max = Math.ceil(peak * 1.05 / step) * step;
  const x = (t) => left + (W - left - right) * (t - t0) / (t1 - t0);
  const y = (v) => H - bottom - (H - top - bottom) * v / max;
  let axis = "";
  for (let v = 0; v <= max + 1; v += step) {
    axis += `<line class="grid" x1="${left}" x2="${W - right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/>`
      + `<text class="axis" x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${mbps(v)}</text>`;
  }
  // Step lines: a value holds until the next sample.
  const path = (f) => h.map((p, i) => (i ? `H${x(p.t).toFixed(1)}V` : `M${x(p.t).toFixed(1)},`) + y(f(p)).toFixed(1)).join("")
      + `H${x(t1).toFixed(1)}`;
  svg.innerHTML = axis + shown.map((s) => `<path class="${s.cls}" d="${path(s.v)}"/>`).join("");
  $("chart-range").textContent = `${time(t0)} – ${time(t1)}`;
}

for (const s of SERIES) {
  $("legend-" + s.key).addEventListener("click", () => {
    if (hidden.has(s.key)) hidden.delete(s.key); else hidden.add(s.key);
    localStorage.setItem("jd-hidden", JSON.stringify([...hidden]));
    drawChart();
  });
}
for (const b of document.querySelectorAll("#chart-window button")) {
  b.addEventListener("click", () => {
    windowSeconds = Number(b.dataset.seconds);
    localStorage.setItem("jd-window", JSON.stringify(windowSeconds));
    drawChart();
  });
}

// The owner's controls: POST api/control with the session (the page's own origin).
function showControl(s) {
  const c = s.control;
  $("control-off").hidden = c.available;
  $("control-signin").hidden = !c.available || c.signed_in;
  $("control-forms").hidden = !c.signed_in;
  $("paused-note").textContent = s.paused ? "Paused: every original limit is back until resumed."
    : (s.reserved_bps ? `${mbps(s.reserved_bps)} of ${mbps(s.budget_bps)} kept free by the owner.` : "");
  $("overrides").innerHTML = s.overrides.length ? s.overrides.map((o) => `<li><b>${esc(o.what)}</b>${o.user ? " · " + esc(o.user) : ""}`
      + ` <span class="muted">by ${esc(o.by)} at ${time(o.at_unix)}`
      + (o.until_unix ? `, until ${time(o.until_unix)}` : ", until cleared") + "</span></li>").join("")
    : `<li class="muted">No override: every user follows the rule.</li>`;
}

async function control(action) {
  $("control-error").textContent = "";
  try {
    const r = await fetch("api/control", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(action)});
    if (!r.ok) $("control-error").textContent = (await r.json().catch(() => ({}))).error || r.statusText;
  } catch (e) { $("control-error").textContent = "the daemon does not answer"; }
  refreshState();
}
const withFor = (a, v) => (v.trim() ? {...a, for: v.trim()} : a);
$("f-pause").addEventListener("submit", (e) => { e.preventDefault(); control(withFor({action: "pause"}, $("pause-for").value)); });
$("resume").addEventListener("click", () => control({action: "resume"}));
$("f-reserve").addEventListener("submit", (e) => {
  e.preventDefault();
  control(withFor({action: "reserve", mbps: Number($("reserve-mbps").value)}, $("reserve-for").value));
});
$("f-user").addEventListener("submit", (e) => {
  e.preventDefault();
  const rule = $("user-rule").value, user = $("user-name").value, v = Number($("user-value").value);
  const a = rule === "pin" ? {action: "pin", user, mbps: v} : rule === "weight" ? {action: "weight", user, weight: v} : {action: rule, user};
  control(rule === "clear" ? a : withFor(a, $("user-for").value));
});

// The history view: the database's day and week, the per-user table, the busiest hours.
function historyChart(svg, series) {
  if (!series.length) { svg.innerHTML = `<text x="10" y="20">no history yet</text>`; return; }
  const max = Math.max(1, ...series.map((p) => Math.max(p.budget, p.streaming))) * 1.1;
  const t0 = series[0].t, t1 = Math.max(t0 + 1, series[series.length - 1].t);
  const x = (t) => 30 + 565 * (t - t0) / (t1 - t0), y = (v) => 140 - 130 * v / max;
  const line = (f) => series.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + "," + y(f(p)).toFixed(1)).join("");
  svg.innerHTML = `<text x="0" y="14">${esc(mbps(Math.round(max)))}</text>`
    + `<path class="budget" d="${line((p) => p.budget)}"/><path class="streaming" d="${line((p) => p.streaming)}"/>`;
}

async function refreshHistory() {
  let day, week;
  try {
    [day, week] = await Promise.all(["24h", "7d"].map(async (since) => {
      const r = await fetch("api/history?since=" + since, {cache: "no-store"});
      if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
      return r.json();
    }));
  } catch (e) { $("history-note").textContent = "No history: " + e.message; return; }
  $("history-note").textContent = "";
  historyChart($("chart-day"), day.series);
  historyChart($("chart-week"), week.series);
  rows($("history-users"), week.stats.users, (u) => `<tr><td>${esc(u.user)}</td><td class="num">${u.plays}</td>`
      + `<td class="num">${u.hours.toFixed(1)}</td><td class="num">${mbps(u.mean_rate_bps)}</td>`
      + `<td class="num">${u.at_source == null ? "–" : Math.round(100 * u.at_source) + " %"}</td>`
      + `<td class="num hide-s">${u.transcodes}</td><td class="num hide-s">${u.pushes}</td></tr>`,
    "No remote play in the last week.");
  const heat = $("heat"), days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const max = Math.max(1, ...week.stats.week.flat().map((v) => v || 0));
  heat.replaceChildren();
  week.stats.week.forEach((hours, d) => {
    const label = document.createElement("div"); label.textContent = days[d]; heat.append(label);
    hours.forEach((v, h) => {
      const c = document.createElement("div");
      c.className = "cell"; c.style.opacity = v ? (0.1 + 0.9 * v / max).toFixed(2) : "0.03";
      c.title = `${days[d]} ${h}:00 ${v == null ? "no data" : mbps(v)}`;
      heat.append(c);
    });
  });
}

refreshState(); refreshChart(); refreshHistory();
setInterval(refreshHistory, 60000);
window.addEventListener("resize", drawChart);
setInterval(refreshState, 2000);
setInterval(refreshChart, 10000);
