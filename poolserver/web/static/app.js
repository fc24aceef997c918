// qazpool page: reads the read-only API, renders with DOM calls (never innerHTML of data).
"use strict";
(function () {
  const API = "/api/v1";
  const I18N = window.QAZ_I18N;
  const KZ_OFFSET_MS = 5 * 3600 * 1000; // shown in Kazakhstan time (UTC+5)
  const state = { lang: "kk", langs: ["kk", "ru", "en"], pool: null, history: null,
                  blocks: [], blocksNext: null, account: null, token: null,
                  payments: [], paymentsNext: null, workers: null, balance: null };

  const $ = (id) => document.getElementById(id);
  function t(key, vars) {
    let s = (I18N[state.lang] && I18N[state.lang][key]) || I18N.en[key] || key;
    for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(String(v));
    return s;
  }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  // ---- formatting ------------------------------------------------------------------------
  function btc(sats) {
    const neg = sats < 0, s = Math.abs(sats);
    const whole = Math.floor(s / 1e8), frac = String(s % 1e8).padStart(8, "0");
    return (neg ? "−" : "") + whole.toLocaleString("en-US").replace(/,/g, " ") + "." + frac;
  }
  function rate(hps) {
    const units = [["EH/s", 1e18], ["PH/s", 1e15], ["TH/s", 1e12], ["GH/s", 1e9], ["MH/s", 1e6], ["kH/s", 1e3]];
    for (const [u, scale] of units) if (hps >= scale) return (hps / scale).toFixed(hps / scale >= 100 ? 0 : 2) + " " + u;
    return Math.round(hps) + " H/s";
  }
  function number(x) {
    if (x >= 1e12) return (x / 1e12).toFixed(2) + " T";
    if (x >= 1e9) return (x / 1e9).toFixed(2) + " G";
    if (x >= 1e6) return (x / 1e6).toFixed(2) + " M";
    if (x >= 1e3) return (x / 1e3).toFixed(2) + " k";
    if (x > 0 && x < 0.001) return x.toExponential(2);
    return String(Math.round(x * 1000) / 1000);
  }
  function kzTime(iso, withDate) {
    if (!iso) return "—";
    const d = new Date(Date.parse(iso) + KZ_OFFSET_MS).toISOString();
    return withDate === false ? d.slice(11, 16) : d.slice(0, 10) + " " + d.slice(11, 16);
  }
  function shortHash(h) { return h ? h.slice(0, 10) + "…" + h.slice(-8) : "—"; }

  // ---- API -------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body, retryAfter) { super("HTTP " + status); this.status = status; this.body = body; this.retryAfter = retryAfter; }
  }
  async function get(path, token) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const resp = await fetch(API + path, { headers, cache: "no-store", credentials: "omit" });
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) throw new ApiError(resp.status, body, resp.headers.get("Retry-After"));
    return body;
  }
  function errorText(err) {
    if (err instanceof ApiError) {
      if (err.status === 404 || err.status === 401) return t("lookup_failed");
      if (err.status === 429) return t("rate_limited", { s: err.retryAfter || 60 });
      if (err.status === 422) return t("bad_account");
    }
    return t("error");
  }

  // ---- language --------------------------------------------------------------------------
  function setLang(lang) {
    state.lang = state.langs.includes(lang) ? lang : state.langs[0];
    document.documentElement.lang = state.lang;
    try { localStorage.setItem("qazpool.lang", state.lang); } catch (e) { /* private mode */ }
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const b of $("langs").children) b.setAttribute("aria-pressed", String(b.dataset.lang === state.lang));
    renderAll();
  }
  function buildLangs() {
    const nav = $("langs");
    nav.replaceChildren();
    for (const l of state.langs) {
      const b = el("button", { type: "button", "data-lang": l, title: I18N[l].lang_name, "aria-pressed": "false" }, l);
      b.addEventListener("click", () => setLang(l));
      nav.append(b);
    }
  }

  // ---- overview --------------------------------------------------------------------------
  function renderPool() {
    const p = state.pool;
    if (!p) return;
    $("pool-name").textContent = p.name;
    document.title = p.name + " — " + t("title");
    $("v-hashrate").textContent = rate(p.hashrate_hs);
    $("h-hashrate").textContent = t("hashrate_hint", { n: Math.round(p.hashrate_window_s / 60) });
    $("v-workers").textContent = p.workers;
    $("h-workers").textContent = t("workers_hint", { n: p.miners });
    $("v-difficulty").textContent = number(p.network_difficulty);
    $("h-height").textContent = t("height_hint", { n: p.height });
    $("v-blocks").textContent = p.blocks_found;
    $("v-fee").textContent = (p.fee_bps / 100).toFixed(2).replace(/\.?0+$/, "") + " %";
    $("v-pplns").textContent = number(p.pplns.window_difficulty);
    $("h-pplns").textContent = t("pplns_hint", { k: p.pplns.k, fill: Math.round(p.pplns.window_fill * 100) + " %" });
    $("updated").textContent = t("updated", { t: kzTime(p.time) + " UTC+5" });
  }

  function renderChart() {
    const box = $("chart");
    const pts = (state.history && state.history.points) || [];
    const W = Math.max(320, box.clientWidth || 800), H = W < 500 ? 200 : 240;
    const padL = 64, padR = 12, padT = 12, padB = 26;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const add = (name, attrs, text) => {
      const n = document.createElementNS(ns, name);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text !== undefined) n.textContent = text;
      svg.append(n);
      return n;
    };
    const max = Math.max(0, ...pts.map((p) => p.hashrate_hs));
    box.setAttribute("aria-label", t("chart_title"));
    if (!pts.length || max === 0) {
      add("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, t("chart_empty"));
      box.replaceChildren(svg);
      return;
    }
    // three gridlines at round values (1, 2, 2.5 or 5 x a power of ten)
    const raw = max / 3, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const stepSize = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s * 3 >= max * 1.05) || 10 * mag;
    const top = stepSize * 3;
    const x = (i) => padL + (W - padL - padR) * (pts.length === 1 ? 0.5 : i / (pts.length - 1));
    const y = (v) => padT + (H - padT - padB) * (1 - v / top);
    for (let g = 0; g <= 3; g++) {
      const v = stepSize * g;
      add("line", { x1: padL, x2: W - padR, y1: y(v), y2: y(v), class: "grid" });
      add("text", { x: padL - 8, y: y(v) + 4, "text-anchor": "end", class: "axis" }, g === 0 ? "0" : rate(v));
    }
    const step = Math.max(1, Math.round(pts.length / (W < 500 ? 4 : 8)));
    for (let i = 0; i < pts.length; i += step) {
      add("text", { x: x(i), y: H - 8, "text-anchor": "middle", class: "axis" }, kzTime(pts[i].start, false));
    }
    const line = pts.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p.hashrate_hs).toFixed(1)}`).join("");
    add("path", { d: `${line}L${x(pts.length - 1).toFixed(1)},${y(0)}L${x(0).toFixed(1)},${y(0)}Z`, class: "area" });
    add("path", { d: line, class: "line" });
    box.replaceChildren(svg);
  }

  function badge(status, kind) {
    const cls = { matured: "ok", confirmed: "ok", broadcast: "ok", pending: "wait", orphaned: "bad", rejected: "bad", failed: "bad" }[status] || "wait";
    return el("span", { class: "badge " + cls }, t(kind + status));
  }
  // A table row; each cell carries its column's name for the stacked phone layout (app.css).
  function row(keys, ...cells) {
    cells.forEach((c, i) => c.setAttribute("data-label", t(keys[i])));
    return el("tr", {}, ...cells);
  }
  const BLOCK_COLS = ["col_height", "col_hash", "col_reward", "col_status", "col_found"];
  const WORKER_COLS = ["col_worker", "col_hashrate", "col_last_share", "col_shares"];
  const PAY_COLS = ["col_date", "col_amount", "col_txid", "col_status"];
  function emptyRow(tbody, cols, key) {
    tbody.append(el("tr", {}, el("td", { class: "empty", colspan: String(cols) }, t(key))));
  }
  function renderBlocks() {
    const tbody = $("t-blocks").tBodies[0];
    tbody.replaceChildren();
    if (!state.blocks.length) emptyRow(tbody, 5, "no_blocks");
    for (const b of state.blocks) {
      tbody.append(row(BLOCK_COLS,
        el("td", { class: "num" }, b.height),
        el("td", { class: "hash", title: b.hash }, shortHash(b.hash)),
        el("td", { class: "num mono" }, btc(b.reward_sats)),
        el("td", {}, badge(b.status, "status_")),
        el("td", {}, kzTime(b.found_at))));
    }
    $("more-blocks").hidden = !state.blocksNext;
  }

  // ---- account ---------------------------------------------------------------------------
  function renderAccount() {
    if (!state.account || !state.balance) { $("acct").hidden = true; return; }
    $("acct").hidden = false;
    $("acct-name").textContent = state.account;
    const b = state.balance;
    $("b-immature").textContent = btc(b.immature_sats);
    $("b-mature").textContent = btc(b.mature_sats);
    $("b-pending").textContent = btc(b.pending_payout_sats);
    $("b-paid").textContent = btc(b.paid_sats);
    const wb = $("t-workers").tBodies[0];
    wb.replaceChildren();
    if (!state.workers.length) emptyRow(wb, 4, "no_workers");
    for (const w of state.workers) {
      wb.append(row(WORKER_COLS, el("td", {}, w.worker), el("td", { class: "num" }, rate(w.hashrate_hs)),
                   el("td", {}, kzTime(w.last_share_at)), el("td", { class: "num" }, w.shares)));
    }
    const pb = $("t-payments").tBodies[0];
    pb.replaceChildren();
    if (!state.payments.length) emptyRow(pb, 4, "no_payments");
    for (const p of state.payments) {
      pb.append(row(PAY_COLS, el("td", {}, kzTime(p.created_at)), el("td", { class: "num mono" }, btc(p.amount_sats)),
                   el("td", { class: "hash", title: p.txid || "" }, p.txid ? shortHash(p.txid) : "—"),
                   el("td", {}, badge(p.status, "pay_"))));
    }
    $("more-payments").hidden = !state.paymentsNext;
  }

  function message(text, isError) {
    const m = $("lookup-msg");
    m.textContent = text || "";
    m.className = "msg" + (isError ? " error" : "");
  }

  async function lookup(ev) {
    ev.preventDefault();
    const account = $("in-account").value.trim(), token = $("in-token").value.trim();
    if (!/^[A-Za-z0-9_\-@]{1,64}$/.test(account)) { message(t("bad_account"), true); return; }
    if (!token) { message(t("need_token"), true); return; }
    $("btn-show").disabled = true;
    message(t("loading"));
    try {
      const a = encodeURIComponent(account);
      const [balance, workers, payments] = await Promise.all([
        get(`/accounts/${a}/balance`, token), get(`/accounts/${a}/workers`, token),
        get(`/accounts/${a}/payments?limit=10`, token)]);
      Object.assign(state, { account, token, balance, workers: workers.items,
                             payments: payments.items, paymentsNext: payments.next_cursor });
      $("in-token").value = "";
      message("");
      renderAccount();
    } catch (err) {
      Object.assign(state, { account: null, token: null, balance: null });
      renderAccount();
      message(errorText(err), true);
    } finally {
      $("btn-show").disabled = false;
    }
  }

  async function morePayments() {
    try {
      const page = await get(`/accounts/${encodeURIComponent(state.account)}/payments?limit=10&cursor=${state.paymentsNext}`, state.token);
      state.payments = state.payments.concat(page.items);
      state.paymentsNext = page.next_cursor;
      renderAccount();
    } catch (err) { message(errorText(err), true); }
  }
  async function moreBlocks() {
    try {
      const page = await get(`/blocks?limit=10&cursor=${state.blocksNext}`);
      state.blocks = state.blocks.concat(page.items);
      state.blocksNext = page.next_cursor;
      renderBlocks();
    } catch (err) { /* the next refresh tries again */ }
  }
  function signOut() {
    Object.assign(state, { account: null, token: null, balance: null, workers: null, payments: [] });
    message("");
    renderAccount();
  }

  function renderAll() { renderPool(); renderChart(); renderBlocks(); renderAccount(); }

  async function refresh() {
    try {
      const [pool, history, blocks] = await Promise.all([get("/pool"), get("/pool/hashrate?hours=24"), get("/blocks?limit=10")]);
      state.pool = pool;
      state.history = history;
      if (state.blocks.length <= 10) { state.blocks = blocks.items; state.blocksNext = blocks.next_cursor; }
      if (state.langs.join() !== pool.languages.join()) {
        state.langs = pool.languages;
        buildLangs();
        setLang(state.lang);
      } else {
        renderAll();
      }
    } catch (err) {
      $("updated").textContent = t("error");
    }
  }

  function start() {
    let saved = null;
    try { saved = localStorage.getItem("qazpool.lang"); } catch (e) { /* private mode */ }
    buildLangs();
    setLang(saved || (navigator.language || "").slice(0, 2) || "kk");
    $("lookup").addEventListener("submit", lookup);
    $("more-payments").addEventListener("click", morePayments);
    $("more-blocks").addEventListener("click", moreBlocks);
    $("btn-signout").addEventListener("click", signOut);
    let resize = null;
    window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(renderChart, 150); });
    refresh();
    setInterval(refresh, 30000);
  }
  document.addEventListener("DOMContentLoaded", start);
})();
