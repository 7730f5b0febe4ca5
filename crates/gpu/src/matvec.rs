//! The GPU family's decode matvec (`shaders/matvec.wgsl`): one token times a quantized matrix,
//! with the sub-layer's RMSNorm, a bias, the residual add or the gated activation folded in, so a
//! Llama-shaped layer's decode step is seven dispatches.

use burn::backend::wgpu::{into_contiguous, KernelSource, SourceTemplate};
use burn::cubecl::prelude::KernelId;
use burn::cubecl::server::Handle;
use burn::tensor::Tensor;
use burrow_gguf::GgmlType;

use crate::device::fold_groups;
use crate::error::GpuError;
use crate::kernel::{dispatch_reading, f32_tensor, Named};
use crate::ops::{primitive, Gate};
use crate::quant::{MatvecKernel, QuantTensor};
use crate::shaders::{self, GPU_WORKGROUP_SIZE, PARAM_VEC4S};

/// Rows each row group of `matvec.wgsl` computes (its ROWS): every x value a lane loads serves
/// them all. Even, so a gated (GLU) row group holds whole gate/up pairs.
const ROWS: usize = 4;

/// Lanes splitting each row: 32 for rows of fewer than `LONG_ROW` values (SmolLM2's 576: 72 Q4
/// slices, 3 rounds of 32 lanes rather than 2 of 64 mostly idle), 64 for longer ones.
const LONG_ROW: usize = 1024;

/// What a matvec folds in around `W · x`.
#[derive(Clone, Copy, Default)]
pub struct Fold<'a> {
    /// RMS-normalize x first, with this weight and epsilon: `W · (x ⊙ g) / rms(x)`.
    pub norm: Option<(&'a Tensor<1>, f32)>,
    /// Added to the output, which it is shaped like (`[1, rows]`): the residual stream.
    pub residual: Option<&'a Tensor<2>>,
    /// The (single) matrix is `[gate; up]`: the output is `act(gate · x) · (up · x)`, half as wide.
    pub glu: Option<Gate>,
}

/// One compiled variant of `matvec.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Matvec {
    ty: GgmlType,
    lanes: usize,
    norm: bool,
    bias: bool,
    residual: bool,
    glu: bool,
    subgroups: bool,
    /// The coalescing test's build: every weight load is recorded.
    trace: bool,
}

/// Weight loads each lane of a traced matvec records (the rest are counted, not kept).
const TRACE_LOADS: usize = 64;

impl Matvec {
    /// The variant for rows of `ty` split over `lanes` lanes, with those folds.
    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    pub(crate) fn new(ty: GgmlType, lanes: usize, norm: bool, bias: bool, residual: bool, glu: bool, subgroups: bool) -> Matvec {
        Matvec { ty, lanes, norm, bias, residual, glu, subgroups, trace: false }
    }

    /// The WGSL of the optional bindings from binding 3 on, their readers, and the uniform.
    fn bindings(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut next = 3;
        let mut decl = |out: &mut String, name: &str, ty: &str| {
            writeln!(out, "@group(0) @binding({next}) var<storage, read_write> {name}: {ty};").unwrap();
            next += 1;
        };
        if self.norm {
            decl(&mut out, "g", "array<vec4<f32>>");
            out.push_str("fn gain(i: u32) -> vec4<f32> { return g[i]; }\n");
        } else {
            out.push_str("fn gain(i: u32) -> vec4<f32> { return vec4<f32>(1.0); }\n");
        }
        if self.bias {
            decl(&mut out, "b", "array<f32>");
            out.push_str("fn bias_at(o: u32) -> f32 { return b[p(10) + o]; }\n");
        } else {
            out.push_str("fn bias_at(o: u32) -> f32 { return 0.0; }\n");
        }
        if self.residual {
            decl(&mut out, "r", "array<f32>");
            out.push_str("fn residual_at(i: u32) -> f32 { return r[i]; }\n");
        } else {
            out.push_str("fn residual_at(i: u32) -> f32 { return 0.0; }\n");
        }
        if self.trace {
            decl(&mut out, "trace", "array<u32>");
            writeln!(out, "const TRACE_LOADS: u32 = {TRACE_LOADS}u;\nvar<private> trace_n: u32;\nvar<private> trace_lane: u32;").unwrap();
        }
        writeln!(out, "@group(0) @binding({next}) var<uniform> params: array<vec4<u32>, {PARAM_VEC4S}>;").unwrap();
        out
    }
}

