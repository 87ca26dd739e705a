//! Kubernetes Events as both components write them: one shape, one note limit.

use kube::runtime::events::{Event, EventType};

/// The API server refuses event notes over 1 kB.
pub const MAX_NOTE_BYTES: usize = 1024;

/// An Event of `reason` with `note` cut to what the API server accepts.
pub fn event(warning: bool, reason: &str, note: &str) -> Event {
    Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(truncate(note, MAX_NOTE_BYTES).to_string()),
        action: "Reconcile".to_string(),
        secondary: None,
    }
}

/// The longest prefix of `s` within `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_character_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        // "é" is two bytes: cutting inside it would make invalid UTF-8.
        assert_eq!(truncate("aé", 2), "a");
        let long = "é".repeat(600);
        let note = event(true, "X", &long).note.unwrap();
        assert!(note.len() <= MAX_NOTE_BYTES && note.len() > MAX_NOTE_BYTES - 2);
    }
}
