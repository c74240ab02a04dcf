// What a person set on a page, kept in the session's UI state (session.js, by the page's path)
// and given back when the page is opened again, after a reload or on another device: the
// sections they opened or closed (a <details id>), the part they selected (a [data-select]
// button names the element it selects: the pipeline page's steps) and the fields marked
// data-remember (the dashboard's feed filter). Only what the person did is kept, not what the
// server chose to show open. Parts of the page swapped in later (fragments.js fires
// "biagent:replaced") get the same again.
(function () {
  "use strict";
  const session = window.biagentSession;
  if (!session) return;
  const KEPT_IDS = 100;
  let state = { open: [], closed: [], selected: null, fields: {} };

  function save() { session.saveUiState(state); }

  function showSelected(root, scroll) {
    root.querySelectorAll("[data-select]").forEach(function (button) {
      const chosen = button.dataset.select === state.selected;
      button.setAttribute("aria-pressed", String(chosen));
      const target = document.getElementById(button.dataset.select);
      if (target) target.classList.toggle("selected", chosen);
      if (chosen && scroll && target) target.scrollIntoView({ block: "center" });
    });
  }

  function applySections(root) {
    state.open.forEach(function (id) { const d = root.querySelector("details#" + CSS.escape(id)); if (d) d.open = true; });
    state.closed.forEach(function (id) { const d = root.querySelector("details#" + CSS.escape(id)); if (d) d.open = false; });
  }

  function applyFields() {
    Object.keys(state.fields).forEach(function (id) {
      const field = document.getElementById(id);
      if (!field || field.dataset.remember === undefined) return;
      field.value = state.fields[id];
      field.dispatchEvent(new Event("input", { bubbles: true }));
    });
  }

  document.addEventListener("click", function (event) {
    const summary = event.target.closest("details[id] > summary");
    if (summary) {
      const details = summary.parentElement;
      const opening = !details.open; // the click's default action toggles it afterwards
      state.open = state.open.filter(function (id) { return id !== details.id; });
      state.closed = state.closed.filter(function (id) { return id !== details.id; });
      (opening ? state.open : state.closed).push(details.id);
      state.open = state.open.slice(-KEPT_IDS);
      state.closed = state.closed.slice(-KEPT_IDS);
      save();
      return;
    }
    const select = event.target.closest("[data-select]");
    if (select) {
      state.selected = select.dataset.select === state.selected ? null : select.dataset.select;
      showSelected(document, false);
      save();
    }
  });

  document.addEventListener("input", function (event) {
    const field = event.target;
    if (!field.id || field.dataset.remember === undefined || !event.isTrusted) return;
    state.fields[field.id] = field.value;
    save();
  });

  document.addEventListener("biagent:replaced", function (event) {
    applySections(event.target);
    showSelected(event.target, false);
  });

  session.ready.then(function (restored) {
    if (!restored) return;
    const kept = session.uiState || {};
    state = {
      open: Array.isArray(kept.open) ? kept.open : [],
      closed: Array.isArray(kept.closed) ? kept.closed : [],
      selected: typeof kept.selected === "string" ? kept.selected : null,
      fields: kept.fields && typeof kept.fields === "object" ? kept.fields : {},
    };
    applySections(document);
    applyFields();
    showSelected(document, true);
  });
})();
