//! Images in a prompt: each image becomes embeddings (the mmproj's encoder: SmolVLM tile by tile,
//! Qwen2.5-VL whole), laid out among the projector's own text markers exactly as llama.cpp's mtmd
//! lays them out, so a prompt's positions, and so its logits, can be compared with llama.cpp's
//! token for token. Qwen2.5-VL's language model places an image's tokens on its grid (M-RoPE:
//! each token's row and column), and the text after it one past the grid's longer side.
//!
//! A prompt is laid out before anything is encoded: an image's place in it depends only on its
//! size. So a chat turn evaluates only what follows the prefix it shares with the KV cache, and a
//! follow-up question about a photo does not encode the photo again.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use burn::tensor::Tensor;
use burrow_model::{Projector, Session, VisionEncoder};
use burrow_vision::{Idefics3, MropeImage, Qwen2Vl, Qwen2VlImage, Rgb, Tiles};

use crate::{Engine, EngineError, Generated, GenerateOptions};

pub use burrow_text::MEDIA_MARKER;

/// Image sizes a chat remembers, so that the images already in its cache are not decoded again
/// to lay out the next turn; past this many it forgets them all (a size is 8 bytes, a decode of
/// a phone photo a good part of a second).
const REMEMBERED_IMAGE_SIZES: usize = 256;

/// An image for a prompt: its file's bytes (decoded when needed) or its pixels.
#[derive(Clone, Debug)]
pub struct ImageInput {
    /// Identifies the image in a chat's KV cache: a hash of its bytes or pixels.
    key: u64,
    source: ImageSource,
}

#[derive(Clone, Debug)]
enum ImageSource {
    File(Arc<[u8]>),
    Pixels(Arc<Rgb>),
}

impl ImageInput {
    /// An image file (PNG, JPEG or WebP), decoded by Burrow when its pixels are needed.
    pub fn from_file(bytes: impl Into<Arc<[u8]>>) -> ImageInput {
        let bytes = bytes.into();
        ImageInput { key: key_of(&[&bytes]), source: ImageSource::File(bytes) }
    }

    /// Pixels already decoded.
    pub fn from_pixels(rgb: Rgb) -> ImageInput {
        let key = key_of(&[&rgb.width.to_le_bytes(), &rgb.height.to_le_bytes(), &rgb.data]);
        ImageInput { key, source: ImageSource::Pixels(Arc::new(rgb)) }
    }

    fn decode(&self) -> Result<Arc<Rgb>, EngineError> {
        match &self.source {
            ImageSource::File(bytes) => Ok(Arc::new(burrow_vision::decode(bytes)?)),
            ImageSource::Pixels(rgb) => Ok(rgb.clone()),
        }
    }
}

fn key_of(parts: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// One position of a prompt, as a chat's cache compares them: a token, or row `row` of the
/// embeddings of the image `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Token(u32),
    Image { key: u64, row: u32 },
}

/// A prompt's pieces in order: token ids, or a part of an image (its embeddings are computed
/// when the piece is evaluated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptPiece {
    Tokens(Vec<u32>),
    /// Part `part` of image `image` (the prompt's images in order), `tokens` positions long:
    /// SmolVLM's tiles, the overview last; Qwen2.5-VL's whole image, its only part.
    Image { image: usize, part: usize, tokens: usize },
}

/// A prompt with images, laid out and ready to evaluate.
#[derive(Clone, Debug)]
pub struct ImagePrompt {
    pub pieces: Vec<PromptPiece>,
    /// Every text token, in order (the images' markers included).
    pub text_ids: Vec<u32>,
    /// Image tokens per image.
    pub image_tokens: Vec<usize>,
    images: Vec<ImageInput>,
    /// Each image's pixels when they were decoded to lay it out.
    decoded: Vec<Option<Arc<Rgb>>>,
    /// Each image's grid of tokens, for a projector that places them on one (Qwen2.5-VL).
    grids: Vec<Option<MropeImage>>,
    entries: Vec<Entry>,
}

impl ImagePrompt {
    /// Positions the prompt takes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Every position's rotary (time, row, column) positions, as llama.cpp's language model
    /// receives them: a text token's three equal, one past the previous position; a
    /// Qwen2.5-VL image's tokens at the image's start in time and spread over its grid's rows
    /// and columns, the text after it one past the grid's longer side (mtmd's M-RoPE layout); a
    /// SmolVLM tile's tokens like text.
    pub fn positions(&self) -> Vec<[u32; 3]> {
        let mut out = Vec::with_capacity(self.len());
        let mut next = 0u32;
        for piece in &self.pieces {
            let grid = match piece {
                PromptPiece::Image { image, .. } => self.grids[*image],
                PromptPiece::Tokens(_) => None,
            };
            match grid {
                Some(grid) => {
                    let start = i32::try_from(next).unwrap_or(i32::MAX);
                    // mtmd's fourth section is always 0.
                    out.extend(grid.positions(start).iter().map(|p| [p[0] as u32, p[1] as u32, p[2] as u32]));
                    next += grid.n_positions();
                }
                None => {
                    out.extend((next..).take(piece_len(piece)).map(|p| [p; 3]));
                    next += piece_len(piece) as u32;
                }
            }
        }
        out
    }
}

