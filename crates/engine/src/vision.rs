//! Images in a prompt: each image's tiles become embeddings (the mmproj's encoder), laid out among
//! the projector's own text markers exactly as llama.cpp's mtmd lays them out, so a prompt's
//! positions, and so its logits, can be compared with llama.cpp's token for token.

use burn::tensor::Tensor;
use burrow_model::{Projector, VisionEncoder};
use burrow_vision::{Idefics3, Rgb};

use crate::{Engine, EngineError, Generated, GenerateOptions};
use burrow_model::Session;

/// Where each image goes in a prompt's text (llama.cpp's default media marker).
pub const MEDIA_MARKER: &str = "<__media__>";

/// A prompt's pieces in order: token ids, or one tile's embeddings.
pub enum PromptPiece {
    Tokens(Vec<u32>),
    Image(Tensor<2>),
}

/// A prompt with images, ready to evaluate.
pub struct ImagePrompt {
    pub pieces: Vec<PromptPiece>,
    /// Every text token, in order (the images' markers included).
    pub text_ids: Vec<u32>,
    /// Image tokens per image.
    pub image_tokens: Vec<usize>,
}

impl ImagePrompt {
    /// Positions the prompt takes.
    pub fn len(&self) -> usize {
        self.text_ids.len() + self.image_tokens.iter().sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the layout interleaves: text, or the embeddings of tile `n` of the current image (the
/// overview last).
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

impl Engine {
    /// `text` with each [`MEDIA_MARKER`] replaced by the next of `images`, encoded by `vision`.
    pub fn image_prompt(&self, vision: &VisionEncoder, text: &str, images: &[Rgb]) -> Result<ImagePrompt, EngineError> {
        let markers = text.matches(MEDIA_MARKER).count();
        if markers != images.len() {
            return Err(EngineError::BadRequest(format!("the prompt marks {markers} images but {} were given", images.len())));
        }
        let c = &vision.config;
        if c.projection_dim != self.model.config.n_embd {
            return Err(EngineError::Unsupported(format!(
                "this vision projector writes embeddings {} wide, but the language model's are {}: they are not a pair",
                c.projection_dim, self.model.config.n_embd
            )));
        }
        let mut prompt = ImagePrompt { pieces: Vec::new(), text_ids: Vec::new(), image_tokens: Vec::new() };
        let mut pending = String::new();
        let mut texts = text.split(MEDIA_MARKER);
        pending.push_str(texts.next().unwrap_or_default());
        for (image, after) in images.iter().zip(texts) {
            let tiles = match c.projector {
                Projector::Idefics3 => {
                    let processor = Idefics3 { tile_size: c.image_size as u32, longest_edge: c.longest_edge as u32, mean: c.mean, std: c.std };
                    processor.preprocess(image)
                }
            };
            let mut n_tokens = 0;
            for slot in idefics3_layout(tiles.grid_x as usize, tiles.grid_y as usize) {
                match slot {
                    Slot::Text(t) => pending.push_str(&t),
                    Slot::Tile(n) => {
                        self.push_text(&mut prompt, &std::mem::take(&mut pending))?;
                        let pixels = tiles.tiles.get(n).unwrap_or(&tiles.overview);
                        prompt.pieces.push(PromptPiece::Image(vision.encode_tile(pixels)?));
                        n_tokens += c.tokens_per_tile();
                    }
                }
            }
            prompt.image_tokens.push(n_tokens);
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
            prompt.pieces.push(PromptPiece::Tokens(ids));
        }
        Ok(())
    }

    /// Evaluates all of `prompt` but its last text token into `session` (a fresh one), which
    /// the caller evaluates next ([`Engine::generate_with_images`], or for its logits).
    pub async fn prefill_images(&self, session: &mut Session, prompt: &ImagePrompt) -> Result<u32, EngineError> {
        if prompt.len() > session.context_length() - session.position() {
            return Err(EngineError::TooLong(format!(
                "the prompt with its images takes {} positions but the context has room for {}",
                prompt.len(),
                session.context_length() - session.position()
            )));
        }
        let Some(PromptPiece::Tokens(last)) = prompt.pieces.last() else {
            return Err(EngineError::BadRequest("a prompt must end with text after its images".into()));
        };
        let last_id = *last.last().expect("text pieces are not empty");
        for (i, piece) in prompt.pieces.iter().enumerate() {
            match piece {
                PromptPiece::Tokens(ids) => {
                    let ids = if i + 1 == prompt.pieces.len() { &ids[..ids.len() - 1] } else { &ids[..] };
                    if !ids.is_empty() {
                        drop(self.model.forward(session, ids).await?);
                    }
                }
                PromptPiece::Image(rows) => drop(self.model.forward_embeddings(session, rows.clone()).await?),
            }
        }
        Ok(last_id)
    }

    /// [`Engine::generate`] after a prompt with images, from a fresh `session`.
    pub async fn generate_with_images(
        &self,
        session: &mut Session,
        prompt: &ImagePrompt,
        opts: &GenerateOptions,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generated, EngineError> {
        let last = self.prefill_images(session, prompt).await?;
        self.generate(session, &[last], opts, on_text).await
    }

    /// The logits at the last position of a prompt with images, from a fresh session of `n_ctx`.
    pub async fn image_prompt_logits(&self, prompt: &ImagePrompt, n_ctx: usize) -> Result<Vec<f32>, EngineError> {
        let mut session = self.new_session(n_ctx.max(prompt.len()))?;
        let last = self.prefill_images(&mut session, prompt).await?;
        let hidden = self.model.forward(&mut session, &[last]).await?;
        Ok(crate::read_rows(self.model.last_logits(hidden)?).await?.swap_remove(0))
    }
}
