// An OpenID provider for the tests: npm's oidc-provider on a loopback port, with one client
// registered for mailroom (PKCE required, client_secret_basic) and its development
// login/consent interaction, which signs in whatever login is typed: the account's email is the
// login, and it is verified unless the login starts with "unverified".
// Usage: node oidc-provider.mjs CLIENT_ID CLIENT_SECRET
// Prints {"issuer": "http://127.0.0.1:PORT"} once it listens, then reads the client's redirect
// URI from stdin (mailroom's port is known only once mailroom, configured with this issuer,
// is up) and prints {"ready": true}.
import http from "node:http";
import { createInterface } from "node:readline";
import Provider from "oidc-provider";

const [clientId, clientSecret] = process.argv.slice(2);

const server = http.createServer();
server.listen(0, "127.0.0.1", async () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  process.stdout.write(JSON.stringify({ issuer }) + "\n");
  const lines = createInterface({ input: process.stdin });
  const redirectUri = (await lines[Symbol.asyncIterator]().next()).value.trim();
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
      },
    ],
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    // The email claims in the ID token itself, where mailroom reads them.
    conformIdTokenClaims: false,
    claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
    cookies: { keys: ["mailroom-test-provider-cookie-key"] },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: `subject-of-${id}`,
            email: id.replace(/^unverified-?/, ""),
            email_verified: !id.startsWith("unverified"),
            name: "Provider Person",
          };
        },
      };
    },
  });
  // Plain http on loopback: the provider is told the connection is what it is.
  provider.proxy = false;
  server.on("request", provider.callback());
  process.stdout.write(JSON.stringify({ ready: true }) + "\n");
});
