// Arc Reactor dashboard: makes the server-rendered pages live (docs/dashboard.md). No dependencies; loaded
// as a module from the package itself, under the page's Content-Security-Policy (no inline code).

const SEGMENTS = [
  ["succeeded", ["succeeded"]],
  ["cached", ["cached"]],
  ["running", ["submitted", "running"]],
  ["failed", ["failed"]],
]; // api/ui_views.py SEGMENTS: the same order and sums (a browser test compares the two drawings)
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const LOG_PAGE = 1000;
const LOG_KEEP = 2000; // lines kept on the page; the JSON API has them all
const LOG_POLL_MS = 2000;
const LIVE_MIN_MS = 3000; // the run page's live parts are re-read at most this often

async function fetchDocument(url) {
  const response = await fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" });
  const text = await response.text();
  return { ok: response.ok, doc: new DOMParser().parseFromString(text, "text/html") };
}

// Replace `current` by `fresh` (same id) unless the reader is working inside it (focus) or it is unchanged.
function swap(current, fresh) {
  if (!current || !fresh) return false;
  if (current.contains(document.activeElement) && document.activeElement !== document.body) return false;
  if (current.outerHTML === fresh.outerHTML) return false;
  current.replaceWith(document.importNode(fresh, true));
  return true;
}

// ---- the runs list: its table is re-read while the tab is visible --------------------------------------
function liveList(container) {
  const every = Number(container.dataset.liveEvery || 5000);
  const refresh = async () => {
    if (document.visibilityState !== "visible") return;
    try {
      const { doc } = await fetchDocument(container.dataset.liveSrc);
      swap(document.getElementById("runs"), doc.getElementById("runs"));
    } catch (err) {
      /* the next tick tries again */
    }
  };
  setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
}

// ---- progress bars from the SSE stream's `progress` events ---------------------------------------------
export function segments(counts) {
  const total = Number(counts.total || 0);
  const out = [];
  const round3 = (n) => Math.round(n * 1000) / 1000;
  let end = 0; // where the segments so far end, rounded as drawn: the widths add up to at most 100
  for (const [kind, states] of SEGMENTS) {
    const count = states.reduce((n, s) => n + Number(counts[s] || 0), 0);
    if (count <= 0 || total <= 0) continue;
    const start = end;
    end = Math.min(round3(start + (100 * count) / total), 100);
    out.push({ kind, count, x: start, width: round3(end - start) });
  }
  return out;
}

export function label(counts) {
  const parts = [`${Number(counts.done || 0)} of ${Number(counts.total || 0)} done`];
  for (const [kind, states] of SEGMENTS.slice(1)) {
    const count = states.reduce((n, s) => n + Number(counts[s] || 0), 0);
    if (count) parts.push(`${count} ${kind}`);
  }
  return parts.join(", ");
}

const SVG = "http://www.w3.org/2000/svg";
function drawBar(svg, counts, name) {
  svg.setAttribute("aria-label", `${name}: ${label(counts)}`);
  svg.querySelectorAll("rect.seg").forEach((r) => r.remove());
  for (const s of segments(counts)) {
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("class", `seg seg-${s.kind}`);
    rect.dataset.kind = s.kind;
    for (const [k, v] of [["x", s.x], ["y", 0], ["width", s.width], ["height", 10]]) rect.setAttribute(k, v);
    svg.appendChild(rect);
  }
}

function newBar() {
  const svg = document.createElementNS(SVG, "svg");
  for (const [k, v] of [["class", "bar"], ["viewBox", "0 0 100 10"], ["preserveAspectRatio", "none"],
    ["width", "100%"], ["height", "14"], ["role", "img"]]) svg.setAttribute(k, v);
  svg.setAttribute("data-bar", "");
  const track = document.createElementNS(SVG, "rect");
  for (const [k, v] of [["class", "track"], ["x", 0], ["y", 0], ["width", 100], ["height", 10]]) track.setAttribute(k, v);
  svg.appendChild(track);
  return svg;
}

