//! The chat template (SmolLM2-Instruct's ChatML, `tokenizer.chat_template`):
//! a default system turn when the first message is not one, each message as
//! `<|im_start|>role\ncontent<|im_end|>\n`, then the assistant prompt.

use crate::tokenizer::Tokenizer;

pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The roles the template knows; the edges (worker, scheduler) refuse others.
pub const ROLES: [&str; 3] = ["system", "user", "assistant"];

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

/// The template as text.
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

/// Encodes chat messages with the model's chat template (SmolLM2's ChatML).
pub fn chat_prompt(tokenizer: &Tokenizer, messages: &[ChatMessage]) -> Vec<u32> {
    tokenizer.encode(&apply_chat_template(messages), true)
}
