//! GGUF tensors → tensors on a device → a [`Model`].
//!
//! One loader for every platform and every file: a [`Builder`] ([`ModelBuilder`] for a language
//! model, `VisionBuilder` for a vision projector) takes the tensors one at a time in any order
//! (natively from the file in memory, in the browser as chunks stream out of storage) and
//! [`Builder::finish`] assembles what it builds. On a wgpu device every matrix the kernels read
//! stays in its GGUF block format on the GPU ([`QuantTensor`]); everything else (norms, biases,
//! matrices of other types) is dequantized to f32 on the device.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use burn::tensor::{Device, Tensor, TensorData};
use burrow_gguf::{Gguf, HeaderReader, TensorInfo};
use burrow_gpu::{is_wgpu_device, supports_matrix, Kernels, QuantTensor, QuantUpload};

use crate::attention::Attention;
use crate::config::ModelConfig;
use crate::decoder::{Decoder, Model};
use crate::layer::{Block, FeedForward, Linear, Matrix, Mlp, Moe, Projection, RmsNorm};
use crate::rope::RopeFactors;
use crate::{check_support, ModelError};

/// Where tensor bytes come from when the whole file can be addressed (natively).
pub trait TensorSource {
    fn tensor_bytes(&mut self, gguf: &Gguf, tensor: &TensorInfo) -> Result<Cow<'_, [u8]>, ModelError>;
}

/// A GGUF file held in memory.
pub struct FileBytes<'a>(pub &'a [u8]);

impl TensorSource for FileBytes<'_> {
    fn tensor_bytes(&mut self, gguf: &Gguf, tensor: &TensorInfo) -> Result<Cow<'_, [u8]>, ModelError> {
        Ok(Cow::Borrowed(gguf.tensor_data(self.0, tensor)?))
    }
}

/// Takes a file's tensors one at a time and assembles what they make (a model, an encoder).
pub trait Builder: Sized {
    type Output;

    /// Checks the file's header and prepares to receive its tensors onto `device`, to run
    /// `kernels` (on a wgpu device; `None` on the CPU reference).
    fn start(gguf: &Gguf, device: &Device, kernels: Option<Kernels>) -> Result<Self, ModelError>;

    /// The tensors it uses, in the order their bytes appear in the file.
    fn tensors_in_file_order(&self, gguf: &Gguf) -> Vec<TensorInfo>;

    /// For a tensor that stays in its GGUF blocks on the GPU, an upload to push its bytes into as
    /// they arrive, then [`Builder::add_uploaded`]; `None` for the others ([`Builder::add`]).
    fn begin_upload(&mut self, info: &TensorInfo) -> Result<Option<QuantUpload>, ModelError>;

    /// Takes a tensor whose every byte went into `upload`.
    fn add_uploaded(&mut self, info: &TensorInfo, upload: QuantUpload) -> Result<(), ModelError>;

    /// Takes one tensor's bytes (exactly `info.n_bytes`) and moves it to the device.
    fn add(&mut self, info: &TensorInfo, bytes: &[u8]) -> Result<(), ModelError>;

    /// Assembles the result once every tensor has been added.
    fn finish(self) -> Result<Self::Output, ModelError>;
}

/// Reads every tensor `B` needs, in file order, and builds it on `device`, to run `kernels` (on a
/// wgpu device; `None` on the CPU reference).
pub fn load<B: Builder>(gguf: &Gguf, source: &mut dyn TensorSource, device: &Device, kernels: Option<Kernels>) -> Result<B::Output, ModelError> {
    let mut builder = B::start(gguf, device, kernels)?;
    for info in builder.tensors_in_file_order(gguf) {
        let bytes = source.tensor_bytes(gguf, &info)?;
        builder.add(&info, &bytes)?;
    }
    builder.finish()
}

/// [`load`] for a language model.
pub fn load_model(gguf: &Gguf, source: &mut dyn TensorSource, device: &Device, kernels: Option<Kernels>) -> Result<Model, ModelError> {
    load::<ModelBuilder>(gguf, source, device, kernels)
}

/// Builds a model (or with another [`Builder`], an encoder) from a GGUF file that arrives in
/// chunks, in order (the browser streams it out of storage): the header is parsed as soon as it
/// is complete, then each tensor goes to the device as soon as its last byte arrives. Holds at
/// most the header and one tensor in memory, never the whole file.
pub struct StreamLoader<B: Builder = ModelBuilder> {
    device: Device,
    kernels: Option<Kernels>,
    file_len: u64,
    received: u64,
    header: HeaderReader,
    /// The chunks before the one that completes the header: they may already carry tensor
    /// data. Empty when the first chunk holds the whole header (it is then never copied).
    early: Vec<u8>,
    loading: Option<Loading<B>>,
}

