//! The workspace audit log: what is recorded, by whom and from where; who may read it; newest
//! first and paged by cursor; never a secret; a failed sign-in belongs to the account, not to
//! any workspace; and event ids that tell nothing about other tenants.

use crate::common::{
    count, keys_path, ms, now_ms, sleep_past, wait_for_audit, CreatedKey, TestApp,
};
use crate::on_both_databases;
use crate::test_app::Reply;
use heffl_api::domain::time::Timestamp;
use reqwest::header::USER_AGENT;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_databases!(
    audit_log_records_actions_and_paginates,
    audit_log_newest_first_holds_for_late_noticed_expiry,
    audit_event_ids_are_not_sequential,
);

fn audit_path(workspace_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/audit-events")
}

async fn audit_log_records_actions_and_paginates(app: TestApp) {
    const AGENT: &str = "audit-test-agent/1.0";
    const PROBER: &str = "login-prober/2.0";
    let owner = app.bootstrap("Audit", "owner@audit.test").await;
    let admin = app.add_member(&owner, "admin@audit.test", "admin").await;
    let member = app.add_member(&owner, "member@audit.test", "member").await;
    let viewer = app.add_member(&owner, "viewer@audit.test", "viewer").await;
    let leaver = app.add_member(&owner, "leaver@audit.test", "member").await;
    let stranger = app.bootstrap("Elsewhere", "owner@elsewhere.test").await;
    let elsewhere_key = app.create_key(&stranger, "not ours").await;

    let response = app
        .client
        .post(app.url(&keys_path(&owner.workspace_id)))
        .bearer_auth(&owner.token)
        .header(USER_AGENT, AGENT)
        .json(&json!({ "name": "audited" }))
        .send()
        .await
        .expect("request");
    let body = Reply::read(response)
        .await
        .expect_status(StatusCode::CREATED);
    let audited = CreatedKey {
        id: body["id"].as_str().expect("id").to_owned(),
        key: body["key"].as_str().expect("key").to_owned(),
    };
    let members_key = app.create_key(&member, "member's").await;
    app.revoke(&owner, &audited.id).await.ok();
    let ws = &owner.workspace_id;
    app.set_role(&owner, ws, &viewer.user_id, "member")
        .await
        .ok();
    app.set_role(&owner, ws, &viewer.user_id, "viewer")
        .await
        .ok();
    app.remove_member(&owner, ws, &leaver.user_id)
        .await
        .expect_status(StatusCode::NO_CONTENT);
    let body = app
        .create_workspace(&owner.token, json!({ "name": "Second" }))
        .await
        .expect_status(StatusCode::CREATED);
    let second_workspace = body["id"].as_str().expect("id").to_owned();

    let wrong_password = format!("{}-wrong", member.password);
    let response = app
        .client
        .post(app.url("/app/v1/auth/login"))
        .header(USER_AGENT, PROBER)
        .json(&json!({ "email": member.email, "password": wrong_password }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    wait_for_audit(&app, "auth.login_failed", &member.user_id).await;

    // Who may read it.
    for (account, allowed) in [
        (&owner, true),
        (&admin, true),
        (&member, false),
        (&viewer, false),
    ] {
        let reply = app.audit_events(account, "").await;
        if allowed {
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{}: {}",
                account.email,
                reply.body
            );
        } else {
            reply.expect_forbidden("insufficient_permission");
        }
    }
    app.audit_events(&stranger.in_workspace(ws), "")
        .await
        .expect_forbidden("workspace_mismatch");
    // Raw: no session at all, which the typed calls always send.
    let response = app.send(Method::GET, &audit_path(ws), None, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A key never opens /app/v1.
    let response = app
        .client
        .get(app.url(&audit_path(ws)))
        .header("x-api-key", &members_key.key)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The whole log, newest first.
    let raw = app.audit_events(&owner, "limit=200").await.text;
    let full: Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(full["nextCursor"], Value::Null, "{full}");
    let events = full["items"].as_array().expect("items").clone();
    let stored = count(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE workspace_id = $1",
        &[ws],
    )
    .await;
    assert_eq!(events.len() as i64, stored, "{full}");
    let returned: Vec<&str> = events
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    let stored_order: Vec<String> =
        sqlx::query_scalar("SELECT id FROM audit_events WHERE workspace_id = $1 ORDER BY seq DESC")
            .bind(ws)
            .fetch_all(app.raw_db())
            .await
            .expect("audit ids");
    assert_eq!(returned, stored_order, "not newest first");
    let times: Vec<i64> = events.iter().map(|e| ms(&e["at"])).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "times not newest first"
    );
    let find = |action: &str, target: &str| {
        events
            .iter()
            .find(|e| e["action"] == action && e["target"]["id"] == target)
            .unwrap_or_else(|| panic!("no {action} on {target}: {full}"))
            .clone()
    };
    let created_event = find("api_key.created", &audited.id);
    assert_eq!(
        created_event["actor"],
        json!({ "type": "user", "id": owner.user_id })
    );
    assert_eq!(created_event["target"]["type"], "api_key");
    assert_eq!(created_event["userAgent"], AGENT);
    assert_eq!(created_event["ip"], "127.0.0.1");
    assert_eq!(created_event["details"]["name"], "audited");
    let revoked_event = find("api_key.revoked", &audited.id);
    assert_eq!(revoked_event["actor"]["id"], owner.user_id.as_str());
    let position = |event: &Value| events.iter().position(|e| e == event).expect("pos");
    // Newest first: the revocation is listed before the creation it follows.
    assert!(position(&revoked_event) < position(&created_event));
    for who in [&admin, &member, &viewer, &leaver] {
        find("member.added", &who.user_id);
    }
    let role_changes = events
        .iter()
        .filter(|e| e["action"] == "member.role_changed" && e["target"]["id"] == viewer.user_id)
        .count();
    assert_eq!(role_changes, 2);
    find("member.removed", &leaver.user_id);
    find("api_key.created", &members_key.id);
    // A failed sign-in belongs to the account, not to the workspace (docs/api.md §10): recorded once,
    // with where it came from, and shown to no workspace's owners.
    assert!(
        !events.iter().any(|e| e["action"] == "auth.login_failed"),
        "a member's failed sign-in leaked into the workspace log: {full}"
    );
    let (workspace, agent, ip): (Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT workspace_id, user_agent, ip FROM audit_events \
             WHERE action = 'auth.login_failed' AND target_id = $1",
    )
    .bind(&member.user_id)
    .fetch_one(app.raw_db())
    .await
    .expect("one failed sign-in event");
    assert_eq!(workspace, None);
    assert_eq!(agent.as_deref(), Some(PROBER));
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    for event in &events {
        assert!(
            event["at"].is_string() && event["actor"]["type"].is_string(),
            "{event}"
        );
        assert!(
            event.get("ip").is_some() && event.get("userAgent").is_some(),
            "{event}"
        );
    }
    assert!(
        !events.iter().any(|e| e["target"]["id"] == elsewhere_key.id),
        "another workspace's event leaked in"
    );
    // The new workspace has its own log, which starts with its creation.
    let second_events = count(
        &app,
        "SELECT COUNT(*) FROM audit_events WHERE workspace_id = $1 AND action = 'workspace.created'",
        &[&second_workspace],
    )
    .await;
    assert_eq!(second_events, 1);
    assert!(!events.iter().any(|e| e["action"] == "workspace.created"));

    // Pages of two, following nextCursor, see every event exactly once, in the same order.
    let mut paged: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages_text = String::new();
    for _ in 0..=events.len() {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".to_owned(),
        };
        let reply = app.audit_events(&admin, &query).await;
        assert_eq!(reply.status, StatusCode::OK);
        pages_text.push_str(&reply.text);
        let page = reply.body;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2, "{page}");
        paged.extend(
            items
                .iter()
                .map(|e| e["id"].as_str().expect("id").to_owned()),
        );
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "pagination did not end");
    let all_ids: Vec<String> = events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(paged, all_ids);

    // Never a secret: no key, password or session token in anything the log returns.
    let secrets = [
        audited.key.as_str(),
        members_key.key.as_str(),
        elsewhere_key.key.as_str(),
        owner.password.as_str(),
        member.password.as_str(),
        wrong_password.as_str(),
        owner.token.as_str(),
        member.token.as_str(),
    ];
    for secret in secrets {
        assert!(!raw.contains(secret), "the audit log shows a secret");
        assert!(!pages_text.contains(secret), "the audit log shows a secret");
    }

    // Bad input is a 400 naming the parameter.
    for (query, field) in [
        ("cursor=garbage", "cursor"),
        ("cursor=evt_abc", "cursor"),
        ("cursor=evt_0", "cursor"),
        ("cursor=evt_-3", "cursor"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
    ] {
        app.audit_events(&owner, query)
            .await
            .expect_validation(field);
    }
}

