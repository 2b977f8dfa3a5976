#!/usr/bin/env bash
# Prints the median of each criterion benchmark of the last `cargo bench` run (criterion's own
# summary shows the mean's confidence interval; the targets are medians).
set -euo pipefail
dir="${CARGO_TARGET_DIR:-$HOME/.cache/deploy-safety/target}/criterion"
find "$dir" -path '*/new/estimates.json' | sort | while read -r file; do
  name=${file#"$dir/"}; name=${name%/new/estimates.json}
  python3 -c 'import json, sys; print("%-40s median %9.1f ns" % (sys.argv[2], json.load(open(sys.argv[1]))["median"]["point_estimate"]))' "$file" "$name"
done
