//! How consistency travels with requests: the mode a read asks for, and the
//! token (and write time) a write hands back for later reads.
//!
//! # On the wire
//!
//! | name | where | set by | meaning |
//! | --- | --- | --- | --- |
//! | `x-drr-consistency` | request header | client | `eventual`, `read-your-writes` or `pin`; the server's `--consistency` when absent |
//! | `x-drr-lsn` | response header of a write, request header of a read | server, echoed by the client | the session's [`LsnToken`], e.g. `v1:0/3000148` |
//! | `drr_lsn` | cookie | server | the same token, for browsers |
//! | `x-drr-written-at` | response header of a write, request header of a read | server, echoed by the client | the write's time, Unix milliseconds |
//! | `drr_written_at` | cookie | server | the same time, for browsers |
//! | `x-drr-node` | response header | server | the node that served the request |
//!
//! Every write returns both the token and the time, whatever the mode; the
//! mode only decides what a read does with them:
//!
//! - `eventual` ignores both: any replica serves the read.
//! - `read-your-writes` resumes a drr-core session with the token
//!   ([`Session::with_token`]): the read goes to a replica that has replayed
//!   it, waits up to `--max-wait-ms` for one, or falls back to the primary.
//! - `pin` reads from the primary until `--pin-ms` after the write time, then
//!   from replicas again, whether or not they have caught up.
//!
//! A header wins over nothing but is merged with the cookie: the later token
//! and the later write time apply. A malformed header is a 400; a malformed
//! cookie is ignored (browsers keep whatever they were given).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponseParts, ResponseParts};
use drr_core::{Consistency, LsnToken, Session};

use crate::error::AppError;
use crate::state::AppState;

/// Request header: the consistency mode of this request.
pub const CONSISTENCY_HEADER: &str = "x-drr-consistency";
/// Request and response header: the session's token.
pub const LSN_HEADER: &str = "x-drr-lsn";
/// Request and response header: the time of the session's last write, in
/// Unix milliseconds.
pub const WRITTEN_AT_HEADER: &str = "x-drr-written-at";
/// Response header: the node that served the request.
pub const NODE_HEADER: &str = "x-drr-node";
/// Cookie holding the token.
pub const LSN_COOKIE: &str = "drr_lsn";
/// Cookie holding the write time.
pub const WRITTEN_AT_COOKIE: &str = "drr_written_at";

/// How long the cookies live: far longer than any lag worth waiting for.
const COOKIE_MAX_AGE_S: u64 = 300;

/// What a read may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Any replica: a read may miss the client's own write.
    Eventual,
    /// A replica that has replayed the client's token, or the primary.
    ReadYourWrites,
    /// The primary for a while after a write, then any replica.
    Pin,
}

