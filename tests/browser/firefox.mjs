// Debian's firefox-esr over WebDriver BiDi (puppeteer-core), behind the part of Playwright's
// page API that settings.mjs uses, so that Firefox runs the very steps Chromium runs.
// Playwright's own Firefox is a patched build that cannot be installed here; the stock one
// speaks WebDriver BiDi, which playwright-core drives only through an internal, unexported
// browser type, and puppeteer-core drives publicly. (puppeteer-core 24 is the last major
// version that runs on Node 20.)
//
// What the layer keeps from Playwright: locators are resolved afresh on every use; an action
// waits until its locator matches exactly one element, which for clicks must be visible and
// enabled (Playwright's auto-waiting and strictness); getByRole sees only visible elements
// and matches the accessible name as a case-insensitive substring unless `exact` is set, as
// getByLabel does with the labels' text. Clicks and key presses are real input events sent
// through BiDi; fill and selectOption set the value and fire `input` and `change`, as
// Playwright does.

import puppeteer from "puppeteer-core";

const TIMEOUT_MS = 30_000;
const POLL_MS = 50;

// Starts Firefox with a fresh profile; returns `{ context, page }` for settings.mjs.
export async function launchFirefox({ executablePath, profile, onForeign }) {
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath,
    headless: true,
    userDataDir: profile,
    defaultViewport: { width: 1280, height: 900 },
    timeout: 60_000,
    extraPrefsFirefox: {
      // navigator.clipboard.readText() without the paste menu Firefox shows a person.
      "dom.events.testing.asyncClipboard": true,
      "dom.events.asyncClipboard.readText": true,
    },
  });
  const raw = (await browser.pages())[0] || (await browser.newPage());
  const page = new Page(raw, onForeign);
  await page.intercept();
  return { context: new Context(browser, page), page };
}

class Context {
  constructor(browser, page) {
    this.browser = browser;
    this.page = page;
  }

  async close() {
    await this.browser.close();
  }

  async cookies() {
    return this.page.raw.cookies();
  }

  // Firefox has no clipboard permissions: writeText needs only the click's user activation,
  // and readText is let through by the testing preference set at launch.
  async grantPermissions(permissions, { origin }) {
    const rest = permissions.filter((p) => p !== "clipboard-read" && p !== "clipboard-write");
    if (rest.length) await this.browser.defaultBrowserContext().overridePermissions(origin, rest);
  }
}

class Page {
  constructor(raw, onForeign) {
    this.raw = raw;
    this.onForeign = onForeign;
    this.routes = [];
    this.keyboard = { press: (key) => raw.keyboard.press(key) };
  }

  // Every request passes here: one not aimed at 127.0.0.1 is refused and reported, one that
  // a route matches is answered by it, the rest go on.
  async intercept() {
    await this.raw.setRequestInterception(true);
    this.raw.on("request", (request) => {
      const url = new URL(request.url());
      if (url.protocol !== "data:" && url.hostname !== "127.0.0.1") {
        this.onForeign(request.url());
        return request.abort("blockedbyclient");
      }
      const route = this.routes.find((r) => r.pattern.test(request.url()));
      if (!route) return request.continue();
      if (route.times !== undefined && --route.times === 0) this.routes.splice(this.routes.indexOf(route), 1);
      return route.handler({
        fulfill: ({ status, headers, body }) => request.respond({ status, headers, body }),
        continue: () => request.continue(),
        abort: () => request.abort(),
      });
    });
  }

  async route(glob, handler, { times } = {}) {
    this.routes.push({ glob, pattern: globToRegExp(glob), handler, times });
  }

  async unroute(glob) {
    this.routes = this.routes.filter((r) => r.glob !== glob);
  }

  async goto(url) {
    return this.raw.goto(url, { waitUntil: "load" });
  }

  async reload() {
    return this.raw.reload({ waitUntil: "load" });
  }

  title() {
    return this.raw.title();
  }

  content() {
    return this.raw.content();
  }

