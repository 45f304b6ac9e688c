//! The leads API (/api/v1/leads) as integrators call it: shapes, pagination, validation,
//! partial updates, and the docs/api.md §6 role rules and data boundaries.

use crate::common::{assert_error, assert_timestamp, Account, CreatedKey, TestApp};
use crate::on_both_databases;
use crate::test_app::{lead_path, Reply};
use reqwest::StatusCode;
use serde_json::{json, Value};

type LeadRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
);

/// Every lead in the database, ordered by id: (id, workspace_id, name, email, mobile, title,
/// owner_id, created_at, updated_at).
async fn all_leads(app: &TestApp) -> Vec<LeadRow> {
    sqlx::query_as(
        "SELECT id, workspace_id, name, email, mobile, title, owner_id, created_at, updated_at \
         FROM leads ORDER BY id",
    )
    .fetch_all(app.raw_db())
    .await
    .expect("leads")
}

async fn lead_row(app: &TestApp, id: &str) -> Option<LeadRow> {
    all_leads(app).await.into_iter().find(|row| row.0 == id)
}

/// docs/api.md §5: a lead has exactly these fields, absent values as `null`.
#[track_caller]
fn assert_lead_shape(lead: &Value) {
    let mut fields: Vec<&str> = lead
        .as_object()
        .unwrap_or_else(|| panic!("lead is not an object: {lead}"))
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "createdAt",
            "email",
            "id",
            "mobile",
            "name",
            "ownerId",
            "title",
            "updatedAt"
        ],
        "{lead}"
    );
    let id = lead["id"].as_str().expect("id");
    assert!(
        id.starts_with("ld_") && id.len() > 10,
        "not a prefixed random id: {id}"
    );
    assert_timestamp(&lead["createdAt"], "createdAt");
    assert_timestamp(&lead["updatedAt"], "updatedAt");
}

fn issue_fields(body: &Value) -> Vec<String> {
    body["error"]["details"]["issues"]
        .as_array()
        .unwrap_or_else(|| panic!("no details.issues: {body}"))
        .iter()
        .map(|issue| {
            assert!(
                issue["message"].as_str().is_some_and(|m| !m.is_empty()),
                "issue without a message: {issue}"
            );
            issue["field"].as_str().expect("field").to_owned()
        })
        .collect()
}

async fn create(app: &TestApp, key: &str, body: Value) -> Value {
    let Reply {
        status, body: lead, ..
    } = app.create_lead(key, body).await;
    assert_eq!(status, StatusCode::CREATED, "{lead}");
    lead
}

fn id_of(lead: &Value) -> String {
    lead["id"].as_str().expect("id").to_owned()
}

async fn owner_with_key(app: &TestApp) -> (Account, CreatedKey) {
    let owner = app.bootstrap("Acme", "owner@acme.test").await;
    let key = app.create_key(&owner, "integration").await;
    (owner, key)
}

async fn create_and_read_the_docs_example(app: TestApp) {
    let (owner, key) = owner_with_key(&app).await;
    let example = json!({
        "name": "Jane Smith",
        "email": "jane@example.com",
        "mobile": "+1234567890",
        "title": "Product Demo Request",
    });
    let lead = create(&app, &key.key, example).await;
    assert_lead_shape(&lead);
    assert_eq!(lead["name"], "Jane Smith");
    assert_eq!(lead["email"], "jane@example.com");
    assert_eq!(lead["mobile"], "+1234567890");
    assert_eq!(lead["title"], "Product Demo Request");
    assert_eq!(lead["ownerId"], owner.user_id.as_str());
    assert_eq!(lead["createdAt"], lead["updatedAt"]);
    let id = id_of(&lead);
    let row = lead_row(&app, &id).await.expect("row");
    assert_eq!(row.1, owner.workspace_id);
    assert_eq!(
        (
            row.2.as_str(),
            row.3.as_deref(),
            row.4.as_deref(),
            row.5.as_deref(),
            row.6.as_str()
        ),
        (
            "Jane Smith",
            Some("jane@example.com"),
            Some("+1234567890"),
            Some("Product Demo Request"),
            owner.user_id.as_str()
        )
    );

    // Optional fields left out come back as explicit nulls; text is trimmed.
    let minimal = create(&app, &key.key, json!({ "name": "  Only A Name  " })).await;
    assert_lead_shape(&minimal);
    assert_eq!(minimal["name"], "Only A Name");
    for field in ["email", "mobile", "title"] {
        assert_eq!(minimal.get(field), Some(&Value::Null), "{field}: {minimal}");
    }
    let row = lead_row(&app, &id_of(&minimal)).await.expect("row");
    assert_eq!((row.3, row.4, row.5), (None, None, None));

    // The integrator docs send Content-Type: application/json on GETs, with no body; raw, for
    // that header.
    for path in [lead_path(&id), "/api/v1/leads".to_owned()] {
        let response = app
            .client
            .get(app.url(&path))
            .header("x-api-key", &key.key)
            .header("content-type", "application/json")
            .send()
            .await
            .expect("request");
        let Reply { status, body, .. } = Reply::read(response).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        if path.ends_with(&id) {
            assert_eq!(body, lead, "GET returns what POST returned");
        } else {
            assert_eq!(body["meta"]["total"], 2);
            assert_eq!(body["items"][1], lead);
        }
    }
}

