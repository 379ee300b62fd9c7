// nanochat web UI: saved chats, markdown replies (marked + DOMPurify, vendored), every sampling knob, token probabilities.
// Loaded as a file (no inline script), so the page runs under a CSP without 'unsafe-inline'.
"use strict";
(() => {
  // ---------- small helpers (data goes through textContent, or through DOMPurify for markdown) ----------
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);   // strings become text nodes
    return node;
  }
  const store = {
    get(key, dflt) { try { const v = localStorage.getItem("nanochat." + key); return v === null ? dflt : JSON.parse(v); } catch { return dflt; } },
    set(key, v, quiet = false) {
      try { localStorage.setItem("nanochat." + key, JSON.stringify(v)); return true; }
      catch (e) { if (key === "chats" && !quiet) showError("Could not save the chats in this browser (storage full or disabled): delete or export some chats.", { kind: "storage" }); return false; }
    },
  };
  const wide = () => window.matchMedia("(min-width: 721px)").matches;

  // ---------- settings: the server's defaults (GET /v1/defaults) plus what the user changed ----------
  // Every knob the API has. kind: range (a number) | text. `off` is the value shown as "off".
  const KNOBS = {
    temperature: { kind: "range" }, top_p: { kind: "range" }, max_tokens: { kind: "range" },
    top_k: { kind: "range", off: 0 }, min_p: { kind: "range", off: 0 },
    repetition_penalty: { kind: "range" }, presence_penalty: { kind: "range" }, frequency_penalty: { kind: "range" },
  };
  let defaults = null;                       // from the server; null until loaded (or when it has none)
  let overrides = store.get("overrides", {}); // only the knobs the user moved
  let extras = Object.assign({ seed: "", system: "", stop: "" }, store.get("extras", {}));
  let models = [];                           // [{id, max_model_len}]
  let apiKey = store.get("apiKey", "");
  let showProbs = store.get("showProbs", false);

  const value = (name) => (name in overrides ? overrides[name] : defaults ? defaults[name] : undefined);
  function context() {
    const m = models.find((x) => x.id === $("model").value);
    return m && Number(m.max_model_len) > 16 ? Number(m.max_model_len) : null;
  }
  function showValue(name) {
    const v = Number($(name).value), k = KNOBS[name];
    let text = k.off !== undefined && v === k.off ? "off" : String(v);
    if (name === "max_tokens" && !("max_tokens" in overrides)) text += " (default)";
    $(name + "-val").textContent = text;
  }
  function applySettingsToForm() {
    const ctx = context();
    if (ctx) {
      $("max_tokens").max = String(ctx);
      $("max_tokens-hint").textContent = `Longest reply, up to the context length (${ctx} tokens); the default is clipped to what fits.`;
    }
    for (const n of Object.keys(KNOBS)) {
      let v = value(n);
      if (n === "max_tokens" && v != null) v = Math.min(Number(v), Number($("max_tokens").max));
      if (v !== undefined && v !== null) $(n).value = v;
      showValue(n);
    }
    $("seed").value = extras.seed; $("system").value = extras.system; $("stop-strings").value = extras.stop;
    $("api-key").value = apiKey;
  }
  function saveSettings() { store.set("overrides", overrides); store.set("extras", extras); }
  for (const n of Object.keys(KNOBS)) {
    $(n).addEventListener("input", () => { overrides[n] = Number($(n).value); showValue(n); saveSettings(); });
  }
  $("seed").addEventListener("input", () => { extras.seed = $("seed").value.trim(); saveSettings(); });
  $("system").addEventListener("input", () => { extras.system = $("system").value; saveSettings(); });
  $("stop-strings").addEventListener("input", () => { extras.stop = $("stop-strings").value; saveSettings(); });
  $("api-key").addEventListener("change", () => { apiKey = $("api-key").value.trim(); store.set("apiKey", apiKey); loadModels(); });
  $("api-key").addEventListener("input", () => { apiKey = $("api-key").value.trim(); store.set("apiKey", apiKey); });
  $("reset-settings").addEventListener("click", () => {
    overrides = {}; extras = { seed: "", system: "", stop: "" }; applySettingsToForm(); saveSettings();
  });
  function stopStrings() { return extras.stop.split("\n").filter((s) => s.length > 0); }

  // ---------- drawers: chat list (left) and settings (right) ----------
  function setSettingsOpen(open, focus = true) {
    $("settings").hidden = !open;
    $("gear").setAttribute("aria-expanded", String(open));
    store.set("settingsOpen", open);
    if (open && !wide()) setSidebarOpen(false, false);
    if (focus) (open ? $("temperature") : $("gear")).focus();
  }
  function setSidebarOpen(open, focus = true) {
    $("sidebar").hidden = !open;
    $("chats-toggle").setAttribute("aria-expanded", String(open));
    if (wide()) store.set("sidebarOpen", open);
    if (open && !wide()) setSettingsOpen(false, false);
    if (focus) {
      const cur = $("chat-list").querySelector(".current .open") || $("chat-list").querySelector(".open");
      (open ? (cur || $("import")) : $("chats-toggle")).focus();
    }
  }
  $("gear").addEventListener("click", () => setSettingsOpen($("settings").hidden));
  $("settings-close").addEventListener("click", () => setSettingsOpen(false));
  $("settings").addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); setSettingsOpen(false); } });
  $("advanced").open = store.get("advancedOpen", false);
  $("advanced").addEventListener("toggle", () => store.set("advancedOpen", $("advanced").open));
  $("chats-toggle").addEventListener("click", () => setSidebarOpen($("sidebar").hidden));
  $("sidebar-close").addEventListener("click", () => setSidebarOpen(false));
  $("sidebar").addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !e.target.matches("input")) { e.preventDefault(); setSidebarOpen(false); }
  });

  // ---------- models and defaults ----------
  function authHeaders() { return apiKey ? { Authorization: "Bearer " + apiKey } : {}; }
  let modelRetry = null;
  async function loadDefaults() {
    try {
      const res = await fetch("/v1/defaults", { headers: authHeaders() });
      if (!res.ok) throw new Error(String(res.status));
      const d = await res.json();
      defaults = {};
      for (const n of Object.keys(KNOBS)) if (typeof d[n] === "number") defaults[n] = d[n];
      $("defaults-status").textContent = "Defaults come from the server; a knob you move is remembered in this browser.";
    } catch {
      if (!defaults) $("defaults-status").textContent = "This server does not publish its defaults: knobs you do not move are left to the server.";
    }
    applySettingsToForm();
  }
  async function loadModels() {
    const sel = $("model");
    clearTimeout(modelRetry);
    try {
      const res = await fetch("/v1/models", { headers: authHeaders() });
      if (!res.ok) {
        const msg = await errorMessage(res);
        $("model-status").textContent = msg;
        if (res.status === 401) showError(msg, { askKey: true, focus: false });
        else showError(msg, { kind: "load" });
        if (!models.length) sel.replaceChildren(el("option", { value: "", text: "unavailable" }));
        if (res.status === 429 || res.status === 503) modelRetry = setTimeout(loadModels, retrySeconds(res, 5) * 1000);
        return;
      }
      const body = await res.json();
      models = (body.data || []).filter((m) => m && m.id);
      const wanted = store.get("model", "");
      sel.replaceChildren(...models.map((m) => el("option", { value: m.id, text: m.id, title: m.id })));
      if (models.some((m) => m.id === wanted)) sel.value = wanted;
      sel.title = sel.value;
      $("model-status").textContent = models.length ? "" : "The server lists no models.";
      if (["401", "load", "unreachable"].includes($("error").dataset.kind)) hideError();
      await loadDefaults();
    } catch (e) {
      $("model-status").textContent = "Could not load the model list.";
      if (!models.length) sel.replaceChildren(el("option", { value: "", text: "unavailable" }));
      showError("Cannot reach the server: the connection failed. Check that `nanochat serve` is running; trying again every 5 seconds.", { kind: "unreachable" });
      modelRetry = setTimeout(loadModels, 5000);
    }
  }
  $("model").addEventListener("change", () => { store.set("model", $("model").value); $("model").title = $("model").value; applySettingsToForm(); });

  // ---------- errors ----------
  function showError(text, { askKey = false, focus = true, kind = "" } = {}) {
    $("error-text").textContent = text;
    $("error").dataset.kind = askKey ? "401" : kind;
    $("error").hidden = false;
    if (askKey) { setSettingsOpen(true, false); if (focus) $("api-key").focus(); }
  }
  function hideError() { $("error").hidden = true; $("error").dataset.kind = ""; $("error-text").textContent = ""; }
  $("error-close").addEventListener("click", () => { hideError(); $("input").focus(); });

  function retrySeconds(res, dflt = NaN) {
    const h = res.headers.get("Retry-After");
    if (!h) return dflt;
    let secs = Number(h);
    if (!Number.isFinite(secs)) { const t = Date.parse(h); secs = Number.isFinite(t) ? Math.max(0, Math.round((t - Date.now()) / 1000)) : NaN; }
    return Number.isFinite(secs) ? secs : dflt;
  }
  function retryText(res) {
    const secs = retrySeconds(res);
    if (!Number.isFinite(secs)) return "Try again in a moment.";
    const at = new Date(Date.now() + secs * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return `Retry in ${secs} second${secs === 1 ? "" : "s"} (at ${at}).`;
  }
  async function errorMessage(res) {
    let detail = "", code = "";
    try {
      const text = await res.text();
      try { const j = JSON.parse(text); code = (j.error && j.error.code) || ""; detail = (j.error && (j.error.message || j.error)) || j.detail || j.message || text; }
      catch { detail = text; }
    } catch { /* body unreadable */ }
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    detail = detail.trim().slice(0, 500);
    switch (res.status) {
      case 429: return `Too many requests (429): ${detail || "the server is busy"}. ${retryText(res)}`;
      case 401: return `Not authorized (401): this server needs an API key. Enter it under Settings → API key and send again.${detail ? " Server said: " + detail : ""}`;
      case 400: return `The server rejected the request (400): ${detail || "bad request"}` +
        (code === "context_length_exceeded" ? " Lower Max tokens in Settings, or start a new chat." : "");
      case 503: return `The server is unavailable (503): ${detail || "try again later"}. ${retryText(res)}`;
      default: return `Server error (${res.status}): ${detail || res.statusText || "unknown error"}`;
    }
  }

  // ---------- saved conversations (localStorage) ----------
  // chat: {id, title, named, created, updated, messages: [{role, content, meta?, tokens?}]}
  let chats = store.get("chats", []);
  if (!Array.isArray(chats)) chats = [];
  for (const c of chats) for (const m of c.messages || []) delete m.streaming;   // a reply cut by a reload is kept as it was
  let currentId = store.get("current", null);
  if (!chats.some((c) => c.id === currentId)) currentId = null;
  let conversation = currentId ? chats.find((c) => c.id === currentId).messages : [];
  let renaming = null;

  const newId = () => Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  const titleOf = (messages) => {
    const first = messages.find((m) => m.role === "user");
    const t = first ? first.content.replace(/\s+/g, " ").trim() : "";
    return t ? (t.length > 48 ? t.slice(0, 47) + "…" : t) : "New chat";
  };
  function current() { return chats.find((c) => c.id === currentId) || null; }
  function saveChats() {
    const c = current();
    if (c) { c.messages = conversation; c.updated = Date.now(); if (!c.named) c.title = titleOf(c.messages); }
    // an empty reply still streaming is not saved; one with text is saved as it stands
    const plain = chats.map((x) => ({ ...x, messages: x.messages.filter((m) => !m.streaming || m.content).map(({ streaming, ...m }) => m) }));
    if (!store.set("chats", plain, true)) {
      // localStorage is full (token probabilities take room): keep them only for the open chat, then try again
      for (const x of plain) if (x.id !== currentId) for (const m of x.messages) delete m.tokens;
      for (const x of chats) if (x.id !== currentId) for (const m of x.messages) delete m.tokens;
      store.set("chats", plain);
    }
    store.set("current", currentId);
    renderChatList();
  }
  function ensureChat() {
    if (current()) return;
    const c = { id: newId(), title: "New chat", named: false, created: Date.now(), updated: Date.now(), messages: conversation };
    chats.push(c); currentId = c.id;
  }
  function switchTo(id) {
    if (controller) stop();
    currentId = id; editing = -1;
    conversation = id ? current().messages : [];
    store.set("current", currentId);
    hideError(); render(); renderChatList(); scrollToEnd();
    if (!wide()) setSidebarOpen(false, false);
  }
  function deleteChat(id) {
    const c = chats.find((x) => x.id === id);
    if (!c || !window.confirm(`Delete the chat “${c.title}”? This cannot be undone (export it first to keep a copy).`)) return;
    chats = chats.filter((x) => x.id !== id);
    if (currentId === id) switchTo(null);
    saveChats();
  }
  function renderChatList() {
    const list = $("chat-list");
    const sorted = [...chats].sort((a, b) => b.updated - a.updated);
    list.replaceChildren(...sorted.map((c) => {
      const li = el("li", { class: "chat-item" + (c.id === currentId ? " current" : ""), "data-id": c.id });
      if (renaming === c.id) {
        const inp = el("input", { type: "text", "aria-label": "New name for this chat", value: c.title, maxlength: "120" });
        const finish = (save) => {
          if (renaming !== c.id) return;
          renaming = null;
          if (save && inp.value.trim()) { c.title = inp.value.trim(); c.named = true; saveChats(); }
          else renderChatList();
          const b = list.querySelector(`[data-id="${c.id}"] [data-action="rename"]`); if (b) b.focus();
        };
        inp.addEventListener("keydown", (e) => {
          if (e.key === "Enter") { e.preventDefault(); finish(true); }
          else if (e.key === "Escape") { e.preventDefault(); finish(false); }
        });
        inp.addEventListener("blur", () => finish(true));
        li.append(inp);
        setTimeout(() => { inp.focus(); inp.select(); }, 0);
      } else {
        li.append(el("button", { type: "button", class: "open", "aria-current": c.id === currentId ? "true" : null,
                                 title: c.title, onclick: () => switchTo(c.id), text: c.title }));
        li.append(el("button", { type: "button", class: "link", "data-action": "rename", "aria-label": `Rename chat ${c.title}`,
                                 onclick: () => { renaming = c.id; renderChatList(); }, text: "Rename" }));
        li.append(el("button", { type: "button", class: "link", "data-action": "delete", "aria-label": `Delete chat ${c.title}`,
                                 onclick: () => deleteChat(c.id), text: "Delete" }));
      }
      return li;
    }));
    $("chat-list-empty").hidden = chats.length > 0;
    $("export").disabled = !conversation.length;
    $("export-all").disabled = !chats.length;
  }

  // export / import in the SFT format: a conversation is a list of {role, content}
  const sft = (messages) => messages.filter((m) => m.content || m.role === "user").map((m) => ({ role: m.role, content: m.content }));
  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
  const fileName = (t) => "nanochat-" + (t.replace(/[^\w\- ]+/g, "").trim().replace(/\s+/g, "-").slice(0, 40) || "chat");
  $("export").addEventListener("click", () => {
    if (!conversation.length) return;
    download(fileName(current() ? current().title : "chat") + ".json", JSON.stringify(sft(conversation), null, 2) + "\n", "application/json");
  });
  $("export-all").addEventListener("click", () => {
    download("nanochat-chats.jsonl", chats.map((c) => JSON.stringify(sft(c.messages))).join("\n") + "\n", "application/x-ndjson");
  });
  $("import").addEventListener("click", () => $("import-file").click());
  function parseConversations(text) {
    let convs;
    const t = text.trim();
    try {
      const j = JSON.parse(t);
      convs = Array.isArray(j) && j.length && Array.isArray(j[0]) ? j : [j];
    } catch {
      convs = t.split("\n").filter((l) => l.trim()).map((l, i) => {
        try { return JSON.parse(l); } catch { throw new Error(`line ${i + 1} is not JSON`); }
      });
    }
    return convs.map((conv, i) => {
      if (!Array.isArray(conv) || !conv.length) throw new Error(`conversation ${i + 1} is not a non-empty list of messages`);
      return conv.map((m, j) => {
        if (!m || typeof m !== "object" || !["user", "assistant", "system"].includes(m.role) || typeof m.content !== "string")
          throw new Error(`conversation ${i + 1}, message ${j + 1}: each message needs a role (user, assistant or system) and a string content`);
        return { role: m.role, content: m.content };
      });
    });
  }
  $("import-file").addEventListener("change", async () => {
    const f = $("import-file").files[0];
    $("import-file").value = "";
    if (!f) return;
    try {
      const convs = parseConversations(await f.text());
      let last = null;
      for (const messages of convs) {
        const c = { id: newId(), title: titleOf(messages), named: false, created: Date.now(), updated: Date.now(), messages };
        chats.push(c); last = c.id;
      }
      switchTo(last); saveChats();
      hideError();
    } catch (e) {
      showError(`Could not import ${f.name}: ${e.message}. Expected the SFT format: a JSON list of {"role", "content"} messages, a list of such lists, or JSONL with one list per line.`, { kind: "import" });
    }
  });

  // ---------- markdown (marked, then DOMPurify; raw HTML in the text is shown as text) ----------
  const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const haveMarkdown = () => typeof window.marked !== "undefined" && typeof window.DOMPurify !== "undefined" && window.DOMPurify.isSupported;
  if (typeof window.marked !== "undefined") {
    window.marked.use({ gfm: true, breaks: true, renderer: { html(token) { return escapeHtml(token.text || token.raw || ""); } } });
  }
  if (typeof window.DOMPurify !== "undefined") {
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A") { node.setAttribute("target", "_blank"); node.setAttribute("rel", "noopener noreferrer nofollow"); }
    });
  }
  const PURIFY = { FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
                   FORBID_ATTR: ["style", "id", "name"], ALLOW_DATA_ATTR: false };
  function renderMarkdown(node, text) {
    if (!haveMarkdown()) { node.textContent = text; node.classList.add("plain"); return; }
    node.classList.add("md");
    node.innerHTML = window.DOMPurify.sanitize(window.marked.parse(text), PURIFY);
    for (const pre of node.querySelectorAll("pre")) {
      const code = pre.querySelector("code");
      const lang = code && (code.getAttribute("class") || "").replace(/^language-/, "");
      const wrap = el("div", { class: "code-wrap" });
      const copy = el("button", { type: "button", class: "link copy-code", "aria-label": "Copy code", text: "Copy code" });
      copy.addEventListener("click", () => copyText(pre.textContent, copy));
      pre.replaceWith(wrap);
      wrap.append(el("div", { class: "code-head" }, el("span", { text: lang || "code" }), copy), pre);
    }
  }
  async function copyText(text, button) {
    let ok = false;
    try { if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(text); ok = true; } } catch { /* fall back */ }
    if (!ok) {
      const ta = el("textarea", { "aria-hidden": "true" }); ta.value = text;
      ta.style.position = "fixed"; ta.style.opacity = "0";
      document.body.append(ta); ta.select();
      try { ok = document.execCommand("copy"); } catch { ok = false; }
      ta.remove();
    }
    if (button) {
      const label = button.textContent;
      button.textContent = ok ? "Copied" : "Copy failed";
      setTimeout(() => { button.textContent = label; }, 1500);
    }
  }

  // ---------- token probabilities ----------
  const pct = (lp) => { const p = Math.exp(lp) * 100; return p >= 10 ? p.toFixed(0) + "%" : p >= 1 ? p.toFixed(1) + "%" : p.toFixed(2) + "%"; };
  const showTok = (t) => t.replace(/ /g, "·").replace(/\n/g, "\\n").replace(/\t/g, "\\t") || "∅";
  function probColour(lp) {   // red (unlikely) → amber → green (likely), translucent so text stays readable
    const p = Math.max(0, Math.min(1, Math.exp(lp)));
    return `hsla(${Math.round(120 * p)}, 75%, 50%, 0.28)`;
  }
  function renderTokens(node, m) {
    node.classList.add("tokens");
    const spans = m.tokens.map((t, i) => {
      const s = el("span", { class: "tok", tabindex: i === 0 ? "0" : "-1", "data-i": String(i), "data-p": Math.exp(t.lp).toFixed(4),
                             "aria-label": `${t.t} (${pct(t.lp)})`, text: t.t });
      s.style.backgroundColor = probColour(t.lp);    // CSSOM, allowed by the CSP
      return s;
    });
    node.replaceChildren(...spans);
  }
  let popFor = null;
  function showPop(span) {
    const msgNode = span.closest(".msg"), i = Number(span.dataset.i);
    const m = conversation[Number(msgNode.dataset.index)];
    const t = m && m.tokens && m.tokens[i];
    if (!t) return;
    popFor = span;
    const pop = $("tok-pop");
    const rows = (t.top && t.top.length ? t.top : [[t.t, t.lp]]).slice(0, 5).map(([tt, lp]) =>
      el("tr", { class: tt === t.t ? "chosen" : "" }, el("td", { class: "t", text: showTok(tt) }), el("td", { text: pct(lp) }),
         el("td", {}, (() => { const b = el("span", { class: "bar" }); b.style.width = Math.max(1, Math.round(60 * Math.exp(lp))) + "px"; return b; })())));
    pop.replaceChildren(el("div", { class: "head", text: `“${showTok(t.t)}”: ${pct(t.lp)} (logprob ${t.lp.toFixed(3)})` }),
                        el("div", { class: "hint", text: "top alternatives at this step" }), el("table", {}, el("tbody", {}, ...rows)));
    pop.hidden = false;
    const r = span.getBoundingClientRect(), w = pop.offsetWidth, h = pop.offsetHeight;
    let x = Math.min(Math.max(4, r.left), window.innerWidth - w - 4), y = r.bottom + 6;
    if (y + h > window.innerHeight - 4) y = Math.max(4, r.top - h - 6);
    pop.style.left = x + "px"; pop.style.top = y + "px";
  }
  function hidePop() { $("tok-pop").hidden = true; popFor = null; }
  $("log").addEventListener("mouseover", (e) => { const s = e.target.closest(".tok"); if (s) showPop(s); });
  $("log").addEventListener("mouseout", (e) => { const s = e.target.closest(".tok"); if (s && !s.contains(e.relatedTarget) && document.activeElement !== s) hidePop(); });
  $("log").addEventListener("focusin", (e) => { const s = e.target.closest(".tok"); if (s) showPop(s); });
  $("log").addEventListener("focusout", (e) => { if (e.target.closest(".tok")) hidePop(); });
  // a tap (or click) toggles; whether it was open is read at pointerdown, before the focus and hover the tap also fires
  let openAtPress = false;
  $("log").addEventListener("pointerdown", (e) => { const s = e.target.closest(".tok"); openAtPress = !!s && popFor === s && !$("tok-pop").hidden; });
  $("log").addEventListener("click", (e) => { const s = e.target.closest(".tok"); if (s) { if (openAtPress) { hidePop(); s.blur(); } else showPop(s); } });
  $("log").addEventListener("scroll", (e) => { if (!(document.activeElement && document.activeElement.classList.contains("tok"))) hidePop(); });
  // one tab stop per reply: the arrow keys (and Home/End) move between its tokens
  $("log").addEventListener("keydown", (e) => {
    const s = e.target.closest && e.target.closest(".tok");
    if (!s) return;
    const all = [...s.parentNode.querySelectorAll(".tok")], i = all.indexOf(s);
    const j = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: all.length - 1 }[e.key];
    if (j === undefined || j < 0 || j >= all.length) return;
    e.preventDefault();
    s.tabIndex = -1; all[j].tabIndex = 0; all[j].focus();
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("tok-pop").hidden) hidePop(); });
  function setProbs(on) {
    showProbs = on; store.set("showProbs", on);
    $("probs-toggle").setAttribute("aria-pressed", String(on));
    hidePop(); render();
  }
  $("probs-toggle").addEventListener("click", () => setProbs(!showProbs));

  // ---------- conversation ----------
  let controller = null;       // AbortController of the request in flight
  let editing = -1;            // index of the user message being edited

  function metaText(meta) {
    if (!meta) return "";
    const parts = [];
    if (meta.tokens != null) parts.push(`${meta.tokens} token${meta.tokens === 1 ? "" : "s"}`);
    if (meta.tps != null) parts.push(`${meta.tps.toFixed(1)} tok/s`);
    if (meta.finish) parts.push(`finish: ${meta.finish}`);  // stop | length | stopped by you | error
    if (meta.meanLp != null) parts.push(`perplexity ${Math.exp(-meta.meanLp).toFixed(1)}`);   // exp(-mean logprob) of the reply's tokens
    if (meta.note) parts.push(meta.note);
    return parts.join(" · ");
  }
  function fillBubble(bubble, m) {
    bubble.className = "bubble";
    if (m.role === "assistant" && showProbs && m.tokens && m.tokens.length && !m.streaming) renderTokens(bubble, m);
    else if (m.role === "assistant") renderMarkdown(bubble, m.content);
    else { bubble.classList.add("plain"); bubble.textContent = m.content; }   // user text: text, never HTML
    if (m.streaming) bubble.classList.add("streaming");
  }

  function render() {
    const log = $("log");
    const nodes = [];
    if (!conversation.length) nodes.push(el("p", { id: "empty", text: "Ask something to start. Enter sends, Shift+Enter adds a new line." }));
    const busy = !!controller;
    conversation.forEach((m, i) => {
      const last = i === conversation.length - 1;
      const node = el("article", { class: "msg " + m.role, "aria-label": m.role === "user" ? "You" : "Assistant", "data-index": String(i) });
      node.append(el("div", { class: "who", "aria-hidden": "true", text: m.role === "user" ? "You" : m.role === "system" ? "System" : "nanochat" }));
      if (m.role === "user" && editing === i) {
        const ta = el("textarea", { "aria-label": "Edit message", id: "edit-input" });
        ta.value = m.content;
        const save = () => resendFrom(i, ta.value);
        ta.addEventListener("keydown", (e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); save(); }
          else if (e.key === "Escape") { e.preventDefault(); editing = -1; render(); focusMsgButton(i, "edit"); }
        });
        node.append(el("div", { class: "edit-box" }, ta, el("div", { class: "row" },
          el("button", { type: "button", onclick: () => { editing = -1; render(); focusMsgButton(i, "edit"); }, text: "Cancel" }),
          el("button", { type: "button", class: "primary", onclick: save, text: "Send edited message" }))));
      } else {
        const bubble = el("div", { class: "bubble" });
        fillBubble(bubble, m);
        node.append(bubble);
        const meta = el("div", { class: "meta" });
        if (m.role === "assistant") {
          meta.append(el("span", { class: "stats", text: m.streaming ? "generating…" : metaText(m.meta) }));
          if (!m.streaming) {
            const copy = el("button", { type: "button", class: "link", "data-action": "copy", "aria-label": "Copy this reply", text: "Copy" });
            copy.addEventListener("click", () => copyText(m.content, copy));
            meta.append(copy);
            if (showProbs && !(m.tokens && m.tokens.length)) meta.append(el("span", { class: "tok-legend", text: "no token probabilities for this reply" }));
          }
          if (last && !busy) meta.append(el("button", { type: "button", class: "link", "data-action": "regenerate", onclick: regenerate, text: "Regenerate" }));
        } else if (!busy && m.role === "user") {
          meta.append(el("button", { type: "button", class: "link", "data-action": "edit", "data-index": String(i),
            "aria-label": "Edit this message and resend from here", onclick: () => { editing = i; render(); const t = $("edit-input"); if (t) { t.focus(); t.setSelectionRange(t.value.length, t.value.length); } }, text: "Edit" }));
          if (last) meta.append(el("button", { type: "button", class: "link", "data-action": "regenerate", onclick: regenerate, text: "Get reply" }));
        }
        node.append(meta);
      }
      nodes.push(node);
    });
    log.replaceChildren(...nodes);
    log.setAttribute("aria-busy", String(busy));
    $("send").disabled = busy;
    $("stop").disabled = !busy;
    $("export").disabled = !conversation.length;
  }
  function focusMsgButton(i, action) {
    const b = $("log").querySelector(`[data-action="${action}"][data-index="${i}"]`);
    (b || $("input")).focus();
  }
  function scrollToEnd() { const log = $("log"); log.scrollTop = log.scrollHeight; }

  function buildBody() {
    const messages = [];
    if (extras.system.trim()) messages.push({ role: "system", content: extras.system });
    for (const m of conversation) if (!m.streaming && (m.role === "user" || m.content)) messages.push({ role: m.role, content: m.content });
    const body = { messages, stream: true, stream_options: { include_usage: true }, logprobs: true, top_logprobs: 5 };
    if ($("model").value) body.model = $("model").value;
    for (const n of Object.keys(KNOBS)) {
      if (n === "max_tokens" && !("max_tokens" in overrides)) continue;   // unset: the server's default, clipped to fit
      const v = value(n);
      if (v !== undefined && v !== null) body[n] = Number(n === "max_tokens" ? $("max_tokens").value : v);
    }
    const stops = stopStrings();
    if (stops.length) body.stop = stops.slice(0, 4);
    if (String(extras.seed).trim() !== "" && Number.isFinite(Number(extras.seed))) body.seed = Math.trunc(Number(extras.seed));
    return body;
  }

  async function generate() {
    if (controller) return;
    hideError();
    if (stopStrings().length > 4) { showError("At most 4 stop strings: remove some under Settings → Advanced → Stop strings.", { kind: "settings" }); return; }
    const body = buildBody();
    const reply = { role: "assistant", content: "", streaming: true, meta: null, tokens: [] };
    ensureChat();
    const conv = conversation;   // the chat this reply belongs to (the user may switch chats meanwhile)
    conv.push(reply);
    saveChats();
    controller = new AbortController();
    const myController = controller;
    render(); scrollToEnd();
    const bubble = () => { const n = $("log").lastElementChild; return n && n.querySelector(".bubble"); };
    let chunks = 0, usage = null, finish = null, done = false, t0 = performance.now(), tFirst = null, tEnd = null;
    let note = "", failed = false, drawPending = false, lastSave = Date.now();
    const redraw = () => {
      if (drawPending) return;
      drawPending = true;
      requestAnimationFrame(() => { drawPending = false; const b = bubble(); if (b && reply.streaming) { fillBubble(b, reply); scrollToEnd(); } });
    };
    try {
      const res = await fetch("/v1/chat/completions", {
        method: "POST", signal: myController.signal,
        headers: Object.assign({ "Content-Type": "application/json", Accept: "text/event-stream" }, authHeaders()),
        body: JSON.stringify(body),
      });
      if (!res.ok) {
        const msg = await errorMessage(res);
        failed = true;
        showError(msg, { askKey: res.status === 401, kind: String(res.status) });
      } else {
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        const handle = (data) => {
          if (data === "[DONE]") { done = true; return; }
          let obj;
          try { obj = JSON.parse(data); } catch { return; }
          if (obj.error) {
            const e = obj.error;
            failed = true; done = true;
            note = "error";
            showError(`The server reported an error while generating: ${(e && (e.message || e.type)) || JSON.stringify(e)}`, { kind: "stream" });
            return;
          }
          if (obj.usage) usage = obj.usage;
          for (const ch of obj.choices || []) {
            if (ch.index) continue;                 // the page asks for one choice
            const lp = ch.logprobs && ch.logprobs.content;
            if (Array.isArray(lp)) for (const t of lp) {
              if (t && typeof t.logprob === "number")
                reply.tokens.push({ t: String(t.token), lp: t.logprob,
                                    top: (t.top_logprobs || []).filter((x) => x && typeof x.logprob === "number").map((x) => [String(x.token), x.logprob]) });
            }
            const piece = ch.delta && ch.delta.content;
            if (piece) {
              if (tFirst === null) tFirst = performance.now();
              chunks++;
              reply.content += piece;
              redraw();
            }
            if (ch.finish_reason) { finish = ch.finish_reason; tEnd = performance.now(); }
          }
        };
        while (!done) {
          const { value: chunk, done: eof } = await reader.read();
          if (eof) break;
          buf += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, "\n");
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const event = buf.slice(0, cut); buf = buf.slice(cut + 2);
            const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
            if (data) handle(data);
            if (Date.now() - lastSave > 1000) { lastSave = Date.now(); saveChats(); }   // a reload mid-reply keeps what came so far
            if (done) break;
          }
        }
        if (done) { try { await reader.cancel(); } catch { /* already closed */ } }
        if (!done && !failed) {
          // The stream ended without [DONE]: the connection was cut.
          if (!finish) {
            failed = true; note = "connection lost";
            showError("Connection lost: the server closed the connection before the reply finished. The partial reply is kept; press Regenerate to try again.", { kind: "dropped" });
          }
        }
      }
    } catch (e) {
      if (e && e.name === "AbortError") { note = "stopped"; }
      else {
        failed = true;
        note = reply.content ? "connection lost" : "";
        showError(reply.content
          ? "Connection lost: the connection to the server dropped in the middle of the reply. The partial reply is kept; press Regenerate to try again."
          : "Cannot reach the server: the connection failed or dropped. Check that `nanochat serve` is running and try again.", { kind: "dropped" });
      }
    } finally {
      const end = tEnd || performance.now();
      const tokens = usage && usage.completion_tokens != null ? usage.completion_tokens : chunks;
      const secs = tFirst !== null ? (end - tFirst) / 1000 : (end - t0) / 1000;
      reply.streaming = false;
      // tokens/s over the streaming part (first token to last); a one-token reply counts from the request
      const tps = tokens > 1 && secs > 0 ? (tokens - 1) / secs : tokens === 1 ? 1000 / (end - t0) : null;
      const meanLp = reply.tokens.length ? reply.tokens.reduce((a, t) => a + t.lp, 0) / reply.tokens.length : null;
      reply.meta = { tokens, tps, finish: finish || (note === "stopped" ? "stopped by you" : failed ? "error" : "unknown"),
                     note: note === "connection lost" ? note : "", meanLp };
      if (failed && !reply.content && conv[conv.length - 1] === reply) conv.pop();  // nothing to show: drop the empty reply
      if (controller === myController) controller = null;
      saveChats();
      render(); scrollToEnd();
      if (document.activeElement === document.body || !document.activeElement) $("input").focus();
    }
  }

  function send() {
    const text = $("input").value;
    if (!text.trim() || controller) return;
    ensureChat();
    conversation.push({ role: "user", content: text });
    $("input").value = ""; autosize();
    editing = -1;
    saveChats();
    generate();
  }
  function resendFrom(i, text) {
    if (controller || !text.trim()) return;
    conversation.splice(i);
    conversation.push({ role: "user", content: text });
    editing = -1;
    saveChats();
    generate();
    $("input").focus();
  }
  function regenerate() {
    if (controller) return;
    if (conversation.length && conversation[conversation.length - 1].role === "assistant") conversation.pop();
    if (!conversation.length) return;
    generate();
    $("input").focus();
  }
  function stop() { if (controller) controller.abort(); }
  function newChat() {
    stop(); controller = null; editing = -1; hideError();
    switchTo(null);
    $("input").focus();
  }

  function autosize() { const t = $("input"); t.style.height = "auto"; t.style.height = Math.min(t.scrollHeight + 2, 192) + "px"; }
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  $("input").addEventListener("input", autosize);
  $("stop").addEventListener("click", () => { stop(); $("input").focus(); });
  $("new-chat").addEventListener("click", newChat);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && controller && !e.defaultPrevented) stop(); });
  window.addEventListener("storage", (e) => {   // another tab changed the chats
    if (e.key === "nanochat.chats" && !controller) {
      chats = store.get("chats", []); if (!current()) currentId = null;
      conversation = current() ? current().messages : [];
      render(); renderChatList();
    }
  });

  // ---------- start ----------
  applySettingsToForm();
  $("probs-toggle").setAttribute("aria-pressed", String(showProbs));
  setSettingsOpen(store.get("settingsOpen", false) && wide(), false);
  setSidebarOpen(wide() && store.get("sidebarOpen", true), false);
  render(); renderChatList(); scrollToEnd();
  loadModels();
  $("input").focus();
  window.nanochatUI = {   // for tests / debugging
    get conversation() { return conversation; }, get chats() { return chats; }, get defaults() { return defaults; },
    get overrides() { return overrides; }, get markdown() { return haveMarkdown(); }, parseConversations,
  };
})();
