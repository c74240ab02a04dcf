// The pipeline pages (web/pipeline_pages.py). Forms with data-api post their fields as JSON to
// that API route (the login cookie authenticates); the name in #who goes in the field data-who
// names. On the pipeline page, each event of its stream reloads the state fragment
// (/pipelines/{id}/state) and the running step's tool calls and tokens are appended as they come;
// a resume's token_catchup gives the running block whole, and its state (interrupted shown).
// Everything from the server is set as text, never as HTML, except the fragment, which the
// server rendered escaped.
(function () {
  "use strict";
  const body = document.body;
  const who = document.getElementById("who");
  const state = document.getElementById("state");
  const pipelineId = body.dataset.pipeline;

  if (who) {
    who.value = localStorage.getItem("biagent.who") || "";
    who.addEventListener("change", function () { localStorage.setItem("biagent.who", who.value.trim()); });
  }

  function fieldsOf(form) {
    const fields = {};
    Array.from(form.elements).forEach(function (field) {
      if (!field.name) return;
      if (field.dataset.bool !== undefined) fields[field.name] = field.checked;
      else if (field.value.trim() !== "") fields[field.name] = field.value;
    });
    const name = who ? who.value.trim() : localStorage.getItem("biagent.who") || "";
    if (form.dataset.who && name) fields[form.dataset.who] = name;
    return fields;
  }

  function errorSlot(form) {
    return form.querySelector(".error") || form.parentElement.querySelector(".error");
  }

  async function submit(form) {
    const slot = errorSlot(form);
    if (slot) slot.textContent = "";
    const buttons = Array.from(form.querySelectorAll("button"));
    buttons.forEach(function (button) { button.disabled = true; });
    try {
      const response = await fetch(form.dataset.api, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(fieldsOf(form)),
      });
      const answer = await response.json().catch(function () { return {}; });
      if (!response.ok) throw new Error((answer.error && answer.error.message) || response.statusText);
      if (form.dataset.then === "open") { location.href = "/pipelines/" + answer.pipeline.id; return; }
      form.reset();
      if (pipelineId) refresh();
    } catch (error) {
      if (slot) slot.textContent = String(error.message || error);
    } finally {
      buttons.forEach(function (button) { button.disabled = false; });
    }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-api]");
    if (!form) return;
    event.preventDefault();
    submit(form);
  });

  if (!pipelineId) return;

  // The state fragment is replaced whole; what a person was typing and which sections were
  // open stay as they were.
  let loading = false;
  let again = false;
  async function refresh() {
    if (loading) { again = true; return; }
    loading = true;
    try {
      const response = await fetch("/pipelines/" + pipelineId + "/state", { credentials: "same-origin" });
      if (response.ok) replaceState(await response.text());
    } finally {
      loading = false;
      if (again) { again = false; refresh(); }
    }
  }

  function replaceState(html) {
    const kept = {};
    state.querySelectorAll("input[id], textarea[id], select[id]").forEach(function (field) {
      kept[field.id] = field.type === "checkbox" ? field.checked : field.value;
    });
    const open = Array.from(state.querySelectorAll("details[open][id]")).map(function (d) { return d.id; });
    const focused = document.activeElement && document.activeElement.id;
    state.innerHTML = html;
    Object.keys(kept).forEach(function (id) {
      const field = document.getElementById(id);
      if (!field) return;
      if (field.type === "checkbox") field.checked = kept[id]; else field.value = kept[id];
    });
    open.forEach(function (id) { const d = document.getElementById(id); if (d) d.open = true; });
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  }

  const calls = document.getElementById("tool-calls");
  const tokens = document.getElementById("tokens");
  const stepTitle = document.getElementById("activity-step");
  let tokenSeq = Number(body.dataset.tokenSeq || 0);
  let blockSeq = null; // the first seq of the block whose text ends #tokens
  let blockStart = 0; // where that block's text begins in #tokens

  function text(tag, className, content) {
    const node = document.createElement(tag);
    node.className = className;
    node.textContent = content;
    return node;
  }

  function shorten(value) {
    const shown = typeof value === "string" ? value : String(JSON.stringify(value));
    return shown.length > 400 ? shown.slice(0, 400) + "…" : shown;
  }

  function showBlockState(state) {
    let note = document.getElementById("tokens-state");
    if (!note) {
      note = text("p", "muted", "");
      note.id = "tokens-state";
      tokens.after(note);
    }
    note.hidden = state !== "interrupted";
    note.textContent = state === "interrupted" ? "The stream broke here; the step continues later." : "";
  }

  function enterBlock(block) {
    if (block === blockSeq) return;
    blockSeq = block;
    blockStart = tokens.textContent.length;
    showBlockState("running");
  }

  function onToken(data) {
    if (data.seq <= tokenSeq) return;
    enterBlock(data.block);
    tokenSeq = data.seq;
    tokens.textContent += data.text;
    tokens.scrollTop = tokens.scrollHeight;
  }

  // After a resume's replay the server sends the stream's latest block whole (snapshot, then
  // the frames after it) before the live frames, which start after its last_seq: the block's
  // text replaces what the page had of it, so nothing is missing or doubled.
  function onCatchup(data) {
    if (data.last_seq <= tokenSeq && blockSeq !== null) return;
    enterBlock(data.block);
    const whole = data.snapshot.text + data.tail.map(function (frame) { return frame.text; }).join("");
    tokens.textContent = tokens.textContent.slice(0, blockStart) + whole;
    tokenSeq = Math.max(tokenSeq, data.last_seq);
    tokens.scrollTop = tokens.scrollHeight;
    showBlockState(data.state);
  }

  function onToolCall(event) {
    const data = event.data;
    let item = calls.querySelector('li[data-call="' + Number(data.call_id) + '"]');
    if (event.type === "tool_call_started" && !item) {
      item = document.createElement("li");
      item.dataset.call = String(Number(data.call_id));
      item.append(text("span", "tool", data.tool), " ", text("code", "arguments", shorten(data.arguments)));
      calls.append(item);
    } else if (event.type === "tool_call_completed" && item) {
      if (data.error) item.classList.add("error");
      item.append(text("pre", "result", shorten(data.result)));
    } else if (event.type === "file_changed") {
      calls.append(text("li", "file", data.change_type + " " + data.path));
    }
  }

  function onEvent(event) {
    if (event.type === "token") { onToken(event.data); return; }
    if (event.type === "token_catchup") { onCatchup(event.data); return; }
    if (event.type === "step_started") {
      stepTitle.textContent = event.data.phase + ", attempt " + event.data.attempt;
      calls.replaceChildren();
      tokens.textContent = "";
      blockSeq = null;
      blockStart = 0;
    }
    if (/^(tool_call_|file_changed)/.test(event.type)) { onToolCall(event); return; }
    refresh();
  }

  window.biagentLive({
    streams: [body.dataset.stream],
    since: body.dataset.lastId,
    epoch: body.dataset.epoch,
    onEvent: onEvent,
    onLive: function (resumed) { if (resumed) refresh(); },
  });
})();