impl Mode {
    /// The name used in headers and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Eventual => "eventual",
            Mode::ReadYourWrites => "read-your-writes",
            Mode::Pin => "pin",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a mode that is not `eventual`, `read-your-writes` or `pin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown consistency {0:?}: expected eventual, read-your-writes or pin")]
pub struct ParseModeError(String);

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "eventual" => Ok(Mode::Eventual),
            "read-your-writes" | "ryw" => Ok(Mode::ReadYourWrites),
            "pin" | "pin-after-write" => Ok(Mode::Pin),
            _ => Err(ParseModeError(s.chars().take(40).collect())),
        }
    }
}

/// What a request carries about consistency: its mode, and what the client
/// wrote before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPrefs {
    /// The mode asked for, or the server's default.
    pub mode: Mode,
    /// The latest token from the header or the cookie.
    pub token: Option<LsnToken>,
    /// The latest write time from the header or the cookie (Unix ms).
    pub written_at: Option<u64>,
}

impl ReadPrefs {
    /// Reads the headers and cookies of a request.
    pub fn from_headers(headers: &HeaderMap, default_mode: Mode) -> Result<Self, AppError> {
        let mode = match header(headers, CONSISTENCY_HEADER)? {
            Some(value) => value
                .parse()
                .map_err(|err| AppError::BadHeader(format!("{CONSISTENCY_HEADER}: {err}")))?,
            None => default_mode,
        };
        let token = match header(headers, LSN_HEADER)? {
            Some(value) => Some(
                value
                    .parse::<LsnToken>()
                    .map_err(|err| AppError::BadHeader(format!("{LSN_HEADER}: {err}")))?,
            ),
            None => None,
        };
        let written_at = match header(headers, WRITTEN_AT_HEADER)? {
            Some(value) => Some(value.trim().parse::<u64>().map_err(|_| {
                AppError::BadHeader(format!(
                    "{WRITTEN_AT_HEADER}: expected Unix milliseconds as returned by a write, got {:?}",
                    value.chars().take(40).collect::<String>()
                ))
            })?),
            None => None,
        };
        let cookie_token = cookie(headers, LSN_COOKIE).and_then(|v| v.parse::<LsnToken>().ok());
        let cookie_time = cookie(headers, WRITTEN_AT_COOKIE).and_then(|v| v.parse::<u64>().ok());
        Ok(ReadPrefs {
            mode,
            token: token.max(cookie_token),
            written_at: written_at.max(cookie_time),
        })
    }

    /// A drr-core session for a read in this request's mode.
    ///
    /// In pin mode, a write less than `pin` ago starts a
    /// [`Consistency::PinAfterWrite`] session for what is left of the pin.
    pub async fn read_session(&self, state: &AppState) -> Result<Session, AppError> {
        let router = &state.router;
        match self.mode {
            Mode::Eventual => Ok(router.session_with(Consistency::Eventual)),
            Mode::ReadYourWrites => {
                let session = router.session_with(Consistency::ReadYourWrites);
                Ok(match self.token {
                    Some(token) => session.with_token(token),
                    None => session,
                })
            }
            Mode::Pin => {
                let pin = state.config.pin;
                let left = self
                    .written_at
                    .map(|at| {
                        pin.saturating_sub(Duration::from_millis(now_ms().saturating_sub(at)))
                    })
                    .unwrap_or_default();
                let session = router.session_with(Consistency::PinAfterWrite(left));
                if !left.is_zero() {
                    // drr-core pins from the moment a session notes a write;
                    // the write happened in an earlier request, so note it
                    // now with only the rest of the pin.
                    session.note_write().await?;
                }
                Ok(session)
            }
        }
    }

    /// A drr-core session for a write: always read-your-writes, so that the
    /// response can carry a token whatever the mode, merged with the token
    /// the client already had.
    pub fn write_session(&self, state: &AppState) -> Session {
        let session = state.router.session_with(Consistency::ReadYourWrites);
        match self.token {
            Some(token) => session.with_token(token),
            None => session,
        }
    }
}

impl FromRequestParts<AppState> for ReadPrefs {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        ReadPrefs::from_headers(&parts.headers, state.config.default_mode)
    }
}

/// What a write hands back: its token and time, as headers and cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReceipt {
    /// The session's token after the write.
    pub token: Option<LsnToken>,
    /// When the write committed, in Unix milliseconds.
    pub written_at: u64,
}

impl WriteReceipt {
    /// A receipt for a write that just committed.
    pub fn now(token: Option<LsnToken>) -> Self {
        WriteReceipt {
            token,
            written_at: now_ms(),
        }
    }
}

impl IntoResponseParts for WriteReceipt {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        let headers = res.headers_mut();
        let cookie = |name: &str, value: &str| {
            HeaderValue::try_from(format!(
                "{name}={value}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Lax"
            ))
        };
        if let Some(token) = self.token {
            let token = token.to_string();
            if let Ok(value) = HeaderValue::try_from(token.as_str()) {
                headers.insert(HeaderName::from_static(LSN_HEADER), value);
            }
            if let Ok(value) = cookie(LSN_COOKIE, &token) {
                headers.append(SET_COOKIE, value);
            }
        }
        let at = self.written_at.to_string();
        headers.insert(
            HeaderName::from_static(WRITTEN_AT_HEADER),
            HeaderValue::from(self.written_at),
        );
        if let Ok(value) = cookie(WRITTEN_AT_COOKIE, &at) {
            headers.append(SET_COOKIE, value);
        }
        Ok(res)
    }
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A header's value as text; a 400 when it is not visible ASCII.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, AppError> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| AppError::BadHeader(format!("{name}: not visible ASCII")))
        })
        .transpose()
}

/// The value of the first cookie called `name`, across every `Cookie`
/// header.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn modes_parse_and_print() {
        for mode in [Mode::Eventual, Mode::ReadYourWrites, Mode::Pin] {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
        }
        assert_eq!(
            " Read-Your-Writes ".parse::<Mode>(),
            Ok(Mode::ReadYourWrites)
        );
        let err = "strong".parse::<Mode>().unwrap_err().to_string();
        assert!(err.contains("eventual, read-your-writes or pin"), "{err}");
    }

    #[test]
    fn no_headers_means_the_default_mode_and_no_token() {
        let prefs = ReadPrefs::from_headers(&HeaderMap::new(), Mode::Pin).unwrap();
        assert_eq!(
            prefs,
            ReadPrefs {
                mode: Mode::Pin,
                token: None,
                written_at: None
            }
        );
    }

    #[test]
    fn header_and_cookie_merge_to_the_later_token() {
        let prefs = ReadPrefs::from_headers(
            &headers(&[
                (LSN_HEADER, "v1:0/3000100"),
                ("cookie", "a=b; drr_lsn=v1:0/3000200; drr_written_at=5"),
                (WRITTEN_AT_HEADER, "7"),
            ]),
            Mode::Eventual,
        )
        .unwrap();
        assert_eq!(prefs.token, Some("0/3000200".parse().unwrap()));
        assert_eq!(prefs.written_at, Some(7));
    }

    #[test]
    fn bad_headers_are_rejected_but_bad_cookies_ignored() {
        for (name, value) in [
            (CONSISTENCY_HEADER, "strong"),
            (LSN_HEADER, "nonsense"),
            (WRITTEN_AT_HEADER, "yesterday"),
        ] {
            let err =
                ReadPrefs::from_headers(&headers(&[(name, value)]), Mode::Eventual).unwrap_err();
            assert!(matches!(err, AppError::BadHeader(_)), "{name}: {err:?}");
            assert!(err.to_string().starts_with(name), "{err}");
        }
        let prefs = ReadPrefs::from_headers(
            &headers(&[("cookie", "drr_lsn=junk; drr_written_at=junk")]),
            Mode::Eventual,
        )
        .unwrap();
        assert_eq!((prefs.token, prefs.written_at), (None, None));
    }
}