function renderProgress(data) {
  const section = document.getElementById("progress");
  if (!section) return;
  const summary = section.querySelector("[data-progress-summary]");
  if (summary) {
    summary.textContent = label(data) + (data.retries ? `, ${data.retries} retried` : "");
    summary.classList.remove("muted");
  }
  const body = section.querySelector("[data-progress-rows]");
  if (!body) return;
  const rows = new Map([...body.querySelectorAll("tr[data-process]")].map((r) => [r.dataset.process, r]));
  for (const p of data.processes || []) {
    let row = rows.get(p.name);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.process = p.name;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = p.name;
      const cell = document.createElement("td");
      cell.appendChild(newBar());
      const counts = document.createElement("td");
      counts.className = "counts";
      row.append(th, cell, counts);
      body.appendChild(row);
    }
    drawBar(row.querySelector("svg[data-bar]"), p, p.name);
    row.querySelector("td.counts").textContent = label(p);
  }
}

// ---- a run page: the SSE stream, the live parts, the log, the actions ---------------------------------
function applySort(table) {
  const th = table.querySelector("th[aria-sort='ascending'], th[aria-sort='descending']");
  if (!th) return;
  const index = [...th.parentElement.children].indexOf(th);
  const numeric = th.dataset.type === "number";
  const direction = th.getAttribute("aria-sort") === "ascending" ? 1 : -1;
  const body = table.tBodies[0];
  const rows = [...body.rows].filter((r) => r.cells.length > index && r.cells[index].dataset.sort !== undefined);
  const key = (r) => r.cells[index].dataset.sort;
  rows.sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    if (numeric) {
      const [nx, ny] = [x === "" ? Infinity : Number(x), y === "" ? Infinity : Number(y)];
      return (nx - ny) * direction || 0;
    }
    return x.localeCompare(y, undefined, { numeric: true }) * direction;
  });
  body.append(...rows);
}

function sortable(root) {
  root.addEventListener("click", (event) => {
    const button = event.target.closest("table[data-sortable] th button");
    if (!button) return;
    const th = button.closest("th");
    const next = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    th.parentElement.querySelectorAll("th").forEach((h) => h.setAttribute("aria-sort", "none"));
    th.setAttribute("aria-sort", next);
    applySort(th.closest("table"));
  });
}

function runPage(body) {
  const runId = body.dataset.runId;
  let status = document.getElementById("run-state")?.dataset.status;
  let lastLive = 0;
  let pending = null;

  let withFiles = false;
  const refreshLive = async () => {
    pending = null;
    lastLive = Date.now();
    const url = new URL(body.dataset.liveSrc, location.href);
    if (withFiles) url.searchParams.set("files", "1"); // on status changes only: a listing costs more
    withFiles = false;
    try {
      const { ok, doc } = await fetchDocument(url);
      if (!ok) return;
      const sortState = [...document.querySelectorAll("table[data-sortable] th")].map((h) => h.getAttribute("aria-sort"));
      for (const fresh of doc.querySelectorAll("[data-live][id]")) {
        const swapped = swap(document.getElementById(fresh.id), fresh);
        if (swapped && fresh.id === "tasks") {
          const ths = document.querySelectorAll("#tasks table[data-sortable] th");
          ths.forEach((h, i) => h.setAttribute("aria-sort", sortState[i] || "none"));
          applySort(document.querySelector("#tasks table[data-sortable]"));
        }
      }
      const now = document.getElementById("run-state")?.dataset.status || status;
      if (now !== status) announce(`The run is now ${now}.`); // for screen readers: the badge changed
      status = now;
    } catch (err) {
      /* the next event or tick tries again */
    }
  };
  // A status change is shown at once (a progress-driven refresh waiting its turn is brought forward);
  // progress alone re-reads the live parts at most every LIVE_MIN_MS.
  const scheduleLive = (soon = false) => {
    if (soon) {
      withFiles = true;
      clearTimeout(pending);
      pending = setTimeout(refreshLive, 0);
      return;
    }
    if (pending) return;
    pending = setTimeout(refreshLive, Math.max(0, LIVE_MIN_MS - (Date.now() - lastLive)));
  };

  if (!TERMINAL.has(status) && window.EventSource) {
    const source = new EventSource(`/runs/${runId}/events`);
    source.addEventListener("progress", (e) => {
      renderProgress(JSON.parse(e.data));
      scheduleLive();
    });
    for (const kind of ["transition", "note", "conflict"]) source.addEventListener(kind, () => scheduleLive(true));
    source.addEventListener("end", (e) => {
      const ended = JSON.parse(e.data).status;
      if (ended !== status) announce(`The run is now ${ended}.`);
      status = ended;
      source.close();
      scheduleLive(true);
    });
    // EventSource reconnects by itself (with Last-Event-ID); a stream the server refuses stays closed: poll.
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) setInterval(() => scheduleLive(), 5000);
    });
  }
  followLog(document.getElementById("log-lines"), () => TERMINAL.has(status));
  sortable(document);
  actions(runId);
}

