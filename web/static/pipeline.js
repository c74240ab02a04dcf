// The pipeline page (web/pipeline_pages.py): each event of its stream reloads the state
// fragment (/pipelines/{id}/state, swapped by fragments.js), as does each action a form
// (forms.js) carried out, and the running step's tool calls and tokens are appended as they
// come. Everything from the server is set as text, never as HTML, except the fragment, which
// the server rendered escaped.
//
// The running step's text (#tokens): every token frame has a seq and names its block (the
// block's first seq); a frame at or below the last seq shown is dropped, so nothing is shown
// twice. A step that starts empties it. When the page loads, the session's restore
// (session.js) gives the text the running step streamed so far. On each connection, the first
// and every reconnect, the text is caught up by the first of these that applies:
//  1. the WebSocket's token_catchup (the stream's latest block whole: snapshot, then tail),
//     when it joins the text shown: the page holds the block's beginning (the block is
//     replaced whole), or all before the block, or nothing yet;
//  2. when a step started meanwhile (another run streams now, maybe after a restart of the
//     server, and its earlier blocks are not in the WebSocket's catch-up): the session's
//     restore, whose catch-up is that run's text from its start;
//  3. otherwise the frames after the last seq shown, from the token buffer over HTTP.
// Frames that arrive while a catch-up request runs wait for it, then pass the seq check.
//
// What the steps changed (#diff, /pipelines/{id}/diff) is fetched again when a step or the
// pipeline stops, and a second after the last file_changed of a burst (it runs git).
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
  const refreshDiff = window.biagentFragment(
    document.getElementById("diff"), "/pipelines/" + pipelineId + "/diff");
  const DIFF_AFTER_MS = 1000;
  const DIFF_NOW = /^(step_(completed|interrupted|restarted)|pipeline_(completed|failed|paused|cancelled)|waiting_for_approval|pipeline_waiting_for_review)$/;
  let diffTimer = null;
  function diffSoon() {
    clearTimeout(diffTimer);
    diffTimer = setTimeout(refreshDiff, DIFF_AFTER_MS);
  }

  const calls = document.getElementById("tool-calls");
  const tokens = document.getElementById("tokens");
  const tokensState = document.getElementById("tokens-state");
  const stepTitle = document.getElementById("activity-step");
  // seq: the last frame shown. block: the first seq of the block whose text ends #tokens, when
  // the page knows where it begins (blockAt); merged: the last seq of text added in one piece
  // (a catch-up), inside which no block's beginning is known. generation: which step it is of.
  const shown = { seq: Number(body.dataset.tokenSeq || 0), block: null, blockAt: 0, merged: 0, generation: 0 };
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

  function showState(state) {
    tokensState.hidden = state !== "interrupted";
    tokensState.textContent = state === "interrupted" ? "The stream broke here; the step continues later." : "";
  }

  function scrolled() { tokens.scrollTop = tokens.scrollHeight; }

  // The page's text of the block starts here, unless a piece added whole may hold its beginning.
  function enterBlock(block) {
    if (block === shown.block) return;
    const known = block !== null && block !== undefined && block > shown.merged;
    shown.block = known ? block : null;
    shown.blockAt = tokens.textContent.length;
    showState("running");
  }

  function addTokens(seq, more, block) {
    if (seq <= shown.seq) return;
    enterBlock(block);
    shown.seq = seq;
    tokens.textContent += more;
    scrolled();
  }

  // A catch-up's text, added whole (`replacing`: instead of everything shown), through lastSeq.
  function addWhole(more, lastSeq, replacing) {
    tokens.textContent = (replacing ? "" : tokens.textContent) + more;
    shown.seq = Math.max(shown.seq, lastSeq);
    shown.merged = shown.seq;
    shown.block = null;
    scrolled();
  }

  function clearTokens() {
    tokens.textContent = "";
    shown.block = null;
    shown.merged = 0;
    shown.generation += 1;
    if (held) held.length = 0; // frames of the step before
    showState("running");
  }

  function onToken(data) {
    if (held) held.push(data); else addTokens(data.seq, data.text, data.block);
  }

  function wholeText(block) {
    return block.snapshot.text + block.tail.map(function (frame) { return frame.text; }).join("");
  }

  // No text yet: the page was just opened (the latest block is shown, whichever step's), or a
  // step started and this block began after the last frame seen (not the step before's).
  function holdsNothingOf(block) {
    return tokens.textContent === "" && (shown.generation === 0 || block.block > shown.seq);
  }

  // 1. The WebSocket's catch-up of the stream's latest block, used when it joins the text shown.
  function onBlockCatchup(block) {
    if (connection.stepStarted) return; // maybe the block of the step before: 2. applies
    const whole = wholeText(block);
    if (shown.block === block.block) {
      tokens.textContent = tokens.textContent.slice(0, shown.blockAt) + whole;
    } else if (holdsNothingOf(block) || shown.seq === block.block - 1) {
      shown.block = null;
      enterBlock(block.block);
      tokens.textContent += whole;
    } else if (block.last_seq <= shown.seq) {
      connection.caughtUp = true; // nothing new
      return;
    } else if (shown.seq >= block.snapshot.through_seq) {
      block.tail.forEach(function (frame) { addTokens(frame.seq, frame.text, block.block); });
    } else {
      return; // a gap before the block: 3. fills it
    }
    shown.seq = Math.max(shown.seq, block.last_seq);
    connection.caughtUp = true;
    scrolled();
    showState(block.state);
  }

  function runningText(restored) {
    return ((restored && restored.token_catchup) || []).find(function (run) { return run.stream === stream; });
  }

  // The restore's text of the running step, from its start; its latest block (when the restore
  // read it at the same seq) tells where that block begins.
  function showRun(run) {
    addWhole(run.text, run.last_seq, true);
    const block = run.block;
    if (!block || block.last_seq !== run.last_seq) return;
    const whole = wholeText(block);
    if (!run.text.endsWith(whole)) return;
    shown.block = block.block;
    shown.blockAt = run.text.length - whole.length;
    showState(block.state);
  }

  async function fetchCatchup(generation) {
    if (connection.stepStarted && session && session.id) {
      const run = runningText(await session.restore());
      if (generation !== shown.generation) return false;
      if (run) showRun(run);
      return true;
    }
    const address = "/api/streams/" + encodeURIComponent(stream) + "/tokens?after=" + shown.seq;
    const response = await fetch(address, { credentials: "same-origin" });
    const answer = await response.json();
    if (generation !== shown.generation) return false;
    if (response.ok && answer.data.last_seq > shown.seq) addWhole(answer.data.text, answer.data.last_seq, false);
    return true;
  }

  // 2. and 3.; a step that starts during the request makes its answer stale: asked again.
  async function catchUp() {
    if (connection.caughtUp) return;
    held = [];
    try {
      while (!(await fetchCatchup(shown.generation))) connection.stepStarted = true;
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
    if (event.type === "token") { onToken(event.data); return; }
    if (event.type === "token_catchup") { if (event.stream === stream) onBlockCatchup(event.data); return; }
    if (event.type === "step_started") {
      stepTitle.textContent = event.data.phase + ", attempt " + event.data.attempt;
      calls.replaceChildren();
      clearTokens();
      connection.stepStarted = true;
    }
    // A turn whose stream broke upstream says so at once (it is asked again: its next text
    // starts a new block, which hides the note); never shown as completed.
    if (event.type === "agent_turn_interrupted") showState("interrupted");
    if (event.type === "file_changed") diffSoon();
    if (/^(tool_call_|file_changed)/.test(event.type)) { onToolCall(event); return; }
    if (DIFF_NOW.test(event.type)) refreshDiff();
    refresh();
  }

  // The text the running step streamed before the page was opened; registered before the
  // stream's own wait on the session, so it is shown before the first frame arrives.
  if (session) {
    session.ready.then(function (restored) {
      const run = runningText(restored);
      if (run && run.text) showRun(run);
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
      if (resumed) { refresh(); refreshDiff(); }
    },
  });
})();
