//! [`SharedOut`]: one output matrix written by several threads at once, each into its own parts.

/// An output matrix shared by the tasks of one call (a GEMM's panels, attention's heads), each writing its own
/// disjoint ranges; the caller waits for every task before reading it.
pub struct SharedOut(*mut f32, usize);

// SAFETY: tasks write disjoint ranges (the contract of `slice`), and the owner waits for every task.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Shares `out` for the lifetime of the tasks (the caller keeps it borrowed no longer than they run).
    pub fn new(out: &mut [f32]) -> Self {
        Self(out.as_mut_ptr(), out.len())
    }

    /// Shares `len` values at `ptr` without borrowing them (threads that write other parts of the same matrix
    /// at the same time hold no reference to the whole).
    ///
    /// # Safety
    /// `ptr` points at `len` values that outlive the tasks, each written by one task at most.
    pub unsafe fn from_raw(ptr: *mut f32, len: usize) -> Self {
        Self(ptr, len)
    }

    /// `len` values from `at` on, to write.
    ///
    /// # Safety
    /// No other thread touches `at..at + len` while the slice lives, and the matrix passed to
    /// [`SharedOut::new`] outlives it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(
            at + len <= self.1,
            "SharedOut: a write past the matrix's end"
        );
        std::slice::from_raw_parts_mut(self.0.add(at), len)
    }
}
