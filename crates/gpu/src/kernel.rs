//! The CPU-adapter family's matrix kernels (`qmatvec.wgsl`, `qmatvec_unrolled.wgsl`,
//! `qmatmul.wgsl`) and the embedding lookup (`qembed.wgsl`): a kernel file followed by the shared
//! byte readers (`qcommon.wgsl`, `bits.wgsl`), one type's `dequant32` (`dequant/<type>.wgsl`) and,
//! for `qmatvec.wgsl`, its 4-row `dot_unit` (`dot4/<type>.wgsl` or `dot4/generic.wgsl`); or
//! `qmatvec_unrolled.wgsl` with `bits.wgsl`, one type's `dotw` (`dot_words/<type>.wgsl`) and the row
//! it generates. And [`dispatch`], which launches every kernel of this crate.

use burn::backend::wgpu::{CubeDim, CubeTensor, KernelSource, SourceKernel, SourceTemplate};
use burn::backend::{Cube, CubeDevice};
use burn::cubecl::client::Client;
use burn::cubecl::prelude::{CubeCount, KernelId};
use burn::cubecl::server::{Handle, KernelArguments, MetadataBindingInfo};
use burn::tensor::{DType, Shape, Tensor};

use crate::device::{count_launch, MAX_WORKGROUPS_PER_DIM};
use crate::error::GpuError;
use crate::shaders::{self, PARAM_VEC4S, WORKGROUP_SIZE};
use burrow_gguf::GgmlType;

/// Invocations per workgroup of `qmatvec.wgsl`: SwiftShader runs a workgroup on one thread, and
/// with 64 a 576-row matrix was 3 workgroups (0.75x as fast as with 16).
pub(crate) const MATVEC_WORKGROUP_SIZE: usize = 16;
/// Rows per invocation of `qmatvec.wgsl` (its ROWS).
pub(crate) const MATVEC_ROWS: usize = 4;
/// Tokens per invocation of the tiled kernel: each dequantized chunk is reused this many times.
pub(crate) const TOKEN_TILE: usize = 8;
/// The GPU family's prefill kernel (`shaders/matmul_tiles.wgsl`): output tiles of this many rows
/// by this many tokens per workgroup, so a prefill of T tokens reads the weights ⌈T / 64⌉ times.
pub const TILE_ROWS: usize = 64;
pub const TILE_TOKENS: usize = 64;
/// With `shader-f16` the tiles are held as f16: twice the tokens in the same workgroup memory.
/// The 8-bit tiles (`matmul_tiles_dp4a.wgsl`) take as many.
pub const TILE_TOKENS_F16: usize = 128;
// matmul_tiles.wgsl dequantizes a row's chunk with four lanes.
const _: () = assert!(shaders::GPU_WORKGROUP_SIZE == 4 * TILE_ROWS);
/// Lanes along a tile's rows (each lane takes TILE_ROWS / this rows) and along its tokens.
const TILE_SPAN: usize = 16;

/// Whether prefill runs `qmatvec.wgsl` (one dispatch, each token its own workgroup row) for rows
/// of `ty` rather than the tiled `qmatmul.wgsl`: for types read as whole words by their own `dot4`
/// form, which costs less per token than dequantizing even though the tiled kernel reads the
/// weights 8x less often. At T = 32 on lavapipe: Q4_1 13 ms against 45, Q4_K 46 against 50, but Q6_K (through
/// `dequant32`) 85 against 55; in Chromium (SwiftShader) Q4_1 prefill became 2.3x faster.
pub(crate) fn rows_prefill(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 | GgmlType::Q4_K)
}

/// The longest row segment `qmatvec_unrolled.wgsl` is generated for; longer rows are read in
/// segments, each segment's dispatch adding to the output. lavapipe's compile time grows faster
/// than the code: 2.4 s for 1024 Q4_1 values, 8.4 s for 2048, 65 s for 4096 Q8_0 (once: Mesa
/// caches compiled shaders on disk). Every type's 1024 values are a multiple of 16 bytes, so
/// every segment starts where a 16-byte load can.
pub(crate) const SEGMENT_COLS: usize = 1024;

/// Whether `qmatvec_unrolled.wgsl` reads rows of `ty`.
pub(crate) fn unrolled_supports(ty: GgmlType) -> bool {
    shaders::dot_words(ty).is_some()
}

