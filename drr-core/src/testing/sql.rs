//! SQL text helpers: identifier quoting, and a stable hash for naming
//! templates after their migrations.

/// Quotes an identifier for SQL text, as PostgreSQL's `quote_ident` does
/// when quoting is needed: `my "db"` becomes `"my ""db"""`.
///
/// For the statements that cannot take parameters (`CREATE DATABASE`,
/// `DROP DATABASE`); values are always bound as parameters instead.
pub fn quote_ident(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        if c == '"' {
            quoted.push('"');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// FNV-1a, 64 bits: stable across processes, builds and Rust versions
/// (unlike `DefaultHasher`), so every test process names the same
/// migrations' template the same way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StableHash(u64);

impl StableHash {
    pub(crate) fn new() -> Self {
        StableHash(0xcbf2_9ce4_8422_2325)
    }

    /// Adds `bytes`, then a separator, so ("ab", "c") and ("a", "bc") differ.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("drr_t_1"), "\"drr_t_1\"");
        assert_eq!(quote_ident("my \"db\""), "\"my \"\"db\"\"\"");
    }

    #[test]
    fn hash_is_stable_and_separates_parts() {
        let hash = |parts: &[&str]| {
            let mut h = StableHash::new();
            parts.iter().for_each(|p| h.write(p.as_bytes()));
            h.finish()
        };
        assert_eq!(hash(&["a", "bc"]), hash(&["a", "bc"]));
        assert_ne!(hash(&["ab", "c"]), hash(&["a", "bc"]));
        // Pinned: a change would rename every template.
        assert_eq!(hash(&[]), 0xcbf2_9ce4_8422_2325);
    }
}
