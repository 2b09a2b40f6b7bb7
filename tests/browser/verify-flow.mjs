// Verification as a person does it, in Debian's headless Chromium: sign up, check one address
// (the verdict told in words), upload a small CSV as a bulk job, watch its progress to the end,
// download the results, and filter the log. Reports one JSON line of what happened, with every
// console error, failed response and CSP violation seen on the way.
// Usage: node verify-flow.mjs BASE_URL OUTBOX_DIR SCREENSHOT.png CSV_FILE
import { readFileSync } from "node:fs";
import { launch, openPage, problems, signUp } from "./lib.mjs";

const [base, outbox, screenshot, csvFile] = process.argv.slice(2);
const browser = await launch();
const result = {};
try {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await openPage(context);
  await signUp(page, base, outbox, "checker@example.test", "correct horse battery staple");

  await page.goto(`${base}/verification`);
  await page.getByLabel("Email address").fill("alice@verify.test");
  await page.getByRole("button", { name: "Verify" }).click();
  result.oneVerdict = await page.locator("#verify-result").getAttribute("data-verdict");
  result.oneHeadline = (await page.locator("#verdict").textContent()).trim();
  result.oneReasons = await page.locator("#verify-result ul.reasons li").allTextContents();

  await page.goto(`${base}/verification/jobs`);
  await page.locator("#bulk-file").setInputFiles(csvFile);
  await page.getByRole("button", { name: "Start the job" }).click();
  await page.waitForURL(/notice=/);
  await page.waitForFunction(
    () => document.querySelector("tr[data-job]")?.dataset.status === "done",
    null,
    { timeout: 30000 },
  );
  const row = page.locator("tr[data-job]").first();
  result.progress = await row.locator("progress").evaluate((bar) => [bar.value, bar.max]);
  result.counts = (await row.locator("td.counts").textContent()).trim();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    row.getByRole("link", { name: "CSV" }).click(),
  ]);
  const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
  result.downloadName = download.suggestedFilename();
  result.downloadLines = csv.length;
  result.downloadHeader = csv[0];
  result.downloadVerdicts = csv.slice(1).map((line) => line.split(",")[2]);

  await page.goto(`${base}/verification/log`);
  await page.getByLabel("Verdict").selectOption("deliverable");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/verdict=deliverable/);
  result.deliverableLogged = await page.locator("#verification-log tbody tr").count();
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (error) {
  result.error = String(error);
}
result.problems = problems;
await browser.close();
console.log(JSON.stringify(result));
