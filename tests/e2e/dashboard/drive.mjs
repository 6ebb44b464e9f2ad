// Drives /dashboard in Debian's headless chromium, as a user would: reads the overview, types the admin key on
// the keys tab, makes, rotates and revokes a key there (trying each secret at the gateway), tries the admin API
// from a page of another origin, streams a chat on the playground, and takes a screenshot of each. Prints what
// it read as JSON.
//
//   node drive.mjs http://ADMIN_ADDR ADMIN_KEY CLIENT_KEY MODEL OUT_DIR http://GATEWAY_ADDR
import puppeteer from "puppeteer-core";

const [base, adminKey, clientKey, model, outDir, gateway] = process.argv.slice(2);
// A chat at the gateway with `secret` (from Node, not the page): its HTTP status.
const tryKey = async (secret) => (await fetch(`${gateway}/v1/chat/completions`, {
  method: "POST", headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
  body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 5 }),
})).status;
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

  // Make a key, rotate it, revoke it: each from the page, each secret tried at the gateway.
  const secret = async (before) => {
    await page.waitForFunction((b) => { const s = document.getElementById("new-secret").textContent; return s && s !== b; }, guard, before);
    return page.$eval("#new-secret", (el) => el.textContent);
  };
  await page.waitForFunction(() => document.querySelector("#t-manage-keys tr"), guard);
  await page.type("#new-name", "dash-made");
  await page.type("#new-group", "ml");
  await page.click("#key-create");
  const made = await secret("");
  out.made = { status: await tryKey(made) };
  await page.waitForSelector('button[data-rotate="dash-made"]', guard);
  await page.click('button[data-rotate="dash-made"]');
  const rotated = await secret(made);
  out.rotated = { status: await tryKey(rotated), old: await tryKey(made) };
  page.once("dialog", (d) => d.accept());
  await page.click('button[data-revoke="dash-made"]');
  await page.waitForFunction(() => /revoked dash-made/.test(document.getElementById("keys-msg").textContent), guard);
  out.revoked = { status: await tryKey(rotated), old: await tryKey(made) };
  out.managed = await rows("#t-manage-keys");
  await page.screenshot({ path: `${outDir}/dashboard-manage.png` });

  // Another origin's page (the gateway's port) tries to make a key through the admin API: as a form would (no
  // preflight), and with the admin key in a header (a preflight the admin listener does not grant).
  const other = await browser.newPage();
  await other.goto(`${gateway}/healthz`, guard).catch(() => {});
  out.crossOrigin = await other.evaluate(async (admin, key) => {
    const results = [];
    try {
      await fetch(`${admin}/v1/keys`, { method: "POST", mode: "no-cors", body: JSON.stringify({ name: "csrf-made" }) });
      results.push("sent");
    } catch (e) { results.push("blocked"); }
    try {
      const r = await fetch(`${admin}/v1/keys`, { method: "POST", headers: { authorization: `Bearer ${key}` },
        body: JSON.stringify({ name: "csrf-made-2" }) });
      results.push(`status ${r.status}`);
    } catch (e) { results.push("blocked"); }
    return results;
  }, base, adminKey);
  await other.close();
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
