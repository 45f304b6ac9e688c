#![allow(dead_code)] // shared by many test modules; each uses a part
//! The typed client of the server under test: one `TestApp` method per call the tests make, so
//! the tests say what they do (`app.roll(&owner, &key.id, None)`) instead of building requests.
//! Each returns a `Reply` read whole; its checks are synchronous and `#[track_caller]`, so a
//! failed one points at the line of the test that made it.

use crate::common::{assert_error, ids_of, key_path, keys_path, Account, CreatedKey, TestApp};
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;

/// A response: status, headers, the body as text and as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    /// Reads the whole response; a non-empty body that is not JSON fails the test, as every
    /// answer of this API is JSON.
    pub async fn read(response: Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let mut reply = Reply {
            status,
            headers,
            text,
            body: Value::Null,
        };
        if !reply.text.is_empty() {
            let content_type = reply.header("content-type");
            assert!(
                content_type.starts_with("application/json"),
                "non-JSON body ({content_type}) with {status}: {}",
                reply.text
            );
            reply.body = serde_json::from_str(&reply.text)
                .unwrap_or_else(|e| panic!("bad JSON {e}: {}", reply.text));
        }
        reply
    }

    /// The header's value, or "" when it is absent.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_owned())
            .unwrap_or_default()
    }

    /// (status, body), for tests that branch on the status.
    pub fn parts(self) -> (StatusCode, Value) {
        (self.status, self.body)
    }

    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect_status(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        self.body
    }

    #[track_caller]
    pub fn ok(self) -> Value {
        self.expect_status(StatusCode::OK)
    }

    /// Asserts a 201 with a new key (`id` and the secret `key`); returns it and the record.
    #[track_caller]
    pub fn created_key(self) -> (CreatedKey, Value) {
        let record = self.expect_status(StatusCode::CREATED);
        let key = CreatedKey {
            id: record["id"].as_str().expect("id").to_owned(),
            key: record["key"].as_str().expect("key").to_owned(),
        };
        (key, record)
    }

    /// Asserts a docs/api.md §4 error, JSON by its `Content-Type` too; returns the body.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str, reason: Option<&str>) -> Value {
        let content_type = self.header("content-type");
        assert!(
            content_type.starts_with("application/json"),
            "error {} must be JSON, got content-type {content_type:?}",
            self.status
        );
        assert_error(self.status, &self.body, status, code, reason);
        self.body.clone()
    }

    #[track_caller]
    pub fn expect_unauthorized(&self, reason: &str) -> Value {
        self.expect_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", Some(reason))
    }

    #[track_caller]
    pub fn expect_forbidden(&self, reason: &str) -> Value {
        self.expect_error(StatusCode::FORBIDDEN, "FORBIDDEN", Some(reason))
    }

    /// Asserts a 400 VALIDATION_ERROR whose `details.issues` name exactly `fields` (in any
    /// order), each with a message.
    #[track_caller]
    pub fn expect_issues(&self, fields: &[&str]) -> Value {
        let body = self.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
        let issues = body["error"]["details"]["issues"]
            .as_array()
            .unwrap_or_else(|| panic!("details.issues must be an array: {body}"));
        let mut found: Vec<&str> = issues
            .iter()
            .map(|issue| {
                assert!(
                    issue["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "every issue has a message: {body}"
                );
                issue["field"].as_str().expect("issue field")
            })
            .collect();
        found.sort_unstable();
        let mut expected = fields.to_vec();
        expected.sort_unstable();
        assert_eq!(found, expected, "issue fields; body: {body}");
        body.clone()
    }

    /// Asserts a 400 VALIDATION_ERROR with an issue about `field` (among any others); returns
    /// that issue's message.
    #[track_caller]
    pub fn expect_validation(&self, field: &str) -> String {
        let body = self.expect_error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
        let issues = body["error"]["details"]["issues"]
            .as_array()
            .unwrap_or_else(|| panic!("no issues: {body}"));
        let issue = issues
            .iter()
            .find(|i| i["field"] == field)
            .unwrap_or_else(|| panic!("no issue for {field}: {body}"));
        issue["message"].as_str().expect("message").to_owned()
    }

    /// Asserts a 403 `insufficient_scope` whose message names the missing `scope`.
    #[track_caller]
    pub fn expect_missing_scope(&self, scope: &str) {
        let body = self.expect_forbidden("insufficient_scope");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(scope), "message must name {scope}: {body}");
    }
}

