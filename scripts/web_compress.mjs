#!/usr/bin/env node
// Writes FILE.br (brotli, best quality) and FILE.gz (gzip -9) beside each FILE, for
// scripts/web_serve.mjs to serve to browsers that accept them: the engine's 9.6 MB of wasm crosses
// the network as about 1.9 MB.
//
//   node scripts/web_compress.mjs FILE...

import { readFile, writeFile } from 'node:fs/promises';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

// Brotli's largest window (16 MiB) finds the repeats across a large wasm module.
const BROTLI_WINDOW_BITS = 24;
const GZIP_LEVEL = 9;

for (const file of process.argv.slice(2)) {
  const data = await readFile(file);
  const br = brotliCompressSync(data, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
      [constants.BROTLI_PARAM_LGWIN]: BROTLI_WINDOW_BITS,
      [constants.BROTLI_PARAM_SIZE_HINT]: data.length,
    },
  });
  await writeFile(`${file}.br`, br);
  await writeFile(`${file}.gz`, gzipSync(data, { level: GZIP_LEVEL }));
  console.log(`${file}: ${data.length} bytes, ${br.length} as brotli`);
}
