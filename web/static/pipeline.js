// The pipeline page (web/pipeline_pages.py): each event of its stream reloads the state
// fragment (/pipelines/{id}/state, swapped by fragments.js), as does each action a form
// (forms.js) carried out, and the running step's tool calls and tokens are appended as they
// come. Everything from the server is set as text, never as HTML, except the fragment, which
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
  let catchingUp = null;

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

  function addTokens(seq, more) {
    if (seq <= tokenSeq) return;
    tokenSeq = seq;
    tokens.textContent += more;
    tokens.scrollTop = tokens.scrollHeight;
  }

  function onToken(frame) {
    if (catchingUp) catchingUp.push(frame.data); else addTokens(frame.data.seq, frame.data.text);
  }

  // After a reconnect, the token frames missed meanwhile come from the token buffer; frames that
  // arrive during that request wait, so the text stays in order.
  async function catchUp() {
    catchingUp = [];
    try {
      const stream = encodeURIComponent(body.dataset.stream);
      const response = await fetch("/api/streams/" + stream + "/tokens?after=" + tokenSeq, { credentials: "same-origin" });
      const answer = await response.json();
      if (response.ok && answer.data.last_seq > tokenSeq) addTokens(answer.data.last_seq, answer.data.text);
    } finally {
      const waiting = catchingUp;
      catchingUp = null;
      waiting.forEach(function (frame) { addTokens(frame.seq, frame.text); });
    }
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
    if (event.type === "token") { onToken(event); return; }
    if (event.type === "step_started") {
      stepTitle.textContent = event.data.phase + ", attempt " + event.data.attempt;
      calls.replaceChildren();
      tokens.textContent = "";
    }
    if (/^(tool_call_|file_changed)/.test(event.type)) { onToolCall(event); return; }
    refresh();
  }

  window.biagentLive({
    streams: [body.dataset.stream],
    since: body.dataset.lastId,
    epoch: body.dataset.epoch,
    onEvent: onEvent,
    onLive: function (resumed) { if (resumed) { catchUp(); refresh(); } },
  });
})();