/// Sizes of images seen before, by key (see [`REMEMBERED_IMAGE_SIZES`]).
#[derive(Default)]
pub(crate) struct ImageSizes(HashMap<u64, (u32, u32)>);

impl ImageSizes {
    fn remember(&mut self, key: u64, size: (u32, u32)) {
        if self.0.len() >= REMEMBERED_IMAGE_SIZES {
            self.0.clear();
        }
        self.0.insert(key, size);
    }
}

/// What the layout interleaves: text, or part `n` of the current image.
enum Slot {
    Text(String),
    Part(usize),
}

/// SmolVLM's markers around an image's tiles (mtmd's idefics3 template): each tile after
/// `<fake_token_around_image><row_R_col_C>`, a line break after each row but the last, then the
/// overview between `\n\n<fake_token_around_image><global-img>` and `<fake_token_around_image>`.
fn idefics3_layout(grid_x: usize, grid_y: usize) -> Vec<Slot> {
    let mut slots = Vec::with_capacity(grid_x * grid_y * 2 + 4);
    for row in 0..grid_y {
        for col in 0..grid_x {
            slots.push(Slot::Text(format!("<fake_token_around_image><row_{}_col_{}>", row + 1, col + 1)));
            slots.push(Slot::Part(row * grid_x + col));
        }
        if row + 1 < grid_y {
            slots.push(Slot::Text("\n".into()));
        }
    }
    slots.push(Slot::Text("\n\n<fake_token_around_image><global-img>".into()));
    slots.push(Slot::Part(grid_x * grid_y));
    slots.push(Slot::Text("<fake_token_around_image>".into()));
    slots
}

/// Qwen2.5-VL's markers around an image (mtmd's): the whole image between `<|vision_start|>`
/// and `<|vision_end|>`.
fn qwen2vl_layout() -> Vec<Slot> {
    vec![Slot::Text("<|vision_start|>".into()), Slot::Part(0), Slot::Text("<|vision_end|>".into())]
}

/// How a projector's images are cut and sized.
enum Processor {
    Tiles(Idefics3),
    Grid(Qwen2Vl),
}

impl Processor {
    fn of(vision: &VisionEncoder) -> Processor {
        let c = &vision.config;
        match c.projector {
            Projector::Idefics3 => {
                Processor::Tiles(Idefics3 { tile_size: c.image_size as u32, longest_edge: c.longest_edge as u32, mean: c.mean, std: c.std })
            }
            Projector::Qwen25Vl => {
                let qwen = Qwen2Vl::new(c.patch_size as u32, c.scale_factor as u32, c.mean, c.std);
                Processor::Grid(match vision.image_token_budget() {
                    Some((min, max)) => qwen.with_token_budget(min as u32, max as u32),
                    None => qwen,
                })
            }
        }
    }

    /// A `width` × `height` image's slots among the text, the tokens of each of its parts, and
    /// its grid if it has one.
    fn layout(&self, width: u32, height: u32, tokens_per_tile: usize) -> (Vec<Slot>, Vec<usize>, Option<MropeImage>) {
        match self {
            Processor::Tiles(idefics3) => {
                let (_, (grid_x, grid_y)) = idefics3.layout(width, height);
                let tiles = (grid_x * grid_y) as usize + 1;
                (idefics3_layout(grid_x as usize, grid_y as usize), vec![tokens_per_tile; tiles], None)
            }
            Processor::Grid(qwen) => {
                let grid = qwen.tokens(width, height);
                (qwen2vl_layout(), vec![grid.n_tokens()], Some(grid))
            }
        }
    }
}

/// An image's pixels as the encoder takes them, made when its first part is evaluated.
enum Prepared {
    Tiles(Tiles),
    Grid(Qwen2VlImage),
}

impl Engine {
    /// The vision encoder, or why this model takes no images.
    pub fn vision(&self) -> Result<&VisionEncoder, EngineError> {
        self.vision.as_ref().ok_or_else(no_vision)
    }

    /// Sizes images to `min` to `max` tokens each (Qwen2.5-VL; SmolVLM's tiles have a fixed
    /// size and take no budget). A conversation laid out with another budget is evaluated again.
    pub fn set_image_token_budget(&mut self, min: usize, max: usize) -> Result<(), EngineError> {
        let vision = self.vision.as_mut().ok_or_else(no_vision)?;
        Ok(vision.set_image_token_budget(min, max)?)
    }

