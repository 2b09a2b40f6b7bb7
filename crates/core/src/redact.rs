//! The policy that decides which named values are secrets and must never reach a log (docs/security.md#log-redaction).
//!
//! Code must not log secrets in the first place; this policy is the net under it, applied by
//! the log formatter to every field and by the request logger to headers and query
//! parameters, so a careless `info!(token = …)` still prints `[redacted]`, and a URL with
//! credentials in it loses them.

use std::borrow::Cow;

pub const REDACTED: &str = "[redacted]";

/// Name segments that mark a value as secret wherever they appear (`api_key`, `X-Auth-Token`,
/// `new_password`, `Set-Cookie`).
const SECRET_SEGMENTS: &[&str] = &[
    "apikey",
    "auth",
    "authorization",
    "bearer",
    "cookie",
    "csrf",
    "credential",
    "credentials",
    "jwt",
    "key",
    "passphrase",
    "passwd",
    "password",
    "pwd",
    "secret",
    "session",
    "sid",
    "signature",
    "token",
    "otp",
    "totp",
    "xsrf",
];

/// `code` is an OTP or a backup code unless a qualifier says it is something harmless.
const HARMLESS_CODE_QUALIFIERS: &[&str] = &[
    "enhanced", "error", "exit", "http", "problem", "reply", "response", "status",
];

/// Whether a field, header or parameter with this name holds a secret. Names are split on
/// `_`, `-`, `.` and case changes, and matched segment by segment.
pub fn is_secret_name(name: &str) -> bool {
    let segments = segments(name);
    if segments
        .iter()
        .any(|s| SECRET_SEGMENTS.contains(&s.as_str()))
    {
        return true;
    }
    segments.iter().enumerate().any(|(i, s)| {
        s == "code" && !(i > 0 && HARMLESS_CODE_QUALIFIERS.contains(&segments[i - 1].as_str()))
    })
}

/// A query string with the value of every secret-named parameter replaced.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `value` with the credentials of any URL in it (`postgres://user:password@host`) replaced:
/// connection strings end up in error messages and fields whose names cannot say so.
pub fn scrub_credentials(value: &str) -> Cow<'_, str> {
    if !value.contains("://") {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_end = rest
            .find(|c: char| {
                matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            out.push_str(REDACTED);
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn segments(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            flush(&mut out, &mut current);
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower {
            flush(&mut out, &mut current);
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    flush(&mut out, &mut current);
    out
}

fn flush(out: &mut Vec<String>, current: &mut String) {
    if !current.is_empty() {
        out.push(std::mem::take(current));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "password",
            "new_password",
            "Authorization",
            "Proxy-Authorization",
            "cookie",
            "Set-Cookie",
            "x-api-key",
            "apiKey",
            "api_key",
            "refresh_token",
            "accessToken",
            "client_secret",
            "code",
            "otp_code",
            "backup_code",
            "totp",
            "mfa.code",
            "X-Auth-Token",
            "master_key",
            "session_id",
            "sid",
            "csrf_token",
            "X-CSRF-Token",
        ] {
            assert!(is_secret_name(name), "{name} should be secret");
        }
    }

    #[test]
    fn ordinary_names() {
        for name in [
            "status_code",
            "enhanced_code",
            "http.status_code",
            "method",
            "path",
            "request_id",
            "email",
            "user_agent",
            "monkey",
            "tokenizer_version_x",
            "Content-Type",
        ] {
            // `tokenizer` is a segment of its own, not `token`: whole segments only.
            assert!(!is_secret_name(name), "{name} should not be secret");
        }
    }

    #[test]
    fn credentials_in_urls_are_scrubbed() {
        assert_eq!(
            scrub_credentials("opening postgres://app:hunter2@db:5432/m failed"),
            "opening postgres://[redacted]@db:5432/m failed"
        );
        assert_eq!(
            scrub_credentials("smtp://user:p%40ss@relay.example:587 and https://x.test/a@b"),
            "smtp://[redacted]@relay.example:587 and https://x.test/a@b"
        );
        assert_eq!(
            scrub_credentials("databse_url = \"postgres://u:pw@h/d\""),
            "databse_url = \"postgres://[redacted]@h/d\""
        );
        assert_eq!(scrub_credentials("no urls here"), "no urls here");
    }

    #[test]
    fn query_redaction_keeps_the_rest() {
        assert_eq!(
            redact_query("token=abc&page=2&api_key=zz&flag"),
            "token=[redacted]&page=2&api_key=[redacted]&flag"
        );
    }
}
