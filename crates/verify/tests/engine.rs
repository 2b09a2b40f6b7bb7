//! The engine against real peers on loopback: a DNS server (hickory-server) serving test zones,
//! and mail exchangers (aiosmtpd), each MX host on its own 127.0.0.x address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mailroom_testkit::{DnsServer, ProbePeer, ProbeStats, Rr, SocksPeer};
use mailroom_verify::dns::DomainStatus;
use mailroom_verify::smtp::Mailbox;
use mailroom_verify::{
    Mode, Options, Proxies, Proxy, Reason, Settings, Verdict, Verification, Verifier,
};
use serde_json::json;

const SYNC: Options = Options {
    smtp: true,
    mode: Mode::Sync,
};

struct World {
    dns: DnsServer,
    /// The mail host of `ok.test`.
    ok: ProbePeer,
    /// The second MX of `multi.test` (its first is on an address nothing listens on).
    multi: ProbePeer,
    only_a: ProbePeer,
    catch_all: ProbePeer,
}

fn ip(text: &str) -> std::net::IpAddr {
    text.parse().unwrap()
}

async fn world() -> Option<World> {
    let ok = ProbePeer::start(
        "127.0.0.11",
        0,
        &json!({
            "recipients": {
                "alice@ok.test": "250 2.1.5 OK",
                "full@ok.test": "552 5.2.2 Mailbox full",
                "disabled@ok.test": "550 5.2.1 Mailbox disabled",
                "grey@ok.test": {"greylist": 1, "then": "250 2.1.5 OK"},
                "slow@ok.test": {"delay_ms": 5000, "reply": "250 OK"},
                "odd@ok.test": "554 Transaction failed",
            },
        }),
    )?;
    let port = ok.port();
    let multi = ProbePeer::start(
        "127.0.0.13",
        port,
        &json!({"recipients": {"bob@multi.test": "250 2.1.5 OK"}}),
    )?;
    let only_a = ProbePeer::start(
        "127.0.0.14",
        port,
        &json!({"recipients": {"carol@aonly.test": "250 OK"}}),
    )?;
    let catch_all = ProbePeer::start("127.0.0.15", port, &json!({"catch_all": true}))?;
    let dns = DnsServer::start(
        &["test"],
        &[
            Rr::Mx("ok.test", 10, "mx1.ok.test"),
            Rr::Ip("mx1.ok.test", ip("127.0.0.11")),
            Rr::Mx("multi.test", 10, "dead.multi.test"),
            Rr::Mx("multi.test", 20, "mx2.multi.test"),
            Rr::Ip("dead.multi.test", ip("127.0.0.12")),
            Rr::Ip("mx2.multi.test", ip("127.0.0.13")),
            Rr::Ip("aonly.test", ip("127.0.0.14")),
            Rr::NullMx("nullmx.test"),
            Rr::Ip("www.nomail.test", ip("127.0.0.16")),
            Rr::Mx("catchall.test", 5, "mx.catchall.test"),
            Rr::Ip("mx.catchall.test", ip("127.0.0.15")),
        ],
    )
    .await;
    Some(World {
        dns,
        ok,
        multi,
        only_a,
        catch_all,
    })
}

fn verifier(world: &World, settings: Settings) -> Verifier {
    Verifier::new(Settings {
        dns_server: Some(world.dns.address()),
        smtp_port: world.ok.port(),
        helo_name: "probe.mailroom.test".to_owned(),
        probe_from: "verify@mailroom.test".to_owned(),
        timeout: Duration::from_secs(1),
        // The peers are on loopback.
        probe_private_networks: true,
        ..settings
    })
    .unwrap()
}

