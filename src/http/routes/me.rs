use crate::error::ApiError;
use crate::http::extract::Json;
use crate::http::Principal;
use crate::scopes::Scope;
use serde_json::{json, Value};

pub async fn me(principal: Principal) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::MeRead)?;
    Ok(Json(json!({
        "workspace": { "id": principal.workspace_id, "name": principal.workspace_name },
        "user": {
            "id": principal.user.id,
            "email": principal.user.email,
            "name": principal.user.name,
            "role": principal.role,
        },
        "apiKey": { "id": principal.key_id, "name": principal.key_name },
    })))
}
