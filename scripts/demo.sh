#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine: set up, build, then score real photos and a video
# with `dfdet detect`. No real weights can be downloaded here, so the detector is a randomly
# initialised CLIP ViT-B/16 made by `dfdet model init`: the pipeline is real, the scores are not.
# Get the authors' model with `dfdet pull` where the Hugging Face hub is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-system.sh --demo
if ! npm ls --depth=0 >/dev/null 2>&1; then npm ci --no-audit --no-fund; fi
npm run --silent build

work=${DFDET_DEMO_DIR:-$(mktemp -d -t dfdet-demo-XXXXXX)}
mkdir -p "$work/media"
photos=(/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg /usr/lib/python3/dist-packages/imageio/resources/images/astronaut.png)
cp "${photos[@]}" "$work/media/"
# A short video of a real face: a slow pan across the portrait.
ffmpeg -v error -y -loop 1 -i "${photos[0]}" -vf "scale=640:-2,crop=480:480:'t*40':0" -t 3 -r 25 -pix_fmt yuv420p "$work/media/pan.mp4"

model="$work/demo-vit-b-16.pt"
[ -f "$model" ] || node dist/lib/cli/main.js model init --arch vit-b-16 --seed 1 -o "$model"
node dist/lib/cli/main.js detect --model "$model" "$work/media" "$@"
echo "demo files: $work"