fn shows(result: &Verification, verdict: Verdict, reasons: &[Reason]) {
    assert_eq!(
        (result.verdict, result.reasons.as_slice()),
        (verdict, reasons),
        "{}: {result:#?}",
        result.email
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_answer_gets_its_verdict() {
    let Some(world) = world().await else { return };
    let engine = verifier(&world, Settings::default());
    let check = |email: &'static str| engine.verify(email, SYNC);

    let alice = check("Alice@OK.test").await;
    shows(&alice, Verdict::Deliverable, &[]);
    assert_eq!(alice.normalized.as_deref(), Some("alice@ok.test"));
    assert_eq!(alice.dns.status, Some(DomainStatus::Mx));
    assert_eq!(alice.smtp.mailbox, Mailbox::Exists);
    assert_eq!(alice.smtp.host.as_deref(), Some("mx1.ok.test"));
    assert_eq!(
        alice.smtp.catch_all,
        Some(false),
        "the random address was refused"
    );

    let nobody = check("ghost@ok.test").await;
    shows(&nobody, Verdict::Undeliverable, &[Reason::MailboxMissing]);
    assert_eq!(
        (nobody.smtp.code, nobody.smtp.enhanced_code.as_deref()),
        (Some(550), Some("5.1.1"))
    );
    shows(
        &check("full@ok.test").await,
        Verdict::Risky,
        &[Reason::MailboxFull],
    );
    shows(
        &check("disabled@ok.test").await,
        Verdict::Undeliverable,
        &[Reason::MailboxDisabled],
    );
    shows(
        &check("grey@ok.test").await,
        Verdict::Unknown,
        &[Reason::Greylisted],
    );
    shows(
        &check("slow@ok.test").await,
        Verdict::Unknown,
        &[Reason::SmtpTimeout],
    );
    // A refusal that names no reason is never taken for an acceptance.
    shows(
        &check("odd@ok.test").await,
        Verdict::Unknown,
        &[Reason::SmtpRejected],
    );
    // A UTF-8 local part goes only to a server that takes them (this one does not say so).
    shows(
        &check("ünïcode@ok.test").await,
        Verdict::Undeliverable,
        &[Reason::Smtputf8Unsupported],
    );

    let bob = check("bob@multi.test").await;
    shows(&bob, Verdict::Deliverable, &[]);
    assert_eq!(
        bob.smtp.host.as_deref(),
        Some("mx2.multi.test"),
        "failed over"
    );
    assert_eq!(bob.dns.mx.len(), 2);

    let carol = check("carol@aonly.test").await;
    shows(&carol, Verdict::Deliverable, &[]);
    assert_eq!(carol.dns.status, Some(DomainStatus::ImplicitMx));

    let null = check("x@nullmx.test").await;
    shows(&null, Verdict::Undeliverable, &[Reason::NullMx]);
    assert!(!null.smtp.checked, "no host to ask");
    shows(
        &check("x@nomail.test").await,
        Verdict::Undeliverable,
        &[Reason::NoMailServer],
    );
    shows(
        &check("x@missing.test").await,
        Verdict::Undeliverable,
        &[Reason::DomainNotFound],
    );
    let invalid = check("not an address").await;
    shows(&invalid, Verdict::Undeliverable, &[Reason::InvalidSyntax]);
    assert!(!invalid.dns.checked);

    let anyone = check("anyone@catchall.test").await;
    shows(&anyone, Verdict::Risky, &[Reason::CatchAll]);
    // A disposable role address at a live host: both found, neither hides the other.
    let postmaster = check("postmaster@catchall.test").await;
    assert!(postmaster.classification.role_account);
    assert!(postmaster.reasons.contains(&Reason::RoleAccount));

    let stats = world.ok.stats();
    assert_eq!(stats.helo_names, ["probe.mailroom.test"]);
    assert_eq!(stats.mail_from, ["verify@mailroom.test"]);
    for peer in [&world.ok, &world.multi, &world.only_a, &world.catch_all] {
        assert_eq!(peer.stats().data_attempts, 0, "never DATA");
    }
    let catch_all = world.catch_all.stats();
    assert_eq!(
        catch_all
            .rcpts
            .iter()
            .filter(|r| r.starts_with("mailroom-probe-"))
            .count(),
        1,
        "the catch-all test is made once per domain: {:?}",
        catch_all.rcpts
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_smtp_nothing_is_asked_of_the_mail_host() {
    let Some(world) = world().await else { return };
    let engine = verifier(&world, Settings::default());
    let options = Options {
        smtp: false,
        mode: Mode::Sync,
    };
    let alice = engine.verify("alice@ok.test", options).await;
    shows(&alice, Verdict::Unknown, &[Reason::SmtpNotChecked]);
    assert!(!alice.smtp.checked);
    assert_eq!(world.ok.stats().sessions, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_runs_share_sessions_within_the_caps_and_wait_out_greylisting() {
    let Some(world) = world().await else { return };
    world.ok.set_config(&json!({
        "catch_all": false,
        "recipients": {
            "alice@ok.test": "250 OK",
            "grey2@ok.test": {"greylist": 1, "then": "250 2.1.5 OK"},
        },
    }));
    let engine = verifier(
        &world,
        Settings {
            sessions_per_host: 2,
            rcpts_per_session: 25,
            rcpts_per_transaction: 10,
            greylist_retry_after: Duration::from_millis(200),
            ..Settings::default()
        },
    );
    let mut emails: Vec<String> = (0..60).map(|n| format!("user{n}@ok.test")).collect();
    emails[7] = "alice@ok.test".to_owned();
    emails[42] = "grey2@ok.test".to_owned();
    emails.push("bob@multi.test".to_owned());
    let bulk = Options {
        smtp: true,
        mode: Mode::Bulk,
    };
    let results = engine.verify_many(&emails, bulk).await;

    let in_order: Vec<&str> = results.iter().map(|r| r.email.as_str()).collect();
    assert_eq!(
        in_order,
        emails.iter().map(String::as_str).collect::<Vec<_>>()
    );
    shows(&results[7], Verdict::Deliverable, &[]);
    shows(&results[42], Verdict::Deliverable, &[]);
    shows(
        &results[0],
        Verdict::Undeliverable,
        &[Reason::MailboxMissing],
    );
    shows(&results[60], Verdict::Deliverable, &[]);

    let stats = world.ok.stats();
    // 60 addresses in sessions of at most 25, plus one more for the greylisted retry.
    assert_eq!(stats.sessions, 4, "{stats:?}");
    assert!(stats.max_concurrent_sessions <= 2, "{stats:?}");
    assert!(stats.rcpt_per_session_max <= 25 + 1, "{stats:?}");
    assert!(stats.rcpt_per_transaction_max <= 10, "{stats:?}");
    assert!(stats.rset >= 4, "{stats:?}");
    assert_eq!(stats.data_attempts, 0);
}

/// Answers are cached with their TTL and shared by every check: with the DNS server
/// gone, a second address of a domain already looked up is still checked.
#[tokio::test(flavor = "multi_thread")]
async fn dns_answers_are_cached_for_every_check() {
    let Some(world) = world().await else { return };
    let engine = verifier(&world, Settings::default());
    let World { dns, ok, .. } = world;
    shows(
        &engine.verify("alice@ok.test", SYNC).await,
        Verdict::Deliverable,
        &[],
    );
    drop(dns);
    let again = engine.verify("ghost@ok.test", SYNC).await;
    shows(&again, Verdict::Undeliverable, &[Reason::MailboxMissing]);
    assert_eq!(again.smtp.host.as_deref(), Some("mx1.ok.test"));
    assert!(ok.stats().rcpts.contains(&"ghost@ok.test".to_owned()));
}

/// A domain whose MX points into a private network is not probed there unless the operator
/// allows it: a verification request must not become a port-25 scan of internal hosts.
#[tokio::test(flavor = "multi_thread")]
async fn private_mail_hosts_are_not_probed_by_default() {
    let Some(world) = world().await else { return };
    let engine = Verifier::new(Settings {
        dns_server: Some(world.dns.address()),
        smtp_port: world.ok.port(),
        ..Settings::default()
    })
    .unwrap();
    let alice = engine.verify("alice@ok.test", SYNC).await;
    shows(&alice, Verdict::Unknown, &[Reason::MailHostNotPublic]);
    assert_eq!(world.ok.stats().sessions, 0, "nothing knocked");
}

/// A mail host that answers every reply slowly holds a group of addresses no longer than the
/// session deadline: what was not asked by then is reported as timed out, none left unanswered.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_host_is_given_up_at_the_session_deadline() {
    let Some(slow) = ProbePeer::start(
        "127.0.0.18",
        0,
        &json!({"reply_delay_ms": 150, "catch_all": true}),
    ) else {
        return;
    };
    let dns = DnsServer::start(
        &["test"],
        &[
            Rr::Mx("slowhost.test", 10, "mx.slowhost.test"),
            Rr::Ip("mx.slowhost.test", ip("127.0.0.18")),
        ],
    )
    .await;
    let engine = Verifier::new(Settings {
        dns_server: Some(dns.address()),
        smtp_port: slow.port(),
        probe_private_networks: true,
        session_deadline: Duration::from_secs(1),
        ..Settings::default()
    })
    .unwrap();
    let emails: Vec<String> = (0..20).map(|n| format!("user{n}@slowhost.test")).collect();
    let bulk = Options {
        smtp: true,
        mode: Mode::Bulk,
    };
    let results = engine.verify_many(&emails, bulk).await;
    assert_eq!(results.len(), 20);
    let timed_out = results
        .iter()
        .filter(|r| r.reasons == [Reason::SmtpTimeout])
        .count();
    assert!(timed_out > 0, "the deadline cut the session short");
    for result in &results {
        assert!(
            result.smtp.code.is_some() || result.reasons.contains(&Reason::SmtpTimeout),
            "every address is answered or timed out: {result:#?}"
        );
        assert_ne!(result.verdict, Verdict::Deliverable, "{result:#?}");
    }
}

const BULK: Options = Options {
    smtp: true,
    mode: Mode::Bulk,
};

/// One mail host `mx` on `address` for the domain `domain`, configured by `config`, and a
/// verifier that finds it; retries come quickly (the waits are the engine's, not the test's).
async fn lone_host(
    (domain, mx, address): (&'static str, &'static str, &str),
    config: serde_json::Value,
    settings: Settings,
) -> Option<(ProbePeer, DnsServer, Verifier)> {
    let peer = ProbePeer::start(address, 0, &config)?;
    let dns = DnsServer::start(
        &["test"],
        &[Rr::Mx(domain, 10, mx), Rr::Ip(mx, ip(address))],
    )
    .await;
    let engine = Verifier::new(Settings {
        dns_server: Some(dns.address()),
        smtp_port: peer.port(),
        probe_private_networks: true,
        throttle_backoff: Duration::from_millis(20),
        ..settings
    })
    .unwrap();
    Some((peer, dns, engine))
}

/// `count` addresses of a lone host configured by `config`, half of them existing, verified
/// in bulk in sessions of ten: each must end with its true verdict. What the host counted.
async fn every_verdict_true_at(
    host: (&'static str, &'static str, &str),
    count: usize,
    mut config: serde_json::Value,
    settings: Settings,
) -> Option<ProbeStats> {
    let (domain, _, _) = host;
    let emails: Vec<String> = (0..count).map(|n| format!("user{n}@{domain}")).collect();
    let known: serde_json::Map<String, serde_json::Value> = emails
        .iter()
        .step_by(2)
        .map(|email| (email.clone(), json!("250 2.1.5 OK")))
        .collect();
    config["recipients"] = serde_json::Value::Object(known);
    let settings = Settings {
        rcpts_per_session: 10,
        ..settings
    };
    let (peer, _dns, engine) = lone_host(host, config, settings).await?;
    let results = engine.verify_many(&emails, BULK).await;
    assert_eq!(results.len(), emails.len());
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.email, emails[n]);
        if n % 2 == 0 {
            shows(result, Verdict::Deliverable, &[]);
        } else {
            shows(result, Verdict::Undeliverable, &[Reason::MailboxMissing]);
        }
    }
    let stats = peer.stats();
    assert_eq!(stats.data_attempts, 0);
    Some(stats)
}

/// A host that takes one session from us (as Gmail's, Outlook's and Yahoo's take few from one
/// client) refuses the second with a 421: that costs no address. The host is given one
/// session from then on, and the refused group waits its turn.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_takes_one_session_at_a_time_costs_no_address() {
    let host = ("onesession.test", "mx.onesession.test", "127.0.0.21");
    let settings = Settings {
        sessions_per_host: 2,
        ..Settings::default()
    };
    let Some(stats) = every_verdict_true_at(host, 100, json!({"max_sessions": 1}), settings).await
    else {
        return;
    };
    // Only the sessions opened before the host had said anything can have found its limit.
    assert!(stats.rejected_sessions <= 2, "{stats:?}");
    assert_eq!(
        stats.rcpt_per_session_max,
        10 + 1,
        "ten addresses, a catch-all test"
    );
}

/// A host that answers 421 to the first connections, or drops sessions midway, is asked
/// again: every address ends with its true verdict, the one a session broke on included.
#[tokio::test(flavor = "multi_thread")]
async fn refused_and_dropped_sessions_are_tried_again() {
    let host = ("flaky.test", "mx.flaky.test", "127.0.0.22");
    let config = json!({"refuse_first": 2, "drop_sessions": 2, "drop_after_rcpts": 3});
    let Some(stats) = every_verdict_true_at(host, 30, config, Settings::default()).await else {
        return;
    };
    let counted = (stats.rejected_sessions, stats.dropped_sessions);
    assert_eq!(counted, (2, 2), "{stats:?}");
}

/// A host that never takes a session: once the retries are spent, the addresses are
/// `unknown`, saying the host throttled us and what it last said.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_refuses_past_every_retry_is_reported_as_throttling() {
    let config = json!({"refuse_first": 1000});
    let settings = Settings {
        throttle_retries: 2,
        ..Settings::default()
    };
    let Some((peer, _dns, engine)) = lone_host(
        ("throttled.test", "mx.throttled.test", "127.0.0.23"),
        config,
        settings,
    )
    .await
    else {
        return;
    };
    let emails = vec!["a@throttled.test".to_owned(), "b@throttled.test".to_owned()];
    for result in engine.verify_many(&emails, BULK).await {
        shows(&result, Verdict::Unknown, &[Reason::SmtpThrottled]);
        assert_eq!(
            (result.smtp.code, result.smtp.enhanced_code.as_deref()),
            (Some(421), Some("4.7.0"))
        );
        assert_eq!(result.smtp.message.as_deref(), Some("Too many connections"));
    }
    assert_eq!(
        peer.stats().rejected_sessions,
        1 + 2,
        "the first try and two retries"
    );
    // A caller waiting on the answer gets one retry, not every one.
    let sync = engine.verify("c@throttled.test", SYNC).await;
    shows(&sync, Verdict::Unknown, &[Reason::SmtpThrottled]);
    assert_eq!(peer.stats().rejected_sessions, 3 + 2);
}

/// With a proxy configured, every probe goes through it, asking it for the mail host's
/// address; with the proxy gone, none goes around it.
#[tokio::test(flavor = "multi_thread")]
async fn probes_go_through_the_proxy_and_never_around_it() {
    let Some(world) = world().await else { return };
    let Some(proxy) = SocksPeer::start(Some(("probe", "s3cr:t@"))) else {
        return;
    };
    let through = |url: &str| Settings {
        proxies: Proxies {
            default: Some(Proxy::parse(url).unwrap()),
            by_mx_suffix: Vec::new(),
        },
        ..Settings::default()
    };
    let engine = verifier(&world, through(&proxy.url()));
    shows(
        &engine.verify("alice@ok.test", SYNC).await,
        Verdict::Deliverable,
        &[],
    );
    shows(
        &engine.verify("ghost@ok.test", SYNC).await,
        Verdict::Undeliverable,
        &[Reason::MailboxMissing],
    );
    let relayed = proxy.stats();
    let host = format!("127.0.0.11:{}", world.ok.port());
    assert_eq!(relayed.targets, [host.clone(), host], "{relayed:?}");
    let sessions = world.ok.stats().sessions;
    assert_eq!(
        sessions, 2,
        "every session the host saw came through the proxy"
    );

    // Wrong credentials, or no proxy listening: the probe fails, and nothing goes direct.
    let wrong = proxy.url().replace("s3cr%3At%40", "guess");
    assert_ne!(wrong, proxy.url());
    let refused = verifier(&world, through(&wrong));
    let stranded = refused.verify("alice@ok.test", SYNC).await;
    shows(&stranded, Verdict::Unknown, &[Reason::SmtpUnreachable]);
    assert_eq!(proxy.stats().auth_failures, 1);
    // A mail host on a private network is judged before the proxy is asked, not by it.
    let guarded = Verifier::new(Settings {
        dns_server: Some(world.dns.address()),
        smtp_port: world.ok.port(),
        ..through(&proxy.url())
    })
    .unwrap();
    let private = guarded.verify("alice@ok.test", SYNC).await;
    shows(&private, Verdict::Unknown, &[Reason::MailHostNotPublic]);
    assert_eq!(
        proxy.stats().connections,
        3,
        "the three above, and not this one"
    );
    let url = proxy.url();
    drop(proxy);
    let gone = verifier(&world, through(&url));
    let stranded = gone.verify("alice@ok.test", SYNC).await;
    shows(&stranded, Verdict::Unknown, &[Reason::SmtpUnreachable]);
    assert_eq!(world.ok.stats().sessions, sessions, "nothing went direct");
}

/// A proxy for some mail hosts only (by the suffix of their names): theirs go through it, the
/// rest directly.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_may_serve_some_mail_hosts_only() {
    let Some(world) = world().await else { return };
    let Some(proxy) = SocksPeer::start(None) else {
        return;
    };
    let engine = verifier(
        &world,
        Settings {
            proxies: Proxies {
                default: None,
                by_mx_suffix: vec![("multi.test".into(), Proxy::parse(&proxy.url()).unwrap())],
            },
            ..Settings::default()
        },
    );
    shows(
        &engine.verify("bob@multi.test", SYNC).await,
        Verdict::Deliverable,
        &[],
    );
    shows(
        &engine.verify("alice@ok.test", SYNC).await,
        Verdict::Deliverable,
        &[],
    );
    let port = world.ok.port();
    // multi.test's first host refuses connections (through the proxy too); its second answers.
    let relayed = proxy.stats();
    assert_eq!(
        relayed.targets,
        [format!("127.0.0.12:{port}"), format!("127.0.0.13:{port}")],
        "{relayed:?}"
    );
    assert_eq!(relayed.refused, 1);
    assert_eq!(world.ok.stats().sessions, 1, "ok.test's host, directly");
}

