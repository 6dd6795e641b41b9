/**
 * Hand-written SVG line plots for ROC and precision-recall curves (unit square axes), and PNG
 * rendering through sharp (librsvg).
 */
import sharp from 'sharp';
import { invalidParameter } from '../errors';

/** One curve of a plot. */
export interface CurveSeries {
  /** Legend text. */
  label: string;
  /** X coordinates in [0, 1]; non-finite points are skipped. */
  x: ArrayLike<number>;
  /** Y coordinates in [0, 1]; same length as x. */
  y: ArrayLike<number>;
  /** Draw as a post-step function (as sklearn/matplotlib draw PR curves). Default false. */
  step?: boolean;
  /** Stroke colour (CSS). Default: the next colour of a 10-colour palette. */
  color?: string;
}

/** Options of {@link curveSvg}. */
export interface CurvePlotOptions {
  /** Title above the plot. */
  title: string;
  /** X axis label. */
  xLabel: string;
  /** Y axis label. */
  yLabel: string;
  /** Curves, drawn in order. */
  series: CurveSeries[];
  /** Draw the dashed chance diagonal (ROC). Default false. */
  diagonal?: boolean;
  /** Legend corner inside the plot. Default 'lower-right'. */
  legend?: 'lower-right' | 'lower-left';
  /** Image width in px. Default 640. */
  width?: number;
  /** Image height in px. Default 520. */
  height?: number;
  /** Short lines under the title (e.g. which model made the scores, a warning), in their colour. */
  notes?: { text: string; color?: string }[];
}

/** matplotlib's tab10 palette. */
export const PALETTE: readonly string[] = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
];

/** Escape text for SVG content and attributes. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function fmt(v: number): string {
  return (Math.round(v * 100) / 100).toString();
}

/**
 * Pixel polyline of a series: steps expanded, points rounded to 0.01 px, repeated points and the
 * middle points of straight horizontal/vertical runs dropped (a 100k-point ROC stays small).
 */
function polyline(s: CurveSeries, sx: (v: number) => number, sy: (v: number) => number): [number, number][] {
  const pts: [number, number][] = [];
  const push = (x: number, y: number): void => {
    const p: [number, number] = [Math.round(sx(x) * 100) / 100, Math.round(sy(y) * 100) / 100];
    const last = pts[pts.length - 1];
    if (last && last[0] === p[0] && last[1] === p[1]) return;
    const prev = pts[pts.length - 2];
    // Merge only straight runs that keep their direction (a reversal must stay visible).
    const vertical = prev && last && prev[0] === last[0] && last[0] === p[0] && (last[1] - prev[1]) * (p[1] - last[1]) >= 0;
    const horizontal = prev && last && prev[1] === last[1] && last[1] === p[1] && (last[0] - prev[0]) * (p[0] - last[0]) >= 0;
    if (vertical || horizontal) {
      pts[pts.length - 1] = p;
      return;
    }
    pts.push(p);
  };
  let px: number | undefined;
  let py: number | undefined;
  for (let i = 0; i < s.x.length; i++) {
    const x = s.x[i]!;
    const y = s.y[i]!;
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (s.step && px !== undefined && py !== undefined) push(x, py);
    push(x, y);
    px = x;
    py = y;
  }
  return pts;
}

