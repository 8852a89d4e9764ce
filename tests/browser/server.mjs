// The `statussentry` binary for the browser tests: started on a loopback port with a temp
// database and the admin token given, once it logs its "listening on" line; stopped with
// SIGTERM as systemd stops it. Shared by settings.mjs and sources.mjs.

import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const START_DEADLINE_MS = 20_000;

// Starts `bin` in `dir` with `delivery` (lines of its [delivery] section) and `token`; resolves
// to { child, base, log() }.
export function startServer({ bin, dir, token, delivery = [] }) {
  const config = path.join(dir, "statussentry.toml");
  fs.writeFileSync(config, [
    "[server]",
    'listen = "127.0.0.1:0"',
    "[storage]",
    `path = ${JSON.stringify(path.join(dir, "db.sqlite"))}`,
    "[delivery]",
    ...delivery,
    "",
  ].join("\n"));
  const env = { ...process.env, STATUSSENTRY_ADMIN_TOKEN: token, RUST_LOG: "info" };
  delete env.STATUSSENTRY_LISTEN;
  delete env.STATUSSENTRY_DB;
  const child = spawn(bin, ["--config", config], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`no "listening on" line within ${START_DEADLINE_MS} ms; log:\n${log}`));
    }, START_DEADLINE_MS);
    const onData = (chunk) => {
      log += chunk;
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(log);
      if (m && timer) {
        clearTimeout(timer);
        resolve({ child, base: `http://${m[1]}`, log: () => log });
      }
    };
    child.stdout.setEncoding("utf8").on("data", onData);
    child.stderr.setEncoding("utf8").on("data", onData);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${bin} (run cargo build first): ${e.message}`));
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code ?? signal}) before listening; log:\n${log}`));
    });
  });
}

// Stops `server` (if it still runs) with SIGTERM, then SIGKILL after 15 s.
export async function stopServer(server) {
  if (!server || server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise((resolve) => server.child.once("exit", resolve));
  server.child.kill("SIGTERM");
  const timer = setTimeout(() => server.child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}
