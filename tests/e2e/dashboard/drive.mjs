// Drives /dashboard in Debian's headless chromium, as a user would: reads the overview, types the admin key on
// the keys tab, streams a chat on the playground, and takes a screenshot of each. Prints what it read as JSON.
//
//   node drive.mjs http://ADMIN_ADDR ADMIN_KEY CLIENT_KEY MODEL OUT_DIR
import puppeteer from "puppeteer-core";

const [base, adminKey, clientKey, model, outDir] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  headless: true,
});
// A hang guard for a stuck browser, never a speed bound: each wait below is for a state, not a time.
const guard = { timeout: 120_000 };
const out = {};
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 1000 });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/dashboard`, guard);
  // Two polls: rates need two snapshots, so the first tile (requests/s) shows a figure from the second on.
  await page.waitForFunction(() => document.querySelector(".tile .v")?.textContent.match(/^[0-9]/), guard);
  // For the screenshot in docs/ only: let the charts fill (SHOT_WAIT_MS); the test does not wait.
  await new Promise((r) => setTimeout(r, Number(process.env.SHOT_WAIT_MS || 0)));
  const rows = (sel) => page.$$eval(`${sel} tr`, (trs) => trs.slice(1).map((tr) => [...tr.cells].map((c) => c.textContent)));
  out.models = await rows("#t-models");
  out.keys = await rows("#t-keys");
  out.codes = await rows("#t-codes");
  out.routes = await rows("#t-routes");
  out.tiles = await page.$$eval(".tile", (ts) => Object.fromEntries(ts.map((t) => [t.querySelector(".l").textContent, t.querySelector(".v").textContent])));
  await page.screenshot({ path: `${outDir}/dashboard.png` });

  await page.click('nav button[data-tab="keys"]');
  await page.type("#admin-key", adminKey);
  await page.$eval("#admin-key", (el) => el.dispatchEvent(new Event("change")));
  await page.waitForFunction(() => !document.querySelector("#t-usage-keys .dim") && document.querySelector("#t-usage-keys tr"), guard);
  out.usage = await rows("#t-usage-keys");
  out.groups = await rows("#t-usage-groups");
  await page.screenshot({ path: `${outDir}/dashboard-keys.png` });

  await page.click('nav button[data-tab="playground"]');
  await page.type("#client-key", clientKey);
  await page.select("#pg-model", model);
  await page.$eval("#pg-prompt", (el) => { el.value = "Hello from the playground"; });
  await page.click("#pg-send");
  await page.waitForFunction(() => /tokens|HTTP|error/i.test(document.getElementById("pg-meta").textContent + document.getElementById("answer").className), guard);
  out.answer = await page.$eval("#answer", (el) => el.textContent);
  out.meta = await page.$eval("#pg-meta", (el) => el.textContent);
  await page.screenshot({ path: `${outDir}/dashboard-playground.png` });
  out.errors = errors;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
