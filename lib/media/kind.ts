/**
 * Image or video? By file extension (for folder scans) or by magic bytes (for buffers).
 */
import * as path from 'node:path';

/** What a file or buffer holds, as far as dfdet is concerned. */
export type MediaKind = 'image' | 'video' | 'unknown';

/** Lower-case extensions (with dot) decoded as still images by {@link decodeImage}. */
export const IMAGE_EXTENSIONS: readonly string[] = [
  '.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.webp', '.avif', '.heic', '.heif', '.tif', '.tiff', '.gif', '.bmp',
];

/** Lower-case extensions (with dot) decoded as videos with ffmpeg. */
export const VIDEO_EXTENSIONS: readonly string[] = [
  '.mp4', '.m4v', '.mov', '.mkv', '.webm', '.avi', '.wmv', '.asf', '.flv', '.mpg', '.mpeg', '.ts', '.mts', '.m2ts',
  '.3gp', '.3g2', '.ogv', '.y4m',
];

/** Kind of a path from its extension (case-insensitive). */
export function mediaKindFromPath(p: string): MediaKind {
  const ext = path.extname(p).toLowerCase();
  if (IMAGE_EXTENSIONS.includes(ext)) return 'image';
  if (VIDEO_EXTENSIONS.includes(ext)) return 'video';
  return 'unknown';
}

function ascii(b: Uint8Array, start: number, len: number): string {
  return String.fromCharCode(...b.subarray(start, start + len));
}

/** ISO-BMFF brands of still images (HEIF family); other `ftyp` files are treated as video. */
const IMAGE_BRANDS = new Set(['avif', 'avis', 'heic', 'heix', 'heim', 'heis', 'mif1', 'msf1']);

/**
 * Kind of encoded bytes from their magic numbers (the first 16 bytes suffice).
 * Recognises JPEG, PNG, GIF, WebP, TIFF, BMP, AVIF/HEIF as images; MP4/MOV/3GP, Matroska/WebM,
 * AVI, ASF/WMV, FLV, MPEG-PS, MPEG-TS, Ogg and Y4M as videos.
 */
export function sniffMediaKind(bytes: Uint8Array): MediaKind {
  const b = bytes;
  if (b.length < 4) return 'unknown';
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image';
  if (b[0] === 0x89 && ascii(b, 1, 3) === 'PNG') return 'image';
  if (ascii(b, 0, 4) === 'GIF8') return 'image';
  if ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0) || (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0 && b[3] === 0x2a)) return 'image';
  if (b[0] === 0x42 && b[1] === 0x4d && b.length >= 14) return 'image';
  if (ascii(b, 0, 4) === 'RIFF' && b.length >= 12) {
    const form = ascii(b, 8, 4);
    if (form === 'WEBP') return 'image';
    if (form === 'AVI ') return 'video';
  }
  if (b.length >= 12 && ascii(b, 4, 4) === 'ftyp') return IMAGE_BRANDS.has(ascii(b, 8, 4)) ? 'image' : 'video';
  if (b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3) return 'video';
  if (b[0] === 0x30 && b[1] === 0x26 && b[2] === 0xb2 && b[3] === 0x75) return 'video';
  if (ascii(b, 0, 3) === 'FLV') return 'video';
  if (b[0] === 0 && b[1] === 0 && b[2] === 1 && (b[3] === 0xba || b[3] === 0xb3)) return 'video';
  if (ascii(b, 0, 4) === 'OggS') return 'video';
  if (b.length >= 9 && ascii(b, 0, 9) === 'YUV4MPEG2') return 'video';
  if (b[0] === 0x47 && b.length > 188 && b[188] === 0x47) return 'video';
  return 'unknown';
}
