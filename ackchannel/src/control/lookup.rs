//! Finding the group that holds a connection: the authority asks in the
//! replies it sends its members anyway, a few connections per reply in
//! turn, and collects the answers of the members that hold one.

use hydra_base::ConnKey;

use super::messages::MAX_KEYS_PER_MESSAGE;

/// Connections asked about at once at most.
pub const MAX_QUESTIONS: usize = 4096;
/// Answers kept until the caller takes them at most.
const MAX_ANSWERS: usize = 4096;

/// The questions an authority's replies carry and the answers they got.
#[derive(Debug, Default)]
pub(super) struct Lookup {
    questions: Vec<ConnKey>,
    /// Where the next reply's questions start: every question goes out
    /// in turn, whatever their number.
    cursor: usize,
    answers: Vec<ConnKey>,
    /// Answers dropped because nobody took the earlier ones.
    pub(super) dropped: u64,
}

impl Lookup {
    pub(super) fn set_questions(&mut self, mut questions: Vec<ConnKey>) {
        questions.truncate(MAX_QUESTIONS);
        self.questions = questions;
        self.cursor = 0;
    }

    /// The questions for the next reply.
    pub(super) fn next_batch(&mut self) -> Vec<ConnKey> {
        let n = self.questions.len();
        if n == 0 {
            return Vec::new();
        }
        let take = n.min(MAX_KEYS_PER_MESSAGE);
        let batch = (0..take)
            .map(|i| self.questions[(self.cursor + i) % n])
            .collect();
        self.cursor = (self.cursor + take) % n;
        batch
    }

    pub(super) fn answered(&mut self, keys: Vec<ConnKey>) {
        for key in keys {
            if self.answers.len() >= MAX_ANSWERS {
                self.dropped += 1;
            } else if !self.answers.contains(&key) {
                self.answers.push(key);
            }
        }
    }

    pub(super) fn take_answers(&mut self) -> Vec<ConnKey> {
        std::mem::take(&mut self.answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> ConnKey {
        ConnKey {
            local: "198.18.100.1:7".parse().unwrap(),
            remote: std::net::SocketAddr::new([198, 18, 0, 2].into(), port),
        }
    }

    #[test]
    fn every_question_goes_out_in_turn_and_answers_are_bounded() {
        let mut l = Lookup::default();
        assert!(l.next_batch().is_empty());
        l.set_questions((0..40).map(key).collect());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let batch = l.next_batch();
            assert_eq!(batch.len(), MAX_KEYS_PER_MESSAGE);
            seen.extend(batch);
        }
        assert_eq!(seen.len(), 40, "three replies ask all 40");
        l.set_questions(vec![key(1)]);
        assert_eq!(l.next_batch(), vec![key(1)]);
        l.set_questions((0..u16::MAX).map(key).collect());
        assert_eq!(l.questions.len(), MAX_QUESTIONS);

        l.answered(vec![key(1), key(1), key(2)]);
        assert_eq!(l.take_answers(), vec![key(1), key(2)], "duplicates merged");
        assert!(l.take_answers().is_empty());
        l.answered((0..u16::MAX).map(key).collect());
        assert_eq!(l.take_answers().len(), MAX_ANSWERS);
        assert_eq!(l.dropped, u64::from(u16::MAX) - MAX_ANSWERS as u64);
    }
}
