//! SmolVLM's (Idefics3's) image layout, as llama.cpp's mtmd builds it (mtmd-image.cpp, after
//! transformers' image_processing_idefics3): the image is resized so its longer side is the
//! processor's longest edge (keeping its aspect ratio, the shorter side made even), then stretched
//! so both sides are whole tiles, and cut into tiles row by row; an overview of the whole image is
//! that stretched image at one tile's size. Every resize uses Pillow's Lanczos. In the prompt the
//! tiles come first, the overview ("global image") last.

use crate::resize::{resize, Filter};
use crate::Rgb;

#[derive(Clone, Debug, PartialEq)]
pub struct Idefics3 {
    /// A tile's side in pixels (`clip.vision.image_size`).
    pub tile_size: u32,
    /// The resized image's longer side (`clip.vision.preproc_image_size`).
    pub longest_edge: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// The encoder's input for one image: `grid_x` × `grid_y` tiles row by row, and the overview;
/// each `tile_size`² pixels of normalized `[r, g, b]`, rows top to bottom.
#[derive(Clone, Debug, PartialEq)]
pub struct Tiles {
    pub grid_x: u32,
    pub grid_y: u32,
    pub tiles: Vec<Vec<f32>>,
    pub overview: Vec<f32>,
}

impl Idefics3 {
    /// The resized size before the tiles are cut, and the grid (columns, rows).
    pub fn layout(&self, width: u32, height: u32) -> ((u32, u32), (u32, u32)) {
        let tile = self.tile_size;
        let edge = self.longest_edge;
        let aspect = f64::from(width) / f64::from(height);
        let (w, h) = if width >= height {
            let h = (f64::from(edge) / aspect) as u32;
            (edge, h + h % 2)
        } else {
            let w = (f64::from(edge) * aspect) as u32;
            (w + w % 2, edge)
        };
        // A sliver of an image (37 × 4000) still has a side of at least one pixel.
        let (w, h) = (w.max(1), h.max(1));
        ((w, h), (w.div_ceil(tile), h.div_ceil(tile)))
    }

    pub fn preprocess(&self, image: &Rgb) -> Tiles {
        let tile = self.tile_size;
        let ((w, h), (grid_x, grid_y)) = self.layout(image.width, image.height);
        let resized = resize(image, w, h, Filter::Lanczos);
        let refined = resize(&resized, grid_x * tile, grid_y * tile, Filter::Lanczos);
        let overview = self.normalize(&resize(&refined, tile, tile, Filter::Lanczos));
        let mut tiles = Vec::with_capacity((grid_x * grid_y) as usize);
        for y in 0..grid_y {
            for x in 0..grid_x {
                tiles.push(self.normalize(&refined.crop(x * tile, y * tile, tile, tile)));
            }
        }
        Tiles { grid_x, grid_y, tiles, overview }
    }

    /// (v / 255 − mean) / std per channel, in f32 as llama.cpp computes it.
    fn normalize(&self, image: &Rgb) -> Vec<f32> {
        image
            .data
            .chunks_exact(3)
            .flat_map(|p| (0..3).map(move |c| (f32::from(p[c]) / 255.0 - self.mean[c]) / self.std[c]))
            .collect()
    }
}
