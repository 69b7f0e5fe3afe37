// Drives one page of a real headless Chromium (Debian's, through
// playwright-core) step by step, for the console's browser test.
//
//   node harness/browser/console.mjs < steps
//
// Standard input is JSON, one object a line: first the session,
//   {"base": "http://127.0.0.1:8090", "token": "…"}
// then one step a line (answered before the next is read, so the caller can
// act between two steps):
//   {"action": "goto", "path": "/dead-letters"}
//   {"action": "login"}                       the token into `API token`, `Sign in`
//   {"action": "expect-text", "text": "Overview"}
//   {"action": "wait-for", "selector": "#partitions tr", "text": "held", "timeout": 10000}
//   {"action": "click", "role": "link", "name": "Dead letters", "within": "#groups tr"}
//   {"action": "fill", "label": "Order id", "value": "…"}
//   {"action": "screenshot", "path": "out.png"}
// Each step prints one JSON line on stdout: {"step", "action", "ok": true,
// "url", "text" (the matched element's text, for wait-for), "console" (the
// page's console errors since the last step)}. The first failure prints
// {"ok": false, "error", "url", "page_text"} and exits 1.
//
// PLAYWRIGHT_MODULES names the node_modules holding playwright-core
// (default: .tools/browser/node_modules of the workspace, where
// scripts/install-browser.sh puts it); CHROMIUM the browser (default
// /usr/bin/chromium). Playwright never downloads a browser here.
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = process.env.PLAYWRIGHT_MODULES || resolve(here, "../../.tools/browser/node_modules");
const { chromium } = createRequire(join(modules, "noop.js"))("playwright-core");

const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const STEP_TIMEOUT = 15000;

function scope(page, within) {
  return within ? page.locator(within).first() : page;
}

const actions = {
  async goto(page, session, s) {
    await page.goto(new URL(s.path, session.base).href);
  },
  async login(page, session, s) {
    await page.goto(new URL("/login", session.base).href);
    await page.getByLabel("API token", { exact: true }).fill(session.token);
    const signedIn = page.waitForNavigation({ timeout: s.timeout ?? STEP_TIMEOUT });
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    const answer = await signedIn;
    if (new URL(page.url()).pathname === "/login") {
      throw new Error(`not signed in: HTTP ${answer?.status()} on ${page.url()}`);
    }
  },
  async "expect-text"(page, _session, s) {
    const found = scope(page, s.within).getByText(s.text).first();
    await found.waitFor({ state: "visible", timeout: s.timeout ?? STEP_TIMEOUT });
    return found.innerText();
  },
  async "wait-for"(page, _session, s) {
    let found = page.locator(s.selector);
    if (s.text !== undefined) found = found.filter({ hasText: s.text });
    found = found.first();
    await found.waitFor({ state: "visible", timeout: s.timeout ?? STEP_TIMEOUT });
    return found.innerText();
  },
  async click(page, _session, s) {
    const target = scope(page, s.within).getByRole(s.role, { name: s.name, exact: true }).first();
    await target.click({ timeout: s.timeout ?? STEP_TIMEOUT });
    await page.waitForLoadState("load");
  },
  async fill(page, _session, s) {
    await page.getByLabel(s.label, { exact: true }).fill(s.value, { timeout: STEP_TIMEOUT });
  },
  async screenshot(page, _session, s) {
    await page.screenshot({ path: s.path, fullPage: s.fullPage ?? true });
  },
};

async function pageText(page) {
  try {
    return (await page.locator("body").innerText({ timeout: 2000 })).slice(0, 4000);
  } catch (e) {
    return `(no page text: ${e.message})`;
  }
}

async function run(lines, page, errors) {
  const first = await lines.next();
  if (first.done) throw new Error("no session line on stdin");
  const session = JSON.parse(first.value);
  let step = 0;
  for await (const line of lines) {
    if (!line.trim()) continue;
    step += 1;
    const s = JSON.parse(line);
    const act = actions[s.action];
    const begun = Date.now();
    try {
      if (!act) throw new Error(`unknown action ${JSON.stringify(s.action)}`);
      const text = await act(page, session, s);
      const seen = errors.splice(0);
      process.stdout.write(JSON.stringify({ step, action: s.action, ok: true, ms: Date.now() - begun, url: page.url(), text, console: seen }) + "\n");
    } catch (e) {
      const failure = { step, action: s.action, ok: false, ms: Date.now() - begun, error: String(e.message || e).replace(/\u001b\[[0-9;]*m/g, ""), url: page.url(), page_text: await pageText(page), console: errors.splice(0) };
      process.stdout.write(JSON.stringify(failure) + "\n");
      process.stderr.write(`step ${step} (${line}) failed: ${failure.error}\npage text:\n${failure.page_text}\n`);
      return false;
    }
  }
  return true;
}

const profile = mkdtempSync(join(tmpdir(), "console-browser-"));
let ok = false;
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ARGS,
  viewport: { width: 1280, height: 860 },
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`${m.text()} (${m.location().url})`);
  });
  page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  ok = await run(lines, page, errors);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
