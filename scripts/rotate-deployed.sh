#!/usr/bin/env bash
# Rotates a deployed secret now, through its rotation function, one step at a time, and stops at the
# first step that fails: a later step never runs after a failed one, so a failed setSecret can never
# be followed by a finishSecret that would move AWSCURRENT onto a password the database refuses.
#
#   scripts/rotate-deployed.sh SECRET [FUNCTION]        (or: make rotate-deployed SECRET=… [FUNCTION=…])
#
# SECRET    the secret's ARN or name (the stack's DatabaseSecretArn output).
# FUNCTION  the rotation function to invoke; default: the one the secret's rotation is configured
#           with (RotationLambdaARN, the stack's `live` alias).
# TOKEN     (environment) the version to rotate to; default: the version holding AWSPENDING when an
#           earlier rotation was left unfinished, else a new rotation's.
#
# Which rotation it runs:
# - AWSPENDING sits on a version other than AWSCURRENT (a rotation that failed or was interrupted):
#   it finishes that one, with its token. Every step is idempotent, so this is safe whatever step it
#   stopped at.
# - Otherwise it starts one the way the runbook always has, `aws secretsmanager rotate-secret` (with
#   the function the secret is configured with), which creates the new version (the token) and has
#   Secrets Manager run the steps as well; this script runs the same four steps with the same token
#   and reports each. Running both is safe: every step is idempotent and tolerates another invocation
#   doing the same (a step the service finished first reports `already-current`).
#
# After each `aws lambda invoke` it checks the CLI's exit status, the FunctionError the CLI reports
# (it exits 0 when the function fails) and the payload, which must be the function's
# {"step": …, "outcome": …}. After finishSecret it checks that AWSCURRENT is on the token and removes
# AWSPENDING from it, as Secrets Manager does when it finishes a rotation.
#
# Needs the AWS CLI (v1 or v2) with lambda:InvokeFunction on the function and, on the secret,
# secretsmanager:DescribeSecret, ListSecretVersionIds, RotateSecret and UpdateSecretVersionStage.
# Prints no secret value: only version ids, steps, outcomes and the function's error messages (which
# never carry a password).
set -euo pipefail

STEPS=(createSecret setSecret testSecret finishSecret)
RUNBOOK="docs/rotation-runbook.md"

SECRET=${1:-${SECRET:-}}
FUNCTION=${2:-${FUNCTION:-}}
TOKEN=${TOKEN:-}

say() { printf 'rotate-deployed: %s\n' "$*"; }
die() { printf 'rotate-deployed: %s\n' "$*" >&2; exit 1; }

if [ -z "$SECRET" ]; then
  die "usage: scripts/rotate-deployed.sh SECRET [FUNCTION]  (or make rotate-deployed SECRET=… [FUNCTION=…])"
fi
command -v aws >/dev/null || die "the AWS CLI (aws) is not on PATH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The version ids holding a stage (at most one), or nothing.
version_with() {
  aws secretsmanager list-secret-version-ids --secret-id "$SECRET" \
    --query "Versions[?contains(VersionStages, '$1')].VersionId | [0]" --output text | sed 's/^None$//'
}

read -r ENABLED CONFIGURED < <(aws secretsmanager describe-secret --secret-id "$SECRET" \
  --query '[RotationEnabled, RotationLambdaARN]' --output text) ||
  die "cannot describe secret $SECRET (see the error above): check its name and your credentials"
if [ "$ENABLED" != "True" ] && [ "$ENABLED" != "true" ]; then
  die "rotation is not enabled on $SECRET, so every step would be refused: see $RUNBOOK#after-cancel-rotate-secret"
fi
if [ -z "$FUNCTION" ]; then
  [ "$CONFIGURED" != "None" ] && [ -n "$CONFIGURED" ] || die "$SECRET names no rotation function; give FUNCTION"
  FUNCTION=$CONFIGURED
fi

