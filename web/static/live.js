// The live event stream shared by the pages (web/ws.py): subscribe from the id the page was
// rendered at, resume after a drop from the last id seen, reload the page when the server says
// the gap cannot be filled. Each event reaches `onEvent` once, in order; token frames (id null)
// always pass. `onLive(resumed)` runs when the stream is live, `resumed` after a reconnect.
window.biagentLive = function (options) {
  "use strict";
  const badge = document.getElementById("connection");
  let lastId = Number(options.since || 0);
  let retry = 500;
  let connections = 0;

  function show(state, text) {
    badge.className = "badge " + state;
    badge.textContent = text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws");
    socket.onopen = function () {
      socket.send(JSON.stringify(
        { action: "subscribe", streams: options.streams, since: lastId, epoch: options.epoch }));
    };
    socket.onmessage = function (message) {
      const frame = JSON.parse(message.data);
      if (frame.control === "live") {
        show("on", "live");
        retry = 500;
        if (options.onLive) options.onLive(connections++ > 0);
        return;
      }
      if (frame.control === "resync_required") { location.reload(); return; }
      if (frame.control) return;
      if (frame.id !== null && frame.id <= lastId) return;
      if (frame.id !== null) lastId = frame.id;
      options.onEvent(frame);
    };
    socket.onclose = function () {
      show("off", "reconnecting…");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  connect();
};
