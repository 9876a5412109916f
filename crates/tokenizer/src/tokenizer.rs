//! GPT-2 style byte-level BPE built from a model's vocabulary and merges.
//!
//! Pipeline (matches SmolLM2's `tokenizer.json` and llama.cpp's `smollm`
//! pre-tokenizer): split out special (control) tokens as whole tokens ->
//! isolate every numeric char (`Digits(individual_digits=true)`) -> GPT-2
//! regex -> map bytes to GPT-2's printable "byte chars" -> merge adjacent
//! pairs by lowest merge rank (`bpe`).
//!
//! Control tokens come only from `encode`'s special-token pass, never from
//! plain text: byte symbols, whole-piece lookups and merges that would give a
//! control id are left out when the tokenizer is built. `encode_plain` (chat
//! content, role names) therefore cannot produce one, whatever the text says.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use fancy_regex::Regex;

use crate::bpe::{self, MergeMap};
use crate::error::TokenizerError;

/// GPT-2's split regex as used by HF's ByteLevel pre-tokenizer (the trailing
/// `\s+` catches a lone whitespace run before a non-space, e.g. "\na").
const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// GGUF `tokenizer.ggml.token_type` of control tokens.
pub const TOKEN_TYPE_CONTROL: i64 = 3;

/// Pre-tokenizer variants (GGUF `tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's regex alone (`gpt-2` and GGUFs without the key).
    Gpt2,
    /// Every numeric char split out first, then GPT-2's regex (`smollm`,
    /// StarCoder-family vocabularies; llama.cpp's LLAMA_VOCAB_PRE_TYPE_SMOLLM).
    DigitsThenGpt2,
}

impl PreTokenizer {
    pub fn from_gguf_name(name: Option<&str>) -> Result<Self, TokenizerError> {
        match name {
            None | Some("gpt-2" | "gpt2" | "default") => Ok(PreTokenizer::Gpt2),
            Some("smollm" | "starcoder" | "refact" | "codeshell") => Ok(PreTokenizer::DigitsThenGpt2),
            Some(other) => Err(TokenizerError::new(format!("unsupported pre-tokenizer {other:?}"))),
        }
    }

    /// The GGUF name `from_gguf_name` reads back as this variant.
    pub fn gguf_name(self) -> &'static str {
        match self {
            PreTokenizer::Gpt2 => "gpt-2",
            PreTokenizer::DigitsThenGpt2 => "smollm",
        }
    }
}

/// What a tokenizer is made of, so another process can rebuild the same one
/// (the scheduler counts prompt tokens at admission with its workers' own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerParts {
    pub tokens: Vec<String>,
    /// "left right", in rank order (lowest merged first).
    pub merges: Vec<String>,
    /// Control tokens, matched verbatim in text.
    pub control_ids: Vec<u32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
    pub pre: PreTokenizer,
}

pub struct Tokenizer {
    pre: PreTokenizer,
    tokens: Vec<String>,
    token_to_id: HashMap<String, u32>,
    merges: MergeMap,
    /// Control tokens matched verbatim in text, longest first.
    specials: Vec<(String, u32)>,
    /// One pass over the text finds them all: leftmost match, the longest on
    /// ties (`specials[pattern index]`). `None` without control tokens.
    special_matcher: Option<AhoCorasick>,
    is_special: Vec<bool>,
    /// Each byte's token (its GPT-2 byte char), unless the vocab lacks it.
    byte_ids: [Option<u32>; 256],
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    regex: Regex,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
}

/// GPT-2's reversible map from bytes to printable unicode chars.
fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        map[b as usize] = char::from_u32(c).unwrap_or('\0');
    }
    map
}

