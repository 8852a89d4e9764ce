// The settings page's event-source views in a real browser, the same steps in each: Monitors,
// and Incidents and components, against the real `statussentry` binary on a loopback port with
// a temp database. The monitor checks an HTTP target that this process serves on 127.0.0.1 and
// turns from 200 to 500 and back. Nothing may leave 127.0.0.1: every other request is aborted
// and fails the test, and so does any console error or uncaught page error.
//
// The steps speak Playwright's page API. sources.test.mjs runs them in Debian's Chromium with
// playwright-core; sources-firefox.test.mjs runs them in Debian's firefox-esr over WebDriver
// BiDi with puppeteer-core, through the small Playwright-like layer in firefox.mjs.
//
// Run after `cargo build`: node --test tests/browser/sources.test.mjs (or
// sources-firefox.test.mjs). Environment: STATUSSENTRY_BIN (default target/debug/statussentry).
// Screenshots land in test-artifacts/sources[-firefox]-*.png.
//
// The server is started and stopped by server.mjs, as for settings.mjs; the console watch is
// this file's own.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { startServer, stopServer } from "./server.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const BIN = process.env.STATUSSENTRY_BIN || path.join(ROOT, "target/debug/statussentry");
const ARTIFACTS = path.join(ROOT, "test-artifacts");
const TOKEN = `browser-test-${crypto.randomBytes(12).toString("hex")}`;
// Long enough for the page's 5 s refresh of a shown view to come round twice.
const WAIT_MS = 20_000;

const started = Date.now();
const temp = fs.mkdtempSync(path.join(os.tmpdir(), "statussentry-sources-"));

let server; // { child, base, log() }
let target; // { url, hits, answer(status), close() }
let browser; // the persistent context
let page;

// What the page did that it must not do.
const consoleErrors = [];
const pageErrors = [];
const foreignRequests = [];
// Console errors that the browser itself logs for an API answer the step expects (Chromium
// reports every 4xx answer to fetch as "Failed to load resource"; Firefox logs none); each
// is counted.
let expectedStatuses = new Set();
const expectedConsole = [];

// ---------------------------------------------------------------------------------------
// The server and the monitor's target



// The HTTP service the monitor checks: it answers every request with the status last set.
function startTarget() {
  const hits = [];
  let status = 200;
  const srv = http.createServer((req, res) => {
    hits.push({ method: req.method, url: req.url, status });
    req.resume();
    res.writeHead(status, { "Content-Type": "text/plain" });
    res.end(`target answers ${status}`);
  });
  return new Promise((resolve) => {
    srv.listen(0, "127.0.0.1", () => {
      resolve({
        url: `http://127.0.0.1:${srv.address().port}`,
        hits,
        answer: (s) => {
          status = s;
        },
        close: () => new Promise((r) => {
          srv.closeAllConnections();
          srv.close(r);
        }),
      });
    });
  });
}

function watchPage(p) {
  p.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const text = msg.text();
    const m = /status of (\d{3})/.exec(text);
    if (m && expectedStatuses.has(Number(m[1]))) expectedConsole.push(text);
    else consoleErrors.push(`${text} (${msg.location().url || "?"})`);
  });
  p.on("pageerror", (e) => pageErrors.push(String(e && e.stack ? e.stack : e)));
}

// Runs `fn` while the browser may report API answers of `statuses` as console errors.
async function expectingStatuses(statuses, fn) {
  expectedStatuses = new Set(statuses);
  try {
    return await fn();
  } finally {
    expectedStatuses = new Set();
  }
}

// ---------------------------------------------------------------------------------------
// Helpers