/// The body of `qmatvec_unrolled.wgsl` for a row of `cols` values of `ty` (see its header).
fn unrolled_row(ty: GgmlType, cols: usize) -> String {
    use std::fmt::Write;
    const LANES: [&str; 4] = ["x", "y", "z", "w"];
    // F16 and F32 "blocks" are single values: dotw takes 32 at a time, like every type.
    let (block_bytes, block_values) = match ty.block_size() {
        1 => (32 * ty.type_size(), 32),
        n => (ty.type_size(), n),
    };
    let row_vec4s = (cols / block_values * block_bytes).div_ceil(16);
    let words = block_bytes.div_ceil(4);
    // The u32 at an even byte offset of the row: bytes past the row's last 16 read as zero.
    let component = |b: usize| match b / 16 {
        i if i < row_vec4s => format!("v{i}.{}", LANES[b % 16 / 4]),
        _ => "0u".to_string(),
    };
    let word = |b: usize| match b % 4 {
        0 => component(b),
        _ => format!("funnel16({}, {})", component(b - 2), component(b + 2)),
    };
    let mut body = String::new();
    let mut loaded = 0;
    for c in 0..cols / block_values {
        let start = c * block_bytes;
        let end = (start + 4 * words + 2).div_ceil(16).min(row_vec4s);
        for i in loaded..end {
            writeln!(body, "    let v{i} = w[r + {i}u];").unwrap();
        }
        loaded = loaded.max(end);
        let args: Vec<String> = (0..words).map(|i| word(start + 4 * i)).collect();
        let xb = c * block_values / 4;
        writeln!(body, "    acc += dotw(array<u32, {words}>({}), {xb}u);", args.join(", ")).unwrap();
    }
    body
}

/// Which kernel: matmul for decode (one token: a loop over the row, or the row unrolled for
/// rows of `usize` values) or prefill (several), or embedding lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Form {
    Matvec,
    MatvecUnrolled(usize),
    Matmul,
    /// The GPU family's prefill: output tiles in workgroup memory, f16 or f32.
    Tiles { f16: bool },
    /// The GPU family's prefill with 8-bit codes and integer dot products.
    TilesDp4a,
    Embed,
}

impl Form {
    /// Tokens one workgroup (or invocation) multiplies per read of its weights.
    pub(crate) fn token_tile(self) -> usize {
        match self {
            Form::Matmul => TOKEN_TILE,
            Form::Tiles { f16: false } => TILE_TOKENS,
            Form::Tiles { f16: true } | Form::TilesDp4a => TILE_TOKENS_F16,
            Form::Matvec | Form::MatvecUnrolled(_) | Form::Embed => 1,
        }
    }
}

/// One compiled variant: a kernel form for one weight type.
pub(crate) struct QKernel {
    form: Form,
    ty: GgmlType,
    /// The type's `dequant32` sources (`codes32` for the 8-bit tiles).
    dequant: &'static [&'static str],
}

impl QKernel {
    /// The kernel for `ty`, or `None` if no kernel reads it.
    pub(crate) fn new(form: Form, ty: GgmlType) -> Option<Self> {
        if let Form::MatvecUnrolled(cols) = form {
            if !unrolled_supports(ty) || cols > SEGMENT_COLS {
                return None;
            }
        }
        let dequant = if form == Form::TilesDp4a { shaders::codes(ty)? } else { shaders::dequant(ty)? };
        Some(QKernel { form, ty, dequant })
    }

    /// Invocations per workgroup.
    pub(crate) fn workgroup_size(&self) -> usize {
        match self.form {
            Form::Matvec => MATVEC_WORKGROUP_SIZE,
            Form::Tiles { .. } | Form::TilesDp4a => shaders::GPU_WORKGROUP_SIZE,
            _ => WORKGROUP_SIZE,
        }
    }
}

impl KernelSource for QKernel {
    fn source(&self) -> SourceTemplate {
        if let Form::MatvecUnrolled(cols) = self.form {
            let mut source = shaders::template(shaders::QMATVEC_UNROLLED, WORKGROUP_SIZE).add_template(shaders::BITS);
            for dot in shaders::dot_words(self.ty).unwrap_or_default() {
                source = source.add_template(*dot);
            }
            return source.register("row", unrolled_row(self.ty, cols));
        }
        let main = match self.form {
            Form::Matvec | Form::MatvecUnrolled(_) => shaders::QMATVEC,
            Form::Matmul => shaders::QMATMUL,
            Form::Tiles { .. } => shaders::MATMUL_TILES,
            Form::TilesDp4a => shaders::MATMUL_TILES_DP4A,
            Form::Embed => shaders::QEMBED,
        };
        let tile = self.form.token_tile();
        let mut source = shaders::template(main, self.workgroup_size())
            .add_template(shaders::QCOMMON)
            .add_template(shaders::BITS);
        for part in self.dequant {
            source = source.add_template(*part);
        }
        if matches!(self.form, Form::Tiles { .. } | Form::TilesDp4a) {
            source = source.add_template(shaders::TILES_STORE);
        }
        if self.form == Form::Matvec {
            for dot in shaders::dot4(self.ty) {
                source = source.add_template(*dot);
            }
        }
        let f16 = self.form == Form::Tiles { f16: true };
        source
            .register("token_tile", tile.to_string())
            .register("rows", MATVEC_ROWS.to_string())
            .register("tile_rows", TILE_ROWS.to_string())
            .register("span", TILE_SPAN.to_string())
            .register("enables", if f16 { "enable f16;" } else { "" })
            .register("tile_type", if f16 { "f16" } else { "f32" })
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.form, self.ty.id()))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// A kernel's name in reports of a step's dispatches (`burrow bench --json`).
pub(crate) trait Named {
    fn name(&self) -> String;
}

