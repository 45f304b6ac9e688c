//! The scopes a key may be created with here: the built-in ones and the deployment's
//! `HEFFL_EXTRA_SCOPES`, for the page's create dialog.

use crate::domain::scopes::Scope;
use crate::error::ApiError;
use crate::http::auth::session::SessionUser;
use crate::http::pipeline::extract::ApiJson;
use crate::http::pipeline::openapi::{ErrorBody, ServerErrors};
use crate::http::state::AppState;
use axum::extract::State;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScopeList {
    items: Vec<ScopeInfo>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeInfo {
    name: String,
    description: String,
    /// false for the deployment's extra scopes (other services', for forward auth).
    built_in: bool,
}

#[utoipa::path(
    get,
    path = "/scopes",
    tag = "dashboard",
    operation_id = "listScopes",
    summary = "The scopes keys may be created with: built-in, then this deployment's extra ones",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every scope", body = ScopeList),
        (status = 401, description = "No valid session", body = ErrorBody),
        ServerErrors,
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _session: SessionUser,
) -> Result<ApiJson<ScopeList>, ApiError> {
    let built_in = Scope::ALL.iter().map(|scope| ScopeInfo {
        name: scope.as_str().to_owned(),
        description: scope.description().to_owned(),
        built_in: true,
    });
    let extra = state.config.extra_scopes.iter().map(|name| ScopeInfo {
        name: name.to_owned(),
        description: "A scope of another service of this deployment, checked by its gateway."
            .to_owned(),
        built_in: false,
    });
    Ok(ApiJson(ScopeList {
        items: built_in.chain(extra).collect(),
    }))
}