async fn list_pages_newest_first(app: TestApp) {
    let (_, key) = owner_with_key(&app).await;
    let mut ids = Vec::new();
    for n in 0..25 {
        ids.push(id_of(
            &create(&app, &key.key, json!({ "name": format!("Lead {n:02}") })).await,
        ));
    }
    // Leads made within one millisecond have no defined order; spread their times apart so
    // "newest first" is observable.
    for (n, id) in ids.iter().enumerate() {
        sqlx::query("UPDATE leads SET created_at = $1 WHERE id = $2")
            .bind(1_700_000_000_000_i64 + n as i64 * 1_000)
            .bind(id)
            .execute(app.raw_db())
            .await
            .expect("spread created_at");
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let page = |query: &str| {
        let app = &app;
        let key = key.key.clone();
        let query = query.to_owned();
        async move {
            let reply = app.leads(&key, &query).await;
            assert_eq!(reply.status, StatusCode::OK, "?{query}: {}", reply.body);
            let body = reply.body;
            let items: Vec<String> = body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|item| {
                    assert_lead_shape(item);
                    id_of(item)
                })
                .collect();
            (items, body["meta"].clone())
        }
    };

    let (items, meta) = page("").await;
    assert_eq!(
        meta,
        json!({ "count": 20, "total": 25, "pageNo": 1, "pageSize": 20 })
    );
    assert_eq!(items, newest_first[..20]);
    let (items, meta) = page("pageNo=2").await;
    assert_eq!(
        meta,
        json!({ "count": 5, "total": 25, "pageNo": 2, "pageSize": 20 })
    );
    assert_eq!(items, newest_first[20..]);

    let mut seen = Vec::new();
    for page_no in 1..=3 {
        let (items, meta) = page(&format!("pageNo={page_no}&pageSize=10")).await;
        let count = if page_no == 3 { 5 } else { 10 };
        assert_eq!(
            meta,
            json!({ "count": count, "total": 25, "pageNo": page_no, "pageSize": 10 })
        );
        seen.extend(items);
    }
    assert_eq!(seen, newest_first, "pages overlap or skip");
    let (items, meta) = page("pageNo=4&pageSize=10").await;
    assert!(items.is_empty());
    assert_eq!(
        meta,
        json!({ "count": 0, "total": 25, "pageNo": 4, "pageSize": 10 })
    );
    let (items, meta) = page("pageSize=100").await;
    assert_eq!(items, newest_first);
    assert_eq!(meta["pageSize"], 100);

    for (query, fields) in [
        ("pageSize=101", vec!["pageSize"]),
        ("pageSize=0", vec!["pageSize"]),
        ("pageSize=-1", vec!["pageSize"]),
        ("pageSize=abc", vec!["pageSize"]),
        ("pageSize=", vec!["pageSize"]),
        ("pageSize=2.5", vec!["pageSize"]),
        ("pageNo=0", vec!["pageNo"]),
        ("pageNo=-3", vec!["pageNo"]),
        ("pageNo=first", vec!["pageNo"]),
        ("pageNo=0&pageSize=500", vec!["pageNo", "pageSize"]),
    ] {
        let body = app.leads(&key.key, query).await.expect_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            None,
        );
        assert_eq!(issue_fields(&body), fields, "?{query}: {body}");
    }
}

