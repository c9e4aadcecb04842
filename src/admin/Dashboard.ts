/**
 * The live dashboard, as three strings nib serves itself (`/`, `/dashboard.css`, `/dashboard.js`): no build step, no
 * framework, nothing from the network. The page opens `/api/events` (server-sent events: the state once a second) and
 * redraws in place: whether nib serves or drains (a graceful stop); servers with their state, health, live
 * connections, throughput and a two-minute graph; the sticky table's busiest clients; recent events (servers going
 * down or blacklisted, failovers). Reading needs no token; the actions (blacklist, drain, weight) ask for it once and
 * send it as `Authorization: Bearer`, keeping it in the page only.
 *
 * The script builds every element with `textContent`, never `innerHTML`, so an address or a client cannot inject
 * markup. Each server row and each state carry `data-` attributes the tests (and scripts) can select.
 */

/** The page. @category constants */
export const html = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nib</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>nib</h1>
  <span id="listen" class="muted"></span>
  <span id="state" class="badge serving" data-state="serving">serving</span>
  <span id="live" class="stream off" data-live="false">connecting</span>
  <form id="token-form" autocomplete="off">
    <label for="token">Token for actions</label>
    <input id="token" type="password" placeholder="--admin-token-file's token" spellcheck="false" autocomplete="off">
    <button type="submit">Use</button>
    <span id="token-state" class="muted"></span>
  </form>
</header>
<main>
  <section id="totals" class="totals"></section>
  <section>
    <h2>Servers</h2>
    <table id="servers">
      <thead><tr>
        <th>#</th><th>address</th><th>state</th><th>health</th><th>live</th><th>limits</th><th>weight</th>
        <th>sent / received</th><th>last 2 min</th><th class="actions">actions</th>
      </tr></thead>
      <tbody></tbody>
    </table>
    <p id="message" class="message" role="status"></p>
  </section>
  <section class="split">
    <div>
      <h2>Connections per second <span class="legend"><i class="accepted"></i>accepted <i class="failovers"></i>failed over</span></h2>
      <div id="rate-chart" class="chart"></div>
      <div class="axis"><span>2 min ago</span><span>now</span></div>
    </div>
    <div>
      <h2>Recent events</h2>
      <ol id="events" class="events"></ol>
    </div>
  </section>
  <section id="peers-section" hidden>
    <h2>Peers <span id="peers-where" class="muted"></span></h2>
    <table id="peers">
      <thead><tr><th>nib</th><th>host</th><th>pid</th><th>clients</th><th>last sync</th><th>lag</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Busiest clients <span id="clients-total" class="muted"></span></h2>
    <table id="clients">
      <thead><tr><th>client</th><th>server</th><th>connections</th><th>to client</th><th>from client</th><th>last seen</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
