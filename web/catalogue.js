// The model picker's catalogue: small chat models from the Hugging Face Hub that Burrow runs,
// one per family, by direct file URL (the Hub serves them with CORS and byte ranges). Sizes are
// approximate, for the label and for checking the device before downloading; the store takes the
// real size from the server. Any other GGUF URL can be pasted.
// Models that read images (`vision: true`) come with their vision projector, `mmproj` ({url,
// size}): a second file, downloaded, stored and checked like the model, listed with it as one
// model. `contextLength`: the tokens a conversation keeps, where the default (2048) is too few: a
// photo takes up to 1,088 of SmolVLM's tokens (16 tiles and an overview of 64 each), and each turn
// sends the conversation's photos again (Qwen2.5-VL's take up to 1,024 by default in the browser).

const HUB = 'https://huggingface.co';
const VISION_CONTEXT_TOKENS = 4096;

export const CATALOGUE = Object.freeze([
  {
    name: 'SmolLM2 360M Instruct', quant: 'Q8_0', size: 386_404_992, suits: 'any phone',
    url: `${HUB}/HuggingFaceTB/SmolLM2-360M-Instruct-GGUF/resolve/main/smollm2-360m-instruct-q8_0.gguf`,
  },
  {
    name: 'Qwen2.5 0.5B Instruct', quant: 'Q4_K_M', size: 491_400_032, suits: 'any phone',
    url: `${HUB}/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf`,
  },
  {
    name: 'Qwen3 0.6B', quant: 'Q8_0', size: 639_446_688, suits: 'phones with 4 GB+',
    url: `${HUB}/Qwen/Qwen3-0.6B-GGUF/resolve/main/Qwen3-0.6B-Q8_0.gguf`,
  },
  {
    name: 'Gemma 3 1B it', quant: 'Q4_K_M', size: 806_058_272, suits: 'phones with 4 GB+',
    url: `${HUB}/ggml-org/gemma-3-1b-it-GGUF/resolve/main/gemma-3-1b-it-Q4_K_M.gguf`,
  },
  {
    name: 'Llama 3.2 1B Instruct', quant: 'Q4_K_M', size: 807_694_464, suits: 'phones with 4 GB+',
    url: `${HUB}/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf`,
  },
  {
    name: 'Gemma 2 2B it', quant: 'Q4_K_M', size: 1_708_582_752, suits: 'phones with 8 GB+',
    url: `${HUB}/bartowski/gemma-2-2b-it-GGUF/resolve/main/gemma-2-2b-it-Q4_K_M.gguf`,
  },
  {
    name: 'Phi-3 mini 4k Instruct', quant: 'Q4_K_M', size: 2_393_231_072, suits: 'tablets and laptops',
    url: `${HUB}/microsoft/Phi-3-mini-4k-instruct-gguf/resolve/main/Phi-3-mini-4k-instruct-q4.gguf`,
  },
  {
    name: 'SmolVLM 256M Instruct', quant: 'Q8_0', size: 175_000_000, suits: 'any phone', vision: true,
    contextLength: VISION_CONTEXT_TOKENS,
    url: `${HUB}/ggml-org/SmolVLM-256M-Instruct-GGUF/resolve/main/SmolVLM-256M-Instruct-Q8_0.gguf`,
    mmproj: Object.freeze({
      size: 104_000_000,
      url: `${HUB}/ggml-org/SmolVLM-256M-Instruct-GGUF/resolve/main/mmproj-SmolVLM-256M-Instruct-Q8_0.gguf`,
    }),
  },
  {
    name: 'SmolVLM 500M Instruct', quant: 'Q8_0', size: 437_000_000, suits: 'phones with 4 GB+', vision: true,
    contextLength: VISION_CONTEXT_TOKENS,
    url: `${HUB}/ggml-org/SmolVLM-500M-Instruct-GGUF/resolve/main/SmolVLM-500M-Instruct-Q8_0.gguf`,
    mmproj: Object.freeze({
      size: 109_000_000,
      url: `${HUB}/ggml-org/SmolVLM-500M-Instruct-GGUF/resolve/main/mmproj-SmolVLM-500M-Instruct-Q8_0.gguf`,
    }),
  },
  {
    // The reference vision model people compare with is the 7B; the 3B is what a tablet holds.
    name: 'Qwen2.5-VL 3B Instruct', quant: 'Q4_K_M', size: 1_930_000_000, suits: 'tablets and laptops', vision: true,
    contextLength: VISION_CONTEXT_TOKENS,
    url: `${HUB}/ggml-org/Qwen2.5-VL-3B-Instruct-GGUF/resolve/main/Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf`,
    mmproj: Object.freeze({
      size: 845_000_000,
      url: `${HUB}/ggml-org/Qwen2.5-VL-3B-Instruct-GGUF/resolve/main/mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf`,
    }),
  },
].map(Object.freeze));

// What downloading an entry costs, its projector included.
export const downloadSize = (entry) => entry.size + (entry.mmproj?.size ?? 0);
