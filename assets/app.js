// The settings page of StatusSentry: Settings › Integrations › Webhooks.
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
  // in `general`. Answers that belong to an ended session are dropped.
  function report(error, container, general) {
    if (error instanceof Stale) return;
    if (!(error instanceof ApiError)) {
      showError(general, `Something went wrong in this page: ${error && error.message}`);
      return;
    }
    if (error.field && container) {
      const name = CSS.escape(error.field);
      const slot = container.querySelector(`.error[data-field="${name}"]`);
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
    $("endpoints-title").focus();
    await refreshList();
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
      return { kind: "off", text: why ? `Disabled: ${why}` : "Disabled" };
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

  let deleting = null;

  function openDeleteDialog(card, from) {
    deleting = card;
    clearErrors($("confirm-form"));
    const c = card.ep.counts || {};
    const waiting = (c.pending || 0) + (c.parked || 0);
    $("confirm-text").textContent =
      `Delete ${card.ep.url}? Its ${plural(waiting, "undelivered message", "undelivered messages")}` +
      " and its attempt log are deleted with it, and it gets no more events. This cannot be undone.";
    openDialog($("confirm-dialog"), from);
    $("confirm-dialog").querySelector(".cancel").focus();
  }

  async function deleteEndpoint(submitter) {
    const card = deleting;
    if (!card) return;
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
        cell("Duration", `${attempt.duration_ms} ms`),
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
  // Wiring

  function init() {
    $("endpoints-title").tabIndex = -1;
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
      deleteEndpoint(e.submitter);
    });
    for (const dialog of document.querySelectorAll("dialog")) {
      dialog.querySelector(".cancel").addEventListener("click", () => dialog.close());
      dialog.addEventListener("close", () => {
        const back = opener.get(dialog);
        opener.delete(dialog);
        if (back && back.isConnected && !$("app").hidden) back.focus();
      });
    }
    for (const button of document.querySelectorAll(".copy-snippet")) {
      button.addEventListener("click", () => copySnippet(button));
    }
    const saved = storedToken();
    if (saved) signIn(saved, { silent: true });
    else $("token").focus();
  }

  init();
})();
