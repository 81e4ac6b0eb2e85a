// The cxrseg folder report's table: rows from one JSON blob, sorted, filtered and paged here; only the
// current page is in the DOM, and its thumbnails load lazily. No network: every link is relative.
(function () {
  "use strict";
  const started = performance.now();
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const cols = data.columns;
  const nc = cols.length;
  const X = {};  // index of each extra field (size, overlay, thumb, lung, infection) in a row array
  data.extra.forEach(function (name, i) { X[name] = nc + i; });
  const col = {};
  cols.forEach(function (c, i) { col[c.key] = i; });
  const pageSize = Math.max(1, data.pageSize || 100);
  const state = { sortKey: null, dir: 1, page: 0, filter: "", onlyInfected: false };
  let view = data.rows;

  const $ = function (id) { return document.getElementById(id); };
  const head = $("head"), body = $("rows"), info = $("page-info");

  function fmt(value, kind) {
    if (value === null || value === undefined) return "\u2014";
    switch (kind) {
      case "pct": return value.toFixed(1);
      case "prob": return value.toFixed(3);
      case "num": return Math.abs(value) >= 100 ? value.toFixed(0) : String(Math.round(value * 1000) / 1000);
      case "int": return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(1);
      default: return String(value);
    }
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener";
    a.textContent = text;
    return a;
  }

  function buildHead() {
    const th0 = document.createElement("th");
    th0.textContent = "overlay";
    head.appendChild(th0);
    cols.forEach(function (c) {
      const th = document.createElement("th");
      th.textContent = c.label;
      th.title = c.title + " (click to sort)";
      th.dataset.key = c.key;
      th.className = c.kind === "text" ? "text" : "num";
      th.tabIndex = 0;
      th.setAttribute("aria-sort", "none");
      th.addEventListener("click", function () { sortBy(c.key); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(c.key); }
      });
      head.appendChild(th);
    });
  }

  // Missing values sort last in both directions; text sorts as text, numbers as numbers.
  function comparator(i, kind, dir) {
    if (kind === "text") {
      return function (a, b) {
        const x = a[i], y = b[i];
        if (x === null) return y === null ? 0 : 1;
        if (y === null) return -1;
        return dir * x.localeCompare(y, "en", { numeric: true });
      };
    }
    return function (a, b) {
      const x = a[i], y = b[i];
      if (x === null) return y === null ? 0 : 1;
      if (y === null) return -1;
      return dir * (x - y);
    };
  }

  function sortBy(key) {
    const c = cols[col[key]];
    if (state.sortKey === key) state.dir = -state.dir;
    else { state.sortKey = key; state.dir = c.kind === "text" ? 1 : -1; }  // figures: largest first
    state.page = 0;
    update();
  }

  function computeView() {
    let rows = data.rows;
    const f = state.filter.toLowerCase();
    const fi = col.file;
    if (f && fi !== undefined) rows = rows.filter(function (r) { return r[fi] !== null && r[fi].toLowerCase().includes(f); });
    const pi = col.infected_pct;
    if (state.onlyInfected && pi !== undefined) rows = rows.filter(function (r) { return r[pi] > 0; });
    if (state.sortKey !== null) {
      const i = col[state.sortKey];
      rows = rows.slice().sort(comparator(i, cols[i].kind, state.dir));  // stable: ties keep CSV order
    }
    view = rows;
  }

  function cell(row, c, i) {
    const td = document.createElement("td");
    const v = row[i];
    td.className = c.kind === "text" ? "text" : "num";
    if (c.key === "file") {
      td.className = "file";
      td.appendChild(document.createTextNode(v === null ? "\u2014" : v));
      const links = document.createElement("span");
      links.className = "links";
      if (row[X.size]) links.appendChild(document.createTextNode(row[X.size] + " px "));
      if (row[X.lung]) links.appendChild(link(row[X.lung], "lung mask"));
      if (row[X.infection]) links.appendChild(link(row[X.infection], "infection mask"));
      td.appendChild(links);
      return td;
    }
    td.textContent = fmt(v, c.kind);
    if (c.key === "note" && v) {  // a long sentence: one short line here, the whole of it on hover
      td.classList.add("note");
      td.title = v;
    }
    if (c.key === "total_grade" && typeof v === "number") td.classList.add("g" + Math.max(0, Math.min(8, Math.round(v))));
    return td;
  }

  function thumbCell(row) {
    const td = document.createElement("td");
    td.className = "thumb";
    const overlay = row[X.overlay];
    if (!overlay) { td.textContent = "no overlay"; return td; }
    const a = document.createElement("a");
    a.href = overlay;
    a.target = "_blank";
    a.rel = "noopener";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.width = 96;
    img.height = 96;
    img.alt = "overlay of " + (col.file !== undefined ? row[col.file] : "the image");
    img.src = row[X.thumb] || overlay;
    a.appendChild(img);
    td.appendChild(a);
    return td;
  }

  function render() {
    const pages = Math.max(1, Math.ceil(view.length / pageSize));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    const start = state.page * pageSize;
    const slice = view.slice(start, start + pageSize);
    const frag = document.createDocumentFragment();
    slice.forEach(function (row) {
      const tr = document.createElement("tr");
      tr.appendChild(thumbCell(row));
      cols.forEach(function (c, i) { tr.appendChild(cell(row, c, i)); });
      frag.appendChild(tr);
    });
    body.replaceChildren(frag);
    const shown = view.length ? (start + 1).toLocaleString("en") + "\u2013" + (start + slice.length).toLocaleString("en") : "0";
    info.textContent = "page " + (state.page + 1) + " of " + pages + " \u00b7 rows " + shown + " of " +
      view.length.toLocaleString("en") + (view.length !== data.rows.length ? " (filtered from " + data.rows.length.toLocaleString("en") + ")" : "");
    info.dataset.page = String(state.page + 1);
    info.dataset.pages = String(pages);
    $("first").disabled = $("prev").disabled = state.page === 0;
    $("next").disabled = $("last").disabled = state.page >= pages - 1;
    head.querySelectorAll("th[data-key]").forEach(function (th) {
      const on = th.dataset.key === state.sortKey;
      th.setAttribute("aria-sort", on ? (state.dir > 0 ? "ascending" : "descending") : "none");
    });
  }

  function update() { computeView(); render(); }

  function go(page) { state.page = page; render(); $("results").scrollIntoView({ block: "nearest" }); }
  $("first").addEventListener("click", function () { go(0); });
  $("prev").addEventListener("click", function () { go(state.page - 1); });
  $("next").addEventListener("click", function () { go(state.page + 1); });
  $("last").addEventListener("click", function () { go(Infinity); });
  let timer = null;
  $("filter").addEventListener("input", function (e) {
    clearTimeout(timer);
    timer = setTimeout(function () { state.filter = e.target.value.trim(); state.page = 0; update(); }, 150);
  });
  $("only-infected").addEventListener("change", function (e) { state.onlyInfected = e.target.checked; state.page = 0; update(); });
  if (col.infected_pct === undefined) $("only-infected").parentElement.hidden = true;

  buildHead();
  update();
  document.body.dataset.renderMs = String(Math.round(performance.now() - started));
  document.body.dataset.state = "ready";
})();