/// The stream after its header: tensors in file order and the one being received, either
/// straight into its GPU buffers (`upload`) or gathered on the host (`current`).
struct Loading<B> {
    gguf: Gguf,
    builder: B,
    tensors: Vec<TensorInfo>,
    next: usize,
    /// Bytes of tensor `next` received so far.
    received: u64,
    upload: Option<QuantUpload>,
    current: Vec<u8>,
}

impl StreamLoader {
    /// A loader of a language model of `file_len` bytes onto `device`, to run `kernels` (as
    /// [`load_model`]).
    pub fn new(file_len: u64, device: &Device, kernels: Option<Kernels>) -> Self {
        Self::of(file_len, device, kernels)
    }
}

impl<B: Builder> StreamLoader<B> {
    /// A loader of a file of `file_len` bytes that `B` builds onto `device`, to run `kernels`.
    pub fn of(file_len: u64, device: &Device, kernels: Option<Kernels>) -> Self {
        StreamLoader {
            device: device.clone(),
            kernels,
            file_len,
            received: 0,
            header: HeaderReader::new(file_len),
            early: Vec::new(),
            loading: None,
        }
    }

    /// The parsed header, once it has arrived.
    pub fn gguf(&self) -> Option<&Gguf> {
        self.loading.as_ref().map(|l| &l.gguf)
    }

    /// Takes the next bytes of the file.
    ///
    /// # Errors
    ///
    /// A malformed header, an unsupported model, more bytes than the file length, or a failed
    /// upload; the loader is unusable afterwards.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ModelError> {
        let start = self.received;
        self.received += chunk.len() as u64;
        if self.received > self.file_len {
            return Err(ModelError::Context(format!(
                "received {} bytes of a file of {} bytes",
                self.received, self.file_len
            )));
        }
        if let Some(loading) = &mut self.loading {
            return loading.accept(start, chunk);
        }
        let Some(gguf) = self.header.push(chunk)? else {
            self.early.extend_from_slice(chunk);
            return Ok(());
        };
        let builder = B::start(&gguf, &self.device, self.kernels)?;
        let tensors = builder.tensors_in_file_order(&gguf);
        let mut loading = Loading { gguf, builder, tensors, next: 0, received: 0, upload: None, current: Vec::new() };
        let early = std::mem::take(&mut self.early);
        loading.accept(0, &early)?;
        loading.accept(start, chunk)?;
        self.loading = Some(loading);
        Ok(())
    }

    /// The header and what `B` built, once every byte has arrived.
    ///
    /// # Errors
    ///
    /// A file that ended early (before its header or one of its tensors was complete).
    pub fn finish(self) -> Result<(Gguf, B::Output), ModelError> {
        let Some(loading) = self.loading else {
            return Err(ModelError::Gguf(burrow_gguf::GgufError::Incomplete { needed: self.received + 1 }));
        };
        if let Some(t) = loading.tensors.get(loading.next) {
            return Err(ModelError::Context(format!(
                "the file ended after {} of {} bytes, before the data of tensor '{}'",
                self.received, self.file_len, t.name
            )));
        }
        let model = loading.builder.finish()?;
        Ok((loading.gguf, model))
    }
}

impl<B: Builder> Loading<B> {
    /// `chunk` holds file bytes from offset `start` on.
    fn accept(&mut self, start: u64, chunk: &[u8]) -> Result<(), ModelError> {
        let end = start + chunk.len() as u64;
        while let Some(t) = self.tensors.get(self.next) {
            let t_start = self.gguf.data_offset + t.offset + self.received;
            let t_end = self.gguf.data_offset + t.offset + t.n_bytes;
            if t_start >= end {
                return Ok(());
            }
            let from = t_start.max(start);
            let to = t_end.min(end);
            let piece = &chunk[(from - start) as usize..(to - start) as usize];
            if self.received == 0 {
                // A GPU matrix goes to its buffers piece by piece; other tensors are small or
                // dequantized on the host, which needs them whole.
                self.upload = self.builder.begin_upload(t)?;
            }
            self.received += piece.len() as u64;
            let complete = to == t_end;
            if let Some(upload) = &mut self.upload {
                upload.push(piece).map_err(|e| ModelError::Context(format!("uploading tensor '{}': {e}", t.name)))?;
                if !complete {
                    return Ok(());
                }
                let upload = self.upload.take().expect("an upload in progress");
                self.builder.add_uploaded(t, upload)?;
            } else if complete && self.current.is_empty() {
                // The whole tensor is inside this chunk: no copy.
                self.builder.add(t, piece)?;
            } else {
                if self.current.is_empty() {
                    self.current.reserve_exact(t.n_bytes as usize);
                }
                self.current.extend_from_slice(piece);
                if !complete {
                    return Ok(());
                }
                self.builder.add(t, &self.current)?;
                self.current = Vec::new();
            }
            self.received = 0;
            self.next += 1;
        }
        Ok(())
    }
}