async function apiCall(method, route, body) {
  const headers = { Authorization: `Bearer ${TOKEN}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(server.base + route, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function until(what, fn, deadline = WAIT_MS) {
  const end = Date.now() + deadline;
  let last;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function textOf(locator, pattern, what) {
  return until(what, async () => {
    const text = (await locator.textContent()) || "";
    return pattern.test(text) ? text : null;
  });
}

const focusedId = () => page.evaluate(() => document.activeElement && document.activeElement.id);

async function crumbs() {
  return (await page.locator("nav[aria-label=Breadcrumb] li").allTextContents()).map((c) => c.trim());
}

// Every control on the page, the dialogs' included, has a label.
async function assertLabelled() {
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll("input, select, textarea")]
    .filter((e) => e.labels.length === 0 && !e.getAttribute("aria-label"))
    .map((e) => e.outerHTML));
  assert.deepEqual(unlabelled, []);
}

async function fitsPhone(name, suffix) {
  await page.setViewportSize({ width: 360, height: 800 });
  try {
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    await page.screenshot({ path: path.join(ARTIFACTS, `sources${suffix}-${name}-phone.png`), fullPage: true });
    assert.ok(overflow <= 0, `the ${name} view is ${overflow} px wider than a phone`);
  } finally {
    await page.setViewportSize({ width: 1280, height: 900 });
  }
}

const incidentCard = (title) => page.locator("li.incident").filter({ hasText: title });
const componentRow = (name) => page.locator("#components tr").filter({ hasText: name });
const monitorCard = () => page.locator("li.monitor").filter({ hasText: "Local target" });

// ---------------------------------------------------------------------------------------
// The test

// Runs the steps in one browser. `launch({ profile, onForeign })` starts it with a fresh
// profile directory and returns `{ context, page }` with Playwright's API: it refuses every
// request not aimed at 127.0.0.1 and reports its URL to `onForeign`. `suffix` names the
// screenshots.
export function runSourcesTest({ name, launch, suffix = "" }) {
  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    [server, target] = await Promise.all([
      startServer({ bin: BIN, dir: temp, token: TOKEN, delivery: ['batch_window = "0ms"'] }), startTarget()]);
    const profile = fs.mkdtempSync(path.join(temp, "profile-"));
    ({ context: browser, page } = await launch({ profile, onForeign: (url) => foreignRequests.push(url) }));
    watchPage(page);
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    await stopServer(server);
    if (target) await target.close();
    fs.rmSync(temp, { recursive: true, force: true });
  });

  test(`monitors, incidents and components in ${name}`, (t) => steps(t, suffix));
}

async function steps(t, suffix) {
  let broken = false;
  const step = async (name, fn) => {
    await t.test(name, { skip: broken && "an earlier step failed" }, async () => {
      try {
        await fn();
      } catch (e) {
        broken = true;
        await page.screenshot({ path: path.join(ARTIFACTS, `sources${suffix}-failure.png`), fullPage: true })
          .catch(() => {});
        throw new Error(`${e.message}\n----- server log -----\n${server.log().slice(-4000)}`,
          { cause: e });
      }
    });
  };

  let incidentId;
  let monitorId;

  await step("signed in, the views sit beside Webhooks, each with its own crumb", async () => {
    await page.goto(`${server.base}/`);
    await page.getByLabel("Admin token").fill(TOKEN);
    await page.getByLabel("Admin token").press("Enter");
    await page.locator("#app").waitFor({ state: "visible" });
    await textOf(page.locator("#list-status"), /0 endpoints/, "the endpoint list");
    assert.deepEqual(await crumbs(), ["Settings", "Integrations", "Webhooks"]);
    assert.equal(await page.title(), "Settings › Integrations › Webhooks · StatusSentry");

    const nav = page.getByRole("navigation", { name: "Settings views" });
    await nav.getByRole("link", { name: "Incidents and components" }).click();
    await textOf(page.locator("#incidents-status"), /0 open incidents, 0 components/,
      "the incidents view");
    assert.deepEqual(await crumbs(), ["Settings", "Event sources", "Incidents"]);
    assert.equal(await page.title(), "Settings › Event sources › Incidents · StatusSentry");
    assert.equal(await page.locator("h1").textContent(), "Incidents and components");
    assert.equal(await nav.getByRole("link", { name: "Incidents and components" })
      .getAttribute("aria-current"), "page");
    assert.equal(await nav.getByRole("link", { name: "Webhooks" }).getAttribute("aria-current"), null);
    assert.equal(await page.locator("#view-webhooks").isHidden(), true);
    assert.equal(await page.locator("#verify").isHidden(), true);

    // Back returns to Webhooks; the fragment names the view, so a reload keeps it.
    await page.goBack();
    await until("the webhooks view again", async () => (await crumbs())[2] === "Webhooks");
    assert.equal(await page.locator("#verify").isVisible(), true);
    await page.goForward();
    await until("the incidents view again", async () => (await crumbs())[2] === "Incidents");
    await page.reload();
    await textOf(page.locator("#incidents-status"), /0 open incidents/, "the view after a reload");
    assert.equal(await page.locator("#incidents-title").evaluate((e) => e === document.activeElement),
      true, "the view's heading has the focus after sign-in");
  });

  await step("a component is added, its id error shown beside the field", async () => {
    await page.getByRole("button", { name: "Add component" }).click();
    const dialog = page.locator("#component-dialog");
    await dialog.waitFor({ state: "visible" });
    assert.equal(await focusedId(), "comp-name");
    await dialog.getByLabel("Name").fill("API Gateway");
    await expectingStatuses([400], async () => {
      await dialog.getByLabel("Id").fill("not an id!");
      await dialog.getByRole("button", { name: "Add component" }).click();
      await textOf(page.locator("#comp-id-error"), /letters, digits/, "the id error");
    });
    assert.equal(await dialog.getByLabel("Id").getAttribute("aria-invalid"), "true");
    assert.equal(await page.locator("#comp-name-error").isHidden(), true);
    await dialog.getByLabel("Id").fill("comp_api_gateway");
    await dialog.getByRole("button", { name: "Add component" }).click();
    await dialog.waitFor({ state: "hidden" });
    await textOf(componentRow("API Gateway"), /comp_api_gateway.*Operational/, "the new component");
    await textOf(page.locator("#components-status"), /Component API Gateway added/, "the status");
    assert.equal(await focusedId(), "add-component", "the focus is back on the opener");
    const api = await apiCall("GET", "/api/v1/components/comp_api_gateway");
    assert.equal(api.status, 200);
    assert.deepEqual([api.json.name, api.json.status], ["API Gateway", "operational"]);
  });

  await step("an incident is opened naming the component; a blank title is refused", async () => {
    await page.getByRole("button", { name: "Open incident" }).click();
    const dialog = page.locator("#incident-dialog");
    await dialog.waitFor({ state: "visible" });
    await expectingStatuses([400], async () => {
      await dialog.getByLabel("Title").fill("   ");
      await dialog.getByRole("button", { name: "Open incident" }).click();
      await textOf(page.locator("#inc-title-error"), /title/, "the title error");
    });
    assert.equal(await dialog.getByLabel("Title").getAttribute("aria-invalid"), "true");
    assert.equal(await focusedId(), "inc-title", "the refused field has the focus");
    await dialog.getByLabel("Title").fill("Checkout errors in EU-West");
    await dialog.getByLabel("Severity").selectOption("critical");
    const status = dialog.getByLabel("Status of API Gateway");
    assert.equal(await status.isDisabled(), true, "an unticked component's status is off");
    await dialog.getByLabel("API Gateway", { exact: true }).check();
    await status.selectOption("major_outage");
    await assertLabelled();
    await dialog.getByRole("button", { name: "Open incident" }).click();
    await dialog.waitFor({ state: "hidden" });

    const card = incidentCard("Checkout errors in EU-West");
    await textOf(card, /investigating/, "the open incident");
    assert.equal(await page.locator("#open-incidents").locator("li.incident").count(), 1);
    assert.match(await card.textContent(), /critical/);
    assert.match(await card.textContent(), /API Gateway\s*Major outage/);
    assert.match(await card.textContent(), /Opened by a person/);
    await textOf(componentRow("API Gateway"), /Major outage/, "the component's new status");

    const list = await apiCall("GET", "/api/v1/incidents");
    assert.equal(list.json.data.length, 1);
    const inc = list.json.data[0];
    incidentId = inc.id;
    assert.equal(inc.title, "Checkout errors in EU-West");
    assert.equal(inc.severity, "critical");
    assert.equal(inc.status, "investigating");
    assert.equal(inc.source, "manual");
    assert.deepEqual(inc.components,
      [{ id: "comp_api_gateway", name: "API Gateway", status: "major_outage" }]);
    assert.equal(await card.locator("code.id").textContent(), incidentId);
  });

  await step("the incident moves forward by keyboard and is edited", async () => {
    const card = incidentCard("Checkout errors in EU-West");
    await card.getByRole("button", { name: "Mark identified" }).focus();
    await page.keyboard.press("Enter");
    await textOf(card.locator(".state"), /^identified$/, "identified");
    // The next step's button has the focus: Enter again moves on.
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Mark monitoring");
    await page.keyboard.press("Enter");
    await textOf(card.locator(".state"), /^monitoring$/, "monitoring");
    assert.equal(await card.getByRole("button", { name: /^Mark / }).count(), 0);
    assert.equal((await apiCall("GET", `/api/v1/incidents/${incidentId}`)).json.status, "monitoring");

    await card.getByRole("button", { name: "Edit" }).click();
    const dialog = page.locator("#incident-dialog");
    await dialog.waitFor({ state: "visible" });
    assert.equal(await dialog.getByLabel("Title").inputValue(), "Checkout errors in EU-West");
    assert.equal(await dialog.getByLabel("API Gateway", { exact: true }).isChecked(), true);
    assert.equal(await dialog.getByLabel("Status of API Gateway").inputValue(), "major_outage");
    assert.equal(await page.locator("#inc-status-field").isHidden(), true);
    await dialog.getByLabel("Severity").selectOption("minor");
    await dialog.getByLabel("Status of API Gateway").selectOption("degraded_performance");
    await dialog.getByRole("button", { name: "Save changes" }).click();
    await dialog.waitFor({ state: "hidden" });
    await textOf(card, /minor/, "the new severity");
    await textOf(card, /API Gateway\s*Degraded performance/, "the component's new status");
    await textOf(componentRow("API Gateway"), /Degraded performance/, "the component row");
    const inc = (await apiCall("GET", `/api/v1/incidents/${incidentId}`)).json;
    assert.equal(inc.severity, "minor");
    assert.equal(inc.status, "monitoring");
    assert.deepEqual(inc.components.map((c) => c.status), ["degraded_performance"]);
  });

  await step("the incident is resolved after a confirmation and listed as resolved", async () => {
    const card = incidentCard("Checkout errors in EU-West");
    await card.getByRole("button", { name: "Resolve" }).click();
    const dialog = page.locator("#confirm-dialog");
    await dialog.waitFor({ state: "visible" });
    assert.match(await dialog.textContent(), /Resolve incident\?.*cannot be reopened/s);
    await dialog.getByRole("button", { name: "Resolve" }).click();
    await dialog.waitFor({ state: "hidden" });
    const resolved = page.locator("#resolved-incidents li.incident")
      .filter({ hasText: "Checkout errors in EU-West" });
    await textOf(resolved.locator(".state"), /^resolved$/, "the resolved incident");
    assert.equal(await page.locator("#open-incidents li.incident").count(), 0);
    assert.equal(await page.locator("#open-empty").isVisible(), true);
    assert.equal(await resolved.getByRole("button").count(), 0, "a resolved incident is final");
    assert.match(await resolved.textContent(), /Resolved/);
    await textOf(componentRow("API Gateway"), /Operational/, "the component set back");
    const inc = (await apiCall("GET", `/api/v1/incidents/${incidentId}`)).json;
    assert.equal(inc.status, "resolved");
    assert.ok(inc.resolved_at, "resolved_at is set");
  });

  await step("the incidents view fits a phone", async () => {
    await page.screenshot({ path: path.join(ARTIFACTS, `sources${suffix}-incidents.png`), fullPage: true });
    await fitsPhone("incidents", suffix);
  });

  await step("the monitor form shows API errors beside their field", async () => {
    await page.getByRole("navigation", { name: "Settings views" })
      .getByRole("link", { name: "Monitors" }).click();
    await textOf(page.locator("#monitors-status"), /0 monitors/, "the empty monitor list");
    assert.deepEqual(await crumbs(), ["Settings", "Event sources", "Monitors"]);
    assert.equal(await page.title(), "Settings › Event sources › Monitors · StatusSentry");

    await page.getByRole("button", { name: "Add monitor" }).click();
    const dialog = page.locator("#monitor-dialog");
    await dialog.waitFor({ state: "visible" });
    assert.equal(await focusedId(), "mon-name");
    await dialog.getByLabel("Name").fill("Local target");
    await expectingStatuses([400], async () => {
      await dialog.getByLabel("URL").fill("ftp://127.0.0.1/health");
      await dialog.getByRole("button", { name: "Add monitor" }).click();
      await textOf(page.locator("#mon-url-error"), /http:\/\/ or https:\/\//, "the url error");
      assert.equal(await dialog.getByLabel("URL").getAttribute("aria-invalid"), "true");

      await dialog.getByLabel("URL").fill(`${target.url}/health`);
      await dialog.getByLabel("Check every (seconds)").fill("1");
      await dialog.getByLabel("Timeout (milliseconds)").fill("5000");
      await dialog.getByRole("button", { name: "Add monitor" }).click();
      await textOf(page.locator("#mon-timeout-error"), /interval/, "the timeout error");
    });
    assert.equal(await page.locator("#mon-url-error").isHidden(), true, "the old error is gone");
    assert.equal(await focusedId(), "mon-timeout");
    await page.screenshot({ path: path.join(ARTIFACTS, `sources${suffix}-monitor-form.png`) });
    assert.equal((await apiCall("GET", "/api/v1/monitors")).json.data.length, 0);
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    assert.equal(await focusedId(), "add-monitor");
  });

  await step("a monitor is created, checked, and shows its state, uptime and SLA", async () => {
    await page.getByRole("button", { name: "Add monitor" }).click();
    const dialog = page.locator("#monitor-dialog");
    await dialog.getByLabel("Name").fill("Local target");
    await dialog.getByLabel("URL").fill(`${target.url}/health`);
    await dialog.getByLabel("Check every (seconds)").fill("1");
    await dialog.getByLabel("Timeout (milliseconds)").fill("500");
    await dialog.getByLabel("Failures before DOWN").fill("1");
    await dialog.getByLabel("Component").selectOption("comp_api_gateway");
    await dialog.getByLabel("SLA target (%)").fill("99.9");
    await dialog.getByLabel("SLA window (days)").fill("1");
    await assertLabelled();
    await dialog.getByRole("button", { name: "Add monitor" }).click();
    await dialog.waitFor({ state: "hidden" });

    await textOf(page.locator("#monitors-status"), /Monitor Local target added\. Checked: HTTP 200 in \d+ ms; Up\./,
      "the first check");
    const card = monitorCard();
    assert.equal(await card.locator(".state").textContent(), "Up");
    assert.match(await card.locator(".target").textContent(), new RegExp(`^GET ${target.url}/health$`));
    assert.match(await card.locator(".last").textContent(), /^HTTP 200, /);
    assert.match(await card.locator(".response").textContent(), /^\d+ ms$/);
    assert.match(await card.locator(".uptime").textContent(), /^100% of \d+ checks?$/);
    assert.equal(await card.locator(".uptime-label").textContent(), "Uptime over 1 day");
    assert.equal(await card.locator(".component").textContent(), "API Gateway");
    assert.equal(await card.locator(".sla-target").textContent(), "99.9%");
    assert.match(await card.locator(".sla-budget").textContent(), /^100%/);
    assert.equal(await card.locator(".sla-breach").textContent(), "None in sight");
    assert.ok(await card.locator("svg.uptime-bar rect.bar-up").count() >= 1, "a green bar");
    assert.ok(target.hits.length >= 1, "the target was requested");
    assert.equal(target.hits[0].method, "GET");

    const list = (await apiCall("GET", "/api/v1/monitors")).json.data;
    assert.equal(list.length, 1);
    const m = list[0];
    monitorId = m.id;
    assert.equal(await card.locator("code.id").textContent(), monitorId);
    assert.deepEqual(
      [m.name, m.url, m.interval_secs, m.timeout_ms, m.failures_before_down, m.component_id,
        m.sla_target, m.sla_window_days, m.enabled, m.auto_incident, m.severity],
      ["Local target", `${target.url}/health`, 1, 500, 1, "comp_api_gateway", 99.9, 1, true, true,
        "major"]);
  });

  await step("the target failing turns the monitor DOWN in the page, and back UP", async () => {
    const card = monitorCard();
    target.answer(500);
    // The shown view reads the server again by itself.
    await textOf(card.locator(".state"), /^Down: \d+ failed checks? in a row$/, "DOWN");
    assert.ok(await card.locator("svg.uptime-bar rect.bar-down").count() >= 1, "a red bar");
    await card.getByText("Recent checks").click();
    await textOf(card.locator(".check-table tbody tr").first(), /HTTP 500 \(not expected\)/,
      "the failed check in the table");
    // Each check shows its phases under its response time; a check opens a new connection.
    assert.match(await card.locator(".check-table tbody tr .phases").first().textContent(),
      /^(dns [\d.]+ · )?connect [\d.]+ · ttfb [\d.]+ · total [\d.]+ ms$/);
    assert.match(await card.locator(".uptime").textContent(), /^\d+(\.\d+)?% of \d+ checks$/);
    assert.doesNotMatch(await card.locator(".uptime").textContent(), /^100%/);
    assert.match(await card.locator(".sla-burn").textContent(), /^(\d+(\.\d+)?×|—)$/);
    // The monitor opened its incident, and the incidents view shows it as open.
    const open = await until("the monitor's incident", async () => {
      const list = await apiCall("GET", "/api/v1/incidents?status=investigating");
      return list.json.data.find((i) => i.monitor_id === monitorId);
    });
    assert.equal(open.title, "Local target is down");

    target.answer(200);
    await textOf(card.locator(".state"), /^Up$/, "UP again");
    await until("the monitor's incident resolved", async () =>
      (await apiCall("GET", `/api/v1/incidents/${open.id}`)).json.status === "resolved");
  });

  await step("the monitor is edited and paused", async () => {
    const card = monitorCard();
    await card.getByRole("button", { name: "Edit" }).click();
    const dialog = page.locator("#monitor-dialog");
    await dialog.waitFor({ state: "visible" });
    assert.equal(await dialog.getByLabel("Name").inputValue(), "Local target");
    assert.equal(await dialog.getByLabel("Component").inputValue(), "comp_api_gateway");
    assert.equal(await dialog.getByLabel("SLA target (%)").inputValue(), "99.9");
    assert.equal(await page.locator("#mon-enabled-field").isHidden(), true);
    await dialog.getByLabel("Name").fill("Local target, edited");
    await dialog.getByLabel("Check every (seconds)").fill("2");
    await dialog.getByLabel("Method").selectOption("HEAD");
    await dialog.getByRole("button", { name: "Save changes" }).click();
    await dialog.waitFor({ state: "hidden" });
    await textOf(card.locator("h3"), /^Local target, edited$/, "the new name");
    await textOf(page.locator("#monitors-status"), /Monitor Local target, edited saved\. Checked:/,
      "the check after the edit");
    assert.match(await card.locator(".target").textContent(), /^HEAD /);
    assert.match(await card.locator(".interval").textContent(), /^2 seconds/);
    let m = (await apiCall("GET", `/api/v1/monitors/${monitorId}`)).json;
    assert.deepEqual([m.name, m.interval_secs, m.method], ["Local target, edited", 2, "HEAD"]);
    await until("a HEAD request at the target", () => target.hits.some((h) => h.method === "HEAD"));

    await card.getByRole("button", { name: "Pause" }).click();
    await textOf(card.locator(".state"), /^Paused$/, "paused");
    m = (await apiCall("GET", `/api/v1/monitors/${monitorId}`)).json;
    assert.equal(m.enabled, false);
    await textOf(page.locator("#monitors-status"), /paused/, "the pause status");
    await card.getByRole("button", { name: "Resume" }).click();
    await textOf(card.locator(".state"), /^Up/, "resumed");
    assert.equal((await apiCall("GET", `/api/v1/monitors/${monitorId}`)).json.enabled, true);
    await card.getByRole("button", { name: "Pause" }).click();
    await textOf(card.locator(".state"), /^Paused$/, "paused again");
  });

  await step("the monitors view fits a phone", async () => {
    await page.screenshot({ path: path.join(ARTIFACTS, `sources${suffix}-monitors.png`), fullPage: true });
    await fitsPhone("monitors", suffix);
  });

  await step("a component that a monitor names is not deleted, and says why", async () => {
    await page.getByRole("navigation", { name: "Settings views" })
      .getByRole("link", { name: "Incidents and components" }).click();
    const row = componentRow("API Gateway");
    await row.getByRole("button", { name: "Delete API Gateway" }).click();
    const dialog = page.locator("#confirm-dialog");
    await dialog.waitFor({ state: "visible" });
    await expectingStatuses([409], async () => {
      await dialog.getByRole("button", { name: "Delete" }).click();
      await textOf(page.locator("#confirm-error"), new RegExp(`monitor ${monitorId} names this component`),
        "the refusal");
    });
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "hidden" });
    assert.equal((await apiCall("GET", "/api/v1/components/comp_api_gateway")).status, 200);
    // The incident the monitor opened and resolved is listed with its source.
    await textOf(incidentCard("Local target is down"), /Monitor Local target, edited/,
      "the monitor's incident");
  });

  await step("the monitor is deleted after a confirmation, then the component", async () => {
    await page.getByRole("navigation", { name: "Settings views" })
      .getByRole("link", { name: "Monitors" }).click();
    const card = monitorCard();
    await card.getByRole("button", { name: "Delete" }).click();
    const dialog = page.locator("#confirm-dialog");
    await dialog.waitFor({ state: "visible" });
    assert.match(await dialog.textContent(), /Delete monitor\?/);
    await dialog.getByRole("button", { name: "Delete" }).click();
    await dialog.waitFor({ state: "hidden" });
    await card.waitFor({ state: "detached" });
    assert.equal(await page.locator("#monitors-empty").isVisible(), true);
    assert.equal((await apiCall("GET", `/api/v1/monitors/${monitorId}`)).status, 404);

    await page.getByRole("navigation", { name: "Settings views" })
      .getByRole("link", { name: "Incidents and components" }).click();
    const row = componentRow("API Gateway");
    await row.getByRole("button", { name: "Edit API Gateway" }).click();
    const edit = page.locator("#component-dialog");
    await edit.waitFor({ state: "visible" });
    assert.equal(await page.locator("#comp-id-field").isHidden(), true, "an id cannot change");
    await edit.getByLabel("Status").selectOption("under_maintenance");
    await edit.getByRole("button", { name: "Save changes" }).click();
    await edit.waitFor({ state: "hidden" });
    await textOf(row, /Under maintenance/, "the edited status");
    assert.equal((await apiCall("GET", "/api/v1/components/comp_api_gateway")).json.status,
      "under_maintenance");
    // An open incident names the component when it goes; the incident keeps its copy.
    const opened = await apiCall("POST", "/api/v1/incidents", {
      title: "Search is slow", severity: "minor",
      components: [{ id: "comp_api_gateway", status: "degraded_performance" }],
    });
    assert.equal(opened.status, 201);
    await row.getByRole("button", { name: "Delete API Gateway" }).click();
    await dialog.getByRole("button", { name: "Delete" }).click();
    await dialog.waitFor({ state: "hidden" });
    await row.waitFor({ state: "detached" });
    assert.equal((await apiCall("GET", "/api/v1/components/comp_api_gateway")).status, 404);

    // Editing its title does not drop the component the form can no longer offer.
    const incident = incidentCard("Search is slow");
    await incident.getByRole("button", { name: "Edit" }).click();
    const form = page.locator("#incident-dialog");
    await form.waitFor({ state: "visible" });
    assert.equal(await page.locator("#inc-components-none").isVisible(), true);
    await form.getByLabel("Title").fill("Search is slow in EU-West");
    await form.getByRole("button", { name: "Save changes" }).click();
    await form.waitFor({ state: "hidden" });
    await textOf(incident.locator("h3"), /^Search is slow in EU-West$/, "the new title");
    const inc = (await apiCall("GET", `/api/v1/incidents/${opened.json.id}`)).json;
    assert.equal(inc.title, "Search is slow in EU-West");
    assert.deepEqual(inc.components.map((c) => c.id), ["comp_api_gateway"]);
  });

  await step("a push monitor is added, its ping URL copied out, and a ping is its check", async () => {
    await page.getByRole("navigation", { name: "Settings views" })
      .getByRole("link", { name: "Monitors" }).click();
    await page.getByRole("button", { name: "Add monitor" }).click();
    const dialog = page.locator("#monitor-dialog");
    await dialog.waitFor({ state: "visible" });
    assert.equal(await page.locator("#mon-push").isHidden(), true, "push fields wait for the kind");
    await dialog.getByLabel("Kind").selectOption("push");
    assert.equal(await page.locator("#mon-http").isHidden(), true, "no URL for a push monitor");
    await dialog.getByLabel("Name").fill("Nightly backup");
    await dialog.getByLabel("Expect a ping every (seconds)").fill("3600");
    await dialog.getByLabel("Grace (seconds)").fill("600");
    await assertLabelled();
    await dialog.getByRole("button", { name: "Add monitor" }).click();
    await dialog.waitFor({ state: "hidden" });
    await textOf(page.locator("#monitors-status"),
      /Monitor Nightly backup added; it goes down when no ping comes within 4200 seconds\./,
      "the push monitor's notice");

    const card = page.locator("li.monitor").filter({ hasText: "Nightly backup" });
    assert.match(await card.locator(".target").textContent(), /^Push/);
    assert.match(await card.locator(".interval").textContent(), /^3600 seconds, grace 600 s$/);
    const field = card.getByLabel("Ping URL");
    const url = await field.inputValue();
    const escaped = server.base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    assert.match(url, new RegExp(`^${escaped}/ping/[A-Za-z0-9_-]{32}$`));
    // Masked by "Hide", read again from the API by "Reveal".
    await card.getByRole("button", { name: "Hide" }).click();
    assert.equal(await field.getAttribute("type"), "password");
    await card.getByRole("button", { name: "Reveal" }).click();
    await until("the revealed URL", async () => (await field.getAttribute("type")) === "text");
    assert.equal(await field.inputValue(), url);

    // The job pings: the page shows the check at its next refresh.
    const pinged = await fetch(url, { method: "POST" });
    assert.equal(pinged.status, 200);
    await textOf(card.locator(".last"), /^OK, /, "the ping as the last check");
    assert.equal(await card.locator(".state").textContent(), "Up");
    assert.equal(await card.locator(".response").textContent(), "—");

    // Its kind cannot change, and its form offers no HTTP fields.
    await card.getByRole("button", { name: "Edit" }).click();
    await dialog.waitFor({ state: "visible" });
    assert.equal(await dialog.getByLabel("Kind").isDisabled(), true);
    assert.equal(await page.locator("#mon-http").isHidden(), true);
    assert.equal(await dialog.getByLabel("Grace (seconds)").inputValue(), "600");
    await dialog.getByLabel("Grace (seconds)").fill("900");
    await dialog.getByRole("button", { name: "Save changes" }).click();
    await dialog.waitFor({ state: "hidden" });
    await textOf(card.locator(".interval"), /grace 900 s$/, "the edited grace");

    await card.getByRole("button", { name: "Delete" }).click();
    const confirm = page.locator("#confirm-dialog");
    await confirm.getByRole("button", { name: "Delete" }).click();
    await confirm.waitFor({ state: "hidden" });
    await card.waitFor({ state: "detached" });
    assert.equal((await fetch(url)).status, 404, "a deleted monitor's ping URL is gone");
    // Leave the view as the next step expects to find it: it opens Monitors afresh.
    await page.getByRole("navigation", { name: "Settings views" })
      .getByRole("link", { name: "Incidents and components" }).click();
  });

  await step("a 429 in a view is reported there; a 401 ends the session", async () => {
    await page.getByRole("navigation", { name: "Settings views" })
      .getByRole("link", { name: "Monitors" }).click();
    await textOf(page.locator("#monitors-status"), /0 monitors/, "the monitors view");
    // The server never limits the correct token; these stand for a proxy in front of it and
    // for a token reset while the page is open.
    const listRoute = `${server.base}/api/v1/monitors?**`;
    const refuse = (status, code) => page.route(listRoute, (route) => route.fulfill({
      status,
      headers: { "Content-Type": "application/json", "Retry-After": "7" },
      body: JSON.stringify({ error: { code, message: `Refused (${status}).` } }),
    }), { times: 1 });
    // The view's own refresh (every 5 s) meets each refusal; a click could race it.
    await refuse(429, "rate_limited");
    await expectingStatuses([429], async () => {
      await textOf(page.locator("#monitors-error"), /Refused \(429\)/, "the refusal in the view");
    });
    assert.equal(await page.locator("#app").isVisible(), true, "still signed in");
    await page.unroute(listRoute);
    await until("the error gone at the next refresh", () => page.locator("#monitors-error").isHidden());

    await refuse(401, "unauthorized");
    await expectingStatuses([401], async () => {
      await textOf(page.locator("#token-error"), /no longer accepts this token/, "the sign-out");
    });
    await page.unroute(listRoute);
    assert.equal(await page.locator("#app").isHidden(), true);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.equal(await page.locator("li.incident, li.monitor, #components tr").count(), 0,
      "the views are emptied");
  });

  await step("nothing left 127.0.0.1 and the console stayed clean", async () => {
    t.diagnostic(`console errors the steps expected (API refusals): ${expectedConsole.length}`);
    t.diagnostic(`ran for ${((Date.now() - started) / 1000).toFixed(1)} s, browser start included`);
    assert.deepEqual(foreignRequests, [], "requests that left 127.0.0.1");
    assert.deepEqual(pageErrors, [], "uncaught errors in the page");
    assert.deepEqual(consoleErrors, [], "console errors");
  });
}
