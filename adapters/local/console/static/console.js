// The Switchyard console: plain ES module, no dependency, no build step.
// Data comes from the JSON API under /api/ and the live timeline stream /api/stream
// (server-sent events read with fetch(), so the Authorization header can be sent; the
// stream ends every few seconds and is resumed with Last-Event-ID).

const $ = (id) => document.getElementById(id);
const ROW_H = 22;          // px per timeline row: the list renders only the visible rows
const PAGE = 50;

// --- auth: the token arrives in the URL fragment (never sent to a server) -----------
const TOKEN_KEY = "switchyard.token";
(function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, body) {
  const init = body === undefined ? { headers: headers() }
    : { method: "POST", headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) {
    const err = new Error(data.problems ? `${data.error}: ${data.problems.join("; ")}` : data.error);
    err.status = res.status;
    throw err;
  }
  return data;
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
};
const time = (at) => new Date(at * 1000).toLocaleTimeString([], { hour12: false }) +
  "." + String(Math.floor((at % 1) * 1000)).padStart(3, "0");

// --- tabs ------------------------------------------------------------------------
const loaders = {};
let current = "timeline";
function show(tab) {
  current = tab;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== tab;
  if (loaders[tab]) loaders[tab]();
  if (tab === "timeline") renderRows();
}
$("tabs").addEventListener("click", (e) => { const t = e.target.closest("button"); if (t) show(t.dataset.tab); });

// --- timeline: live stream + virtualised list ----------------------------------------
let columns = [];
const rows = [];          // every row received, oldest first (arrays, see columns)
let shown = [];           // indexes into rows that pass the filters, newest first
let lastId = 0;
let caughtUp = false;
const C = {};             // column name -> index
const seen = { type: new Set(), consumer: new Set(), outcome: new Set() };

function filterOf() {
  return { type: $("f-type").value, consumer: $("f-consumer").value,
           outcome: $("f-outcome").value, order: $("f-order").value.trim() };
}
function passes(r, f) {
  return (!f.type || r[C.type] === f.type) && (!f.consumer || r[C.consumer] === f.consumer) &&
    (!f.outcome || r[C.outcome] === f.outcome) && (!f.order || r[C.subject] === f.order);
}
function refilter() {
  const f = filterOf();
  shown = [];
  for (let i = rows.length - 1; i >= 0; i--) if (passes(rows[i], f)) shown.push(i);
  renderRows();
}
let pending = false;
function renderRows() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    const box = $("t-scroll");
    $("t-spacer").style.height = `${shown.length * ROW_H}px`;
    $("t-count").textContent = `${shown.length} of ${rows.length} rows`;
    if (current !== "timeline") return;
    const first = Math.max(0, Math.floor(box.scrollTop / ROW_H) - 5);
    const last = Math.min(shown.length, first + Math.ceil(box.clientHeight / ROW_H) + 10);
    const frag = document.createDocumentFragment();
    for (let k = first; k < last; k++) {
      const r = rows[shown[k]];
      const order = r[C.subject] || "";
      const line = el("div", { class: "row tl", title: r[C.detail] || "" },
        el("span", {}, time(r[C.at])), el("span", {}, r[C.type] || ""),
        el("span", {}, r[C.consumer] || "-"), el("span", {}, r[C.attempt] ?? ""),
        el("span", { class: `o-${r[C.outcome]}` }, r[C.outcome]),
        el("span", {}, r[C.duration_ms] == null ? "" : r[C.duration_ms].toFixed(1)),
        el("span", {}, order), el("span", {}, r[C.detail] || ""));
      if (order) line.dataset.order = order;
      frag.append(line);
    }
    const holder = $("t-rows");
    holder.style.top = `${first * ROW_H}px`;
    holder.replaceChildren(frag);
  });
}
$("t-scroll").addEventListener("scroll", renderRows);
$("t-rows").addEventListener("click", (e) => {
  const line = e.target.closest("[data-order]");
  if (line) { show("orders"); openOrder(line.dataset.order); }
});
$("filters").addEventListener("input", refilter);
$("filters").addEventListener("submit", (e) => e.preventDefault());

