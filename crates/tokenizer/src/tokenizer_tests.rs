#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use proptest::prelude::*;

use super::*;

/// A byte-level vocab (ids 0..256 are the byte chars) plus `extra` tokens,
/// of which those in `control` are control tokens.
fn vocab(extra: &[&str], control: &[&str], merges: &[&str]) -> Tokenizer {
    let mut tokens: Vec<String> = bytes_to_unicode().iter().map(|c| c.to_string()).collect();
    tokens.extend(extra.iter().map(|t| t.to_string()));
    let types: Vec<i64> =
        tokens.iter().map(|t| if control.contains(&t.as_str()) { TOKEN_TYPE_CONTROL } else { 1 }).collect();
    let merges: Vec<String> = merges.iter().map(|m| m.to_string()).collect();
    Tokenizer::new(tokens, &merges, &types, None, None, false).unwrap()
}

#[test]
fn byte_map_is_a_bijection() {
    let m = bytes_to_unicode();
    let set: std::collections::HashSet<char> = m.iter().copied().collect();
    assert_eq!(set.len(), 256);
    assert_eq!(m[b'A' as usize], 'A');
    assert_eq!(m[b' ' as usize], 'Ġ');
    assert_eq!(m[b'\n' as usize], 'Ċ');
}

#[test]
fn digit_splitting_follows_the_pre_tokenizer() {
    // Byte-level vocab plus "12" so that a merge could join the digits.
    let t = vocab(&["12"], &[], &["1 2"]);
    assert_eq!(t.encode("12", false), vec![256]);
    let t = t.with_pre_tokenizer(PreTokenizer::DigitsThenGpt2);
    assert_eq!(t.encode("12", false), vec![b'1' as u32, b'2' as u32]);
    assert!(PreTokenizer::from_gguf_name(Some("llama-bpe")).is_err());
}

#[test]
fn a_tokenizer_rebuilt_from_its_parts_encodes_the_same() {
    // Byte-level vocab, merges in a deliberate (non-alphabetical) order, a
    // duplicate merge, and two control tokens.
    let m = bytes_to_unicode();
    let mut tokens: Vec<String> = m.iter().map(|c| c.to_string()).collect();
    for t in ["lo", "low", "er", "lower", "<|im_start|>", "<|im_end|>"] {
        tokens.push(t.into());
    }
    let merges: Vec<String> = ["e r", "l o", "lo w", "l o", "low er"].iter().map(|s| s.to_string()).collect();
    let mut types = vec![1i64; tokens.len()];
    types[260] = TOKEN_TYPE_CONTROL;
    types[261] = TOKEN_TYPE_CONTROL;
    let original = Tokenizer::new(tokens, &merges, &types, Some(260), Some(261), true)
        .unwrap()
        .with_pre_tokenizer(PreTokenizer::DigitsThenGpt2);
    let parts = original.parts();
    assert_eq!(parts.merges, vec!["e r", "l o", "lo w", "low er"]);
    let rebuilt = Tokenizer::from_parts(parts.clone()).unwrap();
    assert_eq!(rebuilt.parts(), parts);
    for text in ["lower lowest 123", "<|im_start|>user\nlower<|im_end|>", "", "élan 42 lo"] {
        assert_eq!(rebuilt.encode(text, true), original.encode(text, true), "{text:?}");
    }
    assert!(rebuilt.encode("lower", false).len() == 1, "merges apply in rank order");
    let mut bad = original.parts();
    bad.control_ids.push(9_999);
    assert!(Tokenizer::from_parts(bad).is_err());
}

/// The engine's special-token search before the one-pass matcher: from each
/// position, the earliest occurrence of any special, the longest on ties.
fn reference_split(t: &Tokenizer, text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let hit = t
            .specials
            .iter()
            .filter_map(|(s, id)| rest.find(s.as_str()).map(|p| (p, s.len(), *id)))
            .min_by_key(|&(p, len, _)| (p, usize::MAX - len));
        match hit {
            Some((p, len, id)) => {
                out.extend(t.encode_plain(&rest[..p]));
                out.push(id);
                rest = &rest[p + len..];
            }
            None => {
                out.extend(t.encode_plain(rest));
                rest = "";
            }
        }
    }
    out
}

