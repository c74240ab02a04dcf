// A server-rendered part of a page swapped for a fresh copy (the server escaped it), keeping
// what a person was typing, which sections were open and where the focus was. One request at a
// time; a change that comes in meanwhile fetches once more after it. Used by the dashboard, the
// pipeline page and the pull request page, each with its own `.../state` address.
window.biagentFragment = function (container, address) {
  "use strict";

  function replace(html) {
    const kept = {};
    container.querySelectorAll("input[id], textarea[id], select[id]").forEach(function (field) {
      kept[field.id] = field.type === "checkbox" ? field.checked : field.value;
    });
    const open = Array.from(container.querySelectorAll("details[open][id]")).map(function (d) { return d.id; });
    const focused = document.activeElement && document.activeElement.id;
    container.innerHTML = html;
    Object.keys(kept).forEach(function (id) {
      const field = document.getElementById(id);
      if (!field) return;
      if (field.type === "checkbox") field.checked = kept[id]; else field.value = kept[id];
    });
    open.forEach(function (id) { const d = document.getElementById(id); if (d) d.open = true; });
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  }

  async function load() {
    const response = await fetch(address, { credentials: "same-origin" });
    if (response.ok) replace(await response.text());
  }

  // The promise resolves once the part shows the state of after the call.
  let running = null;
  let queued = null;
  return function refresh() {
    if (queued) return queued;
    if (running) {
      queued = running.then(function () { queued = null; return refresh(); });
      return queued;
    }
    running = load().catch(function () {}).finally(function () { running = null; });
    return running;
  };
};