impl Named for QKernel {
    fn name(&self) -> String {
        let form = match self.form {
            Form::Matvec => "qmatvec".to_string(),
            Form::MatvecUnrolled(cols) => format!("qmatvec_unrolled[{cols}]"),
            Form::Matmul => "qmatmul".to_string(),
            Form::Tiles { f16: false } => "matmul_tiles".to_string(),
            Form::Tiles { f16: true } => "matmul_tiles_f16".to_string(),
            Form::TilesDp4a => "matmul_tiles_dp4a".to_string(),
            Form::Embed => "qembed".to_string(),
        };
        format!("{form}.{}", self.ty.name().to_lowercase())
    }
}

/// Queues `kernel` (a WGSL source with WORKGROUP_SIZE invocations per workgroup) over `count`
/// workgroups, with `buffers` as bindings 0.. and `params` (as u32) in a uniform after them.
pub(crate) fn dispatch<K: KernelSource + Named + 'static>(
    client: &Client,
    kernel: K,
    count: [usize; 2],
    buffers: &[&Handle],
    params: &[u32],
) -> Result<(), GpuError> {
    dispatch_sized(client, kernel, WORKGROUP_SIZE, count, buffers, params)
}

/// [`dispatch`] for a kernel of `workgroup_size` invocations per workgroup.
pub(crate) fn dispatch_sized<K: KernelSource + Named + 'static>(
    client: &Client,
    kernel: K,
    workgroup_size: usize,
    count: [usize; 2],
    buffers: &[&Handle],
    params: &[u32],
) -> Result<(), GpuError> {
    dispatch_reading(client, kernel, workgroup_size, count, buffers, params, 0)
}

/// [`dispatch_sized`] for a matrix kernel whose workgroups read `weight_bytes` of weights between
/// them (what `burrow bench` reports a prefill reads).
///
/// The parameters travel as cubecl's launch metadata, not as a buffer of their own: cubecl
/// submits the queued work before every buffer write (and waits for the device every 64
/// writes), while metadata goes into a uniform it caches by content, so a decode step whose
/// parameters repeat writes nothing and stays one submission.
pub(crate) fn dispatch_reading<K: KernelSource + Named + 'static>(
    client: &Client,
    kernel: K,
    workgroup_size: usize,
    count: [usize; 2],
    buffers: &[&Handle],
    params: &[u32],
    weight_bytes: u64,
) -> Result<(), GpuError> {
    if count.iter().any(|&c| c > MAX_WORKGROUPS_PER_DIM) {
        return Err(GpuError::TooLarge(format!("{count:?} workgroups")));
    }
    if params.len() > PARAM_VEC4S * 4 {
        return Err(GpuError::TooLarge(format!("{} kernel parameters", params.len())));
    }
    count_launch(|| kernel.name(), workgroup_size, count, weight_bytes);
    // Two u32 per u64 word, little-endian, padded to the uniform's declared size.
    let mut words = vec![0u64; PARAM_VEC4S * 2];
    for (i, &v) in params.iter().enumerate() {
        words[i / 2] |= (v as u64) << (32 * (i % 2));
    }
    let args = buffers
        .iter()
        .fold(KernelArguments::new(), |args, b| args.with_buffer((*b).clone().binding()))
        .with_info(MetadataBindingInfo::custom(words));
    client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(workgroup_size as u32))),
        CubeCount::Static(count[0] as u32, count[1] as u32, 1),
        args,
    );
    Ok(())
}

/// A contiguous f32 tensor of `shape` over the buffer `handle`.
pub(crate) fn f32_tensor<const D: usize>(
    client: &Client,
    device: &CubeDevice,
    handle: Handle,
    shape: [usize; D],
) -> Tensor<D> {
    Tensor::from_primitive::<Cube>(CubeTensor::new_contiguous(
        client.clone(),
        device.clone(),
        Shape::new(shape),
        handle,
        DType::F32,
    ))
}