async fn create_validation(app: TestApp) {
    let (_, key) = owner_with_key(&app).await;
    let long = "x".repeat(201);
    let cases = [
        (json!({}), vec!["name"]),
        (json!({ "email": "jane@example.com" }), vec!["name"]),
        (json!({ "name": "" }), vec!["name"]),
        (json!({ "name": "   " }), vec!["name"]),
        (json!({ "name": null }), vec!["name"]),
        (json!({ "name": 7 }), vec!["name"]),
        (
            json!({ "name": "Jane", "email": "jane.example.com" }),
            vec!["email"],
        ),
        (
            json!({ "name": "Jane", "email": "jane@localhost" }),
            vec!["email"],
        ),
        (
            json!({ "name": "Jane", "mobile": "call me" }),
            vec!["mobile"],
        ),
        (json!({ "name": "Jane", "mobile": "12" }), vec!["mobile"]),
        (
            json!({ "name": "Jane", "mobile": "1".repeat(33) }),
            vec!["mobile"],
        ),
        (json!({ "name": long }), vec!["name"]),
        (json!({ "name": "Jane", "title": long }), vec!["title"]),
        (
            json!({ "name": "Jane", "email": format!("{}@example.com", "j".repeat(250)) }),
            vec!["email"],
        ),
        (
            json!({ "name": "Jane", "title": "two\nlines" }),
            vec!["title"],
        ),
        (
            json!({ "name": "Jane", "company": "Acme" }),
            vec!["company"],
        ),
        (
            json!({ "name": "Jane", "ownerId": "usr_someoneElse" }),
            vec!["ownerId"],
        ),
        (
            json!({ "name": " ", "email": "nope", "mobile": "x", "title": long }),
            vec!["name", "email", "mobile", "title"],
        ),
    ];
    for (body, fields) in cases {
        let Reply {
            status,
            body: response,
            ..
        } = app.create_lead(&key.key, body.clone()).await;
        assert_error(
            status,
            &response,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            None,
        );
        assert_eq!(issue_fields(&response), fields, "{body}: {response}");
    }
    assert!(
        all_leads(&app).await.is_empty(),
        "a refused create wrote a lead"
    );

    // The limits are inclusive.
    let edge = create(
        &app,
        &key.key,
        json!({ "name": "n".repeat(200), "title": "t".repeat(200), "mobile": "+1 (234) 567-890" }),
    )
    .await;
    assert_eq!(edge["name"].as_str().map(str::len), Some(200));
    assert_eq!(all_leads(&app).await.len(), 1);
}

