//! The messages mailroom sends on its own behalf, each with a plain-text and an HTML body.
//! HTML is built with maud, so every interpolated value is escaped.

use maud::{DOCTYPE, Markup, html};

/// A message ready to send.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn page(title: &str, content: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (title) } }
            body style="font-family: system-ui, sans-serif; color: #1c2333; line-height: 1.5" {
                (content)
                p style="color: #5b6478; font-size: 0.9em" {
                    "You receive this because of an action on your mailroom account. "
                    "If it was not you, you can ignore this message."
                }
            }
        }
    }
    .into_string()
}

/// The code that proves the reader owns the address (sign-up, password reset).
pub fn verification_code(purpose: &str, code: &str, valid_minutes: u32) -> Rendered {
    let subject = format!("Your mailroom code: {code}");
    let text = format!(
        "Your code to {purpose} is:\n\n    {code}\n\n\
         It expires in {valid_minutes} minutes and works once. \
         mailroom will never ask you for it by phone or email.\n"
    );
    let html = page(
        &subject,
        html! {
            p { "Your code to " (purpose) " is:" }
            p style="font-size: 2em; letter-spacing: 0.2em; font-weight: bold" { (code) }
            p { "It expires in " (valid_minutes) " minutes and works once. "
                "mailroom will never ask you for it by phone or email." }
        },
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// To an account's owner when it is signed in to from a browser or address not seen before
/// (docs/security.md#new-device-alert).
pub fn new_sign_in(ip: &str, user_agent: &str) -> Rendered {
    let subject = "New sign-in to your mailroom account".to_owned();
    let text = format!(
        "Your mailroom account was just signed in to from a new device or address:\n\n    \
         address: {ip}\n    browser: {user_agent}\n\nIf this was you, nothing needs doing. If \
         not, reset your password now and end your other sessions from the security page.\n"
    );
    let html = page(
        &subject,
        html! {
            p { "Your mailroom account was just signed in to from a new device or address:" }
            ul { li { "Address: " (ip) } li { "Browser: " (user_agent) } }
            p { "If this was you, nothing needs doing. If not, reset your password now and end your other sessions from the security page." }
        },
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// To the owner of an account that too many failed sign-ins just locked (docs/security.md#lockout).
pub fn account_locked(until: time::OffsetDateTime) -> Rendered {
    let until = until
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_else(|_| "a while".to_owned());
    let subject = "Your mailroom account was locked".to_owned();
    let text = format!(
        "Someone failed to sign in to your mailroom account several times in a row, so it is \
         locked until {until}.\n\nIf that was you, wait and try again, or reset your password. \
         If it was not, your password held; consider changing it and turning on two-factor \
         authentication.\n"
    );
    let html = page(
        &subject,
        html! {
            p { "Someone failed to sign in to your mailroom account several times in a row, so it is locked until " strong { (until) } "." }
            p { "If that was you, wait and try again, or reset your password. If it was not, your password held; consider changing it and turning on two-factor authentication." }
        },
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// An invitation to join an organization (docs/security.md#invitations). The link carries the one-time token.
pub fn invitation(org_name: &str, role: &str, link: &str, valid_days: u32) -> Rendered {
    let subject = format!("You are invited to {org_name} on mailroom");
    let text = format!(
        "You are invited to join the organization \"{org_name}\" on mailroom as {role}.\n\n\
         Accept here (sign in or create an account with this address first):\n\n    {link}\n\n\
         The link works once and expires in {valid_days} days.\n"
    );
    let html = page(
        &subject,
        html! {
            p { "You are invited to join the organization " strong { (org_name) } " on mailroom as " (role) "." }
            p { a href=(link) { "Accept the invitation" } }
            p { "Sign in or create an account with this address first. The link works once and expires in " (valid_days) " days." }
        },
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// To whoever connected a mail account, when its provider refused the grant (revoked at
/// Google, say): nothing is sent or read through it until it is connected again.
pub fn account_needs_reconnect(address: &str, link: &str) -> Rendered {
    let subject = format!("Reconnect {address} to mailroom");
    let text = format!(
        "Google no longer accepts mailroom's access to {address}: the access was revoked, \
         or expired. Nothing is sent or read through it until you connect it again:\n\n    {link}\n"
    );
    let html = page(
        &subject,
        html! {
            p { "Google no longer accepts mailroom's access to " strong { (address) } ": the access was revoked, or expired." }
            p { "Nothing is sent or read through it until you " a href=(link) { "connect it again" } "." }
        },
    );
    Rendered {
        subject,
        text,
        html,
    }
}

pub fn webhook_disabled(url: &str, days: u32, link: &str) -> Rendered {
    let subject = "A webhook endpoint was disabled".to_owned();
    let text = format!(
        "Every delivery to the webhook endpoint {url} failed for {days} days, so mailroom \
         disabled it: no event is sent to it until it is enabled again:\n\n    {link}\n"
    );
    let html = page(
        &subject,
        html! {
            p { "Every delivery to the webhook endpoint " strong { (url) } " failed for " (days) " days, so mailroom disabled it." }
            p { "No event is sent to it until it is " a href=(link) { "enabled again" } "." }
        },
    );
    Rendered {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_in_html() {
        let message = verification_code("<script>x</script>", "123456", 5);
        assert!(!message.html.contains("<script>x"), "{}", message.html);
        assert!(message.html.contains("&lt;script&gt;"));
        assert!(message.text.contains("123456") && message.text.contains("5 minutes"));
    }
}
