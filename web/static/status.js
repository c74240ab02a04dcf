// Live feed for the status page (the stream itself: live.js): each event joins the feed, and a
// delivery's status cell follows its delivery_processed events.
(function () {
  "use strict";
  const body = document.body;
  const feed = document.getElementById("feed");

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

  window.biagentLive({ streams: "*", since: body.dataset.lastId, epoch: body.dataset.epoch, onEvent: render });

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
