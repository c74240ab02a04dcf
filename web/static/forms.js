// Forms that call the JSON API, on every page. A form with data-api sends its fields as JSON to
// that route (data-method, POST unless said; the login cookie authenticates, and the browser's
// Origin header shows the request came from our page). A checkbox with data-bool is sent as
// true/false; one with data-query, when checked, as `?name=1` on the URL. The name typed in
// #who (kept in this browser) goes in the field data-who names. data-confirm asks first.
// A refusal is shown as text in the form's .error slot; a success resets the form and fires
// "biagent:done" on it with the answer for the page's own script (data-then="open" goes to
// the pipeline the answer names, data-then="reload" reloads the page).
(function () {
  "use strict";
  const who = document.getElementById("who");
  const NAME_KEY = "biagent.who";

  if (who) {
    who.value = localStorage.getItem(NAME_KEY) || "";
    who.addEventListener("change", function () { localStorage.setItem(NAME_KEY, who.value.trim()); });
  }

  function fieldsOf(form) {
    const fields = {};
    Array.from(form.elements).forEach(function (field) {
      if (!field.name || field.dataset.query !== undefined) return;
      if (field.dataset.bool !== undefined) fields[field.name] = field.checked;
      else if (field.value.trim() !== "") fields[field.name] = field.value;
    });
    const name = who ? who.value.trim() : localStorage.getItem(NAME_KEY) || "";
    if (form.dataset.who && name) fields[form.dataset.who] = name;
    return fields;
  }

  function addressOf(form) {
    const query = new URLSearchParams();
    Array.from(form.elements).forEach(function (field) {
      if (field.name && field.dataset.query !== undefined && field.checked) query.set(field.name, "1");
    });
    const text = query.toString();
    return form.dataset.api + (text ? "?" + text : "");
  }

  function errorSlot(form) {
    return form.querySelector(".error") || form.parentElement.querySelector(".error");
  }

  async function submit(form) {
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const slot = errorSlot(form);
    if (slot) slot.textContent = "";
    const buttons = Array.from(form.querySelectorAll("button"));
    buttons.forEach(function (button) { button.disabled = true; });
    const method = (form.dataset.method || "POST").toUpperCase();
    try {
      const response = await fetch(addressOf(form), {
        method: method,
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: method === "DELETE" ? undefined : JSON.stringify(fieldsOf(form)),
      });
      const answer = await response.json().catch(function () { return {}; });
      if (!response.ok) throw new Error((answer.error && answer.error.message) || response.statusText);
      if (form.dataset.then === "open") { location.href = "/pipelines/" + Number(answer.pipeline.id); return; }
      if (form.dataset.then === "reload") { location.reload(); return; }
      form.reset();
      form.dispatchEvent(new CustomEvent("biagent:done", { bubbles: true, detail: answer }));
    } catch (error) {
      if (slot) slot.textContent = String(error.message || error);
    } finally {
      buttons.forEach(function (button) { button.disabled = false; });
    }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-api]");
    if (!form) return;
    event.preventDefault();
    submit(form);
  });
})();
