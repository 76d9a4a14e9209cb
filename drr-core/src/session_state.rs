//! What a session remembers of its writes, and what a read must respect
//! because of them.

use std::sync::Mutex;
use std::time::Instant;

use crate::config::Consistency;
use crate::token::LsnToken;

/// A session's consistency and its latest write: when, and (under
/// read-your-writes) the primary's position just after it.
#[derive(Debug)]
pub(crate) struct SessionState {
    consistency: Consistency,
    writes: Mutex<Writes>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Writes {
    last_write: Option<Instant>,
    token: Option<LsnToken>,
}

impl SessionState {
    pub(crate) fn new(consistency: Consistency) -> Self {
        SessionState {
            consistency,
            writes: Mutex::new(Writes::default()),
        }
    }

    pub(crate) fn consistency(&self) -> Consistency {
        self.consistency
    }

    pub(crate) fn set_consistency(&mut self, consistency: Consistency) {
        self.consistency = consistency;
    }

    /// Whether a write must be followed by taking a token.
    pub(crate) fn wants_token(&self) -> bool {
        self.consistency == Consistency::ReadYourWrites
    }

    /// The token of the latest write, or of one observed.
    pub(crate) fn token(&self) -> Option<LsnToken> {
        self.writes().token
    }

    /// Merges a token from elsewhere (see [`LsnToken::merge`]).
    pub(crate) fn observe(&self, token: LsnToken) {
        if let Ok(mut writes) = self.writes.lock() {
            writes.token = Some(merge(writes.token, token));
        }
    }

    /// Records a write that just committed, with its token if one was taken.
    pub(crate) fn record_write(&self, token: Option<LsnToken>) {
        if let Ok(mut writes) = self.writes.lock() {
            writes.last_write = Some(Instant::now());
            if let Some(token) = token {
                writes.token = Some(merge(writes.token, token));
            }
        }
    }

    /// What a read under `consistency` must respect.
    pub(crate) fn context(&self, consistency: Consistency) -> ReadContext {
        let writes = self.writes();
        ReadContext {
            consistency,
            last_write: writes.last_write,
            token: writes.token,
        }
    }

    fn writes(&self) -> Writes {
        self.writes.lock().map(|w| *w).unwrap_or_default()
    }
}

fn merge(held: Option<LsnToken>, new: LsnToken) -> LsnToken {
    held.map_or(new, |held| held.merge(new))
}

/// What a read must respect: the consistency in force and what the session
/// has written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadContext {
    pub(crate) consistency: Consistency,
    pub(crate) last_write: Option<Instant>,
    pub(crate) token: Option<LsnToken>,
}

impl ReadContext {
    /// A read with no session behind it.
    pub(crate) const EVENTUAL: ReadContext = ReadContext {
        consistency: Consistency::Eventual,
        last_write: None,
        token: None,
    };

    /// The token a replica must have replayed, under read-your-writes.
    pub(crate) fn required(&self) -> Option<LsnToken> {
        match self.consistency {
            Consistency::ReadYourWrites => self.token,
            _ => None,
        }
    }

    /// Whether the read must go to the primary because of a recent write.
    pub(crate) fn pinned(&self) -> bool {
        match self.consistency {
            Consistency::PinAfterWrite(pin) => self.last_write.is_some_and(|at| at.elapsed() < pin),
            _ => false,
        }
    }
}