  evaluate(fn, ...args) {
    return this.raw.evaluate(fn, ...args);
  }

  screenshot(options) {
    return this.raw.screenshot(options);
  }

  setViewportSize({ width, height }) {
    return this.raw.setViewport({ width, height });
  }

  on(event, listener) {
    this.raw.on(event, listener);
  }

  locator(css) {
    return new Locator(this, [{ css }]);
  }

  getByLabel(text, { exact = false } = {}) {
    return new Locator(this, [{ label: text, exact }]);
  }

  getByRole(role, { name, exact = false } = {}) {
    return new Locator(this, [{ role, name, exact }]);
  }
}

class Locator {
  constructor(page, chain) {
    this.page = page;
    this.chain = chain;
  }

  locator(css) {
    return new Locator(this.page, [...this.chain, { css }]);
  }

  filter({ hasText }) {
    return new Locator(this.page, [...this.chain, { hasText }]);
  }

  getByLabel(text, { exact = false } = {}) {
    return new Locator(this.page, [...this.chain, { label: text, exact }]);
  }

  getByRole(role, { name, exact = false } = {}) {
    return new Locator(this.page, [...this.chain, { role, name, exact }]);
  }

  first() {
    return new Locator(this.page, [...this.chain, { nth: 0 }]);
  }

  toString() {
    return JSON.stringify(this.chain);
  }

  // What the locator matches now: how many elements, and whether the only one is visible
  // and enabled.
  probe() {
    return this.page.raw.evaluate(inPage(this.chain, `
      const el = all[0];
      return {
        count: all.length,
        visible: all.length === 1 && el.checkVisibility({ visibilityProperty: true }),
        enabled: all.length === 1 && !el.disabled,
      };`));
  }

  // The one element the locator matches, waited for (visible and enabled if `actionable`).
  async one({ actionable = false } = {}) {
    const end = Date.now() + TIMEOUT_MS;
    let last;
    for (;;) {
      last = await this.probe();
      if (last.count > 1) throw new Error(`strict mode: ${this} matches ${last.count} elements`);
      if (last.count === 1 && (!actionable || (last.visible && last.enabled))) {
        const handle = await this.page.raw.evaluateHandle(inPage(this.chain, "return all[0];"));
        return handle.asElement();
      }
      if (Date.now() > end) throw new Error(`timed out waiting for ${this}: ${JSON.stringify(last)}`);
      await sleep(POLL_MS);
    }
  }

  async count() {
    return (await this.probe()).count;
  }

  async isVisible() {
    const { count, visible } = await this.probe();
    return count === 1 && visible;
  }

  async isHidden() {
    return !(await this.isVisible());
  }

  async waitFor({ state = "visible" } = {}) {
    const end = Date.now() + TIMEOUT_MS;
    for (;;) {
      const { count, visible } = await this.probe();
      if (count > 1) throw new Error(`strict mode: ${this} matches ${count} elements`);
      const done = {
        visible: count === 1 && visible,
        hidden: count === 0 || !visible,
        attached: count === 1,
        detached: count === 0,
      }[state];
      if (done) return;
      if (Date.now() > end) throw new Error(`timed out waiting for ${this} to be ${state}`);
      await sleep(POLL_MS);
    }
  }

  async textContent() {
    return (await this.one()).evaluate((el) => el.textContent);
  }

  async allTextContents() {
    return this.page.raw.evaluate(inPage(this.chain, "return all.map((el) => el.textContent);"));
  }

  async getAttribute(name) {
    return (await this.one()).evaluate((el, n) => el.getAttribute(n), name);
  }

  async inputValue() {
    return (await this.one()).evaluate((el) => el.value);
  }

  async evaluate(fn) {
    return (await this.one()).evaluate(fn);
  }

  async click() {
    await (await this.one({ actionable: true })).click();
  }

  async check() {
    const el = await this.one({ actionable: true });
    if (!(await el.evaluate((e) => e.checked))) await el.click();
    if (!(await el.evaluate((e) => e.checked))) throw new Error(`${this} did not become checked`);
  }