/** Render curves on [0,1]x[0,1] axes (ticks every 0.2, grid, legend) as an SVG document string. */
export function curveSvg(options: CurvePlotOptions): string {
  const width = options.width ?? 640;
  const height = options.height ?? 520;
  if (!Number.isInteger(width) || width < 200 || width > 8000) invalidParameter('width', 'an integer between 200 and 8000', width);
  if (!Number.isInteger(height) || height < 200 || height > 8000) invalidParameter('height', 'an integer between 200 and 8000', height);
  if (!Array.isArray(options.series)) invalidParameter('series', 'an array', options.series);
  const notes = options.notes ?? [];
  const m = { left: 70, right: 20, top: 44 + 16 * notes.length, bottom: 60 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const sx = (v: number): number => m.left + v * pw;
  const sy = (v: number): number => m.top + (1 - v) * ph;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${fmt(width / 2)}" y="26" font-size="17" text-anchor="middle">${escapeXml(options.title)}</text>`,
    ...notes.map(
      (n, i) => `<text x="${fmt(width / 2)}" y="${44 + 16 * i}" font-size="12" text-anchor="middle" fill="${n.color ?? '#444444'}">${escapeXml(n.text)}</text>`,
    ),
  );
  // Grid and ticks.
  for (let i = 0; i <= 5; i++) {
    const v = i / 5;
    const label = v.toFixed(1);
    out.push(
      `<line x1="${fmt(sx(v))}" y1="${fmt(sy(0))}" x2="${fmt(sx(v))}" y2="${fmt(sy(1))}" stroke="#e5e5e5" stroke-width="1"/>`,
      `<line x1="${fmt(sx(0))}" y1="${fmt(sy(v))}" x2="${fmt(sx(1))}" y2="${fmt(sy(v))}" stroke="#e5e5e5" stroke-width="1"/>`,
      `<line x1="${fmt(sx(v))}" y1="${fmt(sy(0))}" x2="${fmt(sx(v))}" y2="${fmt(sy(0) + 6)}" stroke="#000" stroke-width="1"/>`,
      `<line x1="${fmt(sx(0) - 6)}" y1="${fmt(sy(v))}" x2="${fmt(sx(0))}" y2="${fmt(sy(v))}" stroke="#000" stroke-width="1"/>`,
      `<text x="${fmt(sx(v))}" y="${fmt(sy(0) + 21)}" font-size="12" text-anchor="middle">${label}</text>`,
      `<text x="${fmt(sx(0) - 10)}" y="${fmt(sy(v) + 4)}" font-size="12" text-anchor="end">${label}</text>`,
    );
  }
  out.push(
    `<rect x="${fmt(sx(0))}" y="${fmt(sy(1))}" width="${fmt(pw)}" height="${fmt(ph)}" fill="none" stroke="#000" stroke-width="1"/>`,
    `<text x="${fmt(sx(0.5))}" y="${fmt(height - 16)}" font-size="14" text-anchor="middle">${escapeXml(options.xLabel)}</text>`,
    `<text x="18" y="${fmt(sy(0.5))}" font-size="14" text-anchor="middle" transform="rotate(-90 18 ${fmt(sy(0.5))})">${escapeXml(options.yLabel)}</text>`,
  );
  if (options.diagonal) {
    out.push(`<line x1="${fmt(sx(0))}" y1="${fmt(sy(0))}" x2="${fmt(sx(1))}" y2="${fmt(sy(1))}" stroke="#999" stroke-width="1" stroke-dasharray="5,4"/>`);
  }
  const drawn: { label: string; color: string }[] = [];
  options.series.forEach((s, i) => {
    if (!s || s.x.length !== s.y.length) invalidParameter(`series[${i}]`, 'x and y of equal length', s);
    const pts = polyline(s, sx, sy);
    if (!pts.length) return;
    const color = s.color ?? PALETTE[i % PALETTE.length]!;
    drawn.push({ label: s.label, color });
    out.push(
      `<polyline fill="none" stroke="${escapeXml(color)}" stroke-width="2" stroke-linejoin="round" points="${pts.map((p) => `${p[0]},${p[1]}`).join(' ')}"/>`,
    );
  });
  if (drawn.length) {
    const lh = 20;
    const longest = Math.max(...drawn.map((d) => d.label.length));
    const bw = Math.min(pw - 20, 44 + longest * 7.2);
    const bh = drawn.length * lh + 10;
    const bx = options.legend === 'lower-left' ? sx(0) + 10 : sx(1) - 10 - bw;
    const by = sy(0) - 10 - bh;
    out.push(`<rect x="${fmt(bx)}" y="${fmt(by)}" width="${fmt(bw)}" height="${fmt(bh)}" fill="#ffffff" fill-opacity="0.9" stroke="#bbb"/>`);
    drawn.forEach((d, i) => {
      const y = by + 5 + lh * i + lh / 2;
      out.push(
        `<line x1="${fmt(bx + 8)}" y1="${fmt(y)}" x2="${fmt(bx + 32)}" y2="${fmt(y)}" stroke="${escapeXml(d.color)}" stroke-width="3"/>`,
        `<text x="${fmt(bx + 38)}" y="${fmt(y + 4)}" font-size="12">${escapeXml(d.label)}</text>`,
      );
    });
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Render an SVG document to PNG with sharp (librsvg). `density` in dpi, default 72 (1 px per SVG unit). */
export async function svgToPng(svg: string, density = 72): Promise<Buffer> {
  if (typeof svg !== 'string' || !svg.includes('<svg')) invalidParameter('svg', 'an SVG document string', svg);
  return sharp(Buffer.from(svg), { density }).png().toBuffer();
}
