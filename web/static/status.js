// Live feed for the status page: subscribe from the id the page was rendered at, resume after a
// drop from the last id seen, and reload the page when the server says the gap cannot be filled.
(function () {
  "use strict";
  const body = document.body;
  const epoch = body.dataset.epoch;
  let lastId = Number(body.dataset.lastId || 0);
  let retry = 500;
  const feed = document.getElementById("feed");
  const badge = document.getElementById("connection");

  function show(state, text) {
    badge.className = "badge " + state;
    badge.textContent = text;
  }

  function render(event) {
    const item = document.createElement("li");
    const when = (event.ts || "").slice(11, 19);
    item.innerHTML = '<span class="id"></span> <span class="when"></span> <span class="type"></span> ' +
      '<span class="stream"></span> <span class="data"></span>';
    item.querySelector(".id").textContent = event.id === null ? "~" : "#" + event.id;
    item.querySelector(".when").textContent = when;
    item.querySelector(".type").textContent = event.type;
    item.querySelector(".stream").textContent = event.stream;
    item.querySelector(".data").textContent = JSON.stringify(event.data).slice(0, 300);
    feed.insertBefore(item, feed.firstChild);
    while (feed.childElementCount > 300) feed.removeChild(feed.lastChild);
    if (event.type === "delivery_processed") {
      const row = document.querySelector('tr[data-delivery="' + event.data.delivery_pk + '"] .status');
      if (row) row.innerHTML = '<span class="badge ' + event.data.status + '">' + event.data.status + "</span>";
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws");
    socket.onopen = function () {
      socket.send(JSON.stringify({ action: "subscribe", streams: "*", since: lastId, epoch: epoch }));
    };
    socket.onmessage = function (message) {
      const frame = JSON.parse(message.data);
      if (frame.control === "live") { show("on", "live"); retry = 500; return; }
      if (frame.control === "resync_required") { location.reload(); return; }
      if (frame.control) return;
      if (frame.id !== null && frame.id <= lastId) return;
      if (frame.id !== null) lastId = frame.id;
      render(frame);
    };
    socket.onclose = function () {
      show("off", "reconnecting…");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  connect();

  // Pending review batches: count down to each one's due time (seconds as rendered, then local).
  const countdowns = Array.from(document.querySelectorAll(".countdown"));
  const renderedAt = Date.now();
  function tick() {
    const elapsed = (Date.now() - renderedAt) / 1000;
    countdowns.forEach(function (node) {
      const left = Math.max(0, Number(node.dataset.secondsLeft || 0) - elapsed);
      node.textContent = left > 0 ? Math.ceil(left) + "s" : "now";
    });
  }
  if (countdowns.length) setInterval(tick, 1000);
})();
