// Times in the browser's zone. Each <time datetime> the server wrote (in UTC, the UTC text
// inside) is shown in local time, the UTC text kept as its title; a <time class="countdown">
// counts down each second to its instant instead. "Now" is the server's clock (body data-now)
// carried forward by the browser's, so a browser whose clock is off still counts right.
// Parts of a page swapped in later are formatted as they arrive.
(function () {
  "use strict";
  const local = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const serverNow = Date.parse(document.body.dataset.now || "");
  const skew = isNaN(serverNow) ? 0 : serverNow - Date.now();

  function now() { return Date.now() + skew; }

  function left(ms) {
    const seconds = Math.ceil(ms / 1000);
    if (seconds <= 0) return "now";
    if (seconds < 60) return "in " + seconds + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return "in " + minutes + " min " + String(seconds % 60).padStart(2, "0") + " s";
    return "in " + Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function tick(node) {
    node.textContent = left(Number(node.dataset.at) - now());
  }

  function show(node) {
    const at = Date.parse(node.getAttribute("datetime"));
    if (isNaN(at) || node.dataset.at) return;
    node.dataset.at = String(at);
    if (node.classList.contains("countdown")) {
      node.title = local.format(new Date(at));
      tick(node);
    } else {
      node.textContent = local.format(new Date(at));
    }
  }

  function showAll(root) {
    if (root.matches && root.matches("time[datetime]")) show(root);
    root.querySelectorAll("time[datetime]").forEach(show);
  }

  showAll(document);
  new MutationObserver(function (changes) {
    changes.forEach(function (change) {
      change.addedNodes.forEach(function (node) { if (node.nodeType === 1) showAll(node); });
    });
  }).observe(document.body, { childList: true, subtree: true });
  setInterval(function () { document.querySelectorAll("time.countdown[data-at]").forEach(tick); }, 1000);
})();
