// Sending as a person does it, in Debian's headless Chromium: sign up, add an SMTP account on
// /accounts, send a test email from /emails, and watch its page until the message is sent;
// then add a webhook endpoint on /emails/webhooks, send it a test event and watch it arrive.
// Reports one JSON line of what happened, with every console error, failed response and CSP
// violation seen on the way.
// Usage: node send-flow.mjs BASE_URL OUTBOX_DIR SCREENSHOT.png SMTP_PORT WEBHOOK_URL
import { launch, openPage, problems, signUp } from "./lib.mjs";

const [base, outbox, screenshot, smtpPort, webhookUrl] = process.argv.slice(2);
const browser = await launch();
const result = {};
try {
  const context = await browser.newContext();
  const page = await openPage(context);
  await signUp(page, base, outbox, "sender@example.test", "correct horse battery staple");

  await page.goto(`${base}/accounts`);
  await page.locator("#smtp-name").fill("Relay");
  await page.locator("#smtp-address").fill("news@example.test");
  await page.locator("#smtp-host").fill("127.0.0.1");
  await page.locator("#smtp-port").fill(smtpPort);
  await page.locator("#smtp-security").selectOption("none");
  await page.locator("#smtp-username").fill("relay-user");
  await page.locator("#smtp-password").fill("relay-pass");
  await page.getByRole("button", { name: "Add account" }).click();
  await page.waitForURL(/notice=account_connected/);

  await page.goto(`${base}/emails`);
  await page.locator("#test-to").fill("anna@example.test");
  await page.locator("#test-subject").fill("Hello from the browser");
  await page.getByRole("button", { name: "Send", exact: true }).click();
  await page.waitForURL(/\/emails\/.+notice=email_queued/);
  result.notice = (await page.locator("p.notice").textContent()).trim();
  // The page is the server's: look again until the delivery is done.
  for (let look = 0; look < 600; look += 1) {
    result.status = (await page.locator("#email-status").textContent()).trim();
    if (result.status !== "queued" && result.status !== "sending") break;
    await page.waitForTimeout(100);
    await page.reload();
  }
  result.recipient = (await page.locator("#recipients tbody tr td").first().textContent()).trim();
  result.attempts = await page.locator("#attempts li").count();
  await page.screenshot({ path: screenshot, fullPage: true });

  await page.goto(`${base}/emails`);
  await page.getByRole("link", { name: "Webhooks" }).click();
  await page.locator("#webhook-url").fill(webhookUrl);
  await page.getByRole("button", { name: "Add", exact: true }).click();
  result.secret = (await page.locator("#webhook-secret").textContent()).trim();
  await page.locator("#webhooks tbody a").first().click();
  await page.getByRole("button", { name: "Send a test event" }).click();
  await page.waitForURL(/notice=done/);
  for (let look = 0; look < 600; look += 1) {
    if ((await page.locator("#deliveries").count()) > 0) break;
    await page.waitForTimeout(100);
    await page.reload();
  }
  result.delivery = (await page.locator("#deliveries tbody tr td code").first().textContent()).trim();
} catch (error) {
  result.error = String(error);
}
result.problems = problems;
await browser.close();
console.log(JSON.stringify(result));
