//! The items resource: create, fetch and list, with validation and the
//! queries behind them.
//!
//! Writes go through [`Session::query_one`](drr_core::Session::query_one),
//! which drr-core routes to the primary. Reads take a connection from
//! [`Session::replica`](drr_core::Session::replica), which picks the node by
//! the request's consistency, so that the response can name the node that
//! served it (`x-drr-node`).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use drr_core::NodeClient;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

use crate::consistency::{CONSISTENCY_HEADER, Mode, NODE_HEADER, ReadPrefs, WriteReceipt};
use crate::error::AppError;
use crate::state::AppState;

/// The longest name an item may have, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The largest quantity an item may have.
pub const MAX_QUANTITY: i32 = 1_000_000;
/// How many items a list returns unless asked.
pub const DEFAULT_LIMIT: i64 = 20;
/// The most items a list returns.
pub const MAX_LIMIT: i64 = 100;

const INSERT: &str = "INSERT INTO items (name, quantity) VALUES ($1, $2) \
     RETURNING id, name, quantity, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
const SELECT_ONE: &str = "SELECT id, name, quantity, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
     FROM items WHERE id = $1";
const SELECT_LIST: &str = "SELECT id, name, quantity, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
     FROM items ORDER BY created_at DESC, id DESC LIMIT $1";

/// An item as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Assigned by the database.
    pub id: i64,
    /// What it is.
    pub name: String,
    /// How many there are.
    pub quantity: i32,
    /// When it was created, RFC 3339 in UTC.
    pub created_at: String,
}

impl Item {
    fn from_row(row: &Row) -> Result<Self, AppError> {
        let get = |err: tokio_postgres::Error| AppError::Internal(format!("bad item row: {err}"));
        Ok(Item {
            id: row.try_get(0).map_err(get)?,
            name: row.try_get(1).map_err(get)?,
            quantity: row.try_get(2).map_err(get)?,
            created_at: row.try_get(3).map_err(get)?,
        })
    }
}

/// The body of `POST /items`.
#[derive(Debug, Clone, Deserialize)]
pub struct NewItem {
    /// 1 to 200 characters, not only whitespace; stored trimmed.
    pub name: String,
    /// 0 to 1 000 000.
    pub quantity: i32,
}

impl NewItem {
    /// Checks the input, returning it with the name trimmed.
    pub fn validate(self) -> Result<NewItem, AppError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(AppError::Invalid("name must not be empty".into()));
        }
        let chars = name.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(AppError::Invalid(format!(
                "name has {chars} characters; at most {MAX_NAME_CHARS} are allowed"
            )));
        }
        if !(0..=MAX_QUANTITY).contains(&self.quantity) {
            return Err(AppError::Invalid(format!(
                "quantity must be between 0 and {MAX_QUANTITY}, got {}",
                self.quantity
            )));
        }
        Ok(NewItem {
            name: name.to_owned(),
            quantity: self.quantity,
        })
    }
}

/// The query of `GET /items`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct ListQuery {
    /// How many items, newest first (1 to 100, default 20).
    pub limit: Option<i64>,
}

/// `POST /items`: 201 with the item, its `Location`, and the write's token
/// and time as headers and cookies.
pub async fn create(
    State(state): State<AppState>,
    prefs: ReadPrefs,
    body: Result<Json<NewItem>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(new) = body.map_err(|rejection| match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            AppError::UnsupportedMediaType(rejection.body_text())
        }
        _ => AppError::Invalid(rejection.body_text()),
    })?;
    let new = new.validate()?;
    let session = prefs.write_session(&state);
    let row = session
        .query_one(INSERT, &[&new.name, &new.quantity])
        .await?;
    let item = Item::from_row(&row)?;
    let location = HeaderValue::try_from(format!("/items/{}", item.id))
        .map_err(|err| AppError::Internal(format!("bad location header: {err}")))?;
    Ok((
        StatusCode::CREATED,
        WriteReceipt::now(session.token()),
        [(header::LOCATION, location)],
        Json(item),
    )
        .into_response())
}

/// `GET /items/{id}`: 200 with the item, or 404, from the node the request's
/// consistency picks (named in `x-drr-node`).
pub async fn get(
    State(state): State<AppState>,
    prefs: ReadPrefs,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Response, AppError> {
    let Path(id) = id.map_err(|rejection| {
        AppError::Invalid(format!(
            "item id must be an integer: {}",
            rejection.body_text()
        ))
    })?;
    let session = prefs.read_session(&state).await?;
    let client = session.replica().await?;
    let row = client
        .query_opt(SELECT_ONE, &[&id])
        .await
        .map_err(|err| AppError::postgres(client.node(), err))?;
    let served = served_by(&client, prefs.mode);
    Ok(match row {
        Some(row) => (served, Json(Item::from_row(&row)?)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            served,
            Json(serde_json::json!({ "error": format!("item {id} not found") })),
        )
            .into_response(),
    })
}

/// `GET /items?limit=N`: 200 with the newest items, from the node the
/// request's consistency picks.
pub async fn list(
    State(state): State<AppState>,
    prefs: ReadPrefs,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(query) = query.map_err(|rejection| AppError::Invalid(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::Invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    let session = prefs.read_session(&state).await?;
    let client = session.replica().await?;
    let rows = client
        .query(SELECT_LIST, &[&limit])
        .await
        .map_err(|err| AppError::postgres(client.node(), err))?;
    let items = rows
        .iter()
        .map(Item::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((served_by(&client, prefs.mode), Json(items)).into_response())
}

/// Headers naming the node that served a read and the mode it ran in.
fn served_by(client: &NodeClient, mode: Mode) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(node) = HeaderValue::from_str(client.node()) {
        headers.insert(HeaderName::from_static(NODE_HEADER), node);
    }
    headers.insert(
        HeaderName::from_static(CONSISTENCY_HEADER),
        HeaderValue::from_static(mode.as_str()),
    );
    headers
}
