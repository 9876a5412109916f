//! Incremental detokenization: turns each generated token's bytes into the
//! text that became final with it, so that streamed pieces concatenated
//! equal the decoded completion. Bytes of a character split across tokens
//! wait for the rest; text that could be the start of a stop string is held
//! back until it cannot be. The engine's `Generation` and the worker both
//! stream through it.

/// Finds the earliest stop string in `text`; returns the byte offset where it starts.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

#[derive(Debug, Clone, Default)]
pub struct TextStream {
    stops: Vec<String>,
    /// Bytes of an incomplete UTF-8 character.
    bytes: Vec<u8>,
    text: String,
    /// Bytes of `text` already handed out.
    emitted: usize,
    stopped: bool,
}

/// What one token added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    /// A stop string completed: the text ends before it, generation is over.
    pub stopped: bool,
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> Self {
        TextStream { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), ..TextStream::default() }
    }

    /// All text so far, including what is still held back.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Appends one token's bytes. `last`: no token follows (max tokens), so
    /// nothing is held back for a stop string.
    pub fn push(&mut self, token_bytes: &[u8], last: bool) -> Piece {
        if self.stopped {
            return Piece { text: String::new(), stopped: true };
        }
        self.bytes.extend_from_slice(token_bytes);
        let valid = match std::str::from_utf8(&self.bytes) {
            Ok(t) => t.len(),
            Err(e) if e.error_len().is_some() => self.bytes.len(), // invalid, not just incomplete
            Err(e) => e.valid_up_to(),
        };
        let rest = self.bytes.split_off(valid);
        self.text.push_str(&String::from_utf8_lossy(&self.bytes));
        self.bytes = rest;
        let mut end = self.text.len();
        if let Some(at) = find_stop(&self.text, &self.stops) {
            self.text.truncate(at);
            end = at;
            self.stopped = true;
            self.bytes.clear();
        } else if !last {
            let hold = self.stops.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
            end = end.saturating_sub(hold).max(self.emitted);
            while !self.text.is_char_boundary(end) {
                end -= 1;
            }
        }
        let piece = self.take_until(end);
        Piece { text: piece, stopped: self.stopped }
    }

    /// Everything not handed out yet (held-back text, an incomplete
    /// character as U+FFFD), when generation ends.
    pub fn finish(&mut self) -> String {
        if !self.stopped && !self.bytes.is_empty() {
            self.text.push_str(&String::from_utf8_lossy(&self.bytes));
            self.bytes.clear();
        }
        self.take_until(self.text.len())
    }

    fn take_until(&mut self, end: usize) -> String {
        let start = self.emitted.min(end);
        let piece = self.text.get(start..end).unwrap_or_default().to_string();
        self.emitted = end.max(self.emitted);
        piece
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(stops: &[&str], tokens: &[&[u8]]) -> (Vec<String>, bool, String) {
        let mut s = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut pieces = Vec::new();
        let mut stopped = false;
        for t in tokens {
            let p = s.push(t, false);
            pieces.push(p.text);
            stopped = p.stopped;
            if stopped {
                break;
            }
        }
        (pieces, stopped, s.finish())
    }

    #[test]
    fn a_character_split_across_tokens_comes_out_whole() {
        let e_acute = "é".as_bytes();
        let (pieces, stopped, rest) = stream(&[], &[b"caf", &e_acute[..1], &e_acute[1..], b"!"]);
        assert_eq!(pieces, vec!["caf", "", "é", "!"]);
        assert!(!stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn stop_strings_cut_the_text_and_held_text_comes_out_at_the_end() {
        let (pieces, stopped, rest) = stream(&["END"], &[b"ab", b"cE", b"N", b"D", b"zz"]);
        assert!(stopped);
        assert_eq!(pieces.concat() + &rest, "abc");
        // Held back while "EN" could still become "END", never after.
        let (pieces, stopped, rest) = stream(&["END"], &[b"ab", b"EN", b"x"]);
        assert!(!stopped);
        assert_eq!(pieces.concat() + &rest, "abENx");
        let (pieces, _, rest) = stream(&["END"], &[b"ab", b"EN"]);
        assert_eq!(pieces.concat(), "ab");
        assert_eq!(rest, "EN");
    }

    #[test]
    fn an_incomplete_character_at_the_end_becomes_a_replacement() {
        let (pieces, _, rest) = stream(&[], &[b"a", &"é".as_bytes()[..1]]);
        assert_eq!(pieces.concat(), "a");
        assert_eq!(rest, "\u{fffd}");
    }

    #[test]
    fn the_last_token_flushes_everything() {
        let mut s = TextStream::new(vec!["XYZ".into()]);
        assert_eq!(s.push(b"abX", false).text, "a");
        assert_eq!(s.push(b"Y", true).text, "bXY");
        assert_eq!(s.finish(), "");
    }
}