impl Account {
    /// This session aimed at another workspace's routes. The typed calls take the workspace
    /// from their caller, so this is how a test knocks on a wall between workspaces.
    pub fn in_workspace(&self, workspace_id: &str) -> Account {
        Account {
            workspace_id: workspace_id.to_owned(),
            ..self.clone()
        }
    }
}

fn member_path(workspace_id: &str, user_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/members/{user_id}")
}

impl TestApp {
    /// Any request, with an optional session token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        Reply::read(self.send(method, path, token, body).await).await
    }

    /// An /api/v1 request with the key in `x-api-key`.
    pub async fn with_key(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Reply {
        Reply::read(self.send_with_key(method, path, key, body).await).await
    }

    // Sessions ------------------------------------------------------------------------------

    /// `POST /app/v1/auth/login`, whatever the outcome (`login` asserts a success).
    pub async fn try_login(&self, email: &str, password: &str) -> Reply {
        self.login_with(json!({ "email": email, "password": password }))
            .await
    }

    /// `POST /app/v1/auth/login` with `body` as given.
    pub async fn login_with(&self, body: Value) -> Reply {
        self.call(Method::POST, "/app/v1/auth/login", None, Some(body))
            .await
    }

    pub async fn logout(&self, token: Option<&str>) -> Reply {
        self.call(Method::POST, "/app/v1/auth/logout", token, None)
            .await
    }

    pub async fn session(&self, token: &str) -> Reply {
        self.call(Method::GET, "/app/v1/session", Some(token), None)
            .await
    }

    /// `POST /app/v1/session/password` with `body` as given, with or without a session.
    pub async fn change_password(&self, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, "/app/v1/session/password", token, Some(body))
            .await
    }

    /// The scopes a key may be given, with or without a session.
    pub async fn scopes(&self, token: Option<&str>) -> Reply {
        self.call(Method::GET, "/app/v1/scopes", token, None).await
    }

    pub async fn health(&self) -> Reply {
        self.call(Method::GET, "/healthz", None, None).await
    }

    pub async fn readiness(&self) -> Reply {
        self.call(Method::GET, "/readyz", None, None).await
    }

    // Workspaces and members ----------------------------------------------------------------

    pub async fn create_workspace(&self, token: &str, body: Value) -> Reply {
        self.call(Method::POST, "/app/v1/workspaces", Some(token), Some(body))
            .await
    }

    pub async fn members(&self, caller: &Account, workspace_id: &str) -> Reply {
        let path = format!("/app/v1/workspaces/{workspace_id}/members");
        self.call(Method::GET, &path, Some(&caller.token), None)
            .await
    }

    pub async fn set_role(
        &self,
        caller: &Account,
        workspace_id: &str,
        user_id: &str,
        role: impl Into<Value>,
    ) -> Reply {
        let body = json!({ "role": role.into() });
        let path = member_path(workspace_id, user_id);
        self.call(Method::PATCH, &path, Some(&caller.token), Some(body))
            .await
    }

    pub async fn remove_member(
        &self,
        caller: &Account,
        workspace_id: &str,
        user_id: &str,
    ) -> Reply {
        let path = member_path(workspace_id, user_id);
        self.call(Method::DELETE, &path, Some(&caller.token), None)
            .await
    }

    pub async fn invite(
        &self,
        caller: &Account,
        workspace_id: &str,
        email: &str,
        role: impl Into<Value>,
    ) -> Reply {
        let body = json!({ "email": email, "role": role.into() });
        let path = invitations_path(workspace_id);
        self.call(Method::POST, &path, Some(&caller.token), Some(body))
            .await
    }

    /// An invitation into the caller's workspace with `body` as given (`invite` builds it from
    /// an email and a role).
    pub async fn invite_with(&self, caller: &Account, body: Value) -> Reply {
        let path = invitations_path(&caller.workspace_id);
        self.call(Method::POST, &path, Some(&caller.token), Some(body))
            .await
    }

    pub async fn invitations(&self, caller: &Account) -> Reply {
        let path = invitations_path(&caller.workspace_id);
        self.call(Method::GET, &path, Some(&caller.token), None)
            .await
    }

    pub async fn resend_invitation(&self, caller: &Account, invitation_id: &str) -> Reply {
        let path = format!(
            "{}/{invitation_id}/resend",
            invitations_path(&caller.workspace_id)
        );
        self.call(Method::POST, &path, Some(&caller.token), None)
            .await
    }

    pub async fn cancel_invitation(&self, caller: &Account, invitation_id: &str) -> Reply {
        let path = format!("{}/{invitation_id}", invitations_path(&caller.workspace_id));
        self.call(Method::DELETE, &path, Some(&caller.token), None)
            .await
    }

    pub async fn lookup_invitation(&self, token: &str) -> Reply {
        let body = json!({ "token": token });
        self.call(Method::POST, "/app/v1/invitations/lookup", None, Some(body))
            .await
    }

    /// `POST /app/v1/invitations/accept` with `body` as given: a newcomer sends no session, a
    /// signed-in user sends theirs.
    pub async fn accept_invitation(&self, session: Option<&str>, body: Value) -> Reply {
        self.call(
            Method::POST,
            "/app/v1/invitations/accept",
            session,
            Some(body),
        )
        .await
    }

    // Password resets -----------------------------------------------------------------------

    pub async fn sign_in_options(&self) -> Reply {
        self.call(Method::GET, "/app/v1/auth/options", None, None)
            .await
    }

    pub async fn request_password_reset(&self, email: &str) -> Reply {
        let body = json!({ "email": email });
        self.call(
            Method::POST,
            "/app/v1/auth/password-reset",
            None,
            Some(body),
        )
        .await
    }

    pub async fn confirm_password_reset(&self, token: &str, password: &str) -> Reply {
        let body = json!({ "token": token, "password": password });
        let path = "/app/v1/auth/password-reset/confirm";
        self.call(Method::POST, path, None, Some(body)).await
    }

    pub async fn audit_events(&self, caller: &Account, query: &str) -> Reply {
        let path = format!(
            "/app/v1/workspaces/{}/audit-events?{query}",
            caller.workspace_id
        );
        self.call(Method::GET, &path, Some(&caller.token), None)
            .await
    }

    // API keys, as managed from the dashboard -----------------------------------------------

    /// Creates a key in the caller's workspace with `body` as given (`create_key` asserts a
    /// success with only a name).
    pub async fn new_key(&self, caller: &Account, body: Value) -> Reply {
        let path = keys_path(&caller.workspace_id);
        self.call(Method::POST, &path, Some(&caller.token), Some(body))
            .await
    }

    pub async fn key(&self, caller: &Account, key_id: &str) -> Reply {
        let path = key_path(&caller.workspace_id, key_id);
        self.call(Method::GET, &path, Some(&caller.token), None)
            .await
    }

    /// The caller's key list, with `query` (e.g. `status=all`) as the query string.
    pub async fn keys(&self, caller: &Account, query: &str) -> Reply {
        let path = format!("{}?{query}", keys_path(&caller.workspace_id));
        self.call(Method::GET, &path, Some(&caller.token), None)
            .await
    }

    /// The ids of the caller's key list with `query`; the list must be a 200.
    pub async fn key_ids(&self, caller: &Account, query: &str) -> HashSet<String> {
        let reply = self.keys(caller, query).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "list keys ?{query}: {}",
            reply.body
        );
        ids_of(&reply.body)
    }

    /// `PATCH` of a key in the caller's workspace.
    pub async fn edit_key(&self, caller: &Account, key_id: &str, body: Value) -> Reply {
        let path = key_path(&caller.workspace_id, key_id);
        self.call(Method::PATCH, &path, Some(&caller.token), Some(body))
            .await
    }

    pub async fn revoke(&self, caller: &Account, key_id: &str) -> Reply {
        let path = format!("{}/revoke", key_path(&caller.workspace_id, key_id));
        self.call(Method::POST, &path, Some(&caller.token), None)
            .await
    }

    pub async fn roll(&self, caller: &Account, key_id: &str, body: Option<Value>) -> Reply {
        let path = format!("{}/roll", key_path(&caller.workspace_id, key_id));
        self.call(Method::POST, &path, Some(&caller.token), body)
            .await
    }

    /// A key's usage, with `query` (e.g. `days=7`) as the query string.
    pub async fn usage(&self, caller: &Account, key_id: &str, query: &str) -> Reply {
        let path = format!("{}/usage?{query}", key_path(&caller.workspace_id, key_id));
        self.call(Method::GET, &path, Some(&caller.token), None)
            .await
    }

    /// The usage of every key of the caller's workspace that the caller may see.
    pub async fn workspace_usage(&self, caller: &Account, query: &str) -> Reply {
        let path = format!("/app/v1/workspaces/{}/usage?{query}", caller.workspace_id);
        self.call(Method::GET, &path, Some(&caller.token), None)
            .await
    }

    // The key-facing API ---------------------------------------------------------------------

    /// `GET /api/v1/me` with `key`.
    pub async fn me(&self, key: &str) -> Reply {
        self.with_key(Method::GET, "/api/v1/me", key, None).await
    }

    /// `GET /api/v1/verify` followed by `tail`: nothing, a query of its own (`?cost=2`), or the
    /// path and query a gateway forwards (`/orders?cost=0`).
    pub async fn verify(&self, key: &str, tail: &str) -> Reply {
        self.verify_as(Method::GET, Some(key), tail).await
    }

    /// `verify` with any method and with or without a key, as a gateway passes on whatever its
    /// client sent.
    pub async fn verify_as(&self, method: Method, key: Option<&str>, tail: &str) -> Reply {
        let mut request = self
            .client
            .request(method, self.url(&format!("/api/v1/verify{tail}")));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        Reply::read(request.send().await.expect("request")).await
    }

    pub async fn create_lead(&self, key: &str, body: Value) -> Reply {
        self.with_key(Method::POST, "/api/v1/leads", key, Some(body))
            .await
    }

    /// The key's lead list, with `query` (e.g. `pageSize=100`) as the query string.
    pub async fn leads(&self, key: &str, query: &str) -> Reply {
        let path = format!("/api/v1/leads?{query}");
        self.with_key(Method::GET, &path, key, None).await
    }

    pub async fn lead(&self, key: &str, lead_id: &str) -> Reply {
        self.with_key(Method::GET, &lead_path(lead_id), key, None)
            .await
    }

    pub async fn edit_lead(&self, key: &str, lead_id: &str, body: Value) -> Reply {
        self.with_key(Method::PATCH, &lead_path(lead_id), key, Some(body))
            .await
    }

    pub async fn delete_lead(&self, key: &str, lead_id: &str) -> Reply {
        self.with_key(Method::DELETE, &lead_path(lead_id), key, None)
            .await
    }

    /// `GET /api/v1/me` with `key` and one more header (e.g. what a browser adds).
    pub async fn me_with_header(&self, key: &str, name: &str, value: &str) -> Reply {
        let response = self
            .client
            .get(self.url("/api/v1/me"))
            .header("x-api-key", key)
            .header(name, value)
            .send()
            .await
            .expect("request");
        Reply::read(response).await
    }

    /// `POST /api/v1/credentials/revoke` as anyone may send it: no key, no session, no cookie.
    pub async fn report_leaks(&self, body: Value) -> Reply {
        let response = reqwest::Client::new()
            .post(self.url("/api/v1/credentials/revoke"))
            .json(&body)
            .send()
            .await
            .expect("request");
        Reply::read(response).await
    }

    /// `POST /api/v1/secret-scanning/github` with GitHub's signature headers (each left out
    /// when `None`).
    pub async fn github_report(
        &self,
        body: &str,
        key_identifier: Option<&str>,
        signature: Option<&str>,
    ) -> Reply {
        let mut request = reqwest::Client::new()
            .post(self.url("/api/v1/secret-scanning/github"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(identifier) = key_identifier {
            request = request.header("Github-Public-Key-Identifier", identifier);
        }
        if let Some(signature) = signature {
            request = request.header("Github-Public-Key-Signature", signature);
        }
        Reply::read(request.send().await.expect("request")).await
    }

    // Webhooks -------------------------------------------------------------------------------

    pub async fn create_webhook(&self, caller: &Account, body: Value) -> Reply {
        let path = webhooks_path(&caller.workspace_id);
        self.call(Method::POST, &path, Some(&caller.token), Some(body))
            .await
    }

    /// Registers `url` for `events` and returns (endpoint id, signing secret).
    pub async fn webhook_to(&self, caller: &Account, url: &str, events: Value) -> (String, String) {
        let body = self
            .create_webhook(caller, json!({ "url": url, "events": events }))
            .await
            .expect_status(StatusCode::CREATED);
        (
            body["id"].as_str().expect("id").to_owned(),
            body["secret"].as_str().expect("secret").to_owned(),
        )
    }

    pub async fn webhooks(&self, caller: &Account) -> Reply {
        let path = webhooks_path(&caller.workspace_id);
        self.call(Method::GET, &path, Some(&caller.token), None)
            .await
    }

    pub async fn webhook(&self, caller: &Account, id: &str) -> Reply {
        let path = webhook_path(&caller.workspace_id, id);
        self.call(Method::GET, &path, Some(&caller.token), None)
            .await
    }

    pub async fn edit_webhook(&self, caller: &Account, id: &str, body: Value) -> Reply {
        let path = webhook_path(&caller.workspace_id, id);
        self.call(Method::PATCH, &path, Some(&caller.token), Some(body))
            .await
    }

    pub async fn delete_webhook(&self, caller: &Account, id: &str) -> Reply {
        let path = webhook_path(&caller.workspace_id, id);
        self.call(Method::DELETE, &path, Some(&caller.token), None)
            .await
    }

    pub async fn roll_webhook_secret(&self, caller: &Account, id: &str) -> Reply {
        let path = format!("{}/secret", webhook_path(&caller.workspace_id, id));
        self.call(Method::POST, &path, Some(&caller.token), None)
            .await
    }

    pub async fn deliveries(&self, caller: &Account, id: &str, query: &str) -> Reply {
        let path = format!(
            "{}/deliveries?{query}",
            webhook_path(&caller.workspace_id, id)
        );
        self.call(Method::GET, &path, Some(&caller.token), None)
            .await
    }

    pub async fn retry_delivery(&self, caller: &Account, id: &str, message_id: &str) -> Reply {
        let path = format!(
            "{}/deliveries/{message_id}/retry",
            webhook_path(&caller.workspace_id, id)
        );
        self.call(Method::POST, &path, Some(&caller.token), None)
            .await
    }
}

pub fn invitations_path(workspace_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/invitations")
}

pub fn lead_path(lead_id: &str) -> String {
    format!("/api/v1/leads/{lead_id}")
}

pub fn webhooks_path(workspace_id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/webhooks")
}

pub fn webhook_path(workspace_id: &str, id: &str) -> String {
    format!("/app/v1/workspaces/{workspace_id}/webhooks/{id}")
}
