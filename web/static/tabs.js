// The session's open tabs across the top (nav#tabs in layout.html; the list itself: session.js).
// Each tab links to its page and has a button that closes it; the page's own tab is marked as
// the current one. Labels come from the session's restore answer (a pipeline's ticket and
// status, a pull request's page); a tab it does not describe still shows its ref.
(function () {
  "use strict";
  const session = window.biagentSession;
  const nav = document.getElementById("tabs");
  if (!session || !nav) return;

  function pipelineOf(ref) {
    const shown = (session.restored && session.restored.pipelines) || [];
    return shown.find(function (pipeline) { return String(pipeline.id) === ref; });
  }

  function pullRequestOf(ref) {
    const shown = (session.restored && session.restored.pull_requests) || [];
    return shown.find(function (pr) { return pr.repository + "#" + pr.number === ref; });
  }

  // {href, label, detail}: href null when no page is known for the tab.
  function describe(tab) {
    if (tab.kind === "pipeline") {
      const pipeline = pipelineOf(tab.ref);
      return {
        href: "/pipelines/" + encodeURIComponent(tab.ref),
        label: (pipeline ? pipeline.ticket + " " : "") + "pipeline #" + tab.ref,
        detail: pipeline ? pipeline.status.replace(/_/g, " ") : "",
      };
    }
    if (tab.kind === "pr") {
      const pr = pullRequestOf(tab.ref);
      return { href: pr ? "/pull-requests/" + Number(pr.id) : null, label: tab.ref, detail: pr ? pr.review_state : "" };
    }
    if (tab.kind === "ticket") return { href: "/tickets/" + encodeURIComponent(tab.ref), label: tab.ref + " ticket", detail: "" };
    if (tab.kind === "worktrees" || tab.kind === "costs") return { href: "/" + tab.kind, label: tab.kind, detail: "" };
    return { href: "/", label: "dashboard", detail: "" };
  }

  function item(tab) {
    const shown = describe(tab);
    const entry = document.createElement("li");
    entry.className = "tab";
    entry.dataset.kind = tab.kind;
    entry.dataset.ref = tab.ref || "";
    const link = document.createElement(shown.href ? "a" : "span");
    link.className = "label";
    link.textContent = shown.label;
    if (shown.href) link.href = shown.href;
    if (shown.detail) link.title = shown.detail;
    if (session.tab && session.sameTab(tab, session.tab)) {
      entry.classList.add("current");
      link.setAttribute("aria-current", "page");
    }
    const close = document.createElement("button");
    close.type = "button";
    close.className = "close";
    close.textContent = "×";
    close.setAttribute("aria-label", "Close tab " + shown.label);
    close.addEventListener("click", function () { closeTab(tab, entry); });
    entry.append(link, close);
    return entry;
  }

  function entryOf(kind, ref) {
    return Array.from(nav.querySelectorAll("li.tab")).find(function (li) {
      return li.dataset.kind === kind && li.dataset.ref === ref;
    });
  }

  // Drawn again whenever the list changes; the focus stays on the same tab's link or button.
  function render(tabs) {
    const focused = nav.contains(document.activeElement) ? document.activeElement : null;
    const place = focused && focused.closest("li.tab");
    const kept = place && { kind: place.dataset.kind, ref: place.dataset.ref, part: focused.className };
    if (!tabs.length) { nav.replaceChildren(); return; }
    const list = document.createElement("ul");
    tabs.forEach(function (tab) { list.append(item(tab)); });
    nav.replaceChildren(list);
    const again = kept && entryOf(kept.kind, kept.ref);
    if (again) again.querySelector("." + kept.part).focus();
    // On a narrow screen the strip scrolls: the page's own tab is brought into it.
    const current = list.querySelector("li.current");
    if (current && !again) current.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  // Focus goes on to the next tab's close button (or the previous one's), so a keyboard user
  // can close several in a row; with none left, to the page.
  function closeTab(tab, entry) {
    const next = entry.nextElementSibling || entry.previousElementSibling;
    if (next) next.querySelector("button.close").focus();
    else document.getElementById("main").focus();
    const left = session.tabs.filter(function (other) { return !session.sameTab(other, tab); });
    session.setTabs(left).catch(function () {});
  }

  session.on("tabs", render);
})();
