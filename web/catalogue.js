// The model picker's catalogue: small chat models from the Hugging Face Hub that Burrow runs,
// one per family, by direct file URL (the Hub serves them with CORS and byte ranges). Sizes are
// approximate, for the label and for checking the device before downloading; the store takes the
// real size from the server. Any other GGUF URL can be pasted.

const HUB = 'https://huggingface.co';

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
].map(Object.freeze));
