//! The subset of Toxiproxy's HTTP API drr serves, so that a test suite's
//! Toxiproxy client (toxiproxy-python, noxious-client, Go's, Node's) drives
//! a stack's faults: list proxies, add, read, update and remove toxics,
//! reset. Proxies are the spec's links; they cannot be created or
//! deleted over the API (the spec declares them).
//!
//! What the API changes it writes to the toxics file, so that `cargo xtask
//! net` shows it and it survives `down`/`up` like a change made there.
//! HTTP is spoken minimally: one request per connection, then close.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::daemon::{Senders, apply};
use super::files::{Config, LinkToxics, NetDir};
use super::toxic::Toxic;

/// The Toxiproxy version whose API this subset follows.
const VERSION: &str = "2.9.0";
/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// What every request handler shares.
struct Shared {
    config: Config,
    senders: Senders,
    net: NetDir,
    /// Serializes changes: read, change, write, apply.
    change: Mutex<()>,
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, config: Config, senders: Senders, net: NetDir) {
    let shared = Arc::new(Shared {
        config,
        senders,
        net,
        change: Mutex::new(()),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = exchange(stream, &shared).await;
        });
    }
}

/// One request and its response.
async fn exchange(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let (status, body) = if length > MAX_BODY {
        (
            413,
            json!({"error": "request body too large", "status": 413}),
        )
    } else {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let body: Option<Value> = serde_json::from_slice(&body).ok();
        let path = path.split('?').next().unwrap_or("");
        handle(shared, &method, path, body).await
    };
    let text = if status == 204 {
        String::new()
    } else {
        body.to_string()
    };
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let mut stream = reader.into_inner();
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Routes one request.
async fn handle(shared: &Shared, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let toxics = current(&shared.senders);
    match (method, segments.as_slice()) {
        ("GET", ["version"]) => (200, json!(VERSION)),
        ("GET", ["proxies"]) => {
            let all: serde_json::Map<String, Value> = shared
                .config
                .links
                .iter()
                .map(|l| (l.name.clone(), proxy_json(shared, &l.name, &toxics)))
                .collect();
            (200, Value::Object(all))
        }
        ("GET", ["proxies", name]) if known(shared, name) => {
            (200, proxy_json(shared, name, &toxics))
        }
        ("GET", ["proxies", name, "toxics"]) if known(shared, name) => {
            (200, json!(toxics.get(*name).cloned().unwrap_or_default()))
        }
        ("GET", ["proxies", name, "toxics", toxic]) if known(shared, name) => {
            match find(&toxics, name, toxic) {
                Some(t) => (200, json!(t)),
                None => not_found("toxic not found"),
            }
        }
        ("POST", ["reset"]) => {
            change(shared, |all| {
                all.clear();
                Ok((204, Value::Null))
            })
            .await
        }
        ("POST", ["proxies", name, "toxics"]) if known(shared, name) => {
            let Some(body) = body else {
                return bad_request("the body is not JSON");
            };
            change(shared, |all| add(all, name, body)).await
        }
        ("POST", ["proxies", name, "toxics", toxic]) if known(shared, name) => {
            let Some(body) = body else {
                return bad_request("the body is not JSON");
            };
            change(shared, |all| update(all, name, toxic, body)).await
        }
        ("DELETE", ["proxies", name, "toxics", toxic]) if known(shared, name) => {
            change(shared, |all| {
                let list = all.entry((*name).to_owned()).or_default();
                let before = list.len();
                list.retain(|t| t.name != *toxic);
                if list.len() == before {
                    return Err(not_found("toxic not found"));
                }
                Ok((204, Value::Null))
            })
            .await
        }
        (_, ["proxies", _, ..]) => not_found("proxy not found"),
        _ => not_found("drr serves only Toxiproxy's toxic and reset endpoints"),
    }
}

fn known(shared: &Shared, name: &str) -> bool {
    shared.config.links.iter().any(|l| l.name == name)
}

fn find<'a>(toxics: &'a LinkToxics, proxy: &str, toxic: &str) -> Option<&'a Toxic> {
    toxics.get(proxy)?.iter().find(|t| t.name == toxic)
}

/// The toxics in force now.
fn current(senders: &Senders) -> LinkToxics {
    senders
        .iter()
        .map(|(name, s)| (name.clone(), s.borrow().as_ref().clone()))
        .collect()
}

/// A proxy as Toxiproxy shows it.
fn proxy_json(shared: &Shared, name: &str, toxics: &LinkToxics) -> Value {
    let link = shared.config.links.iter().find(|l| l.name == name);
    let host = shared.config.host;
    json!({
        "name": name,
        "listen": link.map(|l| l.listen_addr(&shared.config).to_string()),
        "upstream": link.map(|l| format!("{host}:{}", l.upstream)),
        "enabled": true,
        "toxics": toxics.get(name).cloned().unwrap_or_default(),
    })
}

