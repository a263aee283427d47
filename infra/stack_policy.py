#!/usr/bin/env python3
"""Sets infra/stack-policy.json on the stack infra/samconfig.toml deploys (make deploy runs it last).

The policy refuses any stack update that would delete or replace the database this stack created, or
its application secret: switching the stack to an existing database (ExistingSecretArn), or a change
that replaces the instance, then fails before anything happens instead of deleting the instance
(docs/deployment.md, "Switching modes"). Runs with the SAM CLI's Python, which has boto3.

  stack_policy.py <samconfig.toml> <config-env> <stack-policy.json>
"""

import sys
import tomllib


def main(config_path, env, policy_path):
    try:
        import boto3
    except ImportError:
        print("stack-policy: boto3 is missing; run this with .venv-sam/bin/python", file=sys.stderr)
        return 1
    with open(config_path, "rb") as f:
        config = tomllib.load(f).get(env, {})
    params = {**config.get("global", {}).get("parameters", {}), **config.get("deploy", {}).get("parameters", {})}
    stack, region = params.get("stack_name"), params.get("region")
    if not stack:
        print(f"stack-policy: {config_path} [{env}] names no stack_name", file=sys.stderr)
        return 1
    with open(policy_path) as f:
        body = f.read()
    cfn = boto3.client("cloudformation", region_name=region) if region else boto3.client("cloudformation")
    cfn.set_stack_policy(StackName=stack, StackPolicyBody=body)
    print(f"stack-policy: {stack}: updates may not delete or replace Database or AppSecret ({policy_path})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