    /// Lets the model read images through `vision`, which must write embeddings as wide as the
    /// model's, and place them as the model does (Qwen2.5-VL's projector on a grid, with an
    /// M-RoPE model; SmolVLM's like text).
    pub fn attach_vision(&mut self, vision: VisionEncoder) -> Result<(), EngineError> {
        vision.config.check_pair(&self.model.config).map_err(EngineError::Unsupported)?;
        self.vision = Some(vision);
        Ok(())
    }

    /// `text` with each [`MEDIA_MARKER`] replaced by the next of `images`, laid out (nothing is
    /// encoded yet).
    pub fn image_prompt(&self, text: &str, images: &[ImageInput]) -> Result<ImagePrompt, EngineError> {
        self.lay_out(text, images, &mut ImageSizes::default())
    }

    pub(crate) fn lay_out(&self, text: &str, images: &[ImageInput], sizes: &mut ImageSizes) -> Result<ImagePrompt, EngineError> {
        let markers = text.matches(MEDIA_MARKER).count();
        if markers != images.len() {
            return Err(EngineError::BadRequest(format!("the prompt marks {markers} images but {} were given", images.len())));
        }
        let vision = self.vision()?;
        let processor = Processor::of(vision);
        let tokens_per_tile = vision.config.tokens_per_tile();
        let mut prompt = ImagePrompt {
            pieces: Vec::new(),
            text_ids: Vec::new(),
            image_tokens: Vec::new(),
            images: images.to_vec(),
            decoded: vec![None; images.len()],
            grids: Vec::with_capacity(images.len()),
            entries: Vec::new(),
        };
        let mut pending = String::new();
        let mut texts = text.split(MEDIA_MARKER);
        pending.push_str(texts.next().unwrap_or_default());
        for ((n, image), after) in images.iter().enumerate().zip(texts) {
            let (width, height) = match sizes.0.get(&image.key) {
                Some(&size) => size,
                None => {
                    let rgb = image.decode()?;
                    let size = (rgb.width, rgb.height);
                    prompt.decoded[n] = Some(rgb);
                    sizes.remember(image.key, size);
                    size
                }
            };
            let (slots, parts, grid) = processor.layout(width, height, tokens_per_tile);
            prompt.grids.push(grid);
            let mut row = 0;
            for slot in slots {
                match slot {
                    Slot::Text(t) => pending.push_str(&t),
                    Slot::Part(part) => {
                        self.push_text(&mut prompt, &std::mem::take(&mut pending))?;
                        let tokens = parts[part];
                        prompt.pieces.push(PromptPiece::Image { image: n, part, tokens });
                        prompt.entries.extend((row..row + tokens as u32).map(|row| Entry::Image { key: image.key, row }));
                        row += tokens as u32;
                    }
                }
            }
            prompt.image_tokens.push(row as usize);
            pending.push_str(after);
        }
        self.push_text(&mut prompt, &pending)?;
        Ok(prompt)
    }

    /// Text of the prompt: the first piece with the vocabulary's BOS, the rest continuing it.
    fn push_text(&self, prompt: &mut ImagePrompt, text: &str) -> Result<(), EngineError> {
        let ids = if prompt.pieces.is_empty() { self.tokenizer.encode(text, true)? } else { self.tokenizer.encode_continuation(text)? };
        if !ids.is_empty() {
            prompt.text_ids.extend(&ids);
            prompt.entries.extend(ids.iter().map(|&id| Entry::Token(id)));
            prompt.pieces.push(PromptPiece::Tokens(ids));
        }
        Ok(())
    }

    /// Where evaluation may start for a prompt whose first `shared` positions are in the cache:
    /// not inside an image's part (its embeddings are computed whole).
    pub(crate) fn part_boundary(prompt: &ImagePrompt, shared: usize) -> usize {
        let mut at = 0;
        for piece in &prompt.pieces {
            let len = piece_len(piece);
            if let PromptPiece::Image { .. } = piece {
                if at < shared && shared < at + len {
                    return at;
                }
            }
            at += len;
        }
        shared
    }

