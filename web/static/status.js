// The dashboard (web/status.py; the stream itself: live.js). Each event joins the live feed; a
// delivery's status cell follows its delivery_processed events and its redeliver button; any
// other event that may change what needs a person (a pipeline waiting, a question asked, a
// review received...) reloads the dashboard's state part (/dashboard/state, fragments.js), as
// does an action taken from it (forms.js). Server text is set as text, never as HTML.
(function () {
  "use strict";
  const body = document.body;
  const feed = document.getElementById("feed");
  const refresh = window.biagentFragment(document.getElementById("state"), "/dashboard/state");
  // Events that change nothing the state part shows: they only join the feed.
  const QUIET = /^(token|tool_call_|file_changed|sync_progress|worktree_status|agent_|delivery_processed)/;
  let pending = null;
  // What last spoke for each delivery's row: a click on redeliver, or its event. The click's
  // answer ("pending") can arrive after the event of the work it set going ("done").
  const lastWord = {};

  function refreshSoon() {
    if (pending) return;
    pending = setTimeout(function () { pending = null; refresh(); }, 250);
  }

  function showDelivery(deliveryId, status) {
    const cell = document.querySelector('tr[data-delivery="' + Number(deliveryId) + '"] .status');
    if (!cell) return;
    const badge = document.createElement("span");
    badge.className = "badge " + status;
    badge.textContent = status;
    cell.replaceChildren(badge);
  }

  function part(className, text) {
    const node = document.createElement("span");
    node.className = className;
    node.textContent = text;
    return node;
  }

  function render(event) {
    const item = document.createElement("li");
    item.append(
      part("id", event.id === null ? "~" : "#" + event.id), " ",
      part("when", (event.ts || "").slice(11, 19)), " ",
      part("type", event.type), " ",
      part("stream", event.stream), " ",
      part("data", JSON.stringify(event.data).slice(0, 300)));
    feed.insertBefore(item, feed.firstChild);
    while (feed.childElementCount > 300) feed.removeChild(feed.lastChild);
    if (event.type === "delivery_processed") {
      lastWord[event.data.delivery_pk] = "event";
      showDelivery(event.data.delivery_pk, event.data.status);
    }
    if (!QUIET.test(event.type)) refreshSoon();
  }

  document.addEventListener("submit", function (event) {
    const row = event.target.closest("tr[data-delivery]");
    if (row) lastWord[row.dataset.delivery] = "click";
  });

  document.addEventListener("biagent:done", function (event) {
    const answer = event.detail || {};
    if (!answer.delivery) { refreshSoon(); return; }
    if (lastWord[answer.delivery.id] === "click") showDelivery(answer.delivery.id, answer.delivery.status);
  });

  window.biagentLive({
    streams: "*",
    since: body.dataset.lastId,
    epoch: body.dataset.epoch,
    onEvent: render,
    onLive: function (resumed) { if (resumed) refresh(); },
  });
})();
