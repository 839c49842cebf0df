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

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return { status: r.status, body };
  }
  async function postJSON(path, obj) {
    const t = token();
    if (!t) return { status: 0, body: { error: "paste the admin token first" } };
    const r = await fetch(path, {
      method: "POST", cache: "no-store",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + t },
      body: JSON.stringify(obj),
    });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return { status: r.status, body };
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
  function renderHot() {
    const tb = $("hot").querySelector("tbody");
    const now = Date.now() + serverSkew;
    const rows = hot.map((h) => {
      const tr = el("tr");
      const reps = el("td");
      for (const r of h.replicas || []) {
        let text = r.node;
        if (r.released) text += " released";
        else if (r.expires) text += " " + Math.max(0, (Date.parse(r.expires) - now) / 1000).toFixed(0) + " s";
        reps.append(el("span", text, "replica" + (r.released ? " released" : "")));
      }
      if (!(h.replicas || []).length) reps.append(el("span", "owner only", "muted"));
      // Near copies: routers keeping the object themselves (the data plane's own, seconds-long leases).
      const near = el("td");
      for (const [node, l] of loads) {
        for (const c of l.near_copies || []) {
          if (c.key !== h.key) continue;
          near.append(el("span", node + " " + Math.max(0, (Date.parse(c.expires) - now) / 1000).toFixed(1) + " s", "replica near"));
        }
      }
      if (!near.childNodes.length) near.append(el("span", "none", "muted"));
      tr.append(el("td", h.key, "key"), el("td", fmtRate(h.rate)), el("td", fmtDur(h.p99)), el("td", h.owner),
        el("td", h.desired), reps, near);
      return tr;
    });
    tb.replaceChildren(...rows);
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
      const what = e.action + " " + e.key + " on " + e.node + ": " + e.reason + (e.error ? " (failed: " + e.error + ")" : "");
      if (age >= 0 && age <= TIMELINE_MS) {
        const m = el("div", null, "ev " + e.action + (e.error ? " failed" : ""));
        m.style.left = (100 * (1 - age / TIMELINE_MS)).toFixed(2) + "%";
        m.title = clock(t / 1000) + " " + what;
        marks.push(m);
      }
      if (rows.length < 50) {
        const tr = el("tr");
        tr.append(el("td", clock(t / 1000)), el("td", e.action, e.error ? "err" : ""),
          el("td", e.key, "key"), el("td", e.node), el("td", e.current + " → " + e.desired),
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
    const [st, cl, ht, evs] = await Promise.allSettled([
      getJSON("/api/v1/stats?scope=cluster"), getJSON("/api/v1/cluster"), getJSON("/api/v1/hot"), getJSON("/api/v1/events"),
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
