//! GPT-2 style byte-level BPE built from GGUF metadata.
//!
//! Pipeline (matches SmolLM2's `tokenizer.json` and llama.cpp's `smollm`
//! pre-tokenizer): split out special (control) tokens as whole tokens ->
//! isolate every numeric char (`Digits(individual_digits=true)`) -> GPT-2
//! regex -> map bytes to GPT-2's printable "byte chars" -> merge adjacent
//! pairs by lowest merge rank.

use std::collections::HashMap;

use fancy_regex::Regex;

use crate::error::EngineError;
use crate::gguf::{GgufFile, Value};

/// GPT-2's split regex as used by HF's ByteLevel pre-tokenizer (the trailing
/// `\s+` catches a lone whitespace run before a non-space, e.g. "\na").
const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

const TOKEN_TYPE_CONTROL: i64 = 3;

pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage { role: role.to_string(), content: content.to_string() }
    }
}

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
    pub fn from_gguf_name(name: Option<&str>) -> Result<Self, EngineError> {
        match name {
            None | Some("gpt-2" | "gpt2" | "default") => Ok(PreTokenizer::Gpt2),
            Some("smollm" | "starcoder" | "refact" | "codeshell") => Ok(PreTokenizer::DigitsThenGpt2),
            Some(other) => Err(EngineError::Tokenizer(format!("unsupported pre-tokenizer {other:?}"))),
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
    /// (left, right) -> (rank, merged id)
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Control tokens matched verbatim in text, longest first.
    specials: Vec<(String, u32)>,
    is_special: Vec<bool>,
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

fn str_array(f: &GgufFile, key: &str) -> Result<Vec<String>, EngineError> {
    let arr = f.get(key).and_then(Value::as_array).ok_or_else(|| EngineError::MissingMetadata(key.to_string()))?;
    arr.iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| EngineError::Tokenizer(format!("{key} is not a string array")))
}

impl Tokenizer {
    pub fn from_gguf(f: &GgufFile) -> Result<Self, EngineError> {
        let model = f.get("tokenizer.ggml.model").and_then(Value::as_str).unwrap_or("");
        if model != "gpt2" {
            return Err(EngineError::Tokenizer(format!("unsupported tokenizer model {model:?}")));
        }
        let tokens = str_array(f, "tokenizer.ggml.tokens")?;
        let merges = str_array(f, "tokenizer.ggml.merges")?;
        let types: Vec<i64> = match f.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
            Some(a) => a.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let id = |k: &str| f.get(k).and_then(Value::as_u64).map(|v| v as u32);
        let add_bos = f.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(false);
        let pre = PreTokenizer::from_gguf_name(f.get("tokenizer.ggml.pre").and_then(Value::as_str))?;
        Ok(Self::new(
            tokens,
            &merges,
            &types,
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
            add_bos,
        )?
        .with_pre_tokenizer(pre))
    }

    pub fn with_pre_tokenizer(mut self, pre: PreTokenizer) -> Self {
        self.pre = pre;
        self
    }

    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// Builds a tokenizer from raw vocabulary parts (`merges` as "a b"),
    /// with the plain GPT-2 pre-tokenizer (see `with_pre_tokenizer`).
    pub fn new(
        tokens: Vec<String>,
        merges: &[String],
        types: &[i64],
        bos_id: Option<u32>,
        eos_id: Option<u32>,
        add_bos: bool,
    ) -> Result<Self, EngineError> {
        let n = tokens.len();
        for tid in [bos_id, eos_id].into_iter().flatten() {
            if tid as usize >= n {
                return Err(EngineError::Tokenizer(format!("special id {tid} outside vocab of {n}")));
            }
        }
        let token_to_id: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| EngineError::Tokenizer(format!("bad merge {m:?}")))?;
            let (Some(&ia), Some(&ib), Some(&im)) =
                (token_to_id.get(a), token_to_id.get(b), token_to_id.get(&format!("{a}{b}")))
            else {
                return Err(EngineError::Tokenizer(format!("merge {m:?} refers to unknown tokens")));
            };
            merge_map.entry((ia, ib)).or_insert((rank as u32, im));
        }
        let mut is_special = vec![false; n];
        let mut specials = Vec::new();
        for (i, (t, ty)) in tokens.iter().zip(types.iter().chain(std::iter::repeat(&1))).enumerate() {
            if *ty == TOKEN_TYPE_CONTROL && !t.is_empty() {
                is_special[i] = true;
                specials.push((t.clone(), i as u32));
            }
        }
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        let byte_to_char = bytes_to_unicode();
        let char_to_byte = byte_to_char.iter().enumerate().map(|(b, c)| (*c, b as u8)).collect();
        let regex = Regex::new(GPT2_PATTERN).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(Tokenizer {
            pre: PreTokenizer::Gpt2,
            tokens,
            token_to_id,
            merges: merge_map,
            specials,
            is_special,
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
    /// decides an encoding); duplicate merges were dropped at build time.
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
    pub fn from_parts(parts: TokenizerParts) -> Result<Self, EngineError> {
        let mut types = vec![1i64; parts.tokens.len()];
        for id in parts.control_ids {
            *types
                .get_mut(id as usize)
                .ok_or_else(|| EngineError::Tokenizer(format!("control id {id} outside the vocab")))? =
                TOKEN_TYPE_CONTROL;
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
        let mut buf = [0u8; 4];
        text.bytes().all(|b| self.token_to_id.contains_key(self.byte_to_char[b as usize].encode_utf8(&mut buf) as &str))
    }

    pub fn token_id(&self, s: &str) -> Option<u32> {
        self.token_to_id.get(s).copied()
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.is_special.get(id as usize).copied().unwrap_or(false)
    }

    /// Encodes text. Control tokens written in the text (`<|im_start|>` ...)
    /// become their single ids. `add_special` prepends BOS when the model asks
    /// for it (`tokenizer.ggml.add_bos_token`; false for SmolLM2).
    pub fn encode(&self, text: &str, add_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos_id);
        }
        let mut rest = text;
        while !rest.is_empty() {
            // Earliest special occurrence; on ties the longest (list is sorted by length).
            let hit = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|p| (p, s.len(), *id)))
                .min_by_key(|&(p, len, _)| (p, usize::MAX - len));
            match hit {
                Some((p, len, id)) => {
                    self.encode_ordinary(&rest[..p], &mut out);
                    out.push(id);
                    rest = &rest[p + len..];
                }
                None => {
                    self.encode_ordinary(rest, &mut out);
                    rest = "";
                }
            }
        }
        out
    }

    fn encode_ordinary(&self, text: &str, out: &mut Vec<u32>) {
        if self.pre == PreTokenizer::Gpt2 {
            return self.encode_regex_pieces(text, out);
        }
        // Digits(individual_digits): every numeric char is its own piece.
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c.is_numeric() {
                self.encode_regex_pieces(&text[start..i], out);
                self.bpe(&text[i..i + c.len_utf8()], out);
                start = i + c.len_utf8();
            }
        }
        self.encode_regex_pieces(&text[start..], out);
    }

    fn encode_regex_pieces(&self, text: &str, out: &mut Vec<u32>) {
        let mut last = 0;
        for m in self.regex.find_iter(text) {
            match m {
                Ok(m) => {
                    // The final `\s+` alternative means the regex covers every
                    // char; encode any gap anyway so no input is ever dropped.
                    if m.start() > last {
                        self.bpe(&text[last..m.start()], out);
                    }
                    self.bpe(m.as_str(), out);
                    last = m.end();
                }
                Err(_) => break, // backtrack limit: fall through to encode the rest whole
            }
        }
        if last < text.len() {
            self.bpe(&text[last..], out);
        }
    }

    fn bpe(&self, piece: &str, out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        let mapped: String = piece.bytes().map(|b| self.byte_to_char[b as usize]).collect();
        if let Some(&id) = self.token_to_id.get(&mapped) {
            out.push(id);
            return;
        }
        let mut syms: Vec<u32> = Vec::with_capacity(mapped.len());
        let mut buf = [0u8; 4];
        for c in mapped.chars() {
            match self.token_to_id.get(c.encode_utf8(&mut buf) as &str) {
                Some(&id) => syms.push(id),
                // A vocab missing a byte char cannot encode it: skip, as the
                // alternative (a panic) is worse; real GPT-2 vocabs have all 256.
                None => continue,
            }
        }
        loop {
            let best = syms
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| self.merges.get(&(w[0], w[1])).map(|&(r, m)| (r, i, m)))
                .min();
            let Some((_, i, merged)) = best else { break };
            syms[i] = merged;
            syms.remove(i + 1);
        }
        out.extend_from_slice(&syms);
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

    /// SmolLM2-Instruct's chat template (`tokenizer.chat_template`): a default
    /// system turn when the first message is not one, each message as
    /// `<|im_start|>role\ncontent<|im_end|>\n`, then the assistant prompt.
    pub fn apply_chat_template(messages: &[ChatMessage]) -> String {
        let mut s = String::new();
        if messages.first().is_some_and(|m| m.role != "system") {
            s.push_str("<|im_start|>system\n");
            s.push_str(DEFAULT_SYSTEM_PROMPT);
            s.push_str("<|im_end|>\n");
        }
        for m in messages {
            s.push_str("<|im_start|>");
            s.push_str(&m.role);
            s.push('\n');
            s.push_str(&m.content);
            s.push_str("<|im_end|>\n");
        }
        s.push_str("<|im_start|>assistant\n");
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        let m = bytes_to_unicode();
        let mut tokens: Vec<String> = m.iter().map(|c| c.to_string()).collect();
        tokens.push("12".into());
        let t = Tokenizer::new(tokens, &["1 2".to_string()], &[], None, None, false).unwrap();
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

    #[test]
    fn chat_template_adds_default_system_prompt() {
        let s = Tokenizer::apply_chat_template(&[ChatMessage::new("user", "Hi")]);
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let s = Tokenizer::apply_chat_template(&[ChatMessage::new("system", "S"), ChatMessage::new("user", "Hi")]);
        assert_eq!(s, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }
}