/// A tensor on its way into the model.
enum Loaded {
    /// A 1-D tensor (norm weight, bias, RoPE factors), dequantized on the host: they are small.
    Vector(Vec<f32>),
    /// A matrix, or a stack of them as one matrix of all their rows.
    Matrix(Matrix),
}

/// GGUF matrices one input multiplies (a layer's Q, K and V; its gate and up) held on the GPU as
/// one matrix of all their rows, so one kernel launch computes them all. Each member streams into
/// its own rows of the shared buffers and is a row slice of it.
struct Fusion {
    /// The members' weight names and first rows, in row order.
    members: Vec<(String, usize)>,
    /// `[ne0, rows]` of the fused matrix.
    dims: [u64; 2],
    ty: burrow_gguf::GgmlType,
    /// Allocated when the first member arrives.
    tensor: Option<QuantTensor>,
    /// Members uploaded so far.
    received: usize,
}

/// Collects a model's tensors, one at a time, then assembles the model.
pub struct ModelBuilder {
    config: ModelConfig,
    device: Device,
    /// The kernels on wgpu; `None` on the CPU reference (every matrix dense, Burn's ops).
    kernels: Option<Kernels>,
    wanted: HashMap<String, Vec<u64>>,
    loaded: HashMap<String, Loaded>,
    fusions: Vec<Fusion>,
    /// Weight name → its fusion.
    fused_in: HashMap<String, usize>,
}

impl Builder for ModelBuilder {
    type Output = Model;

    /// Checks that the file is supported and prepares to receive its tensors, for a model that
    /// runs `kernels` on the wgpu `device` (`None`: the CPU reference).
    fn start(gguf: &Gguf, device: &Device, kernels: Option<Kernels>) -> Result<Self, ModelError> {
        if let Some(first) = check_support(gguf).into_iter().next() {
            return Err(first);
        }
        if kernels.is_some() != is_wgpu_device(device) {
            return Err(ModelError::Context(format!("kernels {kernels:?} for the device {device:?}")));
        }
        let config = ModelConfig::from_gguf(gguf)?;
        let wanted = config.expected_tensors().into_iter().map(|t| (t.name, t.dims)).collect();
        let mut builder = ModelBuilder {
            config,
            device: device.clone(),
            kernels,
            wanted,
            loaded: HashMap::new(),
            fusions: Vec::new(),
            fused_in: HashMap::new(),
        };
        if builder.kernels.is_some() {
            builder.plan_fusions(gguf);
        }
        Ok(builder)
    }

    /// The tensors the model uses, in the order their bytes appear in the file.
    fn tensors_in_file_order(&self, gguf: &Gguf) -> Vec<TensorInfo> {
        let mut tensors: Vec<TensorInfo> = gguf.tensors.iter().filter(|t| self.wants(&t.name)).cloned().collect();
        tensors.sort_by_key(|t| t.offset);
        tensors
    }

    /// Takes one tensor's bytes (exactly `info.n_bytes`) and moves it to the device. The bytes are
    /// not kept.
    fn add(&mut self, info: &TensorInfo, bytes: &[u8]) -> Result<(), ModelError> {
        if !self.wants(&info.name) {
            return Ok(());
        }
        if bytes.len() as u64 != info.n_bytes {
            return Err(ModelError::Context(format!(
                "tensor '{}' arrived with {} bytes, expected {}",
                info.name,
                bytes.len(),
                info.n_bytes
            )));
        }
        let loaded = if info.dims.len() == 1 {
            Loaded::Vector(burrow_gguf::dequantize_to_vec(info.ty, bytes, info.n_elements as usize)?)
        } else if let Some(mut upload) = self.begin_upload(info)? {
            upload.push(bytes).map_err(|e| ModelError::Context(format!("uploading tensor '{}': {e}", info.name)))?;
            return self.add_uploaded(info, upload);
        } else {
            Loaded::Matrix(self.dense(info, bytes)?)
        };
        self.loaded.insert(info.name.clone(), loaded);
        Ok(())
    }

