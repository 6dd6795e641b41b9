/**
 * A small synthetic deepfake task made from real photos (Debian's astronaut and Grace Hopper):
 * random crops are "real"; the same kind of crops with one region recoloured (channels rotated
 * and brightened, a visible local manipulation) are "fake". Written as PNGs in `real/` and
 * `fake/` folders, a layout `dfdet eval` and `dfdet train` read.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { rng } from './random';

export const PHOTOS = [
  '/usr/lib/python3/dist-packages/imageio/resources/images/astronaut.png',
  '/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg',
];

export function havePhotos(): boolean {
  return PHOTOS.every((p) => fs.existsSync(p));
}

/** Writes `perClass` real and `perClass` fake 256-px crops under `dir/real` and `dir/fake`. */
export async function writeSyntheticSet(dir: string, perClass: number, seed: number): Promise<void> {
  const r = rng(seed);
  for (const cls of ['real', 'fake'] as const) fs.mkdirSync(path.join(dir, cls), { recursive: true });
  const metas = await Promise.all(PHOTOS.map((p) => sharp(p).metadata()));
  for (let i = 0; i < 2 * perClass; i++) {
    const fake = i % 2 === 1;
    const k = Math.floor(r() * PHOTOS.length);
    const { width = 0, height = 0 } = metas[k]!;
    const side = Math.floor(Math.min(width, height) * (0.5 + 0.4 * r()));
    const left = Math.floor(r() * (width - side));
    const top = Math.floor(r() * (height - side));
    let img = sharp(PHOTOS[k]!).removeAlpha().extract({ left, top, width: side, height: side }).resize(256, 256);
    if (r() < 0.5) img = img.flop();
    let png = await img.png().toBuffer();
    if (fake) {
      const s = 128 + Math.floor(r() * 64);
      const x = Math.floor(r() * (256 - s));
      const y = Math.floor(r() * (256 - s));
      const patch = await sharp(png)
        .extract({ left: x, top: y, width: s, height: s })
        .recomb([
          [0, 0, 1],
          [1, 0, 0],
          [0, 1, 0],
        ])
        .linear(1.4, 30)
        .png()
        .toBuffer();
      png = await sharp(png).composite([{ input: patch, left: x, top: y }]).png().toBuffer();
    }
    fs.writeFileSync(path.join(dir, fake ? 'fake' : 'real', `${String(i).padStart(3, '0')}.png`), png);
  }
}
