// The modalrec web page: search items, build a history, see its recommendations, add new items.
// Plain JavaScript against the JSON API of the same server (relative URLs, so a path prefix works).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = { history: [], searchSeq: 0, recsSeq: 0, canAdd: false };
  const K = 10;
  const DEBOUNCE_MS = 200;

  // -- the API -------------------------------------------------------------------------------

  // Adding items may need the server's token (modalrec serve --token): asked once, kept for this tab only.
  const TOKEN_KEY = "modalrec-token";

  async function api(path, options) {
    let resp = await fetch(path, withToken(options));
    if (resp.status === 401 && isWrite(options)) {
      const token = window.prompt("This server needs its token to change items (modalrec serve --token):");
      if (token) {
        sessionStorage.setItem(TOKEN_KEY, token);
        resp = await fetch(path, withToken(options));
      }
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : resp.status + " " + resp.statusText;
      const err = new Error(detail);
      err.unknown = body && Array.isArray(body.unknown_item_ids) ? body.unknown_item_ids : [];
      throw err;
    }
    return body;
  }

  const isWrite = (options) => Boolean(options && (options.method === "POST" || options.method === "DELETE"));

  function withToken(options) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token || !isWrite(options)) return options;
    return { ...options, headers: { ...(options.headers || {}), Authorization: "Bearer " + token } };
  }

  const postJson = (path, data) =>
    api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
  const itemPath = (id) => "items/" + encodeURIComponent(id);

  // -- small DOM helpers ---------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function newBadge(item) {
    return item.is_new ? el("span", { class: "badge", "data-testid": "new-badge", text: "new" }) : null;
  }

  // An item's name for people: its title and year (the catalogue's own fields), never the model's input text.
  const titleOf = (item) => item.title || item.text;
  const nameOf = (item) => titleOf(item) + (item.year ? " (" + item.year + ")" : "");

  function titleLine(item) {
    return el("span", { class: "item-title", "data-testid": "item-title", title: nameOf(item) },
      el("span", { class: "title-text", text: titleOf(item) }),
      item.year ? el("span", { class: "year", "data-testid": "item-year", text: " " + item.year }) : null);
  }

  // Under the title: the genres, or (a catalogue without them) the item's text when it says more than the title.
  function genresLine(item) {
    const detail = item.genres || (item.text !== titleOf(item) ? item.text : "");
    return detail ? el("span", { class: "genres", "data-testid": "item-genres", text: detail }) : null;
  }

  function initials(text) {
    const words = String(text).replace(/[^\p{L}\p{N} ]/gu, " ").split(/\s+/).filter(Boolean);
    return (words.slice(0, 2).map((w) => w[0]).join("") || "?").toUpperCase();
  }

  function placeholder(item, cls) {
    return el("div", { class: (cls || "poster") + " placeholder", "aria-hidden": "true",
      "data-testid": "poster-placeholder", text: initials(titleOf(item)) });
  }

  // The item's image (or its initials); cls "thumb" gives the small square used in lists.
  function poster(item, cls) {
    if (!item.has_image) return placeholder(item, cls);
    const img = el("img", { class: cls || "poster", src: itemPath(item.item_id) + "/image",
      alt: "Image of " + nameOf(item), loading: "lazy", "data-testid": cls === "thumb" ? "thumb" : "poster" });
    img.addEventListener("error", () => img.replaceWith(placeholder(item, cls)), { once: true });
    return img;
  }

  function setStatus(node, text, isError) {
    node.textContent = text || "";
    node.classList.toggle("error", Boolean(isError));
  }

  // -- search --------------------------------------------------------------------------------

  let searchTimer = null;

  function scheduleSearch() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, DEBOUNCE_MS);
  }

  async function runSearch() {
    const q = $("search-input").value.trim();
    const seq = ++state.searchSeq;
    if (!q) {
      $("search-results").replaceChildren();
      setStatus($("search-status"), "");
      return;
    }
    try {
      const data = await api("items/search?q=" + encodeURIComponent(q) + "&limit=10");
      if (seq !== state.searchSeq) return; // a newer query is under way
      renderResults(data.items, q);
    } catch (e) {
      if (seq === state.searchSeq) setStatus($("search-status"), "Search failed: " + e.message, true);
    }
  }

  function renderResults(items, q) {
    const list = $("search-results");
    list.replaceChildren(...items.map((item) => el("li", {},
      el("button", { type: "button", class: "result", "data-testid": "search-result", "data-item-id": item.item_id,
        "aria-label": "Add " + nameOf(item) + " to the history", onclick: () => addToHistory(item),
        onkeydown: moveFocus },
      poster(item, "thumb"),
      el("span", { class: "result-text" }, titleLine(item), genresLine(item)), newBadge(item)))));
    setStatus($("search-status"), items.length ? items.length + " result" + (items.length > 1 ? "s" : "")
      : "No item matches \u201c" + q + "\u201d.");
  }

  function moveFocus(event) {
    const buttons = Array.from($("search-results").querySelectorAll("button"));
    const i = buttons.indexOf(event.currentTarget);
    if (event.key === "ArrowDown" && i < buttons.length - 1) buttons[i + 1].focus();
    else if (event.key === "ArrowUp") (i > 0 ? buttons[i - 1] : $("search-input")).focus();
    else if (event.key === "Escape") $("search-input").focus();
    else return;
    event.preventDefault();
  }

  // -- history -------------------------------------------------------------------------------

  // The history survives a reload: kept in this browser (localStorage), per server.
  const HISTORY_KEY = "modalrec-history:" + location.host + location.pathname;

  function saveHistory() {
    try {
      localStorage.setItem(HISTORY_KEY, JSON.stringify(state.history));
    } catch (e) {
      /* storage full or turned off: the history lives as long as the page */
    }
  }

  function loadHistory() {
    try {
      const saved = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
      state.history = Array.isArray(saved) ? saved.filter((x) => x && typeof x.item_id === "string") : [];
    } catch (e) {
      state.history = [];
    }
  }

  function addToHistory(item) {
    state.history.push(item);
    renderHistory();
    refreshRecommendations();
  }

  function removeFromHistory(index) {
    state.history.splice(index, 1);
    renderHistory();
    refreshRecommendations();
    const buttons = $("history-list").querySelectorAll("button");
    (buttons[Math.min(index, buttons.length - 1)] || $("search-input")).focus();
  }

  function renderHistory() {
    const items = state.history;
    $("history-list").replaceChildren(...items.map((item, i) => el("li", { class: "history-item",
      "data-testid": "history-item", "data-item-id": item.item_id },
    poster(item, "thumb"),
    el("button", { type: "button", class: "history-text link", "aria-label": "Items similar to " + nameOf(item),
      onclick: () => showSimilar(item) }, titleLine(item)), newBadge(item),
    el("button", { type: "button", class: "remove", "data-testid": "history-remove",
      "aria-label": "Remove " + nameOf(item) + " from the history", text: "Remove",
      onclick: () => removeFromHistory(i) }))));
    saveHistory();
    $("history-count").textContent = String(items.length);
    $("history-empty").hidden = items.length > 0;
    $("history-clear").hidden = items.length === 0;
  }

  // -- recommendations -----------------------------------------------------------------------

  async function refreshRecommendations() {
    const seq = ++state.recsSeq;
    const status = $("recs-status");
    if (state.history.length === 0) {
      $("recs").replaceChildren();
      setStatus(status, "Add items to the history to see recommendations.");
      return;
    }
    setStatus(status, "Loading recommendations\u2026");
    try {
      const data = await postJson("recommend", { history: state.history.map((h) => h.item_id), k: K });
      if (seq !== state.recsSeq) return;
      $("recs").replaceChildren(...data.items.map((x) => card(x)));
      setStatus(status, data.items.length ? "Top " + data.items.length + " of " + data.n_items + " items ("
        + data.model + ")" : "Nothing left to recommend.");
    } catch (e) {
      if (seq !== state.recsSeq) return;
      const gone = e.unknown || [];
      if (gone.length) { // items removed from the catalogue since they went into the history
        state.history = state.history.filter((h) => !gone.includes(h.item_id));
        renderHistory();
        setStatus(status, gone.length + " item(s) of the history are no longer in the catalogue: left out.");
        refreshRecommendations();
        return;
      }
      setStatus(status, "Could not get recommendations: " + e.message, true);
    }
  }

  // A recommended or similar item: image, rank, title, year and genres, and what can be done with it.
  function card(rec, testid) {
    const actions = [el("button", { type: "button", class: "secondary", text: "Add to history",
      "aria-label": "Add " + nameOf(rec) + " to the history", onclick: () => addToHistory(rec) }),
    el("button", { type: "button", class: "secondary", text: "Similar", "data-testid": "similar-button",
      "aria-label": "Items similar to " + nameOf(rec), onclick: () => showSimilar(rec) })];
    if (rec.is_new && state.canAdd) {
      actions.push(el("button", { type: "button", class: "remove", text: "Delete", "data-testid": "delete-item",
        "aria-label": "Delete " + nameOf(rec) + " from the catalogue", onclick: () => deleteItem(rec) }));
    }
    return el("li", { class: "card", "data-testid": testid || "rec-card", "data-item-id": rec.item_id },
      poster(rec),
      el("div", { class: "card-body" },
        el("p", { class: "card-meta" },
          rec.rank ? el("span", { class: "rank", "data-testid": "rec-rank", title: "model score " + rec.score,
            text: "#" + rec.rank }) : null, newBadge(rec)),
        el("p", { class: "card-title", "data-testid": "rec-title" }, titleLine(rec)),
        el("p", { class: "card-genres" }, genresLine(rec)),
        el("div", { class: "actions" }, ...actions)));
  }

  // -- similar items -------------------------------------------------------------------------

  async function showSimilar(item) {
    const status = $("similar-status");
    $("similar-panel").hidden = false;
    $("similar-heading").textContent = "Similar to " + nameOf(item);
    setStatus(status, "Loading\u2026");
    try {
      const data = await api(itemPath(item.item_id) + "/similar?k=6");
      $("similar").replaceChildren(...data.items.map((x) => card(x, "similar-card")));
      setStatus(status, data.items.length ? "Closest by the model's item vectors." : "No other items.");
      $("similar-panel").scrollIntoView({ block: "nearest" });
    } catch (e) {
      setStatus(status, "Could not find similar items: " + e.message, true);
    }
  }

  // -- deleting an added item ----------------------------------------------------------------

  async function deleteItem(item) {
    if (!window.confirm("Delete \u201c" + nameOf(item) + "\u201d from the catalogue?")) return;
    try {
      const res = await api(itemPath(item.item_id), { method: "DELETE" });
      state.history = state.history.filter((h) => h.item_id !== item.item_id);
      for (const node of document.querySelectorAll("li[data-item-id]")) {
        if (node.dataset.itemId === item.item_id) node.remove();
      }
      renderHistory();
      refreshRecommendations();
      setStatus($("new-status"), "Deleted \u201c" + nameOf(item) + "\u201d; " + res.n_items + " items now.");
      loadHealth();
    } catch (e) {
      setStatus($("new-status"), "Could not delete the item: " + e.message, true);
    }
  }

  // -- new items -----------------------------------------------------------------------------

  async function submitNewItem(event) {
    event.preventDefault();
    const form = $("new-item-form");
    const status = $("new-status");
    const title = $("new-title").value.trim();
    if (!title) {
      setStatus(status, "Give the item a title.", true);
      $("new-title").focus();
      return;
    }
    const fd = new FormData();
    fd.append("title", title);
    const year = $("new-year").value.trim();
    if (year) fd.append("year", year);
    const genres = $("new-genres").value.trim();
    if (genres) fd.append("genres", genres);
    const file = $("new-image").files[0];
    if (file) fd.append("image", file, file.name);
    $("new-submit").disabled = true;
    setStatus(status, "Adding\u2026");
    try {
      const res = await api("items/form", { method: "POST", body: fd });
      const id = res.added[0];
      const item = await api(itemPath(id));
      const warn = (res.warnings || []).join(" ");
      setStatus(status, "Added \u201c" + nameOf(item) + "\u201d (id " + id + "); " + res.n_items + " items now."
        + (warn ? " Note: " + warn : ""), Boolean(warn));
      $("added").prepend(card(item, "added-item"));
      form.reset();
      $("search-input").value = title; // show it where the user looks for items
      runSearch();
      refreshRecommendations();
      loadHealth();
    } catch (e) {
      setStatus(status, "Could not add the item: " + e.message, true);
    } finally {
      $("new-submit").disabled = !state.canAdd;
    }
  }

  // -- start ---------------------------------------------------------------------------------

  async function loadHealth() {
    try {
      const h = await api("health");
      state.canAdd = h.can_add_items;
      $("model-info").textContent = "Model " + h.model + ", " + h.n_items + " items";
      for (const node of $("new-item-form").elements) node.disabled = !h.can_add_items;
      if (!h.can_add_items) {
        $("new-note").textContent = h.model + " learns an ID embedding per item, so it cannot add new items; "
          + "serve an ID-free model (pmmrec, missrec, unisrec) for that.";
      }
    } catch (e) {
      $("model-info").textContent = "The service does not answer: " + e.message;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const input = $("search-input");
    input.addEventListener("input", scheduleSearch);
    input.addEventListener("keydown", (event) => {
      const first = $("search-results").querySelector("button");
      if (event.key === "ArrowDown" && first) {
        event.preventDefault();
        first.focus();
      } else if (event.key === "Enter") {
        event.preventDefault();
        clearTimeout(searchTimer);
        runSearch();
      }
    });
    $("history-clear").addEventListener("click", () => {
      state.history = [];
      renderHistory();
      refreshRecommendations();
      input.focus();
    });
    $("new-item-form").addEventListener("submit", submitNewItem);
    $("similar-close").addEventListener("click", () => {
      $("similar-panel").hidden = true;
    });
    loadHistory();
    renderHistory();
    loadHealth().then(refreshRecommendations);
  });
})();