</body>
</html>
`

/** The stylesheet. @category constants */
export const css = String.raw`:root {
  --up: #16a34a; --down: #dc2626; --draining: #d97706; --off: #6b7280;
  --bg: #f8fafc; --fg: #0f172a; --line: #e2e8f0; --muted: #64748b; --card: #ffffff;
  font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 14px;
}
body { margin: 0; background: var(--bg); color: var(--fg); }
[hidden] { display: none !important; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; padding: 10px 20px; background: #0f172a; color: #f8fafc; }
header h1 { font-size: 20px; margin: 0; letter-spacing: 1px; }
header .muted { color: #94a3b8; }
header form { margin-left: auto; display: flex; align-items: center; gap: 6px; }
header input { width: 16em; padding: 3px 6px; border-radius: 4px; border: 1px solid #475569; background: #1e293b; color: #f8fafc; }
main { padding: 12px 20px 30px; }
h2 { font-size: 15px; margin: 18px 0 8px; }
table { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: 0.5px; }
td.num { font-variant-numeric: tabular-nums; }
button { padding: 3px 8px; border-radius: 4px; border: 1px solid #94a3b8; background: #f1f5f9; cursor: pointer; font-size: 12px; }
button:hover { background: #e2e8f0; }
td.actions div { display: flex; gap: 4px; align-items: center; }
td.actions input { width: 3.5em; padding: 2px 4px; }
td.graph svg { width: 120px; height: 24px; display: block; }
.axis { display: flex; justify-content: space-between; color: var(--muted); font-size: 11px; }
body.read-only .actions { display: none; }
.muted { color: var(--muted); }
.badge { display: inline-block; min-width: 6.5em; text-align: center; padding: 2px 8px; border-radius: 10px; color: #fff; font-weight: 600; font-size: 12px; }
.badge.up, .badge.serving { background: var(--up); }
.badge.down, .badge.blacklisted { background: var(--down); }
.badge.draining { background: var(--draining); }
.badge.unconfigured { background: var(--off); }
tr.down td, tr.blacklisted td { background: #fef2f2; }
tr.draining td { background: #fffbeb; }
.stream { padding: 2px 8px; border-radius: 10px; font-size: 12px; }
.stream.on { background: var(--up); }
.stream.off { background: var(--off); }
.totals { display: flex; flex-wrap: wrap; gap: 10px; }
.total { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 8em; }
.total b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
.total span { color: var(--muted); font-size: 12px; }
.split { display: grid; grid-template-columns: 3fr 2fr; gap: 20px; }
.chart { background: var(--card); border: 1px solid var(--line); height: 150px; }
.chart svg { width: 100%; height: 100%; display: block; }
svg .accepted, .legend .accepted { stroke: #2563eb; background: #2563eb; }
svg .failovers, .legend .failovers { stroke: var(--down); background: var(--down); }
svg .sent { stroke: #2563eb; } svg .received { stroke: #7c3aed; }
svg polyline { fill: none; stroke-width: 1.5; }
.legend { font-weight: normal; color: var(--muted); font-size: 12px; margin-left: 10px; }
.legend i { display: inline-block; width: 10px; height: 3px; margin: 0 4px 3px 10px; }
.events { list-style: none; margin: 0; padding: 0; background: var(--card); border: 1px solid var(--line); max-height: 150px; overflow-y: auto; }
.events li { padding: 4px 8px; border-bottom: 1px solid var(--line); }
.events li.failover, .events li.bad { color: var(--down); }
.events li.good { color: var(--up); }
.events time { color: var(--muted); margin-right: 8px; font-variant-numeric: tabular-nums; }
.message { min-height: 1.2em; margin: 6px 0 0; }
.message.error { color: var(--down); }
`

/** The script (plain ES2020, no template literals, so it sits in this file as it is served). @category constants */
export const script = String.raw`(function () {
  "use strict";
  var token = "";
  var readOnly = true;
  var samples = [];
  var rows = {};
  var KEEP = 120;

  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === "class") el.className = attrs[k];
      else if (k === "text") el.textContent = attrs[k];
      else el.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { el.appendChild(c); });
    return el;
  }
  function $(id) { return document.getElementById(id); }
  function bytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? Math.round(n) : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
  }
  function clock(ms) { return new Date(ms).toLocaleTimeString(); }
  function num(n) { return Math.round(n).toLocaleString(); }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(width, height, series) {
    var root = document.createElementNS(SVG, "svg");
    root.setAttribute("viewBox", "0 0 " + width + " " + height);
    root.setAttribute("preserveAspectRatio", "none");
    var max = 1;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v > max) max = v; }); });
    series.forEach(function (s) {
      var n = s.values.length;
      if (n === 0) return;
      var points = s.values.map(function (v, i) {
        var x = n === 1 ? width : (i + KEEP - n) * width / (KEEP - 1);
        var y = height - 2 - v / max * (height - 4);
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      var line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", points.join(" "));
      line.setAttribute("class", s.name);
      line.setAttribute("vector-effect", "non-scaling-stroke");
      root.appendChild(line);
    });
    return root;
  }

  function say(text, error) {
    var m = $("message");
    m.textContent = text;
    m.className = "message" + (error ? " error" : "");
  }

  function act(method, path, body) {
    if (token === "") {
      say("Enter the token (top right) to change servers.", true);
      $("token").focus();
      return;
    }
    fetch(path, {
      method: method,
      headers: { "authorization": "Bearer " + token, "content-type": "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, status: r.status, body: j }; });
    }).then(function (r) {
      if (r.ok) {
        say(method + " " + path + ": done");
        $("token-state").textContent = "accepted";
      } else {
        say(method + " " + path + ": " + r.status + " " + r.body.error, true);
        if (r.status === 401) { $("token-state").textContent = "refused"; $("token").focus(); }
      }
    }).catch(function (e) { say(method + " " + path + ": " + e, true); });
  }

  function row(index) {
    if (rows[index]) return rows[index];
    var cells = {};
    ["index", "address", "state", "health", "live", "limits", "weight", "rate", "graph"].forEach(function (k) {
      cells[k] = h("td", { class: k === "live" || k === "weight" || k === "rate" ? k + " num" : k });
    });
    cells.badge = h("span", { class: "badge" });
    cells.state.appendChild(cells.badge);
    var path = "/api/servers/" + index;
    var blacklist = h("button", { type: "button", "data-action": "blacklist" });
    var drain = h("button", { type: "button", "data-action": "drain" });
    var weight = h("input", { type: "number", min: "0", step: "1", "aria-label": "weight", "data-action": "weight-value" });
    var setWeight = h("button", { type: "button", "data-action": "weight", text: "Set weight" });
    blacklist.addEventListener("click", function () {
      act("POST", path + "/blacklist", blacklist.dataset.lift === "true" ? { seconds: 0 } : {});
    });
    drain.addEventListener("click", function () {
      act("POST", path + "/drain", { draining: drain.dataset.undrain !== "true" });
    });
    setWeight.addEventListener("click", function () {
      var w = Number(weight.value);
      if (weight.value === "" || !Number.isInteger(w) || w < 0) { say("weight: a whole number, 0 or more", true); return; }
      act("PATCH", path, { weight: w });
    });
    var actions = h("td", { class: "actions" }, [h("div", {}, [blacklist, drain, weight, setWeight])]);
    var tr = h("tr", { "data-server": String(index) }, [
      cells.index, cells.address, cells.state, cells.health, cells.live, cells.limits, cells.weight, cells.rate,
      cells.graph, actions
    ]);
    $("servers").tBodies[0].appendChild(tr);
    rows[index] = { tr: tr, cells: cells, blacklist: blacklist, drain: drain, weight: weight };
    return rows[index];
  }

  function drawServers(servers) {
    servers.forEach(function (s) {
      var r = row(s.index);
      r.tr.className = s.state;
      r.tr.setAttribute("data-state", s.state);
      r.cells.index.textContent = String(s.index);
      r.cells.address.textContent = s.address;
      r.cells.badge.textContent = s.state;
      r.cells.badge.className = "badge " + s.state;
      var health = s.check === null ? "passive" : s.check + (s.down ? ": failing" : ": passing");
      if (s.blacklisted && s.blacklistedUntil !== null) {
        health += ", blacklisted for " + Math.max(0, Math.ceil((s.blacklistedUntil - Date.now()) / 1000)) + " s";
      }
      r.cells.health.textContent = health;
      r.cells.live.textContent = num(s.connections);
      r.cells.limits.textContent = (s.softLimit === 0 ? "none" : s.softLimit + " / " + s.hardLimit);
      r.cells.weight.textContent = String(s.weight);
      if (document.activeElement !== r.weight && r.weight.value === "") r.weight.placeholder = String(s.weight);
      r.blacklist.textContent = s.blacklisted ? "Lift blacklist" : "Blacklist";
      r.blacklist.dataset.lift = s.blacklisted ? "true" : "false";
      r.drain.textContent = s.draining ? "Undrain" : "Drain";
      r.drain.dataset.undrain = s.draining ? "true" : "false";
      var last = samples.length > 0 ? samples[samples.length - 1].servers.filter(function (x) { return x.index === s.index; })[0] : undefined;
      r.cells.rate.textContent = last ? bytes(last.sentPerSecond) + "/s / " + bytes(last.receivedPerSecond) + "/s" : "-";
      var sent = [], received = [];
      samples.forEach(function (x) {
        var mine = x.servers.filter(function (y) { return y.index === s.index; })[0];
        sent.push(mine ? mine.sentPerSecond : 0);
        received.push(mine ? mine.receivedPerSecond : 0);
      });
      r.cells.graph.replaceChildren(svg(120, 24, [{ name: "sent", values: sent }, { name: "received", values: received }]));
    });
  }

  function drawTotals(u) {
    var last = samples.length > 0 ? samples[samples.length - 1] : undefined;
    var items = [
      ["active", num(u.totals.active)],
      ["accepted", num(u.totals.accepted)],
      ["accepted / s", last ? last.acceptedPerSecond.toFixed(1) : "-"],
      ["failovers", num(u.totals.failovers)],
      ["refused", num(u.totals.refused)],
      ["blacklistings", num(u.totals.blacklistings)],
      ["health transitions", num(u.totals.healthTransitions)],
      ["idle closed", num(u.totals.idleClosed)],
      ["sticky clients", num(u.clients.total) + " / " + num(u.clients.capacity)]
    ];
    // With --workers, the live connections of each worker thread.
    if (u.workers && u.workers.length > 1) items.push([u.workers.map(num).join(" / "), u.workers.length + " workers: live each"]);
    $("totals").replaceChildren.apply($("totals"), items.map(function (it) {
      return h("div", { class: "total", "data-total": it[0] }, [h("b", { text: it[1] }), h("span", { text: it[0] })]);
    }));
  }

  function drawEvents(events) {
    var list = $("events");
    if (events.length === 0) {
      list.replaceChildren(h("li", { class: "muted", text: "nothing yet" }));
      return;
    }
    list.replaceChildren.apply(list, events.slice().reverse().map(function (e) {
      var cls = e.kind === "failover" ? "failover" : e.to === "up" ? "good" : e.to === "down" || e.to === "blacklisted" ? "bad" : "";
      return h("li", { class: cls, "data-kind": e.kind }, [h("time", { text: clock(e.time) }), document.createTextNode(e.text)]);
    }));
  }

  function drawClients(c) {
    $("clients-total").textContent = "(" + c.total + " remembered)";
    var body = $("clients").tBodies[0];
    body.replaceChildren.apply(body, c.busiest.map(function (x) {
      return h("tr", {}, [
        h("td", { text: x.address }), h("td", { class: "num", text: x.server < 0 ? "-" : String(x.server) }),
        h("td", { class: "num", text: num(x.connects) }), h("td", { class: "num", text: bytes(x.bytesToClient) }),
        h("td", { class: "num", text: bytes(x.bytesFromClient) }), h("td", { text: clock(x.lastSeen) })
      ]);
    }));
  }

  // --peers: the nibs sharing the sticky table through Redis, and whether this one is in step with them.
  function drawPeers(p) {
    $("peers-section").hidden = !p.enabled;
    if (!p.enabled) return;
    var where = $("peers-where");
    where.textContent = "(" + p.url + ", key " + p.key + ": " + (p.up ? "in sync" : "Redis unreachable, serving from the local table") + ")";
    where.setAttribute("data-up", p.up ? "true" : "false");
    var body = $("peers").tBodies[0];
    body.replaceChildren.apply(body, p.peers.map(function (x) {
      return h("tr", { "data-peer": x.id }, [
        h("td", { text: x.id + (x.self ? " (this nib)" : "") }), h("td", { text: x.host }),
        h("td", { class: "num", text: String(x.pid) }), h("td", { class: "num", text: num(x.clients) }),
        h("td", { text: x.lastSync > 0 ? clock(x.lastSync) : "-" }), h("td", { class: "num", text: x.lagMs + " ms" })
      ]);
    }));
  }

  function apply(u) {
    readOnly = u.readOnly;
    document.body.classList.toggle("read-only", readOnly);
    // "draining" once a graceful stop (SIGQUIT) has closed the listeners: nib stops when the connections are done.
    var state = $("state");
    state.textContent = u.state;
    state.className = "badge " + u.state;
    state.setAttribute("data-state", u.state);
    if (readOnly) $("token-form").hidden = true;
    if (u.reset) samples = [];
    var lastTime = samples.length > 0 ? samples[samples.length - 1].time : 0;
    u.samples.forEach(function (s) { if (s.time > lastTime) samples.push(s); });
    if (samples.length > KEEP) samples.splice(0, samples.length - KEEP);
    drawTotals(u);
    drawServers(u.servers);
    drawEvents(u.events);
    drawClients(u.clients);
    if (u.peers) drawPeers(u.peers);
    $("rate-chart").replaceChildren(svg(600, 150, [
      { name: "accepted", values: samples.map(function (s) { return s.acceptedPerSecond; }) },
      { name: "failovers", values: samples.map(function (s) { return s.failoversPerSecond; }) }
    ]));
    document.body.setAttribute("data-updated", String(u.time));
  }

  function live(on) {
    var el = $("live");
    el.textContent = on ? "live" : "reconnecting";
    el.className = "stream " + (on ? "on" : "off");
    el.setAttribute("data-live", on ? "true" : "false");
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("token-form").addEventListener("submit", function (e) {
      e.preventDefault();
      token = $("token").value.trim();
      $("token-state").textContent = token === "" ? "" : "kept in this page";
    });
    fetch("/api/settings").then(function (r) { return r.json(); }).then(function (s) {
      $("listen").textContent = s.mode.toUpperCase() + " " + s.listen;
    }).catch(function () {});
    var events = new EventSource("/api/events");
    events.onopen = function () { live(true); };
    events.onerror = function () { live(false); };
    events.onmessage = function (e) { live(true); apply(JSON.parse(e.data)); };
  });
})();
`
