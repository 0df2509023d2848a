// Drives edge's status page in headless Chromium (Playwright over
// playwright-core, Debian's /usr/bin/chromium). Run by
// edge-bin/tests/status_page.rs with one JSON argument:
//   { url, profile, servers: ["pool/addr", ...], routes: [...],
//     victim: "pool/addr", operated: "pool/addr", screenshot, phone_screenshot }
// and a line protocol with the test on stdin/stdout: this script prints
// `kill` and waits for `killed` (the victim's backend is gone), prints
// `revive` and waits for `revived` (it serves again), prints `maint` and
// `enable` and waits for `done` (the `operated` server is set to maint,
// then back to ready, on the admin socket). Lines starting with
// `result ` are measurements; any failure exits 1 with the reason.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const cfg = JSON.parse(process.argv[2]);
const DOWN_LIMIT_MS = 2000;
const UP_LIMIT_MS = 5000;

const lines = createInterface({ input: process.stdin });
const input = lines[Symbol.asyncIterator]();
async function ask(command, answer) {
  console.log(command);
  const { value, done } = await input.next();
  if (done || value.trim() !== answer) {
    throw new Error(`asked "${command}", got ${done ? "end of input" : JSON.stringify(value)}`);
  }
}

function check(ok, what) {
  if (!ok) throw new Error(what);
}

/** Milliseconds until the victim's row shows `state`, polled every 25 ms. */
async function timeUntil(page, server, state, limit) {
  const t0 = Date.now();
  const sel = `tr[data-server="${server}"] [data-state]`;
  for (;;) {
    const now = await page.locator(sel).getAttribute("data-state", { timeout: 1000 }).catch(() => null);
    const dt = Date.now() - t0;
    if (now === state) return dt;
    if (dt > limit) throw new Error(`${server} not shown ${state} within ${limit} ms (shows ${now})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const context = await chromium.launchPersistentContext(cfg.profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 900 },
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
});
const problems = [];
let page;
try {
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(new URL(cfg.url).origin)) problems.push(`request elsewhere: ${r.url()}`);
  });

  const resp = await page.goto(cfg.url);
  check(resp && resp.status() === 200, `GET ${cfg.url}: ${resp && resp.status()}`);
  check((await page.title()) === "edge status", `title ${await page.title()}`);

  // Every server and route is listed, every server up.
  for (const s of cfg.servers) {
    await page.waitForSelector(`tr[data-server="${s}"] [data-state="up"]`, { timeout: 10000 });
  }
  const listed = await page.locator("tr[data-server]").evaluateAll((rows) => rows.map((r) => r.dataset.server));
  check(JSON.stringify([...listed].sort()) === JSON.stringify([...cfg.servers].sort()), `servers listed: ${listed}`);
  for (const r of cfg.routes) {
    check((await page.locator(`tr[data-route="${r}"]`).count()) === 1, `route ${r} not listed`);
  }
  check((await page.locator("#certificates tr[data-serial]").count()) >= 1, "no certificate listed");
  check((await page.locator("#access_logs tr[data-sink]").count()) >= 1, "no access-log sink listed");
  check((await page.locator("#live.ok").count()) === 1, "the page does not say it is live");
  console.log(`result listed ${listed.length} servers`);

  // Rates come from successive polls: the test's traffic shows on the web route.
  const rateCell = page.locator('tr[data-route="web"] td[data-label="req/s"]');
  const t0 = Date.now();
  while (!/^[1-9]|^0\.[1-9]/.test(await rateCell.innerText())) {
    check(Date.now() - t0 < 5000, `no request rate on route web: ${await rateCell.innerText()}`);
    await page.waitForTimeout(100);
  }

  // The victim's backend is killed: shown down within two seconds.
  await ask("kill", "killed");
  const down = await timeUntil(page, cfg.victim, "down", DOWN_LIMIT_MS);
  console.log(`result down_after_ms ${down}`);
  const reason = await page.locator(`tr[data-server="${cfg.victim}"] td:last-child`).innerText();
  check(/refused|reset|timeout|closed/.test(reason), `state change of the victim: ${reason}`);
  const last = await page.locator(`tr[data-server="${cfg.victim}"] td.check`).innerText();
  check(/refused|reset|timeout|closed/.test(last) && / ms /.test(last), `last check of the victim: ${last}`);
  for (const s of cfg.servers.filter((s) => s !== cfg.victim)) {
    const ok = await page.locator(`tr[data-server="${s}"] td.check`).innerText();
    check(/^passed · /.test(ok), `last check of ${s}: ${ok}`);
  }
  for (const s of cfg.servers.filter((s) => s !== cfg.victim)) {
    const st = await page.locator(`tr[data-server="${s}"] [data-state]`).getAttribute("data-state");
    check(st === "up", `${s} shows ${st} while only ${cfg.victim} is down`);
  }
  await page.screenshot({ path: cfg.screenshot, fullPage: true });
  console.log(`result screenshot ${cfg.screenshot}`);

  // A phone: the server rows become cards, nothing is wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the page is ${overflow}px wider than a phone's screen`);
  await page.screenshot({ path: cfg.phone_screenshot, fullPage: true });
  console.log(`result screenshot ${cfg.phone_screenshot}`);
  await page.setViewportSize({ width: 1280, height: 900 });

  // It comes back.
  await ask("revive", "revived");
  const up = await timeUntil(page, cfg.victim, "up", UP_LIMIT_MS);
  console.log(`result up_after_ms ${up}`);

  // An operator takes another server out for maintenance and back.
  await ask("maint", "done");
  const maint = await timeUntil(page, cfg.operated, "maintenance", DOWN_LIMIT_MS);
  console.log(`result maintenance_after_ms ${maint}`);
  await ask("enable", "done");
  await timeUntil(page, cfg.operated, "up", DOWN_LIMIT_MS);

  // What this edge cannot produce here (VRRP needs the network lab, ACME a
  // CA): the page renders it from a document with such entries added.
  await page.route("**/status.json", async (route) => {
    const real = await route.fetch();
    const d = await real.json();
    d.vrrp = [{ vrid: 51, interface: "eth0", state: "master", transitions: 3 }];
    d.acme = [
      { names: ["acme.test"], serial: "0a", not_after_ms: Date.now() + 5 * 86400e3, expires_in_seconds: 5 * 86400,
        renew_at_ms: Date.now() - 1000, renewal_due: true, ari_window_ms: null, failures: 2,
        last_error: "order failed: rate limited", orders: 4 },
      { names: ["new.test"], serial: null, not_after_ms: null, expires_in_seconds: null, renew_at_ms: null,
        renewal_due: false, ari_window_ms: null, failures: 0, last_error: null, orders: 0 },
    ];
    await route.fulfill({ response: real, json: d });
  });
  await page.waitForSelector('#vrrp tr[data-vrid="51"] [data-state="master"]', { timeout: 5000 });
  check((await page.locator("#acme tbody tr").count()) === 2, "ACME entries not listed");
  check((await page.locator("#acme").innerText()).includes("rate limited"), "ACME error not shown");
  await page.unroute("**/status.json");

  check(problems.length === 0, problems.join("; "));
  await context.close();
  console.log("result ok");
  lines.close();
  process.exit(0);
} catch (e) {
  console.log(`result failed: ${e.message}`);
  if (problems.length) console.log(`result problems: ${problems.join("; ")}`);
  if (page) await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "-failed.png"), fullPage: true }).catch(() => {});
  await context.close().catch(() => {});
  process.exit(1);
}
