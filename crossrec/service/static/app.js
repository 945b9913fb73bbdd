// crossrec page: plain JS over the service's JSON API (no build step).
"use strict";
const $ = (id) => document.getElementById(id);
const state = { catalogues: {}, ranking: null, user: null };

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

async function api(path, options = {}) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch (_) { /* non-JSON */ }
  if (!res.ok) {
    const detail = body && body.detail ? (Array.isArray(body.detail) ? body.detail.join("; ") : body.detail) : res.statusText;
    throw new Error(`${res.status}: ${detail}`);
  }
  return body;
}

function card(item, extra = "") {
  const img = item.image_url ? `<img src="${esc(item.image_url)}" alt="${esc(item.title)}" loading="lazy">` : `<img alt="">`;
  return `<div class="card" data-item="${esc(item.item_id)}">${img}<div class="title">${esc(item.title)}</div>` +
         `<div class="meta">score ${Number(item.score).toFixed(3)}${extra}</div></div>`;
}

function showSearch(result) {
  $("search-note").textContent = `${result.hits.length} results for “${result.query}” (${result.mode}, ` +
    `${result.matching} items searched)${result.note ? " — " + result.note : ""}`;
  $("search-results").innerHTML = result.hits.map((h) => card(h)).join("");
}

async function textSearch(ev) {
  ev.preventDefault();
  const q = $("query").value.trim();
  if (!q) return;
  const params = new URLSearchParams({ q, k: "12", mode: $("mode").value });
  try { showSearch(await api(`/catalogues/${$("catalogue").value}/search?${params}`)); }
  catch (e) { $("search-note").textContent = e.message; $("search-results").innerHTML = ""; }
}

async function imageSearch(ev) {
  ev.preventDefault();
  const file = $("photo").files[0];
  if (!file) { $("search-note").textContent = "choose a photo first"; return; }
  const form = new FormData();
  form.append("image", file);
  form.append("k", "12");
  form.append("space", $("space").value);
  try { showSearch(await api(`/catalogues/${$("catalogue").value}/search/image`, { method: "POST", body: form })); }
  catch (e) { $("search-note").textContent = e.message; $("search-results").innerHTML = ""; }
}

function showProfile(p) {
  const demo = Object.entries(p.demographics).map(([k, v]) => `${esc(k)} ${esc(v)}`).join(", ") || "no demographics";
  const aff = Object.entries(p.category_affinity).map(([c, w]) =>
    `<div><span class="bar" style="width:${Math.round(w * 150)}px"></span> ${esc(c)} ${(w * 100).toFixed(0)}%</div>`).join("");
  const hist = p.history.slice(0, 15).map((h) =>
    `<li>${esc(h.kind)}${h.value != null ? " " + h.value : ""}: ${esc(h.title ?? h.item_id)}</li>`).join("");
  $("profile").innerHTML = `<h3>User ${p.user_id}</h3><p>${demo}; ${p.n_events} events</p>` +
    `<h4>Category affinity</h4>${aff || "<p>none yet</p>"}<h4>Latest history</h4><ol>${hist}</ol>`;
}

async function showRecommendations(previous = []) {
  const r = await api(`/users/${state.user}/recommendations?k=12`);
  $("rec-reason").textContent = r.reason;
  $("recommendations").innerHTML = r.items.map((it) => {
    const extra = `<br>${esc(it.sources.join("+"))} · ${esc(it.top_feature_group)}` +
      (it.creative_url ? `<br><a href="#" data-creative="${esc(it.creative_url)}">creative</a>` : "");
    return card(it, extra);
  }).join("");
  const prev = new Set(previous);
  if (previous.length) {
    for (const el of document.querySelectorAll("#recommendations .card")) {
      if (!prev.has(el.dataset.item)) el.classList.add("new");
    }
  }
  return r.items.map((it) => String(it.item_id));
}

