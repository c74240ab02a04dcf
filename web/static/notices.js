// Notifications: the session's offline events (docs/sessions.md), what happened on its tabs'
// streams while no page of the session watched them. They come with the session's restore when
// the page loads and as offline_event frames each time its WebSocket connects (session.js); the
// same event twice is shown once (by offline_id). The header's button shows the unread count
// and opens a panel listing them, oldest first, each linking to its pipeline or pull request;
// "Mark read" acknowledges them (they are never sent again). Escape closes the panel.
(function () {
  "use strict";
  const session = window.biagentSession;
  const toggle = document.getElementById("notices-toggle");
  const panel = document.getElementById("notices");
  if (!session || !toggle || !panel) return;
  const count = document.getElementById("notices-count");
  const list = document.getElementById("notices-list");
  const markRead = document.getElementById("notices-read");
  const error = panel.querySelector(".error");
  const shown = new Map(); // offline_id -> offline event
  let unread = 0;

  function words(text) { return String(text || "").replace(/_/g, " "); }

  function shorten(text) {
    const said = String(text || "");
    return said.length > 160 ? said.slice(0, 160) + "…" : said;
  }

  function pullRequestPage(name) {
    const prs = (session.restored && session.restored.pull_requests) || [];
    const found = prs.find(function (pr) { return pr.repository + "#" + pr.number === name; });
    return found ? "/pull-requests/" + Number(found.id) : null;
  }

  // Where the event happened: {label, href}.
  function subject(event) {
    const data = event.data || {};
    const stream = event.stream || "";
    if (stream.startsWith("pipeline:")) {
      const id = stream.slice("pipeline:".length);
      return { label: (data.ticket ? data.ticket + " " : "") + "pipeline #" + id, href: "/pipelines/" + encodeURIComponent(id) };
    }
    if (stream.startsWith("pr:")) {
      const name = stream.slice("pr:".length);
      return { label: name, href: pullRequestPage(name) || "/" };
    }
    if (stream.startsWith("jira:")) return { label: "JIRA " + (data.project || stream.slice(5)), href: "/" };
    return { label: stream, href: "/" };
  }

  function describe(event) {
    const data = event.data || {};
    switch (event.type) {
      case "pipeline_failed":
        return "failed" + (data.phase ? " in " + data.phase : "") + ": " + shorten(data.message);
      case "waiting_for_approval":
        return "waiting for " + (data.gate === "plan_approval" ? "approval of the " + data.phase : words(data.gate));
      case "risk_identified":
        return words(data.severity) + " risk: " + shorten(data.title);
      case "clarification_requested":
        return "question: " + shorten(data.question);
      case "pr_approved":
        return "approved by " + data.reviewer;
      case "sync_error":
        return "sync failed: " + shorten(data.error);
      default:
        return words(event.type);
    }
  }

  function item(offline) {
    const event = offline.event;
    const where = subject(event);
    const entry = document.createElement("li");
    entry.dataset.offline = String(offline.offline_id);
    entry.dataset.type = event.type;
    const link = document.createElement("a");
    link.href = where.href;
    link.textContent = where.label;
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = describe(event);
    const when = document.createElement("time");
    when.setAttribute("datetime", event.ts || offline.recorded_at);
    when.textContent = event.ts || offline.recorded_at;
    entry.append(link, " ", what, " ", when);
    return entry;
  }

  function render() {
    const ordered = Array.from(shown.values()).sort(function (a, b) { return a.offline_id - b.offline_id; });
    list.replaceChildren.apply(list, ordered.map(item));
    const number = Math.max(unread, ordered.length);
    count.textContent = String(number);
    count.classList.toggle("count", number > 0);
    toggle.setAttribute("aria-label", "Notifications: " + number + " unread");
    markRead.disabled = ordered.length === 0;
    panel.querySelector(".empty").hidden = ordered.length > 0;
  }

  session.on("offline", function (news) {
    if (news.whole) shown.clear(); // a new full list: what was acknowledged elsewhere goes
    news.events.forEach(function (offline) { shown.set(offline.offline_id, offline); });
    unread = news.unread;
    render();
  });

  function open(opened) {
    panel.hidden = !opened;
    toggle.setAttribute("aria-expanded", String(opened));
    if (opened) panel.querySelector("h2").focus();
  }

  toggle.addEventListener("click", function () { open(panel.hidden); });
  panel.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    open(false);
    toggle.focus();
  });

  markRead.addEventListener("click", async function () {
    const upTo = Math.max.apply(null, Array.from(shown.keys()));
    error.textContent = "";
    markRead.disabled = true;
    try {
      const answer = await session.acknowledge(upTo);
      Array.from(shown.keys()).forEach(function (id) { if (id <= upTo) shown.delete(id); });
      unread = answer.unread;
    } catch (failure) {
      error.textContent = String(failure.message || failure);
    }
    render();
  });

  session.ready.then(function (restored) { if (restored) toggle.hidden = false; });
})();