    /// Evaluates positions `from..` of `prompt` but its last (a text token, which it returns)
    /// after `session` holds its first `from`, encoding only the images evaluated.
    pub(crate) async fn prefill_prompt(&self, session: &mut Session, prompt: &ImagePrompt, from: usize) -> Result<u32, EngineError> {
        if prompt.len() > session.context_length() {
            return Err(EngineError::TooLong(format!(
                "the prompt with its images takes {} positions but the context has room for {}",
                prompt.len(),
                session.context_length()
            )));
        }
        let Some(PromptPiece::Tokens(last)) = prompt.pieces.last() else {
            return Err(EngineError::BadRequest("a prompt must end with text after its images".into()));
        };
        let last_id = *last.last().expect("text pieces are not empty");
        let end = prompt.len() - 1;
        let vision = self.vision()?;
        let processor = Processor::of(vision);
        // The pixels of the image being evaluated: an image's tiles are made together.
        let mut prepared: Option<(usize, Prepared)> = None;
        let positions = prompt.positions();
        let mut at = 0;
        for piece in &prompt.pieces {
            let len = piece_len(piece);
            let (start, stop) = (at.max(from), (at + len).min(end));
            at += len;
            if start >= stop {
                continue;
            }
            match piece {
                PromptPiece::Tokens(ids) => self.prefill_ids(session, &ids[start - (at - len)..stop - (at - len)]).await?,
                PromptPiece::Image { image, part, .. } => {
                    if prepared.as_ref().is_none_or(|(n, _)| n != image) {
                        let rgb = match &prompt.decoded[*image] {
                            Some(rgb) => rgb.clone(),
                            None => prompt.images[*image].decode()?,
                        };
                        let made = match &processor {
                            Processor::Tiles(idefics3) => Prepared::Tiles(idefics3.preprocess(&rgb)),
                            Processor::Grid(qwen) => Prepared::Grid(qwen.preprocess(&rgb)),
                        };
                        prepared = Some((*image, made));
                    }
                    match &prepared.as_ref().expect("made above").1 {
                        Prepared::Tiles(made) => {
                            let pixels = made.tiles.get(*part).unwrap_or(&made.overview);
                            drop(self.model.forward_embeddings(session, vision.encode_tile(pixels)?).await?);
                        }
                        Prepared::Grid(made) => self.prefill_grid(session, vision, made, &positions[at - len..at]).await?,
                    }
                }
            }
        }
        Ok(last_id)
    }

    /// Evaluates a Qwen2.5-VL image after what `session` holds, its tokens at `positions` (the
    /// prompt's, [`ImagePrompt::positions`]), [`Engine::prefill_pass_tokens`] rows at a time.
    async fn prefill_grid(&self, session: &mut Session, vision: &VisionEncoder, image: &Qwen2VlImage, positions: &[[u32; 3]]) -> Result<(), EngineError> {
        let tokens = image.tokens.n_tokens();
        if positions.len() != tokens {
            return Err(EngineError::BadRequest(format!("an image laid out as {} tokens became {tokens}", positions.len())));
        }
        // The prompt's positions count from its start: the session must hold its prefix.
        if positions.first().is_some_and(|p| p[0] as usize != session.rope_position()) {
            return Err(EngineError::BadRequest("the session does not hold the prompt before this image".into()));
        }
        let [_, rows, cols] = image.grid_thw;
        let embeddings = vision.encode_image(&image.planar(), [rows as usize, cols as usize])?;
        let pass = self.prefill_pass_tokens();
        for at in (0..tokens).step_by(pass) {
            let end = (at + pass).min(tokens);
            let rows: Tensor<2> = embeddings.clone().slice([at..end]);
            drop(self.model.forward_embeddings_at(session, rows, &positions[at..end]).await?);
        }
        Ok(())
    }

    /// Evaluates `ids` after what `session` holds, [`Engine::prefill_pass_tokens`] at a time.
    async fn prefill_ids(&self, session: &mut Session, ids: &[u32]) -> Result<(), EngineError> {
        for chunk in ids.chunks(self.prefill_pass_tokens()) {
            drop(self.model.forward(session, chunk).await?);
        }
        Ok(())
    }

    /// [`Engine::generate`] after a prompt with images, from a fresh `session`.
    pub async fn generate_with_images(
        &self,
        session: &mut Session,
        prompt: &ImagePrompt,
        opts: &GenerateOptions,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generated, EngineError> {
        let last = self.prefill_prompt(session, prompt, 0).await?;
        self.generate(session, &[last], opts, on_text).await
    }

    /// The logits at the last position of a prompt with images, from a fresh session of `n_ctx`.
    pub async fn image_prompt_logits(&self, prompt: &ImagePrompt, n_ctx: usize) -> Result<Vec<f32>, EngineError> {
        let mut session = self.new_session(n_ctx.max(prompt.len()))?;
        let last = self.prefill_prompt(&mut session, prompt, 0).await?;
        let hidden = self.model.forward(&mut session, &[last]).await?;
        Ok(crate::read_rows(self.model.last_logits(hidden)?).await?.swap_remove(0))
    }
}

fn no_vision() -> EngineError {
    EngineError::BadRequest("this model does not read images: no vision projector (mmproj) is loaded with it".into())
}

fn piece_len(piece: &PromptPiece) -> usize {
    match piece {
        PromptPiece::Tokens(ids) => ids.len(),
        PromptPiece::Image { tokens, .. } => *tokens,
    }
}
