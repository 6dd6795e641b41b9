import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseCsv, scanDataset } from '../lib/eval/dataset';
import { expectDfdetError } from './helpers/errors';

let tmp: string;

function touch(rel: string, content = 'x'): string {
  const p = path.join(tmp, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  return p;
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dfdet-ds-'));
  // Paper layout.
  touch('paper/CDF/Celeb-real/id0_0000/000.png');
  touch('paper/CDF/Celeb-real/id0_0000/015.png');
  touch('paper/CDF/YouTube-REAL/00000/000.jpg');
  touch('paper/CDF/Celeb-synthesis/id0_id1_0000/000.png');
  touch('paper/FF/DF/000_003/000.jpeg');
  touch('paper/FF/real/000/010.webp');
  touch('paper/FF/NT/clip.mp4');
  touch('paper/FF/DF/000_003/notes.txt');
  touch('paper/FF/DF/.hidden/000.png');
  // Generic.
  touch('generic/a.png');
  touch('generic/real_ones/b.jpg');
  touch('generic/fakes/c.mp4');
  touch('generic/misc/d.png');
  touch('empty/readme.txt');
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('scanDataset: paper layout', () => {
  it('finds frames with dataset, source, video, frame and label', async () => {
    const items = await scanDataset(path.join(tmp, 'paper'));
    const rel = (p: string) => path.relative(path.join(tmp, 'paper'), p).split(path.sep).join('/');
    expect(items.map((i) => [rel(i.path), i.dataset, i.source, i.video, i.frame, i.label, i.kind])).toEqual([
      ['CDF/Celeb-real/id0_0000/000.png', 'CDF', 'Celeb-real', 'id0_0000', '000', 0, 'image'],
      ['CDF/Celeb-real/id0_0000/015.png', 'CDF', 'Celeb-real', 'id0_0000', '015', 0, 'image'],
      ['CDF/Celeb-synthesis/id0_id1_0000/000.png', 'CDF', 'Celeb-synthesis', 'id0_id1_0000', '000', 1, 'image'],
      ['CDF/YouTube-REAL/00000/000.jpg', 'CDF', 'YouTube-REAL', '00000', '000', 0, 'image'],
      ['FF/DF/000_003/000.jpeg', 'FF', 'DF', '000_003', '000', 1, 'image'],
      ['FF/NT/clip.mp4', 'FF', 'NT', 'clip', null, 1, 'video'],
      ['FF/real/000/010.webp', 'FF', 'real', '000', '010', 0, 'image'],
    ]);
    for (const i of items) expect(path.isAbsolute(i.path)).toBe(true);
  });

  it('filters kinds and forces labels', async () => {
    const vids = await scanDataset(path.join(tmp, 'paper'), { kinds: ['video'], label: 0 });
    expect(vids.map((i) => [i.video, i.label])).toEqual([['clip', 0]]);
  });
});

describe('scanDataset: generic folder', () => {
  it('labels from folder names, null when unknown', async () => {
    const items = await scanDataset(path.join(tmp, 'generic'));
    expect(items.map((i) => [path.basename(i.path), i.dataset, i.source, i.label, i.kind])).toEqual([
      ['a.png', 'generic', '', null, 'image'],
      ['c.mp4', 'generic', 'fakes', 1, 'video'],
      ['d.png', 'generic', 'misc', null, 'image'],
      ['b.jpg', 'generic', 'real_ones', 0, 'image'],
    ]);
  });
});

describe('scanDataset: CSV', () => {
  it('reads a header-less CSV with relative paths, 0/1 labels and extra columns', async () => {
    const csv = touch('lists/test.csv', 'imgs/a.png,0\n"imgs/b, c.jpg",1,MyDS,vid7\r\n/abs/x.mp4,fake\n\n');
    const items = await scanDataset(csv);
    expect(items).toEqual([
      { path: path.join(tmp, 'lists/imgs/a.png'), dataset: 'test', source: 'real', video: 'imgs/a', frame: 'a', label: 0, kind: 'image' },
      { path: path.join(tmp, 'lists/imgs/b, c.jpg'), dataset: 'MyDS', source: 'fake', video: 'vid7', frame: 'b, c', label: 1, kind: 'image' },
      { path: '/abs/x.mp4', dataset: 'test', source: 'fake', video: path.relative(path.join(tmp, 'lists'), '/abs/x'), frame: null, label: 1, kind: 'video' },
    ]);
  });

  it('reads a CSV with a header naming columns in any order', async () => {
    const csv = touch('lists/h.csv', 'label,video,path,source\nReal,v1,f/1.png,orig\nFAKE,v2,f/2.png,DF\n');
    const items = await scanDataset(csv);
    expect(items.map((i) => [path.basename(i.path), i.label, i.video, i.source, i.dataset])).toEqual([
      ['1.png', 0, 'v1', 'orig', 'h'],
      ['2.png', 1, 'v2', 'DF', 'h'],
    ]);
  });

  it('reports bad labels with the line number', async () => {
    const csv = touch('lists/bad.csv', 'path,label\na.png,1\nb.png,maybe\n');
    await expectDfdetError(scanDataset(csv), 'BAD_INPUT', /line 3.*maybe/);
  });

  it('rejects empty CSV, unterminated quotes and a header without label', async () => {
    await expectDfdetError(scanDataset(touch('lists/empty.csv', '\n\n')), 'BAD_INPUT', /no rows/);
    await expectDfdetError(scanDataset(touch('lists/q.csv', '"a.png,1\n')), 'BAD_INPUT', /Unterminated/);
    await expectDfdetError(scanDataset(touch('lists/nolabel.csv', 'path,video\na.png,v\n')), 'BAD_INPUT', /label/);
  });

  it('parseCsv handles escaped quotes and CRLF', () => {
    expect(parseCsv('a,"b ""q"" c"\r\nd,\n')).toEqual([
      { line: 1, fields: ['a', 'b "q" c'] },
      { line: 2, fields: ['d', ''] },
    ]);
  });
});

describe('scanDataset: errors', () => {
  it('missing path → NOT_FOUND', async () => {
    await expectDfdetError(scanDataset(path.join(tmp, 'nope')), 'NOT_FOUND');
  });
  it('folder without media → BAD_INPUT', async () => {
    await expectDfdetError(scanDataset(path.join(tmp, 'empty')), 'BAD_INPUT', /No images or videos/);
  });
  it('a non-CSV file → BAD_INPUT', async () => {
    await expectDfdetError(scanDataset(path.join(tmp, 'empty/readme.txt')), 'BAD_INPUT', /\.csv/);
  });
  it('bad options → BAD_INPUT', async () => {
    await expectDfdetError(scanDataset(''), 'BAD_INPUT');
    await expectDfdetError(scanDataset(tmp, { label: 2 as 0 }), 'BAD_INPUT');
  });
});
