# Shared by the benchmark shell scripts (sourced): each measurement's output goes to OUT/NAME.log and one line
# with its exit status and wall time to OUT/summary.txt. The sourcing script sets $out.
note() { echo "$*" | tee -a "$out/summary.txt"; }
timed() {  # NAME COMMAND...: stdout and stderr to OUT/NAME.log, wall time and exit status to the summary
  local name=$1 began=$SECONDS
  shift
  "$@" > "$out/$name.log" 2>&1
  note "$name rc=$? $((SECONDS - began))s"
}