async fn patch_and_delete(app: TestApp) {
    let (_, key) = owner_with_key(&app).await;
    let lead = create(
        &app,
        &key.key,
        json!({ "name": "Jane Smith", "email": "jane@example.com", "mobile": "+1234567890",
                "title": "Product Demo Request" }),
    )
    .await;
    let id = id_of(&lead);
    // Move the stored times into the past so an update is visible at millisecond resolution.
    sqlx::query("UPDATE leads SET created_at = created_at - 60000, updated_at = updated_at - 60000 WHERE id = $1")
        .bind(&id)
        .execute(app.raw_db())
        .await
        .expect("age lead");
    let before = lead_row(&app, &id).await.expect("row");

    let Reply {
        status,
        body: updated,
        ..
    } = app
        .edit_lead(&key.key, &id, json!({ "title": "  Renewal " }))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_lead_shape(&updated);
    assert_eq!(updated["title"], "Renewal");
    assert_eq!(updated["name"], "Jane Smith");
    assert_eq!(updated["email"], "jane@example.com");
    assert_eq!(updated["mobile"], "+1234567890");
    let after = lead_row(&app, &id).await.expect("row");
    assert_eq!(after.7, before.7, "createdAt changed");
    assert!(after.8 > before.8, "updatedAt did not move");
    assert_ne!(updated["updatedAt"], updated["createdAt"]);
    assert_eq!(
        (
            after.2.as_str(),
            after.3.as_deref(),
            after.4.as_deref(),
            after.5.as_deref()
        ),
        (
            "Jane Smith",
            Some("jane@example.com"),
            Some("+1234567890"),
            Some("Renewal")
        )
    );

    // null clears an optional field, and only that one.
    let Reply {
        status,
        body: cleared,
        ..
    } = app.edit_lead(&key.key, &id, json!({ "email": null })).await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["email"], Value::Null);
    assert_eq!(cleared["mobile"], "+1234567890");
    assert_eq!(cleared["title"], "Renewal");
    let row = lead_row(&app, &id).await.expect("row");
    assert_eq!(
        (row.3.as_deref(), row.4.as_deref()),
        (None, Some("+1234567890"))
    );

    let Reply {
        status,
        body: renamed,
        ..
    } = app
        .edit_lead(
            &key.key,
            &id,
            json!({ "name": "Jane Doe", "mobile": null, "title": null, "email": "jd@example.com" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(
        (
            &renamed["name"],
            &renamed["email"],
            &renamed["mobile"],
            &renamed["title"]
        ),
        (
            &json!("Jane Doe"),
            &json!("jd@example.com"),
            &Value::Null,
            &Value::Null
        )
    );

    // A bad update changes nothing; name may not be cleared.
    let stored = lead_row(&app, &id).await.expect("row");
    for (body, fields) in [
        (json!({ "name": null }), vec!["name"]),
        (json!({ "name": "" }), vec!["name"]),
        (json!({ "email": "bad", "title": "ok" }), vec!["email"]),
        (json!({ "nickname": "JD" }), vec!["nickname"]),
        (json!({ "ownerId": "usr_x" }), vec!["ownerId"]),
    ] {
        let Reply {
            status,
            body: response,
            ..
        } = app.edit_lead(&key.key, &id, body.clone()).await;
        assert_error(
            status,
            &response,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            None,
        );
        assert_eq!(issue_fields(&response), fields, "{body}: {response}");
        assert_eq!(
            lead_row(&app, &id).await.as_ref(),
            Some(&stored),
            "{body} changed the lead"
        );
    }

    let response = app.delete_lead(&key.key, &id).await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert!(response.text.is_empty());
    assert!(lead_row(&app, &id).await.is_none(), "DELETE left the row");
    for (case, reply) in [
        ("GET", app.lead(&key.key, &id).await),
        (
            "PATCH",
            app.edit_lead(&key.key, &id, json!({ "name": "ghost" }))
                .await,
        ),
        ("DELETE", app.delete_lead(&key.key, &id).await),
    ] {
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{case}: {}",
            reply.body
        );
        reply.expect_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    }
    for unknown in ["ld_doesNotExist000000000", "key_x", "42"] {
        let Reply {
            status,
            body: response,
            ..
        } = app.lead(&key.key, unknown).await;
        assert_error(status, &response, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    }
    assert!(all_leads(&app).await.is_empty());
}

struct Actor {
    account: Account,
    key: String,
}

async fn actor(app: &TestApp, owner: &Account, email: &str, role: &str) -> Actor {
    let account = app.add_member(owner, email, role).await;
    let key = app.create_key(&account, &format!("{role} key")).await.key;
    Actor { account, key }
}

#[track_caller]
fn assert_forbidden(status: StatusCode, body: &Value, reason: &str) {
    assert_error(
        status,
        body,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        Some(reason),
    );
}

async fn roles_and_data_boundaries(app: TestApp) {
    let (owner_account, owner_key) = owner_with_key(&app).await;
    let owner = Actor {
        key: owner_key.key,
        account: owner_account.clone(),
    };
    let admin = actor(&app, &owner_account, "admin@acme.test", "admin").await;
    let member = actor(&app, &owner_account, "member@acme.test", "member").await;
    let colleague = actor(&app, &owner_account, "colleague@acme.test", "member").await;
    let viewer = actor(&app, &owner_account, "viewer@acme.test", "viewer").await;

    let owners_lead = id_of(&create(&app, &owner.key, json!({ "name": "Owner's lead" })).await);
    let admins_lead = id_of(&create(&app, &admin.key, json!({ "name": "Admin's lead" })).await);
    let colleagues_lead =
        id_of(&create(&app, &colleague.key, json!({ "name": "Colleague's lead" })).await);
    let members = create(&app, &member.key, json!({ "name": "Member's lead" })).await;
    assert_eq!(
        members["ownerId"],
        member.account.user_id.as_str(),
        "owned by the key's user"
    );
    let members_lead = id_of(&members);

    let listed = |actor: &Actor| {
        let app = &app;
        let key = actor.key.clone();
        async move {
            let Reply { status, body, .. } = app.leads(&key, "").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let mut ids: Vec<String> = body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(id_of)
                .collect();
            ids.sort();
            (ids, body["meta"]["total"].as_i64().expect("total"))
        }
    };
    let mut everything = vec![
        owners_lead.clone(),
        admins_lead.clone(),
        colleagues_lead.clone(),
        members_lead.clone(),
    ];
    everything.sort();
    for who in [&owner, &admin, &viewer] {
        assert_eq!(
            listed(who).await,
            (everything.clone(), 4),
            "{}",
            who.account.email
        );
        for id in &everything {
            let Reply { status, body, .. } = app.lead(&who.key, id).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{} reads {id}: {body}",
                who.account.email
            );
        }
    }
    assert_eq!(listed(&member).await, (vec![members_lead.clone()], 1));
    assert_eq!(listed(&colleague).await, (vec![colleagues_lead.clone()], 1));

    // Member: only their own records, and the refusals change nothing.
    let Reply { status, body, .. } = app.lead(&member.key, &members_lead).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for other in [&owners_lead, &colleagues_lead, &admins_lead] {
        let before = all_leads(&app).await;
        let Reply { status, body, .. } = app.lead(&member.key, other).await;
        assert_forbidden(status, &body, "outside_data_boundary");
        assert!(
            !body.to_string().contains("'s lead"),
            "a refusal shows the record: {body}"
        );
        let Reply { status, body, .. } = app
            .edit_lead(&member.key, other, json!({ "name": "Mine now" }))
            .await;
        assert_forbidden(status, &body, "outside_data_boundary");
        let Reply { status, body, .. } = app.delete_lead(&member.key, other).await;
        assert_forbidden(status, &body, "outside_data_boundary");
        assert_eq!(
            all_leads(&app).await,
            before,
            "a refused member write changed the leads"
        );
    }
    let Reply { status, body, .. } = app
        .edit_lead(&member.key, &members_lead, json!({ "title": "Qualified" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["title"], "Qualified");

    // Viewer: reads everything, writes nothing.
    let before = all_leads(&app).await;
    let Reply { status, body, .. } = app
        .create_lead(&viewer.key, json!({ "name": "Nope" }))
        .await;
    assert_forbidden(status, &body, "insufficient_permission");
    for id in &everything {
        let Reply { status, body, .. } = app
            .edit_lead(&viewer.key, id, json!({ "name": "Nope" }))
            .await;
        assert_forbidden(status, &body, "insufficient_permission");
        let Reply { status, body, .. } = app.delete_lead(&viewer.key, id).await;
        assert_forbidden(status, &body, "insufficient_permission");
    }
    assert_eq!(
        all_leads(&app).await,
        before,
        "a refused viewer write changed the leads"
    );

    // Owner and admin modify anyone's leads.
    for (who, target) in [(&owner, &members_lead), (&admin, &owners_lead)] {
        let Reply { status, body, .. } = app
            .edit_lead(
                &who.key,
                target,
                json!({ "title": format!("by {}", who.account.email) }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let row = lead_row(&app, target).await.expect("row");
        assert_eq!(row.5, Some(format!("by {}", who.account.email)));
        assert_ne!(
            row.6, who.account.user_id,
            "an update must not change the owner"
        );
    }
    for (who, target) in [(&admin, &colleagues_lead), (&owner, &admins_lead)] {
        let response = app.delete_lead(&who.key, target).await;
        assert_eq!(response.status, StatusCode::NO_CONTENT);
        assert!(lead_row(&app, target).await.is_none());
    }
    let response = app.delete_lead(&member.key, &members_lead).await;
    assert_eq!(
        response.status,
        StatusCode::NO_CONTENT,
        "a member deletes their own lead"
    );
    let remaining: Vec<String> = all_leads(&app).await.into_iter().map(|row| row.0).collect();
    assert_eq!(remaining, vec![owners_lead]);
}

on_both_databases!(
    create_and_read_the_docs_example,
    list_pages_newest_first,
    create_validation,
    patch_and_delete,
    roles_and_data_boundaries,
);
