// The live board: renders the stream's snapshot, then applies its events.
// No framework and no build step; everything comes from this service.
(function () {
  "use strict";
  const BUCKETS = 10; // mirrors gpuq.live.bucket_of: 10-point buckets, 100 in the last
  const state = { histogram: new Array(BUCKETS).fill(0), records: [], total: 0, slots: [] };
  const $ = (id) => document.getElementById(id);
  const svgNS = "http://www.w3.org/2000/svg";
  const GPU = document.body.dataset.gpu || null;  // /board?gpu=<model>: that model's board
  const SIZE = Number(document.body.dataset.boardSize) || 10;

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function time(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function renderLeaders(entries, freshId) {
    const body = $("leaders").tBodies[0];
    body.replaceChildren();
    if (!entries.length) {
      const row = body.insertRow();
      const td = cell("No submissions yet.");
      td.colSpan = 4;
      row.append(td);
      return;
    }
    for (const e of entries) {
      const row = body.insertRow();
      row.dataset.submissionId = e.submission_id;
      const who = cell(e.participant || "#" + e.submission_id);
      if (e.provenance === "measured") {  // a mark for results the server derived from evidence
        const mark = document.createElement("span");
        mark.className = "measured";
        mark.title = "measured: derived by the server from the run's evidence";
        mark.textContent = " ✓ measured";
        who.append(mark);
      }
      row.append(cell(String(e.rank)), who, cell(e.score.toFixed(2), "score"), cell(time(e.submitted_at)));
      if (e.submission_id === freshId) row.className = "fresh";
    }
  }

  function renderHistogram() {
    const svg = $("histogram");
    svg.replaceChildren();
    const max = Math.max(1, ...state.histogram);
    state.histogram.forEach((count, i) => {
      const height = 130 * count / max;
      const bar = document.createElementNS(svgNS, "rect");
      bar.setAttribute("x", String(i * 40 + 4));
      bar.setAttribute("y", String(140 - height));
      bar.setAttribute("width", "32");
      bar.setAttribute("height", String(height));
      const title = document.createElementNS(svgNS, "title");
      title.textContent = `${i * 10}–${i === BUCKETS - 1 ? 100 : i * 10 + 9.99}: ${count}`;
      bar.append(title);
      const label = document.createElementNS(svgNS, "text");
      label.setAttribute("x", String(i * 40 + 8));
      label.setAttribute("y", "155");
      label.textContent = String(i * 10);
      svg.append(bar, label);
    });
  }

  function renderRecords() {
    const svg = $("records");
    svg.replaceChildren();
    if (!state.records.length) return;
    const times = state.records.map((r) => Date.parse(r.at));
    const first = Math.min(...times), span = Math.max(1, Math.max(...times) - first);
    const points = state.records.map((r, i) =>
      `${10 + 380 * (times[i] - first) / span},${150 - 1.4 * r.score}`);
    points.push(`390,${150 - 1.4 * state.records[state.records.length - 1].score}`);
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", points.join(" "));
    const label = document.createElementNS(svgNS, "text");
    label.setAttribute("x", "10");
    label.setAttribute("y", "12");
    label.textContent = "best: " + state.records[state.records.length - 1].score.toFixed(2);
    svg.append(line, label);
  }

  function countdown(expiresAt) {
    const left = Math.max(0, Math.round((Date.parse(expiresAt) - Date.now()) / 1000));
    const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    return `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
  }

  function describeSlot(slot) {
    if (slot.state === "free") return "free";
    const who = slot.holder ? ` · ${slot.holder}` : "";
    const left = slot.expires_at ? ` · ${countdown(slot.expires_at)} left` : "";
    const what = slot.lease_state === "offered" ? "offered" : (slot.lease_state === "held" ? "held" : slot.state);
    return `${slot.state === "draining" ? "draining, " : ""}${what}${who}${left}`;
  }

  function describe(slot) {  // a slot tied to a GPU model says so
    return " " + describeSlot(slot) + (slot.gpu_model ? ` · for ${slot.gpu_model}` : "");
  }

  function renderSlots(slots) {
    state.slots = slots || [];
    const list = $("slots");
    list.replaceChildren();
    if (!state.slots.length) {
      const item = document.createElement("li");
      item.textContent = "No slots are configured yet.";
      list.append(item);
    }
    for (const slot of state.slots) {
      const item = document.createElement("li");
      item.dataset.state = slot.state;
      const name = document.createElement("strong");
      name.textContent = slot.name;
      const detail = document.createElement("span");
      detail.className = "slot-detail";
      detail.textContent = describe(slot);
      item.append(name, detail);
      list.append(item);
    }
  }

  setInterval(() => {  // the countdowns tick between events
    const details = document.querySelectorAll("#slots .slot-detail");
    state.slots.forEach((slot, i) => { if (details[i]) details[i].textContent = describe(slot); });
  }, 1000);

  function setTotal(total) {
    state.total = total;
    $("total").textContent = String(total);
  }

  // Reads `url` and renders its JSON, one read at a time: a change announced while a read is
  // under way triggers one more read when it ends, so the page ends on the newest answer.
  function reader(url, render) {
    let busy = false, again = false;
    return async function read() {
      if (busy) { again = true; return; }
      busy = true;
      try {
        do {
          again = false;
          const response = await fetch(url, { cache: "no-store" });
          if (response.ok) render(await response.json());
        } while (again);
      } catch (error) {
        /* unreachable for now: the stream's next change reads again */
      } finally {
        busy = false;
      }
    };
  }

  // One GPU model's board is not in the stream: it is read from the API whenever the
  // stream says the board changed.
  const readModelBoard = GPU && reader(`/leaderboard?gpu=${encodeURIComponent(GPU)}&limit=${SIZE}`, (data) => {
    renderLeaders(data.leaderboard, state.lastId);
    setTotal(data.total);
  });

  function renderGpus(data) {  // links to every GPU model's board, and back to the whole board
    const list = $("gpus");
    list.replaceChildren();
    if (!data.gpus.length) return;
    const links = [{ text: "All GPUs", href: "/board", current: !GPU }].concat(data.gpus.map((g) => ({
      text: `${g.model} (${g.results})`, href: "/board?gpu=" + encodeURIComponent(g.model), current: g.model === GPU,
    })));
    for (const link of links) {
      const item = document.createElement("li");
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      if (link.current) a.setAttribute("aria-current", "page");
      item.append(a);
      list.append(item);
    }
  }
  const readGpus = reader("/gpus", renderGpus);

  function boardChanged(leaderboard, total) {  // the whole board as the stream sends it
    readGpus();
    if (GPU) { readModelBoard(); return; }
    renderLeaders(leaderboard, state.lastId);
    setTotal(total);
  }

  // The stream is read with fetch rather than EventSource: EventSource gives up for good on
  // any refusal (a 429 when an address has its streams open, a 503 when a worker is full),
  // leaving an empty page, and cannot tell why. Here a refusal is shown with its reason and
  // retried after Retry-After, or with a doubling, jittered back-off; a dropped stream is
  // reopened the same way (the server sends a fresh snapshot on every connection).
  const handlers = {};
  function on(kind, handler) { handlers[kind] = handler; }

  function status(stateName, text) {
    $("connection").dataset.state = stateName;
    $("connection").textContent = text;
  }

  let failures = 0;
  function retryLater(reason, retryAfterSeconds) {
    failures += 1;
    const backoff = Math.min(60, 2 ** Math.min(failures - 1, 6)) * (0.75 + Math.random() / 2);
    const seconds = Math.max(1, Math.round(retryAfterSeconds > 0 ? retryAfterSeconds : backoff));
    status("waiting", `${reason}; retrying in ${seconds} s`);
    setTimeout(connect, seconds * 1000);
  }

  function dispatch(block) {
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) kind = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (!data.length || !handlers[kind]) return;
    try {
      handlers[kind]({ data: data.join("\n") });
    } catch (error) {
      console.error("could not show a live event", error);  // keep the stream; the next snapshot mends
    }
    if (kind === "snapshot") failures = 0;  // really live again: the back-off starts over
  }

  async function connect() {
    status("connecting", "connecting…");
    let response;
    try {
      response = await fetch("/leaderboard/stream", { headers: { Accept: "text/event-stream" }, cache: "no-store" });
    } catch (error) {
      retryLater("cannot reach the server", 0);
      return;
    }
    if (!response.ok) {
      let detail = `the server answered ${response.status}`;
      try { detail = (await response.json()).detail || detail; } catch (error) { /* not a problem body */ }
      retryLater(`live updates refused: ${detail}`, Number(response.headers.get("Retry-After")) || 0);
      return;
    }
    status("live", "live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      /* the connection dropped */
    } finally {
      reader.cancel().catch(() => {});  // never keep a dead stream holding one of the address's slots
    }
    retryLater("the live stream ended", 0);
  }

  on("snapshot", (message) => {
    const data = JSON.parse(message.data);
    state.histogram = data.histogram;
    state.records = data.records;
    boardChanged(data.leaderboard, data.total);
    renderHistogram();
    renderRecords();
    renderSlots(data.slots);
  });
  on("slot", (message) => {
    const data = JSON.parse(message.data);
    renderSlots(data.slots);
    $("announcer").textContent = `Slot ${data.slot}: ${data.action} (${data.participant})`;
  });
  on("leaderboard", (message) => {
    const data = JSON.parse(message.data);
    boardChanged(data.leaderboard, data.total);
  });
  on("submission", (message) => {
    const s = JSON.parse(message.data);
    state.lastId = s.submission_id;
    if (s.rank !== null) {  // ranked: counted in the histogram and the records
      state.histogram[Math.min(Math.floor(s.score / 10), BUCKETS - 1)] += 1;
      const best = state.records.length ? state.records[state.records.length - 1].score : -1;
      if (s.score > best) state.records.push({ at: s.submitted_at, score: s.score });
    }
    // The board shows each participant once: only an anonymous entry surely adds a row
    // (a participant's count is corrected by the next leaderboard event).
    if (!GPU && s.participant === null && s.rank !== null) setTotal(state.total + 1);
    if (GPU) readModelBoard();  // it may have moved that model's board and not the whole one
    renderHistogram();
    renderRecords();
    const who = s.participant ? `${s.participant}'s submission #${s.submission_id}` : `Submission #${s.submission_id}`;
    const text = `${who} scored ${s.score.toFixed(2)}` + (s.rank ? `, rank ${s.rank}` : "");
    $("announcer").textContent = text;
    const item = document.createElement("li");
    item.textContent = `${time(s.submitted_at)} · ${text}`;
    $("latest").prepend(item);
    while ($("latest").children.length > 5) $("latest").lastChild.remove();
  });

  connect();
})();
