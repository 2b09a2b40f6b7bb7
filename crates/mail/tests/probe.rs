//! The connection tests against real servers (aiosmtpd, dovecot): each step and what the
//! server said, and where a wrong password or an untrusted certificate stops it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly, by design

use mailroom_mail::SmtpSettings;
use mailroom_mail::probe::check_smtp;
use mailroom_testkit::{SmtpOptions, SmtpServer};

fn relay() -> Option<SmtpServer> {
    SmtpServer::start(SmtpOptions {
        tls: None,
        login: Some(("relay-user".into(), "relay-pass".into())),
        ..SmtpOptions::default()
    })
}

/// The relay's settings, logging in with `password`, without TLS.
fn login_to(server: &SmtpServer, password: &str) -> SmtpSettings {
    let url = format!(
        "smtp://relay-user:{password}@127.0.0.1:{}?tls=none",
        server.port()
    );
    SmtpSettings::parse(&url, None).unwrap()
}

#[tokio::test]
async fn a_connection_test_reports_each_step_and_what_the_server_said() {
    let Some(server) = relay() else {
        return;
    };
    let check = check_smtp(&login_to(&server, "relay-pass"), "mailroom.test").await;
    assert!(check.succeeded(), "{check:?}");
    let steps: Vec<&str> = check
        .exchanges
        .iter()
        .map(|exchange| exchange.step)
        .collect();
    assert_eq!(steps, ["ehlo", "auth", "quit"]);
    assert!(check.exchanges[1].reply.starts_with("235"), "{check:?}");
    assert!(check.exchanges[2].reply.starts_with("221"), "{check:?}");
    assert!(server.delivered(0).is_empty(), "nothing is sent");
}

#[tokio::test]
async fn a_wrong_password_stops_the_test_at_auth_and_is_never_repeated() {
    let Some(server) = relay() else {
        return;
    };
    let check = check_smtp(&login_to(&server, "not-the-password"), "mailroom.test").await;
    let error = check.error.clone().unwrap();
    assert!(
        error.starts_with("auth:") && error.contains("535"),
        "{error}"
    );
    assert!(!format!("{check:?}").contains("not-the-password"));
}

#[tokio::test]
async fn starttls_asked_of_a_server_without_it_goes_no_further() {
    let Some(server) = SmtpServer::start(SmtpOptions::default()) else {
        return;
    };
    let url = format!("smtp://127.0.0.1:{}", server.port());
    let check = check_smtp(&SmtpSettings::parse(&url, None).unwrap(), "mailroom.test").await;
    assert_eq!(
        check.error.as_deref(),
        Some("starttls: the server does not offer STARTTLS")
    );
}

#[tokio::test]
async fn an_imap_test_logs_in_to_dovecot_and_says_what_it_offers() {
    use mailroom_mail::probe::{ImapSecurity, ImapSettings, check_imap};
    use mailroom_testkit::{IMAP_PASSWORD, IMAP_USER, ImapServer};
    let Some(server) = ImapServer::start() else {
        return;
    };
    let settings = |password: &str| ImapSettings {
        host: "127.0.0.1".to_owned(),
        port: server.port(),
        security: ImapSecurity::None,
        username: IMAP_USER.to_owned(),
        password: password.to_owned().into(),
        ca_file: None,
    };
    let check = check_imap(&settings(IMAP_PASSWORD)).await;
    assert!(check.succeeded(), "{check:?}");
    let steps: Vec<&str> = check
        .exchanges
        .iter()
        .map(|exchange| exchange.step)
        .collect();
    assert_eq!(steps, ["greeting", "login", "capability", "logout"]);
    assert!(
        check.exchanges[2].reply.contains("IMAP4rev1")
            || check.exchanges[2].reply.contains("Imap4rev1"),
        "{check:?}"
    );

    let refused = check_imap(&settings("wrong-password")).await;
    let error = refused.error.clone().unwrap();
    assert!(error.starts_with("login:"), "{error}");
    assert!(!format!("{refused:?}").contains("wrong-password"));
}

#[tokio::test]
async fn an_imap_test_uses_starttls_and_trusts_only_the_ca_it_was_given() {
    use mailroom_mail::probe::{ImapSecurity, ImapSettings, check_imap};
    use mailroom_testkit::{IMAP_PASSWORD, IMAP_USER, ImapOptions, ImapServer};
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = mailroom_testkit::localhost_certificate(dir.path());
    let Some(server) = ImapServer::start_with(ImapOptions {
        tls: Some((cert_path.clone(), key_path)),
    }) else {
        return;
    };
    let settings = |ca_file: Option<std::path::PathBuf>| ImapSettings {
        host: "localhost".to_owned(),
        port: server.port(),
        security: ImapSecurity::StartTls,
        username: IMAP_USER.to_owned(),
        password: IMAP_PASSWORD.to_owned().into(),
        ca_file,
    };
    let trusted = check_imap(&settings(Some(cert_path))).await;
    assert!(trusted.succeeded(), "{trusted:?}");
    let steps: Vec<&str> = trusted
        .exchanges
        .iter()
        .map(|exchange| exchange.step)
        .collect();
    assert_eq!(
        steps,
        ["greeting", "starttls", "login", "capability", "logout"]
    );

    // A certificate of no CA it trusts: the password is never sent.
    let untrusted = check_imap(&settings(None)).await;
    let error = untrusted.error.clone().unwrap();
    assert!(error.starts_with("tls:"), "{error}");
    assert!(
        !untrusted
            .exchanges
            .iter()
            .any(|exchange| exchange.step == "login")
    );
}
