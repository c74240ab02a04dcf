// The pipeline page (web/pipeline_pages.py): each event of its stream reloads the state
// fragment (/pipelines/{id}/state, swapped by fragments.js), as does each action a form
// (forms.js) carried out, and the running step's tool calls and tokens are appended as they
// come; a resume's token_catchup gives the running block whole, and its state (interrupted
// shown). Everything from the server is set as text, never as HTML, except the fragment, which
// the server rendered escaped.
(function () {
  "use strict";
  const body = document.body;
  const pipelineId = body.dataset.pipeline;
  if (!pipelineId) return;

  const refresh = window.biagentFragment(
    document.getElementById("state"), "/pipelines/" + pipelineId + "/state");
  document.addEventListener("biagent:done", function () { refresh(); });

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