/// Applies `edit` to the toxics in force, then writes and applies them.
async fn change(
    shared: &Shared,
    edit: impl FnOnce(&mut LinkToxics) -> Result<(u16, Value), (u16, Value)>,
) -> (u16, Value) {
    let _guard = shared.change.lock().await;
    let mut all = current(&shared.senders);
    let answer = match edit(&mut all) {
        Ok(answer) => answer,
        Err(refusal) => return refusal,
    };
    all.retain(|_, list| !list.is_empty());
    if let Err(e) = shared.net.write_toxics(&all, None) {
        return (500, json!({"error": format!("{e:#}"), "status": 500}));
    }
    apply(&shared.senders, &all);
    if let Err(e) = shared.net.write_applied(&all) {
        return (500, json!({"error": format!("{e:#}"), "status": 500}));
    }
    answer
}

/// Adds a toxic (Toxiproxy's defaults: downstream, toxicity 1, named
/// `TYPE_STREAM`).
fn add(all: &mut LinkToxics, proxy: &str, mut body: Value) -> Result<(u16, Value), (u16, Value)> {
    if let Some(object) = body.as_object_mut()
        && !object.contains_key("name")
    {
        let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
        let stream = object
            .get("stream")
            .and_then(Value::as_str)
            .unwrap_or("downstream");
        object.insert("name".into(), json!(format!("{kind}_{stream}")));
    }
    let toxic: Toxic = serde_json::from_value(body).map_err(|e| bad_request(&e.to_string()))?;
    if let Some(why) = toxic.unsupported() {
        return Err(bad_request(&why));
    }
    let list = all.entry(proxy.to_owned()).or_default();
    if list.iter().any(|t| t.name == toxic.name) {
        return Err((409, json!({"error": "toxic already exists", "status": 409})));
    }
    list.push(toxic.clone());
    Ok((200, json!(toxic)))
}

/// Updates a toxic's attributes (and toxicity or stream, when given).
fn update(
    all: &mut LinkToxics,
    proxy: &str,
    name: &str,
    body: Value,
) -> Result<(u16, Value), (u16, Value)> {
    let list = all.entry(proxy.to_owned()).or_default();
    let Some(slot) = list.iter_mut().find(|t| t.name == name) else {
        return Err(not_found("toxic not found"));
    };
    let mut merged = serde_json::to_value(&*slot).map_err(|e| bad_request(&e.to_string()))?;
    if let (Some(target), Some(changes)) = (merged.as_object_mut(), body.as_object()) {
        for (key, value) in changes {
            if key == "attributes"
                && let (Some(old), Some(new)) = (
                    target.get_mut("attributes").and_then(Value::as_object_mut),
                    value.as_object(),
                )
            {
                old.extend(new.clone());
            } else if key != "name" && key != "type" {
                target.insert(key.clone(), value.clone());
            }
        }
    }
    let toxic: Toxic = serde_json::from_value(merged).map_err(|e| bad_request(&e.to_string()))?;
    if let Some(why) = toxic.unsupported() {
        return Err(bad_request(&why));
    }
    *slot = toxic.clone();
    Ok((200, json!(toxic)))
}

fn not_found(what: &str) -> (u16, Value) {
    (404, json!({"error": what, "status": 404}))
}

fn bad_request(what: &str) -> (u16, Value) {
    (400, json!({"error": what, "status": 400}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::toxic::Kind;

    #[test]
    fn toxics_are_added_named_updated_and_refused() {
        let mut all = LinkToxics::new();
        let (status, added) = add(
            &mut all,
            "r-client",
            json!({"type": "latency", "attributes": {"latency": 80}}),
        )
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(added["name"], "latency_downstream");
        assert_eq!(
            add(
                &mut all,
                "r-client",
                json!({"type": "latency", "attributes": {"latency": 1}})
            )
            .unwrap_err()
            .0,
            409
        );
        update(
            &mut all,
            "r-client",
            "latency_downstream",
            json!({"attributes": {"jitter": 10}}),
        )
        .unwrap();
        assert_eq!(
            all["r-client"][0].kind,
            Kind::Latency {
                latency: 80,
                jitter: 10
            }
        );
        let refused = add(
            &mut all,
            "r-client",
            json!({"name": "x", "type": "latency", "toxicity": 0.5, "attributes": {"latency": 1}}),
        )
        .unwrap_err();
        assert_eq!(refused.0, 400);
        assert_eq!(
            add(&mut all, "r-client", json!({"type": "slicer"}))
                .unwrap_err()
                .0,
            400
        );
        assert_eq!(
            update(&mut all, "r-client", "nope", json!({}))
                .unwrap_err()
                .0,
            404
        );
    }
}
