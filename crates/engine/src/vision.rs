//! Images in a prompt: each image's tiles become embeddings (the mmproj's encoder), laid out among
//! the projector's own text markers exactly as llama.cpp's mtmd lays them out, so a prompt's
//! positions, and so its logits, can be compared with llama.cpp's token for token.
//!
//! A prompt is laid out before anything is encoded: an image's place in it depends only on its
//! size. So a chat turn evaluates only what follows the prefix it shares with the KV cache, and a
//! follow-up question about a photo does not encode the photo again.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use burrow_model::{Projector, Session, VisionEncoder};
use burrow_vision::{Idefics3, Rgb, Tiles};

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

/// A prompt's pieces in order: token ids, or one tile of an image (its embeddings are computed
/// when the piece is evaluated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptPiece {
    Tokens(Vec<u32>),
    /// Tile `tile` of image `image` (the prompt's images in order; the overview is the last
    /// tile), `tokens` positions long.
    Tile { image: usize, tile: usize, tokens: usize },
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

/// What the layout interleaves: text, or tile `n` of the current image (the overview last).
enum Slot {
    Text(String),
    Tile(usize),
}

/// SmolVLM's markers around an image's tiles (mtmd's idefics3 template): each tile after
/// `<fake_token_around_image><row_R_col_C>`, a line break after each row but the last, then the
/// overview between `\n\n<fake_token_around_image><global-img>` and `<fake_token_around_image>`.
fn idefics3_layout(grid_x: usize, grid_y: usize) -> Vec<Slot> {
    let mut slots = Vec::with_capacity(grid_x * grid_y * 2 + 4);
    for row in 0..grid_y {
        for col in 0..grid_x {
            slots.push(Slot::Text(format!("<fake_token_around_image><row_{}_col_{}>", row + 1, col + 1)));
            slots.push(Slot::Tile(row * grid_x + col));
        }
        if row + 1 < grid_y {
            slots.push(Slot::Text("\n".into()));
        }
    }
    slots.push(Slot::Text("\n\n<fake_token_around_image><global-img>".into()));
    slots.push(Slot::Tile(grid_x * grid_y));
    slots.push(Slot::Text("<fake_token_around_image>".into()));
    slots
}

fn idefics3(vision: &VisionEncoder) -> Idefics3 {
    let c = &vision.config;
    match c.projector {
        Projector::Idefics3 => Idefics3 { tile_size: c.image_size as u32, longest_edge: c.longest_edge as u32, mean: c.mean, std: c.std },
    }
}

impl Engine {
    /// The vision encoder, or why this model takes no images.
    pub fn vision(&self) -> Result<&VisionEncoder, EngineError> {
        self.vision.as_ref().ok_or_else(|| {
            EngineError::BadRequest("this model does not read images: no vision projector (mmproj) is loaded with it".into())
        })
    }

    /// Lets the model read images through `vision`, which must write embeddings as wide as the
    /// model's.
    pub fn attach_vision(&mut self, vision: VisionEncoder) -> Result<(), EngineError> {
        vision.config.check_pair(self.model.config.n_embd).map_err(EngineError::Unsupported)?;
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
        let processor = idefics3(vision);
        let tokens_per_tile = vision.config.tokens_per_tile();
        let mut prompt = ImagePrompt {
            pieces: Vec::new(),
            text_ids: Vec::new(),
            image_tokens: Vec::new(),
            images: images.to_vec(),
            decoded: vec![None; images.len()],
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
            let (_, (grid_x, grid_y)) = processor.layout(width, height);
            let mut row = 0;
            for slot in idefics3_layout(grid_x as usize, grid_y as usize) {
                match slot {
                    Slot::Text(t) => pending.push_str(&t),
                    Slot::Tile(tile) => {
                        self.push_text(&mut prompt, &std::mem::take(&mut pending))?;
                        prompt.pieces.push(PromptPiece::Tile { image: n, tile, tokens: tokens_per_tile });
                        prompt.entries.extend((row..row + tokens_per_tile as u32).map(|row| Entry::Image { key: image.key, row }));
                        row += tokens_per_tile as u32;
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
    /// not inside a tile (a tile's embeddings are computed whole).
    pub(crate) fn tile_boundary(prompt: &ImagePrompt, shared: usize) -> usize {
        let mut at = 0;
        for piece in &prompt.pieces {
            let len = piece_len(piece);
            if let PromptPiece::Tile { .. } = piece {
                if at < shared && shared < at + len {
                    return at;
                }
            }
            at += len;
        }
        shared
    }

    /// Evaluates positions `from..` of `prompt` but its last (a text token, which it returns)
    /// after `session` holds its first `from`, encoding only the tiles evaluated.
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
        let processor = idefics3(vision);
        // The tiles of the image being evaluated: an image's tiles are made together.
        let mut tiles: Option<(usize, Tiles)> = None;
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
                PromptPiece::Tile { image, tile, .. } => {
                    if tiles.as_ref().is_none_or(|(n, _)| n != image) {
                        let rgb = match &prompt.decoded[*image] {
                            Some(rgb) => rgb.clone(),
                            None => prompt.images[*image].decode()?,
                        };
                        tiles = Some((*image, processor.preprocess(&rgb)));
                    }
                    let (_, made) = tiles.as_ref().expect("made above");
                    let pixels = made.tiles.get(*tile).unwrap_or(&made.overview);
                    let rows = vision.encode_tile(pixels)?;
                    drop(self.model.forward_embeddings(session, rows).await?);
                }
            }
        }
        Ok(last_id)
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

fn piece_len(piece: &PromptPiece) -> usize {
    match piece {
        PromptPiece::Tokens(ids) => ids.len(),
        PromptPiece::Tile { tokens, .. } => *tokens,
    }
}
