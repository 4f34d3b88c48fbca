# Shared by the benchmark shell scripts (sourced): each measurement's output goes to OUT/NAME.log and one line
# with its exit status and wall time to OUT/summary.txt. The sourcing script sets $out (and $seconds for parts).
note() { echo "$*" | tee -a "$out/summary.txt"; }
timed() {  # NAME COMMAND...: stdout and stderr to OUT/NAME.log, wall time and exit status to the summary
  local name=$1 began=$SECONDS
  shift
  "$@" > "$out/$name.log" 2>&1
  note "$name rc=$? $((SECONDS - began))s"
}
parts() {  # NAME CONFIG PARTS OVERRIDES...: ocrforge bench through the Python API (PARTS e.g. data or model)
  python - "$out/$1.json" "$seconds" "${@:2}" <<'EOF'
import json, sys
from ocrforge.config import load_config
from ocrforge.runners.bench import bench
out, seconds, config, parts, *overrides = sys.argv[1:]
report = bench(load_config(config, overrides), seconds=float(seconds), warmup_seconds=float(seconds) / 2, steps=20,
               amp=True, parts=tuple(parts.split(",")))
open(out, "w").write(json.dumps(report, indent=1) + "\n")
print(json.dumps({k: report[k] for k in ("data", "model", "end_to_end") if k in report}))
EOF
}
