//! The syntax check against a public conformance corpus: Dominic Sayers' isemail test set
//! (`data/isemail.tsv`, provenance and license in `data/isemail.SOURCE.md`).
//!
//! isemail grades addresses from valid through "valid for SMTP but unusual" to errors. What a
//! real MTA takes in `RCPT TO` is the valid ones, the DNS warnings (syntax is fine; the domains
//! were merely unresolvable in 2011) and RFC 5321 quoted strings. Everything else is refused on
//! purpose: comments, folding whitespace, obsolete forms, RFC 5322 domain literals, address
//! literals (public mail services refuse them) and dotless or numeric top-level domains.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mailroom_verify::syntax::{self, SyntaxError};

struct Case {
    category: String,
    diagnosis: String,
    address: String,
}

fn corpus() -> Vec<Case> {
    let text = include_str!("data/isemail.tsv");
    text.lines()
        .skip(1)
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            let mut next = || fields.next().unwrap_or_default().to_owned();
            let (category, diagnosis, address) = (next(), next(), next());
            Case {
                category,
                diagnosis,
                address: unescape(&address),
            }
        })
        .collect()
}

/// Undoes the file's escapes: `\\`, `\t`, `\n`, `\r`, `\0` and `\xHH`.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
            }
            other => panic!("unknown escape \\{other:?} in {field:?}"),
        }
    }
    out
}

fn accepted_by_mtas(case: &Case) -> bool {
    match case.category.as_str() {
        "ISEMAIL_VALID" | "ISEMAIL_DNSWARN" => true,
        "ISEMAIL_RFC5321" => case.diagnosis == "ISEMAIL_RFC5321_QUOTEDSTRING",
        _ => false,
    }
}

#[test]
fn the_isemail_corpus_is_judged_as_mtas_judge_it() {
    let cases = corpus();
    assert_eq!(cases.len(), 164, "the whole corpus is read");
    let wrong: Vec<String> = cases
        .iter()
        .filter(|case| syntax::parse(&case.address).is_ok() != accepted_by_mtas(case))
        .map(|case| {
            format!(
                "{:?} ({}): got {:?}",
                case.address,
                case.diagnosis,
                syntax::parse(&case.address)
            )
        })
        .collect();
    assert!(wrong.is_empty(), "misjudged:\n{}", wrong.join("\n"));
}

#[test]
fn the_corpus_length_faults_get_their_own_reasons() {
    let expected = [
        ("ISEMAIL_RFC5322_LOCAL_TOOLONG", SyntaxError::LocalTooLong),
        ("ISEMAIL_RFC5322_DOMAIN_TOOLONG", SyntaxError::DomainTooLong),
        ("ISEMAIL_RFC5322_LABEL_TOOLONG", SyntaxError::LabelTooLong),
        ("ISEMAIL_RFC5322_TOOLONG", SyntaxError::TooLong),
        ("ISEMAIL_ERR_NOLOCALPART", SyntaxError::LocalEmpty),
        (
            "ISEMAIL_ERR_DOMAINHYPHENSTART",
            SyntaxError::LabelHyphenMisplaced,
        ),
        (
            "ISEMAIL_ERR_DOMAINHYPHENEND",
            SyntaxError::LabelHyphenMisplaced,
        ),
        (
            "ISEMAIL_RFC5321_ADDRESSLITERAL",
            SyntaxError::AddressLiteral,
        ),
        ("ISEMAIL_RFC5321_TLDNUMERIC", SyntaxError::TldNumeric),
    ];
    for case in corpus() {
        if let Some((_, reason)) = expected.iter().find(|(d, _)| *d == case.diagnosis) {
            assert_eq!(
                syntax::parse(&case.address),
                Err(*reason),
                "{:?} ({})",
                case.address,
                case.diagnosis
            );
        }
    }
}
