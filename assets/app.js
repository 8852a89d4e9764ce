// The settings page of StatusSentry: Settings › Integrations › Webhooks, with the event
// sources (Settings › Event sources › Monitors, and › Incidents) in views beside it.
//
// Plain DOM code with no framework and no build step, served by the binary itself under a
// strict Content-Security-Policy. Everything the API returns is written with textContent or
// DOM properties, never parsed as HTML. The admin token lives in this tab's sessionStorage
// only and goes to the same origin as a bearer header; there are no cookies.
"use strict";

(() => {
  const TOKEN_KEY = "statussentry.adminToken";
  // How often and how long the page polls for the outcome of a test event, retry or replay.
  const POLL_EVERY_MS = 1000;
  const POLL_FOR_MS = 30000;
  // Messages read per endpoint for its attempt list, and rows shown at most.
  const MESSAGES_READ = 25;
  const ROWS_SHOWN = 50;
  // Characters of a response body shown in the attempt list.
  const SNIPPET_CHARS = 300;

  const ERROR_TEXT = {
    timeout: "Timed out",
    connection_refused: "Connection refused",
    connection_reset: "Connection reset",
    dns: "DNS lookup failed",
    tls: "TLS failed",
    blocked_address: "Address blocked by policy",
    redirect: "Redirect (not followed)",
    invalid_response: "Not an HTTP answer",
    invalid_url: "Invalid URL",
    other: "Failed",
  };

  const DISABLED_WHY = {
    manual: "disabled by a person",
    gone: "the endpoint answered 410 Gone",
    failing: "its requests failed for too long",
  };

  const $ = (id) => document.getElementById(id);

  let token = null;
  let eventTypes = [];
  // Endpoint id → its card (DOM nodes and the endpoint as last read).
  const cards = new Map();
  // Bumped at every sign-in and sign-out, so that answers for an ended session are dropped.
  let session = 0;

  // ------------------------------------------------------------------------------------
  // Small helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children);
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  const timeFormat = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "medium",
  });

  function formatTime(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : timeFormat.format(d);
  }

  function timeElement(iso) {
    return el("time", { dateTime: iso, title: iso, text: formatTime(iso) });
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  // "YYYY-MM-DDTHH:MM:SS" in local time, the value a datetime-local input takes.
  function localInputValue(date) {
    const p = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T` +
      `${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`;
  }

  function setStatus(node, text) {
    node.textContent = text || "";
  }

  function showError(node, text) {
    node.textContent = text;
    node.hidden = false;
  }

  function hideError(node) {
    node.textContent = "";
    node.hidden = true;
  }

  // Hides every error inside `container` and clears the invalid marks of its controls.
  function clearErrors(container) {
    for (const node of container.querySelectorAll(".error")) hideError(node);
    for (const node of container.querySelectorAll("[aria-invalid]")) {
      node.removeAttribute("aria-invalid");
    }
  }

  // ------------------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, code, message, field, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field || null;
      // Whole seconds from a Retry-After header in seconds, else null.
      this.retryAfter = retryAfter ?? null;
    }
  }

  // The seconds of a Retry-After header given in seconds (the API's form), else null.
  function retryAfterSeconds(response) {
    const value = response.headers.get("Retry-After");
    return value && /^\d+$/.test(value.trim()) ? Number(value.trim()) : null;
  }

  // What to tell a person whose sign-in the server limited (429 rate_limited): too many wrong
  // tokens came from this address, whether from this page or from another client behind the
  // same proxy or tunnel. The server still accepts the correct token meanwhile.
  function limitedText(e) {
    const wait = e.retryAfter !== null ? ` Try again in ${plural(e.retryAfter, "second", "seconds")}.` : "";
    return "Sign-in is paused for this address: too many wrong tokens were sent from it (by " +
      `this page or another client). That token was not accepted.${wait}`;
  }

  // Raised for an answer that arrives after the session it belongs to has ended.
  class Stale extends Error {}

  async function request(method, path, body, bearer) {
    const headers = { Accept: "application/json" };
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    let text;
    try {
      response = await fetch(path, init);
      text = await response.text();
    } catch {
      throw new ApiError(0, "network",
        "The server could not be reached. Check that it is running, then try again.");
    }
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(response.status, e.code || `http_${response.status}`,
        e.message || `The server answered ${response.status}.`, e.field,
        retryAfterSeconds(response));
    }
    return data;
  }

  // A request of the signed-in session. A 401 ends the session; a 429 does not (the server
  // never limits the correct token, so it is not a verdict on this session's token), and is
  // reported where the request was made, like any other refusal.
  async function call(method, path, body) {
    // Work queued before a sign-out must not reach the server without a token: its 401
    // would read as a verdict on the next session's token.
    if (token === null) throw new Stale();
    const mine = session;
    try {
      const data = await request(method, path, body, token);
      if (mine !== session) throw new Stale();
      return data;
    } catch (e) {
      if (mine !== session) throw new Stale();
      if (e instanceof ApiError && e.status === 401) {
        signOut("The server no longer accepts this token. Sign in again.");
        throw new Stale();
      }
      throw e;
    }
  }

  // Shows `error` beside the control named by its `field` when `container` has one, else
  // in `general`. A field inside a list (`components[1].id`) lands beside the list's control
  // when it has no slot of its own. Answers that belong to an ended session are dropped.
  function report(error, container, general) {
    if (error instanceof Stale) return;
    if (!(error instanceof ApiError)) {
      showError(general, `Something went wrong in this page: ${error && error.message}`);
      return;
    }
    if (error.field && container) {
      let name = CSS.escape(error.field);
      let slot = container.querySelector(`.error[data-field="${name}"]`);
      if (!slot && error.field.includes("[")) {
        name = CSS.escape(error.field.slice(0, error.field.indexOf("[")));
        slot = container.querySelector(`.error[data-field="${name}"]`);
      }
      if (slot) {
        showError(slot, error.message);
        const control = container.querySelector(`[name="${name}"]`);
        if (control) {
          control.setAttribute("aria-invalid", "true");
          control.focus();
        }
        return;
      }
    }
    showError(general, error.message);
  }

  // Runs an async handler with `button` disabled meanwhile; errors land in `general`.
  async function busy(button, work, container, general) {
    if (button) button.disabled = true;
    try {
      await work();
    } catch (e) {
      report(e, container, general);
    } finally {
      if (button) button.disabled = false;
    }
  }

  // ------------------------------------------------------------------------------------
  // Sign-in and sign-out

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  }

  function storeToken(value) {
    try {
      if (value === null) sessionStorage.removeItem(TOKEN_KEY);
      else sessionStorage.setItem(TOKEN_KEY, value);
    } catch {
      // Storage is disabled: the token then lives in this page's memory only.
    }
  }

  async function signIn(candidate, { silent } = {}) {
    const input = $("token");
    const error = $("token-error");
    clearErrors($("signin-form"));
    if (!candidate) {
      input.setAttribute("aria-invalid", "true");
      showError(error, "Enter the admin token.");
      input.focus();
      return;
    }
    let types;
    try {
      types = await request("GET", "/api/v1/event-types", undefined, candidate);
    } catch (e) {
      if (e.status === 429) {
        // A limited sign-in is told apart from a wrong token. The server passes the correct
        // token even while it limits an address, so the token was not right; a saved one is
        // kept all the same, in case the 429 came from something in front of the server.
        showError(error, limitedText(e));
        input.focus();
        return;
      }
      storeToken(null);
      input.setAttribute("aria-invalid", "true");
      showError(error, e.status === 401
        ? (silent
          ? "The saved token is no longer accepted. Sign in again."
          : "That token was not accepted. Check it and try again.")
        : e.message);
      input.focus();
      return;
    }
    session += 1;
    token = candidate;
    storeToken(candidate);
    eventTypes = types.data;
    input.value = "";
    renderEventTypeChoices();
    $("signin").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    $(VIEWS[view].heading).focus();
    await loadView(view);
  }

  function signOut(message) {
    session += 1;
    token = null;
    storeToken(null);
    for (const dialog of document.querySelectorAll("dialog")) {
      if (dialog.open) dialog.close();
    }
    // Dropping the cards drops every secret shown on them.
    cards.clear();
    $("endpoint-form").reset();
    $("endpoints").replaceChildren();
    forgetSources();
    clearErrors($("app"));
    $("app").hidden = true;
    $("sign-out").hidden = true;
    $("signin").hidden = false;
    clearErrors($("signin-form"));
    if (message) showError($("token-error"), message);
    $("token").focus();
  }

  // ------------------------------------------------------------------------------------
  // The endpoint list

  async function refreshList() {
    const status = $("list-status");
    hideError($("list-error"));
    setStatus(status, "Loading endpoints…");
    try {
      const endpoints = [];
      let cursor = null;
      do {
        const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
        const page = await call("GET", `/api/v1/endpoints?limit=500${query}`);
        endpoints.push(...page.data);
        cursor = page.next_cursor;
      } while (cursor);
      renderList(endpoints);
      setStatus(status, `${plural(endpoints.length, "endpoint", "endpoints")}.`);
    } catch (e) {
      setStatus(status, "");
      report(e, null, $("list-error"));
    }
  }

  function renderList(endpoints) {
    const list = $("endpoints");
    const seen = new Set();
    let next = list.firstElementChild;
    for (const ep of endpoints) {
      seen.add(ep.id);
      let card = cards.get(ep.id);
      if (!card) {
        card = createCard(ep);
        cards.set(ep.id, card);
      }
      updateCard(card, ep);
      // Nodes already in place stay put, so that focus inside them is kept.
      if (card.root === next) next = next.nextElementSibling;
      else list.insertBefore(card.root, next);
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.root.remove();
        cards.delete(id);
      }
    }
    $("empty").hidden = endpoints.length > 0;
  }

  async function refreshEndpoint(card) {
    const ep = await call("GET", `/api/v1/endpoints/${encodeURIComponent(card.id)}`);
    if (cards.get(card.id) === card) updateCard(card, ep);
  }

  function describeState(ep) {
    if (!ep.enabled) {
      let why = DISABLED_WHY[ep.disabled_reason] || ep.disabled_reason || "";
      if (ep.disabled_reason === "failing" && ep.failing_since) {
        why = `its requests failed without a break since ${formatTime(ep.failing_since)}`;
      }
      // An endpoint disabled for failing is probed until it answers (SPEC 4.4).
      const r = ep.recovery;
      const recovering = r
        ? ` · recovering: next probe at ${formatTime(r.next_probe_at)}, ` +
          `${plural(r.probes, "probe", "probes")} so far, until ${formatTime(r.until)}`
        : "";
      return { kind: "off", text: (why ? `Disabled: ${why}` : "Disabled") + recovering };
    }
    if (ep.backoff_until) {
      const failures = ep.consecutive_failures
        ? ` after ${plural(ep.consecutive_failures, "failed request", "failed requests")}`
        : "";
      return { kind: "warn", text: `Backing off until ${formatTime(ep.backoff_until)}${failures}` };
    }
    if (ep.failing_since) {
      return { kind: "warn", text: `Enabled, failing since ${formatTime(ep.failing_since)}` };
    }
    return { kind: "ok", text: "Enabled" };
  }

  // A phase's milliseconds: a loopback phase is a fraction of one, a slow one hundreds.
  function formatMs(n) {
    if (n >= 10) return String(Math.round(n));
    return n.toFixed(n >= 1 ? 1 : 2);
  }

  // The phases a request or check went through (SPEC 4.5), as
  // "dns 1.2 · connect 0.31 · tls 15 · ttfb 120 · total 140 ms", or "reused · ttfb 3.0 ·
  // total 3.4 ms" on a kept-alive connection; a phase that did not happen is left out.
  function describeTimings(t) {
    if (!t) return "";
    const parts = t.reused ? ["reused"] : [];
    for (const phase of ["dns", "connect", "tls", "ttfb", "total"]) {
      const ms = t[`${phase}_ms`];
      if (Number.isFinite(ms)) parts.push(`${phase} ${formatMs(ms)}`);
    }
    return `${parts.join(" · ")} ms`;
  }

  function phasesElement(t) {
    const text = describeTimings(t);
    return text ? [el("span", { class: "phases", text })] : [];
  }

  function describeResult(attempt) {
    const code = attempt.status_code;
    if (code !== null && code !== undefined) {
      return {
        ok: code >= 200 && code < 300,
        text: attempt.error && attempt.error !== "redirect"
          ? `HTTP ${code} (${attempt.error})`
          : `HTTP ${code}`,
      };
    }
    return { ok: false, text: ERROR_TEXT[attempt.error] || attempt.error || "No answer" };
  }

  function createCard(ep) {
    const root = $("endpoint-template").content.firstElementChild.cloneNode(true);
    const q = (selector) => root.querySelector(selector);
    const base = `ep-${ep.id}`;
    const card = {
      id: ep.id,
      ep,
      root,
      url: q(".endpoint-url"),
      state: q(".state"),
      description: q(".description"),
      types: q(".types"),
      last: q(".last"),
      idText: q(".id"),
      counts: {
        pending: q(".count-pending"),
        parked: q(".count-parked"),
        delivered: q(".count-delivered"),
        failed: q(".count-failed"),
      },
      toggle: q(".toggle"),
      error: q(".endpoint-error"),
      secretBox: q(".secret"),
      secret: q(".secret-value"),
      secretNotice: q(".secret-notice"),
      secretStatus: q(".secret-status"),
      secretError: q(".secret-error"),
      reveal: q(".reveal"),
      copy: q(".copy"),
      rotate: q(".rotate"),
      testForm: q(".test-form"),
      testType: q(".test-type"),
      testStatus: q(".test-status"),
      testError: q(".test-error"),
      details: q(".attempts"),
      attemptsStatus: q(".attempts-status"),
      attemptsError: q(".attempts-error"),
      tbody: q(".attempt-table tbody"),
      table: q(".attempt-table"),
      attemptsEmpty: q(".attempts-empty"),
      replayForm: q(".replay-form"),
      replaySince: q(".replay-since"),
      replayStatus: q(".replay-status"),
      replayError: q(".replay-error"),
      // The current watch loop; a new one replaces it.
      watch: null,
    };

    // Ids for labels and descriptions, unique per endpoint (ids are [0-9a-z_]).
    card.url.id = `${base}-url`;
    root.querySelector("article").setAttribute("aria-labelledby", card.url.id);
    for (const button of root.querySelectorAll(".endpoint-actions button, .secret-row button")) {
      button.setAttribute("aria-describedby", card.url.id);
    }
    card.secret.id = `${base}-secret`;
    q(".secret-label").htmlFor = card.secret.id;
    card.secretError.id = `${base}-secret-error`;
    card.secret.setAttribute("aria-describedby", card.secretError.id);
    card.testType.id = `${base}-test-type`;
    q(".test-label").htmlFor = card.testType.id;
    const typeError = card.testForm.querySelector('.error[data-field="type"]');
    typeError.id = `${base}-test-type-error`;
    card.testType.setAttribute("aria-describedby", typeError.id);
    card.replaySince.id = `${base}-replay-since`;
    q(".replay-label").htmlFor = card.replaySince.id;
    const sinceError = card.replayForm.querySelector('.error[data-field="since"]');
    sinceError.id = `${base}-replay-since-error`;
    card.replaySince.setAttribute("aria-describedby", sinceError.id);
    card.replaySince.value = localInputValue(new Date(Date.now() - 24 * 3600 * 1000));
    card.table.setAttribute("aria-describedby", card.url.id);

    for (const t of eventTypes) {
      card.testType.append(el("option", { value: t.type, text: t.type }));
    }

    q(".edit").addEventListener("click", (e) => openEndpointDialog(card, e.currentTarget));
    card.toggle.addEventListener("click", () => toggleEnabled(card));
    q(".delete").addEventListener("click", (e) => openDeleteDialog(card, e.currentTarget));
    card.reveal.addEventListener("click", () => toggleReveal(card));
    card.copy.addEventListener("click", () => copySecret(card));
    card.rotate.addEventListener("click", (e) => openRotateDialog(card, e.currentTarget));
    card.testForm.addEventListener("submit", (e) => {
      e.preventDefault();
      sendTest(card, e.submitter);
    });
    card.details.addEventListener("toggle", () => {
      if (card.details.open) loadAttempts(card).catch(() => {});
    });
    q(".refresh-attempts").addEventListener("click", (e) => {
      busy(e.currentTarget, () => Promise.all([loadAttempts(card), refreshEndpoint(card)]),
        null, card.attemptsError);
    });
    card.replayForm.addEventListener("submit", (e) => {
      e.preventDefault();
      replay(card, e.submitter);
    });
    return card;
  }

  function updateCard(card, ep) {
    card.ep = ep;
    card.url.textContent = ep.url;
    card.description.textContent = ep.description || "";
    card.description.hidden = !ep.description;
    card.idText.textContent = ep.id;

    if (ep.event_types && ep.event_types.length) {
      card.types.replaceChildren(...ep.event_types.map((t) => el("code", { class: "chip", text: t })));
    } else {
      card.types.textContent = "All event types";
    }

    const state = describeState(ep);
    card.state.textContent = state.text;
    card.state.className = `state ${state.kind}`;
    card.root.dataset.state = state.kind;

    for (const [name, node] of Object.entries(card.counts)) {
      node.textContent = String((ep.counts && ep.counts[name]) || 0);
    }

    if (ep.last_attempt) {
      const result = describeResult(ep.last_attempt);
      card.last.replaceChildren(
        el("span", { class: result.ok ? "ok" : "bad", text: result.text }),
        ", ",
        timeElement(ep.last_attempt.at),
      );
    } else {
      card.last.textContent = "None yet";
    }

    card.toggle.textContent = ep.enabled ? "Disable" : "Enable";
  }

  // ------------------------------------------------------------------------------------
  // Adding, editing, enabling and deleting

  let editing = null; // the card being edited, or null when adding
  const opener = new Map(); // dialog → the control that opened it

  function openDialog(dialog, from) {
    opener.set(dialog, from || document.activeElement);
    dialog.showModal();
  }

  function renderEventTypeChoices() {
    const box = $("ep-types");
    box.replaceChildren();
    for (const t of eventTypes) {
      const id = `ep-type-${t.type.replace(/[^a-z0-9]/gi, "-")}`;
      const input = el("input", {
        type: "checkbox", id, name: "event_types", value: t.type,
        "aria-describedby": `${id}-desc`,
      });
      box.append(el("div", { class: "check" },
        input,
        el("label", { htmlFor: id }, el("code", { text: t.type })),
        el("p", { class: "help", id: `${id}-desc`, text: t.description })));
    }
    for (const card of cards.values()) {
      const current = card.testType.value;
      card.testType.replaceChildren(
        ...eventTypes.map((t) => el("option", { value: t.type, text: t.type })));
      if (current) card.testType.value = current;
    }
  }

  function openEndpointDialog(card, from) {
    const form = $("endpoint-form");
    editing = card;
    form.reset();
    clearErrors(form);
    $("endpoint-dialog-title").textContent = card ? "Edit endpoint" : "Add endpoint";
    $("ep-save").textContent = card ? "Save changes" : "Add endpoint";
    $("ep-enabled-field").hidden = Boolean(card);
    if (card) {
      const ep = card.ep;
      $("ep-url").value = ep.url;
      $("ep-description").value = ep.description || "";
      for (const box of form.querySelectorAll('input[name="event_types"]')) {
        box.checked = (ep.event_types || []).includes(box.value);
      }
      $("ep-batch-max").value = String(ep.batch_max);
      $("ep-batch-window").value = String(ep.batch_window_ms);
      $("ep-heartbeat").value = ep.heartbeat_secs == null ? "" : String(ep.heartbeat_secs);
    }
    openDialog($("endpoint-dialog"), from);
    $("ep-url").focus();
  }

  // A number input's value for the API: absent when empty, else a number (the server
  // refuses what is not a whole number in range, and says so beside the field).
  function numberField(input, body, name) {
    const text = input.value.trim();
    if (text !== "") body[name] = Number(text);
    else if (input.validity.badInput) body[name] = input.value;
  }

  async function saveEndpoint(submitter) {
    const form = $("endpoint-form");
    clearErrors(form);
    const body = {
      url: $("ep-url").value.trim(),
      description: $("ep-description").value.trim(),
      event_types: [...form.querySelectorAll('input[name="event_types"]:checked')]
        .map((box) => box.value),
    };
    numberField($("ep-batch-max"), body, "batch_max");
    numberField($("ep-batch-window"), body, "batch_window_ms");
    // Empty turns heartbeats off, also when editing.
    numberField($("ep-heartbeat"), body, "heartbeat_secs");
    if (!("heartbeat_secs" in body)) body.heartbeat_secs = null;
    await busy(submitter, async () => {
      if (editing) {
        const card = editing;
        const ep = await call("PATCH", `/api/v1/endpoints/${encodeURIComponent(card.id)}`, body);
        $("endpoint-dialog").close();
        if (cards.get(card.id) === card) updateCard(card, ep);
        setStatus($("list-status"), "Endpoint saved.");
      } else {
        body.enabled = $("ep-enabled").checked;
        const ep = await call("POST", "/api/v1/endpoints", body);
        const secret = ep.secret;
        delete ep.secret;
        $("endpoint-dialog").close();
        await refreshList();
        const card = cards.get(ep.id);
        if (card) {
          showSecret(card, secret,
            "Endpoint added. This is its signing secret: copy it now and configure your " +
            "receiver with it. Reveal shows it again later.");
          card.reveal.focus();
        }
        setStatus($("list-status"), "Endpoint added.");
      }
    }, form, $("ep-form-error"));
  }

  async function toggleEnabled(card) {
    hideError(card.error);
    await busy(card.toggle, async () => {
      const ep = await call("PATCH", `/api/v1/endpoints/${encodeURIComponent(card.id)}`,
        { enabled: !card.ep.enabled });
      updateCard(card, ep);
      setStatus($("list-status"), ep.enabled ? "Endpoint enabled." : "Endpoint disabled.");
    }, null, card.error);
  }

  // The confirmation dialog serves every view: `run(submitter)` does the confirmed work.
  let confirming = null;

  function openConfirm({ title, text, ok, danger = true, from, run }) {
    confirming = run;
    clearErrors($("confirm-form"));
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = ok;
    $("confirm-ok").className = danger ? "danger" : "primary";
    openDialog($("confirm-dialog"), from);
    $("confirm-dialog").querySelector(".cancel").focus();
  }

  function openDeleteDialog(card, from) {
    const c = card.ep.counts || {};
    const waiting = (c.pending || 0) + (c.parked || 0);
    openConfirm({
      title: "Delete endpoint?",
      text: `Delete ${card.ep.url}? Its ` +
        `${plural(waiting, "undelivered message", "undelivered messages")} and its attempt log ` +
        "are deleted with it, and it gets no more events. This cannot be undone.",
      ok: "Delete",
      from,
      run: (submitter) => deleteEndpoint(card, submitter),
    });
  }

  async function deleteEndpoint(card, submitter) {
    await busy(submitter, async () => {
      await call("DELETE", `/api/v1/endpoints/${encodeURIComponent(card.id)}`);
      opener.set($("confirm-dialog"), $("add-endpoint"));
      $("confirm-dialog").close();
      card.root.remove();
      cards.delete(card.id);
      $("empty").hidden = cards.size > 0;
      setStatus($("list-status"), `Endpoint ${card.ep.url} deleted.`);
    }, null, $("confirm-error"));
  }

  // ------------------------------------------------------------------------------------
  // The signing secret

  function setMasked(card, masked) {
    card.secret.type = masked ? "password" : "text";
    card.reveal.textContent = masked ? "Reveal" : "Hide";
    card.reveal.setAttribute("aria-pressed", String(!masked));
  }

  function showSecret(card, secret, notice) {
    card.secret.value = secret;
    setMasked(card, true);
    card.secretNotice.textContent = notice;
    card.secretNotice.hidden = false;
    card.secretBox.classList.add("fresh");
  }

  // Asked afresh each time, so that a secret rotated elsewhere is never shown stale.
  async function loadSecret(card) {
    const answer = await call("GET", `/api/v1/endpoints/${encodeURIComponent(card.id)}/secret`);
    card.secret.value = answer.secret;
  }

  async function toggleReveal(card) {
    hideError(card.secretError);
    setStatus(card.secretStatus, "");
    await busy(card.reveal, async () => {
      if (card.secret.type === "password") {
        await loadSecret(card);
        setMasked(card, false);
      } else {
        setMasked(card, true);
      }
    }, null, card.secretError);
  }

  async function copySecret(card) {
    hideError(card.secretError);
    setStatus(card.secretStatus, "");
    await busy(card.copy, async () => {
      if (!card.secret.value) await loadSecret(card);
      if (await copyText(card.secret.value)) {
        setStatus(card.secretStatus, "Secret copied to the clipboard.");
      } else {
        // The clipboard is out of reach (no secure context, or permission refused): show
        // the secret selected, for the keyboard's copy.
        setMasked(card, false);
        card.secret.focus();
        card.secret.select();
        setStatus(card.secretStatus, "Press Ctrl+C (⌘C on a Mac) to copy the selected secret.");
      }
    }, null, card.secretError);
  }

  async function copyText(text) {
    if (!navigator.clipboard || !window.isSecureContext) return false;
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      return false;
    }
  }

  let rotating = null;

  function openRotateDialog(card, from) {
    rotating = card;
    const form = $("rotate-form");
    form.reset();
    clearErrors(form);
    $("rotate-target").textContent = `For ${card.ep.url}.`;
    openDialog($("rotate-dialog"), from);
    $("rotate-grace").focus();
  }

  async function rotateSecret(submitter) {
    const card = rotating;
    if (!card) return;
    const form = $("rotate-form");
    clearErrors(form);
    const grace = Number($("rotate-grace").value);
    await busy(submitter, async () => {
      const answer = await call("POST",
        `/api/v1/endpoints/${encodeURIComponent(card.id)}/rotate-secret`, { grace_secs: grace });
      opener.set($("rotate-dialog"), card.reveal);
      $("rotate-dialog").close();
      const previous = grace > 0
        ? `The previous secret keeps signing until ${formatTime(answer.previous_secret_expires_at)}.`
        : "The previous secret no longer signs.";
      showSecret(card, answer.secret,
        `New secret generated: copy it now and configure your receiver with it. ${previous}`);
    }, form, $("rotate-error"));
  }

  // ------------------------------------------------------------------------------------
  // Test events, attempts, retries and replays

  async function loadAttempts(card) {
    hideError(card.attemptsError);
    try {
      const page = await call("GET",
        `/api/v1/messages?endpoint_id=${encodeURIComponent(card.id)}&limit=${MESSAGES_READ}`);
      renderAttempts(card, page.data);
      setStatus(card.attemptsStatus, `Updated ${timeFormat.format(new Date())}.`);
      return page.data;
    } catch (e) {
      report(e, null, card.attemptsError);
      throw e;
    }
  }

  function renderAttempts(card, messages) {
    const rows = [];
    for (const m of messages) {
      const attempts = [...(m.attempts || [])].sort((a, b) => b.attempt - a.attempt);
      const retryable = m.status === "failed" || m.status === "parked";
      if (attempts.length === 0) {
        rows.push(attemptRow(card, m, null, retryable));
      }
      attempts.forEach((a, i) => rows.push(attemptRow(card, m, a, retryable && i === 0)));
    }
    card.tbody.replaceChildren(...rows.slice(0, ROWS_SHOWN));
    card.table.hidden = rows.length === 0;
    card.attemptsEmpty.hidden = rows.length > 0;
  }

  function cell(label, ...children) {
    return el("td", { "data-label": label }, ...children);
  }

  function attemptRow(card, message, attempt, withRetry) {
    const row = el("tr", { "data-event-id": message.event_id, "data-status": message.status });
    const event = cell("Event",
      el("code", { text: message.event_id }), " ",
      el("span", { class: `badge ${message.status}`, text: message.status }));
    if (attempt) {
      const result = describeResult(attempt);
      row.dataset.result = result.ok ? "ok" : "bad";
      let snippet = attempt.response_body || "";
      if (snippet.length > SNIPPET_CHARS) snippet = `${snippet.slice(0, SNIPPET_CHARS)}…`;
      // A list embeds only a message's newest attempts; attempt_count says how many it has.
      const of = Number.isInteger(message.attempt_count) ? ` of ${message.attempt_count}` : "";
      event.append(" ", el("span", { class: "muted", text: `attempt ${attempt.attempt}${of}` }));
      row.append(
        cell("Time", timeElement(attempt.at)),
        event,
        cell("Result", el("span", { class: result.ok ? "ok" : "bad", text: result.text })),
        cell("Duration", `${attempt.duration_ms} ms`, ...phasesElement(attempt.timings)),
        cell("Response", snippet ? el("code", { class: "snippet", text: snippet }) : "—"));
    } else {
      const next = message.next_attempt_at
        ? ["Next try ", timeElement(message.next_attempt_at)]
        : ["Not sent yet"];
      row.append(cell("Time", ...next), event, cell("Result", "—"), cell("Duration", "—"),
        cell("Response", "—"));
    }
    const action = cell("Action");
    if (withRetry) {
      const button = el("button", {
        type: "button", class: "retry", text: "Retry",
        "aria-label": `Retry ${message.event_id}`,
      });
      button.addEventListener("click", () => retryMessage(card, message, button));
      action.append(button);
    }
    row.append(action);
    return row;
  }

  // Polls the attempt list until `done(messages)` holds or the time is up; a newer watch on
  // the same card replaces this one.
  async function watch(card, done, statusNode, describe) {
    const ticket = {};
    card.watch = ticket;
    card.details.open = true;
    const mine = session;
    const until = Date.now() + POLL_FOR_MS;
    while (card.watch === ticket && mine === session && cards.get(card.id) === card) {
      let messages;
      try {
        messages = await loadAttempts(card);
      } catch {
        return;
      }
      const found = done(messages);
      if (found) {
        setStatus(statusNode, describe(found));
        refreshEndpoint(card).catch((e) => report(e, null, card.error));
        return;
      }
      if (Date.now() > until) {
        setStatus(statusNode, "No attempt yet; it will appear here once made (Refresh attempts).");
        refreshEndpoint(card).catch((e) => report(e, null, card.error));
        return;
      }
      await sleep(POLL_EVERY_MS);
    }
  }

  function attemptSummary(attempt) {
    return `${describeResult(attempt).text} in ${attempt.duration_ms} ms`;
  }

  async function sendTest(card, submitter) {
    clearErrors(card.testForm);
    setStatus(card.testStatus, "");
    let sent = null;
    await busy(submitter, async () => {
      sent = await call("POST", `/api/v1/endpoints/${encodeURIComponent(card.id)}/test`,
        { type: card.testType.value });
    }, card.testForm, card.testError);
    if (!sent) return;
    const eventId = sent.id;
    setStatus(card.testStatus, `Test event ${eventId} queued; waiting for the attempt…`);
    await watch(card,
      (messages) => {
        const m = messages.find((x) => x.event_id === eventId);
        return m && m.attempts && m.attempts.length ? m : null;
      },
      card.testStatus,
      (m) => {
        const last = [...m.attempts].sort((a, b) => b.attempt - a.attempt)[0];
        return `Test event ${eventId}: ${attemptSummary(last)}.`;
      });
  }

  async function retryMessage(card, message, button) {
    hideError(card.attemptsError);
    const before = (message.attempts || []).length;
    let requeued = false;
    await busy(button, async () => {
      await call("POST", `/api/v1/messages/${encodeURIComponent(message.id)}/retry`, {});
      requeued = true;
    }, null, card.attemptsError);
    if (!requeued) return;
    setStatus(card.attemptsStatus, `${message.event_id} requeued; waiting for the attempt…`);
    await watch(card,
      (messages) => {
        const m = messages.find((x) => x.id === message.id);
        return m && (m.attempts || []).length > before ? m : null;
      },
      card.attemptsStatus,
      (m) => {
        const last = [...m.attempts].sort((a, b) => b.attempt - a.attempt)[0];
        return `Retry of ${m.event_id}: ${attemptSummary(last)}.`;
      });
  }

  async function replay(card, submitter) {
    clearErrors(card.replayForm);
    setStatus(card.replayStatus, "");
    const value = card.replaySince.value;
    const since = value ? new Date(value) : null;
    if (!since || Number.isNaN(since.getTime())) {
      report(new ApiError(400, "invalid_field", "Pick the date and time to replay from.", "since"),
        card.replayForm, card.replayError);
      return;
    }
    const iso = since.toISOString().replace(/\.\d{3}Z$/, "Z");
    await busy(submitter, async () => {
      const answer = await call("POST",
        `/api/v1/endpoints/${encodeURIComponent(card.id)}/replay`, { since: iso });
      setStatus(card.replayStatus, answer.requeued
        ? `${plural(answer.requeued, "failed message", "failed messages")} requeued.`
        : "No failed messages since then.");
      await Promise.all([loadAttempts(card), refreshEndpoint(card)]);
    }, card.replayForm, card.replayError);
  }

  // ------------------------------------------------------------------------------------
  // The verification snippets

  async function copySnippet(button) {
    const code = $(button.dataset.target);
    const status = button.closest(".snippet").querySelector(".copy-status");
    if (await copyText(code.textContent)) {
      setStatus(status, "Copied to the clipboard.");
    } else {
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      setStatus(status, "Press Ctrl+C (⌘C on a Mac) to copy the selected code.");
    }
  }

  // ------------------------------------------------------------------------------------
  // Views: Webhooks, Monitors, and Incidents and components, beside each other on one page.
  // The address's fragment names the view, so that each can be bookmarked and Back works.

  const VIEWS = {
    webhooks: {
      group: "Integrations", page: "Webhooks", title: "Webhooks", heading: "endpoints-title",
    },
    monitors: {
      group: "Event sources", page: "Monitors", title: "Monitors", heading: "monitors-title",
    },
    incidents: {
      group: "Event sources", page: "Incidents", title: "Incidents and components",
      heading: "incidents-title",
    },
  };
  let view = "webhooks";

  function viewFromHash() {
    const name = location.hash.slice(1);
    return Object.hasOwn(VIEWS, name) ? name : null;
  }

  function showView(name) {
    view = name;
    const v = VIEWS[name];
    // The middle crumb is found by place: the served page's markup stays the plain
    // breadcrumb that SPEC 6 asks for.
    document.querySelector(".crumbs li:nth-child(2)").textContent = v.group;
    $("crumb-page").textContent = v.page;
    $("view-title").textContent = v.title;
    document.title = `Settings › ${v.group} › ${v.page} · StatusSentry`;
    for (const link of document.querySelectorAll(".views a")) {
      if (link.dataset.view === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    for (const node of document.querySelectorAll("main [data-view]:not(a)")) {
      node.hidden = node.dataset.view !== name;
    }
    if (token !== null) loadView(name);
  }

  // Loads what a view shows; its errors are shown in the view.
  function loadView(name) {
    if (name === "monitors") {
      return serial("monitors", () => refreshMonitors())
        .catch((e) => report(e, null, $("monitors-error")));
    }
    if (name === "incidents") {
      return serial("incidents", () => refreshIncidents())
        .catch((e) => report(e, null, $("incidents-error")));
    }
    return refreshList();
  }

  // Work on one view (a refresh, a change) runs one piece at a time, so that a refresh never
  // asks for a monitor that a delete is removing, nor puts back a card it removed.
  const queues = new Map();

  function serial(name, work) {
    const run = (queues.get(name) || Promise.resolve()).then(work);
    queues.set(name, run.catch(() => {}));
    return run;
  }

  // Every list of the API, page by page (monitors, components and open incidents are few).
  async function readAll(path) {
    const items = [];
    const sep = path.includes("?") ? "&" : "?";
    let cursor = null;
    do {
      const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      const page = await call("GET", `${path}${sep}limit=500${query}`);
      items.push(...page.data);
      cursor = page.next_cursor;
    } while (cursor);
    return items;
  }

  // `fn` over `items`, at most `limit` at a time, results in order.
  async function mapLimited(items, limit, fn) {
    const results = new Array(items.length);
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
    return results;
  }

  // Puts the cards of `items` into `list` in order, creating the missing ones. Nodes already
  // in place stay put, so that focus inside them is kept. The caller prunes what is unseen.
  function place(list, items, cards, create, update, seen) {
    let next = list.firstElementChild;
    for (const item of items) {
      seen.add(item.id);
      let card = cards.get(item.id);
      if (!card) {
        card = create(item);
        cards.set(item.id, card);
      }
      update(card, item);
      if (card.root === next) next = next.nextElementSibling;
      else list.insertBefore(card.root, next);
    }
  }

  function prune(cards, seen) {
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.root.remove();
        cards.delete(id);
      }
    }
  }

  function cardParts(templateId, item, prefix) {
    const root = $(templateId).content.firstElementChild.cloneNode(true);
    const q = (selector) => root.querySelector(selector);
    const heading = q("h3");
    heading.id = `${prefix}-${item.id}-name`;
    root.querySelector("article").setAttribute("aria-labelledby", heading.id);
    for (const button of root.querySelectorAll(".card-actions button")) {
      button.setAttribute("aria-describedby", heading.id);
    }
    return { root, q, heading };
  }

  const COMPONENT_STATUS_TEXT = {
    operational: "Operational",
    degraded_performance: "Degraded performance",
    partial_outage: "Partial outage",
    major_outage: "Major outage",
    under_maintenance: "Under maintenance",
  };

  // Components as last read: the monitor form's choices, and names for monitor cards.
  let components = [];

  function componentName(id) {
    const c = components.find((x) => x.id === id);
    return c ? c.name : id;
  }

  function statusBadge(status) {
    return el("span", {
      class: `badge comp-${status}`, text: COMPONENT_STATUS_TEXT[status] || status,
    });
  }

  function formatDays(days) {
    return plural(days, "day", "days");
  }

  // A span of seconds in the largest unit that keeps it readable.
  function formatSecs(secs) {
    if (secs < 120) return `${Math.round(secs)} s`;
    if (secs < 7200) return `${Math.round(secs / 60)} min`;
    if (secs < 172800) return `${(secs / 3600).toFixed(1)} h`;
    return `${(secs / 86400).toFixed(1)} days`;
  }

  // ------------------------------------------------------------------------------------
  // Monitors

  // Checks read per monitor: the uptime bar draws them all, the table shows the newest.
  const BAR_CHECKS = 60;
  const CHECK_ROWS = 20;
  // Monitors whose checks and SLA are read at once.
  const DETAIL_CONCURRENCY = 4;
  // How often the monitor and incident views read the server again while shown.
  const AUTO_REFRESH_MS = 5000;
  // The SLA figures sum the monitor's whole window on the server, so an automatic refresh
  // reads them again only this often while every check passes and the state holds.
  const SLA_REFRESH_MS = 60000;

  const CHECK_ERROR_TEXT = { ...ERROR_TEXT, unexpected_status: "Unexpected status" };

  // What a new monitor's form starts with: the server's defaults, and a minute's interval.
  const MONITOR_DEFAULTS = {
    name: "", url: "", method: "GET", interval_secs: 60, timeout_ms: 10000,
    expected_status: "200-299", failures_before_down: 3, successes_before_up: 1,
    component_id: null, auto_incident: true, severity: "major", sla_target: null,
    sla_window_days: 30, kind: "http", grace_secs: 60,
  };

  // Pings the appliance names in a push monitor's checks.
  CHECK_ERROR_TEXT.no_ping = "No ping in time";
  CHECK_ERROR_TEXT.reported_failure = "Failure reported";

  const monitorCards = new Map();

  // A monitor's recent checks and SLA figures. A quiet (automatic) read keeps the figures
  // it has when they are recent, the newest check passed and the monitor's state held.
  async function readMonitorDetail(m, quiet) {
    const id = encodeURIComponent(m.id);
    const card = monitorCards.get(m.id);
    const checks = (await call("GET", `/api/v1/monitors/${id}/checks?limit=${BAR_CHECKS}`)).data;
    const keep = quiet && card && card.sla && Date.now() - card.slaReadAt < SLA_REFRESH_MS &&
      (!checks[0] || checks[0].ok) && card.m.status === m.status &&
      card.m.enabled === m.enabled && card.m.consecutive_failures === m.consecutive_failures;
    const sla = keep ? card.sla : await call("GET", `/api/v1/monitors/${id}/sla`);
    return { m, checks, sla, slaReadAt: keep ? card.slaReadAt : Date.now() };
  }

  async function refreshMonitors({ quiet } = {}) {
    const status = $("monitors-status");
    if (!quiet) setStatus(status, "Loading monitors…");
    const [monitors, comps] = await Promise.all([
      readAll("/api/v1/monitors"), readAll("/api/v1/components"),
    ]);
    components = comps;
    const details = await mapLimited(monitors, DETAIL_CONCURRENCY,
      (m) => readMonitorDetail(m, quiet));
    hideError($("monitors-error"));
    const seen = new Set();
    place($("monitors"), details.map((d) => ({ id: d.m.id, ...d })), monitorCards,
      (d) => createMonitorCard(d.m), updateMonitorCard, seen);
    prune(monitorCards, seen);
    $("monitors-empty").hidden = monitors.length > 0;
    if (!quiet) {
      setStatus(status, `${plural(monitors.length, "monitor", "monitors")}, read ` +
        `${timeFormat.format(new Date())}.`);
    }
  }

  async function refreshMonitor(card) {
    const m = await call("GET", `/api/v1/monitors/${encodeURIComponent(card.id)}`);
    const detail = await readMonitorDetail(m);
    if (monitorCards.get(card.id) === card) updateMonitorCard(card, detail);
  }

  function createMonitorCard(m) {
    const { root, q, heading } = cardParts("monitor-template", m, "mon");
    const card = {
      id: m.id,
      m,
      checks: [],
      sla: null,
      slaReadAt: 0,
      root,
      name: heading,
      state: q(".state"),
      target: q(".target"),
      last: q(".last"),
      response: q(".response"),
      uptimeLabel: q(".uptime-label"),
      uptime: q(".uptime"),
      interval: q(".interval"),
      component: q(".component"),
      idText: q(".id"),
      historyLabel: q(".history-label"),
      bar: q(".bar"),
      slaBox: q(".sla"),
      slaTarget: q(".sla-target"),
      slaBudget: q(".sla-budget"),
      slaBurn: q(".sla-burn"),
      slaBreach: q(".sla-breach"),
      toggle: q(".toggle"),
      error: q(".card-error"),
      table: q(".check-table"),
      tbody: q(".check-table tbody"),
      checksEmpty: q(".checks-empty"),
      pingBox: q(".ping"),
      pingUrl: q(".ping-url"),
      pingReveal: q(".ping-reveal"),
      pingCopy: q(".ping-copy"),
      pingStatus: q(".ping-status"),
    };
    card.pingUrl.id = `mon-${m.id}-ping`;
    q(".ping-label").htmlFor = card.pingUrl.id;
    card.pingReveal.addEventListener("click", () => togglePingUrl(card));
    card.pingCopy.addEventListener("click", () => copyPingUrl(card));
    card.table.setAttribute("aria-describedby", heading.id);
    q(".edit").addEventListener("click", (e) => openMonitorDialog(card, e.currentTarget));
    card.toggle.addEventListener("click", () => toggleMonitor(card));
    q(".delete").addEventListener("click", (e) => openMonitorDelete(card, e.currentTarget));
    return card;
  }

  function describeMonitor(m) {
    if (!m.enabled) return { kind: "paused", text: "Paused" };
    if (m.status === "DOWN") {
      return {
        kind: "bad",
        text: `Down: ${plural(m.consecutive_failures, "failed check", "failed checks")} in a row`,
      };
    }
    if (m.consecutive_failures > 0) {
      return {
        kind: "warn",
        text: `Up, ${plural(m.consecutive_failures, "failed check", "failed checks")} in a row`,
      };
    }
    return { kind: "ok", text: "Up" };
  }

  function describeCheck(c) {
    if (c.ok) return { ok: true, text: c.status_code !== null ? `HTTP ${c.status_code}` : "OK" };
    if (c.status_code !== null && c.status_code !== undefined) {
      return { ok: false, text: `HTTP ${c.status_code} (not expected)` };
    }
    return { ok: false, text: CHECK_ERROR_TEXT[c.error] || c.error || "Failed" };
  }

  function updateMonitorCard(card, { m, checks, sla, slaReadAt }) {
    card.m = m;
    card.checks = checks;
    card.sla = sla;
    card.slaReadAt = slaReadAt;
    card.name.textContent = m.name;
    const state = describeMonitor(m);
    card.state.textContent = state.text;
    card.state.className = `state ${state.kind}`;
    card.root.dataset.state = state.kind;
    const push = m.kind === "push";
    card.target.textContent = push ? "Push: told by pings to its ping URL" : `${m.method} ${m.url}`;
    card.idText.textContent = m.id;
    card.interval.textContent = push
      ? `${plural(m.interval_secs, "second", "seconds")}, grace ${m.grace_secs} s`
      : `${plural(m.interval_secs, "second", "seconds")}, timeout ${m.timeout_ms} ms`;
    card.pingBox.hidden = !push;
    // Only the answer to a creation carries the URL; other reads leave what was revealed.
    if (m.ping_url) card.pingUrl.value = m.ping_url;
    card.component.textContent = m.component_id ? componentName(m.component_id) : "None";
    card.toggle.textContent = m.enabled ? "Pause" : "Resume";

    const newest = checks[0];
    if (newest) {
      const result = describeCheck(newest);
      card.last.replaceChildren(
        el("span", { class: result.ok ? "ok" : "bad", text: result.text }), ", ",
        timeElement(newest.at));
      // A ping has no response time of its own.
      card.response.textContent = Number.isFinite(newest.response_time_ms) && m.kind !== "push"
        ? `${newest.response_time_ms} ms` : "—";
    } else {
      card.last.replaceChildren(m.last_checked_at ? timeElement(m.last_checked_at) : "Not yet");
      card.response.textContent = "—";
    }
    card.uptimeLabel.textContent = `Uptime over ${formatDays(sla.window_days)}`;
    card.uptime.textContent = sla.current_uptime !== null
      ? `${sla.current_uptime}% of ${plural(sla.checks, "check", "checks")}`
      : "No checks yet";

    updateSla(card, sla);
    drawBar(card, checks);
    renderChecks(card, checks.slice(0, CHECK_ROWS));
  }

  function updateSla(card, sla) {
    card.slaBox.classList.toggle("at-risk", Boolean(sla.at_risk || sla.breached));
    if (sla.sla_target === null) {
      card.slaTarget.textContent = "None";
      card.slaBudget.textContent = "—";
      card.slaBurn.textContent = "—";
      card.slaBreach.textContent = "—";
      return;
    }
    card.slaTarget.textContent = `${sla.sla_target}%`;
    card.slaBudget.replaceChildren(
      sla.breached ? "None: breached" : `${sla.error_budget_remaining_pct}%`,
      el("span", {
        class: "muted sub",
        text: `${formatSecs(sla.error_budget_remaining_secs)} of ` +
          `${formatSecs(sla.error_budget_secs)}`,
      }));
    card.slaBurn.textContent = sla.burn_rate !== null ? `${sla.burn_rate}×` : "—";
    card.slaBurn.title = sla.burn_rate !== null
      ? "Recent failure rate divided by the rate the budget allows"
      : "Needs at least 10 checks in the last hour or six hours";
    card.slaBreach.replaceChildren(sla.projected_breach_at
      ? timeElement(sla.projected_breach_at) : "None in sight");
  }

  const SVG_NS = "http://www.w3.org/2000/svg";

  function svg(tag, attributes, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    node.append(...children);
    return node;
  }

  // The newest checks as a row of bars, oldest on the left, drawn by this page (no chart
  // library, nothing parsed). The text above it says the same for screen readers.
  function drawBar(card, checks) {
    const recent = checks.slice(0, BAR_CHECKS).reverse();
    const up = recent.filter((c) => c.ok).length;
    card.historyLabel.textContent = recent.length
      ? `Last ${plural(recent.length, "check", "checks")}: ${up} up, ${recent.length - up} down`
      : "No checks in the last six hours";
    const slot = 5;
    const bars = [];
    for (let i = 0; i < BAR_CHECKS; i++) {
      const c = recent[i - (BAR_CHECKS - recent.length)];
      const rect = svg("rect", {
        x: i * slot, y: 0, width: slot - 1, height: 20, rx: 1,
        class: c ? (c.ok ? "bar-up" : "bar-down") : "bar-none",
      });
      if (c) rect.append(svg("title", {}, `${formatTime(c.at)}: ${describeCheck(c).text}`));
      bars.push(rect);
    }
    card.bar.replaceChildren(svg("svg", {
      class: "uptime-bar", viewBox: `0 0 ${BAR_CHECKS * slot} 20`, preserveAspectRatio: "none",
      "aria-hidden": "true", focusable: "false",
    }, ...bars));
  }

  function renderChecks(card, checks) {
    card.tbody.replaceChildren(...checks.map((c) => {
      const result = describeCheck(c);
      return el("tr", { "data-ok": String(c.ok) },
        cell("Time", timeElement(c.at)),
        cell("Result", el("span", { class: result.ok ? "ok" : "bad", text: result.text })),
        cell("Response time", Number.isFinite(c.response_time_ms) ? `${c.response_time_ms} ms` : "—",
          ...phasesElement(c.timings)),
        cell("First byte", Number.isFinite(c.first_byte_ms) ? `${c.first_byte_ms} ms` : "—"));
    }));
    card.table.hidden = checks.length === 0;
    card.checksEmpty.hidden = checks.length > 0;
  }

  function fillComponentSelect(select, current) {
    const options = [el("option", { value: "", text: "None" })];
    for (const c of components) {
      options.push(el("option", { value: c.id, text: `${c.name} (${c.id})` }));
    }
    if (current && !components.some((c) => c.id === current)) {
      options.push(el("option", { value: current, text: current }));
    }
    select.replaceChildren(...options);
    select.value = current || "";
  }

  // A push monitor's ping URL is a secret: masked until revealed, read from the API on demand.
  async function loadPingUrl(card) {
    const answer = await call("GET", `/api/v1/monitors/${encodeURIComponent(card.id)}/ping-url`);
    card.pingUrl.value = answer.ping_url;
  }

  function setPingMasked(card, masked) {
    card.pingUrl.type = masked ? "password" : "text";
    card.pingReveal.textContent = masked ? "Reveal" : "Hide";
    card.pingReveal.setAttribute("aria-pressed", String(!masked));
  }

  async function togglePingUrl(card) {
    hideError(card.error);
    const masked = card.pingUrl.type === "password";
    await busy(card.pingReveal, async () => {
      if (masked) {
        await loadPingUrl(card);
        setPingMasked(card, false);
      } else {
        setPingMasked(card, true);
      }
    }, null, card.error);
  }

  async function copyPingUrl(card) {
    hideError(card.error);
    setStatus(card.pingStatus, "");
    await busy(card.pingCopy, async () => {
      if (!card.pingUrl.value) await loadPingUrl(card);
      if (await copyText(card.pingUrl.value)) {
        setStatus(card.pingStatus, "Ping URL copied to the clipboard.");
      } else {
        // The clipboard is out of reach: show the URL selected, for the keyboard's copy.
        setPingMasked(card, false);
        card.pingUrl.focus();
        card.pingUrl.select();
        setStatus(card.pingStatus, "Press Ctrl+C (⌘C on a Mac) to copy the selected URL.");
      }
    }, null, card.error);
  }

  // Shows the fields of the chosen kind of monitor and hides the other kind's.
  function showMonitorKind(kind) {
    const push = kind === "push";
    $("mon-http").hidden = push;
    $("mon-push").hidden = !push;
    document.querySelector('label[for="mon-interval"]').textContent = push
      ? "Expect a ping every (seconds)" : "Check every (seconds)";
  }

  let editingMonitor = null;

  function openMonitorDialog(card, from) {
    const form = $("monitor-form");
    editingMonitor = card;
    form.reset();
    clearErrors(form);
    $("monitor-dialog-title").textContent = card ? "Edit monitor" : "Add monitor";
    $("mon-save").textContent = card ? "Save changes" : "Add monitor";
    $("mon-enabled-field").hidden = Boolean(card);
    const m = card ? card.m : MONITOR_DEFAULTS;
    const kind = m.kind || "http";
    $("mon-kind").value = kind;
    // The kind is chosen once, at creation.
    $("mon-kind").disabled = Boolean(card);
    showMonitorKind(kind);
    $("mon-name").value = m.name;
    // A push monitor has no HTTP settings; its form keeps the defaults there, unsent.
    const http = kind === "http" ? m : MONITOR_DEFAULTS;
    $("mon-url").value = http.url;
    $("mon-method").value = http.method;
    $("mon-interval").value = String(m.interval_secs);
    $("mon-timeout").value = String(http.timeout_ms);
    $("mon-expected").value = http.expected_status;
    $("mon-grace").value = String(m.grace_secs ?? MONITOR_DEFAULTS.grace_secs);
    $("mon-failures").value = String(m.failures_before_down);
    $("mon-successes").value = String(m.successes_before_up);
    fillComponentSelect($("mon-component"), m.component_id);
    $("mon-auto-incident").checked = m.auto_incident;
    $("mon-severity").value = m.severity;
    $("mon-sla-target").value = m.sla_target === null ? "" : String(m.sla_target);
    $("mon-sla-window").value = String(m.sla_window_days);
    openDialog($("monitor-dialog"), from);
    $("mon-name").focus();
  }

  async function saveMonitor(submitter) {
    const form = $("monitor-form");
    clearErrors(form);
    const push = $("mon-kind").value === "push";
    const body = {
      name: $("mon-name").value.trim(),
      component_id: $("mon-component").value || null,
      auto_incident: $("mon-auto-incident").checked,
      severity: $("mon-severity").value,
    };
    if (push) {
      numberField($("mon-grace"), body, "grace_secs");
    } else {
      body.url = $("mon-url").value.trim();
      body.method = $("mon-method").value;
      body.expected_status = $("mon-expected").value.trim();
    }
    numberField($("mon-interval"), body, "interval_secs");
    if (!push) numberField($("mon-timeout"), body, "timeout_ms");
    numberField($("mon-failures"), body, "failures_before_down");
    numberField($("mon-successes"), body, "successes_before_up");
    numberField($("mon-sla-window"), body, "sla_window_days");
    // An empty target means none, also when editing: null clears it.
    numberField($("mon-sla-target"), body, "sla_target");
    if (!("sla_target" in body)) body.sla_target = null;
    const card = editingMonitor;
    let saved = null;
    let before = null;
    await busy(submitter, () => serial("monitors", async () => {
      if (card) {
        before = card.checks[0] ? card.checks[0].at : null;
        saved = await call("PATCH", `/api/v1/monitors/${encodeURIComponent(card.id)}`, body);
        $("monitor-dialog").close();
        if (monitorCards.get(card.id) === card) await refreshMonitor(card);
      } else {
        body.enabled = $("mon-enabled").checked;
        if (push) body.kind = "push";
        saved = await call("POST", "/api/v1/monitors", body);
        $("monitor-dialog").close();
        await refreshMonitors({ quiet: true });
      }
    }), form, $("mon-form-error"));
    if (!saved) return;
    const status = $("monitors-status");
    const what = card ? `Monitor ${saved.name} saved` : `Monitor ${saved.name} added`;
    if (!saved.enabled) {
      setStatus(status, `${what}; it is paused.`);
      return;
    }
    if (saved.kind === "push") {
      // Nothing is checked until the job pings: point at the URL it pings instead.
      const target = monitorCards.get(saved.id);
      if (target && saved.ping_url) {
        target.pingUrl.value = saved.ping_url;
        setPingMasked(target, false);
      }
      setStatus(status, `${what}; it goes down when no ping comes within ` +
        `${plural(saved.interval_secs + saved.grace_secs, "second", "seconds")}.`);
      return;
    }
    setStatus(status, `${what}; waiting for its ${card ? "next" : "first"} check…`);
    const target = monitorCards.get(saved.id);
    if (target) await watchMonitor(target, before, what);
  }

  // Reads the monitor again every second until a check newer than `before` (an `at`, or null
  // for none) is recorded, or the time is up; then says what it found.
  async function watchMonitor(card, before, what) {
    const ticket = {};
    card.watch = ticket;
    const mine = session;
    const until = Date.now() + POLL_FOR_MS;
    const status = $("monitors-status");
    while (card.watch === ticket && mine === session && monitorCards.get(card.id) === card) {
      const newest = card.checks[0];
      if (newest && newest.at !== before) {
        const result = describeCheck(newest);
        setStatus(status, `${what}. Checked: ${result.text} in ${newest.response_time_ms} ms; ` +
          `${describeMonitor(card.m).text}.`);
        return;
      }
      if (Date.now() > until) {
        setStatus(status, `${what}. No check yet; it will show here once made.`);
        return;
      }
      await sleep(POLL_EVERY_MS);
      try {
        await serial("monitors", () => (monitorCards.get(card.id) === card
          ? refreshMonitor(card) : null));
      } catch (e) {
        report(e, null, card.error);
        return;
      }
    }
  }

  async function toggleMonitor(card) {
    hideError(card.error);
    await busy(card.toggle, () => serial("monitors", async () => {
      const m = await call("PATCH", `/api/v1/monitors/${encodeURIComponent(card.id)}`,
        { enabled: !card.m.enabled });
      await refreshMonitor(card);
      setStatus($("monitors-status"), m.enabled
        ? `Monitor ${m.name} resumed.` : `Monitor ${m.name} paused.`);
    }), null, card.error);
  }

  function openMonitorDelete(card, from) {
    openConfirm({
      title: "Delete monitor?",
      text: `Delete ${card.m.name}? Its check history is deleted with it. An incident it ` +
        "opened stays as it is. This cannot be undone.",
      ok: "Delete",
      from,
      run: (submitter) => busy(submitter, () => serial("monitors", async () => {
        await call("DELETE", `/api/v1/monitors/${encodeURIComponent(card.id)}`);
        opener.set($("confirm-dialog"), $("add-monitor"));
        $("confirm-dialog").close();
        card.root.remove();
        monitorCards.delete(card.id);
        $("monitors-empty").hidden = monitorCards.size > 0;
        setStatus($("monitors-status"), `Monitor ${card.m.name} deleted.`);
      }), null, $("confirm-error")),
    });
  }

  // ------------------------------------------------------------------------------------
  // Incidents and components

  const INCIDENT_FLOW = ["investigating", "identified", "monitoring", "resolved"];
  const OPEN_STATUSES = INCIDENT_FLOW.slice(0, 3);
  // Resolved incidents shown under the open ones, newest first.
  const RESOLVED_SHOWN = 20;
  // The status a ticked component starts with in the incident form.
  const AFFECTED_DEFAULT = "partial_outage";

  const incidentCards = new Map();
  const componentRows = new Map();

  async function refreshIncidents({ quiet } = {}) {
    const status = $("incidents-status");
    if (!quiet) setStatus(status, "Loading incidents and components…");
    const [open, resolved, comps] = await Promise.all([
      Promise.all(OPEN_STATUSES.map((s) => readAll(`/api/v1/incidents?status=${s}`))),
      call("GET", `/api/v1/incidents?status=resolved&limit=${RESOLVED_SHOWN}`),
      readAll("/api/v1/components"),
    ]);
    components = comps;
    // Open incidents first, newest first; the API lists each status newest first.
    const openList = open.flat().sort((a, b) => (a.started_at < b.started_at ? 1
      : a.started_at > b.started_at ? -1 : 0));
    hideError($("incidents-error"));
    const seen = new Set();
    place($("open-incidents"), openList, incidentCards, createIncidentCard, updateIncidentCard,
      seen);
    place($("resolved-incidents"), resolved.data, incidentCards, createIncidentCard,
      updateIncidentCard, seen);
    prune(incidentCards, seen);
    $("open-empty").hidden = openList.length > 0;
    $("resolved-empty").hidden = resolved.data.length > 0;
    renderComponents();
    if (!quiet) {
      setStatus(status, `${plural(openList.length, "open incident", "open incidents")}, ` +
        `${plural(components.length, "component", "components")}, read ` +
        `${timeFormat.format(new Date())}.`);
    }
  }

  function createIncidentCard(inc) {
    const { root, q, heading } = cardParts("incident-template", inc, "inc");
    const card = {
      id: inc.id,
      inc,
      root,
      title: heading,
      state: q(".state"),
      severity: q(".severity"),
      started: q(".started"),
      resolvedFact: q(".resolved-fact"),
      resolved: q(".resolved"),
      source: q(".source"),
      idText: q(".id"),
      chips: q(".component-chips"),
      advance: q(".advance"),
      resolve: q(".resolve"),
      edit: q(".edit"),
      status: q(".card-status"),
      error: q(".card-error"),
    };
    card.advance.addEventListener("click", () => advanceIncident(card));
    card.resolve.addEventListener("click", (e) => openResolve(card, e.currentTarget));
    card.edit.addEventListener("click", (e) => openIncidentDialog(card, e.currentTarget));
    return card;
  }

  function nextStatus(status) {
    const i = INCIDENT_FLOW.indexOf(status);
    return i >= 0 && i < OPEN_STATUSES.length - 1 ? INCIDENT_FLOW[i + 1] : null;
  }

  const INCIDENT_KIND = {
    investigating: "bad", identified: "warn", monitoring: "warn", resolved: "ok",
  };

  function updateIncidentCard(card, inc) {
    // A note about the last step ("Now identified.") goes once the incident moves on.
    if (card.inc.status !== inc.status) setStatus(card.status, "");
    card.inc = inc;
    card.root.dataset.status = inc.status;
    card.title.textContent = inc.title;
    card.state.textContent = inc.status;
    card.state.className = `state ${INCIDENT_KIND[inc.status] || "warn"}`;
    card.severity.replaceChildren(el("span", { class: `badge sev-${inc.severity}`, text: inc.severity }));
    card.started.replaceChildren(timeElement(inc.started_at));
    card.resolvedFact.hidden = !inc.resolved_at;
    card.resolved.replaceChildren(inc.resolved_at ? timeElement(inc.resolved_at) : "");
    if (inc.source === "monitor" && inc.monitor_id) {
      const monitor = monitorCards.get(inc.monitor_id);
      card.source.replaceChildren("Monitor ",
        monitor ? monitor.m.name : el("code", { text: inc.monitor_id }));
    } else {
      card.source.textContent = inc.source === "manual" ? "Opened by a person" : inc.source;
    }
    card.idText.textContent = inc.id;
    card.chips.replaceChildren(...(inc.components.length
      ? inc.components.map((c) => el("li", {}, `${c.name} `, statusBadge(c.status)))
      : [el("li", { class: "muted", text: "None named" })]));
    const next = nextStatus(inc.status);
    card.advance.hidden = !next;
    card.advance.textContent = next ? `Mark ${next}` : "";
    const open = inc.status !== "resolved";
    card.resolve.hidden = !open;
    card.edit.hidden = !open;
  }

  async function advanceIncident(card) {
    const next = nextStatus(card.inc.status);
    if (!next) return;
    hideError(card.error);
    let moved = false;
    await busy(card.advance, () => serial("incidents", async () => {
      const inc = await call("PATCH", `/api/v1/incidents/${encodeURIComponent(card.id)}`,
        { status: next });
      if (incidentCards.get(card.id) === card) updateIncidentCard(card, inc);
      setStatus(card.status, `Now ${inc.status}.`);
      moved = true;
    }), null, card.error);
    // The next step's button takes the focus (once enabled again), so that a keyboard walks
    // the whole lifecycle from one place.
    if (moved) (card.advance.hidden ? card.resolve : card.advance).focus();
  }

  function openResolve(card, from) {
    openConfirm({
      title: "Resolve incident?",
      text: `Resolve ${card.inc.title}? This sends incident.resolved and sets its components ` +
        "back. A resolved incident cannot be reopened or edited.",
      ok: "Resolve",
      danger: false,
      from,
      run: (submitter) => busy(submitter, () => serial("incidents", async () => {
        const inc = await call("PATCH", `/api/v1/incidents/${encodeURIComponent(card.id)}`,
          { status: "resolved" });
        opener.set($("confirm-dialog"), $("add-incident"));
        $("confirm-dialog").close();
        await refreshIncidents({ quiet: true });
        setStatus($("incidents-status"), `Incident ${inc.title} resolved.`);
      }), null, $("confirm-error")),
    });
  }

  let editingIncident = null;

  function renderComponentChoices(inc) {
    const named = new Map((inc ? inc.components : []).map((c) => [c.id, c.status]));
    const rows = components.map((c, i) => {
      const id = `inc-comp-${i}`;
      const box = el("input", {
        type: "checkbox", id, name: "affected", value: c.id, checked: named.has(c.id),
      });
      const select = el("select", { id: `${id}-status`, name: "affected-status" },
        ...Object.entries(COMPONENT_STATUS_TEXT).map(([value, text]) => el("option", { value, text })));
      select.value = named.get(c.id) || AFFECTED_DEFAULT;
      select.disabled = !box.checked;
      box.addEventListener("change", () => {
        select.disabled = !box.checked;
      });
      return el("div", { class: "component-choice" },
        box,
        el("label", { htmlFor: id, text: c.name }),
        el("label", { htmlFor: select.id, class: "visually-hidden", text: `Status of ${c.name}` }),
        select);
    });
    $("inc-components").replaceChildren(...rows);
    $("inc-components-none").hidden = components.length > 0;
  }

  function chosenComponents() {
    return [...$("inc-components").querySelectorAll(".component-choice")]
      .filter((row) => row.querySelector("input").checked)
      .map((row) => ({ id: row.querySelector("input").value, status: row.querySelector("select").value }));
  }

  function openIncidentDialog(card, from) {
    const form = $("incident-form");
    editingIncident = card;
    form.reset();
    clearErrors(form);
    $("incident-dialog-title").textContent = card ? "Edit incident" : "Open incident";
    $("inc-save").textContent = card ? "Save changes" : "Open incident";
    $("inc-status-field").hidden = Boolean(card);
    if (card) {
      $("inc-title").value = card.inc.title;
      $("inc-severity").value = card.inc.severity;
    }
    renderComponentChoices(card ? card.inc : null);
    openDialog($("incident-dialog"), from);
    $("inc-title").focus();
  }

  const sameComponents = (a, b) => JSON.stringify(a.map((c) => [c.id, c.status]).sort()) ===
    JSON.stringify(b.map((c) => [c.id, c.status]).sort());

  async function saveIncident(submitter) {
    const form = $("incident-form");
    clearErrors(form);
    const card = editingIncident;
    const body = { title: $("inc-title").value.trim(), severity: $("inc-severity").value };
    const chosen = chosenComponents();
    if (!card) {
      body.status = $("inc-status").value;
      body.components = chosen;
    } else if (!sameComponents(chosen,
      card.inc.components.filter((c) => components.some((x) => x.id === c.id)))) {
      // Sent only when changed, so that editing a title keeps a component that was deleted
      // since the incident named it (the form cannot offer it, and the API refuses it).
      body.components = chosen;
    }
    await busy(submitter, () => serial("incidents", async () => {
      const inc = card
        ? await call("PATCH", `/api/v1/incidents/${encodeURIComponent(card.id)}`, body)
        : await call("POST", "/api/v1/incidents", body);
      $("incident-dialog").close();
      await refreshIncidents({ quiet: true });
      setStatus($("incidents-status"), card
        ? `Incident ${inc.title} saved.` : `Incident ${inc.title} opened.`);
    }), form, $("inc-form-error"));
  }

  function renderComponents() {
    const seen = new Set();
    place($("components"), components, componentRows, createComponentRow, updateComponentRow,
      seen);
    prune(componentRows, seen);
    $("components-table").hidden = components.length === 0;
    $("components-empty").hidden = components.length > 0;
  }

  function createComponentRow(c) {
    const edit = el("button", { type: "button", class: "edit", text: "Edit" });
    const del = el("button", { type: "button", class: "danger", text: "Delete" });
    const row = {
      id: c.id,
      c,
      name: cell("Name"),
      idText: el("code"),
      status: cell("Status"),
      edit,
      del,
    };
    row.root = el("tr", {},
      row.name, cell("Id", row.idText), row.status,
      cell("Actions", el("div", { class: "actions" }, edit, del)));
    edit.addEventListener("click", () => openComponentDialog(row, edit));
    del.addEventListener("click", () => openComponentDelete(row, del));
    return row;
  }

  function updateComponentRow(row, c) {
    row.c = c;
    row.root.dataset.status = c.status;
    row.name.textContent = c.name;
    row.idText.textContent = c.id;
    row.status.replaceChildren(statusBadge(c.status));
    row.edit.setAttribute("aria-label", `Edit ${c.name}`);
    row.del.setAttribute("aria-label", `Delete ${c.name}`);
  }

  let editingComponent = null;

  function openComponentDialog(row, from) {
    const form = $("component-form");
    editingComponent = row;
    form.reset();
    clearErrors(form);
    $("component-dialog-title").textContent = row ? "Edit component" : "Add component";
    $("comp-save").textContent = row ? "Save changes" : "Add component";
    $("comp-id-field").hidden = Boolean(row);
    $("comp-status").replaceChildren(...Object.entries(COMPONENT_STATUS_TEXT)
      .map(([value, text]) => el("option", { value, text })));
    $("comp-name").value = row ? row.c.name : "";
    $("comp-status").value = row ? row.c.status : "operational";
    openDialog($("component-dialog"), from);
    $("comp-name").focus();
  }

  async function saveComponent(submitter) {
    const form = $("component-form");
    clearErrors(form);
    const row = editingComponent;
    const body = { name: $("comp-name").value.trim(), status: $("comp-status").value };
    const id = $("comp-id").value.trim();
    if (!row && id) body.id = id;
    await busy(submitter, () => serial("incidents", async () => {
      const c = row
        ? await call("PATCH", `/api/v1/components/${encodeURIComponent(row.id)}`, body)
        : await call("POST", "/api/v1/components", body);
      $("component-dialog").close();
      await refreshIncidents({ quiet: true });
      setStatus($("components-status"), row
        ? `Component ${c.name} saved.` : `Component ${c.name} added.`);
    }), form, $("comp-form-error"));
  }

  function openComponentDelete(row, from) {
    openConfirm({
      title: "Delete component?",
      text: `Delete ${row.c.name} (${row.id})? Incidents that named it keep their own copy. ` +
        "A component that a monitor names cannot be deleted.",
      ok: "Delete",
      from,
      run: (submitter) => busy(submitter, () => serial("incidents", async () => {
        await call("DELETE", `/api/v1/components/${encodeURIComponent(row.id)}`);
        opener.set($("confirm-dialog"), $("add-component"));
        $("confirm-dialog").close();
        await refreshIncidents({ quiet: true });
        setStatus($("components-status"), `Component ${row.c.name} deleted.`);
      }), null, $("confirm-error")),
    });
  }

  // Forgets everything the source views showed, at sign-out.
  function forgetSources() {
    monitorCards.clear();
    incidentCards.clear();
    componentRows.clear();
    components = [];
    for (const id of ["monitors", "open-incidents", "resolved-incidents", "components"]) {
      $(id).replaceChildren();
    }
    for (const id of ["monitor-form", "incident-form", "component-form"]) $(id).reset();
    for (const id of ["monitors-status", "incidents-status", "components-status"]) {
      setStatus($(id), "");
    }
  }

  // The shown source view is read again every few seconds while the tab is visible; a quiet
  // read leaves the status line alone, and a tick is skipped while the last one runs.
  let ticking = false;

  async function tick() {
    if (token === null || ticking || document.hidden) return;
    const refresh = { monitors: refreshMonitors, incidents: refreshIncidents }[view];
    if (!refresh) return;
    ticking = true;
    const errors = $(`${view}-error`);
    try {
      await serial(view, () => refresh({ quiet: true }));
    } catch (e) {
      report(e, null, errors);
    } finally {
      ticking = false;
    }
  }

  function wireSources() {
    // No fragment is the first view; a fragment that names no view (the skip link's #main)
    // leaves the view as it is.
    window.addEventListener("hashchange", () => {
      const name = location.hash.length > 1 ? viewFromHash() : "webhooks";
      if (name && name !== view) showView(name);
    });
    showView(viewFromHash() || "webhooks");
    setInterval(tick, AUTO_REFRESH_MS);
    const submit = (formId, save) => $(formId).addEventListener("submit", (e) => {
      e.preventDefault();
      save(e.submitter);
    });
    $("refresh-monitors").addEventListener("click", (e) => busy(e.currentTarget,
      () => serial("monitors", () => refreshMonitors()), null, $("monitors-error")));
    $("add-monitor").addEventListener("click", (e) => openMonitorDialog(null, e.currentTarget));
    submit("monitor-form", saveMonitor);
    $("mon-kind").addEventListener("change", (e) => showMonitorKind(e.currentTarget.value));
    $("refresh-incidents").addEventListener("click", (e) => busy(e.currentTarget,
      () => serial("incidents", () => refreshIncidents()), null, $("incidents-error")));
    $("add-incident").addEventListener("click", (e) => openIncidentDialog(null, e.currentTarget));
    submit("incident-form", saveIncident);
    $("add-component").addEventListener("click", (e) => openComponentDialog(null, e.currentTarget));
    submit("component-form", saveComponent);
  }

  // ------------------------------------------------------------------------------------
  // Wiring

  function init() {
    for (const v of Object.values(VIEWS)) $(v.heading).tabIndex = -1;
    $("signin-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const button = e.submitter;
      busy(button, () => signIn($("token").value.trim()), null, $("token-error"));
    });
    $("sign-out").addEventListener("click", () => signOut(""));
    $("refresh").addEventListener("click", (e) => busy(e.currentTarget, refreshList, null,
      $("list-error")));
    $("add-endpoint").addEventListener("click", (e) => openEndpointDialog(null, e.currentTarget));
    $("endpoint-form").addEventListener("submit", (e) => {
      e.preventDefault();
      saveEndpoint(e.submitter);
    });
    $("rotate-form").addEventListener("submit", (e) => {
      e.preventDefault();
      rotateSecret(e.submitter);
    });
    $("confirm-form").addEventListener("submit", (e) => {
      e.preventDefault();
      if (confirming) confirming(e.submitter);
    });
    for (const dialog of document.querySelectorAll("dialog")) {
      dialog.querySelector(".cancel").addEventListener("click", () => dialog.close());
      dialog.addEventListener("close", () => {
        const back = opener.get(dialog);
        opener.delete(dialog);
        if (back && back.isConnected && !back.closest("[hidden]")) back.focus();
      });
    }
    for (const button of document.querySelectorAll(".copy-snippet")) {
      button.addEventListener("click", () => copySnippet(button));
    }
    wireSources();
    const saved = storedToken();
    if (saved) signIn(saved, { silent: true });
    else $("token").focus();
  }

  init();
})();
