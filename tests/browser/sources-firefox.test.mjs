// The Monitors and Incidents views in Debian's firefox-esr over WebDriver BiDi (puppeteer-core):
// the steps of sources.mjs, through the Playwright-like layer in firefox.mjs.
// Run after `cargo build`: node --test tests/browser/sources-firefox.test.mjs
// Environment: FIREFOX (default /usr/bin/firefox-esr), and those of sources.mjs.

import { launchFirefox } from "./firefox.mjs";
import { runSourcesTest } from "./sources.mjs";

const FIREFOX = process.env.FIREFOX || "/usr/bin/firefox-esr";

runSourcesTest({
  name: "Firefox",
  suffix: "-firefox",
  launch: ({ profile, onForeign }) => launchFirefox({ executablePath: FIREFOX, profile, onForeign }),
});
