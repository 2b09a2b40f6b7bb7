//! A connection test of an SMTP server, step by step, as an operator reads it: what the server
//! answered to EHLO, STARTTLS when the settings ask for it, AUTH when they hold credentials,
//! and QUIT. Nothing is sent.

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use secrecy::ExposeSecret;

use crate::{SMTP_TIMEOUT, SmtpSecurity, SmtpSettings, tls_parameters};

/// One step of the conversation and what the server said to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    pub step: &'static str,
    pub reply: String,
}

/// What a connection test found: every step taken, and why it stopped, if it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpCheck {
    pub exchanges: Vec<Exchange>,
    pub error: Option<String>,
}

impl SmtpCheck {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// Connects to the server of `settings`, saying `hello` in EHLO, and logs in as they say.
pub async fn check_smtp(settings: &SmtpSettings, hello: &str) -> SmtpCheck {
    let mut exchanges = Vec::new();
    let error = converse(settings, hello, &mut exchanges).await.err();
    SmtpCheck { exchanges, error }
}

async fn converse(
    settings: &SmtpSettings,
    hello: &str,
    exchanges: &mut Vec<Exchange>,
) -> Result<(), String> {
    let hello = ClientId::Domain(hello.to_owned());
    let tls = match settings.security {
        SmtpSecurity::None => None,
        SmtpSecurity::StartTls | SmtpSecurity::ImplicitTls => {
            Some(tls_parameters(settings).map_err(|error| error.to_string())?)
        }
    };
    let implicit = match settings.security {
        SmtpSecurity::ImplicitTls => tls.clone(),
        SmtpSecurity::StartTls | SmtpSecurity::None => None,
    };
    let mut connection = AsyncSmtpConnection::connect_tokio1(
        (settings.host.as_str(), settings.port),
        Some(SMTP_TIMEOUT),
        &hello,
        implicit,
        None,
    )
    .await
    .map_err(|error| format!("connect: {error}"))?;
    exchanges.push(Exchange {
        step: "ehlo",
        reply: connection.server_info().to_string(),
    });
    if let (SmtpSecurity::StartTls, Some(tls)) = (settings.security, tls) {
        if !connection.can_starttls() {
            connection.abort().await;
            return Err("starttls: the server does not offer STARTTLS".to_owned());
        }
        connection
            .starttls(tls, &hello)
            .await
            .map_err(|error| format!("starttls: {error}"))?;
        exchanges.push(Exchange {
            step: "starttls",
            reply: connection.server_info().to_string(),
        });
    }
    if let Some((user, password)) = &settings.credentials {
        let credentials = Credentials::new(user.clone(), password.expose_secret().to_owned());
        match connection
            .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
            .await
        {
            Ok(response) => exchanges.push(Exchange {
                step: "auth",
                reply: said(&response),
            }),
            Err(error) => {
                connection.abort().await;
                return Err(format!("auth: {error}"));
            }
        }
    }
    let goodbye = connection
        .quit()
        .await
        .map_err(|error| format!("quit: {error}"))?;
    exchanges.push(Exchange {
        step: "quit",
        reply: said(&goodbye),
    });
    Ok(())
}

fn said(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    format!("{} {}", response.code(), lines.join(" "))
}