CURRENT=$(version_with AWSCURRENT)
if [ -z "$TOKEN" ]; then
  PENDING=$(version_with AWSPENDING)
  if [ -n "$PENDING" ] && [ "$PENDING" != "$CURRENT" ]; then
    TOKEN=$PENDING
    say "finishing the rotation left unfinished: AWSPENDING is on version $TOKEN (AWSCURRENT: $CURRENT)"
  else
    if [ -n "$PENDING" ]; then
      # A finished rotation whose AWSPENDING was not cleaned up: harmless, but RotateSecret (and moto)
      # may take it for one in progress.
      aws secretsmanager update-secret-version-stage --secret-id "$SECRET" --version-stage AWSPENDING \
        --remove-from-version-id "$PENDING" >/dev/null
    fi
    # With the function the secret is configured with, named: the same rotation as without it on
    # AWS, and what makes moto (the devstack) create the empty pending version AWS creates.
    TOKEN=$(aws secretsmanager rotate-secret --secret-id "$SECRET" --rotation-lambda-arn "$CONFIGURED" \
      --query VersionId --output text) ||
      die "rotate-secret refused (see the error above); nothing was changed"
    say "started rotation to version $TOKEN (AWSCURRENT: $CURRENT); Secrets Manager runs the same steps too"
  fi
fi
say "function $FUNCTION"

# The function's error message from a payload, or nothing.
error_in() {
  sed -n 's/.*"errorMessage" *: *"\(\([^"\\]\|\\.\)*\)".*/\1/p' "$1" | head -c 4000
}

for step in "${STEPS[@]}"; do
  payload="$work/$step.event.json"
  out="$work/$step.out.json"
  printf '{"SecretId":"%s","ClientRequestToken":"%s","Step":"%s"}' "$SECRET" "$TOKEN" "$step" > "$payload"
  : > "$out"
  # fileb:// sends the file's bytes as they are, with CLI v1 and v2 alike.
  if ! function_error=$(aws lambda invoke --function-name "$FUNCTION" --payload "fileb://$payload" \
         --cli-read-timeout 120 --query FunctionError --output text "$out" 2>"$work/$step.err"); then
    cat "$work/$step.err" >&2
    failed="the invocation itself failed (permissions, network, or no such function; see above)"
  elif [ -n "$function_error" ] && [ "$function_error" != "None" ]; then
    failed="the function failed ($function_error): $(error_in "$out")"
  elif grep -q '"errorMessage"' "$out"; then
    failed="the function answered with an error: $(error_in "$out")"
  elif ! grep -q '"outcome"' "$out"; then
    failed="the function's answer is not a step's outcome: $(head -c 500 "$out")"
  else
    failed=""
  fi
  if [ -n "$failed" ]; then
    printf 'rotate-deployed: %s FAILED for version %s: %s\n' "$step" "$TOKEN" "$failed" >&2
    if [ "$step" = finishSecret ]; then
      moved="AWSCURRENT may not have moved: check with aws secretsmanager describe-secret --secret-id $SECRET --query VersionIdsToStages"
    else
      moved="AWSCURRENT did not move (still version $CURRENT)"
    fi
    cat >&2 <<EOF
rotate-deployed: no later step was run; $moved.
rotate-deployed: what to do: find the message above in $RUNBOOK#when-rotation-fails and fix its cause,
rotate-deployed: then run this again: it finishes this rotation (version $TOKEN) from createSecret,
rotate-deployed: every step being safe to repeat. To give it up instead, see $RUNBOOK#a-rotation-stuck-with-awspending.
EOF
    exit 1
  fi
  outcome=$(sed -n 's/.*"outcome" *: *"\([^"]*\)".*/\1/p' "$out")
  say "$step: $outcome"
done

NOW=$(version_with AWSCURRENT)
if [ "$NOW" != "$TOKEN" ]; then
  die "finishSecret reported success but AWSCURRENT is on version $NOW, not $TOKEN: see $RUNBOOK#a-rotation-stuck-with-awspending"
fi
if [ "$(version_with AWSPENDING)" = "$TOKEN" ]; then
  aws secretsmanager update-secret-version-stage --secret-id "$SECRET" --version-stage AWSPENDING \
    --remove-from-version-id "$TOKEN" >/dev/null
fi
say "rotated: AWSCURRENT is version $TOKEN, AWSPREVIOUS version $CURRENT"