/// A provider whose mail hosts accept every recipient while the session is open (Microsoft
/// 365, Yahoo; here one an operator added) gets no catch-all test, and an acceptance from it
/// is `unknown`, not `deliverable`; its refusals are still believed.
#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_hides_its_mailboxes_gets_no_false_deliverable() {
    let lists = std::env::temp_dir().join(format!("mailroom-hides-{}", std::process::id()));
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(
        lists.join("providers.toml"),
        "[[provider]]\nname = \"Hides\"\nmx_suffixes = [\"hides.test\"]\nhides_mailboxes = true\n",
    )
    .unwrap();
    let config = json!({
        "catch_all": true,
        "recipients": {"gone@hidden.test": "550 5.1.1 No such user"},
    });
    let settings = Settings {
        lists_dir: Some(lists.clone()),
        ..Settings::default()
    };
    let host = ("hidden.test", "mx1.hides.test", "127.0.0.24");
    let found = lone_host(host, config, settings).await;
    std::fs::remove_dir_all(&lists).unwrap();
    let Some((peer, _dns, engine)) = found else {
        return;
    };
    let emails = [
        "anyone@hidden.test".to_owned(),
        "gone@hidden.test".to_owned(),
    ];
    let results = engine.verify_many(&emails, BULK).await;
    shows(
        &results[0],
        Verdict::Unknown,
        &[Reason::ProviderHidesMailboxes],
    );
    assert_eq!(results[0].smtp.catch_all, None);
    shows(
        &results[1],
        Verdict::Undeliverable,
        &[Reason::MailboxMissing],
    );
    let asked = peer.stats().rcpts;
    assert_eq!(asked, emails, "no catch-all test");
}