    /// For a tensor the model uses that stays quantized on the GPU, an upload to push its bytes
    /// into as they arrive, then [`ModelBuilder::add_uploaded`]; `None` for the others, which go
    /// through [`ModelBuilder::add`].
    fn begin_upload(&mut self, info: &TensorInfo) -> Result<Option<QuantUpload>, ModelError> {
        if !self.wants(&info.name) || !self.stays_quantized(info) {
            return Ok(None);
        }
        let error = |e| ModelError::Context(format!("uploading tensor '{}': {e}", info.name));
        let Some(&f) = self.fused_in.get(&info.name) else {
            return QuantTensor::upload(info.ty, &info.dims, &self.device).map(Some).map_err(error);
        };
        let fusion = &mut self.fusions[f];
        if fusion.tensor.is_none() {
            let tensor = QuantTensor::allocate(fusion.ty, &fusion.dims, &self.device).map_err(error)?;
            fusion.tensor = Some(self.kernels.map_or(tensor.clone(), |k| tensor.with_kernels(k)));
        }
        let first = fusion.members.iter().find(|(name, _)| *name == info.name).map_or(0, |m| m.1);
        let rows = info.dims[1] as usize;
        fusion.tensor.as_ref().expect("allocated above").upload_rows(first..first + rows).map(Some).map_err(error)
    }

    /// Takes a tensor whose every byte went into `upload`.
    fn add_uploaded(&mut self, info: &TensorInfo, upload: QuantUpload) -> Result<(), ModelError> {
        let tensor = upload.finish().map_err(|e| ModelError::Context(format!("uploading tensor '{}': {e}", info.name)))?;
        let tensor = match self.kernels {
            Some(k) => tensor.with_kernels(k),
            None => tensor,
        };
        if let Some(&f) = self.fused_in.get(&info.name) {
            self.fusions[f].received += 1;
        }
        self.loaded.insert(info.name.clone(), Loaded::Matrix(Matrix::Quant(tensor)));
        Ok(())
    }

    /// Assembles the model once every required tensor has been added.
    fn finish(mut self) -> Result<Model, ModelError> {
        let c = self.config.clone();
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let name = |n: &str| format!("blk.{i}.{n}");
            let (q, kv) = (c.n_head * c.head_dim, c.n_head_kv * c.head_dim);
            let (qkv, [wq, wk, wv]) = if c.fused_qkv {
                let (whole, parts) = self.split_linear(&name("attn_qkv"), &[q, kv, kv])?;
                let mut parts = parts.into_iter();
                let mut next = || parts.next().ok_or_else(|| ModelError::MissingTensor(name("attn_qkv.weight")));
                (Some(whole), [next()?, next()?, next()?])
            } else {
                let fused = self.fused_linear(&[name("attn_q"), name("attn_k"), name("attn_v")]);
                (fused, [self.linear(&name("attn_q"))?, self.linear(&name("attn_k"))?, self.linear(&name("attn_v"))?])
            };
            let q_norm = self.optional_norm(&name("attn_q_norm.weight"));
            let k_norm = self.optional_norm(&name("attn_k_norm.weight"));
            let qk_norms = match (&q_norm, &k_norm, self.kernels) {
                (Some(q), Some(k), Some(kernels)) if kernels.is_gpu() => Some(Tensor::cat(vec![q.weight().clone(), k.weight().clone()], 0)),
                _ => None,
            };
            let attn = Attention {
                input: Projection { norm: self.norm(&name("attn_norm.weight"))?, parts: vec![wq, wk, wv], fused: qkv },
                q_norm,
                k_norm,
                qk_norms,
                wo: self.linear(&name("attn_output"))?,
                kernels: self.kernels.filter(|_| burrow_gpu::attention_supports(c.head_dim)),
            };
            let post_attn_norm = self.optional_norm(&name("post_attention_norm.weight"));
            let ffn_norm = self.norm(&name("ffn_norm.weight"))?;
            let ffn = if c.n_expert > 0 {
                FeedForward::Experts(Moe {
                    norm: ffn_norm,
                    router: self.linear(&name("ffn_gate_inp"))?,
                    gate: self.take_matrix(&name("ffn_gate_exps.weight"))?,
                    up: self.take_matrix(&name("ffn_up_exps.weight"))?,
                    down: self.take_matrix(&name("ffn_down_exps.weight"))?,
                    act: c.activation,
                    kernels: self.kernels,
                })
            } else {
                let (gate_up, gate, up) = if c.fused_gate_up {
                    let (whole, parts) = self.split_linear(&name("ffn_up"), &[c.n_ff, c.n_ff])?;
                    let mut parts = parts.into_iter();
                    let missing = || ModelError::MissingTensor(name("ffn_up.weight"));
                    (Some(whole), parts.next().ok_or_else(missing)?, parts.next().ok_or_else(missing)?)
                } else {
                    let fused = self.fused_linear(&[name("ffn_gate"), name("ffn_up")]);
                    (fused, self.linear(&name("ffn_gate"))?, self.linear(&name("ffn_up"))?)
                };
                FeedForward::Dense(Mlp {
                    input: Projection { norm: ffn_norm, parts: vec![gate, up], fused: gate_up },
                    down: self.linear(&name("ffn_down"))?,
                    act: c.activation,
                    kernels: self.kernels,
                })
            };
            blocks.push(Block { attn, post_attn_norm, ffn, post_ffn_norm: self.optional_norm(&name("post_ffw_norm.weight")) });
        }
        let net = Decoder {
            tok_embd: self.take_matrix("token_embd.weight")?,
            blocks,
            output_norm: self.norm("output_norm.weight")?,
            output: if c.tied_output { None } else { Some(self.take_matrix("output.weight")?) },
        };
        let rope_factors = RopeFactors {
            all: self.take_vector("rope_freqs.weight"),
            short: self.take_vector("rope_factors_short.weight"),
            long: self.take_vector("rope_factors_long.weight"),
        };
        Ok(Model { config: c, net, rope_factors, device: self.device, kernels: self.kernels })
    }
}

