//! The team mode of [`QuantEncoder::forward`]: a small batch whose matrices are all f32 or on the integer GEMM
//! runs as one team of the pool's threads (`rayon::broadcast` once a pass), each member computing its share of
//! every step and meeting the others at a spinning barrier between steps.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{activate_serial, Linear, Qkv, QuantEncoder, Workspace, SCRATCH};
use crate::encoder_ops as ops;
use crate::error::{QuantError, Result};
use crate::kernels::simd::Tier;

/// A barrier for the threads of one forward pass that spins instead of sleeping: the team mode of
/// [`QuantEncoder::forward`] meets at one after every step of a layer (eight a layer), where waking sleeping threads
/// would cost tens of microseconds each time. After a few thousand spins a waiting thread yields its core.
struct SpinBarrier {
    threads: usize,
    count: AtomicUsize,
    generation: AtomicUsize,
    /// Set when a member panicked: the others stop waiting and panic too, instead of spinning for ever.
    poisoned: AtomicBool,
}

impl SpinBarrier {
    fn new(threads: usize) -> Self {
        Self {
            threads,
            count: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            // The last to arrive resets the count before releasing the others, so none can count into the next
            // wait early.
            self.count.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            assert!(
                !self.poisoned.load(Ordering::Relaxed),
                "another thread of the encoder's team panicked"
            );
            spins = spins.saturating_add(1);
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Marks the barrier poisoned when its member unwinds.
struct PoisonOnPanic<'a>(&'a SpinBarrier);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Relaxed);
        }
    }
}

/// The buffers of a team pass, shared by its members: each step writes disjoint parts (its columns or rows)
/// and reads only what a barrier has finished.
#[derive(Clone, Copy)]
struct TeamBuffers {
    x: *mut f32,
    qkv: *mut f32,
    context: *mut f32,
    attn: *mut f32,
    inner: *mut f32,
}

// SAFETY: members write disjoint parts between barriers and read only parts finished before the last barrier;
// the buffers outlive the broadcast that uses them.
unsafe impl Send for TeamBuffers {}
unsafe impl Sync for TeamBuffers {}

impl QuantEncoder {
    /// The layers of a small batch as one team of the pool's threads (`ws.x` holding the embeddings, left
    /// holding the last hidden states).
    pub(super) fn run_team(
        &self,
        ws: &mut Workspace,
        ids: &[Vec<u32>],
        offsets: &[usize],
        tier: Tier,
    ) -> Result<()> {
        let (h, f) = (self.config.hidden_size, self.config.intermediate_size);
        let n: usize = ids.iter().map(Vec::len).sum();
        ws.qkv[0].resize(n * 3 * h, 0.0);
        ws.context.resize(n * h, 0.0);
        ws.attn.resize(n * h, 0.0);
        ws.inner.resize(n * f, 0.0);
        let buffers = TeamBuffers {
            x: ws.x.as_mut_ptr(),
            qkv: ws.qkv[0].as_mut_ptr(),
            context: ws.context.as_mut_ptr(),
            attn: ws.attn.as_mut_ptr(),
            inner: ws.inner.as_mut_ptr(),
        };
        let barrier = SpinBarrier::new(rayon::current_num_threads());
        let results = rayon::broadcast(|ctx| {
            let _poison = PoisonOnPanic(&barrier);
            // SAFETY: the buffers have the sizes set above and live until broadcast returns; the member keeps
            // to its parts between barriers (see `team_member`).
            unsafe {
                self.team_member(
                    ctx.index(),
                    ctx.num_threads(),
                    ids,
                    offsets,
                    buffers,
                    &barrier,
                    tier,
                )
            }
        });
        results.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(())
    }