async function pickUser(ev) {
  if (ev) ev.preventDefault();
  const id = $("user-id").value || $("user-picker").value;
  if (!id) return;
  state.user = Number(id);
  try {
    showProfile(await api(`/users/${state.user}/profile`));
    await showRecommendations();
  } catch (e) { $("profile").textContent = e.message; $("recommendations").innerHTML = ""; }
}

function log(text) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("live-log").prepend(li);
}

async function clickItem(itemId) {
  const before = [...document.querySelectorAll("#recommendations .card")].map((el) => el.dataset.item);
  const event = { event_id: `page-${state.user}-${itemId}-${Date.now()}`, timestamp: Date.now() / 1000,
                  user_id: state.user, item_id: Number(itemId), kind: "click" };
  try {
    const ack = await api("/events", { method: "POST", headers: { "Content-Type": "application/json", "X-API-Key": $("api-key").value },
                                       body: JSON.stringify(event) });
    log(`click ${itemId} by user ${state.user}: acknowledged by the broker in ${ack.publish_ms.toFixed(0)} ms`);
  } catch (e) { log(`click ${itemId} refused: ${e.message}`); return; }
  // The consumer applies the event to the live profile store within a moment: poll until the list changes.
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const after = await showRecommendations(before);
    if (after.join() !== before.join()) {
      log(`recommendations changed: ${after.filter((x) => !before.includes(x)).length} new`);
      showProfile(await api(`/users/${state.user}/profile`));
      return;
    }
  }
  log("recommendations unchanged (is a consumer running?)");
}

async function showCreative(url) {
  const box = $("creative");
  try {
    const c = await api(url);
    const copy = c.copy || {};
    const poster = c.assets.poster ? `<img src="${esc(c.assets.poster)}" alt="poster" style="max-width:100%">` : "";
    const trailer = c.assets.trailer ? `<video controls src="${esc(c.assets.trailer)}"></video>` : "";
    box.innerHTML = `<h3>${esc(copy.headline ?? "Creative")}</h3><p>${esc(copy.tagline ?? "")}</p>${poster}${trailer}`;
  } catch (e) { box.textContent = e.message; }
  box.classList.remove("hidden");
}

async function init() {
  try {
    const ready = await api("/readyz");
    state.catalogues = ready.catalogues;
    state.ranking = ready.ranking_catalogue;
    $("status").textContent = `ready · broker ${ready.broker.state}`;
  } catch (e) { $("status").textContent = e.message; return; }
  $("catalogue").innerHTML = Object.entries(state.catalogues).map(([n, c]) => `<option value="${esc(n)}">${esc(n)} (${c})</option>`).join("");
  const users = await api("/users?limit=300");
  $("user-picker").innerHTML = users.user_ids.map((u) => `<option value="${u}">user ${u}</option>`).join("");
  $("api-key").value = localStorage.getItem("crossrec-api-key") || "";
  $("api-key").addEventListener("change", () => localStorage.setItem("crossrec-api-key", $("api-key").value));
  $("text-search").addEventListener("submit", textSearch);
  $("image-search").addEventListener("submit", imageSearch);
  $("user-form").addEventListener("submit", pickUser);
  $("user-picker").addEventListener("change", () => { $("user-id").value = ""; pickUser(); });
  $("recommendations").addEventListener("click", (ev) => {
    const link = ev.target.closest("[data-creative]");
    if (link) { ev.preventDefault(); showCreative(link.dataset.creative); return; }
    const el = ev.target.closest(".card");
    if (el) clickItem(el.dataset.item);
  });
  const charts = await api("/reports");
  $("reports").innerHTML = charts.length ? charts.map((n) => `<img src="/reports/${encodeURIComponent(n)}" alt="${esc(n)}" title="${esc(n)}">`).join("")
                                          : "<p class='note'>No evaluation charts yet: run <code>crossrec retrieval eval</code> and <code>crossrec rank eval</code>.</p>";
}

init();