impl ModelBuilder {
    /// Per layer, the separate Q, K and V weights and the separate gate and up weights, when the
    /// members of a group have one type and row length the kernels read: each group becomes one
    /// GPU matrix (a decode step launches 3 matvecs a layer fewer).
    fn plan_fusions(&mut self, gguf: &Gguf) {
        let c = &self.config;
        let mut groups = Vec::new();
        for i in 0..c.n_layer {
            let names = |parts: &[&str]| parts.iter().map(|p| format!("blk.{i}.{p}.weight")).collect::<Vec<_>>();
            if !c.fused_qkv {
                groups.push(names(&["attn_q", "attn_k", "attn_v"]));
            }
            if c.n_expert == 0 && !c.fused_gate_up {
                groups.push(names(&["ffn_gate", "ffn_up"]));
            }
        }
        for names in groups {
            let infos: Option<Vec<&TensorInfo>> = names.iter().map(|n| gguf.tensor(n)).collect();
            let Some(infos) = infos else { continue };
            let first = infos[0];
            let fits = infos.iter().all(|t| {
                t.dims.len() == 2 && t.ty == first.ty && t.dims[0] == first.dims[0] && self.stays_quantized(t) && self.wants(&t.name)
            });
            if !fits {
                continue;
            }
            let mut rows = 0;
            let members = infos
                .iter()
                .map(|t| {
                    rows += t.dims[1] as usize;
                    (t.name.clone(), rows - t.dims[1] as usize)
                })
                .collect();
            for t in &infos {
                self.fused_in.insert(t.name.clone(), self.fusions.len());
            }
            self.fusions.push(Fusion { members, dims: [first.dims[0], rows as u64], ty: first.ty, tensor: None, received: 0 });
        }
    }

    /// Whether the model uses the tensor `name` (others in the file are skipped).
    pub fn wants(&self, name: &str) -> bool {
        self.wanted.contains_key(name)
    }

    /// Whether `info` becomes a [`Matrix::Quant`]: a matrix in a type the GPU kernels read.
    fn stays_quantized(&self, info: &TensorInfo) -> bool {
        self.kernels.is_some() && info.dims.len() > 1 && supports_matrix(info.ty, info.dims[0])
    }

