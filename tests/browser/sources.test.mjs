// The Monitors and Incidents views in Debian's Chromium, driven by playwright-core: the steps of
// sources.mjs.
// Run after `cargo build`: node --test tests/browser/sources.test.mjs
// Environment: CHROMIUM (default /usr/bin/chromium), and those of sources.mjs.

import { launchChromium } from "./chromium.mjs";
import { runSourcesTest } from "./sources.mjs";

runSourcesTest({
  name: "Chromium",
  launch: launchChromium,
});
