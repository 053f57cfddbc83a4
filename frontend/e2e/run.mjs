// End-to-end tests of the web app against a real `edgeopt serve` (SQLite in a temp folder), driven with
// playwright-core in Debian's Chromium. Run with `npm run e2e` after `npm run build`.
//
// Cases: setup validation, a rejected upload, the full PyTorch flow, the full TensorFlow flow (three techniques each:
// FLOW_TECHNIQUES in cases.mjs), and a reload (plus a dropped connection) during progress. Screenshots of every page
// go to test-results/e2e/screenshots/. The script exits non-zero when any case fails; a case that needs a part of the
// service that is not there fails with "backend endpoint missing: ..." rather than passing.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, OUT_DIR, SCREENSHOTS, ensureDirs, startStack } from "./harness.mjs";
import { CASES } from "./cases.mjs";

const only = process.env.E2E_ONLY ? new Set(process.env.E2E_ONLY.split(",")) : null;

async function main() {
  ensureDirs();
  const started = Date.now();
  const stack = await startStack();
  console.log(`e2e: app at ${stack.appUrl} served by ${stack.servedBy}; API at ${stack.apiUrl}`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
  const results = [];
  const shared = { stack, screenshots: [], experiments: {} };
  try {
    for (const testCase of CASES) {
      if (only && !only.has(testCase.name)) continue;
      const t0 = Date.now();
      const context = await browser.newContext({ baseURL: stack.appUrl, viewport: { width: 1280, height: 900 }, acceptDownloads: true });
      const page = await context.newPage();
      const consoleErrors = [];
      page.on("pageerror", (error) => consoleErrors.push(String(error)));
      let outcome;
      try {
        await testCase.run({ page, context, browser, ...shared });
        if (consoleErrors.length) throw new Error(`uncaught errors in the page: ${consoleErrors.join(" | ")}`);
        outcome = { name: testCase.name, status: "passed" };
      } catch (error) {
        const shot = join(SCREENSHOTS, `FAILED-${testCase.name}.png`);
        await page.screenshot({ path: shot, fullPage: true }).catch(() => undefined);
        outcome = { name: testCase.name, status: "failed", error: error?.message ?? String(error) };
      } finally {
        await context.close();
      }
      outcome.seconds = Math.round((Date.now() - t0) / 1000);
      results.push(outcome);
      console.log(`${outcome.status === "passed" ? "PASS" : "FAIL"} ${testCase.name} (${outcome.seconds} s)${outcome.error ? `\n     ${outcome.error.split("\n").join("\n     ")}` : ""}`);
    }
  } finally {
    await browser.close();
    if (results.some((r) => r.status === "failed")) console.log(`--- last service log lines ---\n${stack.backend.tail(30)}`);
    await stack.stop();
  }
  const passed = results.filter((r) => r.status === "passed").length;
  const failed = results.length - passed;
  const summary = {
    passed,
    failed,
    seconds: Math.round((Date.now() - started) / 1000),
    servedBy: stack.servedBy,
    results,
    screenshots: shared.screenshots,
  };
  writeFileSync(join(OUT_DIR, "summary.json"), JSON.stringify(summary, null, 2));
  console.log(`screenshots: ${shared.screenshots.length} in ${SCREENSHOTS}`);
  console.log(`e2e: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`e2e: could not run: ${error?.stack ?? error}`);
    console.log("e2e: 0 passed, 1 failed");
    process.exit(1);
  },
);