impl Tokenizer {
    pub fn with_pre_tokenizer(mut self, pre: PreTokenizer) -> Self {
        self.pre = pre;
        self
    }

    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// Builds a tokenizer from raw vocabulary parts (`merges` as "a b",
    /// `types` as GGUF token types, missing ones normal), with the plain
    /// GPT-2 pre-tokenizer (see `with_pre_tokenizer`).
    pub fn new(
        tokens: Vec<String>,
        merges: &[String],
        types: &[i64],
        bos_id: Option<u32>,
        eos_id: Option<u32>,
        add_bos: bool,
    ) -> Result<Self, TokenizerError> {
        let n = tokens.len();
        for tid in [bos_id, eos_id].into_iter().flatten() {
            if tid as usize >= n {
                return Err(TokenizerError::new(format!("special id {tid} outside vocab of {n}")));
            }
        }
        let token_to_id: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let mut is_special = vec![false; n];
        let mut specials = Vec::new();
        for (i, (t, ty)) in tokens.iter().zip(types.iter().chain(std::iter::repeat(&1))).enumerate() {
            if *ty == TOKEN_TYPE_CONTROL && !t.is_empty() {
                is_special[i] = true;
                specials.push((t.clone(), i as u32));
            }
        }
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        let mut merge_map = MergeMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| TokenizerError::new(format!("bad merge {m:?}")))?;
            let (Some(&ia), Some(&ib), Some(&im)) =
                (token_to_id.get(a), token_to_id.get(b), token_to_id.get(&format!("{a}{b}")))
            else {
                return Err(TokenizerError::new(format!("merge {m:?} refers to unknown tokens")));
            };
            // Plain text must never merge into a control token.
            if is_special[im as usize] {
                continue;
            }
            merge_map.entry((ia, ib)).or_insert((rank as u32, im));
        }
        let special_matcher = if specials.is_empty() {
            None
        } else {
            let matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(specials.iter().map(|(s, _)| s.as_str()))
                .map_err(|e| TokenizerError::new(format!("control tokens: {e}")))?;
            Some(matcher)
        };
        let byte_to_char = bytes_to_unicode();
        let mut byte_ids = [None; 256];
        let mut buf = [0u8; 4];
        for (b, c) in byte_to_char.iter().enumerate() {
            byte_ids[b] =
                token_to_id.get(c.encode_utf8(&mut buf) as &str).copied().filter(|&id| !is_special[id as usize]);
        }
        let char_to_byte = byte_to_char.iter().enumerate().map(|(b, c)| (*c, b as u8)).collect();
        let regex = Regex::new(GPT2_PATTERN).map_err(|e| TokenizerError::new(e.to_string()))?;
        Ok(Tokenizer {
            pre: PreTokenizer::Gpt2,
            tokens,
            token_to_id,
            merges: merge_map,
            specials,
            special_matcher,
            is_special,
            byte_ids,
            byte_to_char,
            char_to_byte,
            regex,
            bos_id,
            eos_id,
            add_bos,
        })
    }

    /// The parts `from_parts` rebuilds an identical tokenizer from. Merge
    /// ranks come back renumbered from 0 in the same order (only their order
    /// decides an encoding); duplicate merges, and merges into a control
    /// token, were dropped at build time.
    pub fn parts(&self) -> TokenizerParts {
        let mut ranked: Vec<(u32, u32, u32)> = self.merges.iter().map(|(&(a, b), &(rank, _))| (rank, a, b)).collect();
        ranked.sort_unstable();
        let name = |id: u32| self.tokens[id as usize].as_str();
        TokenizerParts {
            tokens: self.tokens.clone(),
            merges: ranked.iter().map(|&(_, a, b)| format!("{} {}", name(a), name(b))).collect(),
            control_ids: self.specials.iter().map(|&(_, id)| id).collect(),
            bos_id: self.bos_id,
            eos_id: self.eos_id,
            add_bos: self.add_bos,
            pre: self.pre,
        }
    }

    /// Rebuilds a tokenizer from `parts` (as sent by another process: every
    /// id is checked).
    pub fn from_parts(parts: TokenizerParts) -> Result<Self, TokenizerError> {
        let mut types = vec![1i64; parts.tokens.len()];
        for id in parts.control_ids {
            *types
                .get_mut(id as usize)
                .ok_or_else(|| TokenizerError::new(format!("control id {id} outside the vocab")))? = TOKEN_TYPE_CONTROL;
        }
        Ok(Self::new(parts.tokens, &parts.merges, &types, parts.bos_id, parts.eos_id, parts.add_bos)?
            .with_pre_tokenizer(parts.pre))
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Whether every byte of `text` has a byte-level token. SmolLM2's vocab
    /// lacks 21 byte values (e.g. 0x04, 0xC0, 0xF1): text containing them
    /// cannot round-trip; those bytes are dropped on encode, as HF does with
    /// no unknown token configured.
    pub fn can_encode(&self, text: &str) -> bool {
        text.bytes().all(|b| self.byte_ids[b as usize].is_some())
    }

    pub fn token_id(&self, s: &str) -> Option<u32> {
        self.token_to_id.get(s).copied()
    }

    /// The id of the control token written `text` (e.g. `<|im_start|>`).
    pub fn control_id(&self, text: &str) -> Option<u32> {
        self.token_id(text).filter(|&id| self.is_special(id))
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.is_special.get(id as usize).copied().unwrap_or(false)
    }

    /// Encodes text in which control tokens written out (`<|im_start|>` ...)
    /// become their single ids: for text the caller wrote whole (a raw
    /// prompt), never for text pasted into a template (see `encode_plain`).
    /// `add_special` prepends BOS when the model asks for it
    /// (`tokenizer.ggml.add_bos_token`; false for SmolLM2).
    pub fn encode(&self, text: &str, add_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos_id);
        }
        self.encode_with_specials_into(text, &mut out);
        out
    }

    /// Encodes text as plain text: control tokens written in it stay text
    /// (`<|im_end|>` becomes the ids of "<|", "im", ...), and no BOS.
    pub fn encode_plain(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.plain_into(text, &mut out);
        out
    }

    /// Appends `text`'s plain encoding to `out` (see `encode_plain`).
    pub fn encode_plain_into(&self, text: &str, out: &mut Vec<u32>) {
        self.plain_into(text, out);
    }

    /// One pass for control tokens; the text between them is plain.
    /// Answers the merge work done (heap pops, see `bpe`).
    fn encode_with_specials_into(&self, text: &str, out: &mut Vec<u32>) -> usize {
        let Some(matcher) = &self.special_matcher else { return self.plain_into(text, out) };
        let mut work = 0;
        let mut last = 0;
        for m in matcher.find_iter(text) {
            work += self.plain_into(&text[last..m.start()], out);
            out.push(self.specials[m.pattern().as_usize()].1);
            last = m.end();
        }
        work + self.plain_into(&text[last..], out)
    }

    fn plain_into(&self, text: &str, out: &mut Vec<u32>) -> usize {
        if self.pre == PreTokenizer::Gpt2 {
            return self.encode_regex_pieces(text, out);
        }
        // Digits(individual_digits): every numeric char is its own piece.
        let mut work = 0;
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c.is_numeric() {
                work += self.encode_regex_pieces(&text[start..i], out);
                work += self.bpe(&text[i..i + c.len_utf8()], out);
                start = i + c.len_utf8();
            }
        }
        work + self.encode_regex_pieces(&text[start..], out)
    }

    fn encode_regex_pieces(&self, text: &str, out: &mut Vec<u32>) -> usize {
        let mut work = 0;
        let mut last = 0;
        for m in self.regex.find_iter(text) {
            match m {
                Ok(m) => {
                    // The final `\s+` alternative means the regex covers every
                    // char; encode any gap anyway so no input is ever dropped.
                    if m.start() > last {
                        work += self.bpe(&text[last..m.start()], out);
                    }
                    work += self.bpe(m.as_str(), out);
                    last = m.end();
                }
                Err(_) => break, // backtrack limit: fall through to encode the rest whole
            }
        }
        if last < text.len() {
            work += self.bpe(&text[last..], out);
        }
        work
    }

    /// One piece: its whole token if the vocab has one, else its bytes merged.
    fn bpe(&self, piece: &str, out: &mut Vec<u32>) -> usize {
        if piece.is_empty() {
            return 0;
        }
        let mapped: String = piece.bytes().map(|b| self.byte_to_char[b as usize]).collect();
        if let Some(&id) = self.token_to_id.get(&mapped)
            && !self.is_special(id)
        {
            out.push(id);
            return 0;
        }
        // A vocab missing a byte char cannot encode it: skip, as the
        // alternative (a panic) is worse; real GPT-2 vocabs have all 256.
        let mut syms: Vec<u32> = piece.bytes().filter_map(|b| self.byte_ids[b as usize]).collect();
        let work = bpe::merge(&mut syms, &self.merges);
        out.extend_from_slice(&syms);
        work
    }

    /// The raw bytes of a token (specials as their text). Unknown ids give nothing.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(t) = self.tokens.get(id as usize) else { return Vec::new() };
        if self.is_special(id) {
            return t.as_bytes().to_vec();
        }
        let mut out = Vec::with_capacity(t.len());
        for c in t.chars() {
            match self.char_to_byte.get(&c) {
                Some(&b) => out.push(b),
                None => out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
            }
        }
        out
    }

    /// Decodes ids to text (invalid UTF-8 sequences become U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.token_bytes(id)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// GPT-2's 256 byte chars, as tokens 0..256 of a test vocabulary.
    pub fn byte_chars() -> Vec<String> {
        super::bytes_to_unicode().iter().map(|c| c.to_string()).collect()
    }
}

#[cfg(test)]
#[path = "tokenizer_tests.rs"]
mod tests;
