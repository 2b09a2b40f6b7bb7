// Opens one mailroom page in Debian's headless Chromium and reports, as one JSON line, what a
// person would see and what the console said. Usage: node check-page.mjs URL [SCREENSHOT.png]
//
// A second visit is the negative control: the same response with an inline script spliced in
// without the nonce. It must be blocked and reported, which shows that the first visit's
// checks would have seen a violation had there been one.
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // This machine has no network beyond loopback: keep Chromium from trying.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

async function visit(page) {
  const consoleMessages = [];
  page.on("console", (message) => consoleMessages.push({ type: message.type(), text: message.text() }));
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (event) =>
      window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`),
    );
  });
  const response = await page.goto(url, { waitUntil: "load" });
  // The page's own script is deferred; give it a moment to mark the page.
  await page
    .waitForFunction(() => document.documentElement.dataset.enhanced === "true", null, { timeout: 5000 })
    .catch(() => {});
  return {
    status: response?.status() ?? 0,
    title: await page.title(),
    heading: (await page.textContent("h1"))?.trim() ?? null,
    enhanced: await page.evaluate(() => document.documentElement.dataset.enhanced === "true"),
    stylesheetApplied: await page.evaluate(
      () => getComputedStyle(document.querySelector(".features")).display === "grid",
    ),
    injectedScriptRan: await page.evaluate(() => window.__injected === true),
    violations: await page.evaluate(() => [...window.__cspViolations]),
    consoleMessages,
    pageErrors,
  };
}

try {
  const page = await browser.newPage();
  const result = await visit(page);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });

  const control = await browser.newPage();
  await control.route(url, async (route) => {
    const response = await route.fetch();
    const body = (await response.text()).replace("</body>", "<script>window.__injected = true</script></body>");
    await route.fulfill({ response, body });
  });
  result.control = await visit(control);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