    /// A matrix the GPU kernels do not read, dequantized to f32: `[rows, cols]` with cols =
    /// GGUF's ne0 and rows the product of the other dimensions.
    fn dense(&self, info: &TensorInfo, bytes: &[u8]) -> Result<Matrix, ModelError> {
        let cols = info.dims[0];
        let rows = (info.n_elements / cols.max(1)) as usize;
        let values = burrow_gguf::dequantize_to_vec(info.ty, bytes, info.n_elements as usize)?;
        Ok(Matrix::Dense(Tensor::from_data(TensorData::new(values, [rows, cols as usize]), &self.device)))
    }

    fn take_vector(&mut self, name: &str) -> Option<Vec<f32>> {
        match self.loaded.remove(name) {
            Some(Loaded::Vector(v)) => Some(v),
            _ => None,
        }
    }

    fn take_matrix(&mut self, name: &str) -> Result<Matrix, ModelError> {
        match self.loaded.remove(name) {
            Some(Loaded::Matrix(m)) => Ok(m),
            _ => Err(ModelError::MissingTensor(name.into())),
        }
    }

    fn vector_tensor(&mut self, name: &str) -> Option<Tensor<1>> {
        self.take_vector(name).map(|v| {
            let n = v.len();
            Tensor::from_data(TensorData::new(v, [n]), &self.device)
        })
    }

    fn norm(&mut self, name: &str) -> Result<RmsNorm, ModelError> {
        self.optional_norm(name).ok_or_else(|| ModelError::MissingTensor(name.into()))
    }

    fn optional_norm(&mut self, name: &str) -> Option<RmsNorm> {
        let (eps, kernels) = (self.config.rms_eps, self.kernels);
        self.vector_tensor(name).map(|w| RmsNorm::new(w, eps, kernels))
    }

    /// `<prefix>.weight` and, when the file has it, `<prefix>.bias`.
    fn linear(&mut self, prefix: &str) -> Result<Linear, ModelError> {
        let weight = self.take_matrix(&format!("{prefix}.weight"))?;
        Ok(Linear::new(weight, self.vector_tensor(&format!("{prefix}.bias"))))
    }

    /// The fused matrix of the projections `prefixes` (`<prefix>.weight` planned by
    /// [`ModelBuilder::plan_fusions`]) once all of them arrived, with their biases end to end
    /// (zeros for a member without one). The members themselves stay loaded: they are its rows.
    fn fused_linear(&mut self, prefixes: &[String]) -> Option<Linear> {
        let f = *self.fused_in.get(&format!("{}.weight", prefixes[0]))?;
        let fusion = &mut self.fusions[f];
        if fusion.received != fusion.members.len() {
            return None;
        }
        let weight = fusion.tensor.take()?;
        let biases: Vec<Option<&[f32]>> = prefixes
            .iter()
            .map(|p| match self.loaded.get(&format!("{p}.bias")) {
                Some(Loaded::Vector(v)) => Some(v.as_slice()),
                _ => None,
            })
            .collect();
        // Each member's rows: from its first row to the next member's (or the end).
        let ends = fusion.members.iter().skip(1).map(|m| m.1).chain([fusion.dims[1] as usize]);
        let rows: Vec<usize> = fusion.members.iter().zip(ends).map(|(m, end)| end - m.1).collect();
        let bias = biases.iter().any(Option::is_some).then(|| {
            let values: Vec<f32> = rows
                .iter()
                .zip(&biases)
                .flat_map(|(&n, b)| b.map_or_else(|| vec![0.0; n], <[f32]>::to_vec))
                .collect();
            let n = values.len();
            Tensor::from_data(TensorData::new(values, [n]), &self.device)
        });
        Some(Linear::new(Matrix::Quant(weight), bias))
    }

    /// A fused projection, whole and split by output rows into `parts` (e.g. Q, K, V), without
    /// copying.
    fn split_linear(&mut self, prefix: &str, parts: &[usize]) -> Result<(Linear, Vec<Linear>), ModelError> {
        let whole = self.linear(prefix)?;
        let (weight, bias) = whole.clone().into_parts();
        let rows = weight.rows();
        if parts.iter().sum::<usize>() != rows {
            return Err(ModelError::WrongShape {
                name: format!("{prefix}.weight"),
                expected: vec![weight.cols() as u64, parts.iter().sum::<usize>() as u64],
                found: vec![weight.cols() as u64, rows as u64],
            });
        }
        let mut at = 0;
        let mut out = Vec::with_capacity(parts.len());
        for &n in parts {
            let range: Range<usize> = at..at + n;
            at += n;
            out.push(Linear::new(weight.slice_rows(range.clone())?, bias.as_ref().map(|b| b.clone().slice([range]))));
        }
        Ok((whole, out))
    }
}
