// A pull request's page (web/pages/pull_request_page.py): each event of its stream
// (pr:<repository>#<number>) reloads the state part (/pull-requests/{id}/state,
// fragments.js), as does a pause, resume or retry (forms.js), whose answer is shown as text.
(function () {
  "use strict";
  const body = document.body;
  const refresh = window.biagentFragment(
    document.getElementById("state"), "/pull-requests/" + Number(body.dataset.pullRequest) + "/state");

  document.addEventListener("biagent:done", async function (event) {
    const message = (event.detail && event.detail.message) || "";
    await refresh();
    const slot = document.querySelector("#controls .message");
    if (slot) slot.textContent = message;
  });

  window.biagentLive({
    streams: [body.dataset.stream],
    since: body.dataset.lastId,
    epoch: body.dataset.epoch,
    onEvent: function () { refresh(); },
    onLive: function (resumed) { if (resumed) refresh(); },
  });
})();
