//! The `mailroom` binary as an operator runs it: a real process, its stdout, its signals.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly, by design

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailroom_testkit::{Backend, TestDatabase, both_backends};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_mailroom");
const STARTUP: Duration = Duration::from_secs(30);

/// A running `mailroom serve`, its JSON log lines collected as they come.
struct Server {
    child: Child,
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
    /// Standard error, line by line.
    errors: Arc<Mutex<Vec<String>>>,
    /// The threads reading both pipes: done once the process has exited and they drained.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `mailroom serve` in `dir`, listening on a free port; for PostgreSQL, pointed at
    /// the test database (SQLite uses its default place in `./data`).
    fn start(db: &TestDatabase, dir: &Path, args: &[&str]) -> Self {
        let mut command = mailroom(dir);
        command
            .arg("serve")
            .args(args)
            .env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0");
        if db.backend() == Backend::Postgres {
            command.arg("--database-url").arg(db.url());
        }
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let collected_errors = Arc::clone(&errors);
        let error_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                collected_errors.lock().unwrap().push(line);
            }
        });
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let collected = Arc::clone(&lines);
        let line_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(entry) = serde_json::from_str::<Value>(&line)
                    && entry["message"] == "mailroom is listening"
                {
                    let _ = url_tx.send(entry["url"].as_str().unwrap_or_default().to_owned());
                }
                collected.lock().unwrap().push(line);
            }
        });
        let url = match url_rx.recv_timeout(STARTUP) {
            Ok(url) => url.trim_end_matches('/').to_owned(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = error_reader.join();
                panic!("mailroom did not start: {:?}", errors.lock().unwrap());
            }
        };
        Self {
            child,
            url,
            lines,
            errors,
            readers: vec![error_reader, line_reader],
        }
    }

    /// Waits for a line of standard error that `wanted` picks (the process prints it on its
    /// own schedule), bounded against one that never comes.
    fn error_line<T>(&self, wanted: impl Fn(&str) -> Option<T>) -> T {
        for _ in 0..3000 {
            if let Some(found) = self
                .errors
                .lock()
                .unwrap()
                .iter()
                .find_map(|line| wanted(line))
            {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "no such line on standard error: {:#?}",
            self.errors.lock().unwrap()
        );
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (killing it after a minute) and for everything it
    /// printed to be read; its log lines.
    fn wait(mut self) -> (ExitStatus, Vec<String>) {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                for reader in self.readers.drain(..) {
                    reader.join().unwrap();
                }
                return (status, self.lines.lock().unwrap().clone());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("mailroom did not exit");
    }

    fn stop(self) -> (ExitStatus, Vec<String>) {
        self.signal("TERM");
        self.wait()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn mailroom(dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .current_dir(dir)
        .env("MAILROOM_LOG_FORMAT", "json")
        .env_remove("MAILROOM_CONFIG");
    command
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

both_backends! {
    async fn serve_with_no_flags_creates_the_data_dir_and_stops_cleanly(db) {
        let dir = db.dir().to_owned();
        tokio::task::spawn_blocking(move || {
            let server = Server::start(&db, &dir, &[]);
            if db.backend() == Backend::Sqlite {
                assert!(dir.join("data/mailroom.db").is_file(), "the SQLite database exists");
            }
            let ready: Value = client().get(format!("{}/readyz", server.url)).send().unwrap().json().unwrap();
            assert_eq!(ready["database"], db.backend().name());
            server.signal("INT");
            let (status, lines) = server.wait();
            assert!(status.success(), "{status}");
            assert!(lines.iter().any(|l| l.contains("SIGINT received")), "{lines:#?}");
        })
        .await
        .unwrap();
    }

    async fn sigterm_lets_a_slow_request_finish_first(db) {
        let dir = db.dir().to_owned();
        tokio::task::spawn_blocking(move || {
            let server = Server::start(&db, &dir, &[]);
            // A client uploading slowly: headers and half the body now, the rest after the
            // shutdown signal.
            let body = r#"{"csp-report":{"document-uri":"http://x.test/"}}"#;
            let (first, rest) = body.split_at(10);
            let mut stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
            write!(
                stream,
                "POST /csp-reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/csp-report\r\nContent-Length: {}\r\n\r\n{first}",
                body.len()
            )
            .unwrap();
            // Signalled once the server is inside the request (its scrape counts itself).
            let in_flight = || -> f64 {
                reqwest::blocking::get(format!("{}/metrics", server.url))
                    .unwrap()
                    .text()
                    .unwrap()
                    .lines()
                    .find_map(|line| line.strip_prefix("mailroom_http_requests_in_flight "))
                    .map_or(0.0, |value| value.trim().parse().unwrap())
            };
            let started = (0..6000).any(|_| {
                let inside = in_flight() >= 2.0;
                if !inside {
                    std::thread::sleep(Duration::from_millis(10));
                }
                inside
            });
            assert!(started, "the server never received the request");
            server.signal("TERM");
            // The listener closes once the signal is handled: wait for that, however long a
            // busy machine takes (bounded against a server that never closes it).
            let refused = (0..6000).any(|_| {
                let closed = TcpStream::connect(("127.0.0.1", server.port())).is_err();
                if !closed {
                    std::thread::sleep(Duration::from_millis(50));
                }
                closed
            });
            assert!(refused, "no new connections after the signal");
            stream.write_all(rest.as_bytes()).unwrap();
            let mut response = String::new();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = BufReader::new(&stream).read_line(&mut response);
            assert!(response.starts_with("HTTP/1.1 204"), "{response:?}");
            drop(stream);
            let (status, lines) = server.wait();
            assert!(status.success(), "{status}");
            assert!(lines.iter().any(|l| l.contains("SIGTERM received")), "{lines:#?}");
        })
        .await
        .unwrap();
    }

    async fn logs_carry_request_ids_and_never_secrets(db) {
        let dir = db.dir().to_owned();
        tokio::task::spawn_blocking(move || {
            let server = Server::start(&db, &dir, &["--log-filter", "debug"]);
            let response = client()
                .get(format!("{}/healthz?token=query-secret-1&page=2", server.url))
                .header("authorization", "Bearer bearer-secret-2")
                .header("cookie", "__Host-mailroom_session=cookie-secret-3")
                .header("x-api-key", "mr_live_apikey-secret-4")
                .header("x-forwarded-for", "6.6.6.6")
                .send()
                .unwrap();
            let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
            let (status, lines) = server.stop();
            assert!(status.success());

            let all = lines.join("\n");
            for secret in ["query-secret-1", "bearer-secret-2", "cookie-secret-3", "apikey-secret-4"] {
                assert!(!all.contains(secret), "{secret} reached the logs:\n{all}");
            }
            let of_request: Vec<Value> = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|entry| entry["request_id"] == request_id.as_str())
                .collect();
            assert!(of_request.len() >= 2, "request and response lines: {all}");
            // Every line the server logs while serving carries the request's id.
            for line in &lines {
                let entry: Value = serde_json::from_str(line).unwrap();
                let target = entry["target"].as_str().unwrap();
                if target.starts_with("mailroom_server::edge") || target.starts_with("mailroom_server::routes") {
                    assert!(entry["request_id"].is_string(), "{line}");
                }
            }
            for entry in &of_request {
                assert_eq!(entry["client_ip"], "127.0.0.1", "a spoofed X-Forwarded-For is not believed");
                assert_eq!(entry["path"], "/healthz");
            }
            let received = of_request.iter().find(|e| e["message"] == "request received").unwrap();
            assert!(received["headers"].as_str().unwrap().contains("[redacted]"), "{received}");
            assert!(received["query"].as_str().unwrap().contains("page=2"), "{received}");
        })
        .await
        .unwrap();
    }

    async fn migrate_applies_and_is_idempotent(db) {
        let dir = db.dir().to_owned();
        tokio::task::spawn_blocking(move || {
            for _ in 0..2 {
                let mut command = mailroom(&dir);
                command.arg("migrate");
                if db.backend() == Backend::Postgres {
                    command.arg("--database-url").arg(db.url());
                }
                let output = command.output().unwrap();
                assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
                assert!(String::from_utf8_lossy(&output.stdout).contains("migrations are up to date"));
            }
            if db.backend() == Backend::Sqlite {
                assert!(dir.join("data/mailroom.db").is_file());
            }
            // A migration job makes no master key: the first `serve` does, where it will live.
            assert!(!dir.join("data/master.key").exists());
        })
        .await
        .unwrap();
    }

    async fn tls_flags_serve_tls_1_3_only(db) {
        let dir = db.dir().to_owned();
        tokio::task::spawn_blocking(move || {
            let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
            std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
            let server = Server::start(&db, &dir, &["--http-tls-cert", "cert.pem", "--http-tls-key", "key.pem"]);
            assert!(server.url.starts_with("https://"), "{}", server.url);
            let url = format!("https://localhost:{}/healthz", server.port());
            let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();

            let tls13 = reqwest::blocking::Client::builder()
                .add_root_certificate(root.clone())
                .build()
                .unwrap();
            let response = tls13.get(&url).send().unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["x-frame-options"], "DENY");

            let tls12 = reqwest::blocking::Client::builder()
                .add_root_certificate(root)
                .max_tls_version(reqwest::tls::Version::TLS_1_2)
                .build()
                .unwrap();
            assert!(tls12.get(&url).send().is_err(), "TLS 1.2 must be refused");

            let plain = client().get(format!("http://127.0.0.1:{}/healthz", server.port())).send();
            assert!(plain.is_err(), "plain HTTP on the TLS port must fail");
            let (status, _) = server.stop();
            assert!(status.success());
        })
        .await
        .unwrap();
    }
    async fn configuration_layers_flags_over_env_over_file(db) {
        let dir = db.dir().to_owned();
        tokio::task::spawn_blocking(move || {
            let database = match db.backend() {
                Backend::Sqlite => String::new(),
                Backend::Postgres => format!("[database]\nurl = \"{}\"\n", db.url()),
            };
            std::fs::write(
                dir.join("mailroom.toml"),
                format!(
                    "data_dir = \"file-data\"\n[http]\nlisten = \"127.0.0.1:1\"\n\
                     x_xss_protection = \"from-file\"\nmetrics_allow = [\"10.0.0.0/8\"]\n{database}"
                ),
            )
            .unwrap();
            // The file says port 1, the environment port 0: the environment wins. For the
            // header all three layers speak, and the flag wins. The file alone sets data_dir
            // and metrics_allow, and they hold.
            let mut command = mailroom(&dir);
            command
                .args(["serve", "--http-x-xss-protection", "from-flag"])
                .env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0")
                .env("MAILROOM_HTTP_X_XSS_PROTECTION", "from-env");
            let server = Server::spawn(command);
            let response = client().get(format!("{}/healthz", server.url)).send().unwrap();
            assert_eq!(response.headers()["x-xss-protection"], "from-flag");
            let metrics = client().get(format!("{}/metrics", server.url)).send().unwrap();
            assert_eq!(metrics.status(), 404, "metrics_allow from the file");
            if db.backend() == Backend::Sqlite {
                assert!(dir.join("file-data/mailroom.db").is_file(), "data_dir from the file");
            }
            let (status, _) = server.stop();
            assert!(status.success());
        })
        .await
        .unwrap();
    }
}

both_backends! {
    async fn the_master_key_is_checked_never_replaced_and_rotates(db) {
        let dir = db.dir().to_owned();
        let url = db.url().to_owned();
        tokio::task::spawn_blocking(move || {
            let run = |args: &[&str], env: &[(&str, &str)]| {
                let mut command = mailroom(&dir);
                command.args(args).args(["--database-url", &url]).envs(env.iter().copied());
                let output = command.output().unwrap();
                let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
                (output.status.success(), text)
            };
            let create = || {
                let mut child = mailroom(&dir)
                    .args(["admin", "create", "--email", "keys@example.test", "--password-stdin", "--database-url", &url])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(b"correct horse battery staple\n").unwrap();
                child.wait_with_output().unwrap()
            };
            assert!(create().status.success());
            let key_file = dir.join("data/master.key");
            let first_key = std::fs::read_to_string(&key_file).unwrap();

            // A secret sealed under the first key: the account's TOTP secret.
            let serve = || {
                let mut command = mailroom(&dir);
                command.args(["serve", "--database-url", &url]).env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0");
                Server::spawn(command)
            };
            let server = serve();
            let http = client();
            let login = |server: &Server| {
                http.post(format!("{}/v1/auth/login", server.url))
                    .json(&serde_json::json!({"email": "keys@example.test", "password": "correct horse battery staple"}))
                    .send()
                    .unwrap()
            };
            let signed_in = login(&server);
            let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
            let started: Value = http
                .post(format!("{}/v1/me/2fa/totp", server.url))
                .header("cookie", &cookie)
                .header("origin", &server.url)
                .send()
                .unwrap()
                .json()
                .unwrap();
            let secret = totp_rs::Secret::Encoded(started["secret"].as_str().unwrap().to_owned()).to_bytes().unwrap();
            let secret = mailroom_crypto::totp::TotpSecret::from_bytes(zeroize::Zeroizing::new(secret));
            let step = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30;
            let confirmed = http
                .post(format!("{}/v1/me/2fa/totp/confirm", server.url))
                .header("cookie", &cookie)
                .header("origin", &server.url)
                .json(&serde_json::json!({"code": secret.code_at(step * 30).unwrap()}))
                .send()
                .unwrap();
            assert_eq!(confirmed.status(), 200);
            assert!(server.stop().0.success());

            // A wrong key, from a file or the environment, stops everything with a clear error.
            let wrong = dir.join("wrong.key");
            std::fs::write(&wrong, "ab".repeat(32)).unwrap();
            let (ok, text) = run(&["keys", "status", "--master-key-file", wrong.to_str().unwrap()], &[]);
            assert!(!ok && text.contains("does not match this database"), "{text}");
            let (ok, text) = run(&["audit", "verify"], &[("MAILROOM_MASTER_KEY", &"cd".repeat(32))]);
            assert!(!ok && text.contains("MAILROOM_MASTER_KEY") && text.contains("does not match"), "{text}");

            // A missing key for existing data is an error, and no new key appears.
            std::fs::rename(&key_file, dir.join("aside.key")).unwrap();
            let (ok, text) = run(&["keys", "status"], &[]);
            assert!(!ok && text.contains("is missing"), "{text}");
            assert!(!key_file.exists(), "a new key was made over existing data");
            std::fs::rename(dir.join("aside.key"), &key_file).unwrap();

            // Rotation: a new key file, the old one kept aside, and everything derived from
            // the root key (the audit chain's key, say) unchanged.
            let (ok, text) = run(&["keys", "rotate-master"], &[]);
            assert!(ok, "{text}");
            let second_key = std::fs::read_to_string(&key_file).unwrap();
            assert_ne!(first_key.trim(), second_key.trim());
            let retired: Vec<_> = std::fs::read_dir(dir.join("data")).unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("master.key.retired-"))
                .collect();
            assert_eq!(retired.len(), 1, "{retired:?}");
            let (ok, text) = run(&["audit", "verify"], &[]);
            assert!(ok && text.contains("intact"), "{text}");
            let (ok, text) = run(&["audit", "verify"], &[("MAILROOM_MASTER_KEY", first_key.trim())]);
            assert!(!ok && text.contains("does not match"), "{text}");
            let (ok, text) = run(&["audit", "verify"], &[("MAILROOM_MASTER_KEY", second_key.trim())]);
            assert!(ok, "{text}");
            let (ok, text) = run(&["keys", "status"], &[]);
            assert!(ok && text.contains("system") && text.contains("yes"), "{text}");

            // The server, on the new key, still reads the secret sealed under the old one.
            let server = serve();
            let challenge: Value = login(&server).json().unwrap();
            assert_eq!(challenge["code"], "mfa_required", "{challenge}");
            let second_step = http
                .post(format!("{}/v1/auth/login/2fa", server.url))
                .json(&serde_json::json!({"mfa_token": challenge["mfa_token"], "code": secret.code_at((step + 1) * 30).unwrap()}))
                .send()
                .unwrap();
            assert_eq!(second_step.status(), 200);
            assert!(server.stop().0.success());
        })
        .await
        .unwrap();
    }
}

both_backends! {
    async fn two_processes_share_their_limits_through_redis(db) {
        let Some((redis, prefix)) = mailroom_testkit::test_redis() else { return };
        let dir = db.dir().to_owned();
        let url = db.url().to_owned();
        tokio::task::spawn_blocking(move || {
            let start = || {
                let mut command = mailroom(&dir);
                command
                    .args(["serve", "--database-url", &url, "--redis-url", &redis, "--redis-key-prefix", &prefix, "--http-auth-rate-limit", "4"])
                    .env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0");
                Server::spawn(command)
            };
            let (first, second) = (start(), start());
            assert_ne!(first.port(), second.port());
            let http = client();
            let login = |server: &Server| {
                http.post(format!("{}/v1/auth/login", server.url))
                    .json(&serde_json::json!({"email": "nobody@example.test", "password": "not the password"}))
                    .send()
                    .unwrap()
            };
            // Four sign-in attempts from this address, spread over both processes, use up
            // the one budget they share; the fifth is refused by whichever gets it.
            for server in [&first, &second, &first, &second] {
                assert_eq!(login(server).status(), 401);
            }
            let refused = login(&first);
            assert_eq!(refused.status(), 429);
            assert!(refused.headers().contains_key("retry-after"));
            assert_eq!(login(&second).status(), 429);
            assert!(first.stop().0.success());
            assert!(second.stop().0.success());
        })
        .await
        .unwrap();
    }
}

both_backends! {
    async fn audit_verify_catches_an_edited_entry(db) {
        // Server and CLI both open the test's own database.
        let dir = db.dir().to_owned();
        let url = db.url().to_owned();
        let server = tokio::task::spawn_blocking({
            let (dir, url) = (dir.clone(), url.clone());
            move || {
                let mut command = mailroom(&dir);
                command
                    .args(["serve", "--database-url", &url])
                    .env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0");
                let server = Server::spawn(command);
                // Three failed sign-ins for an unknown address: three chained entries.
                for _ in 0..3 {
                    let response = client()
                        .post(format!("{}/v1/auth/login", server.url))
                        .json(&serde_json::json!({"email": "ghost@example.test", "password": "wrong password here"}))
                        .send()
                        .unwrap();
                    assert_eq!(response.status(), 401);
                }
                server.stop()
            }
        })
        .await
        .unwrap();
        assert!(server.0.success());

        let verify = |dir: &Path| {
            mailroom(dir)
                .args(["audit", "verify", "--database-url", &url])
                .output()
                .unwrap()
        };
        let intact = verify(&dir);
        assert!(intact.status.success(), "{}", String::from_utf8_lossy(&intact.stderr));
        assert!(String::from_utf8_lossy(&intact.stdout).contains("intact"));

        // Edited by hand, behind every check of the app's (on PostgreSQL a trigger keeps an
        // entry's record: a superuser's session turns triggers off first).
        let edit = "UPDATE audit_log SET outcome = 'success' WHERE seq = 2";
        match db.backend() {
            Backend::Sqlite => db.execute(edit).await,
            Backend::Postgres => db.execute(&format!("SET session_replication_role = replica; {edit}")).await,
        }
        let broken = verify(&dir);
        assert!(!broken.status.success());
        let stderr = String::from_utf8_lossy(&broken.stderr);
        assert!(stderr.contains("entry 2") && stderr.contains("changed"), "{stderr}");
    }
}

both_backends! {
    async fn a_fresh_install_prints_a_one_time_setup_link_for_the_first_super_admin(db) {
        let dir = db.dir().to_owned();
        let url = db.url().to_owned();
        tokio::task::spawn_blocking(move || {
            let start = || {
                let mut command = mailroom(&dir);
                command.args(["serve", "--database-url", &url]).env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0");
                Server::spawn(command)
            };
            let server = start();
            let link = server.error_line(|line| line.trim().strip_prefix("http").map(|rest| format!("http{rest}")));
            let token = link.split("token=").nth(1).unwrap().to_owned();
            assert!(link.starts_with(&format!("{}/setup?token=", server.url)), "{link}");

            let no_redirects = reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let page = no_redirects.get(&link).send().unwrap();
            assert_eq!(page.status(), 200);
            assert!(page.text().unwrap().contains("Create the super-admin"));
            let form = [("token", token.as_str()), ("email", "root@example.test"), ("password", "correct horse battery staple")];
            let created = no_redirects.post(format!("{}/setup", server.url)).form(&form).send().unwrap();
            assert_eq!(created.status(), 303);
            let cookie = created.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
            let me: Value = client().get(format!("{}/v1/me", server.url)).header("cookie", cookie).send().unwrap().json().unwrap();
            assert_eq!(me["platform_role"], "super_admin");
            assert_eq!(me["email"], "root@example.test");

            // The link works once.
            let form = [("token", token.as_str()), ("email", "second@example.test"), ("password", "correct horse battery staple")];
            let again = no_redirects.post(format!("{}/setup", server.url)).form(&form).send().unwrap();
            assert_eq!(again.status(), 403);
            let (status, lines) = server.stop();
            assert!(status.success());
            assert!(!lines.iter().any(|line| line.contains("token=")), "the link's token stays out of the log stream");

            // With an account, no link: nothing of the kind, by the time the process is done.
            let server = start();
            let errors = Arc::clone(&server.errors);
            assert!(server.stop().0.success());
            assert!(!errors.lock().unwrap().iter().any(|line| line.contains("setup?token=")));
        })
        .await
        .unwrap();
    }

    async fn admin_create_makes_an_account_from_the_terminal(db) {
        let dir = db.dir().to_owned();
        let url = db.url().to_owned();
        tokio::task::spawn_blocking(move || {
            let create = |email: &str, password: &str| {
                let mut child = mailroom(&dir)
                    .args(["admin", "create", "--email", email, "--super-admin", "--password-stdin", "--database-url", &url])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
                child.wait_with_output().unwrap()
            };
            let created = create("ops@example.test", "correct horse battery staple");
            assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
            assert!(String::from_utf8_lossy(&created.stdout).contains("super_admin"));

            let duplicate = create("OPS@example.test", "correct horse battery staple");
            assert!(!duplicate.status.success());
            assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

            let weak = create("other@example.test", "password123");
            assert!(!weak.status.success());
            assert!(String::from_utf8_lossy(&weak.stderr).contains("refused"));
        })
        .await
        .unwrap();
    }
}

both_backends! {
    async fn no_password_code_or_token_of_a_whole_sign_up_reaches_the_logs(db) {
        let dir = db.dir().to_owned();
        let url = db.url().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut command = mailroom(&dir);
            command
                .args(["serve", "--log-filter", "debug", "--database-url", &url])
                .env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0");
            let server = Server::spawn(command);
            let http = client();
            let password = "secret-horse-battery-staple";
            let email = "logs@example.test";
            let post = |path: &str, body: Value| {
                http.post(format!("{}{path}", server.url)).json(&body).send().unwrap()
            };
            assert_eq!(post("/v1/auth/signup", serde_json::json!({"email": email, "password": password})).status(), 202);
            let outbox = dir.join("data/outbox");
            let mut code = None;
            for _ in 0..100 {
                code = std::fs::read_dir(&outbox).ok().and_then(|entries| {
                    entries.filter_map(Result::ok).find_map(|entry| {
                        let raw = std::fs::read_to_string(entry.path()).ok()?;
                        let line = raw.lines().find(|l| l.starts_with("Subject: Your mailroom code: "))?;
                        Some(line.rsplit(' ').next()?.to_owned())
                    })
                });
                if code.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let code = code.expect("a code in the outbox");
            let verified = post("/v1/auth/confirm-email", serde_json::json!({"email": email, "code": code}));
            assert_eq!(verified.status(), 200);
            let cookie = verified.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
            let session_token = cookie.split('=').nth(1).unwrap().to_owned();
            let me = http.get(format!("{}/v1/me", server.url)).header("cookie", &cookie).send().unwrap();
            assert_eq!(me.status(), 200);
            let tokens: Value = post("/v1/auth/token", serde_json::json!({"grant_type": "password", "email": email, "password": password})).json().unwrap();
            let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
            let access = tokens["access_token"].as_str().unwrap().to_owned();
            let rotated: Value = post("/v1/auth/token", serde_json::json!({"grant_type": "refresh_token", "refresh_token": refresh})).json().unwrap();
            let me = http.get(format!("{}/v1/me", server.url)).bearer_auth(&access).send().unwrap();
            assert_eq!(me.status(), 200);
            let (status, lines) = server.stop();
            assert!(status.success());

            let all = lines.join("\n");
            let rotated_refresh = rotated["refresh_token"].as_str().unwrap();
            let rotated_access = rotated["access_token"].as_str().unwrap();
            for (what, secret) in [
                ("password", password),
                ("code", code.as_str()),
                ("session token", session_token.as_str()),
                ("refresh token", refresh.as_str()),
                ("rotated refresh token", rotated_refresh),
                ("access token", access.as_str()),
                ("rotated access token", rotated_access),
            ] {
                assert!(!all.contains(secret), "the {what} reached the logs");
            }
            assert!(all.contains("system mail written to the outbox"), "the mail is logged, without its code");
        })
        .await
        .unwrap();
    }
}

