// The page's browser session (docs/sessions.md), on every page: which session it is (the
// cookie is HttpOnly, so GET /api/sessions/current; POST /api/sessions when there is none),
// the page's own tab added to the session's tabs, and the whole session restored in one answer
// (tabs, UI state, offline events, the pipelines and pull requests the tabs show, the text of
// the steps running there). The other scripts use it through window.biagentSession:
//   ready            a promise of that answer, or of null when the page has no session
//   id, tab, tabs    the session's id, the page's own tab ({kind, ref} or null), the tabs
//   restored         the last restore answer (tabs.js and notices.js read their labels in it)
//   uiState          this page's part of the UI state (by path); saveUiState(part) keeps it
//                    (debounced, and sent on leaving the page; the server merges it in)
//   setTabs(tabs)    replace the tabs; restore() asks for the whole session again
//   onFrame(frame)   the session's WebSocket frames (live.js): session_restored, offline_event
//   on(type, fn)     "tabs" (the list changed), "offline" ({events, unread, whole}: whole when
//                    the events are every unread one, not more of them)
window.biagentSession = (function () {
  "use strict";
  const body = document.body;
  const hub = new EventTarget();
  const PAGE_KEY = location.pathname;
  const SAVE_AFTER_MS = 400;
  const MAX_TABS = 50;
  const HEADERS = { "Content-Type": "application/json", Accept: "application/json" };

  const session = {
    id: null,
    tab: body.dataset.tabKind ? { kind: body.dataset.tabKind, ref: body.dataset.tabRef || null } : null,
    tabs: [],
    restored: null,
    uiState: {},
    ready: null,
  };
  let saveTimer = null;

  function emit(type, detail) { hub.dispatchEvent(new CustomEvent(type, { detail: detail })); }
  session.on = function (type, listener) {
    hub.addEventListener(type, function (event) { listener(event.detail); });
  };

  async function call(method, path, payload, keepalive) {
    const response = await fetch(path, {
      method: method,
      credentials: "same-origin",
      headers: HEADERS,
      body: payload === undefined ? undefined : JSON.stringify(payload),
      keepalive: Boolean(keepalive),
    });
    const answer = await response.json().catch(function () { return {}; });
    if (!response.ok) {
      const error = new Error((answer.error && answer.error.message) || response.statusText);
      error.status = response.status;
      throw error;
    }
    return answer;
  }

  function address(rest) { return "/api/sessions/" + encodeURIComponent(session.id) + rest; }

  function sameTab(one, other) {
    return one.kind === other.kind && (one.ref || null) === (other.ref || null);
  }
  session.sameTab = sameTab;

  async function find() {
    try {
      return (await call("GET", "/api/sessions/current")).session.id;
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    return (await call("POST", "/api/sessions", {})).session.id;
  }

  // The page's own tab joins the end of the list (the oldest go past the server's limit).
  async function addOwnTab() {
    const tabs = (await call("GET", address("/tabs"))).tabs;
    if (tabs.some(function (tab) { return sameTab(tab, session.tab); })) return;
    await call("PUT", address("/tabs"), { tabs: tabs.concat([session.tab]).slice(-MAX_TABS) });
  }

  function showTabs(tabs) {
    session.tabs = tabs;
    emit("tabs", tabs);
  }

  session.restore = async function () {
    const restored = await call("POST", address("/restore"), {});
    session.restored = restored;
    if (!saveTimer) { // a change of this page not yet sent is newer than the server's copy
      session.uiState = ((restored.ui_state || {}).pages || {})[PAGE_KEY] || {};
    }
    showTabs(restored.tabs);
    emit("offline", { events: restored.offline_events, unread: restored.unread, whole: true });
    return restored;
  };

  // Shown at once; put back as they were when the server refuses or cannot be reached.
  session.setTabs = async function (tabs) {
    const before = session.tabs;
    showTabs(tabs);
    try {
      showTabs((await call("PUT", address("/tabs"), { tabs: tabs })).tabs);
    } catch (error) {
      showTabs(before);
      throw error;
    }
  };

  // Only this page's part is sent, merged by the server into the rest (PATCH): another
  // window of the session, on another page, keeps what it set.
  function sendUiState(keepalive) {
    clearTimeout(saveTimer);
    saveTimer = null;
    const pages = {};
    pages[PAGE_KEY] = session.uiState;
    return call("PATCH", address("/ui-state"), { pages: pages }, keepalive).catch(function () {});
  }

  session.saveUiState = function (part) {
    if (!session.id) return;
    session.uiState = part;
    clearTimeout(saveTimer);
    saveTimer = setTimeout(sendUiState, SAVE_AFTER_MS);
  };

  // A change made just before leaving the page is still sent.
  window.addEventListener("pagehide", function () { if (saveTimer) sendUiState(true); });

  session.onFrame = function (frame) {
    if (frame.type === "session_restored") {
      showTabs(frame.data.tabs);
      emit("offline", { events: [], unread: frame.data.unread, whole: true });
    } else if (frame.type === "offline_event") {
      emit("offline", { events: [frame.data], unread: frame.data.unread, whole: false });
    }
  };

  session.acknowledge = function (upTo) {
    return call("POST", address("/acknowledge-events"), { up_to: upTo });
  };

  session.ready = (async function () {
    try {
      session.id = await find();
      if (session.tab) await addOwnTab();
      return await session.restore();
    } catch (error) {
      session.id = null;
      return null; // without a session the page still works: no tabs, no notifications
    }
  })();

  return session;
})();
