//! The policy that decides which named values are secrets and must never reach a log (HTTP-6).
//!
//! Secrets are also wrapped in types that refuse to print; this policy is the second line,
//! applied by the log formatter to every field and by the request logger to headers and query
//! parameters, so a careless `info!(token = …)` still prints `[redacted]`.

pub const REDACTED: &str = "[redacted]";

/// Name segments that mark a value as secret wherever they appear (`api_key`, `X-Auth-Token`,
/// `new_password`, `Set-Cookie`).
const SECRET_SEGMENTS: &[&str] = &[
    "apikey",
    "auth",
    "authorization",
    "bearer",
    "cookie",
    "credential",
    "credentials",
    "jwt",
    "key",
    "passphrase",
    "passwd",
    "password",
    "pwd",
    "secret",
    "signature",
    "token",
    "otp",
    "totp",
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
            "smtp_url_password",
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
    fn query_redaction_keeps_the_rest() {
        assert_eq!(
            redact_query("token=abc&page=2&api_key=zz&flag"),
            "token=[redacted]&page=2&api_key=[redacted]&flag"
        );
    }
}
