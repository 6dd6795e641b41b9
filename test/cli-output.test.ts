/**
 * The CLI's table, summary and progress line (lib/cli/output.ts): long sources shortened in the
 * middle to the terminal width, faces and frames in their own columns, no rate when nothing was
 * scored, an ETA on the progress line. Pure formatting: results are built here, the clock is given.
 */
import { PassThrough } from 'node:stream';

import { describe, expect, it } from 'vitest';

import type { DetectResult } from '../lib/detector';
import { noMatchMessage } from '../lib/cli/glob';
import { formatDuration, middleEllipsis, Progress, tableHeader, tableRow, Tally } from '../lib/cli/output';

function result(over: Partial<DetectResult>): DetectResult {
  return {
    index: 0,
    source: 'a.jpg',
    kind: 'image',
    pFake: 0.25,
    label: 'real',
    threshold: 0.5,
    noFace: false,
    faces: [],
    aggregate: 'max-face',
    model: { name: 'm.pt', arch: 'vit', sourceKind: 'init', sourceSha256: '', dtype: 'float32' },
    timings: { decodeMs: 1, facesMs: 1, scoreMs: 1, totalMs: 3 },
    ...over,
  };
}

const face = { box: { x: 0, y: 0, width: 10, height: 10 }, score: 0.9, pFake: 0.2 } as DetectResult['faces'][number];

describe('table rows', () => {
  const long = `/data/${'very-long-folder-name/'.repeat(6)}clip-0001.mp4`;

  it('shorten long sources in the middle to the terminal width, and keep them whole without one', () => {
    for (const columns of [80, 100, 120]) {
      const row = tableRow(result({ source: long }), columns);
      expect(row.length).toBeLessThan(columns);
      expect(row).toContain('…');
      expect(row).toMatch(/ \/data\/v[^ ]*…[^ ]*clip-0001\.mp4$/);
    }
    expect(tableRow(result({ source: long }))).toContain(long);
    expect(tableRow(result({ source: 'short.jpg' }), 80)).toMatch(/ short\.jpg$/);
    // An error's message line fits too.
    const failed = tableRow(result({ source: long, pFake: null, label: null, error: { code: 'DECODE_FAILED', message: 'x'.repeat(300) } }), 80);
    for (const line of failed.split('\n')) expect(line.length).toBeLessThan(80);
    expect(tableHeader().indexOf('source')).toBe(tableRow(result({ source: 'S' }), 80).indexOf('S'));
  });

  it('show faces (distinct tracks for a video) and frames in separate columns', () => {
    const frames = Array.from({ length: 32 }, () => ({}) as NonNullable<DetectResult['frames']>[number]);
    const tracks = [{}, {}] as NonNullable<DetectResult['tracks']>;
    const video = tableRow(result({ kind: 'video', faces: Array.from({ length: 32 }, () => face), frames, tracks, aggregate: 'max-track-mean' }), 120);
    const cells = video.trim().split(/\s+/);
    const header = tableHeader().trim().split(/\s+/);
    expect(cells[header.indexOf('faces')]).toBe('2');
    expect(cells[header.indexOf('frames')]).toBe('32');
    expect(video).not.toContain('/32');
    const image = tableRow(result({ faces: [face, face, face] }), 120).trim().split(/\s+/);
    expect(image[header.indexOf('faces')]).toBe('3');
    expect(image[header.indexOf('frames')]).toBe('-');
  });

  it('middleEllipsis keeps both ends and the length', () => {
    expect(middleEllipsis('abcdefghij', 10)).toBe('abcdefghij');
    expect(middleEllipsis('abcdefghij', 7)).toBe('ab…ghij');
    expect([...middleEllipsis('a/b/c/d/e/f/g/h/file.jpg', 12)].length).toBe(12);
  });
});

describe('summary and progress', () => {
  it('prints no rate when nothing was scored', () => {
    let now = 0;
    const t = new Tally(() => now);
    for (let i = 0; i < 3; i++) t.add(result({ pFake: null, label: null, error: { code: 'NOT_FOUND', message: 'gone' } }));
    now = 500;
    expect(t.summary()).not.toMatch(/img\/s/);
    expect(t.summary()).toMatch(/3 failed\n0\.5 s, nothing scored$/);
    t.add(result({ faces: [face] }));
    expect(t.summary()).toMatch(/8\.00 img\/s, 2\.00 faces\/s$/);
  });

  it('shows an ETA from the pace so far, and none when done or unknown', () => {
    let now = 0;
    const t = new Tally(() => now);
    const stream = Object.assign(new PassThrough(), { columns: 120 }) as unknown as NodeJS.WriteStream;
    let out = '';
    (stream as unknown as PassThrough).on('data', (d: Buffer) => (out += d.toString()));
    const progress = new Progress(stream, true, 10);
    progress.update(t, true);
    expect(out).not.toMatch(/ETA/);
    for (let i = 0; i < 4; i++) t.add(result({}));
    now = 8000; // 4 inputs in 8 s: 6 left take 12 s
    progress.update(t, true);
    expect(out).toMatch(/4\/10 .*ETA 12s$/);
    for (let i = 0; i < 6; i++) t.add(result({}));
    progress.update(t, true);
    expect(out.split('\r').pop()).not.toMatch(/ETA/);
    expect(formatDuration(185)).toBe('3m05s');
    expect(formatDuration(7620)).toBe('2h07m');
  });
});

describe('glob', () => {
  it('a pattern that matched nothing says so', () => {
    expect(noMatchMessage('imgs/*.jpg')).toBe('the pattern imgs/*.jpg matched no files');
  });
});