function followLog(pre, ended) {
  if (!pre) return;
  const follow = document.getElementById("log-follow");
  let token = null;
  let lines = [];
  let started = false;
  const tick = async () => {
    let more = true;
    try {
      while (more) {
        const url = new URL(pre.dataset.logsSrc, location.href);
        url.searchParams.set("page_size", String(LOG_PAGE));
        if (token) url.searchParams.set("page_token", token);
        const response = await fetch(url, { credentials: "same-origin" });
        const page = await response.json();
        if (!response.ok) {
          pre.textContent = `The log cannot be read: ${page?.error?.message || response.status}`;
          if (response.status >= 500) setTimeout(tick, LOG_POLL_MS * 5); // the service may be back soon
          return;
        }
        const fresh = (page.lines || []).map((l) => (l.time ? `${l.time.slice(11, 19)} ` : "") + l.message);
        lines = lines.concat(fresh).slice(-LOG_KEEP);
        token = page.next_page_token || token;
        more = fresh.length === LOG_PAGE;
        if (fresh.length || !started) {
          const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.textContent = lines.length ? lines.join("\n") : "No log lines yet.";
          if (follow?.checked && (atEnd || !started)) pre.scrollTop = pre.scrollHeight;
          started = true;
        }
        if (!page.next_page_token) return; // the run has ended and every line was read
      }
    } catch (err) {
      /* retried at the next tick */
    }
    if (!ended() || token) setTimeout(tick, ended() ? 0 : LOG_POLL_MS);
  };
  tick();
}

// A polite live region says what changed without moving the reader's focus (the page's own #announce).
function announce(text) {
  const region = document.getElementById("announce");
  if (region) region.textContent = text;
}

function showMessage(id, text) {
  for (const other of ["action-status", "action-error"]) {
    const el = document.getElementById(other);
    if (el) el.hidden = other !== id;
  }
  const el = document.getElementById(id);
  if (el) {
    el.textContent = text;
    el.hidden = false;
  }
}

function actions(runId) {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    const action = button.dataset.action;
    const dialog = document.getElementById(`confirm-${action}`);
    const go = () => act(button, action);
    if (!dialog?.showModal) return go();
    dialog.addEventListener("close", () => { if (dialog.returnValue === "confirm") go(); }, { once: true });
    dialog.returnValue = "";
    for (const id of ["action-status", "action-error"]) document.getElementById(id).hidden = true;
    dialog.showModal();
  });
}

// A recovery's parameter changes, from its dialog: a JSON object, or nothing; an error names the problem.
function recoverBody() {
  const text = document.getElementById("recover-params")?.value.trim();
  if (!text) return { body: "" };
  let params;
  try {
    params = JSON.parse(text);
  } catch (err) {
    return { error: `The parameter changes are not JSON: ${err.message}` };
  }
  if (params === null || typeof params !== "object" || Array.isArray(params)) {
    return { error: "The parameter changes must be a JSON object of parameter: value." };
  }
  return { body: JSON.stringify({ params }) };
}

async function act(button, action) {
  const { body: payload, error } = action === "recover" ? recoverBody() : { body: "" };
  if (error) {
    showMessage("action-error", error);
    return;
  }
  button.disabled = true;
  showMessage("action-status", action === "cancel" ? "Cancelling…" : "Starting the recovery…");
  try {
    const response = await fetch(button.dataset.url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID() },
      body: payload || undefined,
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      showMessage("action-error", body?.error?.message || `The API answered ${response.status}.`);
      button.disabled = false;
      return;
    }
    if (action === "recover" && body.id) {
      showMessage("action-status", `Recovery ${body.id} started.`);
      location.assign(`/ui/runs/${body.id}`);
      return;
    }
    showMessage("action-status", `Cancel requested: the run is ${body.status || "cancelling"}.`);
  } catch (err) {
    showMessage("action-error", `The request failed: ${err}`);
    button.disabled = false;
  }
}

// ---- start ---------------------------------------------------------------------------------------------
const list = document.getElementById("runs");
if (list?.dataset.liveSrc) liveList(list);
if (document.body.dataset.runId) runPage(document.body);
document.addEventListener("change", (event) => {
  if (event.target.matches("select#task-status")) event.target.form.requestSubmit();
});
