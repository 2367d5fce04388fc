//! The model side of the scheduler.

/// One sequence's tokens in a step.
pub struct SeqInput<'a, S> {
    /// The sequence's state (its KV cache space).
    pub seq: &'a mut S,
    /// Tokens to append at the sequence's current end.
    pub tokens: &'a [u32],
    /// Whether the logits after the last token are needed (false for a
    /// prompt chunk that is not the prompt's last; the model may then
    /// return an empty vector for this input).
    pub wants_logits: bool,
}

/// A model that can evaluate several sequences in one forward pass.
pub trait BatchModel: Send + 'static {
    /// Per-sequence state, typically a KV cache.
    type Seq: Send;
    /// The model's error type.
    type Error: std::fmt::Display;

    /// Context size of one sequence.
    fn n_ctx(&self) -> usize;
    /// A new, empty sequence.
    fn new_seq(&mut self) -> Result<Self::Seq, Self::Error>;
    /// Keep only the first `len` positions of `seq` (the rest are
    /// overwritten by the next tokens), so that a finished sequence can serve
    /// a request whose prompt starts with the same tokens; `false` when the
    /// model cannot (the scheduler then starts a new sequence). The default
    /// cannot.
    fn truncate(&mut self, seq: &mut Self::Seq, len: usize) -> bool {
        let _ = (seq, len);
        false
    }
    /// Append each input's tokens to its sequence and return, for each input
    /// in order, the logits after its last token.
    fn step(
        &mut self,
        inputs: &mut [SeqInput<'_, Self::Seq>],
    ) -> Result<Vec<Vec<f32>>, Self::Error>;
}
