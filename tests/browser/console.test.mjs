// End-to-end test of GET /console in the system's headless Chromium, driven by playwright-core (no
// browser download). It starts the real server (the debug binary given in OXCELIZE_BIN) on 127.0.0.1 with a
// temporary config and storage, runs workflows through the API on a generated 200k-row CSV, and checks
// what the page shows. Screenshots go to tests/browser/output/ (or CONSOLE_TEST_OUTPUT).
//
// Run through tests/browser/run.sh, which builds the binary and installs playwright-core.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const OUTPUT = process.env.CONSOLE_TEST_OUTPUT || join(here, "output");
const BINARY = process.env.OXCELIZE_BIN || "";
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const ROWS = 200_000;
const TOKEN = "console-test-token-5f1c";

// Flags for Chromium as root in a container: no sandbox, no GPU, no network chatter of its own.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const missing = !BINARY || !existsSync(BINARY)
  ? `OXCELIZE_BIN does not name the server binary (${BINARY || "unset"})`
  : !existsSync(CHROMIUM)
    ? `${CHROMIUM} is not installed (apt-get install chromium)`
    : null;
if (missing) console.log(`console browser test skipped: ${missing}`);

// Everything started here is stopped on exit, whatever the outcome.
const cleanups = [];
async function cleanup() {
  while (cleanups.length) {
    try {
      await cleanups.pop()();
    } catch (error) {
      console.error(`cleanup: ${error.message}`);
    }
  }
}
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => cleanup().finally(() => process.exit(130)));
}
after(cleanup);

function configYaml(root, auth, port) {
  const authBlock = auth
    ? `    auth:\n      enabled: true\n      tokens: ["${TOKEN}"]\n      protect_rest_api: true\n`
    : "";
  return `app:
  host: "127.0.0.1"
  port: ${port}
  workers: 2
file:
  upload_folder: "${root}/uploads"
  output_folder: "${root}/outputs"
logging:
  level: "WARNING"
  file: ""
chat_workflows:
  enabled: true
  max_connections: 100
  storage:
    workflows_path: "${root}/automation/workflows"
    dumps_path: "${root}/automation/dumps"
    sqlite_path: "${root}/automation/sqlite/chat.db"
  backup:
    enabled: false
    snapshot_path: "${root}/automation/sqlite/snapshots"
  execution:
    max_concurrent_jobs: 2
  websocket:
    host: "127.0.0.1"
    port: 0
${authBlock}`;
}

/**
 * Starts the server (REST on `port`, 0 = a free one; WebSocket on a free port) and reads the REST address
 * from its start-up banner. `root` reuses the storage of an earlier start.
 */
async function startServer({ auth = false, port = 0, root = null } = {}) {
  if (!root) {
    root = mkdtempSync(join(tmpdir(), "oxcelize-console-"));
    const made = root;
    cleanups.push(() => rmSync(made, { recursive: true, force: true }));
  }
  const configPath = join(root, "config.yml");
  writeFileSync(configPath, configYaml(root, auth, port));
  const child = spawn(BINARY, ["--config", configPath], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
  };
  cleanups.push(stop);
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const base = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`no start-up banner within 60 s: ${out}${stderr}`)), 60_000);
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = out.match(/REST (http:\/\/[0-9.:]+)\//);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
  const headers = auth ? { Authorization: `Bearer ${TOKEN}` } : {};
  return { base, api: `${base}/api/v1`, headers, root, port: Number(new URL(base).port), stop };
}

