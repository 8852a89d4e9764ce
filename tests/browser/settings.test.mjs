// The settings page in Debian's Chromium, driven by playwright-core: the steps of settings.mjs.
// Run after `cargo build`: node --test tests/browser/settings.test.mjs
// Environment: CHROMIUM (default /usr/bin/chromium), and those of settings.mjs.

import { launchChromium } from "./chromium.mjs";
import { runSettingsTest } from "./settings.mjs";

runSettingsTest({
  name: "Chromium",
  launch: launchChromium,
});
