// oxcelize live console. Plain browser JavaScript, no build step, no external resources.
// State comes from three places: the chat REST endpoints (conversations, job snapshots, cancel), the health
// endpoint (service figures, every few seconds) and one WebSocket that watches many chats with
// `subscribe` mode `add` and resumes from the last seen `seq` after a reconnect.
"use strict";

(() => {
  const settings = JSON.parse(document.getElementById("console-settings").textContent);
  const prefix = settings.api_prefix;
  const authOn = Boolean(settings.auth.rest || settings.auth.websocket);
  const TOKEN_KEY = "oxcelize.console.token";
  const HEALTH_EVERY_MS = 3000;
  const CONVERSATIONS_EVERY_MS = 4000;
  const FINISHED_JOBS_SHOWN = 25;
  // The server's per-connection subscription cap; the most recently updated chats are watched.
  const MAX_WATCHED = Math.max(1, settings.websocket.max_subscriptions || 20);

  const RANK = { pending: 0, running: 1, completed: 2, failed: 2, cancelled: 2, skipped: 2 };
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    tokenWanted: false,
    conversations: new Map(), // chat_id -> list row
    jobs: new Map(), // job_id -> job view model
    lastSeq: new Map(), // chat_id -> highest seq applied
    watched: new Set(), // chats the console wants events for
    filter: null, // chat_id whose jobs are shown, or null for all
    socket: null,
    socketReady: false,
    subscribed: new Set(), // chats a subscribe/resume was sent for on the current socket
    confirmed: new Set(), // chats the server confirmed on the current socket (events flow)
    reconnectDelay: 1000,
    reconnectTimer: null,
    connection: { state: "idle", text: "Starting…" },
    health: null,
    healthAt: null,
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const setText = (node, text) => {
    if (node.textContent !== text) node.textContent = text;
  };
  const setAttr = (node, name, value) => {
    if (value === null || value === undefined) node.removeAttribute(name);
    else if (node.getAttribute(name) !== String(value)) node.setAttribute(name, String(value));
  };
  const number = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");
  const fileName = (path) => String(path || "").split("/").pop();
  const shortId = (id) => String(id || "").slice(0, 8);

  function duration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds) || seconds < 0) return "–";
    if (seconds < 1) return "<1 s";
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function ago(timestamp) {
    const t = Date.parse(timestamp);
    if (!isFinite(t)) return "";
    return `${duration(Math.max(0, (Date.now() - t) / 1000))} ago`;
  }

  // ---- REST ------------------------------------------------------------------------------------------

  class AuthRequired extends Error {}

  async function api(path, options = {}) {
    if (settings.auth.rest && !state.token) throw new AuthRequired("token required");
    const headers = new Headers(options.headers || {});
    if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
    const res = await fetch(prefix + path, { ...options, headers, cache: "no-store" });
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (res.status === 401) {
      askToken("The server refused the token for REST calls (401). Enter a valid token.");
      throw new AuthRequired("unauthorized");
    }
    if (!res.ok) {
      const error = new Error((body && body.message) || `HTTP ${res.status}`);
      error.status = res.status;
      throw error;
    }
    return body ? body.data : null;
  }

  function showNotice(text) {
    const notice = $("notice");
    if (!text) {
      notice.hidden = true;
      return;
    }
    setText(notice, text);
    notice.hidden = false;
  }

  // ---- token -----------------------------------------------------------------------------------------

  function askToken(reason) {
    state.tokenWanted = true;
    setConnection("auth", "Token required");
    const dialog = $("token-dialog");
    setText($("token-reason"), reason);
    if (!dialog.open) {
      $("token-input").value = "";
      dialog.showModal();
    }
  }

  function saveToken(token) {
    state.token = token;
    state.tokenWanted = false;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("token-button").hidden = !(authOn || token);
    closeSocket();
    refreshConversations();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    $("token-dialog").close();
    saveToken(token);
  });
  $("token-forget").addEventListener("click", () => {
    $("token-dialog").close();
    saveToken("");
    if (authOn) askToken("Token forgotten. This server asks for a bearer token.");
  });
  // Dismissed (Escape) while a token is already set: carry on with it; a refusal brings the prompt back.
  $("token-dialog").addEventListener("cancel", () => {
    if (!state.token) return;
    state.tokenWanted = false;
    if (state.socketReady) setConnection("live", liveText());
    refreshConversations();
  });
  $("token-button").addEventListener("click", () =>
    askToken(state.token ? "Replace the token this tab uses." : "This server asks for a bearer token."),
  );

  // ---- jobs: one view model per job, fed by REST snapshots and events ---------------------------------

  function job(jobId, chatId) {
    let j = state.jobs.get(jobId);
    if (!j) {
      j = {
        job_id: jobId,
        chat_id: chatId,
        status: "pending",
        kind: null,
        total_steps: 0,
        steps: [],
        overall: 0,
        outputs: [],
        error: null,
        position: null,
        submitted_at: null,
        started_at: null,
        completed_at: null,
        duration_ms: null,
        cancelRequested: false,
        startedLocal: null,
      };
      state.jobs.set(jobId, j);
    }
    return j;
  }

  // Statuses only move forward (pending → running → terminal), so a stale snapshot never rolls back an event.
  function advance(current, next) {
    if (!next) return current;
    if (TERMINAL.has(current)) return current;
    return (RANK[next] ?? 0) >= (RANK[current] ?? 0) ? next : current;
  }

  function step(j, index, stepId, operation) {
    let s = j.steps[index - 1];
    if (!s) {
      s = {
        step_id: stepId || null,
        step_index: index,
        operation: operation || "",
        status: "pending",
        progress: 0,
        rows_processed: null,
        rows_total: null,
        phase: null,
        eta_seconds: null,
        message: "",
        download_url: null,
        output_file_path: null,
        error: null,
      };
      j.steps[index - 1] = s;
    }
    if (stepId) s.step_id = stepId;
    if (operation) s.operation = operation;
    return s;
  }

  function mergeSnapshot(chatId, snapshot) {
    const j = job(snapshot.job_id, chatId);
    j.status = advance(j.status, snapshot.status);
    if (TERMINAL.has(snapshot.status)) j.status = snapshot.status;
    j.kind = snapshot.kind || j.kind;
    j.submitted_at = snapshot.submitted_at || j.submitted_at;
    j.started_at = snapshot.started_at || j.started_at;
    j.completed_at = snapshot.completed_at || j.completed_at;
    j.error = snapshot.error || j.error;
    j.cancelRequested = j.cancelRequested || Boolean(snapshot.cancel_requested);
    if (typeof snapshot.progress === "number") j.overall = Math.max(j.overall, snapshot.progress);
    const steps = Array.isArray(snapshot.steps) ? snapshot.steps : [];
    j.total_steps = Math.max(j.total_steps, steps.length);
    const results = (snapshot.result && Array.isArray(snapshot.result.results)) ? snapshot.result.results : [];
    steps.forEach((raw, i) => {
      const s = step(j, raw.step_index || i + 1, raw.step_id, raw.operation);
      s.status = advance(s.status, raw.status);
      if (raw.status === "skipped" || raw.status === "failed") s.status = raw.status;
      if (typeof raw.progress === "number") s.progress = Math.max(s.progress, raw.progress);
      if (raw.error_message) s.error = raw.error_message;
      if (raw.output_file) s.output_file_path = raw.output_file;
      const result = results.find((r) => r && r.step_id === raw.step_id);
      if (result && result.download_url) s.download_url = result.download_url;
    });
    const outputs = snapshot.result && Array.isArray(snapshot.result.output_files) ? snapshot.result.output_files : [];
    if (outputs.length) j.outputs = outputs.filter((o) => o && typeof o === "object");
  }

  function applyEvent(ev) {
    const chatId = ev.chat_id;
    switch (ev.type) {
      case "workflow_queued": {
        const j = job(ev.job_id, chatId);
        j.total_steps = ev.total_steps || j.total_steps;
        j.position = ev.position ?? null;
        j.submitted_at = j.submitted_at || ev.timestamp;
        break;
      }
      case "workflow_started": {
        const j = job(ev.job_id, chatId);
        j.status = advance(j.status, "running");
        j.kind = ev.kind || j.kind;
        j.total_steps = ev.total_steps || j.total_steps;
        j.started_at = j.started_at || ev.timestamp;
        j.position = null;
        (ev.steps || []).forEach((s) => step(j, s.step_index, s.step_id, s.operation));
        scheduleConversations();
        break;
      }
      case "progress": {
        if (!ev.job_id) break;
        const j = job(ev.job_id, chatId);
        j.status = advance(j.status, "running");
        j.total_steps = ev.total_steps || j.total_steps;
        const s = step(j, ev.step_index || 1, ev.step_id, ev.operation);
        if (ev.status === "failed") s.status = "failed";
        else s.status = advance(s.status, ev.status);
        if (typeof ev.progress === "number" && ev.status !== "failed") s.progress = Math.max(s.progress, ev.progress);
        // Intermediate progress events carry rows, phase and ETA; older servers send only 0 and 100.
        for (const key of ["rows_processed", "rows_total", "phase", "eta_seconds"]) {
          if (key in ev) s[key] = ev[key];
        }
        if (ev.status === "completed" && typeof s.rows_total === "number") s.rows_processed = s.rows_total;
        if (ev.status === "completed") s.eta_seconds = null;
        s.message = ev.message || s.message;
        if (typeof ev.overall_progress === "number") j.overall = Math.max(j.overall, ev.overall_progress);
        break;
      }
      case "step_result": {
        const j = job(ev.job_id, chatId);
        const s = step(j, ev.step_index || 1, ev.step_id, ev.operation);
        s.status = advance(s.status, "completed");
        s.progress = 100;
        if (ev.result) {
          s.download_url = ev.result.download_url || s.download_url;
          s.output_file_path = ev.result.output_file_path || s.output_file_path;
        }
        break;
      }
      case "error": {
        if (!ev.job_id) break;
        const j = job(ev.job_id, chatId);
        const s = j.steps.find((x) => x && x.step_id === ev.step_id);
        if (s) s.error = ev.message;
        break;
      }
      case "workflow_completed": {
        const j = job(ev.job_id, chatId);
        j.status = "completed";
        j.overall = 100;
        j.completed_at = ev.timestamp;
        j.duration_ms = ev.duration_ms ?? j.duration_ms;
        if (Array.isArray(ev.output_files)) j.outputs = ev.output_files;
        scheduleConversations();
        break;
      }
      case "workflow_failed": {
        if (!ev.job_id) break;
        const j = job(ev.job_id, chatId);
        j.status = ev.cancelled ? "cancelled" : "failed";
        j.error = ev.error || ev.message || j.error;
        j.completed_at = ev.timestamp;
        // Steps that never ran are skipped; a step cut short by a failure failed.
        for (const s of j.steps) {
          if (s && s.status === "pending") s.status = "skipped";
          else if (s && s.status === "running") s.status = ev.cancelled ? "skipped" : "failed";
        }
        scheduleConversations();
        break;
      }
      case "conversation_deleted":
        forgetChat(chatId);
        scheduleConversations();
        break;
      case "message_added":
      case "bot_state":
        scheduleConversations();
        break;
      default:
        break;
    }
    render();
  }

  function forgetChat(chatId) {
    state.conversations.delete(chatId);
    state.watched.delete(chatId);
    state.subscribed.delete(chatId);
    state.confirmed.delete(chatId);
    state.lastSeq.delete(chatId);
    for (const [id, j] of state.jobs) if (j.chat_id === chatId) state.jobs.delete(id);
    if (state.filter === chatId) state.filter = null;
  }

  async function loadJobs(chatId) {
    try {
      const data = await api(`/chat/workflows/${encodeURIComponent(chatId)}/jobs`);
      for (const snapshot of (data && data.jobs) || []) mergeSnapshot(chatId, snapshot);
      render();
    } catch (error) {
      if (error.status === 404) forgetChat(chatId);
      else if (!(error instanceof AuthRequired)) showNotice(`Could not load jobs: ${error.message}`);
    }
  }

  async function cancelJob(j, button) {
    button.disabled = true;
    setText(button, "Cancelling…");
    try {
      const data = await api(
        `/chat/workflows/${encodeURIComponent(j.chat_id)}/jobs/${encodeURIComponent(j.job_id)}/cancel`,
        { method: "POST" },
      );
      j.cancelRequested = true;
      if (data) mergeSnapshot(j.chat_id, data);
      showNotice("");
    } catch (error) {
      if (!(error instanceof AuthRequired)) showNotice(`Cancel failed: ${error.message}`);
      button.disabled = false;
      setText(button, "Cancel");
      loadJobs(j.chat_id);
    }
    render();
  }

  // Downloads: a plain link, unless the REST API wants the token, then fetched with it and saved.
  async function download(url, name) {
    try {
      const res = await fetch(url, { headers: { Authorization: `Bearer ${state.token}` } });
      if (res.status === 401) return askToken("The server refused the token for the download (401).");
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const href = URL.createObjectURL(await res.blob());
      const a = el("a");
      a.href = href;
      a.download = name;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 10000);
    } catch (error) {
      showNotice(`Download failed: ${error.message}`);
    }
  }

  function downloadLink(url, label) {
    const a = el("a", "download", label);
    a.href = url;
    a.download = label;
    a.title = `Download ${label}`;
    a.addEventListener("click", (event) => {
      if (!state.token) return;
      event.preventDefault();
      download(url, label);
    });
    return a;
  }

  // ---- conversations ---------------------------------------------------------------------------------

  let conversationsTimer = null;
  let conversationsSoon = null;

  function scheduleConversations() {
    if (conversationsSoon) return;
    conversationsSoon = setTimeout(() => {
      conversationsSoon = null;
      refreshConversations();
    }, 400);
  }

  async function refreshConversations() {
    clearTimeout(conversationsTimer);
    conversationsTimer = setTimeout(refreshConversations, CONVERSATIONS_EVERY_MS);
    if (!settings.chat_workflows_enabled) return;
    if (state.tokenWanted) return;
    try {
      const data = await api("/chat/workflows?limit=100");
      const rows = (data && data.conversations) || [];
      const seen = new Set();
      for (const row of rows) {
        seen.add(row.chat_id);
        state.conversations.set(row.chat_id, row);
      }
      for (const id of [...state.conversations.keys()]) if (!seen.has(id)) forgetChat(id);
      showNotice("");
      updateWatched();
      render();
    } catch (error) {
      if (!(error instanceof AuthRequired)) showNotice(`Could not load conversations: ${error.message}`);
    }
  }

  const byRecent = (a, b) => String(b.updated_at || "").localeCompare(String(a.updated_at || ""));

  function updateWatched() {
    const wanted = [...state.conversations.values()].sort(byRecent).slice(0, MAX_WATCHED).map((c) => c.chat_id);
    const next = new Set(wanted);
    const added = wanted.filter((id) => !state.watched.has(id));
    for (const id of state.watched) {
      if (!next.has(id) && state.subscribed.has(id)) send({ type: "unsubscribe", chat_id: id });
      if (!next.has(id)) {
        state.subscribed.delete(id);
        state.confirmed.delete(id);
      }
    }
    state.watched = next;
    if (!state.socket) connect();
    else if (state.socketReady) added.forEach(subscribe);
    // Without a socket the console still shows job state: poll the watched chats' jobs.
    if (!state.socketReady) wanted.forEach(loadJobs);
  }

  // ---- WebSocket -------------------------------------------------------------------------------------

  function socketUrl(chatId) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const path = `/${encodeURIComponent(chatId)}`;
    if (settings.websocket.same_origin) return `${scheme}//${location.host}/ws/chat${path}`;
    return `${scheme}//${location.hostname}:${settings.websocket.port}/chat${path}`;
  }

  function send(message) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
  }

  // Resumes from the last applied seq when known (after a reconnect), else a plain `add` subscription.
  function subscribe(chatId) {
    if (state.subscribed.has(chatId)) return;
    state.subscribed.add(chatId);
    const last = state.lastSeq.get(chatId);
    if (typeof last === "number") send({ type: "resume", chat_id: chatId, last_seq: last });
    else send({ type: "subscribe", chat_id: chatId, mode: "add" });
  }

  function setConnection(kind, text) {
    state.connection = { state: kind, text };
    const pill = $("connection");
    setAttr(pill, "data-state", kind);
    setText(pill, text);
  }

  function closeSocket() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (state.socket) {
      const old = state.socket;
      state.socket = null;
      old.onclose = null;
      old.close(1000);
    }
    state.socketReady = false;
    state.subscribed.clear();
    state.confirmed.clear();
  }

  function connect() {
    if (state.socket || state.reconnectTimer || state.tokenWanted) return;
    const anchor = [...state.watched][0];
    if (!anchor) {
      setConnection("idle", "No chats to watch");
      return;
    }
    if (settings.auth.websocket && !state.token) {
      askToken("The WebSocket asks for a bearer token.");
      return;
    }
    setConnection("connecting", "Connecting…");
    const socket = new WebSocket(socketUrl(anchor));
    state.socket = socket;
    state.socketReady = false;
    state.subscribed.clear();
    state.confirmed.clear();
    socket.onopen = () => {
      // Sent as a message, never in the URL, so it does not end up in access logs.
      if (settings.auth.websocket) socket.send(JSON.stringify({ type: "auth", token: state.token }));
    };
    socket.onmessage = (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch (_) {
        return;
      }
      onMessage(data, anchor);
    };
    socket.onclose = (event) => onClose(socket, event);
  }

  function liveText() {
    const n = state.confirmed.size;
    return `Live · ${n} chat${n === 1 ? "" : "s"} watched`;
  }

  // A chat whose events now flow: `known` is the seq it is live from when nothing was applied before.
  function confirm(chatId, known) {
    state.confirmed.add(chatId);
    if (!state.lastSeq.has(chatId)) {
      state.lastSeq.set(chatId, known || 0);
      loadJobs(chatId);
    }
    setConnection("live", liveText());
    render();
  }

  function onMessage(msg, anchor) {
    switch (msg.type) {
      case "connected": {
        state.socketReady = true;
        state.reconnectDelay = 1000;
        state.subscribed.add(anchor);
        const last = state.lastSeq.get(anchor);
        // After a reconnect: replay what was missed on the path chat too.
        if (typeof last === "number") send({ type: "resume", chat_id: anchor, last_seq: last });
        confirm(anchor, msg.last_seq);
        [...state.watched].forEach(subscribe);
        return;
      }
      case "subscribed":
        confirm(msg.chat_id, msg.last_seq);
        return;
      case "replay_complete":
        confirm(msg.chat_id, msg.to_seq);
        return;
      case "resync_required":
        // History is gone or from another epoch: take the REST snapshot, continue from the current seq.
        state.lastSeq.set(msg.chat_id, msg.reason === "expired" ? Math.max(0, (msg.oldest_seq || 1) - 1) : msg.current_seq || 0);
        confirm(msg.chat_id, msg.current_seq);
        loadJobs(msg.chat_id);
        return;
      case "server_shutdown":
        setConnection("connecting", "Server restarting…");
        state.reconnectDelay = Math.max(1000, msg.reconnect_after_ms || 2000);
        return;
      case "error":
        if (typeof msg.seq !== "number") return onProtocolError(msg);
        break;
      case "pong":
      case "ack":
      case "unsubscribed":
        return;
      default:
        break;
    }
    if (typeof msg.seq !== "number" || !msg.chat_id) return;
    const last = state.lastSeq.get(msg.chat_id);
    // Replays and the connect snapshot may repeat what was applied: each seq is applied once.
    if (typeof last === "number" && msg.seq <= last) return;
    state.lastSeq.set(msg.chat_id, msg.seq);
    applyEvent(msg);
  }

  function onProtocolError(msg) {
    switch (msg.code) {
      case "unauthorized":
        askToken("The WebSocket refused the token. Enter a valid token.");
        break;
      case "too_many_subscriptions":
        showNotice("The server's subscription limit was reached; some chats are not live.");
        break;
      case "forbidden_chat":
        showNotice(`The token does not cover chat ${msg.chat_id || ""}.`);
        break;
      case "origin_not_allowed":
        setConnection("error", "Origin not allowed by the server");
        break;
      default:
        if (msg.message) showNotice(`WebSocket: ${msg.message}`);
    }
  }

  function onClose(socket, event) {
    if (state.socket !== socket) return;
    state.socket = null;
    state.socketReady = false;
    state.subscribed.clear();
    state.confirmed.clear();
    if (event.code === 4002) return askToken("The WebSocket refused the token (close 4002).");
    if (event.code === 4003) return setConnection("error", "Origin not allowed (close 4003)");
    let delay = state.reconnectDelay;
    if (event.code === 4008) delay = 0; // slow consumer: resume at once from the last seq
    if (event.code === 1013) delay = Math.max(delay, 5000); // connection limit: back off
    state.reconnectDelay = Math.min(30000, Math.max(1000, state.reconnectDelay * 2));
    setConnection("connecting", `Reconnecting in ${duration(delay / 1000)} (close ${event.code})`);
    state.reconnectTimer = setTimeout(() => {
      state.reconnectTimer = null;
      connect();
    }, delay);
  }

  // ---- service figures -------------------------------------------------------------------------------

  async function refreshHealth() {
    setTimeout(refreshHealth, HEALTH_EVERY_MS);
    try {
      // Health stays open when the REST API asks for a token; the token is sent anyway when there is one.
      const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
      const res = await fetch(`${prefix}/health`, { headers, cache: "no-store" });
      const body = await res.json();
      state.health = body.data;
      state.healthAt = new Date();
      if ($("notice").textContent.startsWith("Server unreachable")) showNotice("");
    } catch (error) {
      state.health = null;
      showNotice("Server unreachable: the figures are stale and the console retries every few seconds.");
    }
    renderFigures();
  }

  function renderFigures() {
    const h = state.health || {};
    const ws = h.websocket || {};
    const http = h.http || {};
    const jobs = [...state.jobs.values()];
    const running = jobs.filter((j) => j.status === "running").length;
    const pending = jobs.filter((j) => j.status === "pending").length;
    const figures = [
      ["connections", "WS connections", number(ws.connections), `${number(ws.connections_bound)} bound · ${number(ws.connections_unbound)} unbound`],
      ["subscriptions", "Subscriptions", number(ws.subscriptions), `${number(ws.connections_opened_total)} opened in total`],
      ["jobs", "Jobs running", number(running), `${number(pending)} queued`],
      ["queue", "Send-queue peak", number(ws.queue_high_water_mark), `${number(ws.slow_consumer_closes_total)} slow-consumer closes`],
      ["events", "Events published", number(ws.events_published_total), `${number(ws.progress_coalesced_total)} progress coalesced`],
      ["refusals", "Refusals", number((ws.rate_limited_total || 0) + (ws.auth_rejections_total || 0) + (ws.origin_rejections_total || 0) + (ws.connections_refused_total || 0)), `rate ${number(ws.rate_limited_total)} · auth ${number(ws.auth_rejections_total)} · limit ${number(ws.connections_refused_total)}`],
      ["http", "HTTP requests", number(http.requests_total), `${number(http.client_errors_total)} 4xx · ${number(http.server_errors_total)} 5xx`],
      ["uptime", "Uptime", duration(h.uptime_seconds), `${h.service || "oxcelize"} ${h.version || ""}`],
    ];
    const grid = $("figures");
    for (const [key, label, value, sub] of figures) {
      let card = grid.querySelector(`[data-figure="${key}"]`);
      if (!card) {
        card = el("div", "figure");
        card.dataset.figure = key;
        card.append(el("div", "figure-label", label), el("div", "figure-value"), el("div", "figure-sub"));
        grid.append(card);
      }
      setText(card.children[1], value);
      setText(card.children[2], sub);
    }
    setText($("figures-updated"), state.healthAt ? `updated ${state.healthAt.toLocaleTimeString()}` : "");
  }

  // ---- rendering -------------------------------------------------------------------------------------

  let renderQueued = false;

  function render() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      renderConversations();
      renderJobs();
      renderFigures();
    });
  }

  function renderConversations() {
    const list = $("conversations");
    const rows = [...state.conversations.values()].sort(byRecent);
    setText($("conversation-count"), rows.length ? String(rows.length) : "");
    $("conversations-empty").hidden = rows.length > 0;
    $("show-all").hidden = !state.filter;
    const jobsPerChat = new Map();
    for (const j of state.jobs.values()) jobsPerChat.set(j.chat_id, (jobsPerChat.get(j.chat_id) || 0) + 1);
    const keep = new Set();
    rows.forEach((row, index) => {
      keep.add(row.chat_id);
      let item = list.querySelector(`li[data-chat-id="${CSS.escape(row.chat_id)}"]`);
      if (!item) {
        item = el("li");
        item.dataset.chatId = row.chat_id;
        const button = el("button", "conversation");
        button.type = "button";
        const top = el("div", "conversation-top");
        const name = el("span", "conversation-name");
        name.append(el("span", "watch-dot"), el("span"));
        top.append(name, el("span", "badge"));
        button.append(top, el("div", "conversation-sub"), el("div", "conversation-bot"));
        button.addEventListener("click", () => {
          state.filter = state.filter === row.chat_id ? null : row.chat_id;
          render();
        });
        item.append(button);
      }
      if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
      const button = item.firstChild;
      const [top, sub, bot] = button.children;
      setText(top.firstChild.lastChild, row.participant_name || shortId(row.chat_id));
      setText(top.lastChild, row.status || "");
      setAttr(top.lastChild, "data-status", row.status);
      setAttr(button, "data-status", row.status);
      setAttr(button, "data-watched", state.confirmed.has(row.chat_id) ? "true" : "false");
      setAttr(button, "aria-pressed", state.filter === row.chat_id ? "true" : "false");
      const count = jobsPerChat.get(row.chat_id) || 0;
      setText(sub, `${shortId(row.chat_id)} · updated ${ago(row.updated_at)} · ${count} job${count === 1 ? "" : "s"}`);
      setText(bot, row.bot_message || "");
      bot.hidden = !row.bot_message;
    });
    for (const item of [...list.children]) if (!keep.has(item.dataset.chatId)) item.remove();
  }

  function visibleJobs() {
    const all = [...state.jobs.values()].filter((j) => !state.filter || j.chat_id === state.filter);
    const when = (j) => String(j.completed_at || j.started_at || j.submitted_at || "");
    const active = all.filter((j) => !TERMINAL.has(j.status)).sort((a, b) => (RANK[b.status] - RANK[a.status]) || when(a).localeCompare(when(b)));
    const finished = all.filter((j) => TERMINAL.has(j.status)).sort((a, b) => when(b).localeCompare(when(a)));
    return active.concat(finished.slice(0, FINISHED_JOBS_SHOWN));
  }

  function renderJobs() {
    const container = $("jobs");
    const jobs = visibleJobs();
    const conversation = state.filter && state.conversations.get(state.filter);
    setText($("jobs-filter"), conversation ? `· ${conversation.participant_name || shortId(state.filter)}` : "");
    $("jobs-empty").hidden = jobs.length > 0;
    const keep = new Set();
    jobs.forEach((j, index) => {
      keep.add(j.job_id);
      let card = container.querySelector(`article[data-job-id="${CSS.escape(j.job_id)}"]`);
      if (!card) card = jobCard(j);
      if (container.children[index] !== card) container.insertBefore(card, container.children[index] || null);
      updateJobCard(card, j);
    });
    for (const card of [...container.children]) if (!keep.has(card.dataset.jobId)) card.remove();
  }

  function bar(className, label) {
    const b = el("div", className);
    b.setAttribute("role", "progressbar");
    b.setAttribute("aria-valuemin", "0");
    b.setAttribute("aria-valuemax", "100");
    b.setAttribute("aria-valuenow", "0");
    b.setAttribute("aria-label", label);
    b.append(el("span", "fill"));
    return b;
  }

  function setBar(b, percent) {
    const p = Math.max(0, Math.min(100, Math.round(percent)));
    setAttr(b, "aria-valuenow", p);
    // CSSOM, not a style attribute: the page's CSP allows no inline styles.
    const width = `${p}%`;
    if (b.firstChild.style.width !== width) b.firstChild.style.width = width;
  }

  function jobCard(j) {
    const card = el("article", "job");
    card.dataset.jobId = j.job_id;
    card.dataset.chatId = j.chat_id;
    const head = el("header", "job-head");
    const title = el("div", "job-title");
    title.append(el("span", "badge"), el("span", "job-chat"));
    const actions = el("div", "job-actions");
    const cancel = el("button", "danger small job-cancel", "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", () => cancelJob(state.jobs.get(card.dataset.jobId), cancel));
    actions.append(el("span", "job-percent"), cancel);
    head.append(title, actions);
    // Steps stay open while the job runs and fold away once it has ended (unless the reader opened them).
    const stepsBox = el("details", "steps-box");
    stepsBox.append(el("summary", "", "Steps"), el("ol", "steps"));
    stepsBox.addEventListener("toggle", () => {
      if (stepsBox.dataset.auto !== (stepsBox.open ? "open" : "closed")) stepsBox.dataset.touched = "true";
    });
    card.append(head, bar("bar job-bar", "Overall progress"), el("div", "job-meta"), stepsBox, el("div", "outputs"), el("p", "job-error"));
    return card;
  }

  function jobEta(j) {
    const runningStep = j.steps.find((s) => s && s.status === "running");
    if (runningStep && typeof runningStep.eta_seconds === "number") {
      // Later steps are unknown: scale the step ETA by the work left after it, assuming equal steps.
      const later = Math.max(0, (j.total_steps || j.steps.length) - runningStep.step_index);
      const stepShare = Math.max(1, 100 - runningStep.progress);
      return runningStep.eta_seconds + (later * runningStep.eta_seconds * 100) / stepShare;
    }
    // Fallback without intermediate events: the run's own pace so far.
    const started = Date.parse(j.started_at);
    if (!isFinite(started) || j.overall <= 0 || j.overall >= 100) return null;
    const elapsed = (Date.now() - started) / 1000;
    return (elapsed * (100 - j.overall)) / j.overall;
  }

  function updateJobCard(card, j) {
    setAttr(card, "data-status", j.status);
    const [head, jobBar, meta, stepsBox, outputs, error] = card.children;
    const [title, actions] = head.children;
    const [badge, chat] = title.children;
    const conversation = state.conversations.get(j.chat_id);
    setText(badge, j.status);
    setAttr(badge, "data-status", j.status);
    setText(chat, (conversation && conversation.participant_name) || shortId(j.chat_id));
    const [percent, cancel] = actions.children;
    setText(percent, `${Math.round(j.overall)}%`);
    const cancellable = !TERMINAL.has(j.status);
    cancel.hidden = !cancellable;
    if (cancellable && j.cancelRequested) {
      cancel.disabled = true;
      setText(cancel, "Cancel requested");
    }
    setBar(jobBar, j.overall);

    const parts = [];
    const total = j.total_steps || j.steps.length;
    if (j.status === "running") {
      const current = j.steps.filter((s) => s && (s.status === "completed" || s.status === "running")).length;
      parts.push(`step ${Math.max(1, current)} of ${total}`);
      const eta = jobEta(j);
      parts.push(eta === null ? "ETA –" : `ETA ${duration(eta)}`);
    } else if (j.status === "pending") {
      parts.push(j.position ? `queued, position ${j.position}` : "queued");
    } else {
      if (typeof j.duration_ms === "number") parts.push(`took ${duration(j.duration_ms / 1000)}`);
      else if (j.started_at && j.completed_at) parts.push(`took ${duration((Date.parse(j.completed_at) - Date.parse(j.started_at)) / 1000)}`);
      if (j.completed_at) parts.push(`ended ${ago(j.completed_at)}`);
    }
    if (j.status !== "pending" && j.started_at) parts.push(`started ${new Date(j.started_at).toLocaleTimeString()}`);
    parts.push(`${j.kind || "job"} ${j.job_id}`);
    renderList(meta, parts, (text) => el("span", "", text));
    for (const span of meta.children) span.className = span === meta.lastChild ? "job-id" : "";
    meta.lastChild.title = j.job_id;

    const wantOpen = !TERMINAL.has(j.status);
    if (!stepsBox.dataset.touched && stepsBox.open !== wantOpen) {
      stepsBox.dataset.auto = wantOpen ? "open" : "closed";
      stepsBox.open = wantOpen;
    }
    const stepCount = j.steps.filter(Boolean).length;
    setText(stepsBox.firstChild, `${stepCount} step${stepCount === 1 ? "" : "s"}`);
    renderSteps(stepsBox.lastChild, j);

    const files = (j.outputs || []).filter((o) => o.download_url);
    const outputKey = files.map((o) => o.download_url).join("\n");
    if (outputs.dataset.key !== outputKey) {
      outputs.dataset.key = outputKey;
      outputs.replaceChildren();
      if (files.length) {
        outputs.append(el("span", "muted", "Outputs:"));
        for (const o of files) outputs.append(downloadLink(o.download_url, fileName(o.file_path || o.download_url)));
      }
    }
    outputs.hidden = files.length === 0;
    setText(error, j.error || "");
    error.hidden = !j.error || j.status === "completed";
  }

  function renderList(container, texts, make) {
    while (container.children.length > texts.length) container.lastChild.remove();
    texts.forEach((text, i) => {
      if (!container.children[i]) container.append(make(text));
      else setText(container.children[i], text);
    });
  }

  function stepDetail(s) {
    const parts = [];
    if (typeof s.rows_processed === "number") {
      parts.push(typeof s.rows_total === "number" ? `${number(s.rows_processed)} of ${number(s.rows_total)} rows` : `${number(s.rows_processed)} rows`);
    }
    if (s.status === "running" && s.phase) parts.push(s.phase);
    if (s.status === "running" && typeof s.eta_seconds === "number") parts.push(`ETA ${duration(s.eta_seconds)}`);
    if (s.error) parts.push(s.error);
    else if (!parts.length && s.status === "running" && s.message) parts.push(s.message);
    return parts.join(" · ");
  }

  function renderSteps(list, j) {
    const steps = j.steps.filter(Boolean);
    while (list.children.length > steps.length) list.lastChild.remove();
    steps.forEach((s, i) => {
      let item = list.children[i];
      if (!item) {
        item = el("li", "step");
        const line = el("div", "step-line");
        line.append(el("span", "step-index"), el("span", "step-op"), el("span", "step-percent"));
        const detail = el("div", "step-detail");
        detail.append(el("span"));
        item.append(line, bar("bar small step-bar", "Step progress"), detail);
        list.append(item);
      }
      setAttr(item, "data-status", s.status);
      setAttr(item, "data-step-index", s.step_index);
      const [line, stepBar, detail] = item.children;
      setText(line.children[0], `${s.step_index}.`);
      setText(line.children[1], s.operation);
      line.children[1].title = s.operation;
      setText(line.children[2], s.status === "running" || s.status === "completed" ? `${Math.round(s.progress)}%` : s.status);
      setBar(stepBar, s.progress);
      const text = stepDetail(s);
      setText(detail.firstChild, text);
      const link = detail.querySelector("a");
      if (s.download_url && (!link || link.href !== s.download_url)) {
        if (link) link.remove();
        detail.append(downloadLink(s.download_url, fileName(s.output_file_path || s.download_url)));
      } else if (!s.download_url && link) link.remove();
      detail.hidden = !text && !s.download_url;
    });
  }

  // ---- start -----------------------------------------------------------------------------------------

  $("show-all").addEventListener("click", () => {
    state.filter = null;
    render();
  });
  $("token-button").hidden = !(authOn || state.token);
  // Relative times and fallback ETAs move with the clock, not only with events.
  setInterval(render, 1000);
  if (!settings.chat_workflows_enabled) {
    setConnection("idle", "Chat workflows are disabled");
    $("conversations-empty").textContent = "Chat workflows are disabled on this server.";
  }
  if (authOn && !state.token) askToken("This server asks for a bearer token (REST and/or WebSocket auth is on).");
  refreshHealth();
  refreshConversations();
  render();
})();