/// Overlapping control tokens: one a prefix of another, one inside another.
fn tricky_specials() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| vocab(&["<|a|>", "<|a|>b", "|a|", "<|im_end|>"], &["<|a|>", "<|a|>b", "|a|", "<|im_end|>"], &[]))
}

/// Control tokens that plain text could reach: "ab" is a whole regex piece
/// and the merge "a b" would produce it.
fn reachable_specials() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| vocab(&["ab", "<|im_end|>"], &["ab", "<|im_end|>"], &["a b"]))
}

fn fragments() -> impl Strategy<Value = String> {
    let parts =
        vec!["<|a|>", "<|a|>b", "|a|", "<|", "|>", "a", "b", " ", "<|im_end|>", "<|im_", "end|>", "é", "7", "\n"];
    proptest::collection::vec(proptest::sample::select(parts), 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
    #[test]
    fn one_pass_special_matching_splits_as_the_old_search(text in fragments()) {
        let t = tricky_specials();
        prop_assert_eq!(t.encode(&text, false), reference_split(t, &text));
    }

    #[test]
    fn plain_text_never_encodes_to_a_control_token(text in fragments()) {
        let t = reachable_specials();
        let ids = t.encode_plain(&text);
        prop_assert!(ids.iter().all(|&id| !t.is_special(id)), "{:?} -> {:?}", text, ids);
        prop_assert_eq!(t.decode(&ids), text);
    }
}

#[test]
fn control_tokens_come_only_from_the_special_pass() {
    let t = reachable_specials();
    assert_eq!(t.encode("ab<|im_end|>", false), vec![256, 257]);
    assert_eq!(t.encode_plain("ab"), vec![b'a' as u32, b'b' as u32]);
    assert_eq!(t.control_id("<|im_end|>"), Some(257));
    assert_eq!(t.control_id("a"), None, "an ordinary token is no control token");
    assert!(t.parts().merges.is_empty(), "the merge into a control token is dropped");
}

#[test]
fn thousands_of_control_tokens_are_found_in_one_pass() {
    let t = tricky_specials();
    let text = "<|im_end|>x".repeat(20_000);
    let ids = t.encode(&text, false);
    assert_eq!(ids.len(), 40_000);
    assert!(ids.chunks(2).all(|p| p == [259, b'x' as u32]));
}

/// Ids 256.. are "a", "aa", "aaaa", ... "a" x 256 with merges "a a",
/// "aa aa", ...: a run of letters merges all the way, the quadratic rule's
/// worst case.
fn doubling_vocab() -> Tokenizer {
    let runs: Vec<String> = (1..=8).map(|k| "a".repeat(1 << k)).collect();
    let merges: Vec<String> = (0..8).map(|k| format!("{0} {0}", "a".repeat(1 << k))).collect();
    let extra: Vec<&str> = runs.iter().map(String::as_str).collect();
    let merges: Vec<&str> = merges.iter().map(String::as_str).collect();
    vocab(&extra, &[], &merges)
}

#[test]
fn a_256_kib_run_of_letters_costs_linear_merge_work() {
    let t = doubling_vocab();
    let n = 256 * 1024;
    let text = "a".repeat(n);
    let mut ids = Vec::new();
    let work = t.encode_with_specials_into(&text, &mut ids);
    // The quadratic rule would scan ~n pairs for each of n - 1 merges (~7e10).
    assert!(work <= 3 * n, "{work} heap pops for {n} letters");
    let top = 256 + 7; // "a" x 256
    assert_eq!(ids, vec![top; n / 256]);
    // Encoding it in 256-letter chunks gives the same ids.
    let chunk = t.encode_plain(&text[..256]);
    assert_eq!(chunk, vec![top]);
    assert_eq!(ids, chunk.repeat(n / 256));
}