  async fill(value) {
    const el = await this.one({ actionable: true });
    await el.evaluate((e, v) => {
      e.focus();
      e.value = v;
      e.dispatchEvent(new Event("input", { bubbles: true }));
      e.dispatchEvent(new Event("change", { bubbles: true }));
    }, value);
  }

  async press(key) {
    const el = await this.one({ actionable: true });
    await el.focus();
    await this.page.raw.keyboard.press(key);
  }

  async selectOption(option) {
    const el = await this.one({ actionable: true });
    const chosen = await el.evaluate((e, o) => {
      const match = [...e.options].find((opt) =>
        typeof o === "string" ? opt.value === o || opt.label === o : opt.label === o.label);
      if (!match) return null;
      e.value = match.value;
      e.dispatchEvent(new Event("input", { bubbles: true }));
      e.dispatchEvent(new Event("change", { bubbles: true }));
      return match.value;
    }, option);
    if (chosen === null) throw new Error(`${this} has no option ${JSON.stringify(option)}`);
    return [chosen];
  }
}

// Playwright's URL glob: `**` any characters, `*` any but `/`, the rest literal.
function globToRegExp(glob) {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    if (glob[i] === "*" && glob[i + 1] === "*") {
      out += ".*";
      i++;
    } else if (glob[i] === "*") {
      out += "[^/]*";
    } else {
      out += glob[i].replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    }
  }
  return new RegExp(`^${out}$`);
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Runs in the page: the elements a locator's chain matches, in document order.
function resolveChainInPage(chain) {
  const norm = (s) => (s || "").replace(/\s+/g, " ").trim();
  const matches = (text, want, exact) =>
    exact ? norm(text) === want : norm(text).toLowerCase().includes(want.toLowerCase());
  const byId = (ids) => (ids || "").split(/\s+/).filter(Boolean)
    .map((id) => document.getElementById(id)?.textContent || "").join(" ");
  const labelsOf = (el) => [
    ...[...(el.labels || [])].map((l) => l.textContent),
    el.getAttribute("aria-label") || "",
    byId(el.getAttribute("aria-labelledby")),
  ].filter((t) => norm(t) !== "");
  const nameOf = (el) => norm(el.getAttribute("aria-label")) ||
    norm(byId(el.getAttribute("aria-labelledby"))) ||
    (el.tagName === "INPUT" ? norm(el.value) : norm(el.textContent));
  const roles = {
    button: "button, input[type=button], input[type=submit], input[type=reset], [role=button]",
  };
  const within = (roots, css) => {
    const found = new Set();
    for (const root of roots) for (const el of root.querySelectorAll(css)) found.add(el);
    return [...found].sort((a, b) =>
      a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1);
  };
  let set = [document];
  for (const step of chain) {
    if (step.css !== undefined) {
      set = within(set, step.css);
    } else if (step.hasText !== undefined) {
      set = set.filter((el) => matches(el.textContent, step.hasText, false));
    } else if (step.label !== undefined) {
      set = within(set, "input, select, textarea, button, [aria-label], [aria-labelledby]")
        .filter((el) => labelsOf(el).some((t) => matches(t, step.label, step.exact)));
    } else if (step.role !== undefined) {
      if (!roles[step.role]) throw new Error(`role ${step.role} is not supported`);
      set = within(set, roles[step.role])
        .filter((el) => el.checkVisibility({ visibilityProperty: true }))
        .filter((el) => step.name === undefined || matches(nameOf(el), step.name, step.exact));
    } else if (step.nth !== undefined) {
      set = set.slice(step.nth, step.nth + 1);
    }
  }
  return set;
}

// An expression for the page: `body` runs with `all`, the elements `chain` matches. Sent as
// source text (evaluated by the browser's automation, which the page's CSP does not govern),
// since a function passed to evaluate cannot bring the resolver along.
function inPage(chain, body) {
  return `(() => { const all = (${resolveChainInPage.toString()})(${JSON.stringify(chain)}); ${body} })()`;
}
