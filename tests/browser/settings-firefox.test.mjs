// The settings page in Debian's firefox-esr over WebDriver BiDi (puppeteer-core): the steps of
// settings.mjs, through the Playwright-like layer in firefox.mjs.
// Run after `cargo build`: node --test tests/browser/settings-firefox.test.mjs
// Environment: FIREFOX (default /usr/bin/firefox-esr), and those of settings.mjs.

import { launchFirefox } from "./firefox.mjs";
import { runSettingsTest } from "./settings.mjs";

const FIREFOX = process.env.FIREFOX || "/usr/bin/firefox-esr";

runSettingsTest({
  name: "Firefox",
  suffix: "-firefox",
  launch: ({ profile, onForeign }) => launchFirefox({ executablePath: FIREFOX, profile, onForeign }),
});