    /// One thread's part of every layer in team mode: member `t` of `threads` computes its share of the stacked
    /// Q, K, V matrix, the attention of its heads, its shares of the output, intermediate and FFN matrices, and
    /// its rows of the activation and of both LayerNorms; the team meets at `barrier` after each step. A member
    /// whose step fails keeps meeting the others (so none waits for ever) and returns the first error.
    ///
    /// # Safety
    /// The buffers hold `x: [n, h]`, `qkv: [n, 3h]`, `context`, `attn: [n, h]` and `inner: [n, intermediate]`
    /// (n the tokens of `ids`), `x` holding the embeddings; every member of the team runs this with the same
    /// arguments but `t`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn team_member(
        &self,
        t: usize,
        threads: usize,
        ids: &[Vec<u32>],
        offsets: &[usize],
        b: TeamBuffers,
        barrier: &SpinBarrier,
        tier: Tier,
    ) -> Result<()> {
        use std::slice::{from_raw_parts, from_raw_parts_mut};
        let h = self.config.hidden_size;
        let f = self.config.intermediate_size;
        let heads = self.config.num_attention_heads;
        let d = h / heads;
        let n: usize = ids.iter().map(Vec::len).sum();
        let scale = 1.0 / (d as f32).sqrt();
        let (r0, r1) = (t * n / threads, (t + 1) * n / threads);
        let (h0, h1) = (t * heads / threads, (t + 1) * heads / threads);
        let mut failed: Option<QuantError> = None;
        let mut share = |m: &Linear, x: *const f32, y: *mut f32| {
            if let Err(e) = m.forward_share(x, n, y, t, threads) {
                failed.get_or_insert(e);
            }
        };
        for layer in &self.layers {
            let Qkv::Fused(qkv, _) = &layer.qkv else {
                unreachable!("team mode runs only stacked Q, K, V");
            };
            // 1. This member's share of Q, K and V.
            share(qkv, b.x, b.qkv);
            barrier.wait();
            // 2. Its heads' attention, into their columns of the context.
            let all = from_raw_parts(b.qkv, n * 3 * h);
            SCRATCH.with(|scratch| {
                let (scratch, out) = &mut *scratch.borrow_mut();
                for (s, seq) in ids.iter().enumerate() {
                    let (o, len) = (offsets[s], seq.len());
                    out.resize(len * d, 0.0);
                    for hd in h0..h1 {
                        let at = |part: usize| &all[o * 3 * h + part * h + hd * d..];
                        let head = ops::Head {
                            q: at(0),
                            k: at(1),
                            v: at(2),
                            stride: 3 * h,
                            len,
                            d,
                            scale,
                        };
                        ops::attend_head(tier, head, scratch, out);
                        for (i, row) in out.chunks_exact(d).enumerate() {
                            from_raw_parts_mut(b.context.add((o + i) * h + hd * d), d)
                                .copy_from_slice(row);
                        }
                    }
                }
            });
            barrier.wait();
            // 3. Its share of the attention output.
            share(&layer.output, b.context, b.attn);
            barrier.wait();
            // 4. LayerNorm of its rows, with the layer's input as the residual.
            let rows = (r1 - r0) * h;
            layer.attention_norm.apply_serial(
                tier,
                from_raw_parts_mut(b.attn.add(r0 * h), rows),
                Some(from_raw_parts(b.x.add(r0 * h), rows)),
            );
            barrier.wait();
            // 5. Its share of the intermediate matrix, then the activation of its rows.
            share(&layer.intermediate, b.attn, b.inner);
            barrier.wait();
            activate_serial(
                tier,
                self.activation,
                from_raw_parts_mut(b.inner.add(r0 * f), (r1 - r0) * f),
            );
            barrier.wait();
            // 6. Its share of the FFN output, over the layer's input (read for the last time in step 4).
            share(&layer.ffn_output, b.inner, b.x);
            barrier.wait();
            // 7. LayerNorm of its rows: the layer's output.
            layer.output_norm.apply_serial(
                tier,
                from_raw_parts_mut(b.x.add(r0 * h), rows),
                Some(from_raw_parts(b.attn.add(r0 * h), rows)),
            );
            barrier.wait();
        }
        failed.map_or(Ok(()), Err)
    }
}
