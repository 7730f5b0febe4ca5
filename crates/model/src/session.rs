//! Per-sequence state: every layer's KV cache, preallocated for the whole context and written in
//! place, and the RoPE tables for every position it can hold.

use burn::tensor::Tensor;
use burrow_gpu::KvCache;

use crate::rope::RopeTable;

/// One layer's keys and values.
pub(crate) enum LayerCache {
    /// Burn tensors `[n_head_kv, n_ctx, head_dim]` each (the CPU reference). `None` only within
    /// the statement that writes them (`slice_assign` takes them by value, and a second owner
    /// would make it copy the whole cache).
    Tensors(Option<(Tensor<3>, Tensor<3>)>),
    /// Buffers the kernels write in place: f16 for the GPU family, f32 for the CPU-adapter family.
    Gpu(KvCache),
}

/// A sequence: its KV cache and RoPE tables, and how many positions it holds.
///
/// A token's cache slot is usually its rotary position too. After an image in an M-RoPE model
/// (Qwen2-VL) it is not: the image's tokens take a slot each but advance the position only by
/// the image's longer side, so the text after it is rotated at its slot minus a shift.
pub struct Session {
    pub(crate) caches: Vec<LayerCache>,
    /// Global layers use `ropes[0]`, sliding-window layers `ropes[1]` when it exists.
    pub(crate) ropes: Vec<RopeTable>,
    pub(crate) n_ctx: usize,
    pub(crate) pos: usize,
    /// Where the shift (slot − rotary position) of the text changes: `(first slot, shift)`, in
    /// slot order; none before the first image.
    pub(crate) shifts: Vec<(usize, usize)>,
    /// Makes the next step fail at this layer, after the layer wrote its cache (tests).
    pub(crate) fail_at: Option<usize>,
}

impl Session {
    /// Number of positions already in the cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn context_length(&self) -> usize {
        self.n_ctx
    }

    /// The rotary position of the next text token: [`Session::position`] until an image in an
    /// M-RoPE model shifts them apart.
    pub fn rope_position(&self) -> usize {
        self.pos - self.shift()
    }

    /// Slot − rotary position of the next text token.
    pub(crate) fn shift(&self) -> usize {
        self.shifts.last().map_or(0, |&(_, shift)| shift)
    }

    /// Forget positions from `pos` on (for example to reuse a shared prompt prefix). `pos` must
    /// not fall inside an image evaluated with its own positions (its rows are evaluated whole).
    pub fn truncate(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
        let kept = self.pos;
        self.shifts.retain(|&(from, _)| from <= kept);
    }

    /// Bytes of memory the KV cache takes (keys and values of every layer and position).
    pub fn kv_cache_bytes(&self) -> usize {
        self.caches
            .iter()
            .map(|c| match c {
                LayerCache::Gpu(cache) => cache.bytes(),
                LayerCache::Tensors(kv) => kv.as_ref().map_or(0, |(k, v)| 4 * (k.dims().iter().product::<usize>() + v.dims().iter().product::<usize>())),
            })
            .sum()
    }

    /// Makes the next forward step fail at `layer`, after that layer wrote its KV cache: a fault a
    /// test injects to check that a failed step leaves the session usable.
    #[doc(hidden)]
    pub fn fail_next_step_at_layer(&mut self, layer: usize) {
        self.fail_at = Some(layer);
    }
}
