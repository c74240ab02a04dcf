// The live event stream shared by the pages (web/ws.py): subscribe from the id the page was
// rendered at, resume after a drop from the last id seen, reload the page when the server says
// the gap cannot be filled. The subscribe names the page's browser session (session.js, once it
// is known), so the session's frames (session_restored, offline_event) come first on each
// connection; they go to the session, not to the page. Each event reaches `onEvent` once, in
// order; frames without an id (token, token_catchup) always pass. `onConnect()` runs when a
// socket opens, before its replay; `onLive(resumed)` when the stream is live, `resumed` after a
// reconnect. A dropped socket is opened again by itself, sooner at first, then every 5 s.
window.biagentLive = function (options) {
  "use strict";
  const badge = document.getElementById("connection");
  const session = window.biagentSession;
  const RETRY_FIRST_MS = 250;
  const RETRY_MAX_MS = 5000;
  let lastId = Number(options.since || 0);
  let retry = RETRY_FIRST_MS;
  let connections = 0;

  function show(state, text) {
    badge.className = "badge " + state;
    badge.textContent = text;
  }

  function subscribeFrame() {
    const frame = { action: "subscribe", streams: options.streams, since: lastId, epoch: options.epoch };
    if (session && session.id) frame.session = session.id;
    return JSON.stringify(frame);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws");
    socket.onopen = function () {
      if (options.onConnect) options.onConnect();
      socket.send(subscribeFrame());
    };
    socket.onmessage = function (message) {
      const frame = JSON.parse(message.data);
      if (frame.control === "live") {
        show("on", "live");
        retry = RETRY_FIRST_MS;
        if (options.onLive) options.onLive(connections++ > 0);
        return;
      }
      if (frame.control === "resync_required") { location.reload(); return; }
      if (frame.control) return;
      if (frame.type === "session_restored" || frame.type === "offline_event") {
        if (session) session.onFrame(frame);
        return;
      }
      if (frame.id !== null && frame.id <= lastId) return;
      if (frame.id !== null) lastId = frame.id;
      options.onEvent(frame);
    };
    socket.onclose = function () {
      show("off", "reconnecting…");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, RETRY_MAX_MS);
    };
  }

  // The first subscribe waits for the session (at most a few requests), so that it names it.
  if (session) session.ready.then(connect); else connect();
};
