// Photos a person attaches: their format by their first bytes (a file's name and the type the
// browser guesses from it can be wrong) and their size in pixels from their header, read without
// decoding a pixel. The engine decodes the bytes itself (crates/vision); the page only needs to
// know what it is about to send and whether a preview is safe to decode.

// The formats the engine reads, by the bytes they start with.
export const IMAGE_FORMATS = Object.freeze({ 'image/png': 'PNG', 'image/jpeg': 'JPEG', 'image/webp': 'WebP' });
export const READABLE_FORMATS = 'PNG, JPEG or WebP';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const startsWith = (bytes, prefix, at = 0) => prefix.every((byte, i) => bytes[at + i] === byte);
const ascii = (text) => [...text].map((c) => c.charCodeAt(0));
const u16be = (b, i) => (b[i] << 8) | b[i + 1];
const u16le = (b, i) => b[i] | (b[i + 1] << 8);
const u24le = (b, i) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16);
const u32be = (b, i) => ((b[i] << 24) >>> 0) + ((b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]);

// 'image/png', 'image/jpeg' or 'image/webp' by the file's first bytes, or null.
export function imageType(bytes) {
  if (startsWith(bytes, PNG_SIGNATURE)) return 'image/png';
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'image/jpeg';
  if (startsWith(bytes, ascii('RIFF')) && startsWith(bytes, ascii('WEBP'), 8)) return 'image/webp';
  return null;
}

// JPEG start-of-frame markers (SOF0–SOF15 but DHT, JPG and DAC), which carry the frame's size.
const isStartOfFrame = (marker) => marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
// JPEG markers with no length after them.
const isStandalone = (marker) => marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8);

function jpegSize(bytes) {
  let at = 2;
  while (at + 9 <= bytes.length) {
    if (bytes[at] !== 0xff) return null;
    const marker = bytes[at + 1];
    if (marker === 0xff) {
      at += 1; // fill byte
    } else if (isStandalone(marker)) {
      at += 2;
    } else if (isStartOfFrame(marker)) {
      return { width: u16be(bytes, at + 7), height: u16be(bytes, at + 5) };
    } else {
      at += 2 + u16be(bytes, at + 2);
    }
  }
  return null;
}

function webpSize(bytes) {
  const chunk = String.fromCharCode(...bytes.subarray(12, 16));
  if (chunk === 'VP8 ' && bytes.length >= 30 && startsWith(bytes, [0x9d, 0x01, 0x2a], 23)) {
    return { width: u16le(bytes, 26) & 0x3fff, height: u16le(bytes, 28) & 0x3fff };
  }
  if (chunk === 'VP8L' && bytes.length >= 25 && bytes[20] === 0x2f) {
    const [b0, b1, b2, b3] = bytes.subarray(21, 25);
    return { width: 1 + (((b1 & 0x3f) << 8) | b0), height: 1 + (((b3 & 0x0f) << 10) | (b2 << 2) | ((b1 & 0xc0) >> 6)) };
  }
  if (chunk === 'VP8X' && bytes.length >= 30) return { width: 1 + u24le(bytes, 24), height: 1 + u24le(bytes, 27) };
  return null;
}

// {width, height} from the header of a PNG, JPEG or WebP file (as stored: before any EXIF
// rotation, which does not change the number of pixels), or null when it cannot be read.
export function imageSize(bytes) {
  switch (imageType(bytes)) {
    case 'image/png':
      return bytes.length >= 24 && startsWith(bytes, ascii('IHDR'), 12) ? { width: u32be(bytes, 16), height: u32be(bytes, 20) } : null;
    case 'image/jpeg':
      return jpegSize(bytes);
    case 'image/webp':
      return webpSize(bytes);
    default:
      return null;
  }
}

// A data: URL of `blob`'s exact bytes (what the engine is sent: no re-encoding, so the browser
// and the native engine see the same file).
export function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

// Whether `url` is a data: URL of an image in base64, the only way an image reaches the engine.
export const isImageDataUrl = (url) => typeof url === 'string' && /^data:image\/[\w.+-]+(;[\w.+-]+=[^;,]*)*;base64,/i.test(url);
