//! The pages in a real browser: Debian's headless Chromium, driven by playwright-core from
//! `tests/browser/` (installed by `./scripts/test`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::TestApp;
use mailroom_testkit::{TestDatabase, both_backends, peer_missing};
use serde_json::Value;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// Node, Chromium and playwright-core, or a loud skip.
fn browser_available() -> Option<()> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&chromium).exists() {
        return peer_missing("Chromium", &format!("{chromium} not found"));
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        return peer_missing("playwright-core", "tests/browser/node_modules missing");
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return peer_missing("Node.js", "node not on PATH");
    }
    Some(())
}

async fn check_page(url: &str, screenshot: &Path) -> Value {
    let output = tokio::process::Command::new("node")
        .arg(browser_dir().join("check-page.mjs"))
        .arg(url)
        .arg(screenshot)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "check-page.mjs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Console lines in which the browser complained about the Content-Security-Policy.
fn csp_errors(page: &Value) -> usize {
    page["consoleMessages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .unwrap()
                .contains("Content Security Policy")
        })
        .count()
}

fn assert_no_violations(page: &Value) {
    assert_eq!(page["violations"], serde_json::json!([]), "{page:#}");
    assert_eq!(page["pageErrors"], serde_json::json!([]), "{page:#}");
    assert_eq!(csp_errors(page), 0, "{page:#}");
    let errors: Vec<&Value> = page["consoleMessages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "error")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// Runs one of the scripted flows of `tests/browser/` against the app; its report, checked
/// for errors and problems (console errors, failed responses, CSP violations).
async fn run_flow(
    script: &str,
    app: &TestApp,
    db: &TestDatabase,
    screenshot: &Path,
    extra: &[&str],
) -> Value {
    let output = tokio::process::Command::new("node")
        .arg(browser_dir().join(script))
        .arg(&app.url)
        .arg(db.dir().join("data/outbox"))
        .arg(screenshot)
        .args(extra)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let flow: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(flow["error"], Value::Null, "{flow:#}");
    assert_eq!(flow["problems"], serde_json::json!([]), "{flow:#}");
    flow
}

both_backends! {
    async fn landing_page_renders_in_chromium_without_csp_violations(db) {
        if browser_available().is_none() {
            return;
        }
        let app = TestApp::spawn(&db).await;
        let screenshot = db.dir().join("landing.png");
        let page = check_page(&app.at("/"), &screenshot).await;

        assert_eq!(page["status"], 200, "{page:#}");
        assert!(page["title"].as_str().unwrap().contains("mailroom"), "{page:#}");
        assert_eq!(page["heading"], "Email infrastructure you run yourself");
        assert_eq!(page["enhanced"], true, "the nonce'd script ran: {page:#}");
        assert_eq!(page["stylesheetApplied"], true, "the stylesheet loaded: {page:#}");
        assert_no_violations(&page);
        assert!(std::fs::metadata(&screenshot).unwrap().len() > 0);

        // The control: the same response with an inline script spliced in without the nonce.
        // The browser blocked it, the checks saw it, and its report reached the server.
        let control = &page["control"];
        assert_eq!(control["injectedScriptRan"], false, "{control:#}");
        assert!(
            control["violations"][0].as_str().unwrap().starts_with("script-src"),
            "{control:#}"
        );
        assert!(csp_errors(control) > 0, "{control:#}");
        // The browser sends its report on its own schedule: bounded only against one that
        // never comes.
        let mut reports = None;
        for _ in 0..600 {
            reports = app.metric("mailroom_csp_reports_total").await;
            if reports == Some(1.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(reports, Some(1.0), "exactly the control's report arrived");
        app.stop().await;
    }

    async fn a_person_signs_up_verifies_signs_in_and_ends_another_session(db) {
        if browser_available().is_none() {
            return;
        }
        let app = TestApp::spawn(&db).await;
        let screenshot = db.dir().join("security.png");
        let flow = run_flow("account-flow.mjs", &app, &db, &screenshot, &[]).await;
        assert_eq!(flow["signedInAs"], "person@example.test", "{flow:#}");
        assert_eq!(flow["afterSignOut"], "/signin", "{flow:#}");
        assert_eq!(flow["sessionsBefore"], 2, "{flow:#}");
        assert_eq!(flow["sessionsAfter"], 1, "{flow:#}");
        assert_eq!(flow["otherAfterRevoke"], "/signin", "{flow:#}");
        let activity = flow["activity"].to_string();
        for action in ["signin.succeeded", "session.revoked", "signup.email_verified"] {
            assert!(activity.contains(action), "{action} missing: {activity}");
        }
        assert!(std::fs::metadata(&screenshot).unwrap().len() > 0);
        app.stop().await;
    }

    async fn an_owner_invites_promotes_and_manages_keys(db) {
        if browser_available().is_none() {
            return;
        }
        let app = TestApp::spawn(&db).await;
        // The owner of a team-plan organization, with the second factor the role will need.
        let owner = crate::common::accounts::create_account(&app, &db, "owner@example.test").await;
        let (authenticator, _) = crate::common::two_factor::enable_totp(&app, &owner).await;
        db.execute("UPDATE orgs SET plan_id = 'team'").await;
        let screenshot = db.dir().join("team.png");
        let key = authenticator.secret.base32();
        let flow = run_flow("team-flow.mjs", &app, &db, &screenshot, &["owner@example.test", key.as_str()]).await;
        assert_eq!(flow["pending"], 1, "{flow:#}");
        assert_eq!(flow["inviteeRole"], "member", "{flow:#}");
        assert_eq!(flow["members"], 2, "{flow:#}");
        assert_eq!(flow["promotedTo"], "admin", "{flow:#}");
        assert_eq!(flow["keyShape"], true, "{flow:#}");
        assert_eq!(flow["keysListed"], 1, "{flow:#}");
        assert_eq!(flow["keyShownAgain"], false, "{flow:#}");
        assert_eq!(flow["keysAfterRevoke"], 0, "{flow:#}");
        assert_eq!(flow["revokedKeyStatus"], 401, "{flow:#}");
        app.stop().await;
    }

    async fn a_person_turns_on_two_factor_signs_in_with_it_and_deletes_the_account(db) {
        if browser_available().is_none() {
            return;
        }
        let app = TestApp::spawn(&db).await;
        let screenshot = db.dir().join("two-factor.png");
        let flow = run_flow("two-factor-flow.mjs", &app, &db, &screenshot, &[]).await;
        assert_eq!(flow["qrIsSvg"], true, "{flow:#}");
        assert_eq!(flow["backupCodes"], 10, "{flow:#}");
        assert_eq!(flow["downloadHasCodes"], true, "{flow:#}");
        assert_eq!(flow["secondStepTitle"], "Two-factor authentication", "{flow:#}");
        assert!(flow["statusAfterCode"].as_str().unwrap().contains("10 backup codes left"), "{flow:#}");
        assert!(flow["statusAfterBackupCode"].as_str().unwrap().contains("9 backup codes left"), "{flow:#}");
        assert_eq!(flow["trustedDevices"], 1, "{flow:#}");
        assert_eq!(flow["trustedSkipsTo"], "/security", "{flow:#}");
        assert_eq!(flow["afterDeletion"], "Your account is deleted.", "{flow:#}");
        assert!(flow["signInAfterDeletion"].as_str().unwrap().contains("wrong"), "{flow:#}");
        app.stop().await;
    }

    async fn a_person_checks_an_address_and_runs_a_bulk_job(db) {
        if browser_available().is_none() {
            return;
        }
        let Some(mx) = mailroom_testkit::ProbePeer::start(
            "127.0.0.51",
            0,
            &serde_json::json!({"recipients": {"alice@verify.test": "250 2.1.5 OK", "bob@verify.test": "250 OK"}}),
        ) else {
            return;
        };
        let dns = mailroom_testkit::DnsServer::start(
            &["test"],
            &[
                mailroom_testkit::Rr::Mx("verify.test", 10, "mx.verify.test"),
                mailroom_testkit::Rr::Ip("mx.verify.test", "127.0.0.51".parse().unwrap()),
            ],
        )
        .await;
        let (dns_server, port) = (dns.address(), mx.port());
        let app = TestApp::spawn_with(&db, |config| {
            config.verify.dns_server = Some(dns_server);
            config.verify.smtp_port = port;
            config.verify.probe_private_networks = true;
        })
        .await;
        let csv = db.dir().join("addresses.csv");
        std::fs::write(&csv, "name,email\nBob,bob@verify.test\nNobody,ghost@verify.test\nBad,not-an-address\n").unwrap();
        let screenshot = db.dir().join("verify.png");
        let flow = run_flow("verify-flow.mjs", &app, &db, &screenshot, &[csv.to_str().unwrap()]).await;
        assert_eq!(flow["oneVerdict"], "deliverable", "{flow:#}");
        assert!(flow["oneHeadline"].as_str().unwrap().starts_with("Deliverable"), "{flow:#}");
        assert_eq!(flow["progress"], serde_json::json!([3, 3]), "{flow:#}");
        assert!(flow["counts"].as_str().unwrap().starts_with("1 deliverable, 2 undeliverable"), "{flow:#}");
        assert!(flow["downloadName"].as_str().unwrap().ends_with(".csv"), "{flow:#}");
        assert_eq!(flow["downloadLines"], 4, "{flow:#}");
        assert!(flow["downloadHeader"].as_str().unwrap().starts_with("email,normalized,verdict"), "{flow:#}");
        assert_eq!(flow["downloadVerdicts"], serde_json::json!(["deliverable", "undeliverable", "undeliverable"]), "{flow:#}");
        assert_eq!(flow["deliverableLogged"], 2, "alice, then bob: {flow:#}");
        app.stop().await;
    }
}

/// npm's oidc-provider (`tests/browser/oidc-provider.mjs`), on a loopback port.
struct OpenIdProvider {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    issuer: String,
}

impl OpenIdProvider {
    const CLIENT_ID: &str = "mailroom";
    const CLIENT_SECRET: &str = "a-client-secret-for-the-tests";

    async fn start() -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new("node")
            .arg(browser_dir().join("oidc-provider.mjs"))
            .args([Self::CLIENT_ID, Self::CLIENT_SECRET])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        let issuer = first["issuer"].as_str().unwrap().to_owned();
        Self {
            child,
            lines,
            issuer,
        }
    }

    /// Registers mailroom's callback and waits until the provider is ready.
    async fn register(&mut self, redirect_uri: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{redirect_uri}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        let ready: Value =
            serde_json::from_str(&self.lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(ready["ready"], true);
    }
}

both_backends! {
    async fn a_person_continues_with_an_openid_provider_and_comes_back_signed_in(db) {
        if browser_available().is_none() {
            return;
        }
        if !browser_dir().join("node_modules/oidc-provider").is_dir() {
            peer_missing::<()>("oidc-provider", "tests/browser/node_modules/oidc-provider missing");
            return;
        }
        let mut provider = OpenIdProvider::start().await;
        let issuer = provider.issuer.clone();
        let app = TestApp::spawn_with(&db, |config| {
            let mut idp = mailroom_server::config::OidcProvider::new(
                "testidp",
                Some(issuer),
                OpenIdProvider::CLIENT_ID.to_owned(),
                secrecy::SecretString::from(OpenIdProvider::CLIENT_SECRET),
            )
            .unwrap();
            idp.display_name = "Test IdP".to_owned();
            config.oidc = vec![idp];
        })
        .await;
        provider.register(&app.at("/v1/auth/oidc/testidp/callback")).await;
        let screenshot = db.dir().join("oidc.png");
        let flow = run_flow(
            "oidc-flow.mjs",
            &app,
            &db,
            &screenshot,
            &["Continue with Test IdP", "river@example.test"],
        )
        .await;
        assert_eq!(flow["atProvider"], true, "{flow:#}");
        assert_eq!(flow["signedInAs"], "river@example.test", "{flow:#}");
        assert!(flow["linked"].to_string().contains("Test IdP"), "{flow:#}");
        assert_eq!(flow["flowCookieLeft"], false, "{flow:#}");
        assert_eq!(
            db.count("SELECT COUNT(*) FROM user_identities WHERE provider = 'testidp'").await,
            1
        );
        app.stop().await;
    }

    async fn a_person_adds_an_smtp_account_sends_a_test_email_and_watches_it_go(db) {
        if browser_available().is_none() {
            return;
        }
        let Some(sink) = mailroom_testkit::SmtpServer::start(mailroom_testkit::SmtpOptions {
            login: Some(("relay-user".into(), "relay-pass".into())),
            ..mailroom_testkit::SmtpOptions::default()
        }) else {
            return;
        };
        let Some(receiver) = mailroom_testkit::WebhookReceiver::start() else {
            return;
        };
        let app = TestApp::spawn_with(&db, |config| {
            config.webhooks.allow_http = true;
            config.webhooks.allow_private_networks = true;
        })
        .await;
        let screenshot = db.dir().join("send.png");
        let port = sink.port().to_string();
        let hook = receiver.url("browser");
        let flow = run_flow("send-flow.mjs", &app, &db, &screenshot, &[port.as_str(), hook.as_str()]).await;
        assert_eq!(flow["status"], "sent", "{flow:#}");
        assert_eq!(flow["recipient"], "anna@example.test", "{flow:#}");
        assert_eq!(flow["attempts"], 1, "{flow:#}");
        let delivered = sink.delivered(1);
        assert_eq!(delivered[0].session["parsed"]["subject"], "Hello from the browser");
        // The webhooks page: the secret shown once, and the test event's delivery.
        assert!(flow["secret"].as_str().unwrap().starts_with("whsec_"), "{flow:#}");
        assert_eq!(flow["delivery"], "webhook.test", "{flow:#}");
        assert_eq!(receiver.received(1).await[0].body["type"], "webhook.test");
        app.stop().await;
    }
}
