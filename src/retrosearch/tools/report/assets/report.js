// The trace viewer. Every text from the data goes into the page through textContent, never as markup.
"use strict";

const meta = JSON.parse(document.getElementById("viewer-meta").textContent);
const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function inflate(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

function number(value) {
  return typeof value === "number" ? value.toLocaleString() : "-";
}

function saved(row) {
  return typeof row.tokens_before === "number" && typeof row.tokens_after === "number"
    ? row.tokens_before - row.tokens_after
    : 0;
}

function options(select, values, all) {
  select.replaceChildren(element("option", "", all));
  select.firstChild.value = "";
  for (const value of values) {
    const option = element("option", "", value === "" ? "(none)" : value);
    option.value = value;
    select.appendChild(option);
  }
}

function traceView(title, segments) {
  const box = element("div", "trace");
  box.appendChild(element("h4", "", title));
  for (const [kind, keyword, text] of segments) {
    const segment = element("div", "seg " + kind);
    if (keyword > 0) {
      segment.appendChild(element("mark", "kw", text.slice(0, keyword)));
      segment.appendChild(document.createTextNode(text.slice(keyword)));
    } else {
      segment.textContent = text;
    }
    box.appendChild(segment);
  }
  return box;
}

function fact(list, label, value) {
  if (value === undefined || value === null || value === "") return;
  list.appendChild(element("dt", "", label));
  list.appendChild(element("dd", "", value));
}

function start(rows) {
  const status = $("filter-status"), group = $("filter-group"), search = $("filter-id"), sort = $("sort");
  options(status, [...new Set(rows.map((r) => r.status))].sort(), "every status");
  options(group, [...new Set(rows.map((r) => r.group))].sort(), "every " + meta.group_label);
  let shown = [], current = -1;

  function show(index) {
    if (!shown.length) {
      $("detail").replaceChildren(element("p", "muted", "No row matches."));
      return;
    }
    current = Math.max(0, Math.min(index, shown.length - 1));
    const row = shown[current];
    for (const tr of $("rows").querySelectorAll("tr.selected")) tr.classList.remove("selected");
    const tr = $("rows").children[current];
    tr.classList.add("selected");
    const list = tr.closest(".list"), head = list.querySelector("thead").offsetHeight;
    if (tr.offsetTop - head < list.scrollTop) list.scrollTop = tr.offsetTop - head;
    else if (tr.offsetTop + tr.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = tr.offsetTop + tr.offsetHeight - list.clientHeight;
    }
    const detail = $("detail");
    detail.replaceChildren();
    detail.appendChild(element("h3", "row-id", row.id));
    const facts = element("dl", "facts");
    fact(facts, "status", row.status);
    fact(facts, meta.group_label, row.group);
    fact(facts, "gold answer", row.gold);
    if (meta.mode === "compare") {
      fact(facts, "answer before", row.answer_before);
      fact(facts, "answer after", row.answer_after);
      fact(facts, "tokens", `${number(row.tokens_before)} → ${number(row.tokens_after)}`);
      fact(facts, "switches", `${number(row.switches_before)} → ${number(row.switches_after)}`);
      fact(facts, "accepted revisions", row.revisions);
    } else {
      fact(facts, "answer", row.answer_after);
      fact(facts, "tokens", number(row.tokens_after));
      fact(facts, "switches", number(row.switches_after));
    }
    fact(facts, "check", row.checked);
    fact(facts, "input row", (row.n + 1).toLocaleString());
    fact(facts, "here", `${current + 1} of ${shown.length} shown (j / k or ↓ / ↑ to move)`);
    detail.appendChild(facts);
    detail.appendChild(element("h4", "", "Problem"));
    detail.appendChild(element("pre", "problem", row.problem));
    const traces = element("div", meta.mode === "compare" ? "traces two" : "traces");
    if (meta.mode === "compare") traces.appendChild(traceView("Original", row.original));
    traces.appendChild(traceView(meta.mode === "compare" ? "Revised" : "Trace", row.revised));
    detail.appendChild(traces);
  }

  function refresh() {
    const wanted = search.value.trim().toLowerCase();
    shown = rows.filter(
      (r) =>
        (!status.value || r.status === status.value) &&
        (!group.selectedIndex || r.group === group.value) &&
        (!wanted || r.id.toLowerCase().includes(wanted)),
    );
    if (sort.value === "saved") shown.sort((a, b) => saved(b) - saved(a));
    else if (sort.value === "longest") shown.sort((a, b) => (b.tokens_after || 0) - (a.tokens_after || 0));
    const body = $("rows");
    body.replaceChildren();
    shown.forEach((row, index) => {
      const tr = element("tr");
      tr.appendChild(element("td", "id", row.id));
      tr.appendChild(element("td", "", row.status));
      tr.appendChild(element("td", "", row.group));
      if (meta.mode === "compare") {
        tr.appendChild(element("td", "num", `${number(row.tokens_before)} → ${number(row.tokens_after)}`));
        tr.appendChild(element("td", "num", saved(row).toLocaleString()));
      } else {
        tr.appendChild(element("td", "num", number(row.tokens_after)));
      }
      tr.addEventListener("click", () => show(index));
      body.appendChild(tr);
    });
    $("count").textContent = `${shown.length.toLocaleString()} of ${rows.length.toLocaleString()} rows in this report`;
    show(0);
  }

  for (const control of [status, group, sort]) control.addEventListener("change", refresh);
  search.addEventListener("input", refresh);
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) return;
    if (event.key === "ArrowDown" || event.key === "j") show(current + 1);
    else if (event.key === "ArrowUp" || event.key === "k") show(current - 1);
    else return;
    event.preventDefault();
  });
  refresh();
  document.body.dataset.viewer = "ready";
}

if (meta.rows) {
  inflate(document.getElementById("viewer-rows").textContent.trim()).then(start, (error) => {
    $("detail").replaceChildren(element("p", "error", "The rows could not be read: " + error));
    document.body.dataset.viewer = "failed";
  });
} else {
  document.body.dataset.viewer = "none";
}
