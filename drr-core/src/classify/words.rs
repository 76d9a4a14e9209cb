//! The first words of a statement, after whitespace and comments: enough
//! to tell most statements apart without a parse.

/// Up to `N` leading words of `sql` (runs of ASCII letters), skipping
/// whitespace and comments before each. Stops at the first thing that is
/// not a word (a parenthesis, a quote, a number).
pub(crate) fn leading_words<const N: usize>(sql: &str) -> [&str; N] {
    let mut words = [""; N];
    let mut rest = sql;
    for word in &mut words {
        rest = skip_space_and_comments(rest);
        let end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        *word = &rest[..end];
        rest = &rest[end..];
    }
    words
}

fn skip_space_and_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if rest.starts_with("/*") {
            rest = after_block_comment(rest).trim_start();
        } else {
            return rest;
        }
    }
}

/// The text after the block comment `sql` starts with, counting nested
/// comments as PostgreSQL does; empty if it never ends.
fn after_block_comment(sql: &str) -> &str {
    let bytes = sql.as_bytes();
    let (mut depth, mut i) = (0_usize, 0);
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return &sql[i..];
                }
            }
            _ => i += 1,
        }
    }
    ""
}

/// `TABLE name` spelled as `SELECT * FROM name`, which the parser lacks.
pub(crate) fn table_shorthand(sql: &str) -> Option<String> {
    let trimmed = sql.trim_start();
    let keyword = trimmed.get(..6)?;
    let rest = &trimmed[6..];
    (keyword.eq_ignore_ascii_case("TABLE ") || keyword.eq_ignore_ascii_case("TABLE\n"))
        .then(|| format!("SELECT * FROM {rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_skip_comments_and_stop_at_symbols() {
        assert_eq!(
            leading_words::<3>("/* a /* b */ c */ -- x\n  set LOCAL x = 1"),
            ["set", "LOCAL", "x"]
        );
        assert_eq!(leading_words::<2>("(SELECT 1)"), ["", ""]);
        assert_eq!(leading_words::<2>("BEGIN"), ["BEGIN", ""]);
    }
}
