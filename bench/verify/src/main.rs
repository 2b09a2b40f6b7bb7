//! Benchmarks of verification (issue 6), run by `bench/run`:
//!
//! - `bulk MAILROOM_BINARY`: 100 domains × 100 addresses on 10 loopback mail hosts (aiosmtpd,
//!   20 ms before every reply), verified once as a bulk job of a real `mailroom serve`, and once
//!   one connection per address the way check-if-email-exists does it (connect, EHLO,
//!   MAIL FROM, RCPT a random address for its catch-all test, RCPT the address, QUIT). Both
//!   hold at most 2 sessions per host; the hosts count what they saw. Then the bulk job once
//!   more against hosts that take one session from a client and answer 421 to the rest (as
//!   Gmail's, Outlook's and Yahoo's take few), to show that costs throughput, not addresses.
//!   Prints one JSON line.
//! - `syntax`: syntax checks per second on one core. Prints one JSON line.
//! - `dns`: serves the zone `bench.test` (MX and address) for the HTTP load runs; prints
//!   `LISTENING ip:port` and serves until killed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly, by design

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailroom_testkit::{DnsServer, ProbePeer, ProbeStats, Rr, TestDatabase};
use mailroom_verify::smtp::{Greeting, Session};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const DOMAINS: usize = 100;
const PER_DOMAIN: usize = 100;
const HOSTS: usize = 10;
const REPLY_DELAY_MS: u64 = 20;
/// The engine's default, held by both sides.
const SESSIONS_PER_HOST: usize = 2;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bulk") => {
            let binary = std::fs::canonicalize(args.get(1).expect("the mailroom binary")).unwrap();
            bulk(binary.to_str().unwrap()).await;
        }
        Some("syntax") => syntax(),
        Some("dns") => serve_dns().await,
        _ => {
            eprintln!("usage: mailroom-bench-verify bulk MAILROOM_BINARY | syntax | dns");
            std::process::exit(2);
        }
    }
}

fn host_ip(host: usize) -> IpAddr {
    format!("127.0.1.{}", host + 1).parse().unwrap()
}

fn domain(n: usize) -> String {
    format!("d{n}.bench.test")
}

fn addresses() -> Vec<String> {
    // Domain by domain, as a customer's list sorted by domain would come; the bulk path groups
    // by host anyway.
    (0..DOMAINS)
        .flat_map(|d| (0..PER_DOMAIN).map(move |n| format!("user{n}@{}", domain(d))))
        .collect()
}

/// Ten mail hosts on one port, each taking mail for one address per domain it serves, and
/// each taking at most `max_sessions` at once (421 to the rest), or any number.
fn mail_hosts(max_sessions: Option<u64>) -> Vec<ProbePeer> {
    let mut peers: Vec<ProbePeer> = Vec::new();
    for host in 0..HOSTS {
        let accepted: serde_json::Map<String, Value> = (0..DOMAINS)
            .filter(|d| d % HOSTS == host)
            .map(|d| (format!("user0@{}", domain(d)), json!("250 2.1.5 OK")))
            .collect();
        let config = json!({
            "reply_delay_ms": REPLY_DELAY_MS,
            "recipients": accepted,
            "max_sessions": max_sessions,
        });
        let port = peers.first().map_or(0, ProbePeer::port);
        let peer = ProbePeer::start(&host_ip(host).to_string(), port, &config)
            .expect("aiosmtpd (./scripts/test installs it)");
        peers.push(peer);
    }
    peers
}

async fn zone() -> DnsServer {
    let mut records = Vec::new();
    for host in 0..HOSTS {
        let name: &'static str = Box::leak(format!("mx{host}.bench.test").into_boxed_str());
        records.push(Rr::Ip(name, host_ip(host)));
    }
    for d in 0..DOMAINS {
        let name: &'static str = Box::leak(domain(d).into_boxed_str());
        let mx: &'static str = Box::leak(format!("mx{}.bench.test", d % HOSTS).into_boxed_str());
        records.push(Rr::Mx(name, 10, mx));
    }
    records.push(Rr::Mx("bench.test", 10, "mx.bench.test"));
    records.push(Rr::Ip("mx.bench.test", "127.0.0.1".parse().unwrap()));
    DnsServer::start(&["test"], &records).await
}

/// What the hosts saw, summed (and the highest per-host peak).
fn seen(peers: &[ProbePeer]) -> Value {
    let stats: Vec<ProbeStats> = peers.iter().map(ProbePeer::stats).collect();
    json!({
        "sessions": stats.iter().map(|s| s.sessions).sum::<u64>(),
        "rcpt": stats.iter().map(|s| s.rcpt).sum::<u64>(),
        "max_concurrent_sessions_per_host": stats.iter().map(|s| s.max_concurrent_sessions).max(),
        "refused_sessions": stats.iter().map(|s| s.rejected_sessions).sum::<u64>(),
        "data_attempts": stats.iter().map(|s| s.data_attempts).sum::<u64>(),
    })
}

