//! Teams end to end over HTTP (docs/security.md#roles, #one-org-per-user, #invitations), on both backends: invitations (expired, reused,
//! plan-less, for another address), roles (who may promote whom), ownership, removal, the
//! super-admin's routes, and one organization's principal against another's ids.

use crate::common::accounts::*;
use crate::common::two_factor::enable_totp;
use crate::common::{TestApp, problem};
use mailroom_testkit::{TestDatabase, both_backends};
use reqwest::Method;
use serde_json::{Value, json};

async fn me(app: &TestApp, token: &str) -> Value {
    get_as(app, token, "/v1/me").await.json().await.unwrap()
}

/// The owner of a team-plan organization, with the second factor its role will require.
async fn team_owner(app: &TestApp, db: &TestDatabase, email: &str) -> String {
    let session = create_account(app, db, email).await;
    enable_totp(app, &session).await;
    db.execute(&format!(
        "UPDATE orgs SET plan_id = 'team' WHERE id = (SELECT org_id FROM org_members m JOIN users u ON u.id = m.user_id WHERE u.email = '{email}')"
    ))
    .await;
    session
}

/// Invites `email` as `role` and has them accept; returns their session.
async fn join(app: &TestApp, db: &TestDatabase, inviter: &str, email: &str, role: &str) -> String {
    let invited = send_as(
        app,
        Method::POST,
        inviter,
        "/v1/org/invitations",
        Some(json!({"email": email, "role": role})),
    )
    .await;
    assert_eq!(invited.status(), 201);
    let session = create_account(app, db, email).await;
    let token = invitation_token(db, email, 0).await;
    let accepted = send_as(
        app,
        Method::POST,
        &session,
        "/v1/invitations/accept",
        Some(json!({"token": token, "leave_current_org": true})),
    )
    .await;
    assert_eq!(accepted.status(), 200);
    session
}

