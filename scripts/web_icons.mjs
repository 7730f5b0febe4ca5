#!/usr/bin/env node
// Draws Burrow's app icons (a burrow entrance: dark arch on an earth-coloured ground) as PNGs with
// node's zlib alone, so no image library is needed: web/icons/icon-192.png, icon-512.png and
// icon-maskable-512.png (content kept inside the maskable safe zone, the central 80%).
//   node scripts/web_icons.mjs

import { writeFileSync, mkdirSync } from 'node:fs';
import { deflateSync, crc32 } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const OUT_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'web', 'icons');
const BACKGROUND = [0x3b, 0x2a, 0x1e]; // matches manifest background_color
const GROUND = [0xc8, 0x8d, 0x4f];
const HOLE = [0x1a, 0x12, 0x0c];
const MASKABLE_SAFE_ZONE = 0.8;
const CORNER_RADIUS = 0.18; // of the icon size, for the non-maskable icons

function chunk(type, data) {
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const out = Buffer.alloc(body.length + 8);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), body.length + 4);
  return out;
}

function png(size, pixel) {
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0; // filter: none
    for (let x = 0; x < size; x++) {
      const [r, g, b, a] = pixel((x + 0.5) / size, (y + 0.5) / size);
      raw.set([r, g, b, a], y * (size * 4 + 1) + 1 + x * 4);
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// Scene in unit coordinates of the content box: a mound with an arched hole.
function scene(u, v) {
  const inMound = v > 0.55 - 0.35 * Math.sqrt(Math.max(0, 1 - ((u - 0.5) / 0.5) ** 2));
  const dx = (u - 0.5) / 0.2;
  const inHole = v > 0.5 && v < 0.85 && (v > 0.65 || dx * dx + ((v - 0.65) / 0.15) ** 2 < 1) && Math.abs(dx) < 1;
  if (inHole) return HOLE;
  if (inMound && v < 0.85) return GROUND;
  if (v >= 0.85 && v < 0.9) return GROUND;
  return BACKGROUND;
}

function icon(size, maskable) {
  return png(size, (x, y) => {
    if (!maskable) {
      const r = CORNER_RADIUS;
      const cx = Math.min(Math.max(x, r), 1 - r);
      const cy = Math.min(Math.max(y, r), 1 - r);
      if ((x - cx) ** 2 + (y - cy) ** 2 > r * r) return [0, 0, 0, 0];
    }
    const inset = maskable ? (1 - MASKABLE_SAFE_ZONE) / 2 : 0.08;
    const u = (x - inset) / (1 - 2 * inset);
    const v = (y - inset) / (1 - 2 * inset);
    return [...(u < 0 || u > 1 || v < 0 || v > 1 ? BACKGROUND : scene(u, v)), 255];
  });
}

mkdirSync(OUT_DIR, { recursive: true });
writeFileSync(join(OUT_DIR, 'icon-192.png'), icon(192, false));
writeFileSync(join(OUT_DIR, 'icon-512.png'), icon(512, false));
writeFileSync(join(OUT_DIR, 'icon-maskable-512.png'), icon(512, true));
