//! A raw output pointer shared by parallel tasks that write disjoint elements.

/// A pointer into an output buffer that parallel tasks share. Every user
/// must guarantee that tasks write disjoint elements and that the buffer
/// outlives the parallel loop.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub *mut f32);

// SAFETY: the pointer is only dereferenced for disjoint elements by tasks of
// a parallel loop that joins before the buffer is touched again (see users).
unsafe impl Send for SyncPtr {}
// SAFETY: as above.
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// Write `v` at `i`.
    ///
    /// # Safety
    /// `i` is inside the buffer and no other task accesses element `i`
    /// during the loop.
    #[inline]
    pub unsafe fn write(self, i: usize, v: f32) {
        // SAFETY: guaranteed by the caller.
        unsafe { *self.0.add(i) = v };
    }
}