both_backends! {
    async fn an_invitation_is_accepted_once_by_its_address(db) {
        let app = TestApp::spawn(&db).await;
        let owner = team_owner(&app, &db, "owner@example.test").await;
        let org_id = me(&app, &owner).await["org_id"].clone();
        let invited = send_as(&app, Method::POST, &owner, "/v1/org/invitations", Some(json!({"email": "Newcomer@Example.test", "role": "member"}))).await;
        assert_eq!(invited.status(), 201);
        let listed: Value = get_as(&app, &owner, "/v1/org/invitations").await.json().await.unwrap();
        assert_eq!(listed[0]["email"], "newcomer@example.test");
        let token = invitation_token(&db, "newcomer@example.test", 0).await;

        // Someone else cannot use it.
        let stranger = create_account(&app, &db, "stranger@example.test").await;
        let wrong = send_as(&app, Method::POST, &stranger, "/v1/invitations/accept", Some(json!({"token": token, "leave_current_org": true}))).await;
        problem(wrong, 403, "invitation_for_another_address").await;

        // Joining means leaving the personal organization: said out loud.
        let newcomer = create_account(&app, &db, "newcomer@example.test").await;
        let orgs_before = db.count("SELECT COUNT(*) FROM orgs").await;
        let unsaid = send_as(&app, Method::POST, &newcomer, "/v1/invitations/accept", Some(json!({"token": token}))).await;
        problem(unsaid, 409, "leave_current_org_required").await;
        let accepted = send_as(&app, Method::POST, &newcomer, "/v1/invitations/accept", Some(json!({"token": token, "leave_current_org": true}))).await;
        assert_eq!(accepted.status(), 200);
        assert_eq!(me(&app, &newcomer).await["org_id"], org_id);
        assert_eq!(me(&app, &newcomer).await["org_role"], "member");
        assert_eq!(db.count("SELECT COUNT(*) FROM orgs").await, orgs_before - 1, "the personal org is gone");

        // Once.
        let again = send_as(&app, Method::POST, &stranger, "/v1/invitations/accept", Some(json!({"token": token, "leave_current_org": true}))).await;
        problem(again, 404, "invalid_invitation").await;
        let members: Value = get_as(&app, &owner, "/v1/org/members").await.json().await.unwrap();
        assert_eq!(members.as_array().unwrap().len(), 2);
        let listed: Value = get_as(&app, &owner, "/v1/org/invitations").await.json().await.unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 0);
        app.stop().await;
    }

    async fn expired_revoked_and_plan_less_invitations_are_refused(db) {
        let app = TestApp::spawn(&db).await;
        // Without a team plan nobody can be invited.
        let solo = create_account(&app, &db, "solo@example.test").await;
        let refused = send_as(&app, Method::POST, &solo, "/v1/org/invitations", Some(json!({"email": "x@example.test", "role": "member"}))).await;
        problem(refused, 402, "team_plan_required").await;

        let owner = team_owner(&app, &db, "owner@example.test").await;
        let invitee = create_account(&app, &db, "invitee@example.test").await;
        let accept = |token: String| {
            send_as(&app, Method::POST, &invitee, "/v1/invitations/accept", Some(json!({"token": token, "leave_current_org": true})))
        };
        let invite = || send_as(&app, Method::POST, &owner, "/v1/org/invitations", Some(json!({"email": "invitee@example.test", "role": "member"})));

        let created: Value = invite().await.json().await.unwrap();
        let token = invitation_token(&db, "invitee@example.test", 0).await;
        db.execute("UPDATE invitations SET expires_at = 0").await;
        problem(accept(token).await, 404, "invalid_invitation").await;

        let created_again: Value = invite().await.json().await.unwrap();
        assert_ne!(created_again["id"], created["id"]);
        let token = invitation_token(&db, "invitee@example.test", 1).await;
        let revoked = send_as(&app, Method::DELETE, &owner, &format!("/v1/org/invitations/{}", created_again["id"].as_str().unwrap()), None).await;
        assert_eq!(revoked.status(), 204);
        problem(accept(token).await, 404, "invalid_invitation").await;

        // The plan lapsed after the invitation went out.
        invite().await;
        let token = invitation_token(&db, "invitee@example.test", 2).await;
        db.execute("UPDATE orgs SET plan_id = 'free'").await;
        problem(accept(token.clone()).await, 402, "team_plan_required").await;
        db.execute("UPDATE orgs SET plan_id = 'team'").await;
        assert_eq!(accept(token).await.status(), 200);
        app.stop().await;
    }

    async fn only_the_owner_makes_admins(db) {
        let app = TestApp::spawn(&db).await;
        let owner = team_owner(&app, &db, "owner@example.test").await;
        let first = join(&app, &db, &owner, "first@example.test", "member").await;
        let second = join(&app, &db, &owner, "second@example.test", "member").await;
        let first_id = me(&app, &first).await["id"].as_str().unwrap().to_owned();
        let second_id = me(&app, &second).await["id"].as_str().unwrap().to_owned();
        let role = |session: &str, target: &str, role: &str| {
            let (session, path) = (session.to_owned(), format!("/v1/org/members/{target}"));
            let body = json!({"role": role});
            let app = &app;
            async move { send_as(app, Method::PATCH, &session, &path, Some(body)).await }
        };

        // A member promoting someone.
        problem(role(&first, &second_id, "admin").await, 403, "insufficient_role").await;
        // The owner promoting.
        assert_eq!(role(&owner, &first_id, "admin").await.status(), 204);
        // The new admin must set up a second factor before acting; then may not make admins.
        problem(role(&first, &second_id, "admin").await, 403, "mfa_setup_required").await;
        enable_totp(&app, &first).await;
        problem(role(&first, &second_id, "admin").await, 403, "owner_only").await;
        problem(role(&first, &first_id, "member").await, 403, "owner_only").await;
        let invite_admin = send_as(&app, Method::POST, &first, "/v1/org/invitations", Some(json!({"email": "third@example.test", "role": "admin"}))).await;
        problem(invite_admin, 403, "owner_only").await;
        // Nobody becomes owner by a role change.
        let owner_id = me(&app, &owner).await["id"].as_str().unwrap().to_owned();
        problem(role(&owner, &second_id, "owner").await, 409, "ownership_transfer_required").await;
        problem(role(&first, &owner_id, "member").await, 409, "ownership_transfer_required").await;

        // The admin removes a member, who is back in a personal organization of their own.
        let removed = send_as(&app, Method::DELETE, &first, &format!("/v1/org/members/{second_id}"), None).await;
        assert_eq!(removed.status(), 204);
        let second_me = me(&app, &second).await;
        assert_eq!(second_me["org_role"], "owner");
        assert_ne!(second_me["org_id"], me(&app, &owner).await["org_id"]);

        // Ownership moves explicitly.
        let transferred = send_as(&app, Method::POST, &owner, "/v1/org/transfer-ownership", Some(json!({"user_id": first_id}))).await;
        assert_eq!(transferred.status(), 204);
        assert_eq!(me(&app, &first).await["org_role"], "owner");
        assert_eq!(me(&app, &owner).await["org_role"], "admin");
        let log: Value = get_as(&app, &owner, "/v1/me/audit-log").await.json().await.unwrap();
        let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        for action in ["org.member_role_changed", "org.invitation_created", "org.ownership_transferred"] {
            assert!(actions.contains(&action), "{action}: {actions:?}");
        }
        app.stop().await;
    }

    async fn another_organizations_ids_are_not_found(db) {
        let app = TestApp::spawn(&db).await;
        let owner_a = team_owner(&app, &db, "a@example.test").await;
        let member_a = join(&app, &db, &owner_a, "member-a@example.test", "member").await;
        let member_a_id = me(&app, &member_a).await["id"].as_str().unwrap().to_owned();
        let invitation: Value = send_as(&app, Method::POST, &owner_a, "/v1/org/invitations", Some(json!({"email": "later@example.test", "role": "member"}))).await.json().await.unwrap();
        let invitation_id = invitation["id"].as_str().unwrap();

        let owner_b = team_owner(&app, &db, "b@example.test").await;
        let attempts = [
            (Method::PATCH, format!("/v1/org/members/{member_a_id}"), Some(json!({"role": "member"}))),
            (Method::DELETE, format!("/v1/org/members/{member_a_id}"), None),
            (Method::DELETE, format!("/v1/org/invitations/{invitation_id}"), None),
            (Method::POST, "/v1/org/transfer-ownership".to_owned(), Some(json!({"user_id": member_a_id}))),
        ];
        for (method, path, body) in attempts {
            let response = send_as(&app, method.clone(), &owner_b, &path, body).await;
            problem(response, 404, "not_found").await;
        }
        let members: Value = get_as(&app, &owner_b, "/v1/org/members").await.json().await.unwrap();
        assert_eq!(members.as_array().unwrap().len(), 1);
        let invitations: Value = get_as(&app, &owner_b, "/v1/org/invitations").await.json().await.unwrap();
        assert_eq!(invitations.as_array().unwrap().len(), 0);
        // Nothing changed in organization A.
        assert_eq!(me(&app, &member_a).await["org_role"], "member");
        app.stop().await;
    }

    async fn super_admins_assign_plans_and_disable_users(db) {
        let app = TestApp::spawn(&db).await;
        let root = create_account(&app, &db, "root@example.test").await;
        db.execute("UPDATE users SET platform_role = 'super_admin' WHERE email = 'root@example.test'").await;
        enable_totp(&app, &root).await;
        let user = create_account(&app, &db, "user@example.test").await;
        problem(get_as(&app, &user, "/v1/admin/orgs").await, 403, "super_admin_only").await;

        let orgs: Value = get_as(&app, &root, "/v1/admin/orgs").await.json().await.unwrap();
        assert_eq!(orgs.as_array().unwrap().len(), 2);
        let user_org = me(&app, &user).await["org_id"].as_str().unwrap().to_owned();
        let plan = send_as(&app, Method::PATCH, &root, &format!("/v1/admin/orgs/{user_org}"), Some(json!({"plan": "team"}))).await;
        assert_eq!(plan.status(), 204);
        let org: Value = get_as(&app, &user, "/v1/org").await.json().await.unwrap();
        assert_eq!(org["plan"]["id"], "team");
        let unknown = send_as(&app, Method::PATCH, &root, &format!("/v1/admin/orgs/{user_org}"), Some(json!({"plan": "platinum"}))).await;
        problem(unknown, 404, "not_found").await;
        // Plans are the table's rows: one an operator adds is offered and taken like the others.
        db.execute(
            "INSERT INTO plans (id, name, team, member_limit, verifications_per_month, key_requests_per_minute, key_requests_per_day) \
             VALUES ('platinum', 'Platinum', TRUE, 500, 1000000, 600, 100000)",
        )
        .await;
        let page = get_as(&app, &root, "/admin").await.text().await.unwrap();
        for plan in ["free", "team", "platinum"] {
            assert!(page.contains(&format!("value=\"{plan}\"")), "{plan} is offered");
        }
        let platinum = send_as(&app, Method::PATCH, &root, &format!("/v1/admin/orgs/{user_org}"), Some(json!({"plan": "platinum"}))).await;
        assert_eq!(platinum.status(), 204);
        let org: Value = get_as(&app, &user, "/v1/org").await.json().await.unwrap();
        assert_eq!(org["plan"]["id"], "platinum");

        let users: Value = get_as(&app, &root, "/v1/admin/users").await.json().await.unwrap();
        let user_id = users.as_array().unwrap().iter().find(|u| u["email"] == "user@example.test").unwrap()["id"].as_str().unwrap().to_owned();
        let disabled = send_as(&app, Method::PATCH, &root, &format!("/v1/admin/users/{user_id}"), Some(json!({"disabled": true}))).await;
        assert_eq!(disabled.status(), 204);
        problem(get_as(&app, &user, "/v1/me").await, 401, "unauthenticated").await;
        let login = post(&app, "/v1/auth/login", json!({"email": "user@example.test", "password": PASSWORD})).await;
        problem(login, 403, "account_disabled").await;
        let enabled = send_as(&app, Method::PATCH, &root, &format!("/v1/admin/users/{user_id}"), Some(json!({"disabled": false}))).await;
        assert_eq!(enabled.status(), 204);
        let login = post(&app, "/v1/auth/login", json!({"email": "user@example.test", "password": PASSWORD})).await;
        assert_eq!(login.status(), 200);
        app.stop().await;
    }

    async fn super_admins_see_locked_users_and_unlock_them(db) {
        let app = TestApp::spawn(&db).await;
        let root = create_account(&app, &db, "unlocker@example.test").await;
        db.execute("UPDATE users SET platform_role = 'super_admin' WHERE email = 'unlocker@example.test'").await;
        enable_totp(&app, &root).await;
        let email = "locked-out@example.test";
        let user = create_account(&app, &db, email).await;
        for _ in 0..5 {
            post(&app, "/v1/auth/login", json!({"email": email, "password": "not the password at all"})).await;
        }
        problem(post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await, 423, "account_locked").await;

        let users: Value = get_as(&app, &root, "/v1/admin/users").await.json().await.unwrap();
        let entry = |users: &Value, email: &str| users.as_array().unwrap().iter().find(|u| u["email"] == email).unwrap().clone();
        let locked = entry(&users, email);
        assert!(locked["locked_until"].as_str().unwrap().ends_with('Z'), "{locked}");
        assert_eq!(entry(&users, "unlocker@example.test")["locked_until"], Value::Null);
        let user_id = locked["id"].as_str().unwrap().to_owned();
        let page = get_as(&app, &root, "/admin").await.text().await.unwrap();
        assert!(page.contains("locked until"), "{page}");
        assert!(page.contains(&format!("/admin/users/{user_id}/unlock")), "{page}");

        // Only a super-admin may unlock; an unknown id is not found.
        let path = format!("/v1/admin/users/{user_id}/unlock");
        problem(send_as(&app, Method::POST, &user, &path, None).await, 403, "super_admin_only").await;
        let nobody = format!("/v1/admin/users/{}/unlock", uuid::Uuid::now_v7());
        problem(send_as(&app, Method::POST, &root, &nobody, None).await, 404, "not_found").await;
        assert_eq!(send_as(&app, Method::POST, &root, &path, None).await.status(), 204);

        let users: Value = get_as(&app, &root, "/v1/admin/users").await.json().await.unwrap();
        assert_eq!(entry(&users, email)["locked_until"], Value::Null);
        assert_eq!(post(&app, "/v1/auth/login", json!({"email": email, "password": PASSWORD})).await.status(), 200);
        let log: Value = get_as(&app, &root, "/v1/me/audit-log").await.json().await.unwrap();
        let unlocked = log["entries"].as_array().unwrap().iter().find(|e| e["action"] == "admin.user_unlocked");
        assert!(unlocked.is_some_and(|e| e["target"] == email), "{log}");
        app.stop().await;
    }

    async fn a_members_keys_stop_when_they_leave_are_removed_or_are_disabled(db) {
        let app = TestApp::spawn(&db).await;
        let owner = team_owner(&app, &db, "keyowner@example.test").await;
        db.execute("UPDATE users SET platform_role = 'super_admin' WHERE email = 'keyowner@example.test'").await;
        let allow = send_as(&app, Method::PATCH, &owner, "/v1/org", Some(json!({"members_create_keys": true}))).await;
        assert_eq!(allow.status(), 200);
        let mut keys = Vec::new();
        let mut members = Vec::new();
        for name in ["owner", "leaver", "removed", "disabled"] {
            let session = if name == "owner" {
                owner.clone()
            } else {
                join(&app, &db, &owner, &format!("{name}@example.test"), "member").await
            };
            let created = send_as(&app, Method::POST, &session, "/v1/api-keys", Some(json!({"name": name, "scopes": ["verify"]}))).await;
            assert_eq!(created.status(), 201);
            let created: Value = created.json().await.unwrap();
            keys.push((name, created["key"].as_str().unwrap().to_owned()));
            members.push((me(&app, &session).await["id"].as_str().unwrap().to_owned(), session));
        }
        let usage = |key: &str| app.client.get(app.at("/v1/usage")).bearer_auth(key).send();
        for (name, key) in &keys {
            assert_eq!(usage(key).await.unwrap().status(), 200, "{name}");
        }

        let left = send_as(&app, Method::DELETE, &members[1].1, &format!("/v1/org/members/{}", members[1].0), None).await;
        assert_eq!(left.status(), 204);
        let removed = send_as(&app, Method::DELETE, &owner, &format!("/v1/org/members/{}", members[2].0), None).await;
        assert_eq!(removed.status(), 204);
        let disabled = send_as(&app, Method::PATCH, &owner, &format!("/v1/admin/users/{}", members[3].0), Some(json!({"disabled": true}))).await;
        assert_eq!(disabled.status(), 204);

        assert_eq!(usage(&keys[0].1).await.unwrap().status(), 200, "the owner's key still works");
        for (_, key) in &keys[1..] {
            problem(usage(key).await.unwrap(), 401, "invalid_api_key").await;
        }
        let listed: Value = get_as(&app, &owner, "/v1/api-keys").await.json().await.unwrap();
        let reason = |name: &str| listed.as_array().unwrap().iter().find(|key| key["name"] == name).unwrap()["revoked_reason"].clone();
        assert_eq!(reason("owner"), Value::Null);
        assert_eq!(reason("leaver"), "creator_left");
        assert_eq!(reason("removed"), "creator_removed");
        assert_eq!(reason("disabled"), "creator_disabled");
        let log: Value = get_as(&app, &owner, "/v1/audit-log").await.json().await.unwrap();
        let revocations = log["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "api_key.revoked").count();
        assert_eq!(revocations, 3);
        app.stop().await;
    }
}