/// An expiry noticed after other events must not be listed first with an older time.
async fn audit_log_newest_first_holds_for_late_noticed_expiry(app: TestApp) {
    let owner = app.bootstrap("Late", "owner@late.test").await;
    let at = Timestamp(now_ms() + 2_000);
    let (short, _) = app
        .new_key(
            &owner,
            json!({ "name": "short", "expiresAt": at.to_rfc3339() }),
        )
        .await
        .created_key();
    sleep_past(at.0).await;
    app.create_key(&owner, "made after the expiry").await;
    app.me(&short.key)
        .await
        .expect_unauthorized("expired_api_key");
    wait_for_audit(&app, "api_key.expired", &short.id).await;
    let page = app.audit_events(&owner, "limit=200").await.ok();
    let times: Vec<i64> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| ms(&e["at"]))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "listed newest first by position but not by `at`: {page}"
    );
}

/// Event ids are public; a global counter tells every tenant how busy the others are.
async fn audit_event_ids_are_not_sequential(app: TestApp) {
    let owner = app.bootstrap("Ids", "owner@ids.test").await;
    app.create_key(&owner, "one").await;
    let page = app.audit_events(&owner, "").await.ok();
    for event in page["items"].as_array().expect("items") {
        let id = event["id"].as_str().expect("id");
        let suffix = id.strip_prefix("evt_").unwrap_or(id);
        assert!(
            !suffix.bytes().all(|b| b.is_ascii_digit()),
            "sequential event id {id}"
        );
    }
}
