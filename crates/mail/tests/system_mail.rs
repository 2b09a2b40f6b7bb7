//! System mail against a real SMTP server (aiosmtpd) and into the outbox.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly, by design

use mailroom_mail::{SmtpSettings, SystemMail, parse_mailbox, templates};
use mailroom_testkit::{SmtpOptions, SmtpServer};

fn recipient() -> mailroom_mail::Address {
    "new.user@example.test".parse().unwrap()
}

fn from() -> lettre::message::Mailbox {
    parse_mailbox("mailroom <noreply@mailroom.test>").unwrap()
}

/// Checks what a person's mail client would see.
fn assert_is_the_code_message(raw: &str) {
    assert!(raw.contains("Subject: Your mailroom code: 482913"), "{raw}");
    assert!(
        raw.contains("From: mailroom <noreply@mailroom.test>"),
        "{raw}"
    );
    assert!(raw.contains("To: new.user@example.test"), "{raw}");
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(
        raw.contains("text/plain") && raw.contains("text/html"),
        "{raw}"
    );
    assert!(
        raw.contains("Message-ID:") && raw.contains("Date:"),
        "{raw}"
    );
}

/// A plain-text relay on loopback that wants `relay-user` / `relay-pass`, and system mail
/// pointed at it with the given password.
fn relay_with_login(password: &str) -> Option<(SmtpServer, SystemMail)> {
    let server = SmtpServer::start(SmtpOptions {
        tls: None,
        login: Some(("relay-user".into(), "relay-pass".into())),
        ..SmtpOptions::default()
    })?;
    let url = format!(
        "smtp://relay-user:{password}@127.0.0.1:{}?tls=none",
        server.port()
    );
    let mail = SystemMail::smtp(&SmtpSettings::parse(&url, None).unwrap(), from()).unwrap();
    Some((server, mail))
}

#[tokio::test]
async fn delivers_through_an_smtp_relay_with_login() {
    let Some((server, mail)) = relay_with_login("relay-pass") else {
        return;
    };
    let message = templates::verification_code("confirm your email address", "482913", 5);
    mail.send(&recipient(), &message).await.unwrap();

    let delivered = server.delivered(1);
    assert_eq!(delivered.len(), 1);
    assert_is_the_code_message(&delivered[0].raw);
    assert_eq!(delivered[0].session["login"], "relay-user");
    assert_eq!(delivered[0].session["rcpt_tos"][0], "new.user@example.test");
    assert_eq!(delivered[0].session["mail_from"], "noreply@mailroom.test");
}

#[tokio::test]
async fn wrong_relay_credentials_fail_the_send() {
    let Some((server, mail)) = relay_with_login("wrong") else {
        return;
    };
    let message = templates::verification_code("sign in", "482913", 5);
    assert!(mail.send(&recipient(), &message).await.is_err());
    assert!(server.delivered(0).is_empty());
}

#[tokio::test]
async fn starttls_is_used_and_never_downgraded() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = mailroom_testkit::localhost_certificate(dir.path());
    let message = templates::verification_code("reset your password", "482913", 5);

    // A relay that offers STARTTLS: the session is encrypted, with a certificate we were
    // told to trust.
    let Some(tls_server) = SmtpServer::start(SmtpOptions {
        tls: Some((cert_path.clone(), key_path)),
        login: Some(("relay-user".into(), "relay-pass".into())),
        ..SmtpOptions::default()
    }) else {
        return;
    };
    let url = format!(
        "smtp://relay-user:relay-pass@localhost:{}",
        tls_server.port()
    );
    let settings = SmtpSettings::parse(&url, Some(cert_path.clone())).unwrap();
    SystemMail::smtp(&settings, from())
        .unwrap()
        .send(&recipient(), &message)
        .await
        .unwrap();
    let delivered = tls_server.delivered(1);
    assert_eq!(delivered[0].session["tls"], true);
    assert_is_the_code_message(&delivered[0].raw);

    // Without trusting its certificate, nothing is sent.
    let untrusted = SmtpSettings::parse(&url, None).unwrap();
    let result = SystemMail::smtp(&untrusted, from())
        .unwrap()
        .send(&recipient(), &message)
        .await;
    assert!(result.is_err(), "an untrusted certificate must fail");

    // A relay without STARTTLS: the message is not sent in clear.
    let Some(plain_server) = SmtpServer::start(SmtpOptions::default()) else {
        return;
    };
    let url = format!("smtp://localhost:{}", plain_server.port());
    let settings = SmtpSettings::parse(&url, Some(cert_path)).unwrap();
    let result = SystemMail::smtp(&settings, from())
        .unwrap()
        .send(&recipient(), &message)
        .await;
    assert!(
        result.is_err(),
        "required STARTTLS must not fall back to plain text"
    );
    assert!(plain_server.delivered(0).is_empty());
}

#[tokio::test]
async fn without_a_relay_messages_land_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("data/outbox");
    let mail = SystemMail::outbox(&outbox, from()).unwrap();
    let message = templates::verification_code("confirm your email address", "482913", 5);
    mail.send(&recipient(), &message).await.unwrap();

    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    assert_is_the_code_message(&std::fs::read_to_string(&files[0]).unwrap());
}
