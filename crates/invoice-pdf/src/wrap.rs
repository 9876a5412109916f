//! Greedy word wrapping against measured widths.
//!
//! Words go on a line while they fit; a word wider than a whole line (a
//! UUID, a long model name) is cut between characters rather than let run
//! into the next column. Any run of whitespace, newlines and tabs included,
//! is one break opportunity: text from tenants and catalogs is laid out,
//! not reproduced verbatim.

/// Lines of `text` no wider than `max_width` as `width` measures them.
/// Always at least one line (an empty one for blank text) so that every
/// cell takes a row. A single character wider than `max_width` still gets
/// a line of its own: nothing is dropped.
pub(crate) fn wrap(text: &str, max_width: f32, width: impl Fn(&str) -> f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
        if width(&candidate) <= max_width {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if width(word) <= max_width {
            line = word.to_owned();
        } else {
            let mut pieces = split_word(word, max_width, &width);
            // The last piece stays open: the next word may fit after it.
            line = pieces.pop().unwrap_or_default();
            lines.extend(pieces);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `word` cut into pieces no wider than `max_width` (but one character
/// each at least).
fn split_word(word: &str, max_width: f32, width: &impl Fn(&str) -> f32) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    for ch in word.chars() {
        piece.push(ch);
        if width(&piece) > max_width && piece.chars().count() > 1 {
            piece.pop();
            pieces.push(std::mem::take(&mut piece));
            piece.push(ch);
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One unit per character: easy to reason about.
    fn chars(s: &str) -> f32 {
        s.chars().count() as f32
    }

    #[test]
    fn fills_lines_greedily() {
        assert_eq!(wrap("aa bb cc dd", 5.0, chars), ["aa bb", "cc dd"]);
        assert_eq!(wrap("aa bb cc dd", 8.0, chars), ["aa bb cc", "dd"]);
        assert_eq!(wrap("short", 80.0, chars), ["short"]);
    }

    #[test]
    fn blank_text_is_one_empty_line() {
        assert_eq!(wrap("", 10.0, chars), [""]);
        assert_eq!(wrap(" \n\t ", 10.0, chars), [""]);
    }

    #[test]
    fn whitespace_runs_and_newlines_are_single_breaks() {
        assert_eq!(wrap("a \n\n  b\tc", 20.0, chars), ["a b c"]);
    }

    #[test]
    fn overlong_words_are_cut_and_the_rest_flows_on() {
        assert_eq!(wrap("x 0123456789 y", 4.0, chars), ["x", "0123", "4567", "89 y"]);
    }

    #[test]
    fn a_character_wider_than_the_line_still_shows() {
        assert_eq!(wrap("ab", 0.5, chars), ["a", "b"]);
    }

    proptest! {
        #[test]
        fn keeps_every_word_and_respects_the_width(
            words in proptest::collection::vec("[a-z]{1,15}", 0..40),
            max in 3u8..30,
        ) {
            let max = f32::from(max);
            let text = words.join(" ");
            let lines = wrap(&text, max, chars);
            prop_assert!(!lines.is_empty());
            for line in &lines {
                prop_assert!(chars(line) <= max, "{line:?} is wider than {max}");
            }
            // Joining the lines gives the words back, give or take where
            // long words were cut.
            let joined: String = lines.concat().split_whitespace().collect();
            let expected: String = words.concat();
            prop_assert_eq!(joined, expected);
        }
    }
}
