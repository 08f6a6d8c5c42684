# Shared by the shell tests (sourced): counts of passed and failed checks, and the checks themselves.
pass=0; fail=0
ok()   { pass=$((pass+1)); }
bad()  { echo "FAIL: $*"; fail=$((fail+1)); }
# expect_ok "description" command...      (exit 0)
expect_ok() { local d=$1; shift; if out=$("$@" 2>&1); then ok; else bad "$d: exit $? :: $out"; fi; }
# expect_err "description" "message fragment" command...   (non-zero exit, fragment in stderr/stdout)
expect_err() {
  local d=$1 frag=$2; shift 2
  if out=$("$@" 2>&1); then bad "$d: succeeded but should fail :: $out"; return; fi
  if [[ "$out" == *"$frag"* ]]; then ok; else bad "$d: message lacks '$frag' :: $out"; fi
}
contains() { local d=$1 frag=$2 text=$3; if [[ "$text" == *"$frag"* ]]; then ok; else bad "$d: lacks '$frag' :: $text"; fi; }
