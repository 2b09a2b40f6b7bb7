//! Tenant isolation (docs/security.md#tenant-scoping), on both backends: every route that takes an id, called by
//! organization B — with a session and with an API key — against organization A's ids, answers
//! 404 as for an id that does not exist; and nothing of A's appears in B's lists.

use crate::common::accounts::*;
use crate::common::two_factor::enable_totp;
use crate::common::{TestApp, problem};
use mailroom_testkit::{TestDatabase, both_backends};
use reqwest::Method;
use serde_json::{Value, json};

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

/// An organization on the team plan: its owner (with a second factor), a member, a pending
/// invitation, and a key that may manage keys and read the audit log.
struct Tenant {
    owner: String,
    member_id: String,
    session_id: String,
    invitation_id: String,
    key_id: String,
    key: String,
    job_id: String,
    mail_account_id: String,
}

async fn tenant(app: &TestApp, db: &TestDatabase, name: &str) -> Tenant {
    let owner_email = format!("owner-{name}@example.test");
    let owner = create_account(app, db, &owner_email).await;
    enable_totp(app, &owner).await;
    db.execute(&format!(
        "UPDATE orgs SET plan_id = 'team' WHERE id = (SELECT org_id FROM org_members m JOIN users u ON u.id = m.user_id WHERE u.email = '{owner_email}')"
    ))
    .await;
    let member_email = format!("member-{name}@example.test");
    let invited = send_as(
        app,
        Method::POST,
        &owner,
        "/v1/org/invitations",
        Some(json!({"email": member_email, "role": "member"})),
    )
    .await;
    assert_eq!(invited.status(), 201);
    let member = create_account(app, db, &member_email).await;
    let token = invitation_token(db, &member_email, 0).await;
    let joined = send_as(
        app,
        Method::POST,
        &member,
        "/v1/invitations/accept",
        Some(json!({"token": token, "leave_current_org": true})),
    )
    .await;
    assert_eq!(joined.status(), 200);
    let member_id = json_of(get_as(app, &member, "/v1/me").await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invitation = json_of(
        send_as(
            app,
            Method::POST,
            &owner,
            "/v1/org/invitations",
            Some(json!({"email": format!("later-{name}@example.test"), "role": "member"})),
        )
        .await,
    )
    .await;
    let key = json_of(
        send_as(
            app,
            Method::POST,
            &owner,
            "/v1/api-keys",
            Some(json!({"name": name, "scopes": ["keys:manage", "audit:read", "verify"]})),
        )
        .await,
    )
    .await;
    // A verification and a job, of inputs that name the tenant (and need no DNS).
    let not_an_address = format!("{name}-not-an-address");
    let checked = send_as(
        app,
        Method::POST,
        &owner,
        "/v1/verify",
        Some(json!({"email": not_an_address, "smtp": false})),
    )
    .await;
    assert_eq!(checked.status(), 200);
    let job = json_of(
        send_as(
            app,
            Method::POST,
            &owner,
            "/v1/verify/jobs",
            Some(json!({"emails": [not_an_address], "smtp": false})),
        )
        .await,
    )
    .await;
    let sessions = json_of(get_as(app, &owner, "/v1/me/sessions").await).await;
    let account = json_of(
        send_as(
            app,
            Method::POST,
            &owner,
            "/v1/mail-accounts",
            Some(json!({
                "kind": "smtp",
                "name": format!("{name} relay"),
                "address": format!("{name}@example.test"),
                "smtp": {"host": "relay.example.test", "port": 587, "security": "starttls"},
            })),
        )
        .await,
    )
    .await;
    Tenant {
        mail_account_id: account["id"].as_str().unwrap().to_owned(),
        owner,
        member_id,
        session_id: sessions[0]["id"].as_str().unwrap().to_owned(),
        invitation_id: invitation["id"].as_str().unwrap().to_owned(),
        key_id: key["id"].as_str().unwrap().to_owned(),
        key: key["key"].as_str().unwrap().to_owned(),
        job_id: job["id"].as_str().unwrap().to_owned(),
    }
}

both_backends! {
    async fn one_organization_cannot_reach_anothers_ids(db) {
        let app = TestApp::spawn(&db).await;
        let a = tenant(&app, &db, "alpha").await;
        let b = tenant(&app, &db, "bravo").await;

        // With B's owner's session.
        let by_session = [
            (Method::PATCH, format!("/v1/org/members/{}", a.member_id), Some(json!({"role": "admin"}))),
            (Method::DELETE, format!("/v1/org/members/{}", a.member_id), None),
            (Method::POST, "/v1/org/transfer-ownership".to_owned(), Some(json!({"user_id": a.member_id}))),
            (Method::DELETE, format!("/v1/org/invitations/{}", a.invitation_id), None),
            (Method::DELETE, format!("/v1/api-keys/{}", a.key_id), None),
            (Method::DELETE, format!("/v1/me/sessions/{}", a.session_id), None),
            (Method::GET, format!("/v1/verify/jobs/{}", a.job_id), None),
            (Method::GET, format!("/v1/verify/jobs/{}/results", a.job_id), None),
            (Method::DELETE, format!("/v1/verify/jobs/{}", a.job_id), None),
            (Method::GET, format!("/v1/mail-accounts/{}", a.mail_account_id), None),
            (Method::POST, format!("/v1/mail-accounts/{}/test", a.mail_account_id), None),
            (Method::POST, format!("/v1/mail-accounts/{}/reconnect", a.mail_account_id), None),
            (Method::DELETE, format!("/v1/mail-accounts/{}", a.mail_account_id), None),
        ];
        for (method, path, body) in by_session {
            let response = send_as(&app, method.clone(), &b.owner, &path, body).await;
            problem(response, 404, "not_found").await;
        }
        // With B's key.
        let by_key = app.client.delete(app.at(&format!("/v1/api-keys/{}", a.key_id))).bearer_auth(&b.key).send().await.unwrap();
        problem(by_key, 404, "not_found").await;
        let by_key = app.client.get(app.at(&format!("/v1/verify/jobs/{}/results", a.job_id))).bearer_auth(&b.key).send().await.unwrap();
        problem(by_key, 404, "not_found").await;

        // B's lists hold nothing of A's.
        let lists = ["/v1/org/members", "/v1/org/invitations", "/v1/api-keys", "/v1/audit-log", "/v1/verify/jobs", "/v1/verify/logs", "/v1/mail-accounts"];
        for path in lists {
            let listed = get_as(&app, &b.owner, path).await.text().await.unwrap();
            assert!(!listed.contains("alpha"), "{path}: {listed}");
            let listed = app.client.get(app.at(path)).bearer_auth(&b.key).send().await.unwrap();
            if listed.status() == 200 {
                let listed = listed.text().await.unwrap();
                assert!(!listed.contains("alpha") && !listed.contains(&a.key_id), "{path}: {listed}");
            }
        }

        // And A is as it was.
        assert_eq!(app.client.get(app.at("/v1/usage")).bearer_auth(&a.key).send().await.unwrap().status(), 200);
        let members = json_of(get_as(&app, &a.owner, "/v1/org/members").await).await;
        assert_eq!(members.as_array().unwrap().len(), 2);
        assert_eq!(json_of(get_as(&app, &a.owner, "/v1/org/invitations").await).await.as_array().unwrap().len(), 1);
        let job = json_of(get_as(&app, &a.owner, &format!("/v1/verify/jobs/{}", a.job_id)).await).await;
        assert_ne!(job["status"], "cancelled");
        let log = json_of(get_as(&app, &a.owner, "/v1/verify/logs").await).await;
        assert!(log.to_string().contains("alpha-not-an-address"));
        app.stop().await;
    }
}
