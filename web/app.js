// crowdpilot dashboard. Polls the admin API of the node that served it once
// a second; renders everything with textContent (keys and reasons come from
// clients and the autopilot and are never treated as HTML).
"use strict";

(function () {
  const POLL_MS = 1000;
  const WINDOW = 120;            // chart points kept (seconds)
  const TIMELINE_MS = 5 * 60e3;  // timeline span
  const TOKEN_KEY = "crowdpilot.token";

  const $ = (id) => document.getElementById(id);

  // el builds an element with text content and an optional class.
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function fmtDur(ns) {
    if (!ns) return "–";
    const ms = ns / 1e6;
    if (ms < 1) return (ns / 1e3).toFixed(0) + " µs";
    if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
    return (ms / 1000).toFixed(2) + " s";
  }
  function fmtRate(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  }

  // ---- token ----
  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
  function showToken() {
    $("token-state").textContent = token() ? "token set (this tab only)" : "no token";
    $("token-state").className = token() ? "ok" : "muted";
  }
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("token").value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    $("token").value = "";
    showToken();
  });
  $("token-clear").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showToken(); });
  showToken();

  // With the token, reads show whole keys (query values included) too.
  const auth = () => (token() ? { Authorization: "Bearer " + token() } : {});
  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store", headers: { Accept: "application/json", ...auth() } });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return { status: r.status, body };
  }
  async function sendJSON(method, path, obj) {
    if (!token()) return { status: 0, body: { error: "paste the admin token first" } };
    const r = await fetch(path, {
      method, cache: "no-store",
      headers: { "Content-Type": "application/json", ...auth() },
      body: obj === undefined ? undefined : JSON.stringify(obj),
    });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return { status: r.status, body };
  }
  const postJSON = (path, obj) => sendJSON("POST", path, obj);

  // syncRows keeps tbody's rows in the order of items, one per key: made
  // once by make(key), refreshed by update(tr, item). Rows keep their
  // inputs across polls, and are not reordered while one is being edited.
  function syncRows(tbody, rows, items, keyOf, make, update) {
    const order = [], seen = new Set();
    for (const it of items) {
      const k = keyOf(it);
      if (seen.has(k)) continue;
      seen.add(k);
      let tr = rows.get(k);
      if (!tr) { tr = make(k); rows.set(k, tr); }
      update(tr, it);
      order.push(tr);
    }
    for (const [k, tr] of rows) if (!seen.has(k)) { tr.remove(); rows.delete(k); }
    const cur = tbody.children;
    if (cur.length === order.length && order.every((tr, i) => cur[i] === tr)) return;
    if (tbody.contains(document.activeElement)) {
      for (const tr of order) if (tr.parentNode !== tbody) tbody.append(tr);
      return;
    }
    tbody.replaceChildren(...order);
  }
  // cells returns a row's n cells, made on first use.
  function cells(tr, n) {
    while (tr.children.length < n) tr.append(el("td"));
    return tr.children;
  }
  // wholeNumber reads an input as a whole number >= 0, or null.
  function wholeNumber(input) {
    const v = input.value.trim();
    return /^[0-9]+$/.test(v) ? Number(v) : null;
  }
  function showResult(id, ok, msg) {
    const p = $(id);
    p.textContent = msg;
    p.className = "result " + (ok ? "ok" : "err");
    p.dataset.ok = String(ok);
  }

  // ---- charts ----
  const series = { t: [], hit: [], origin: [], shed: [], req: [] };
  const charts = {};
  const pad = (n) => String(n).padStart(2, "0");
  const clock = (secs) => { const d = new Date(secs * 1000); return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); };
  const compact = (v) => Math.abs(v) >= 1e6 ? (v / 1e6).toFixed(1) + "M" : Math.abs(v) >= 1e3 ? (v / 1e3).toFixed(1) + "k" : String(+v.toFixed(2));
  function makeChart(id, label, color, opts) {
    const box = $(id);
    const u = new uPlot({
      width: Math.max(260, box.clientWidth || 300), height: 160,
      legend: { show: false },
      cursor: { show: true, drag: { x: false, y: false } },
      scales: {
        // The newest second at the right edge; the window grows to WINDOW
        // seconds, then scrolls.
        x: { time: false, range: (u, min, max) => [max - Math.min(WINDOW, Math.max(10, max - min)), max] },
        y: opts.y || { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
      },
      axes: [
        { space: 70, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300], values: (u, splits) => splits.map(clock) },
        { size: 48, values: opts.values || ((u, splits) => splits.map(compact)) },
      ],
      series: [{}, { label, stroke: color, width: 2, fill: color + "22", points: { show: false } }],
    }, [[], []], box);
    charts[id] = { u, box, now: $(id.replace("chart-", "now-")), fmt: opts.fmt || ((v) => fmtRate(v) + "/s") };
  }
  function initCharts() {
    makeChart("chart-hit", "hit ratio", "#2b6cb0", {
      y: { range: [0, 1] }, values: (u, vs) => vs.map((v) => (v * 100).toFixed(0) + "%"),
      fmt: (v) => (v * 100).toFixed(1) + "%",
    });
    makeChart("chart-origin", "origin fetches/s", "#b7791f", {});
    makeChart("chart-shed", "shed/s", "#c53030", {});
    makeChart("chart-req", "requests/s", "#1f8a4c", {});
    window.addEventListener("resize", () => {
      for (const c of Object.values(charts)) c.u.setSize({ width: Math.max(260, c.box.clientWidth), height: 160 });
    });
  }
  function pushPoint(t, hit, origin, shed, req) {
    const s = series;
    s.t.push(t); s.hit.push(hit); s.origin.push(origin); s.shed.push(shed); s.req.push(req);
    if (s.t.length > WINDOW) for (const k of Object.keys(s)) s[k].shift();
    const upd = (id, ys) => {
      const c = charts[id];
      c.u.setData([s.t, ys]);
      // For people and tests: the latest and largest values shown.
      const vals = ys.filter((v) => v !== null && isFinite(v));
      c.box.dataset.points = String(s.t.length);
      c.box.dataset.last = vals.length ? String(vals[vals.length - 1]) : "";
      c.box.dataset.max = vals.length ? String(Math.max(...vals)) : "";
      const last = ys[ys.length - 1];
      c.now.textContent = last === null || last === undefined ? "–" : c.fmt(last);
    };
    upd("chart-hit", s.hit); upd("chart-origin", s.origin); upd("chart-shed", s.shed); upd("chart-req", s.req);
  }

  // Per-node previous samples, to turn cumulative counters into rates.
  const prev = new Map();
  const nodeRates = new Map(); // node -> req/s, for the members table
  const HIT = ["hit", "stale", "collapsed"];
  const STORE = ["hit", "stale", "collapsed", "miss", "pass"];
  const sum = (obj, keys) => keys.reduce((a, k) => a + ((obj && obj[k]) || 0), 0);
  const total = (obj) => Object.values(obj || {}).reduce((a, v) => a + v, 0);

  function onStats(nodes) {
    let d = { hit: 0, store: 0, origin: 0, shed: 0, req: 0 }, rates = { origin: 0, shed: 0, req: 0 };
    let counted = 0, latest = 0;
    for (const st of nodes) {
      if (st.error || !st.time) { nodeRates.delete(st.node); continue; }
      const t = Date.parse(st.time);
      latest = Math.max(latest, t);
      const p = prev.get(st.node);
      prev.set(st.node, { t, st });
      if (!p || t <= p.t) continue;
      const dt = (t - p.t) / 1000;
      const dreq = total(st.requests) - total(p.st.requests);
      if (dreq < 0) continue; // restarted: counters began again
      const dOrigin = st.origin_fetches - p.st.origin_fetches, dShed = st.shed - p.st.shed;
      d.hit += sum(st.requests, HIT) - sum(p.st.requests, HIT);
      d.store += sum(st.requests, STORE) - sum(p.st.requests, STORE);
      rates.origin += Math.max(0, dOrigin) / dt;
      rates.shed += Math.max(0, dShed) / dt;
      rates.req += dreq / dt;
      nodeRates.set(st.node, dreq / dt);
      counted++;
    }
    if (!counted) return;
    const hit = d.store > 0 ? d.hit / d.store : null;
    pushPoint(Math.round(latest / 1000), hit, rates.origin, rates.shed, rates.req);
  }

  // ---- members ----
  let serverSkew = 0; // server clock minus browser clock, ms
  let loads = new Map();
  function renderMembers(c) {
    const tb = $("members").querySelector("tbody");
    const rows = [];
    for (const m of c.members || []) {
      const tr = el("tr");
      tr.dataset.node = m.id;
      const l = loads.get(m.id) || {};
      tr.append(el("td", m.id + (m.id === c.self ? " (this)" : "")), el("td", m.zone || "–"),
        el("td", m.state, "state-" + m.state), el("td", m.addr), el("td", m.admin), el("td", m.purge_rev),
        el("td", fmtRate(nodeRates.get(m.id))), el("td", l.in_flight ?? "–"), el("td", fmtDur(l.p99)),
        el("td", l.error_rate !== undefined ? (l.error_rate * 100).toFixed(1) + "%" : "–"),
        el("td", l.cpu_limit ? l.cpu.toFixed(2) + " of " + l.cpu_limit.toFixed(2) + " cores" : (l.cpu ? l.cpu.toFixed(2) + " cores" : "–")));
      const td = el("td");
      const draining = m.state === "draining";
      const b = el("button", draining ? "undrain" : "drain");
      b.addEventListener("click", () => drain(m.id, !draining, b));
      td.append(b);
      tr.append(td);
      rows.push(tr);
    }
    tb.replaceChildren(...rows);
  }
  async function drain(node, on, button) {
    if (on && !confirm("Drain " + node + "? Routers stop sending it keys.")) return;
    button.disabled = true;
    try {
      const r = await postJSON("/api/v1/drain", { node, draining: on });
      if (r.status !== 200) alertMsg("drain " + node + ": " + ((r.body && r.body.error) || "status " + r.status));
    } catch (e) {
      alertMsg("drain " + node + ": " + e);
    } finally {
      button.disabled = false;
    }
  }
  function alertMsg(msg) {
    const p = $("purge-result");
    p.textContent = msg;
    p.className = "result err";
  }

  // ---- hot objects ----
  let hot = [];
  const hotRows = new Map(); // key -> tr
  function limitText(pin, cap) {
    const parts = [];
    if (pin) parts.push("pin " + pin);
    if (cap !== undefined && cap !== null) parts.push("cap " + cap);
    return parts.join(" · ");
  }
  function makeHotRow(key) {
    const tr = el("tr");
    tr.dataset.key = key;
    const c = cells(tr, 9);
    c[0].className = "key";
    c[8].className = "controls";
    const n = el("input");
    n.type = "number"; n.min = "0"; n.step = "1"; n.value = "1"; n.className = "n";
    n.setAttribute("aria-label", "leased replicas for " + key);
    const pin = el("button", "pin"), cap = el("button", "cap"), clear = el("button", "clear");
    pin.dataset.act = "pin"; cap.dataset.act = "cap"; clear.dataset.act = "clear";
    pin.title = "keep at least N leased replicas, whatever the rate";
    cap.title = "at most N leased replicas (0: the owner alone)";
    pin.addEventListener("click", () => setLimit(key, "pin", n, "", pin));
    cap.addEventListener("click", () => setLimit(key, "cap", n, "", cap));
    clear.addEventListener("click", () => clearLimit(key, clear));
    c[8].append(n, pin, cap, clear);
    return tr;
  }
  function updateHotRow(tr, h) {
    const now = Date.now() + serverSkew;
    const c = cells(tr, 9);
    c[0].textContent = h.key;
    c[1].textContent = fmtRate(h.rate);
    c[2].textContent = fmtDur(h.p99);
    c[3].textContent = h.owner;
    c[4].textContent = String(h.desired);
    const reps = [];
    for (const r of h.replicas || []) {
      let text = r.node;
      if (r.released) text += " released";
      else if (r.expires) text += " " + Math.max(0, (Date.parse(r.expires) - now) / 1000).toFixed(0) + " s";
      reps.push(el("span", text, "replica" + (r.released ? " released" : "")));
    }
    if (!reps.length) reps.push(el("span", "owner only", "muted"));
    c[5].replaceChildren(...reps);
    // Near copies: routers keeping the object themselves (the data plane's own, seconds-long leases).
    const near = [];
    for (const [node, l] of loads) {
      for (const nc of l.near_copies || []) {
        if (nc.key !== h.key) continue;
        near.push(el("span", node + " " + Math.max(0, (Date.parse(nc.expires) - now) / 1000).toFixed(1) + " s", "replica near"));
      }
    }
    if (!near.length) near.push(el("span", "none", "muted"));
    c[6].replaceChildren(...near);
    const lt = limitText(h.pin, h.cap);
    c[7].textContent = lt || "–";
    c[7].className = lt ? "limit" : "muted";
  }
  function renderHot() {
    syncRows($("hot").querySelector("tbody"), hotRows, hot, (h) => h.key, makeHotRow, updateHotRow);
  }

  // ---- pins and caps ----
  async function setLimit(key, kind, input, reason, button, lasts) {
    const n = wholeNumber(input);
    if (n === null) { showResult("limit-result", false, kind + " " + key + ": N must be a whole number ≥ 0"); return; }
    const body = { key, [kind]: n };
    if (reason) body.reason = reason;
    if (lasts) body.for = lasts; // the node checks it: a duration such as 3h
    button.disabled = true;
    try {
      const r = await sendJSON("PUT", "/api/v1/objects", body);
      const b = r.body || {};
      if (r.status === 200) {
        showResult("limit-result", true, b.key + ": " + (limitText(b.pin, b.cap) || "no pin or cap") + (b.cleared ? " (cleared)" : "") +
          (b.until ? ", until " + clock(Date.parse(b.until) / 1000) : ""));
        loadLimits();
      } else {
        showResult("limit-result", false, kind + " " + key + " refused (" + r.status + "): " + (b.error || "no reason given"));
      }
    } catch (e) {
      showResult("limit-result", false, kind + " " + key + " failed: " + e);
    } finally {
      button.disabled = false;
    }
  }
  async function clearLimit(key, button) {
    button.disabled = true;
    try {
      const r = await sendJSON("DELETE", "/api/v1/objects?key=" + encodeURIComponent(key));
      const b = r.body || {};
      if (r.status === 200) { showResult("limit-result", true, key + ": cleared, back to the rate alone"); loadLimits(); }
      else showResult("limit-result", false, "clear " + key + " refused (" + r.status + "): " + (b.error || "no reason given"));
    } catch (e) {
      showResult("limit-result", false, "clear " + key + " failed: " + e);
    } finally {
      button.disabled = false;
    }
  }
  $("limit-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("limit-key").value.trim();
    if (!key) { showResult("limit-result", false, "enter a key: a path such as /live/match-1"); return; }
    setLimit(key, $("limit-kind").value, $("limit-n"), $("limit-reason").value.trim(), $("limit-go"), $("limit-for").value.trim());
  });
  const limitRows = new Map();
  function makeLimitRow(key) {
    const tr = el("tr");
    tr.dataset.key = key;
    const c = cells(tr, 6);
    c[0].className = "key";
    const b = el("button", "clear");
    b.addEventListener("click", () => clearLimit(key, b));
    c[5].append(b);
    return tr;
  }
  function updateLimitRow(tr, o) {
    const c = cells(tr, 6);
    c[0].textContent = o.key;
    c[1].textContent = o.pin ? String(o.pin) : "–";
    c[2].textContent = o.cap !== undefined && o.cap !== null ? String(o.cap) : "–";
    c[3].textContent = o.reason || "";
    c[3].className = "reason";
    c[4].textContent = (o.updated ? clock(Date.parse(o.updated) / 1000) : "–") +
      (o.until ? " / until " + clock(Date.parse(o.until) / 1000) : "");
  }
  function renderLimits(b) {
    const objs = b.objects || [];
    syncRows($("limits").querySelector("tbody"), limitRows, objs, (o) => o.key, makeLimitRow, updateLimitRow);
    $("limits-note").textContent = (objs.length ? objs.length + " of at most " + b.max : "none set; at most " + b.max) +
      "; N is at most " + b.max_leased + " (--max-replicas less the owner)";
  }
  async function loadLimits() {
    const r = await getJSON("/api/v1/objects");
    if (r.status === 200 && r.body) renderLimits(r.body);
  }

  // ---- tenants ----
  const tenantRows = new Map();
  function makeTenantRow(name) {
    const tr = el("tr");
    tr.dataset.tenant = name;
    const c = cells(tr, 7);
    c[6].className = "controls";
    const mn = el("input"), mx = el("input");
    for (const [i, what] of [[mn, "min"], [mx, "max"]]) {
      i.type = "number"; i.min = "1"; i.step = "1"; i.className = "n " + what; i.placeholder = what;
      i.setAttribute("aria-label", what + " nodes of " + name);
    }
    const b = el("button", "set");
    b.addEventListener("click", () => setTenant(name, mn, mx, b));
    c[6].append(mn, mx, b);
    return tr;
  }
  function updateTenantRow(tr, t) {
    const c = cells(tr, 7);
    c[0].textContent = t.name;
    c[1].textContent = t.size + (t.hold ? " (held)" : "");
    c[2].textContent = String(t.min);
    c[3].textContent = t.max !== undefined && t.max !== null ? String(t.max) : "–";
    const iso = [];
    for (const [k, v] of Object.entries(t.labels || {})) iso.push(k + "=" + v);
    if ((t.pin || []).length) iso.push("pin " + t.pin.join(","));
    if ((t.exclude || []).length) iso.push("exclude " + t.exclude.join(","));
    if (t.fallback) iso.push("no node eligible: all");
    c[4].textContent = iso.join("; ") || "–";
    c[5].replaceChildren(...(t.nodes || []).map((n) => el("span", n, "node")));
    c[5].dataset.nodes = String((t.nodes || []).length);
  }
  async function setTenant(name, mn, mx, button) {
    const body = {};
    for (const [i, what] of [[mn, "min"], [mx, "max"]]) {
      if (!i.value.trim()) continue;
      const n = wholeNumber(i);
      if (n === null) { showResult("tenant-result", false, name + ": " + what + " must be a whole number"); return; }
      body[what] = n;
    }
    if (!Object.keys(body).length) { showResult("tenant-result", false, name + ": enter a min, a max or both"); return; }
    button.disabled = true;
    try {
      const r = await sendJSON("PUT", "/api/v1/tenants/" + encodeURIComponent(name), body);
      const b = r.body || {};
      if (r.status === 200) {
        mn.value = ""; mx.value = "";
        showResult("tenant-result", true, "tenant " + name + ": size " + b.size + ", min " + b.min + ", max " + (b.max ?? "none"));
      } else {
        showResult("tenant-result", false, "tenant " + name + " refused (" + r.status + "): " + (b.error || "no reason given"));
      }
    } catch (e) {
      showResult("tenant-result", false, "tenant " + name + " failed: " + e);
    } finally {
      button.disabled = false;
    }
  }
  function renderTenants(b) {
    const ts = b.tenants || [];
    syncRows($("tenants").querySelector("tbody"), tenantRows, ts, (t) => t.name, makeTenantRow, updateTenantRow);
    $("tenants-note").textContent = ts.length ? "" : "no tenants declared (--tenants FILE): every node serves every key";
  }

  // ---- events ----
  function renderEvents(evs) {
    const now = Date.now() + serverSkew;
    const tl = $("timeline");
    const marks = [el("div", null, "axis"), el("span", "5 min ago", "tl-from"), el("span", "now", "tl-to")];
    const rows = [];
    for (const e of evs) {
      const t = Date.parse(e.time);
      const age = now - t;
      const op = e.action === "operator";
      const what = e.action + " " + e.key + (e.node ? " on " + e.node : "") + ": " + e.reason + (e.error ? " (failed: " + e.error + ")" : "");
      if (age >= 0 && age <= TIMELINE_MS) {
        const m = el("div", null, "ev " + e.action + (e.error ? " failed" : ""));
        m.style.left = (100 * (1 - age / TIMELINE_MS)).toFixed(2) + "%";
        m.title = clock(t / 1000) + " " + what;
        marks.push(m);
      }
      if (rows.length < 50) {
        const tr = el("tr");
        tr.append(el("td", clock(t / 1000)), el("td", e.action, e.error ? "err" : ""),
          el("td", e.key, "key"), el("td", e.node || "–"), el("td", op ? "–" : e.current + " → " + e.desired),
          el("td", e.reason + (e.error ? " (failed: " + e.error + ")" : ""), "reason"));
        rows.push(tr);
      }
    }
    tl.replaceChildren(...marks);
    $("events").querySelector("tbody").replaceChildren(...rows);
  }

  // ---- purge ----
  $("purge-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const kind = $("purge-kind").value, value = $("purge-value").value.trim();
    const out = $("purge-result");
    if (!value) { out.textContent = "enter a " + kind; out.className = "result err"; return; }
    const body = { [kind]: value, soft: $("purge-soft").checked };
    const wait = $("purge-wait").value.trim();
    if (wait) body.wait = wait;
    $("purge-go").disabled = true;
    out.textContent = "purging…"; out.className = "result muted";
    delete out.dataset.rev; delete out.dataset.complete;
    try {
      const r = await postJSON("/api/v1/purge", body);
      const b = r.body || {};
      if (r.status === 200 || r.status === 202) {
        out.dataset.rev = String(b.rev);
        out.dataset.complete = String(!!b.complete);
        out.textContent = "purge " + b.kind + " " + b.value + " committed at revision " + b.rev + "; " +
          (b.complete ? "applied on every node: " + (b.applied || []).join(", ")
            : "applied on " + ((b.applied || []).join(", ") || "none") + ", pending on " + (b.pending || []).join(", "));
        out.className = "result " + (b.complete ? "ok" : "err");
      } else {
        out.textContent = "purge refused (" + r.status + "): " + (b.error || "no reason given");
        out.className = "result err";
      }
    } catch (e) {
      out.textContent = "purge failed: " + e;
      out.className = "result err";
    } finally {
      $("purge-go").disabled = false;
    }
  });

  // ---- polling ----
  async function tick() {
    const [st, cl, ht, evs, tn, ob] = await Promise.allSettled([
      getJSON("/api/v1/stats?scope=cluster"), getJSON("/api/v1/cluster"), getJSON("/api/v1/hot"), getJSON("/api/v1/events"),
      getJSON("/api/v1/tenants"), getJSON("/api/v1/objects"),
    ]);
    if (ht.status === "fulfilled" && ht.value.status === 200 && ht.value.body) {
      const b = ht.value.body;
      hot = b.hot || [];
      loads = new Map((b.nodes || []).map((l) => [l.node, l]));
      $("leader").textContent = b.leader || "?";
      $("hot-note").textContent = hot.length ? "" : "no hot objects";
    } else if (ht.status === "fulfilled") {
      hot = [];
      $("leader").textContent = "none";
      $("hot-note").textContent = (ht.value.body && ht.value.body.error) || "hot objects unavailable";
    }
    if (st.status === "fulfilled" && st.value.status === 200 && st.value.body) onStats(st.value.body.nodes || []);
    if (cl.status === "fulfilled" && cl.value.status === 200 && cl.value.body) {
      const c = cl.value.body;
      serverSkew = Date.parse(c.time) - Date.now();
      $("self").textContent = c.self;
      renderMembers(c);
      $("updated").textContent = "updated " + clock(Date.now() / 1000);
      $("updated").className = "";
    } else {
      $("updated").textContent = "node unreachable";
      $("updated").className = "err";
    }
    renderHot();
    if (evs.status === "fulfilled" && evs.value.status === 200 && evs.value.body) renderEvents(evs.value.body.events || []);
    if (tn.status === "fulfilled" && tn.value.status === 200 && tn.value.body) renderTenants(tn.value.body);
    if (ob.status === "fulfilled" && ob.value.status === 200 && ob.value.body) renderLimits(ob.value.body);
  }

  let running = false;
  async function loop() {
    if (running) return; // one poll at a time: a slow node never stacks them up
    running = true;
    try { await tick(); } catch (e) { /* shown as unreachable on the next tick */ } finally { running = false; }
  }

  initCharts();
  loop();
  setInterval(loop, POLL_MS);
})();
