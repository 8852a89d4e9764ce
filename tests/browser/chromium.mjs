// Debian's Chromium through playwright-core, for the browser tests' runners (settings.test.mjs,
// sources.test.mjs): a persistent context that refuses, and reports through `onForeign`,
// anything not aimed at 127.0.0.1.

import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export async function launchChromium({ profile, onForeign }) {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
    timeout: 60_000,
  });
  // Anything not aimed at 127.0.0.1 is refused before it leaves, and recorded.
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === "data:" || url.hostname === "127.0.0.1") return route.continue();
    onForeign(route.request().url());
    return route.abort("blockedbyclient");
  });
  context.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol !== "data:" && url.hostname !== "127.0.0.1") onForeign(request.url());
  });
  const page = context.pages()[0] || (await context.newPage());
  return { context, page };
}