/// Fails before any database is opened: one backend says all.
#[test]
fn unknown_configuration_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A typo'd key whose value is a connection string: named, but without its password.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[http]\nlisten = \"127.0.0.1:0\"\n[database]\nulr = \"postgres://app:file-secret@db/m\"\n",
    )
    .unwrap();
    let output = mailroom(dir.path())
        .args(["--config", "bad.toml", "serve"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`ulr` in [database]"), "{stderr}");
    assert!(!stderr.contains("file-secret"), "{stderr}");

    let output = mailroom(dir.path())
        .arg("migrate")
        .env("MAILROOM_DATABASE_ULR", "sqlite://x.db")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MAILROOM_DATABASE_ULR"), "{stderr}");
}

/// Only a PostgreSQL URL can point at a server that is not there.
#[test]
fn an_unusable_database_stops_startup_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = mailroom(dir.path())
        .args([
            "serve",
            "--database-url",
            "postgres://nobody:pw-secret@127.0.0.1:1/none",
        ])
        .env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The app's pool connects lazily: the first to reach the server is the owner's look at
    // whether the installation started before.
    assert!(
        stderr.contains("reading the database postgres://"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("pw-secret"), "{stderr}");
}

/// The engine from the command line, no server and no database: an IDN address, every
/// setting the server's engine takes, one JSON result per line.
#[tokio::test(flavor = "multi_thread")]
async fn verify_checks_addresses_from_the_command_line() {
    use mailroom_testkit::{DnsServer, ProbePeer, Rr};
    let Some(mx) = ProbePeer::start(
        "127.0.0.31",
        0,
        &serde_json::json!({"recipients": {"anna@xn--bcher-kva.test": "250 2.1.5 OK"}}),
    ) else {
        return;
    };
    let dns = DnsServer::start(
        &["test"],
        &[
            Rr::Mx("xn--bcher-kva.test", 10, "mx.xn--bcher-kva.test"),
            Rr::Ip("mx.xn--bcher-kva.test", "127.0.0.31".parse().unwrap()),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut command = mailroom(dir.path());
        command.args([
            "verify",
            "anna@bücher.test",
            "ghost@BÜCHER.test",
            "not an address",
            "--verify-dns-server",
            &dns.address().to_string(),
            "--verify-probe-port",
            &mx.port().to_string(),
            "--verify-helo-name",
            "probe.example.test",
            "--verify-probe-from",
            "verify@example.test",
            "--verify-probe-private-networks",
            "true",
        ]);
        command.args(extra);
        async move {
            let output = tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
                .collect::<Vec<_>>()
        }
    };

    let results = run(&[]).await;
    assert_eq!(results.len(), 3, "one line per address");
    assert_eq!(results[0]["normalized"], "anna@xn--bcher-kva.test");
    assert_eq!(results[0]["verdict"], "deliverable");
    assert_eq!(results[0]["smtp"]["host"], "mx.xn--bcher-kva.test");
    assert_eq!(results[1]["verdict"], "undeliverable");
    assert_eq!(
        results[1]["reasons"],
        serde_json::json!(["mailbox_missing"])
    );
    assert_eq!(results[2]["syntax"]["reason"], "no_at_sign");
    let stats = mx.stats();
    assert_eq!(stats.helo_names, ["probe.example.test"]);
    assert_eq!(stats.mail_from, ["verify@example.test"]);

    let unprobed = run(&["--no-smtp"]).await;
    assert_eq!(unprobed[0]["verdict"], "unknown");
    assert_eq!(
        unprobed[0]["reasons"],
        serde_json::json!(["smtp_not_checked"])
    );
    assert_eq!(
        mx.stats().sessions,
        stats.sessions,
        "--no-smtp asks no mail host"
    );
}

// `kill -9` in the middle of a bulk job; a restarted node takes the job up when the
// dead one's lease runs out, and the job ends with every row checked once and every address
// charged once.
both_backends! {
    async fn a_job_survives_a_killed_node_with_nothing_lost_repeated_or_charged_twice(db) {
        use mailroom_testkit::{DnsServer, ProbePeer, Rr};
        let Some(mx) = ProbePeer::start(
            "127.0.0.41",
            0,
            &serde_json::json!({"reply_delay_ms": 2, "recipients": {"keep@d0.test": "250 OK"}}),
        ) else {
            return;
        };
        let domains: Vec<String> = (0..20).map(|n| format!("d{n}.test")).collect();
        let mut records = vec![Rr::Ip("mx.jobs.test", "127.0.0.41".parse().unwrap())];
        for domain in &domains {
            let domain: &'static str = Box::leak(domain.clone().into_boxed_str());
            records.push(Rr::Mx(domain, 10, "mx.jobs.test"));
        }
        let dns = DnsServer::start(&["test"], &records).await;
        let (dns_server, smtp_port) = (dns.address().to_string(), mx.port().to_string());
        let dir = db.dir().to_owned();
        let url = db.url().to_owned();
        tokio::task::spawn_blocking({
            let (dir, url) = (dir.clone(), url.clone());
            move || {
                let mut create = mailroom(&dir);
                create.args(["admin", "create", "--email", "bulk@example.test", "--password-stdin", "--database-url", &url]);
                let mut child = create.stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
                child.stdin.take().unwrap().write_all(b"correct horse battery staple\n").unwrap();
                assert!(child.wait().unwrap().success());
            }
        })
        .await
        .unwrap();
        // More than the free plan's 1,000 a month.
        db.execute("UPDATE orgs SET plan_id = 'team'").await;
        tokio::task::spawn_blocking(move || {
            let start = || {
                let mut command = mailroom(&dir);
                command
                    .args(["serve", "--verify-dns-server", &dns_server, "--verify-probe-port", &smtp_port, "--database-url", &url])
                    .args(["--verify-probe-private-networks", "true"])
                    // Small chunks, so that a kill lands mid-job; a short lease, so that the
                    // next node takes the job up soon.
                    .args(["--jobs-chunk", "100", "--jobs-lease", "3"])
                    .env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0");
                Server::spawn(command)
            };
            let first = start();
            let http = client();
            // A token is for the origin that issued it: each server gets its own.
            let token_of = |server: &Server| {
                let grant: Value = http
                    .post(format!("{}/v1/auth/token", server.url))
                    .json(&serde_json::json!({"grant_type": "password", "email": "bulk@example.test", "password": "correct horse battery staple"}))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                grant["access_token"].as_str().unwrap().to_owned()
            };
            let token = token_of(&first);
            let emails: Vec<String> = (0..3000).map(|n| format!("u{n}@{}", domains[n % 20])).collect();
            let created = http
                .post(format!("{}/v1/verify/jobs", first.url))
                .bearer_auth(&token)
                .json(&serde_json::json!({"emails": emails}))
                .send()
                .unwrap();
            assert_eq!(created.status(), 202);
            let location = created.headers()["location"].to_str().unwrap().to_owned();
            let job = |server: &Server, token: &str| -> Value {
                http.get(format!("{}{location}", server.url)).bearer_auth(token).send().unwrap().json().unwrap()
            };

            // Killed mid-job, without a chance to say anything.
            let mut progress = job(&first, &token);
            for _ in 0..12_000 {
                if progress["done"].as_i64().unwrap() >= 250 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                progress = job(&first, &token);
            }
            first.signal("KILL");
            let (status, _) = first.wait();
            assert!(!status.success());
            let done_at_kill = progress["done"].as_i64().unwrap();
            assert!((250..3000).contains(&done_at_kill), "killed mid-job: {progress}");

            let second = start();
            let token = token_of(&second);
            let mut ended = job(&second, &token);
            for _ in 0..6000 {
                if ended["status"] == "done" {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                ended = job(&second, &token);
            }
            assert_eq!(ended["status"], "done", "{ended}");
            assert_eq!(ended["done"], 3000, "no row lost or repeated: {ended}");
            assert_eq!(ended["counts"]["undeliverable"], 3000);

            let results: Value = http
                .get(format!("{}{location}/results", second.url))
                .bearer_auth(&token)
                .send()
                .unwrap()
                .json()
                .unwrap();
            let results = results["results"].as_array().unwrap();
            let back: Vec<&str> = results.iter().map(|r| r["email"].as_str().unwrap()).collect();
            assert_eq!(back, emails.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(results.iter().all(|r| r["verdict"] == "undeliverable"));
            let usage: Value = http
                .get(format!("{}/v1/usage", second.url))
                .bearer_auth(&token)
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(usage["metrics"][0]["used"], 3000, "each address charged once");
            assert_eq!(mx.stats().data_attempts, 0);
            assert!(second.stop().0.success());
        })
        .await
        .unwrap();
    }
}

both_backends! {
    async fn a_lockout_mail_survives_kill_9_and_is_sent_once(db) {
        let dir = db.dir().to_owned();
        let url = db.url().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut create = mailroom(&dir);
            create.args(["admin", "create", "--email", "locked@example.test", "--password-stdin", "--database-url", &url]);
            let mut child = create.stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
            child.stdin.take().unwrap().write_all(b"correct horse battery staple\n").unwrap();
            assert!(child.wait().unwrap().success());

            let serve = |runner: &str| {
                let mut command = mailroom(&dir);
                command
                    .args(["serve", "--database-url", &url, "--jobs-runner", runner])
                    .env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0");
                Server::spawn(command)
            };
            // A node that only answers HTTP: the mail is queued, not sent.
            let first = serve("false");
            let http = client();
            let mut locked = false;
            for _ in 0..5 {
                let answer = http
                    .post(format!("{}/v1/auth/token", first.url))
                    .json(&serde_json::json!({"grant_type": "password", "email": "locked@example.test", "password": "wrong horse battery staple"}))
                    .send()
                    .unwrap();
                locked = answer.status() == 423;
            }
            assert!(locked, "five failures lock the account");
            // Killed the moment the request returned, with no chance to send anything.
            first.signal("KILL");
            let _ = first.wait();
            let locked_mails = || -> Vec<String> {
                let Ok(entries) = std::fs::read_dir(dir.join("data/outbox")) else {
                    return Vec::new();
                };
                entries
                    .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
                    .filter(|raw| raw.contains("To: locked@example.test") && raw.contains("was locked"))
                    .collect()
            };
            assert!(locked_mails().is_empty());

            let second = serve("true");
            let jobs = || -> String {
                let listed = mailroom(&dir).args(["jobs", "list", "--database-url", &url]).output().unwrap();
                assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
                String::from_utf8(listed.stdout).unwrap()
            };
            // The restarted node sends it: wait for the job to be done, then for nothing else.
            let mut listed = jobs();
            for _ in 0..1200 {
                if listed.contains(" done ") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                listed = jobs();
            }
            assert!(listed.contains("system_mail  done         1/8"), "{listed}");
            assert_eq!(locked_mails().len(), 1, "sent once");
            let (status, _) = second.stop();
            assert!(status.success());
            assert_eq!(locked_mails().len(), 1);
        })
        .await
        .unwrap();
    }
}

// `kill -9` while a stream of messages is being accepted and delivered: every message answered
// 202 is delivered after the restart, and a recipient gets a message twice only if the kill
// fell between the server's reply to DATA and its record: at most the messages in flight
// (docs/security.md#sending). The duplicates of each run are printed.
both_backends! {
    async fn sends_survive_kill_9_with_every_accepted_message_delivered(db) {
        use mailroom_testkit::{SmtpOptions, SmtpServer};
        let Some(sink) = SmtpServer::start(SmtpOptions {
            login: Some(("relay-user".into(), "relay-pass".into())),
            ..SmtpOptions::default()
        }) else {
            return;
        };
        let dir = db.dir().to_owned();
        let url = db.url().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut create = mailroom(&dir);
            create.args(["admin", "create", "--email", "sender@example.test", "--password-stdin", "--database-url", &url]);
            let mut child = create.stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
            child.stdin.take().unwrap().write_all(b"correct horse battery staple\n").unwrap();
            assert!(child.wait().unwrap().success());
            let start = || {
                let mut command = mailroom(&dir);
                command
                    .args(["serve", "--database-url", &url, "--jobs-lease", "3"])
                    .env("MAILROOM_HTTP_LISTEN", "127.0.0.1:0");
                Server::spawn(command)
            };
            let first = start();
            let http = client();
            let token_of = |server: &Server| {
                let grant: Value = http
                    .post(format!("{}/v1/auth/token", server.url))
                    .json(&serde_json::json!({"grant_type": "password", "email": "sender@example.test", "password": "correct horse battery staple"}))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                grant["access_token"].as_str().unwrap().to_owned()
            };
            let token = token_of(&first);
            let account = http
                .post(format!("{}/v1/mail-accounts", first.url))
                .bearer_auth(&token)
                .json(&serde_json::json!({
                    "kind": "smtp", "name": "Sink", "address": "news@example.test",
                    "smtp": {"host": "127.0.0.1", "port": sink.port(), "security": "none",
                             "username": "relay-user", "password": "relay-pass"},
                }))
                .send()
                .unwrap();
            assert_eq!(account.status(), 201);
            // Accepting until the sink has some of them, then killed without a word.
            let mut accepted = Vec::new();
            for n in 0..400 {
                let answer = http
                    .post(format!("{}/v1/emails", first.url))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"from": "news@example.test", "to": format!("r{n}@example.test"), "subject": format!("n{n}"), "text": "Hello."}))
                    .send()
                    .unwrap();
                assert_eq!(answer.status(), 202);
                let id: Value = answer.json().unwrap();
                accepted.push(id["id"].as_str().unwrap().to_owned());
                if n >= 100 && sink.delivered(0).len() >= 50 {
                    break;
                }
            }
            first.signal("KILL");
            let _ = first.wait();
            // Mid-stream on any machine but one whose deliveries keep up with every answer.
            let delivered_at_kill = sink.delivered(0).len();

            let second = start();
            let token = token_of(&second);
            let status_of = |id: &str| -> String {
                let shown: Value = http
                    .get(format!("{}/v1/emails/{id}", second.url))
                    .bearer_auth(&token)
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                shown["status"].as_str().unwrap_or_default().to_owned()
            };
            // The dead node's claims free after their three-second lease; then all go.
            for id in &accepted {
                let mut status = status_of(id);
                for _ in 0..1200 {
                    if status == "sent" {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    status = status_of(id);
                }
                assert_eq!(status, "sent", "message {id} was accepted, so it is delivered");
            }
            let received = sink.delivered(accepted.len());
            let mut ids: Vec<String> = received
                .iter()
                .filter_map(|message| {
                    message.raw.lines().find_map(|line| {
                        line.strip_prefix("Message-ID: ").map(str::to_owned)
                    })
                })
                .collect();
            let total = ids.len();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), accepted.len(), "every accepted message arrived");
            let duplicates = total - ids.len();
            println!(
                "kill -9 after {} accepted, {delivered_at_kill} delivered: {duplicates} delivered twice",
                accepted.len()
            );
            // At most the messages in flight when the node died: the send runners' number.
            assert!(duplicates <= 8, "{duplicates} duplicates");
            assert!(second.stop().0.success());
        })
        .await
        .unwrap();
    }
}
