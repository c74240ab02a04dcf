// The pipeline page (web/pipeline_pages.py): each event of its stream reloads the state
// fragment (/pipelines/{id}/state, swapped by fragments.js), as does each action a form
// (forms.js) carried out, and the running step's tool calls and tokens are appended as they
// come. Everything from the server is set as text, never as HTML, except the fragment, which
// the server rendered escaped.
//
// The running step's text (#tokens): every token frame has a seq, and one at or below the last
// seq shown is dropped, so nothing is shown twice. A step that starts empties it. When the page
// loads, the session's restore (session.js) gives the text the running step streamed so far.
// After each (re)connection the text is caught up, by the first of these that applies:
//  1. a token_catchup frame on the WebSocket (the stream's latest block: snapshot and tail),
//     when it joins what the page holds;
//  2. when a step started in the meantime (another run streams now, maybe after a restart of
//     the server): the session's restore again, whose catch-up is that run's text from its start;
//  3. otherwise the frames after the last seq shown, from the token buffer over HTTP.
// Frames that arrive while a catch-up request runs wait for it, then pass the seq check.
(function () {
  "use strict";
  const body = document.body;
  const pipelineId = body.dataset.pipeline;
  if (!pipelineId) return;
  const session = window.biagentSession;
  const stream = body.dataset.stream;

  const refresh = window.biagentFragment(
    document.getElementById("state"), "/pipelines/" + pipelineId + "/state");
  document.addEventListener("biagent:done", function () { refresh(); });

  const calls = document.getElementById("tool-calls");
  const tokens = document.getElementById("tokens");
  const tokensNote = document.getElementById("tokens-note");
  const stepTitle = document.getElementById("activity-step");
  // seq: the last frame shown; block: the first seq of the block being shown, when the page
  // saw it begin (blockAt: where in the text); generation: which step the text is of.
  const shown = { seq: Number(body.dataset.tokenSeq || 0), block: null, blockAt: 0, generation: 0 };
  let connection = { stepStarted: false, caughtUp: false };
  let held = null; // frames waiting for a catch-up request

  function text(tag, className, content) {
    const node = document.createElement(tag);
    node.className = className;
    node.textContent = content;
    return node;
  }

  function shorten(value) {
    const said = typeof value === "string" ? value : String(JSON.stringify(value));
    return said.length > 400 ? said.slice(0, 400) + "…" : said;
  }

  function note(said) {
    tokensNote.textContent = said;
    tokensNote.hidden = !said;
  }

  function setText(content, lastSeq) {
    tokens.textContent = content;
    shown.seq = Math.max(shown.seq, lastSeq);
    shown.block = null;
    tokens.scrollTop = tokens.scrollHeight;
  }

  function addTokens(seq, more, block) {
    if (seq <= shown.seq) return;
    if (block === seq) { shown.block = block; shown.blockAt = tokens.textContent.length; }
    else if (block !== shown.block) shown.block = null; // its beginning was not seen here
    shown.seq = seq;
    tokens.textContent += more;
    tokens.scrollTop = tokens.scrollHeight;
  }

  function clearTokens() {
    tokens.textContent = "";
    shown.block = null;
    shown.generation += 1;
    if (held) held.length = 0; // frames of the step before
    note("");
  }

  function onToken(frame) {
    if (held) held.push(frame.data); else addTokens(frame.data.seq, frame.data.text, frame.data.block);
  }

  function tailText(catchup) {
    return catchup.tail.map(function (frame) { return frame.text; }).join("");
  }

  // 1. The WebSocket's catch-up of the stream's latest block, used when it joins the text shown:
  // the page holds the block's beginning (it is replaced whole), or everything before the
  // block, or the whole snapshot (the tail's new frames are added).
  function onBlockCatchup(catchup) {
    if (connection.stepStarted) return; // maybe the block of the step before: 2. applies
    if (catchup.last_seq > shown.seq) {
      const whole = catchup.snapshot.text + tailText(catchup);
      if (shown.block === catchup.block) {
        tokens.textContent = tokens.textContent.slice(0, shown.blockAt) + whole;
      } else if (shown.seq === catchup.block - 1) {
        shown.block = catchup.block;
        shown.blockAt = tokens.textContent.length;
        tokens.textContent += whole;
      } else if (shown.seq >= catchup.snapshot.through_seq) {
        catchup.tail.forEach(function (frame) { addTokens(frame.seq, frame.text, catchup.block); });
      } else {
        return; // a gap before the block: 3. fills it
      }
      shown.seq = catchup.last_seq;
      tokens.scrollTop = tokens.scrollHeight;
    }
    connection.caughtUp = true;
    note(catchup.state === "interrupted" ? "The model's stream broke here; the step asks again." : "");
  }

  function runningText(restored) {
    return ((restored && restored.token_catchup) || []).find(function (run) { return run.stream === stream; });
  }

  async function fetchCatchup(generation) {
    if (connection.stepStarted && session && session.id) {
      const run = runningText(await session.restore());
      if (generation !== shown.generation) return false;
      if (run) setText(run.text, run.last_seq);
      else note("That step ended while the page was away: its output is under Steps.");
      return true;
    }
    const address = "/api/streams/" + encodeURIComponent(stream) + "/tokens?after=" + shown.seq;
    const response = await fetch(address, { credentials: "same-origin" });
    const answer = await response.json();
    if (generation !== shown.generation) return false;
    if (response.ok && answer.data.last_seq > shown.seq) {
      shown.block = null; // the answer may hold the beginning of a block, unmarked
      addTokens(answer.data.last_seq, answer.data.text, null);
    }
    return true;
  }

  // 2. and 3.; a step that starts during the request makes its answer stale: asked again.
  async function catchUp() {
    if (connection.caughtUp) return;
    held = [];
    let done = false;
    try {
      while (!done) {
        done = await fetchCatchup(shown.generation);
        if (!done) connection.stepStarted = true;
      }
    } finally {
      const waiting = held;
      held = null;
      waiting.forEach(function (frame) { addTokens(frame.seq, frame.text, frame.block); });
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
    if (event.type === "token_catchup") { if (event.stream === stream) onBlockCatchup(event.data); return; }
    if (event.type === "step_started") {
      stepTitle.textContent = event.data.phase + ", attempt " + event.data.attempt;
      calls.replaceChildren();
      clearTokens();
      connection.stepStarted = true;
    }
    if (/^(tool_call_|file_changed)/.test(event.type)) { onToolCall(event); return; }
    refresh();
  }

  // The text the running step streamed before the page was opened; registered before the
  // stream's own wait on the session, so it is shown before the first frame arrives.
  if (session) {
    session.ready.then(function (restored) {
      const run = runningText(restored);
      if (run && run.text) setText(run.text, run.last_seq);
    });
  }

  window.biagentLive({
    streams: [stream],
    since: body.dataset.lastId,
    epoch: body.dataset.epoch,
    onEvent: onEvent,
    onConnect: function () { connection = { stepStarted: false, caughtUp: false }; },
    onLive: function (resumed) {
      catchUp().catch(function () {});
      if (resumed) refresh();
    },
  });
})();