impl KernelSource for Matvec {
    fn source(&self) -> SourceTemplate {
        let (reduce, builtins) = shaders::reduce(self.subgroups);
        let mut source = shaders::template(shaders::MATVEC, GPU_WORKGROUP_SIZE);
        for part in shaders::slices(self.ty).unwrap_or_default() {
            source = source.add_template(*part);
        }
        let record = "    if (trace_n < TRACE_LOADS) {\n        trace[trace_lane * TRACE_LOADS + trace_n] = i + 1u;\n    }\n    trace_n += 1u;";
        source
            .register("bindings", self.bindings())
            .register("lanes", self.lanes.to_string())
            .register("rows", ROWS.to_string())
            .register("norm", self.norm.to_string())
            .register("glu", self.glu.to_string())
            .register("reduce", reduce)
            .register("subgroup_builtins", builtins)
            .register("record", if self.trace { record } else { "" })
            .register("trace_init", if self.trace { "    trace_lane = wg_linear * WORKGROUP_SIZE + lid;" } else { "" })
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((*self, self.ty.id()))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

impl Named for Matvec {
    fn name(&self) -> String {
        let mut name = format!("matvec.{}", self.ty.name().to_lowercase());
        for (on, what) in [(self.norm, "+norm"), (self.bias, "+bias"), (self.residual, "+residual"), (self.glu, "+glu")] {
            if on {
                name.push_str(what);
            }
        }
        name
    }
}

/// `x: [1, in]` times each matrix of `ws` (plus its bias, if any), their outputs end to end:
/// `[1, Σ rows]` (with [`Fold::glu`], `[1, rows / 2]`), with `fold` folded in; one dispatch per
/// GPU buffer of each matrix. Every matrix must run the GPU family's decode kernel
/// ([`MatvecKernel::Lanes`]).
///
/// # Errors
///
/// [`GpuError::Shape`] for inconsistent shapes (a GLU over several matrices or buffers, a residual
/// not shaped like the output, a norm weight not `[in]`); [`GpuError::UnsupportedType`] for a matrix
/// of another family; the errors of the tensors' placement.
pub fn matvec(x: &Tensor<2>, ws: &[(&QuantTensor, Option<&Tensor<1>>)], fold: &Fold) -> Result<Tensor<2>, GpuError> {
    launch(x, ws, fold, None)
}

/// [`matvec`] of one matrix, built to record its weight loads: for every lane (workgroup-major,
/// then local index) the word indices of its first loads in order. For the coalescing test.
#[doc(hidden)]
#[cfg(not(target_family = "wasm"))]
pub fn trace_matvec_loads(x: &Tensor<2>, w: &QuantTensor, fold: &Fold) -> Result<Vec<Vec<u32>>, GpuError> {
    let client: burn::cubecl::client::Client = w.device().client();
    let lanes_total = matvec_groups(w, fold)? * GPU_WORKGROUP_SIZE;
    let trace = client.create_from_slice(&vec![0u8; lanes_total * TRACE_LOADS * 4]);
    launch(x, &[(w, None)], fold, Some(&trace))?;
    let words = crate::ops::read_u32(&client, trace)?;
    Ok(words
        .chunks(TRACE_LOADS)
        .map(|lane| lane.iter().take_while(|&&v| v != 0).map(|&v| v - 1).collect())
        .collect())
}

/// The workgroups one matvec of the single-buffer matrix `w` takes.
#[cfg(not(target_family = "wasm"))]
fn matvec_groups(w: &QuantTensor, fold: &Fold) -> Result<usize, GpuError> {
    if w.parts().len() != 1 {
        return Err(GpuError::Shape("a traced matrix must be one buffer".into()));
    }
    let outputs = if fold.glu.is_some() { w.rows() / 2 } else { w.rows() };
    let per_group = if fold.glu.is_some() { ROWS / 2 } else { ROWS };
    Ok(outputs.div_ceil(per_group * (GPU_WORKGROUP_SIZE / lanes(w.cols()))))
}

/// Lanes splitting rows of `cols` values.
fn lanes(cols: usize) -> usize {
    if cols < LONG_ROW {
        32
    } else {
        64
    }
}

fn launch(
    x: &Tensor<2>,
    ws: &[(&QuantTensor, Option<&Tensor<1>>)],
    fold: &Fold,
    trace: Option<&Handle>,
) -> Result<Tensor<2>, GpuError> {
    let [tokens, cols] = x.dims();
    let Some(&(first, _)) = ws.first() else {
        return Err(GpuError::Shape("a matvec needs a matrix".into()));
    };
    if tokens != 1 {
        return Err(GpuError::Shape(format!("the decode matvec takes one token, not {tokens}")));
    }
    let rows: usize = ws.iter().map(|(w, _)| w.rows()).sum();
    for (w, bias) in ws {
        if w.cols() != cols || w.device() != first.device() {
            return Err(GpuError::Shape(format!("x [1, {cols}] with a matrix [{}, {}]", w.rows(), w.cols())));
        }
        if !matches!(w.matvec_kernel(), MatvecKernel::Lanes { .. }) {
            return Err(GpuError::UnsupportedType(w.ty()));
        }
        if bias.is_some_and(|b| b.dims() != [w.rows()]) {
            return Err(GpuError::Shape(format!("a bias for {} rows", w.rows())));
        }
    }
    let glu = fold.glu.is_some();
    if glu && (ws.len() != 1 || first.parts().len() != 1 || rows % 2 != 0) {
        return Err(GpuError::Shape("a gated matvec takes one matrix [gate; up] in one buffer".into()));
    }
    let width = if glu { rows / 2 } else { rows };
    if fold.residual.is_some_and(|r| r.dims() != [1, width]) {
        return Err(GpuError::Shape(format!("a residual for [1, {width}]")));
    }
    if fold.norm.is_some_and(|(g, _)| g.dims() != [cols]) || cols % 4 != 0 {
        return Err(GpuError::Shape(format!("a norm over {cols} values")));
    }
    let x = into_contiguous(crate::f32_on(x.clone(), first)?);
    let client = &x.client;
    let y = client.empty(width * 4);
    let norm = fold.norm.map(|(g, _)| primitive(g.clone(), "the norm weight")).transpose()?;
    let residual = fold.residual.map(|r| primitive(r.clone(), "the residual")).transpose()?;
    let subgroups = matches!(first.matvec_kernel(), MatvecKernel::Lanes { subgroups: true, .. });
    let lanes = lanes(cols);
    let eps = fold.norm.map_or(0.0, |(_, eps)| eps);
    let act = u32::from(fold.glu == Some(Gate::GeluTanh));
    let mut offset = 0;
    for (w, bias) in ws {
        let bias = bias.map(|b| primitive(b.clone(), "the bias")).transpose()?;
        let kernel = Matvec {
            trace: trace.is_some(),
            ..Matvec::new(w.ty(), lanes, norm.is_some(), bias.is_some(), residual.is_some(), glu, subgroups)
        };
        for part in w.parts() {
            let outputs = if glu { part.rows / 2 } else { part.rows };
            let per_group = if glu { ROWS / 2 } else { ROWS };
            let groups = outputs.div_ceil(per_group * (GPU_WORKGROUP_SIZE / lanes));
            let count = fold_groups(groups);
            let params = [
                cols as u32,
                part.rows as u32,
                w.row_stride() as u32,
                part.base as u32,
                (offset + part.first_row) as u32,
                groups as u32,
                count[0] as u32,
                eps.to_bits(),
                act,
                outputs as u32,
                part.first_row as u32,
            ];
            let mut buffers = vec![&part.handle, &x.handle, &y];
            buffers.extend(norm.as_ref().map(|g| &g.handle));
            buffers.extend(bias.as_ref().map(|b| &b.handle));
            buffers.extend(residual.as_ref().map(|r| &r.handle));
            buffers.extend(trace);
            let weight_bytes = (part.rows * w.row_bytes()) as u64;
            dispatch_reading(client, kernel, GPU_WORKGROUP_SIZE, count, &buffers, &params, weight_bytes)?;
        }
        offset += w.rows();
    }
    Ok(f32_tensor(client, &x.device, y, [1, width]))
}
