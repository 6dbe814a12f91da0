//! Text from outside (user, client and device names, titles, webhook fields) made safe to
//! print: control characters and the bidirectional controls become visible escapes, so a
//! name cannot move the cursor, forge a line or reverse the text around it in a terminal or a
//! log. Also the few words an HTTP error of a meter or a torrent client is shown as.

use std::borrow::Cow;

/// What went wrong with an HTTP request to a meter or a torrent client, in a few words: the
/// innermost cause ("Connection refused"), or that nothing answered within `timeout_key`.
pub fn request_error(e: &reqwest::Error, timeout_key: &str) -> String {
    if e.is_timeout() {
        return format!("no answer within {timeout_key}");
    }
    let mut last = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        last = s.to_string();
        src = s.source();
    }
    last
}

/// Characters that change how the text around them is shown: the bidirectional embeddings,
/// overrides, isolates and marks (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Control and bidirectional-control characters as escapes (`\n`, `\u{1b}`, `\u{202e}`);
/// everything else, other scripts included, as is.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_bidi_control(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_become_visible() {
        assert_eq!(escape_controls("Zoë 日本 O'Brien"), "Zoë 日本 O'Brien");
        assert_eq!(
            escape_controls("ok\r\u{1b}[32m ok\n"),
            "ok\\r\\u{1b}[32m ok\\n"
        );
        assert_eq!(escape_controls("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escape_controls("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }
}
