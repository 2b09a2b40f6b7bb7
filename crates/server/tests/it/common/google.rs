//! Google, as the tests meet it: the app with `[oidc.google]` pointed at the test kit's
//! contract server, and a browser that keeps its cookies.

use std::collections::HashMap;

use mailroom_server::config::OidcProvider;
use mailroom_testkit::{GoogleContract, TestDatabase};
use secrecy::SecretString;

use crate::common::TestApp;

pub const CLIENT_ID: &str = "mailroom-test.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-contract-test-secret";

/// The app with `[oidc.google]` pointed at a contract server, its redirect URI registered.
pub async fn app_with_google(db: &TestDatabase) -> (TestApp, GoogleContract) {
    let google = GoogleContract::start(CLIENT_ID, CLIENT_SECRET).await;
    let issuer = google.issuer().to_owned();
    let app = TestApp::spawn_with(db, |config| {
        let mut google = OidcProvider::new(
            "google",
            Some(issuer.clone()),
            CLIENT_ID.to_owned(),
            SecretString::from(CLIENT_SECRET),
        )
        .unwrap();
        // The Gmail API is the contract server's too.
        google.gmail_api_url = issuer.parse().unwrap();
        config.oidc = vec![google];
    })
    .await;
    google.register_redirect_uri(&app.at("/v1/auth/oidc/google/callback"));
    (app, google)
}

/// A browser: keeps its cookies, follows nothing on its own.
#[derive(Default, Clone)]
pub struct Browser {
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub async fn get(&mut self, app: &TestApp, url: &str) -> reqwest::Response {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let response = app
            .client
            .get(url)
            .header("cookie", cookie.join("; "))
            .send()
            .await
            .unwrap();
        for set in response.headers().get_all("set-cookie") {
            let (pair, attributes) = set.to_str().unwrap().split_once(';').unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        response
    }

    pub fn session(&self) -> Option<String> {
        self.cookies.get("__Host-mailroom_session").cloned()
    }
}

pub fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

impl Browser {
    /// A browser signed in with `session`.
    pub fn signed_in(session: &str) -> Self {
        let mut browser = Self::default();
        browser
            .cookies
            .insert("__Host-mailroom_session".into(), session.to_owned());
        browser
    }

    /// Keeps the cookie a response sets (the flow's, say).
    pub fn keep_cookie(&mut self, response: &reqwest::Response) {
        let set = response.headers()["set-cookie"].to_str().unwrap();
        let (pair, _) = set.split_once(';').unwrap();
        let (name, value) = pair.split_once('=').unwrap();
        self.cookies.insert(name.to_owned(), value.to_owned());
    }
}
