//! Statements that control a transaction or leave state on the session
//! that runs them, told apart by their first words. Automatic routing
//! refuses them: each call may run on another pooled connection.

use crate::classify::Reason;

/// Why the statement that starts with `words` cannot run through automatic
/// routing, if it cannot.
pub(crate) fn refusal(words: [&str; 5]) -> Option<Reason> {
    let upper = words.map(str::to_ascii_uppercase);
    let [first, second, ..] = &upper;
    match first.as_str() {
        "BEGIN" | "START" | "SAVEPOINT" | "RELEASE" | "END" | "ABORT" => {
            Some(Reason::TransactionControl)
        }
        // `COMMIT PREPARED` and `ROLLBACK PREPARED` finish a prepared
        // transaction on their own: nothing is left open.
        "COMMIT" | "ROLLBACK" if second != "PREPARED" => Some(Reason::TransactionControl),
        "PREPARE" if second == "TRANSACTION" => Some(Reason::TransactionControl),
        "PREPARE" | "EXECUTE" | "DEALLOCATE" | "DECLARE" | "FETCH" | "MOVE" | "CLOSE"
        | "LISTEN" | "UNLISTEN" | "RESET" | "DISCARD" | "LOAD" => Some(Reason::SessionState),
        // `SET LOCAL`, `SET TRANSACTION` and `SET CONSTRAINTS` end with the
        // statement's own transaction.
        "SET" if !matches!(second.as_str(), "LOCAL" | "TRANSACTION" | "CONSTRAINTS") => {
            Some(Reason::SessionState)
        }
        "CREATE" if creates_temporary(&upper[1..]) => Some(Reason::SessionState),
        _ => None,
    }
}

/// `[OR REPLACE] [GLOBAL | LOCAL] {TEMP | TEMPORARY} ...` after `CREATE`.
fn creates_temporary(words: &[String]) -> bool {
    let mut words = words.iter().map(String::as_str).peekable();
    if words.peek() == Some(&"OR") {
        words.next();
        words.next();
    }
    if matches!(words.peek(), Some(&("GLOBAL" | "LOCAL"))) {
        words.next();
    }
    matches!(words.next(), Some("TEMP" | "TEMPORARY"))
}
