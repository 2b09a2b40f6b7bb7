// Signing in with an OpenID provider in Debian's headless Chromium: "Continue with …" on
// /signin, the provider's own login and consent pages (npm's oidc-provider), and back to
// mailroom signed in. Reports one JSON line of what happened, with every problem seen on the way.
// Usage: node oidc-flow.mjs BASE_URL OUTBOX_DIR SCREENSHOT.png PROVIDER_BUTTON LOGIN
import { launch, openPage, problems } from "./lib.mjs";

const [base, , screenshot, button, login] = process.argv.slice(2);
const browser = await launch();
const result = {};
try {
  const context = await browser.newContext();
  const page = await openPage(context);
  await page.goto(`${base}/signin`);
  // The provider's own pages are not ours to judge (its development pages load remote
  // fonts and a favicon that a closed network refuses): problems seen there are dropped.
  const ours = problems.length;
  await page.getByRole("link", { name: button }).click();
  await page.waitForURL((url) => !url.href.startsWith(base));
  result.atProvider = new URL(page.url()).pathname.startsWith("/interaction/");
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill("anything");
  await page.locator('button[type="submit"]').click();
  // The provider asks for consent to share the address and profile.
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((url) => url.href.startsWith(`${base}/security`));
  result.atProviderProblems = problems.splice(ours).length;
  await page.reload();
  result.signedInAs = (await page.locator("#account-email").textContent())?.trim();
  result.linked = await page.locator("#sign-in-providers tbody tr").allTextContents();
  result.flowCookieLeft = (await context.cookies(base)).some((c) => c.name === "__Host-mailroom_oauth");
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
} catch (error) {
  result.error = String(error);
}
result.problems = problems;
console.log(JSON.stringify(result));
await browser.close();