async function call(server, method, path, body) {
  const init = { method, headers: { ...server.headers } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(`${server.api}${path}`, init);
  const json = await res.json();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json.data;
}

function ordersCsv(rows) {
  const statuses = ["active", "closed", "pending", "active"];
  const regions = ["north", "south", "east", "west"];
  const lines = ["id,name,region,amount,status"];
  for (let i = 1; i <= rows; i++) {
    lines.push(`${i},customer ${i},${regions[i % 4]},${(i * 37) % 1000}.${i % 100},${statuses[i % 4]}`);
  }
  return lines.join("\n") + "\n";
}

async function conversationWithFile(server, csv) {
  const { chat_id: chatId } = await call(server, "POST", "/chat/workflows");
  const form = new FormData();
  form.append("file", new Blob([csv], { type: "text/csv" }), "orders.csv");
  await call(server, "POST", `/chat/workflows/${chatId}/upload`, form);
  return chatId;
}

const search = (column, operator, value) => ({
  operation: "csv/search",
  arguments: { conditions: [{ column, operator, value }], output_format: "csv" },
});

async function openBrowser(viewport) {
  const { chromium } = await import("playwright-core");
  const profile = mkdtempSync(join(tmpdir(), "oxcelize-chromium-"));
  cleanups.push(() => rmSync(profile, { recursive: true, force: true }));
  // A persistent context on a fresh profile folder: the explicit --user-data-dir of each run.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
  });
  cleanups.push(() => context.close());
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console error: ${message.text()} (${message.location().url})`);
  });
  return { page, problems };
}

/** Records every value the overall bar of each job card takes, and every step detail that names rows. */
async function recordJobBars(page) {
  await page.evaluate(() => {
    window.__barValues = {};
    window.__rowTexts = [];
    const record = () => {
      for (const detail of document.querySelectorAll("article.job .step-detail > span")) {
        if (/\brows\b/.test(detail.textContent)) window.__rowTexts.push(detail.textContent);
      }
      for (const bar of document.querySelectorAll("article.job > .job-bar")) {
        const id = bar.parentElement.dataset.jobId;
        const values = (window.__barValues[id] ||= []);
        const value = Number(bar.getAttribute("aria-valuenow"));
        if (values[values.length - 1] !== value) values.push(value);
      }
    };
    new MutationObserver(record).observe(document.body, {
      subtree: true,
      childList: true,
      attributes: true,
      attributeFilter: ["aria-valuenow"],
    });
  });
}

const watched = (page, chatId) =>
  page.waitForSelector(`li[data-chat-id="${chatId}"] .conversation[data-watched="true"]`, { timeout: 30_000 });

before(() => mkdirSync(OUTPUT, { recursive: true }));

test("console shows live progress, cancels a run and offers downloads", { skip: missing || false, timeout: 600_000 }, async () => {
  const server = await startServer();
  const { page, problems } = await openBrowser({ width: 1440, height: 1000 });
  await page.goto(`${server.base}/console`);
  // Health figures arrive on their own.
  await page.waitForFunction(() => {
    const value = document.querySelector('[data-figure="http"] .figure-value');
    return value && /\d/.test(value.textContent);
  }, null, { timeout: 20_000 });

  const csv = ordersCsv(ROWS);
  const first = await conversationWithFile(server, csv);
  await watched(page, first);
  await recordJobBars(page);

  // Four steps: even with only 0/100 per step the overall bar passes 25, 50 and 75.
  const { job_id: firstJob } = await call(server, "POST", `/chat/workflows/${first}/execute`, {
    async: true,
    steps: [
      search("status", "not_equals", "closed"),
      search("amount", "greater_than", "100"),
      search("region", "not_equals", "east"),
      { operation: "json/generate", arguments: { pretty_print: false } },
    ],
  });
  const card = `article.job[data-job-id="${firstJob}"]`;
  // A picture of a run in flight, when the run is slow enough to catch one (the assertions below do not
  // depend on it).
  try {
    await page.waitForFunction((sel) => {
      const value = Number(document.querySelector(sel)?.getAttribute("aria-valuenow"));
      return value > 0 && value < 100;
    }, `${card} > .job-bar`, { timeout: 30_000, polling: 50 });
    await page.screenshot({ path: join(OUTPUT, "console-running-1440x1000.png") });
  } catch (error) {
    console.log(`no in-flight screenshot: ${error.message.split("\n")[0]}`);
  }
  await page.waitForSelector(`${card}[data-status="completed"]`, { timeout: 300_000 });
  const values = await page.evaluate((id) => window.__barValues[id] || [], firstJob);
  console.log(`overall bar values of ${firstJob}: ${values.join(", ")}`);
  assert.ok(values.some((v) => v > 0 && v < 100), `no intermediate value in ${values}`);
  assert.equal(values[values.length - 1], 100);
  assert.equal(await page.getAttribute(`${card} > .job-bar`, "aria-valuenow"), "100");
  // Where the server sends intermediate progress with row counts, the step shows them.
  const events = await call(server, "GET", `/chat/workflows/${first}/events?limit=1000`);
  const withRows = events.events.filter((e) => e.type === "progress" && typeof e.rows_processed === "number");
  const rowTexts = await page.evaluate(() => window.__rowTexts);
  console.log(`progress events with rows: ${withRows.length}; step details with rows: ${rowTexts.length}`);
  if (withRows.length) assert.ok(rowTexts.some((t) => /[\d,]+ (of [\d,]+ )?rows/.test(t)), rowTexts.join(" | "));
  // The run's outputs are download links that serve the file.
  const links = await page.$$eval(`${card} .outputs a.download`, (as) => as.map((a) => a.href));
  assert.ok(links.some((href) => href.endsWith(".json")), `no .json output link in ${links}`);
  for (const href of links) {
    const res = await fetch(href);
    assert.equal(res.status, 200, href);
  }

  // A second run in another conversation, cancelled with the console's button.
  const second = await conversationWithFile(server, csv);
  await watched(page, second);
  const { job_id: secondJob } = await call(server, "POST", `/chat/workflows/${second}/execute`, {
    async: true,
    steps: Array.from({ length: 8 }, (_, i) => search("amount", "greater_than", String(i))),
  });
  const secondCard = `article.job[data-job-id="${secondJob}"]`;
  await page.click(`${secondCard} button.job-cancel`, { timeout: 30_000 });
  await page.waitForSelector(`${secondCard}[data-status="cancelled"]`, { timeout: 300_000 });
  assert.equal((await page.textContent(`${secondCard} .badge`)).trim(), "cancelled");
  const job = await call(server, "GET", `/chat/workflows/${second}/jobs/${secondJob}`);
  assert.equal(job.status, "cancelled");

  await page.screenshot({ path: join(OUTPUT, "console-1440x1000.png") });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(OUTPUT, "console-390x844.png") });
  await page.screenshot({ path: join(OUTPUT, "console-390x844-full.png"), fullPage: true });
  assert.deepEqual(problems, []);
});

test("with auth on, the console asks for the token and then goes live", { skip: missing || false, timeout: 120_000 }, async () => {
  const server = await startServer({ auth: true });
  const chatId = (await call(server, "POST", "/chat/workflows")).chat_id;
  const { page, problems } = await openBrowser({ width: 1440, height: 1000 });
  const refused = [];
  page.on("response", (res) => {
    if (res.status() === 401) refused.push(res.url());
  });
  await page.goto(`${server.base}/console`);
  await page.waitForSelector("#token-dialog[open]", { timeout: 10_000 });
  await page.screenshot({ path: join(OUTPUT, "console-token-prompt.png") });
  await page.fill("#token-input", TOKEN);
  await page.click("#token-save");
  await watched(page, chatId);
  assert.equal(await page.getAttribute("#connection", "data-state"), "live");
  // No REST call went out without the token.
  assert.deepEqual(refused, []);
  assert.deepEqual(problems, []);
});

test("after a server restart the console reconnects, resumes from its last seq and shows the next run", { skip: missing || false, timeout: 300_000 }, async () => {
  let server = await startServer();
  const chatId = await conversationWithFile(server, ordersCsv(1000));
  const { page, problems } = await openBrowser({ width: 1440, height: 1000 });
  const sent = [];
  page.on("websocket", (socket) => socket.on("framesent", (frame) => sent.push(String(frame.payload))));
  await page.goto(`${server.base}/console`);
  await watched(page, chatId);
  const before = await call(server, "POST", `/chat/workflows/${chatId}/execute`, { steps: [search("status", "equals", "active")] });
  await page.waitForSelector(`article.job[data-job-id="${before.job_id}"][data-status="completed"]`, { timeout: 60_000 });

  // Same storage, same port: the page's socket is closed with 1001 and comes back on its own.
  await server.stop();
  await page.waitForSelector('#connection[data-state="connecting"]', { timeout: 30_000 });
  server = await startServer({ root: server.root, port: server.port });
  await page.waitForSelector('#connection[data-state="live"]', { timeout: 60_000 });
  const resumed = sent.map((text) => JSON.parse(text)).filter((m) => m.type === "resume" && m.chat_id === chatId);
  assert.ok(resumed.length >= 1 && resumed[0].last_seq > 0, `no resume with a last_seq: ${sent.join(" | ")}`);

  const after = await call(server, "POST", `/chat/workflows/${chatId}/execute`, { async: true, steps: [search("status", "equals", "closed")] });
  await page.waitForSelector(`article.job[data-job-id="${after.job_id}"][data-status="completed"]`, { timeout: 60_000 });
  // Requests and sockets refused while the server was down are expected; nothing else is.
  assert.deepEqual(problems.filter((p) => !/ERR_CONNECTION_REFUSED|WebSocket/.test(p)), []);
});