function addOption(select, set, value) {
  if (value == null || value === "" || set.has(value)) return;
  set.add(value);
  select.append(el("option", { value }, value));
}

function addRows(batch) {
  const f = filterOf();
  const fresh = [];
  for (const r of batch) {
    rows.push(r);
    if (passes(r, f)) fresh.push(rows.length - 1);
    addOption($("f-type"), seen.type, r[C.type]);
    addOption($("f-consumer"), seen.consumer, r[C.consumer]);
    addOption($("f-outcome"), seen.outcome, r[C.outcome]);
    if (caughtUp && r[C.outcome] === "reloaded") {
      const b = $("banner");
      b.textContent = `Runtime reloaded at ${time(r[C.at])}: ${r[C.detail]}`;
      b.hidden = false;
    }
  }
  shown = fresh.reverse().concat(shown);
  renderRows();
  if (caughtUp) liveRefresh();
}

let refreshTimer = null;
function liveRefresh() {   // new rows: refresh the open view, at most a few times a second
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    if (current !== "timeline" && current !== "send" && loaders[current]) loaders[current]();
    else if (openedOrder) openOrder(openedOrder, true);
    countDlq();
  }, 300);
}

async function stream() {
  for (;;) {
    try {
      const res = await fetch("/api/stream", { headers: headers(lastId ? { "Last-Event-ID": String(lastId) } : {}) });
      if (res.status === 401) { showError("This server needs a token: open the console URL that `switchyard serve` printed."); return; }
      if (!res.ok) throw new Error(`stream HTTP ${res.status}`);
      $("live").textContent = "live"; $("live").classList.add("on");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          handleMessage(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
      }
    } catch (err) {
      $("live").textContent = "reconnecting"; $("live").classList.remove("on");
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
function handleMessage(text) {
  let event = "message", data = "", id = null;
  for (const line of text.split("\n")) {
    if (line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const key = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (key === "event") event = value; else if (key === "data") data += value; else if (key === "id") id = value;
  }
  if (id !== null) lastId = Number(id);
  if (event === "columns") { columns = JSON.parse(data); columns.forEach((c, i) => { C[c] = i; }); }
  else if (event === "rows") addRows(JSON.parse(data));
  else if (event === "caught-up" && !caughtUp) { caughtUp = true; liveRefresh(); }
}

// --- orders and the trace waterfall ------------------------------------------------
let ordersOffset = 0;
let openedOrder = null;
const money = (cents) => cents == null ? "" : (cents / 100).toFixed(2);
loaders.orders = async () => {
  const page = await api(`/api/tables/orders?offset=${ordersOffset}&limit=${PAGE}`);
  const table = $("orders-table");
  table.replaceChildren(el("tr", {}, ...["order", "customer", "total", "status", "reason"].map((h) => el("th", {}, h))));
  for (const o of page.rows) {
    table.append(el("tr", { class: "pick", dataset: { order: o.order_id }, onclick: () => openOrder(o.order_id) },
      el("td", {}, o.order_id), el("td", {}, o.customer_id), el("td", {}, money(o.total_cents)),
      el("td", { class: `o-${o.status}` }, o.status), el("td", {}, o.reason || "")));
  }
  pager($("orders-pager"), page, (off) => { ordersOffset = off; loaders.orders(); });
  if (openedOrder) openOrder(openedOrder, true);
};

async function openOrder(orderId, quiet = false) {
  openedOrder = orderId;
  const view = $("order-view");
  let data;
  try { data = await api(`/api/orders/${encodeURIComponent(orderId)}`); }
  catch (err) { if (!quiet) view.replaceChildren(el("p", { class: "muted" }, err.message)); return; }
  const o = data.order;
  const head = el("div", {},
    el("h2", {}, `Order ${orderId}`),
    el("div", { class: `state ${o ? o.status : ""}`, id: "order-state" }, o ? o.status : "not stored (yet)"),
    o && o.reason ? el("p", {}, `reason: ${o.reason}${o.reason_detail ? ` (${o.reason_detail})` : ""}`) : "",
    o ? el("p", { class: "muted" }, `customer ${o.customer_id}, total ${o.total}, ${o.items.length} item(s)`) : "",
    data.saga ? el("p", { class: "muted" }, `saga ${data.saga.saga_id}: ${data.saga.status}`) : "");
  view.replaceChildren(head, waterfall(data.trace), spanTree(data.spans));
}

// The order's OpenTelemetry spans kept by the server (tracing on), as an indented tree.
function spanTree(spans) {
  if (!spans) return "";
  if (!spans.recording) return el("p", { class: "muted", id: "spans-off" }, spans.note);
  const ids = spans.trace_ids.map((t) => t.slice(0, 12) + "…").join(", ") || "none recorded";
  const box = el("div", { id: "spans" }, el("h3", {}, "Spans"),
    el("p", { class: "muted" }, `trace ${ids} · ${spans.tree.length} span(s) of the last ${spans.limit} this server keeps`));
  if (!spans.tree.length) return box;
  const grid = el("div", { class: "st" }, el("b", {}, "span"), el("b", {}, "kind"), el("b", {}, "ms"), el("b", {}, "outcome"));
  for (const s of spans.tree) {
    const about = Object.entries(s.attributes).map(([k, v]) => `${k}=${v}`).join("\n");
    const name = el("span", { class: "sn", title: `${s.name}\ntrace ${s.trace_id} span ${s.span_id}\n${about}`,
      dataset: { span: s.span_id, depth: s.depth } }, s.name);
    name.style.paddingLeft = `${s.depth * 14}px`;
    const outcome = s.outcome ?? (s.status === "error" ? "error" : "");
    grid.append(name, el("span", {}, s.kind), el("span", {}, s.duration_ms.toFixed(1)),
      el("span", { class: `o-${outcome}` }, outcome));
  }
  box.append(grid);
  return box;
}

function waterfall(trace) {
  const box = el("div", { class: "wf", id: "waterfall" });
  if (!trace.length) return el("p", { class: "muted" }, "no trace recorded");
  const start = trace[0].at;
  const ends = trace.map((r) => r.at + (r.duration_ms || 0) / 1000);
  const span = Math.max(...ends) - start || 0.001;
  box.append(el("b", {}, "event / step · consumer · try"), el("b", {}, "outcome"), el("b", {}, `over ${(span * 1000).toFixed(0)} ms`));
  for (const r of trace) {
    const d = (r.duration_ms || 0) / 1000;
    const kind = r.type.endsWith(".compensate") ? "compensate"
      : /dead-lettered|failed/.test(r.outcome) ? "bad" : r.outcome === "retry" ? "retry" : "";
    const bar = el("div", { class: `bar ${kind}`, title: `${r.outcome} ${(r.duration_ms || 0).toFixed(1)} ms ${r.detail || ""}` });
    // A row's `at` is when it was recorded, at the end of its work: the bar ends there.
    bar.style.left = `${Math.max(0, (r.at - d - start) / span) * 100}%`;
    bar.style.width = `${Math.max((d / span) * 100, 0.4)}%`;
    box.append(el("div", { class: "lbl", title: `${r.type} ${r.detail || ""}` },
      `+${((r.at - start) * 1000).toFixed(0)}ms ${r.type.replace(/^com\.switchyard\./, "")} · ${(r.consumer || "-").replace(/^saga:/, "saga ")} · ${r.attempt}`),
      el("span", { class: `o-${r.outcome}`, title: r.detail || "" }, `${r.outcome} ${(r.duration_ms || 0).toFixed(1)}ms`),
      el("div", { class: "track" }, bar));
  }
  return box;
}

// --- tables ------------------------------------------------------------------------
let tableOffset = 0;
loaders.tables = async () => {
  const name = $("table-name").value;
  if (!name) return;
  const page = await api(`/api/tables/${encodeURIComponent(name)}?offset=${tableOffset}&limit=${PAGE}`);
  const keys = [...new Set(page.rows.flatMap((r) => Object.keys(r)))];
  const grid = $("table-grid");
  grid.replaceChildren(el("tr", {}, ...keys.map((k) => el("th", {}, k))));
  for (const r of page.rows) {
    grid.append(el("tr", {}, ...keys.map((k) => el("td", {},
      r[k] !== null && typeof r[k] === "object" ? JSON.stringify(r[k]) : r[k] ?? ""))));
  }
  pager($("table-pager"), page, (off) => { tableOffset = off; loaders.tables(); });
};
$("table-name").addEventListener("change", () => { tableOffset = 0; loaders.tables(); });

function pager(box, page, go) {
  const to = Math.min(page.offset + page.limit, page.total);
  box.replaceChildren(
    el("button", { onclick: () => go(Math.max(0, page.offset - page.limit)), ...(page.offset ? {} : { disabled: "" }) }, "‹ prev"),
    el("span", { class: "muted" }, `${page.total ? page.offset + 1 : 0}-${to} of ${page.total}`),
    el("button", { onclick: () => go(page.offset + page.limit), ...(to < page.total ? {} : { disabled: "" }) }, "next ›"));
}

// --- dead letters ------------------------------------------------------------------
const picked = new Set();
loaders.dlq = async () => {
  const data = await api("/api/dlq");
  $("dlq-count").textContent = data.entries.length || "";
  const table = $("dlq-table");
  table.replaceChildren(el("tr", {}, el("th", {}, ""), ...["#", "consumer", "type", "reason", "attempts", "failed", "event"].map((h) => el("th", {}, h))));
  const ids = new Set(data.entries.map((e) => e.dlq_id));
  for (const id of [...picked]) if (!ids.has(id)) picked.delete(id);
  for (const e of data.entries) {
    const box = el("input", { type: "checkbox", "data-dlq": e.dlq_id });
    box.checked = picked.has(e.dlq_id);
    box.addEventListener("change", () => { box.checked ? picked.add(e.dlq_id) : picked.delete(e.dlq_id); dlqButtons(); });
    table.append(el("tr", { dataset: { dlqRow: e.dlq_id } }, el("td", {}, box), el("td", {}, e.dlq_id), el("td", {}, e.consumer),
      el("td", {}, e.type), el("td", { class: "reason" }, e.reason), el("td", {}, e.attempts), el("td", {}, time(e.failed_at)),
      el("td", {}, el("details", {}, el("summary", {}, e.event_id), el("pre", {}, JSON.stringify(e.event, null, 1))))));
  }
  if (!data.entries.length) table.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, `no dead letters (${data.discarded} discarded so far)`)));
  dlqButtons();
};
function dlqButtons() { $("dlq-redrive").disabled = $("dlq-discard").disabled = picked.size === 0; }
async function dlqAction(kind) {
  const ids = [...picked];
  try {
    const r = await api(`/api/dlq/${kind}`, { ids });
    const done = r.redriven || r.discarded;
    $("dlq-result").textContent = `${kind === "redrive" ? "redriven" : "discarded"}: ${done.join(", ") || "none"}` +
      ((r.not_redriven || r.not_discarded || []).length ? `; not: ${(r.not_redriven || r.not_discarded).join(", ")}` : "");
    picked.clear();
    loaders.dlq();
  } catch (err) { showError(err.message); }
}
$("dlq-redrive").addEventListener("click", () => dlqAction("redrive"));
$("dlq-discard").addEventListener("click", () => dlqAction("discard"));
async function countDlq() {
  try { const d = await api("/api/dlq"); $("dlq-count").textContent = d.entries.length || ""; } catch (err) { /* shown elsewhere */ }
}

// --- send -------------------------------------------------------------------------
let sampleSet = {};
const newId = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`);
function fillSample() {
  const s = sampleSet[$("send-type").value];
  if (!s) return;
  // A fresh id and time per send: the sample's fixed id would be a duplicate (a no-op).
  const event = { ...s.event, id: newId(), time: new Date().toISOString() };
  $("send-desc").textContent = `${s.detail_type}: ${s.description}`;
  $("send-body").value = JSON.stringify(event, null, 2);
}
$("send-type").addEventListener("change", fillSample);
$("send-reset").addEventListener("click", fillSample);
$("send-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const out = $("send-result");
  let event;
  try { event = JSON.parse($("send-body").value); }
  catch (err) { out.textContent = `not valid JSON: ${err.message}`; out.className = "o-failed"; return; }
  try {
    const r = await api("/api/send", { event });
    out.className = "o-ok";
    out.textContent = `accepted ${r.ids.join(", ")}`;
    // Ready for the next one: same data, new id.
    const again = JSON.parse($("send-body").value);
    if (!Array.isArray(again) && again.id) { again.id = newId(); $("send-body").value = JSON.stringify(again, null, 2); }
  } catch (err) { out.className = "o-failed"; out.textContent = err.message; }
});

// --- health -----------------------------------------------------------------------
loaders.health = async () => {
  const h = await api("/api/health");
  const c = h.counts;
  const card = (label, value) => el("div", { class: "card" }, el("b", {}, value ?? "-"), label);
  const consumers = el("table", { class: "grid" }, el("tr", {}, ...["consumer", "backlog", "in flight", "dead letters", "recent failures"].map((x) => el("th", {}, x))),
    ...h.consumers.map((s) => el("tr", {}, el("td", {}, s.consumer), el("td", {}, s.backlog), el("td", {}, s.in_flight),
      el("td", {}, s.dead_letters), el("td", {}, s.recent_failures.join(" | ")))));
  const uploads = h.uploads.map((u) => el("li", {}, `${u.bucket}: ${u.files_seen} file(s) seen${u.last_seen_at ? `, last at ${time(u.last_seen_at)}` : ""} — drop CSVs in ${u.folder}`));
  const schedules = h.schedules.map((s) => el("li", {}, `${s.name} [${s.cron}] -> ${s.emits}: fired ${s.fired} time(s)${s.last_slot ? `, last slot ${new Date(s.last_slot * 1000).toISOString()}` : ""}`));
  $("health-view").replaceChildren(
    el("div", { class: "cards" }, card("events", c.events), card("queued", c.queued), card("dead letters", c.dead_lettered),
      card("active sagas", c.sagas_active), card("notifications", c.notifications)),
    consumers, el("h3", {}, "Uploads"), el("ul", {}, ...uploads), el("h3", {}, "Schedules"), el("ul", {}, ...schedules),
    h.last_reload ? el("p", { class: "muted" }, `last reload ${time(h.last_reload.at)}: ${h.last_reload.detail}`) : "");
};

// --- topology: an SVG laid out in columns -----------------------------------------
loaders.topology = async () => {
  if ($("topo").firstChild) return;
  const app = appDescription;
  const NS = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text != null) n.textContent = text;
    return n;
  };
  const W = 200, H = 34, GAP = 10, COLX = [10, 190, 480, 790], COLW = [160, 260, 280, 170];
  // Producers: every catalog source (anyone may publish its types), and the schedules.
  const producers = [...new Set(app.types.map((t) => `source: ${t.source}`)),
    ...app.schedules.map((s) => `schedule: ${s.name}`)];
  const short = (t) => t.replace(/^com\.switchyard\./, "");
  const cols = [
    { title: "producers", items: producers.map((p) => ({ id: `p:${p}`, label: p, cls: "producer" })) },
    { title: "event types", items: app.types.map((t) => ({ id: `t:${t.type}`, label: t.detail_type, sub: short(t.type), cls: "type" })) },
    { title: "consumers (queue → dead-letter queue)", items: app.consumers.map((c) => ({ id: `c:${c.name}`, label: c.name, sub: `${c.queue} → ${c.dlq}`, cls: "consumer", dlq: true })) },
    { title: "stores, buckets, saga", items: [...app.tables.map((t) => ({ id: `s:${t}`, label: t, sub: "table", cls: "store" })),
      ...app.buckets.map((b) => ({ id: `b:${b.name}`, label: b.name, sub: b.events ? "bucket (upload events)" : "bucket", cls: "store" })),
      { id: `g:${app.saga.scope}`, label: `saga ${app.saga.name}`, sub: `${app.saga.steps.length} steps (below)`, cls: "saga" }] },
  ];
  const pos = {};
  let height = 0;
  const group = svg("g", {});
  cols.forEach((col, ci) => {
    group.append(svg("text", { x: COLX[ci], y: 16, class: "hdr" }, col.title));
    col.items.forEach((it, i) => {
      const x = COLX[ci], y = 28 + i * (H + GAP);
      pos[it.id] = { x, y, w: COLW[ci] };
      const g = svg("g", { class: it.cls });
      g.append(svg("rect", { x, y, width: COLW[ci], height: H, rx: 4 }), svg("text", { x: x + 6, y: y + 14 }, it.label));
      if (it.sub) g.append(svg("text", { x: x + 6, y: y + 27, class: it.dlq ? "dlq" : "hdr" }, it.sub));
      group.append(g);
      height = Math.max(height, y + H + GAP);
    });
  });
  const edge = (a, b, cls = "") => {
    if (!pos[a] || !pos[b]) return;
    const x1 = pos[a].x + pos[a].w, y1 = pos[a].y + H / 2, x2 = pos[b].x, y2 = pos[b].y + H / 2;
    group.prepend(svg("path", { d: `M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}`, class: cls }));
  };
  for (const t of app.types) {
    edge(`p:source: ${t.source}`, `t:${t.type}`);
    for (const p of t.emitted_by) if (p.startsWith("schedule:")) edge(`p:schedule: ${p.slice(9)}`, `t:${t.type}`);
    for (const c of t.consumers) edge(`t:${t.type}`, `c:${c}`);
  }
  for (const c of app.consumers) {
    for (const s of c.stores) edge(`c:${c.name}`, `s:${s}`);
    for (const b of c.buckets) edge(`c:${c.name}`, `b:${b}`);
    if (c.starts_saga) edge(`c:${c.name}`, `g:${app.saga.scope}`);
  }
  // The saga: forward steps left to right, compensations under the steps they undo.
  const sy = height + 30;
  group.append(svg("text", { x: 10, y: sy - 8, class: "hdr" }, `saga ${app.saga.name}: steps (compensations below, run in reverse on failure)`));
  const steps = [...app.saga.steps, ...(app.saga.on_success ? [app.saga.on_success] : [])];
  steps.forEach((s, i) => {
    const x = 10 + i * 230;
    const g = svg("g", { class: "saga" });
    g.append(svg("rect", { x, y: sy, width: W, height: H, rx: 4 }), svg("text", { x: x + 6, y: sy + 14 }, s.name),
      svg("text", { x: x + 6, y: sy + 27, class: "hdr" }, `retry ${s.retry.max_attempts}× from ${s.retry.interval_seconds}s ×${s.retry.backoff}`));
    group.append(g);
    if (i) group.append(svg("path", { d: `M${x - 30},${sy + H / 2} L${x},${sy + H / 2}` }));
    if (s.compensate) {
      const c = svg("g", { class: "saga comp" });
      c.append(svg("rect", { x, y: sy + H + 24, width: W, height: H, rx: 4 }), svg("text", { x: x + 6, y: sy + H + 42 }, `↩ ${s.compensate}`));
      group.append(c, svg("path", { d: `M${x + W / 2},${sy + H} L${x + W / 2},${sy + H + 24}`, class: "comp" }));
    }
  });
  if (app.saga.on_failure) {
    const x = 10 + steps.length * 230;
    group.append(svg("rect", { x, y: sy + H + 24, width: W, height: H, rx: 4 }), svg("text", { x: x + 6, y: sy + H + 42 }, `on failure: ${app.saga.on_failure.name}`));
  }
  const total = sy + 2 * H + 40;
  const root = svg("svg", { width: 1280, height: total, viewBox: `0 0 1280 ${total}`, role: "img", "aria-label": "topology" });
  root.append(group);
  $("topo").replaceChildren(root);
};

// --- start ------------------------------------------------------------------------
let appDescription = null;
async function start() {
  try {
    appDescription = await api("/api/app");
    $("app-name").textContent = appDescription.name;
    for (const t of appDescription.tables) $("table-name").append(el("option", { value: t }, t));
    sampleSet = (await api("/api/samples")).samples;
    for (const [type, s] of Object.entries(sampleSet)) $("send-type").append(el("option", { value: type }, `${s.detail_type} (${type})`));
    fillSample();
  } catch (err) {
    showError(err.status === 401 ? "This server needs a token: open the console URL that `switchyard serve` printed." : err.message);
    return;
  }
  countDlq();
  stream();
  setInterval(() => { if (current === "health") loaders.health(); }, 2000);
}
start();
