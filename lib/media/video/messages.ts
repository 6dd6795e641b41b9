/**
 * ffmpeg's error lines turned into messages that say what is wrong with the input, with the
 * caller's name for it in place of any temp path.
 */

/** Strips ffmpeg's `[demuxer @ 0x...]` / `[level]` prefixes and puts `name` in place of the file path. */
export function cleanLine(line: string, file: string, name: string): string {
  let s = line.replace(/^(\s*\[[^\]]*\]\s*)+/, '').trim();
  for (const p of [`file:${file}`, file]) if (p) s = s.split(p).join(name);
  return s;
}

/** Plain-word explanations of ffmpeg messages that do not say what is wrong with the input. */
const EXPLAIN: [RegExp, string][] = [
  [/not on whitelist/i, 'it is a playlist or index of other files, or a format that is not a video file; such inputs are refused'],
  [/moov atom not found/i, 'it is an incomplete MP4/MOV file (its index, the moov atom, is missing: truncated?)'],
  [/Invalid data found when processing input/i, 'it is not a video in a format ffmpeg recognises (unknown format or corrupt header)'],
  [/End of file/i, 'it is truncated (unexpected end of file)'],
  [/corrupt header:?\s*$|header.*(corrupt|damaged|invalid)/i, 'its header is corrupt'],
  [/Error (marking filters as finished|while filtering|while decoding|submitting packet)|decode_slice|error while decoding|concealing/i,
    'its video stream is corrupt (frames could not be decoded)'],
  [/Device or resource busy|Operation not permitted|Invalid argument|Resource temporarily unavailable|Function not implemented|Cannot allocate/i,
    'its header is corrupt or describes a stream ffmpeg cannot decode'],
  [/Decoder \(codec \S+\) not found|Unsupported codec|unsupported|not (yet )?implemented/i, 'it uses a codec or feature ffmpeg cannot decode here (or a corrupt header claims one)'],
  [/Input\/output error/i, 'it is truncated or its data is unreadable (I/O error while demuxing)'],
];

/** The demuxer that refused or failed, from a `[hls @ 0x...]` prefix. */
function demuxerOf(line: string): string | undefined {
  return /^\s*\[(\w+) @ 0x[0-9a-f]+\]/.exec(line)?.[1];
}

/**
 * What is wrong with the input, from ffmpeg's stderr: the most telling error line explained in
 * words, followed by ffmpeg's own words (temp paths replaced by `name`).
 */
export function explainFfmpeg(stderr: string | readonly string[], file: string, name: string): string {
  const lines = (typeof stderr === 'string' ? stderr.split('\n') : [...stderr]).map((l) => l.trim()).filter(Boolean);
  if (lines.length === 0) return 'ffmpeg gave no message';
  // The first line that a rule explains, else the last line.
  for (const line of lines) {
    for (const [re, why] of EXPLAIN) {
      if (!re.test(line)) continue;
      const demuxer = demuxerOf(line);
      const refused = /not on whitelist/i.test(line) && demuxer ? ` (detected as '${demuxer}')` : '';
      return `${why}${refused} (ffmpeg: ${cleanLine(line, file, name)})`;
    }
  }
  return `ffmpeg: ${cleanLine(lines[lines.length - 1]!, file, name)}`;
}