async fn bulk(mailroom: &str) {
    let dns = zone().await;
    let emails = addresses();

    let peers = mail_hosts(None);
    let port = peers[0].port();
    let started = Instant::now();
    one_connection_each(&emails, port).await;
    let baseline = started.elapsed();
    let baseline_seen = seen(&peers);
    drop(peers);

    let peers = mail_hosts(None);
    let port = peers[0].port();
    let (bulk, bulk_correct) = bulk_job(mailroom, &emails, dns.address(), port).await;
    let bulk_seen = seen(&peers);
    drop(peers);

    let peers = mail_hosts(Some(1));
    let port = peers[0].port();
    let (one, one_correct) = bulk_job(mailroom, &emails, dns.address(), port).await;
    let one_seen = seen(&peers);

    let rate = |elapsed: Duration| emails.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{}",
        json!({
            "addresses": emails.len(),
            "hosts": HOSTS,
            "reply_delay_ms": REPLY_DELAY_MS,
            "sessions_per_host": SESSIONS_PER_HOST,
            "one_connection_each": {"seconds": baseline.as_secs_f64(), "per_second": rate(baseline), "seen": baseline_seen},
            "bulk_job": {"seconds": bulk.as_secs_f64(), "per_second": rate(bulk), "correct": bulk_correct, "seen": bulk_seen},
            "one_session_hosts": {"seconds": one.as_secs_f64(), "per_second": rate(one), "correct": one_correct, "seen": one_seen},
            "speedup": baseline.as_secs_f64() / bulk.as_secs_f64(),
            "one_session_share": bulk.as_secs_f64() / one.as_secs_f64(),
        })
    );
}

/// check-if-email-exists' sequence for every address on a connection of its own, with the same
/// per-host cap.
async fn one_connection_each(emails: &[String], port: u16) {
    let greeting = Greeting {
        helo_name: "bench.mailroom.test".into(),
        probe_from: "bench@mailroom.test".into(),
        timeout: Duration::from_secs(10),
    };
    let caps: Vec<Arc<Semaphore>> = (0..HOSTS)
        .map(|_| Arc::new(Semaphore::new(SESSIONS_PER_HOST)))
        .collect();
    let checks = emails.iter().map(|email| {
        let d: usize = email
            .split_once("@d")
            .and_then(|(_, rest)| rest.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let host = d % HOSTS;
        let (cap, greeting) = (Arc::clone(&caps[host]), greeting.clone());
        async move {
            let _slot = cap.acquire_owned().await.unwrap();
            let address = SocketAddr::new(host_ip(host), port);
            let mut session = Session::open(address, None, &greeting).await.unwrap();
            let random = format!("{:015x}@{}", rand::random::<u64>(), domain(d));
            session.rcpt(&random).await.unwrap();
            session.rcpt(email).await.unwrap();
            session.quit().await;
        }
    });
    futures::future::join_all(checks).await;
}

/// A real `mailroom serve` on SQLite: an account on the team plan, a job of every address,
/// timed from its upload to its end; and how many addresses got their true verdict (the
/// first of each domain exists, the others do not).
async fn bulk_job(
    mailroom: &str,
    emails: &[String],
    dns: SocketAddr,
    port: u16,
) -> (Duration, u64) {
    let db = TestDatabase::sqlite().await;
    let url = db.url().to_owned();
    let password = "correct horse battery staple";
    let mut create = Command::new(mailroom)
        .args([
            "admin",
            "create",
            "--email",
            "bench@example.test",
            "--password-stdin",
        ])
        .args(["--database-url", &url])
        .current_dir(db.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut create.stdin.take().unwrap(),
        format!("{password}\n").as_bytes(),
    )
    .unwrap();
    assert!(create.wait().unwrap().success());
    db.execute("UPDATE orgs SET plan_id = 'team'").await;

    let mut server = Command::new(mailroom)
        .args(["serve", "--database-url", &url])
        .args([
            "--verify-dns-server",
            &dns.to_string(),
            "--verify-probe-port",
            &port.to_string(),
        ])
        // The bench's mail hosts are on loopback.
        .args(["--verify-probe-private-networks", "true"])
        .env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0")
        .env("MAILROOM_LOG_FORMAT", "json")
        .current_dir(db.dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("mailroom printed its address").unwrap();
        let entry: Value = serde_json::from_str(&line).unwrap_or_default();
        if entry["message"] == "mailroom is listening" {
            break entry["url"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let http = reqwest::Client::new();
    let grant: Value = http
        .post(format!("{base}/v1/auth/token"))
        .json(
            &json!({"grant_type": "password", "email": "bench@example.test", "password": password}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = grant["access_token"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let created = http
        .post(format!("{base}/v1/verify/jobs"))
        .bearer_auth(&token)
        .json(&json!({"emails": emails}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let job = loop {
        let job: Value = http
            .get(format!("{base}{location}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "done" {
            assert_eq!(job["done"].as_u64(), Some(emails.len() as u64));
            break job;
        }
        assert!(
            job["status"] == "queued" || job["status"] == "running",
            "{job}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = started.elapsed();
    let _ = server.kill();
    let _ = server.wait();
    let count = |verdict: &str| job["counts"][verdict].as_u64().unwrap_or(0);
    let correct = count("deliverable").min(DOMAINS as u64)
        + count("undeliverable").min((DOMAINS * (PER_DOMAIN - 1)) as u64);
    (elapsed, correct)
}

fn syntax() {
    let inputs: Vec<String> = (0..100_000)
        .map(|n| match n % 5 {
            0 => format!("first.last{n}@example.com"),
            1 => format!("\"quoted {n}\"@example.org"),
            2 => format!("user{n}@bücher.example"),
            3 => format!("broken{n}@@example.com"),
            _ => format!("sales+tag{n}@sub.domain.example.co.uk"),
        })
        .collect();
    let rounds = 20;
    let started = Instant::now();
    let mut valid = 0_usize;
    for _ in 0..rounds {
        for input in &inputs {
            valid +=
                usize::from(mailroom_verify::syntax::parse(std::hint::black_box(input)).is_ok());
        }
    }
    let elapsed = started.elapsed();
    let checks = inputs.len() * rounds;
    println!(
        "{}",
        json!({"checks": checks, "valid": valid, "seconds": elapsed.as_secs_f64(), "per_second": checks as f64 / elapsed.as_secs_f64()})
    );
}

async fn serve_dns() {
    let dns = zone().await;
    println!("LISTENING {}", dns.address());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
