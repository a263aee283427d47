"""Structure checks on infra/template.yaml that cfn-lint cannot make: they need the workspace, or
they state this project's security and operating rules.

* both functions build binaries this workspace has, with the Lambda build's vendored OpenSSL;
* IAM is least privilege, in every resource that can carry a policy: each role's statements name the
  secret, the master secret, a key, the database, the proxy user or the function's own log group, and
  '*' only for GetRandomPassword and the ENI actions Lambda needs in a VPC; trust policies name one
  service; nothing else (inline or managed policies, resource policies, function URLs, SAM policy
  templates or events, unknown custom resources) grants anything; a statement or document of a shape
  the checks do not know is a failure, never skipped; SAM's transform adds no grant of its own;
* per deployment (`Scenario`: conditions and Rules evaluated for a set of parameters), each role has
  exactly the grants that deployment needs, each function gets the right credentials and strategy,
  the routes the right authorizer, the alarms the right notification target; the Rules refuse the
  unsafe combinations;
* mode 1's application role (Custom::DatabaseRole), RDS Proxy, the rotation schedule and the
  invoke permissions on the aliases; what must outlive the stack (snapshot / retain, the stack policy);
* the alarms watch metric names items-api emits and name a runbook section that exists;
* the functions' environment holds only variables the code reads, the API has design section 7's
  routes, every parameter is described and grouped.

Each check is a function returning a list of problems, so that every one of them is shown to fail on
a mutated copy of the template (class `ChecksCatchMistakes`). Run: `make test-infra`, or
`python3 -m unittest discover -s infra/tests -v` from the repository root.
"""

import copy
import json
import re
import unittest

from cfn import ROOT, TEMPLATE, as_list, branches, condition_text, elements, is_intrinsic, load_template, resources_of, short
from workspace import (
    ReaderFoundNothing,
    github_anchors,
    cargo_lambda_build,
    emitted_metrics,
    known_api_vars,
    known_rotation_vars,
    package_features,
    workspace_binaries,
)

# The CloudWatch namespace items-api's Embedded Metric Format recorder writes to, with one
# dimension, FunctionName (the Lambda function name). Metric names are read from the code.
METRIC_NAMESPACE = "ItemsApi"
METRIC_DIMENSIONS = ["FunctionName"]
ALARMED_API_METRICS = {"AuthFailuresUnrecovered", "SecretFetchErrors", "ServiceUnavailable", "FailoversDetected", "ConnectionsExhausted"}
# Alarms on AWS metrics (issue 17.3): namespace, metric, the one dimension and what it must name, and
# the condition the alarm needs (the RDS ones exist only when the stack creates the database).
AWS_ALARMS = {
    ("AWS/Lambda", "Errors"): ("FunctionName", {"Ref": "RotationFunction"}, None),
    ("AWS/Lambda", "Throttles"): ("FunctionName", {"Ref": "ItemsApiFunction"}, None),
    ("AWS/ApiGateway", "5xx"): ("ApiId", {"Ref": "HttpApi"}, None),
    ("AWS/ApiGateway", "Latency"): ("ApiId", {"Ref": "HttpApi"}, None),
    ("AWS/RDS", "CPUUtilization"): ("DBInstanceIdentifier", {"Ref": "Database"}, "CreateDatabase"),
    ("AWS/RDS", "FreeStorageSpace"): ("DBInstanceIdentifier", {"Ref": "Database"}, "CreateDatabase"),
    ("AWS/RDS", "DatabaseConnections"): ("DBInstanceIdentifier", {"Ref": "Database"}, "CreateDatabase"),
}
# Thresholds an operator sets, because they depend on the deployment.
ALARM_THRESHOLDS = {
    ("AWS/ApiGateway", "Latency"): {"Ref": "ApiLatencyP99AlarmMs"},
    ("AWS/RDS", "DatabaseConnections"): {"Ref": "DatabaseConnectionsAlarmThreshold"},
    ("AWS/RDS", "FreeStorageSpace"): {"Ref": "DatabaseFreeStorageAlarmGiB"},
}
ALARM_TARGET = {
    "Fn::If": ["NotifyAlarms", [{"Fn::If": ["HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopic"}]}], {"Ref": "AWS::NoValue"}]
}
RUNBOOK = ROOT / "docs" / "rotation-runbook.md"
RUNBOOK_REF = re.compile(r"Runbook: docs/rotation-runbook\.md#([A-Za-z0-9_-]+)")

FUNCTION_BINARIES = {"ItemsApiFunction": "items-api", "RotationFunction": "rotation"}
LAMBDA_FEATURE = "vendored-openssl"

ENI_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}
STAR_ACTIONS = ENI_ACTIONS | {"secretsmanager:GetRandomPassword"}
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
RDS_ACTIONS = {"rds:DescribeDBInstances", "rds:DescribeDBClusters"}

# What each role may do to each kind of resource (the issue's list; design §5 and §8).
SECRETS = [{"Ref": "AppSecret"}, {"Ref": "ExistingSecretArn"}]
MASTER_SECRETS = [{"Ref": "MasterSecretArn"}, {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}]
SECRET_KEY = {"Ref": "SecretKmsKeyArn"}
MASTER_KEY = {"Ref": "MasterSecretKmsKeyArn"}
ROLE_RULES = {
    "ItemsApiRole": {
        "secret": {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
        "master": set(),
        "key": {"kms:Decrypt"},
        "master-key": set(),
        "rds": RDS_ACTIONS,
        "proxy-user": {"rds-db:connect"},
    },
    "RotationRole": {
        "secret": {
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:ListSecretVersionIds",
        },
        "master": {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
        "key": {"kms:Decrypt", "kms:GenerateDataKey"},
        "master-key": {"kms:Decrypt"},
        "rds": RDS_ACTIONS,
        # The rotation function talks to the database directly, never through the proxy.
        "proxy-user": set(),
    },
    # RDS Proxy logs in with the application secret.
    "ProxyRole": {
        "secret": {"secretsmanager:GetSecretValue"},
        "master": set(),
        "key": {"kms:Decrypt"},
        "master-key": set(),
        "rds": set(),
        "proxy-user": set(),
    },
}
PROXY_USER = {
    "Fn::Sub": [
        "arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:${ProxyId}/${DatabaseAppUsername}",
        {"ProxyId": {"Fn::Select": [6, {"Fn::Split": [":", {"Fn::GetAtt": ["DatabaseProxy", "DBProxyArn"]}]}]}},
    ]
}
# The one service each role trusts, and the functions that use it.
ROLE_TRUST = {"ItemsApiRole": "lambda.amazonaws.com", "RotationRole": "lambda.amazonaws.com", "ProxyRole": "rds.amazonaws.com"}
FUNCTION_ROLES = {"ItemsApiFunction": "ItemsApiRole", "RotationFunction": "RotationRole"}
ROLE_KEYS = {"Description", "AssumeRolePolicyDocument", "Policies", "Path", "MaxSessionDuration", "Tags"}
IDENTITY_STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource", "Condition"}
TRUST_STATEMENT_KEYS = {"Sid", "Effect", "Principal", "Action", "Condition"}
# Who may invoke which function, and what must scope it (resource-based policy of the function).
INVOKERS = {"secretsmanager.amazonaws.com": "RotationFunction", "apigateway.amazonaws.com": "ItemsApiFunction"}
EXECUTE_API_ARN = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/*"
PERMISSION_KEYS = {"FunctionName", "Action", "Principal", "SourceAccount", "SourceArn"}
# Resource types whose only job is to grant, which this template never needs: permissions live in the
# roles above. Any other type that carries a policy-like property and has no check of its own fails too.
FORBIDDEN_TYPES = {
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::RolePolicy",
    "AWS::IAM::UserPolicy",
    "AWS::IAM::GroupPolicy",
    "AWS::IAM::User",
    "AWS::IAM::Group",
    "AWS::IAM::AccessKey",
    "AWS::IAM::UserToGroupAddition",
    "AWS::IAM::InstanceProfile",
    "AWS::SecretsManager::ResourcePolicy",
    "AWS::Lambda::Url",
    "AWS::Lambda::LayerVersionPermission",
    "AWS::KMS::Key",
    "AWS::SNS::TopicPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy",
    "AWS::Logs::ResourcePolicy",
}
POLICY_KEYS = {
    "AssumeRolePolicyDocument",
    "PolicyDocument",
    "Policies",
    "PolicyText",
    "ResourcePolicy",
    "KeyPolicy",
    "ManagedPolicyArns",
    "Principal",
    "Policy",
    "PolicyName",
    "AccessPolicies",
    "PermissionsBoundary",
    "FunctionUrlConfig",
}
# The application role of mode 1 (design §11): a custom resource served by the rotation function.
DATABASE_ROLE_TYPE = "Custom::DatabaseRole"
DATABASE_ROLE_PROPERTIES = {"ServiceToken", "ServiceTimeout", "SecretId"}
MAX_SERVICE_TIMEOUT = 900

# design §7
# design §7, plus $default: unknown paths and wrong methods reach the function (404/405 problem documents).
API_ROUTES = {
    "GET /items",
    "POST /items",
    "GET /items/{id}",
    "PUT /items/{id}",
    "DELETE /items/{id}",
    "GET /health",
    "GET /health/db",
    "$default",
}
# design §11: the only route open whatever ApiAuth says (it touches nothing).
OPEN_ROUTES = {"GET /health"}
API_AUTHORIZATION = {"iam": "AWS_IAM", "jwt": "JWT", "none": "NONE"}
INTEGRATION_TARGET = {"Fn::Sub": "integrations/${ItemsApiIntegration}"}
# The rotation function's settings (design §8) plus the TLS and environment ones it shares. All are
# set by the template; the crate's own lists (when it has them) say what else it would accept.
ROTATION_VARS = {
    "ROTATION_STRATEGY",
    "PASSWORD_LENGTH",
    "EXCLUDE_CHARACTERS",
    "EXCLUDE_NUMBERS",
    "EXCLUDE_PUNCTUATION",
    "EXCLUDE_UPPERCASE",
    "EXCLUDE_LOWERCASE",
    "REQUIRE_EACH_INCLUDED_TYPE",
    "TEST_QUERY",
    "DB_SSLMODE",
    "DB_SSL_ROOT_CERT",
    "ENVIRONMENT",
}
API_REQUIRED_VARS = {"DB_SECRET_ARN", "ENVIRONMENT", "DB_SSLMODE", "DB_SSL_ROOT_CERT"}


# ------------------------------------------------------------------ the checks


def binary_problems(template, bins, features, lambda_build):
    problems = []
    functions = resources_of(template, "AWS::Serverless::Function")
    for logical_id, expected in FUNCTION_BINARIES.items():
        fn = functions.get(logical_id)
        if fn is None:
            problems.append(f"{logical_id} is missing")
            continue
        meta, props = fn.get("Metadata", {}), fn.get("Properties", {})
        binary = meta.get("BuildProperties", {}).get("Binary")
        if meta.get("BuildMethod") != "rust-cargolambda":
            problems.append(f"{logical_id}: BuildMethod must be rust-cargolambda")
        if binary != expected:
            problems.append(f"{logical_id}: builds {binary!r}, expected the {expected!r} binary")
        if binary not in bins:
            problems.append(f"{logical_id}: the workspace builds no binary {binary!r} (it has {sorted(bins)})")
            continue
        if props.get("Handler") != "bootstrap" or props.get("Runtime") != "provided.al2023":
            problems.append(f"{logical_id}: Handler must be bootstrap on provided.al2023")
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str) or (TEMPLATE.parent / code_uri).resolve() != ROOT:
            problems.append(f"{logical_id}: CodeUri must be the workspace root, where cargo lambda runs")
        package = bins[binary]
        if LAMBDA_FEATURE not in features.get(package, {}):
            problems.append(f"{logical_id}: package {package} has no {LAMBDA_FEATURE} feature")
        if f"{package}/{LAMBDA_FEATURE}" not in lambda_build.get("features", []):
            problems.append(
                f"{logical_id}: CargoLambda.toml [build] features lacks {package}/{LAMBDA_FEATURE}, "
                "so sam build would link the system OpenSSL"
            )
        packages = lambda_build.get("packages")
        if packages is not None and package not in packages:
            problems.append(f"{logical_id}: CargoLambda.toml [build] packages lacks {package}, so sam build finds no {binary}")
    return problems


def classify(resource, role_log_groups):
    """What a statement's single resource is: secret, master, key, master-key, rds, log, star or None."""
    if resource == "*":
        return "star"
    if resource in SECRETS:
        return "secret"
    if resource in MASTER_SECRETS:
        return "master"
    if resource == SECRET_KEY:
        return "key"
    if resource == MASTER_KEY:
        return "master-key"
    if resource == PROXY_USER:
        return "proxy-user"
    if isinstance(resource, dict) and isinstance(resource.get("Fn::Sub"), str):
        arn = resource["Fn::Sub"]
        if re.fullmatch(
            r"arn:\$\{AWS::Partition\}:rds:\$\{AWS::Region\}:\$\{AWS::AccountId\}:((db|cluster):\$\{DatabaseIdentifier\}|db:\$\{Database\})",
            arn,
        ):
            return "rds"
    if isinstance(resource, dict) and resource.get("Fn::GetAtt") in [[g, "Arn"] for g in role_log_groups]:
        return "log"
    return None


def policy_statements(document, conds, where, problems):
    """(statement, conditions) of a policy document, through every Fn::If; a document or statement of
    any other shape is a problem."""
    for doc, c in branches(document, conds):
        if not isinstance(doc, dict) or is_intrinsic(doc) or "Statement" not in doc or set(doc) - {"Version", "Id", "Statement"}:
            problems.append(f"{where}: policy document of an unknown shape: {short(doc)}")
            continue
        for st, c2 in elements(doc["Statement"], c):
            if not isinstance(st, dict) or is_intrinsic(st):
                problems.append(f"{where}: statement of an unknown shape: {short(st)}")
                continue
            yield st, c2


def string_elements(value, conds, where, what, problems):
    """The strings a list-of-strings property can hold; an intrinsic where a literal is needed is a problem."""
    out = []
    for v, _ in elements(value, conds):
        if isinstance(v, str):
            out.append(v)
        else:
            problems.append(f"{where}: {what} of an unknown shape: {short(v)}")
    return out


def role_policy_problems(template, logical_id, role, log_groups):
    problems = []
    rules = ROLE_RULES[logical_id]
    props = role.get("Properties", {})
    for key in sorted(set(props) - ROLE_KEYS):
        problems.append(f"{logical_id}: {key} is not expected on a role (managed policies and boundaries grant more than this template states)")
    for policy, pconds in elements(props.get("Policies", [])):
        if not isinstance(policy, dict) or is_intrinsic(policy) or set(policy) != {"PolicyName", "PolicyDocument"}:
            problems.append(f"{logical_id}: inline policy of an unknown shape: {short(policy)}")
            continue
        where = f"{logical_id}/{policy['PolicyName']}"
        for st, conds in policy_statements(policy["PolicyDocument"], pconds, where, problems):
            unknown = set(st) - IDENTITY_STATEMENT_KEYS
            if unknown:
                problems.append(f"{where}: {sorted(unknown)} in a statement (NotAction/NotResource widen a grant; Principal has no place in a role's policy)")
                continue
            effect = st.get("Effect")
            if effect == "Deny":
                continue
            if effect != "Allow":
                problems.append(f"{where}: Effect {short(effect)} is neither Allow nor Deny")
                continue
            if "Action" not in st or "Resource" not in st:
                problems.append(f"{where}: a statement without Action or Resource: {short(st)}")
                continue
            actions = set(string_elements(st["Action"], conds, where, "action", problems))
            for a in sorted(actions):
                if "*" in a or "?" in a:
                    problems.append(f"{where}: wildcard action {a}")
            for resource, rconds in elements(st["Resource"], conds):
                what = classify(resource, log_groups)
                if what == "star":
                    extra = actions - STAR_ACTIONS
                    if extra:
                        problems.append(f"{where}: Resource '*' for {sorted(extra)}")
                    if actions & ENI_ACTIONS and actions - ENI_ACTIONS:
                        problems.append(f"{where}: ENI actions share a '*' statement with {sorted(actions - ENI_ACTIONS)}")
                    continue
                if what is None:
                    problems.append(f"{where}: resource {short(resource)} is not the secret, master secret, key, database or own log group")
                    continue
                if what == "log":
                    if actions - LOG_ACTIONS:
                        problems.append(f"{where}: {sorted(actions - LOG_ACTIONS)} on a log group")
                    continue
                allowed = rules[what]
                if actions - allowed:
                    problems.append(f"{where}: {sorted(actions - allowed)} not allowed on the {what} for this role")
                for param in optional_parameters_in(template, resource):
                    if not any(f'{{"Ref": "{param}"}}' in condition_text(template, c.lstrip("!")) for c in rconds):
                        problems.append(f"{where}: grant on the optional {param} outside a condition on it")
    return problems


def optional_parameters_in(template, value):
    """Parameters with an empty default that `value` names (Ref, or ${X} in Fn::Sub)."""
    params = template.get("Parameters", {})
    names = set()
    if isinstance(value, dict) and list(value) == ["Ref"]:
        names.add(value["Ref"])
    elif isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        names |= set(re.findall(r"\$\{([A-Za-z0-9]+)\}", value["Fn::Sub"]))
    return sorted(n for n in names if n in params and params[n].get("Default") == "")


def trust_problems(logical_id, role):
    problems = []
    service = ROLE_TRUST[logical_id]
    doc = role.get("Properties", {}).get("AssumeRolePolicyDocument")
    seen = False
    for st, conds in policy_statements(doc, (), f"{logical_id} trust policy", problems):
        where = f"{logical_id} trust policy"
        if set(st) - TRUST_STATEMENT_KEYS or st.get("Effect") != "Allow":
            problems.append(f"{where}: only Allow statements with Principal, Action and Condition: {short(st)}")
            continue
        principal = st.get("Principal")
        services = string_elements(principal.get("Service"), conds, where, "service", problems) if isinstance(principal, dict) and set(principal) == {"Service"} else None
        if services != [service]:
            problems.append(f"{where}: Principal must be the service {service} alone, not {short(principal)}")
        if string_elements(st.get("Action"), conds, where, "action", problems) != ["sts:AssumeRole"]:
            problems.append(f"{where}: Action must be sts:AssumeRole")
        seen = True
    if not seen:
        problems.append(f"{logical_id}: no trust policy statement for {service}")
    return problems


def function_log_groups(template, role_id):
    """The log groups of the functions that use `role_id`."""
    out = []
    for fn in resources_of(template, "AWS::Serverless::Function").values():
        fp = fn.get("Properties", {})
        if fp.get("Role") == {"Fn::GetAtt": [role_id, "Arn"]}:
            lg = fp.get("LoggingConfig", {}).get("LogGroup", {})
            if isinstance(lg, dict) and "Ref" in lg and lg["Ref"] in template.get("Resources", {}):
                out.append(lg["Ref"])
    return out


def function_problems(template):
    problems = []
    functions = resources_of(template, "AWS::Serverless::Function")
    for logical_id, fn in functions.items():
        props = fn.get("Properties", {})
        role = FUNCTION_ROLES.get(logical_id)
        if role is None:
            problems.append(f"{logical_id}: unexpected function")
        elif props.get("Role") != {"Fn::GetAtt": [role, "Arn"]}:
            problems.append(f"{logical_id}: Role must be this template's {role}, not {short(props.get('Role'))}")
        if "Policies" in props or "PermissionsBoundary" in props:
            problems.append(f"{logical_id}: use the template's own Role, not SAM Policies (SAM would add managed policies and policy templates)")
        if "FunctionUrlConfig" in props:
            problems.append(f"{logical_id}: a function URL is a second, unauthenticated way in")
        for name, event in props.get("Events", {}).items():
            problems.append(f"{logical_id}/{name}: a SAM event ({event.get('Type')}) grants an invoker the template does not state; write the permission out")
    return problems


S3_RESPONSE_BUCKET = {
    "Fn::Sub": [
        "arn:${AWS::Partition}:s3:::cloudformation-custom-resource-response-${Region}/*",
        {"Region": {"Fn::Join": ["", {"Fn::Split": ["-", {"Ref": "AWS::Region"}]}]}},
    ]
}


def endpoint_policy_problems(template):
    """A VPC endpoint policy may only be the S3 gateway's: PutObject to CloudFormation's response
    bucket of this region. (Interface endpoints keep the default policy; docs/deployment.md says so.)"""
    problems = []
    for logical_id, ep in resources_of(template, "AWS::EC2::VPCEndpoint").items():
        props = ep.get("Properties", {})
        if "PolicyDocument" not in props:
            if props.get("VpcEndpointType") == "Gateway":
                problems.append(f"{logical_id}: a gateway endpoint without a policy lets every subnet of those route tables reach all of S3")
            continue
        where = f"{logical_id} endpoint policy"
        for st, conds in policy_statements(props["PolicyDocument"], (), where, problems):
            if set(st) - (TRUST_STATEMENT_KEYS | {"Resource"}) or st.get("Effect") != "Allow":
                problems.append(f"{where}: unexpected statement {short(st)}")
                continue
            actions = string_elements(st.get("Action"), conds, where, "action", problems)
            resources = [r for r, _ in elements(st.get("Resource"), conds)]
            if actions != ["s3:PutObject"] or resources != [S3_RESPONSE_BUCKET]:
                problems.append(f"{where}: only s3:PutObject to CloudFormation's response bucket, not {actions} on {short(resources)}")
    return problems


def iam_problems(template):
    """Least privilege in every resource that can carry a policy."""
    problems = []
    res = template.get("Resources", {})
    roles = resources_of(template, "AWS::IAM::Role")
    for logical_id in ROLE_RULES:
        if logical_id not in roles:
            problems.append(f"{logical_id} is missing")
    for logical_id, role in roles.items():
        if logical_id not in ROLE_RULES:
            problems.append(f"{logical_id}: unexpected role")
            continue
        problems += trust_problems(logical_id, role)
        problems += role_policy_problems(template, logical_id, role, function_log_groups(template, logical_id))
    problems += function_problems(template)
    problems += endpoint_policy_problems(template)
    handled = {"AWS::IAM::Role", "AWS::Serverless::Function", "AWS::Lambda::Permission", "AWS::EC2::VPCEndpoint", "AWS::RDS::DBProxy"}
    for logical_id, r in res.items():
        kind = r.get("Type", "")
        if kind in FORBIDDEN_TYPES:
            problems.append(f"{logical_id}: {kind} is not expected; permissions live in the template's roles")
        elif kind == DATABASE_ROLE_TYPE:
            continue  # database_role_problems
        elif kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource":
            problems.append(f"{logical_id}: custom resource {kind} runs code with its service token's permissions; it is not expected")
        elif kind not in handled:
            keys = sorted(policy_keys_in(r.get("Properties", {})))
            if keys:
                problems.append(f"{logical_id}: {kind} carries {keys}, which these checks do not understand")
    return problems


def policy_keys_in(node):
    found = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k in POLICY_KEYS:
                found.add(k)
            found |= policy_keys_in(v)
    elif isinstance(node, list):
        for v in node:
            found |= policy_keys_in(v)
    return found


def refers_to(value, logical_id):
    """Whether `value` is Ref / GetAtt ...Arn of `logical_id`, or (a function) Ref of its SAM alias."""
    return value in (
        {"Ref": logical_id},
        {"Ref": f"{logical_id}.Alias"},
        {"Fn::GetAtt": [logical_id, "Arn"]},
        {"Fn::GetAtt": f"{logical_id}.Arn"},
    )


ALIAS = "live"
# Everything that invokes a function invokes its alias, and is allowed to: a rollback is one
# update-alias. (The custom resource keeps the unqualified ARN: CloudFormation refuses a changed
# ServiceToken, and it runs only during stack operations.)
ALIASED = {
    ("DatabaseSecretRotationSchedule", "RotationLambdaARN"): "RotationFunction",
    ("RotationInvokePermission", "FunctionName"): "RotationFunction",
    ("ItemsApiIntegration", "IntegrationUri"): "ItemsApiFunction",
    ("ItemsApiInvokePermission", "FunctionName"): "ItemsApiFunction",
}


def alias_problems(template):
    problems = []
    res = template.get("Resources", {})
    for fn in FUNCTION_ROLES:
        if res.get(fn, {}).get("Properties", {}).get("AutoPublishAlias") != ALIAS:
            problems.append(f"{fn}: AutoPublishAlias must be {ALIAS}, so a bad deploy rolls back with one update-alias")
    for (logical_id, prop), fn in ALIASED.items():
        value = res.get(logical_id, {}).get("Properties", {}).get(prop)
        if value != {"Ref": f"{fn}.Alias"}:
            problems.append(f"{logical_id}: {prop} must be {fn}'s alias ({fn}.Alias), not {short(value)}")
    return problems


def sam_transform_problems(template):
    """What SAM adds when it transforms the template: the two aliases and their versions, and no IAM
    role, policy or permission of its own (SAM makes those for Policies, events and authorizers)."""
    import os
    from unittest import mock

    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self):
            return {}

    t = copy.deepcopy(template)
    for r in t.get("Resources", {}).values():
        props = r.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = "s3://bucket/artifact.zip"  # as `sam package` would leave it
    with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "eu-west-1")}):
        out = transform(t, {}, NoManagedPolicies())
    problems = []
    before, after = template.get("Resources", {}), out.get("Resources", {})
    for logical_id, r in after.items():
        kind = r.get("Type", "")
        if logical_id in before:
            continue
        if kind in ("AWS::Lambda::Version", "AWS::Lambda::Alias", "AWS::Lambda::LayerVersion"):
            continue
        problems.append(f"SAM adds {logical_id} ({kind}), which no check has seen")
    for fn in FUNCTION_ROLES:
        alias = after.get(f"{fn}Alias{ALIAS}")
        if not alias or alias.get("Type") != "AWS::Lambda::Alias":
            problems.append(f"SAM makes no alias {ALIAS} for {fn}")
    for (logical_id, prop), fn in ALIASED.items():
        if after.get(logical_id, {}).get("Properties", {}).get(prop) != {"Ref": f"{fn}Alias{ALIAS}"}:
            problems.append(f"after SAM, {logical_id}.{prop} is not {fn}'s alias")
    return problems


def permission_problems(template):
    """Every AWS::Lambda::Permission: a known service principal, on the one function it serves,
    scoped to this account; nothing else may invoke anything."""
    problems = []
    invokers_seen = set()
    for logical_id, perm in resources_of(template, "AWS::Lambda::Permission").items():
        props = perm.get("Properties", {})
        for key in sorted(set(props) - PERMISSION_KEYS):
            problems.append(f"{logical_id}: {key} is not expected on a permission")
        principal = props.get("Principal")
        function = INVOKERS.get(principal) if isinstance(principal, str) else None
        if function is None:
            problems.append(f"{logical_id}: Principal {short(principal)} may not invoke anything (only {sorted(INVOKERS)})")
            continue
        invokers_seen.add(principal)
        if not refers_to(props.get("FunctionName"), function):
            problems.append(f"{logical_id}: {principal} may invoke only {function}")
        if props.get("Action") != "lambda:InvokeFunction":
            problems.append(f"{logical_id}: Action must be lambda:InvokeFunction")
        if principal == "apigateway.amazonaws.com":
            if props.get("SourceArn") != {"Fn::Sub": EXECUTE_API_ARN}:
                problems.append(f"{logical_id}: SourceArn must be this stack's HTTP API ({EXECUTE_API_ARN}), or any API in any account could invoke it")
        elif props.get("SourceAccount") != {"Ref": "AWS::AccountId"}:
            problems.append(f"{logical_id}: SourceAccount must be this account (confused deputy)")
    if "secretsmanager.amazonaws.com" not in invokers_seen:
        problems.append("no AWS::Lambda::Permission lets secretsmanager.amazonaws.com invoke the rotation function")
    return problems


def depends_on(template, logical_id, target, seen=None):
    """Whether `logical_id` waits for `target`: DependsOn, a Ref/GetAtt in its properties, or through a
    resource it waits for (the WaitConditionHandles whose Metadata names conditional resources)."""
    from cfn import refs_in

    seen = seen if seen is not None else set()
    if logical_id in seen:
        return False
    seen.add(logical_id)
    r = template.get("Resources", {}).get(logical_id, {})
    direct = set(as_list(r.get("DependsOn", []))) | refs_in(r.get("Properties", {})) | refs_in(r.get("Metadata", {}))
    return target in direct or any(depends_on(template, d, target, seen) for d in direct if d in template.get("Resources", {}))


def schedule_problems(template):
    problems = []
    schedules = resources_of(template, "AWS::SecretsManager::RotationSchedule")
    if len(schedules) != 1:
        problems.append(f"expected one rotation schedule, found {len(schedules)}")
    for logical_id, sched in schedules.items():
        props = sched.get("Properties", {})
        if not refers_to(props.get("RotationLambdaARN"), "RotationFunction"):
            problems.append(f"{logical_id}: RotationLambdaARN must be the rotation function's ARN")
        if "HostedRotationLambda" in props:
            problems.append(f"{logical_id}: HostedRotationLambda would replace our rotation function")
        expected_secret = {"Fn::If": ["CreateDatabase", {"Ref": "AppSecretAttachment"}, {"Ref": "ExistingSecretArn"}]}
        if props.get("SecretId") != expected_secret:
            problems.append(f"{logical_id}: SecretId must be the application secret (through its attachment when created)")
        rules = props.get("RotationRules", {})
        if rules.get("ScheduleExpression") != {"Ref": "RotationScheduleExpression"}:
            problems.append(f"{logical_id}: the schedule must come from the RotationScheduleExpression parameter")
        perms = [
            p
            for p, r in resources_of(template, "AWS::Lambda::Permission").items()
            if r.get("Properties", {}).get("Principal") == "secretsmanager.amazonaws.com"
        ]
        if not set(perms) & set(as_list(sched.get("DependsOn", []))):
            problems.append(f"{logical_id}: must DependsOn the invoke permission, or the first test invocation is denied")
        for role in resources_of(template, DATABASE_ROLE_TYPE):
            if not depends_on(template, logical_id, role):
                problems.append(f"{logical_id}: must wait for {role}, or its first testSecret logs in as a role that does not exist yet")
    return problems


def database_role_problems(template):
    """Mode 1's application role: one Custom::DatabaseRole served by the rotation function, with exactly
    the properties the Rust side reads, after the instance and the secret's host, kept on deletion."""
    problems = []
    roles = resources_of(template, DATABASE_ROLE_TYPE)
    if len(roles) != 1:
        return [f"expected one {DATABASE_ROLE_TYPE}, found {sorted(roles)}"]
    (logical_id, role), = roles.items()
    props = role.get("Properties", {})
    if set(props) != DATABASE_ROLE_PROPERTIES:
        problems.append(f"{logical_id}: properties must be exactly {sorted(DATABASE_ROLE_PROPERTIES)}, not {sorted(props)}")
    if props.get("ServiceToken") != {"Fn::GetAtt": ["RotationFunction", "Arn"]}:
        problems.append(f"{logical_id}: ServiceToken must be the rotation function")
    if props.get("SecretId") != {"Ref": "AppSecret"}:
        problems.append(f"{logical_id}: SecretId must be the application secret (its masterarn names the master)")
    timeout = props.get("ServiceTimeout")
    if not (isinstance(timeout, int) and 30 <= timeout <= MAX_SERVICE_TIMEOUT):
        problems.append(f"{logical_id}: ServiceTimeout must bound the wait (30..{MAX_SERVICE_TIMEOUT} s), not {timeout!r}")
    if role.get("Condition") != "CreateDatabase":
        problems.append(f"{logical_id}: only when the stack creates the database (Condition CreateDatabase)")
    for needed in ("Database", "AppSecretAttachment"):
        if not depends_on(template, logical_id, needed):
            problems.append(f"{logical_id}: must come after {needed} (the secret needs its host)")
    network = [h for h in resources_of(template, "AWS::CloudFormation::WaitConditionHandle") if "Network" in h]
    if not any(depends_on(template, logical_id, h) for h in network):
        problems.append(f"{logical_id}: must wait for the network (security groups, endpoints) the function needs")
    for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
        if role.get(policy) != "Retain":
            problems.append(f"{logical_id}: {policy} must be Retain, so no Delete ever drops the role and its objects")
    return problems


def alarm_metrics(props):
    """(namespace, metric, dimensions, statistic) of each metric an alarm reads, plain or metric math."""
    if "MetricName" in props:
        stat = props.get("ExtendedStatistic", props.get("Statistic"))
        return [(props.get("Namespace"), props.get("MetricName"), props.get("Dimensions", []), stat)]
    out = []
    for m in props.get("Metrics", []):
        ms = m.get("MetricStat")
        if ms:
            metric = ms.get("Metric", {})
            out.append((metric.get("Namespace"), metric.get("MetricName"), metric.get("Dimensions", []), ms.get("Stat")))
    return out


def text_of(value):
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"]
        value = value[0] if isinstance(value, list) else value
    return value if isinstance(value, str) else ""


def alarm_problems(template, metrics, runbook_anchors=None):
    if runbook_anchors is None:
        runbook_anchors = github_anchors(RUNBOOK)
    problems = []
    seen_api, seen_aws = set(), set()
    for logical_id, alarm in resources_of(template, "AWS::CloudWatch::Alarm").items():
        props = alarm.get("Properties", {})
        refs = RUNBOOK_REF.findall(text_of(props.get("AlarmDescription")))
        if not refs:
            problems.append(f"{logical_id}: the description must name its runbook section (Runbook: docs/rotation-runbook.md#section)")
        for anchor in refs:
            if anchor not in runbook_anchors:
                problems.append(f"{logical_id}: docs/rotation-runbook.md has no section #{anchor}")
        for key in ("AlarmActions", "OKActions"):
            if props.get(key) != ALARM_TARGET:
                problems.append(f"{logical_id}: {key} must notify AlarmTopicArn, or the AlarmEmail topic")
        read = alarm_metrics(props)
        if not read:
            problems.append(f"{logical_id}: reads no metric these checks understand")
        for ns, name, dims, stat in read:
            if ns == METRIC_NAMESPACE:
                if name not in metrics:
                    problems.append(f"{logical_id}: items-api emits no metric {name!r} (metric.rs has {sorted(metrics)})")
                if [d.get("Name") for d in dims] != METRIC_DIMENSIONS or dims[0].get("Value") != {"Ref": "ItemsApiFunction"}:
                    problems.append(f"{logical_id}: dimensions must be FunctionName = the items-api function's name")
                seen_api.add(name)
                continue
            spec = AWS_ALARMS.get((ns, name))
            if spec is None:
                problems.append(f"{logical_id}: namespace {ns!r} metric {name!r} is none of the alarms this stack keeps (items-api emits into {METRIC_NAMESPACE!r})")
                continue
            dim_name, dim_value, condition = spec
            if dims != [{"Name": dim_name, "Value": dim_value}]:
                problems.append(f"{logical_id}: {ns} {name} must be for {dim_name} = {short(dim_value)}, not {short(dims)}")
                continue
            if alarm.get("Condition") != condition:
                problems.append(f"{logical_id}: must have Condition {condition}")
            if (ns, name) == ("AWS/ApiGateway", "Latency") and stat != "p99":
                problems.append(f"{logical_id}: latency must be alarmed at p99, not {stat}")
            want = ALARM_THRESHOLDS.get((ns, name))
            if want is not None and props.get("Threshold") != want:
                problems.append(f"{logical_id}: the threshold must be the parameter {want['Ref']}, not {short(props.get('Threshold'))}")
            seen_aws.add((ns, name))
    for missing in sorted(ALARMED_API_METRICS - seen_api):
        problems.append(f"no alarm on items-api's {missing}")
    for ns, name in sorted(set(AWS_ALARMS) - seen_aws):
        problems.append(f"no alarm on {ns} {name} of {short(AWS_ALARMS[(ns, name)][1])}")
    return problems


# What must outlive the stack, or a change of mode (issue 17.4): the data (a final snapshot of the
# instance; RDS has no snapshot for a secret, so it is retained) and the role that owns it.
RETENTION = {
    "AWS::RDS::DBInstance": "Snapshot",
    "AWS::RDS::DBCluster": "Snapshot",
    "AWS::SecretsManager::Secret": "Retain",
    DATABASE_ROLE_TYPE: "Retain",
}
STACK_POLICY = ROOT / "infra" / "stack-policy.json"


def retention_problems(template):
    problems = []
    params = template.get("Parameters", {})
    for logical_id, r in template.get("Resources", {}).items():
        want = RETENTION.get(r.get("Type"))
        if want is None:
            continue
        for key in ("DeletionPolicy", "UpdateReplacePolicy"):
            if r.get(key) != want:
                problems.append(f"{logical_id}: {key} must be {want}, so removing it from the stack keeps the data")
        if r.get("Type") == "AWS::RDS::DBInstance":
            props = r.get("Properties", {})
            if props.get("DeletionProtection") != {"Ref": "DatabaseDeletionProtection"} or params.get("DatabaseDeletionProtection", {}).get("Default") != "true":
                problems.append(f"{logical_id}: DeletionProtection must follow DatabaseDeletionProtection, on by default")
            if not isinstance(props.get("BackupRetentionPeriod"), int) or props["BackupRetentionPeriod"] < 7:
                problems.append(f"{logical_id}: keep at least 7 days of automated backups")
    return problems


def stack_policy_problems(template, policy):
    """infra/stack-policy.json, which make deploy sets on the stack, must refuse any update that deletes
    or replaces what RETENTION keeps (a mode switch deletes the instance: its condition turns false)."""
    problems = []
    statements = as_list(policy.get("Statement", []))
    if not any(st.get("Effect") == "Allow" and st.get("Action") == "Update:*" and st.get("Resource") == "*" for st in statements):
        problems.append("the stack policy must allow other updates (Allow Update:* on *), or every deploy fails")
    denied = {}
    for st in statements:
        if st.get("Effect") == "Deny" and st.get("Principal") == "*":
            for resource in as_list(st.get("Resource", [])):
                denied.setdefault(resource, set()).update(as_list(st.get("Action", [])))
    for logical_id, r in template.get("Resources", {}).items():
        if r.get("Type") in ("AWS::RDS::DBInstance", "AWS::RDS::DBCluster", "AWS::SecretsManager::Secret"):
            got = denied.get(f"LogicalResourceId/{logical_id}", set())
            if not {"Update:Delete", "Update:Replace"} <= got:
                problems.append(f"the stack policy must deny Update:Delete and Update:Replace of {logical_id}")
    return problems


def proxy_problems(template):
    """RDS Proxy (issue 13): TLS, IAM authentication, the application secret and role, the created
    instance as its target, only with UseRdsProxy in mode 1; and a Rule that refuses alternating users."""
    problems = []
    proxies = resources_of(template, "AWS::RDS::DBProxy")
    for logical_id, proxy in proxies.items():
        props = proxy.get("Properties", {})
        if proxy.get("Condition") != "WithRdsProxy":
            problems.append(f"{logical_id}: only with UseRdsProxy (Condition WithRdsProxy)")
        if props.get("EngineFamily") != "POSTGRESQL" or props.get("RequireTLS") is not True:
            problems.append(f"{logical_id}: EngineFamily POSTGRESQL with RequireTLS true")
        if props.get("RoleArn") != {"Fn::GetAtt": ["ProxyRole", "Arn"]}:
            problems.append(f"{logical_id}: RoleArn must be ProxyRole")
        auth = props.get("Auth")
        if not (isinstance(auth, list) and len(auth) == 1 and isinstance(auth[0], dict)):
            problems.append(f"{logical_id}: exactly one Auth entry, the application role's")
            continue
        a = auth[0]
        if a.get("AuthScheme") != "SECRETS" or a.get("SecretArn") != {"Ref": "AppSecret"}:
            problems.append(f"{logical_id}: Auth must log in with the application secret (AppSecret), never the master's")
        if a.get("IAMAuth") != "REQUIRED":
            problems.append(f"{logical_id}: IAMAuth must be REQUIRED, so a client needs an IAM token, not a password")
    for logical_id, group in resources_of(template, "AWS::RDS::DBProxyTargetGroup").items():
        props = group.get("Properties", {})
        if props.get("DBProxyName") != {"Ref": "DatabaseProxy"} or props.get("DBInstanceIdentifiers") != [{"Ref": "Database"}] or "DBClusterIdentifiers" in props:
            problems.append(f"{logical_id}: the proxy's target is the instance this stack creates")
    if proxies:
        rules = template.get("Rules", {})
        guard = [
            r for r in rules.values()
            if r.get("RuleCondition") == {"Fn::Equals": [{"Ref": "UseRdsProxy"}, "true"]}
            and {"Fn::Not": [{"Fn::Equals": [{"Ref": "RotationStrategy"}, "alternating-users"]}]} in [x.get("Assert") for x in r.get("Assertions", [])]
        ]
        if not guard:
            problems.append("no Rule refuses RDS Proxy with alternating users (the proxy would have no credentials for the API's user)")
        for r in guard:
            text = " ".join(x.get("AssertDescription", "") for x in r.get("Assertions", []))
            if "AWSCURRENT" not in text or "username" not in text:
                problems.append("the Rule refusing RDS Proxy with alternating users must say why (the proxy logs in with AWSCURRENT's username)")
    return problems


def parameter_problems(template):
    """Every parameter has a description and sits in exactly one group of the console's form; no
    default holds a password or key material (the only credentials are generated)."""
    problems = []
    params = template.get("Parameters", {})
    groups = template.get("Metadata", {}).get("AWS::CloudFormation::Interface", {}).get("ParameterGroups", [])
    placed = [name for g in groups for name in g.get("Parameters", [])]
    for name, spec in params.items():
        if len(spec.get("Description", "")) < 20:
            problems.append(f"{name}: needs a description an operator can act on")
        if placed.count(name) != 1:
            problems.append(f"{name}: must sit in exactly one ParameterGroup, not {placed.count(name)}")
        if re.search(r"pass|secret|token|key", name, re.I) and "Arn" not in name and "Length" not in name and spec.get("Default") not in (None, ""):
            if not re.fullmatch(r"[a-z0-9_.-]*", str(spec.get("Default"))):
                problems.append(f"{name}: a default that looks like a credential")
        if spec.get("NoEcho"):
            problems.append(f"{name}: a NoEcho parameter means someone types a secret; nobody should")
    for name in set(placed) - set(params):
        problems.append(f"ParameterGroups name {name}, which is not a parameter")
    return problems


def notification_problems(sc):
    """Who hears an alarm in this deployment, and what the AlarmNotifications output says about it."""
    problems = []
    p = sc.params
    alarms = sc.resources("AWS::CloudWatch::Alarm")
    topic = sc.resource("AlarmTopic")
    if p["AlarmTopicArn"]:
        want = [p["AlarmTopicArn"]]
    elif p["AlarmEmail"]:
        want = [{"Ref": "AlarmTopic"}]
        subs = [r for r in sc.resources("AWS::SNS::Subscription").values() if r["Properties"].get("TopicArn") == {"Ref": "AlarmTopic"}]
        if topic is None or [s["Properties"].get("Endpoint") for s in subs] != [p["AlarmEmail"]]:
            problems.append(f"{sc}: no topic mails AlarmEmail")
    else:
        want = None
    if topic is not None and not (p["AlarmEmail"] and not p["AlarmTopicArn"]):
        problems.append(f"{sc}: an alarm topic is created that nobody subscribes to")
    for logical_id, alarm in alarms.items():
        if alarm["Properties"].get("AlarmActions") != want:
            problems.append(f"{sc}: {logical_id} notifies {short(alarm['Properties'].get('AlarmActions'))}, expected {short(want)}")
    said = sc.resolve(sc.template["Outputs"]["AlarmNotifications"]["Value"])
    if want is None and not (isinstance(said, str) and said.startswith("nowhere")):
        problems.append(f"{sc}: output AlarmNotifications must say that nobody is notified")
    return problems


def environment_problems(template, api_vars, rotation_vars):
    problems = []
    functions = resources_of(template, "AWS::Serverless::Function")
    expected = {"ItemsApiFunction": (api_vars, API_REQUIRED_VARS), "RotationFunction": (rotation_vars, ROTATION_VARS)}
    for logical_id, (known, required) in expected.items():
        env = functions.get(logical_id, {}).get("Properties", {}).get("Environment", {}).get("Variables", {})
        for var in sorted(set(env) - known):
            problems.append(f"{logical_id}: {var} is not a variable the code reads")
        for var in sorted(required - set(env)):
            problems.append(f"{logical_id}: {var} is not set")
    return problems


def route_problems(template):
    """The HTTP API: design §7's routes, each to the one items-api integration; no other API."""
    problems = []
    for kind in ("AWS::Serverless::HttpApi", "AWS::Serverless::Api", "AWS::ApiGateway::RestApi"):
        for logical_id in resources_of(template, kind):
            problems.append(f"{logical_id}: {kind} is not expected; the HTTP API is HttpApi")
    apis = resources_of(template, "AWS::ApiGatewayV2::Api")
    if list(apis) != ["HttpApi"]:
        problems.append(f"expected one HTTP API, HttpApi, found {sorted(apis)}")
    routes = {}
    for logical_id, route in resources_of(template, "AWS::ApiGatewayV2::Route").items():
        props = route.get("Properties", {})
        key = props.get("RouteKey")
        if key in routes:
            problems.append(f"{logical_id}: route {key} twice")
        routes[key] = logical_id
        if props.get("Target") != INTEGRATION_TARGET:
            problems.append(f"{logical_id}: {key} must go to ItemsApiIntegration")
    for key in sorted(API_ROUTES - set(routes)):
        problems.append(f"HTTP API route {key} is missing")
    for key in sorted(set(routes) - API_ROUTES):
        problems.append(f"HTTP API route {key} is not in the design")
    for logical_id, integ in resources_of(template, "AWS::ApiGatewayV2::Integration").items():
        props = integ.get("Properties", {})
        if logical_id != "ItemsApiIntegration" or props.get("IntegrationType") != "AWS_PROXY" or props.get("PayloadFormatVersion") != "2.0":
            problems.append(f"{logical_id}: the only integration is ItemsApiIntegration, AWS_PROXY with payload 2.0")
        elif not refers_to(props.get("IntegrationUri"), "ItemsApiFunction"):
            problems.append(f"{logical_id}: IntegrationUri must be items-api")
    return problems


def api_auth_problems(sc):
    """In this deployment, every route but GET /health uses the authorizer ApiAuth chooses; the stage
    throttles; items-api's concurrency is reserved."""
    problems = []
    want = API_AUTHORIZATION[sc.params["ApiAuth"]]
    authorizers = sc.resources("AWS::ApiGatewayV2::Authorizer")
    for logical_id, route in sc.resources("AWS::ApiGatewayV2::Route").items():
        props = route["Properties"]
        key = props.get("RouteKey")
        expected = "NONE" if key in OPEN_ROUTES else want
        got = props.get("AuthorizationType", "NONE")
        if got != expected:
            problems.append(f"{sc}: {key} is authorized by {got}, expected {expected}")
        if expected == "JWT":
            authorizer = props.get("AuthorizerId")
            target = authorizers.get(authorizer.get("Ref") if isinstance(authorizer, dict) else None)
            if not target or target["Properties"].get("AuthorizerType") != "JWT":
                problems.append(f"{sc}: {key} names no JWT authorizer")
            elif target["Properties"].get("JwtConfiguration") != {"Issuer": sc.params["JwtIssuer"], "Audience": {"Fn::Split": [",", sc.params["JwtAudience"]]}}:
                problems.append(f"{sc}: the JWT authorizer does not check JwtIssuer and JwtAudience")
    stages = sc.resources("AWS::ApiGatewayV2::Stage")
    for logical_id, stage in stages.items():
        settings = stage["Properties"].get("DefaultRouteSettings", {})
        if settings.get("ThrottlingRateLimit") != sc.params["ApiThrottleRate"] or settings.get("ThrottlingBurstLimit") != sc.params["ApiThrottleBurst"]:
            problems.append(f"{sc}: stage {logical_id} must throttle at ApiThrottleRate / ApiThrottleBurst")
    if not stages:
        problems.append(f"{sc}: the HTTP API has no stage")
    fn = sc.resource("ItemsApiFunction")["Properties"]
    if fn.get("ReservedConcurrentExecutions") != sc.params["ApiReservedConcurrency"]:
        problems.append(f"{sc}: items-api's concurrency must be reserved (ApiReservedConcurrency), the cap on its database connections")
    return problems


# ------------------------------------------------------------------ per deployment (Scenario)

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/"
BASE = {
    "VpcId": "vpc-0123456789abcdef0",
    "PrivateSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "PrivateRouteTableIds": "rtb-0123456789abcdef0,rtb-0123456789abcdef1",
    "S3PrefixListId": "pl-6da54004",
    "AlarmEmail": "oncall@example.com",
}
MODE2 = {"ExistingSecretArn": ARN + "items-AbCdEf", "ExistingDatabaseSecurityGroupId": "sg-0123456789abcdef0"}
MASTER = {"MasterSecretArn": ARN + "master-AbCdEf", "DatabaseIdentifier": "itemsdb"}
KEYS = {"SecretKmsKeyArn": KEY + "app", "MasterSecretKmsKeyArn": KEY + "master"}
# Deployments the template must serve; each must pass the Rules.
SCENARIOS = {
    "mode 1": {},
    "mode 1, JWT": {"ApiAuth": "jwt", "JwtIssuer": "https://issuer.example.com/", "JwtAudience": "items,items-admin"},
    "mode 1, public API": {"ApiAuth": "none"},
    "mode 1, alarm topic": {"AlarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:oncall", "AlarmEmail": ""},
    "staging, nobody notified": {"DeploymentEnvironment": "staging", "AlarmEmail": ""},
    "mode 1, NAT": {"HasNatGateway": "true", "PrivateRouteTableIds": "", "S3PrefixListId": ""},
    "mode 1, keys": dict(KEYS),
    "mode 1, explicit alternating-users": {"RotationStrategy": "alternating-users"},
    "mode 1, proxy": {"UseRdsProxy": "true"},
    "mode 1, proxy, keys, explicit single-user": dict(KEYS, UseRdsProxy="true", RotationStrategy="single-user"),
    "mode 2, single-user": dict(MODE2),
    "mode 2, single-user with a master": dict(MODE2, **MASTER),
    "mode 2, single-user with a master and keys": dict(MODE2, **MASTER, **KEYS),
    "mode 2, alternating-users": dict(MODE2, **MASTER, RotationStrategy="alternating-users"),
    "mode 2, host from RDS": dict(MODE2, ResolveHostWithRdsApi="true", DatabaseIdentifier="itemsdb", HasNatGateway="true"),
}


def scenario(template, name_or_params):
    params = SCENARIOS[name_or_params] if isinstance(name_or_params, str) else name_or_params
    from cfn import Scenario

    return Scenario(template, **dict(BASE, **params))


def resolved_grants(sc, role):
    """What the role may do in this deployment: kind -> actions, kinds named from the deployment's
    own values (the secret, the master secret, the keys, the database)."""
    p = sc.params
    create = p["ExistingSecretArn"] == ""
    kinds = {
        "secret": [{"Ref": "AppSecret"}] if create else [p["ExistingSecretArn"]],
        "master": [{"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}] + ([p["MasterSecretArn"]] if p["MasterSecretArn"] else []),
        "key": [p["SecretKmsKeyArn"]] if p["SecretKmsKeyArn"] else [],
        "master-key": [p["MasterSecretKmsKeyArn"]] if p["MasterSecretKmsKeyArn"] else [],
    }
    grants = {}
    resource = sc.resource(role)
    if resource is None:
        return None
    for policy in resource["Properties"].get("Policies", []):
        for st in as_list(policy["PolicyDocument"]["Statement"]):
            if st.get("Effect") != "Allow":
                continue
            for resource in as_list(st["Resource"]):
                kind = next((k for k, values in kinds.items() if resource in values), None)
                if kind is None:
                    text = str(resource)
                    kind = (
                        "proxy-user" if ":rds-db:" in text and "DatabaseProxy" in text
                        else "rds" if ":rds:" in text
                        else "star" if resource == "*"
                        else "log" if "LogGroup" in text
                        else f"other {text}"
                    )
                grants.setdefault(kind, set()).update(as_list(st["Action"]))
    return grants


def expected_grants(sc, role):
    """What the role needs in this deployment (design §4, §8, §11), worked out from the parameters
    alone, not from the template's conditions."""
    p = sc.params
    create = p["ExistingSecretArn"] == ""
    proxy = create and p["UseRdsProxy"] == "true"
    master = create or p["MasterSecretArn"] != ""
    resolve = not create and p["ResolveHostWithRdsApi"] == "true"
    rules = ROLE_RULES[role]
    if role == "ProxyRole":
        if not proxy:
            return None
        return {"secret": rules["secret"], **({"key": rules["key"]} if p["SecretKmsKeyArn"] else {})}
    out = {"log": LOG_ACTIONS, "star": set(ENI_ACTIONS)}
    if role == "ItemsApiRole" and proxy:
        out["proxy-user"] = rules["proxy-user"]  # an IAM token instead of the secret
    else:
        out["secret"] = rules["secret"]
        if p["SecretKmsKeyArn"]:
            out["key"] = rules["key"]
    if role == "RotationRole":
        out["star"] = out["star"] | {"secretsmanager:GetRandomPassword"}
        if master:
            out["master"] = rules["master"]
            if p["MasterSecretKmsKeyArn"]:
                out["master-key"] = rules["master-key"]
        if master or resolve:
            out["rds"] = RDS_ACTIONS
    elif resolve:
        out["rds"] = RDS_ACTIONS
    return out


def grant_problems(sc):
    problems = []
    for role in ROLE_RULES:
        got, want = resolved_grants(sc, role), expected_grants(sc, role)
        if got is None or want is None:
            if (got is None) != (want is None):
                problems.append(f"{sc}: {role} {'is missing' if got is None else 'exists but is not needed'}")
            continue
        for kind in sorted(set(got) | set(want)):
            if got.get(kind, set()) != want.get(kind, set()):
                problems.append(f"{sc}: {role} may do {sorted(got.get(kind, set()))} on the {kind}, needs {sorted(want.get(kind, set()))}")
    return problems


def wiring_problems(sc):
    """The credentials each function gets in this deployment."""
    problems = []
    p = sc.params
    create = p["ExistingSecretArn"] == ""
    proxy = create and p["UseRdsProxy"] == "true"
    api_env = sc.resource("ItemsApiFunction")["Properties"]["Environment"]["Variables"]
    if proxy:
        want = {
            "DB_IAM_AUTH": "true",
            "DATABASE_HOST": {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]},
            "DATABASE_PORT": "5432",
            "DATABASE_USER": p["DatabaseAppUsername"],
            "DATABASE_NAME": p["DatabaseName"],
            "DB_SSL_ROOT_CERT": "/opt/amazon-root-ca.pem",
        }
        for var, value in want.items():
            if api_env.get(var) != value:
                problems.append(f"{sc}: with the proxy, items-api's {var} is {short(api_env.get(var))}, expected {short(value)}")
        if "DB_SECRET_ARN" in api_env:
            problems.append(f"{sc}: with the proxy, items-api gets no secret (IAM authentication), yet DB_SECRET_ARN is set")
    else:
        want_secret = {"Ref": "AppSecretAttachment"} if create else p["ExistingSecretArn"]
        if api_env.get("DB_SECRET_ARN") != want_secret:
            problems.append(f"{sc}: items-api's DB_SECRET_ARN is {short(api_env.get('DB_SECRET_ARN'))}, not the application secret")
        for var in ("DB_IAM_AUTH", "DATABASE_HOST", "DATABASE_USER"):
            if var in api_env:
                problems.append(f"{sc}: without a proxy, items-api must not get {var}")
        if api_env.get("DB_SSL_ROOT_CERT") != "/opt/global-bundle.pem":
            problems.append(f"{sc}: items-api must verify the database with the RDS CA bundle")
    rot_env = sc.resource("RotationFunction")["Properties"]["Environment"]["Variables"]
    for var in ("DATABASE_HOST", "DATABASE_URL", "DB_IAM_AUTH"):
        if var in rot_env:
            problems.append(f"{sc}: the rotation function must reach the database as its secret says, never through {var}")
    if p["RotationStrategy"] == "auto":
        want_strategy = "alternating-users" if create and not proxy else "single-user"
    else:
        want_strategy = p["RotationStrategy"]
    if rot_env.get("ROTATION_STRATEGY") != want_strategy:
        problems.append(f"{sc}: ROTATION_STRATEGY is {rot_env.get('ROTATION_STRATEGY')}, expected {want_strategy}")
    if create:
        db = sc.resource("Database")["Properties"]
        if db.get("ManageMasterUserPassword") is not True or "MasterUserPassword" in db:
            problems.append(f"{sc}: the created instance must keep its master password in RDS (ManageMasterUserPassword)")
        if sc.resource("AppDatabaseRole") is None:
            problems.append(f"{sc}: no application role is created")
        attachment = sc.resource("AppSecretAttachment")["Properties"]
        if attachment.get("TargetId") != {"Ref": "Database"} or attachment.get("TargetType") != "AWS::RDS::DBInstance":
            problems.append(f"{sc}: the application secret's host must be the instance (the rotation function connects directly)")
        if proxy != (sc.resource("DatabaseProxy") is not None):
            problems.append(f"{sc}: RDS Proxy {'missing' if proxy else 'created without UseRdsProxy'}")
        if p["HasNatGateway"] == "false":
            endpoint = sc.resource("S3GatewayEndpoint")
            if endpoint is None:
                problems.append(f"{sc}: no S3 gateway endpoint, so the custom resource's answer cannot leave the VPC")
            groups = sc.resource("RotationFunction")["Properties"]["VpcConfig"]["SecurityGroupIds"]
            if {"Fn::GetAtt": ["RotationResponseSecurityGroup", "GroupId"]} not in groups:
                problems.append(f"{sc}: the rotation function may not reach S3")
    return problems


def all_problems(template):
    return (
        binary_problems(template, workspace_binaries(), package_features(), cargo_lambda_build())
        + iam_problems(template)
        + permission_problems(template)
        + schedule_problems(template)
        + database_role_problems(template)
        + alias_problems(template)
        + retention_problems(template)
        + parameter_problems(template)
        + proxy_problems(template)
        + stack_policy_problems(template, json.loads(STACK_POLICY.read_text()))
        + sam_transform_problems(template)
        + alarm_problems(template, emitted_metrics())
        + environment_problems(template, known_api_vars(), known_rotation_vars())
        + route_problems(template)
        + scenario_problems(template)
    )


def scenario_problems(template):
    problems = []
    for name in SCENARIOS:
        sc = scenario(template, name)
        problems += [f"{sc}: {f}" for f in sc.rule_failures()]
        problems += grant_problems(sc) + wiring_problems(sc) + api_auth_problems(sc) + notification_problems(sc)
    return problems


# ------------------------------------------------------------------ tests


class TemplateIsRight(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template = load_template()

    def test_functions_build_workspace_binaries_with_vendored_openssl(self):
        self.assertEqual(
            binary_problems(self.template, workspace_binaries(), package_features(), cargo_lambda_build()), []
        )

    def test_iam_is_least_privilege(self):
        self.assertEqual(iam_problems(self.template), [])

    def test_only_secrets_manager_of_this_account_invokes_rotation(self):
        self.assertEqual(permission_problems(self.template), [])

    def test_rotation_schedule_points_at_the_rotation_function(self):
        self.assertEqual(schedule_problems(self.template), [])

    def test_alarms_watch_metrics_the_api_emits(self):
        self.assertEqual(alarm_problems(self.template, emitted_metrics()), [])

    def test_environment_holds_only_variables_the_code_reads(self):
        self.assertEqual(environment_problems(self.template, known_api_vars(), known_rotation_vars()), [])

    def test_http_api_has_the_design_routes(self):
        self.assertEqual(route_problems(self.template), [])

    def test_every_check_passes_together(self):
        self.assertEqual(all_problems(self.template), [])

    def test_every_scenario_passes_the_rules(self):
        for name in SCENARIOS:
            with self.subTest(scenario=name):
                self.assertEqual(scenario(self.template, name).rule_failures(), [])

    def test_each_role_has_exactly_what_each_deployment_needs(self):
        for name in SCENARIOS:
            with self.subTest(scenario=name):
                self.assertEqual(grant_problems(scenario(self.template, name)), [])

    def test_each_function_gets_the_credentials_of_its_deployment(self):
        for name in SCENARIOS:
            with self.subTest(scenario=name):
                self.assertEqual(wiring_problems(scenario(self.template, name)), [])

    def test_every_deployment_authorizes_its_callers(self):
        for name in SCENARIOS:
            with self.subTest(scenario=name):
                self.assertEqual(api_auth_problems(scenario(self.template, name)), [])

    def test_every_deployment_notifies_whom_it_says(self):
        for name in SCENARIOS:
            with self.subTest(scenario=name):
                self.assertEqual(notification_problems(scenario(self.template, name)), [])

    def test_runbook_anchors_follow_github(self):
        anchors = github_anchors(RUNBOOK)
        self.assertIn("the-api-answers-503", anchors)
        self.assertIn("a-rotation-stuck-with-awspending", anchors)

    def test_rules_refuse_unsafe_combinations(self):
        refused = {
            "production without notifications": ({"AlarmEmail": ""}, "or nobody hears the alarms"),
            "proxy with alternating users": ({"UseRdsProxy": "true", "RotationStrategy": "alternating-users"}, "changes that username at every rotation"),
            "proxy in mode 2": (dict(MODE2, UseRdsProxy="true"), "UseRdsProxy is offered when this stack creates the database"),
            "JWT without issuer": ({"ApiAuth": "jwt", "JwtAudience": "items"}, "needs JwtIssuer"),
            "JWT without audience": ({"ApiAuth": "jwt", "JwtIssuer": "https://issuer.example.com/"}, "needs JwtAudience"),
            "single-user in mode 1": ({"RotationStrategy": "single-user"}, "alternating users through the RDS-managed master"),
            "app user = master": ({"DatabaseAppUsername": "items_admin"}, "never logs in as the master"),
            "no route tables without NAT": ({"PrivateRouteTableIds": ""}, "give PrivateRouteTableIds"),
            "no S3 prefix list without NAT": ({"S3PrefixListId": ""}, "give S3PrefixListId"),
            "alternating without master": (dict(MODE2, RotationStrategy="alternating-users"), "needs MasterSecretArn"),
            "master without identifier": (dict(MODE2, MasterSecretArn=ARN + "m-AbCdEf"), "give DatabaseIdentifier"),
        }
        for name, (params, message) in refused.items():
            with self.subTest(name):
                failures = scenario(self.template, params).rule_failures()
                self.assertTrue(any(message in f for f in failures), failures)

    def test_data_outlives_the_stack_and_a_mode_switch(self):
        self.assertEqual(retention_problems(self.template), [])
        self.assertEqual(stack_policy_problems(self.template, json.loads(STACK_POLICY.read_text())), [])

    def test_proxy_is_tls_iam_and_the_application_secret(self):
        self.assertEqual(proxy_problems(self.template), [])

    def test_parameters_are_described_and_grouped(self):
        self.assertEqual(parameter_problems(self.template), [])

    def test_callers_invoke_the_aliases(self):
        self.assertEqual(alias_problems(self.template), [])

    def test_sam_adds_no_grant_of_its_own(self):
        self.assertEqual(sam_transform_problems(self.template), [])

    def test_workspace_reading_finds_both_lambda_binaries(self):
        bins = workspace_binaries()
        self.assertEqual(bins.get("items-api"), "items-api")
        self.assertEqual(bins.get("rotation"), "rotation")
        self.assertIn("SecretFetchErrors", emitted_metrics())
        self.assertIn("DB_SECRET_ARN", known_api_vars())


class ChecksCatchMistakes(unittest.TestCase):
    """Every check fails on a template with the mistake it exists to catch."""

    @classmethod
    def setUpClass(cls):
        cls.original = load_template()

    def setUp(self):
        self.t = copy.deepcopy(self.original)
        self.res = self.t["Resources"]

    def policy(self, role, name):
        for p, _ in elements(self.res[role]["Properties"]["Policies"]):
            if p.get("PolicyName") == name:
                return p
        raise KeyError(name)

    def add(self, logical_id, kind, properties):
        self.res[logical_id] = {"Type": kind, "Properties": properties}

    def assertCaught(self, problems, fragment):
        self.assertTrue(any(fragment in p for p in problems), f"expected a problem mentioning {fragment!r}, got {problems}")

    # binaries
    def test_unknown_binary_is_caught(self):
        self.res["ItemsApiFunction"]["Metadata"]["BuildProperties"]["Binary"] = "items_api"
        problems = binary_problems(self.t, workspace_binaries(), package_features(), cargo_lambda_build())
        self.assertCaught(problems, "no binary 'items_api'")

    def test_swapped_binaries_are_caught(self):
        self.res["RotationFunction"]["Metadata"]["BuildProperties"]["Binary"] = "items-api"
        problems = binary_problems(self.t, workspace_binaries(), package_features(), cargo_lambda_build())
        self.assertCaught(problems, "expected the 'rotation' binary")

    def test_sam_build_without_vendored_openssl_is_caught(self):
        build = dict(cargo_lambda_build(), features=["items-api/vendored-openssl"])
        problems = binary_problems(self.t, workspace_binaries(), package_features(), build)
        self.assertCaught(problems, "rotation/vendored-openssl")

    def test_sam_build_selecting_other_packages_is_caught(self):
        build = dict(cargo_lambda_build(), packages=["items-api"])
        problems = binary_problems(self.t, workspace_binaries(), package_features(), build)
        self.assertCaught(problems, "packages lacks rotation")

    def test_code_uri_outside_the_workspace_root_is_caught(self):
        self.res["RotationFunction"]["Properties"]["CodeUri"] = "../crates/rotation"
        problems = binary_problems(self.t, workspace_binaries(), package_features(), cargo_lambda_build())
        self.assertCaught(problems, "CodeUri")

    # IAM
    def test_star_resource_on_put_secret_value_is_caught(self):
        st = self.policy("RotationRole", "rotate-database-secret")["PolicyDocument"]["Statement"][0]
        st["Resource"] = "*"
        self.assertCaught(iam_problems(self.t), "Resource '*' for ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue', 'secretsmanager:ListSecretVersionIds', 'secretsmanager:PutSecretValue'")

    def test_star_added_to_a_resource_list_is_caught(self):
        st = self.policy("ItemsApiRole", "database-secret")["PolicyDocument"]["Statement"][0]
        st["Resource"] = [st["Resource"], "*"]
        self.assertCaught(iam_problems(self.t), "Resource '*'")

    def test_api_writing_the_secret_is_caught(self):
        st = self.policy("ItemsApiRole", "database-secret")["PolicyDocument"]["Statement"][0]
        st["Action"].append("secretsmanager:PutSecretValue")
        self.assertCaught(iam_problems(self.t), "PutSecretValue")

    def test_wildcard_action_is_caught(self):
        st = self.policy("RotationRole", "rotate-database-secret")["PolicyDocument"]["Statement"][0]
        st["Action"] = "secretsmanager:*"
        self.assertCaught(iam_problems(self.t), "wildcard action")

    def test_unconditional_master_secret_access_is_caught(self):
        policies = self.res["RotationRole"]["Properties"]["Policies"]
        i = next(i for i, p in enumerate(policies) if "Fn::If" in p and p["Fn::If"][0] == "HasExistingMasterSecret")
        policies[i] = policies[i]["Fn::If"][1]
        self.assertCaught(iam_problems(self.t), "grant on the optional MasterSecretArn outside a condition on it")
        self.assertCaught(grant_problems(scenario(self.t, "mode 2, single-user")), "RotationRole may do ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'] on the other")

    def test_unconditional_created_master_secret_access_is_caught(self):
        policies = self.res["RotationRole"]["Properties"]["Policies"]
        i = next(i for i, p in enumerate(policies) if "Fn::If" in p and p["Fn::If"][0] == "CreateDatabase" and p["Fn::If"][1]["PolicyName"] == "master-secret")
        policies[i] = policies[i]["Fn::If"][1]
        self.assertCaught(grant_problems(scenario(self.t, "mode 2, single-user")), "on the master, needs []")

    def test_unconditional_kms_is_caught(self):
        policies = self.res["ItemsApiRole"]["Properties"]["Policies"]
        i = next(i for i, p in enumerate(policies) if "Fn::If" in p and p["Fn::If"][1].get("PolicyName") == "secret-key")
        policies[i] = policies[i]["Fn::If"][1]
        self.assertCaught(iam_problems(self.t), "grant on the optional SecretKmsKeyArn outside a condition on it")

    def test_kms_on_star_is_caught(self):
        policy = self.policy("RotationRole", "secret-key")
        policy["PolicyDocument"]["Statement"][0]["Resource"] = "*"
        self.assertCaught(iam_problems(self.t), "Resource '*' for ['kms:Decrypt', 'kms:GenerateDataKey']")

    def test_rds_on_every_database_is_caught(self):
        policy = self.policy("RotationRole", "database-endpoint")
        policy["PolicyDocument"]["Statement"][0]["Resource"] = {
            "Fn::Sub": "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:db:*"
        }
        self.assertCaught(iam_problems(self.t), "is not the secret")

    def test_unrelated_service_is_caught(self):
        st = self.policy("ItemsApiRole", "logs")["PolicyDocument"]["Statement"][0]
        st["Action"].append("s3:GetObject")
        self.assertCaught(iam_problems(self.t), "s3:GetObject")

    def test_managed_policy_is_caught(self):
        self.res["RotationRole"]["Properties"]["ManagedPolicyArns"] = [
            "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
        ]
        self.assertCaught(iam_problems(self.t), "managed policies")

    def test_sam_generated_role_is_caught(self):
        props = self.res["ItemsApiFunction"]["Properties"]
        del props["Role"]
        props["Policies"] = ["AWSSecretsManagerGetSecretValuePolicy"]
        self.assertCaught(iam_problems(self.t), "SAM Policies")

    # IAM: the blind spots of issue 16 (each passed the checks before they walked every resource,
    # every Fn::If and every statement shape)
    def test_statement_hidden_in_fn_if_is_caught(self):
        doc = self.policy("ItemsApiRole", "logs")["PolicyDocument"]
        star = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        doc["Statement"].append({"Fn::If": ["HasSecretKmsKey", star, {"Ref": "AWS::NoValue"}]})
        problems = iam_problems(self.t)
        self.assertCaught(problems, "wildcard action *")
        self.assertCaught(problems, "Resource '*' for ['*']")

    def test_policy_document_hidden_in_fn_if_is_caught(self):
        policy = self.policy("RotationRole", "logs")
        doc = policy["PolicyDocument"]
        wide = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
        policy["PolicyDocument"] = {"Fn::If": ["AlternatingUsers", wide, doc]}
        self.assertCaught(iam_problems(self.t), "Resource '*' for ['s3:GetObject']")

    def test_whole_policy_list_in_fn_if_is_caught(self):
        props = self.res["RotationRole"]["Properties"]
        wide = [{"PolicyName": "x", "PolicyDocument": {"Statement": {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}}}]
        props["Policies"] = {"Fn::If": ["HasAlarmTopic", wide, props["Policies"]]}
        self.assertCaught(iam_problems(self.t), "Resource '*' for ['iam:PassRole']")

    def test_statement_of_unknown_shape_is_caught(self):
        doc = self.policy("ItemsApiRole", "logs")["PolicyDocument"]
        doc["Statement"].append({"Fn::Select": [0, [{"Effect": "Allow", "Action": "*", "Resource": "*"}]]})
        self.assertCaught(iam_problems(self.t), "statement of an unknown shape")

    def test_action_from_a_parameter_is_caught(self):
        st = self.policy("ItemsApiRole", "logs")["PolicyDocument"]["Statement"][0]
        st["Action"] = {"Ref": "ExcludeCharacters"}
        self.assertCaught(iam_problems(self.t), "action of an unknown shape")

    def test_not_action_is_caught(self):
        st = self.policy("ItemsApiRole", "logs")["PolicyDocument"]["Statement"][0]
        st["NotAction"] = st.pop("Action")
        self.assertCaught(iam_problems(self.t), "['NotAction'] in a statement")

    def test_principal_in_an_identity_policy_is_caught(self):
        st = self.policy("ItemsApiRole", "logs")["PolicyDocument"]["Statement"][0]
        st["Principal"] = "*"
        self.assertCaught(iam_problems(self.t), "['Principal'] in a statement")

    def test_unknown_effect_is_caught(self):
        st = self.policy("ItemsApiRole", "logs")["PolicyDocument"]["Statement"][0]
        st["Effect"] = {"Fn::If": ["HasAlarmTopic", "Allow", "Deny"]}
        self.assertCaught(iam_problems(self.t), "neither Allow nor Deny")

    def test_inline_policy_resources_are_caught(self):
        star = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        cases = {
            "AWS::IAM::RolePolicy": {"RoleName": {"Ref": "ItemsApiRole"}, "PolicyName": "x", "PolicyDocument": star},
            "AWS::IAM::Policy": {"Roles": [{"Ref": "ItemsApiRole"}], "PolicyName": "x", "PolicyDocument": star},
            "AWS::IAM::ManagedPolicy": {"Roles": [{"Ref": "ItemsApiRole"}], "PolicyDocument": star},
            "AWS::IAM::UserPolicy": {"UserName": "someone", "PolicyName": "x", "PolicyDocument": star},
        }
        for kind, props in cases.items():
            with self.subTest(kind=kind):
                self.setUp()
                self.add("Extra", kind, props)
                self.assertCaught(iam_problems(self.t), f"Extra: {kind} is not expected")

    def test_secret_resource_policy_open_to_everyone_is_caught(self):
        self.add("SecretPolicy", "AWS::SecretsManager::ResourcePolicy", {
            "SecretId": {"Ref": "ExistingSecretArn"},
            "ResourcePolicy": {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]},
        })
        self.assertCaught(iam_problems(self.t), "SecretPolicy: AWS::SecretsManager::ResourcePolicy is not expected")

    def test_unknown_policy_bearing_resource_is_caught(self):
        self.add("Queue", "AWS::SQS::Queue", {"RedrivePolicy": {}})  # no policy: fine
        self.add("Repo", "AWS::ECR::Repository", {"RepositoryPolicyText": {}, "LifecyclePolicy": {}})
        self.add("Domain", "AWS::OpenSearchService::Domain", {"AccessPolicies": {"Statement": []}})
        problems = iam_problems(self.t)
        self.assertCaught(problems, "Domain: AWS::OpenSearchService::Domain carries ['AccessPolicies']")
        self.assertFalse(any(p.startswith("Queue") for p in problems), problems)

    def test_trust_policy_open_to_any_account_is_caught(self):
        st = self.res["RotationRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        st["Principal"] = {"AWS": "*"}
        self.assertCaught(iam_problems(self.t), "RotationRole trust policy: Principal must be the service lambda.amazonaws.com")

    def test_trust_policy_with_a_second_service_is_caught(self):
        st = self.res["ItemsApiRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        st["Principal"] = {"Service": ["lambda.amazonaws.com", "ec2.amazonaws.com"]}
        self.assertCaught(iam_problems(self.t), "ItemsApiRole trust policy: Principal must be the service lambda.amazonaws.com alone")

    def test_permissions_boundary_or_managed_policy_on_a_role_is_caught(self):
        self.res["ItemsApiRole"]["Properties"]["PermissionsBoundary"] = "arn:aws:iam::aws:policy/AdministratorAccess"
        self.assertCaught(iam_problems(self.t), "PermissionsBoundary is not expected on a role")

    def test_sam_policy_template_is_caught(self):
        props = self.res["RotationFunction"]["Properties"]
        props["Policies"] = [{"SecretsManagerRotationPolicy": {"FunctionName": "x", "SecretArn": "*"}}]
        self.assertCaught(iam_problems(self.t), "RotationFunction: use the template's own Role, not SAM Policies")

    def test_function_with_a_foreign_role_is_caught(self):
        self.res["ItemsApiFunction"]["Properties"]["Role"] = {"Fn::GetAtt": ["RotationRole", "Arn"]}
        self.assertCaught(iam_problems(self.t), "ItemsApiFunction: Role must be this template's ItemsApiRole")

    def test_function_url_is_caught(self):
        self.res["ItemsApiFunction"]["Properties"]["FunctionUrlConfig"] = {"AuthType": "NONE"}
        self.assertCaught(iam_problems(self.t), "function URL")

    def test_event_that_grants_a_new_invoker_is_caught(self):
        events = self.res["RotationFunction"]["Properties"].setdefault("Events", {})
        events["Bucket"] = {"Type": "S3", "Properties": {"Bucket": "b", "Events": "s3:ObjectCreated:*"}}
        self.assertCaught(iam_problems(self.t), "RotationFunction/Bucket: a SAM event (S3)")
        events["Api"] = {"Type": "HttpApi", "Properties": {}}
        self.assertCaught(iam_problems(self.t), "RotationFunction/Api: a SAM event (HttpApi)")

    def test_unexpected_custom_resource_is_caught(self):
        self.add("Anything", "Custom::Anything", {"ServiceToken": {"Fn::GetAtt": ["RotationFunction", "Arn"]}})
        self.assertCaught(iam_problems(self.t), "Anything: custom resource Custom::Anything")

    def test_permission_open_to_everyone_is_caught(self):
        self.add("OpenInvoke", "AWS::Lambda::Permission", {
            "FunctionName": {"Fn::GetAtt": ["RotationFunction", "Arn"]}, "Action": "lambda:InvokeFunction", "Principal": "*",
        })
        self.assertCaught(permission_problems(self.t), "OpenInvoke: Principal \"*\" may not invoke anything")

    def test_permission_for_a_function_url_is_caught(self):
        props = self.res["RotationInvokePermission"]["Properties"]
        props["FunctionUrlAuthType"] = "NONE"
        self.assertCaught(permission_problems(self.t), "FunctionUrlAuthType is not expected")

    def test_secrets_manager_invoking_the_api_is_caught(self):
        props = self.res["RotationInvokePermission"]["Properties"]
        props["FunctionName"] = {"Fn::GetAtt": ["ItemsApiFunction", "Arn"]}
        self.assertCaught(permission_problems(self.t), "may invoke only RotationFunction")

    def test_s3_endpoint_open_to_all_of_s3_is_caught(self):
        st = self.res["S3GatewayEndpoint"]["Properties"]["PolicyDocument"]["Statement"][0]
        st["Action"] = ["s3:PutObject", "s3:GetObject"]
        self.assertCaught(iam_problems(self.t), "only s3:PutObject to CloudFormation's response bucket")
        st["Action"] = "s3:PutObject"
        st["Resource"] = "*"
        self.assertCaught(iam_problems(self.t), "only s3:PutObject to CloudFormation's response bucket")

    def test_s3_endpoint_without_a_policy_is_caught(self):
        del self.res["S3GatewayEndpoint"]["Properties"]["PolicyDocument"]
        self.assertCaught(iam_problems(self.t), "a gateway endpoint without a policy")

    # the readers of the Rust code fail instead of falling back
    def test_readers_fail_when_the_code_has_no_list(self):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as d:
            for crate in ("rotation", "db-credentials"):
                (Path(d) / "crates" / crate / "src").mkdir(parents=True)
                (Path(d) / "crates" / crate / "src" / "lib.rs").write_text("pub const OTHER: [&str; 1] = [\"X\"];\n")
            (Path(d) / "crates" / "db-credentials" / "src" / "metric.rs").write_text("// moved\n")
            for reader in (known_rotation_vars, known_api_vars, emitted_metrics):
                with self.subTest(reader=reader.__name__), self.assertRaises(ReaderFoundNothing):
                    reader(Path(d))

    # per deployment
    def test_master_secret_only_under_alternating_users_is_caught(self):
        # The bug of issue 10: single-user's fallback to the master met AccessDenied.
        policies = self.res["RotationRole"]["Properties"]["Policies"]
        i = next(i for i, p in enumerate(policies) if "Fn::If" in p and p["Fn::If"][0] == "HasExistingMasterSecret")
        policies[i]["Fn::If"][0] = "AlternatingUsers"
        problems = grant_problems(scenario(self.t, "mode 2, single-user with a master"))
        self.assertCaught(problems, "RotationRole may do [] on the master, needs ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue']")

    def test_api_reading_the_master_secret_is_caught(self):
        st = self.policy("ItemsApiRole", "database-secret")["PolicyDocument"]["Statement"][0]
        st["Resource"] = [st["Resource"], {"Fn::If": ["CreateDatabase", {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}, {"Ref": "AWS::NoValue"}]}]
        self.assertCaught(grant_problems(scenario(self.t, "mode 1")), "ItemsApiRole may do ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'] on the master, needs []")
        self.assertCaught(iam_problems(self.t), "not allowed on the master for this role")

    def test_api_given_the_master_secret_is_caught(self):
        env = self.res["ItemsApiFunction"]["Properties"]["Environment"]["Variables"]
        env["DB_SECRET_ARN"] = {"Fn::If": ["CreateDatabase", {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}, {"Ref": "ExistingSecretArn"}]}
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1")), "not the application secret")

    def test_kms_grant_left_on_without_a_key_is_caught(self):
        policies = self.res["RotationRole"]["Properties"]["Policies"]
        i = next(i for i, p in enumerate(policies) if "Fn::If" in p and p["Fn::If"][1].get("PolicyName") == "secret-key")
        policies[i]["Fn::If"][0] = "CreateDatabase"
        problems = grant_problems(scenario(self.t, "mode 1"))
        self.assertTrue(any("RotationRole may do ['kms:Decrypt', 'kms:GenerateDataKey'] on the other" in p for p in problems), problems)

    def test_single_user_in_mode_1_is_caught(self):
        env = self.res["RotationFunction"]["Properties"]["Environment"]["Variables"]
        env["ROTATION_STRATEGY"] = {"Ref": "RotationStrategy"}
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1")), "ROTATION_STRATEGY is auto, expected alternating-users")

    def test_master_password_in_the_template_is_caught(self):
        db = self.res["Database"]["Properties"]
        del db["ManageMasterUserPassword"]
        db["MasterUserPassword"] = "{{resolve:secretsmanager:x:SecretString:password}}"
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1")), "ManageMasterUserPassword")

    def test_missing_s3_path_is_caught(self):
        groups = self.res["RotationFunction"]["Properties"]["VpcConfig"]["SecurityGroupIds"]
        groups.pop()
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1")), "may not reach S3")
        del self.res["S3GatewayEndpoint"]
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1")), "no S3 gateway endpoint")

    def test_rule_removed_is_caught(self):
        del self.t["Rules"]["StackDatabaseRotatesWithAlternatingUsers"]
        self.assertEqual(scenario(self.t, {"RotationStrategy": "single-user"}).rule_failures(), [])

    # the application role (custom resource)
    def test_database_role_with_the_master_secret_is_caught(self):
        self.res["AppDatabaseRole"]["Properties"]["SecretId"] = {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}
        self.assertCaught(database_role_problems(self.t), "SecretId must be the application secret")

    def test_database_role_with_an_extra_property_is_caught(self):
        self.res["AppDatabaseRole"]["Properties"]["MasterSecretArn"] = {"Ref": "MasterSecretArn"}
        self.assertCaught(database_role_problems(self.t), "properties must be exactly")

    def test_database_role_served_by_another_function_is_caught(self):
        self.res["AppDatabaseRole"]["Properties"]["ServiceToken"] = {"Fn::GetAtt": ["ItemsApiFunction", "Arn"]}
        self.assertCaught(database_role_problems(self.t), "ServiceToken must be the rotation function")

    def test_unbounded_service_timeout_is_caught(self):
        del self.res["AppDatabaseRole"]["Properties"]["ServiceTimeout"]
        problems = database_role_problems(self.t)
        self.assertCaught(problems, "ServiceTimeout must bound the wait")
        self.res["AppDatabaseRole"]["Properties"]["ServiceTimeout"] = 3600
        self.assertCaught(database_role_problems(self.t), "not 3600")

    def test_database_role_before_the_attachment_is_caught(self):
        self.res["AppDatabaseRole"]["DependsOn"] = ["RotationNetworkReady"]
        self.assertCaught(database_role_problems(self.t), "must come after AppSecretAttachment")

    def test_database_role_before_the_network_is_caught(self):
        self.res["AppDatabaseRole"]["DependsOn"] = ["AppSecretAttachment"]
        self.assertCaught(database_role_problems(self.t), "must wait for the network")

    def test_database_role_dropped_on_delete_is_caught(self):
        del self.res["AppDatabaseRole"]["DeletionPolicy"]
        self.assertCaught(database_role_problems(self.t), "DeletionPolicy must be Retain")

    def test_schedule_before_the_database_role_is_caught(self):
        self.res["DatabaseSecretRotationSchedule"]["DependsOn"].remove("AppDatabaseRoleReady")
        self.assertCaught(schedule_problems(self.t), "must wait for AppDatabaseRole")

    def test_missing_database_role_is_caught(self):
        del self.res["AppDatabaseRole"]
        self.assertCaught(database_role_problems(self.t), "expected one Custom::DatabaseRole")
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1")), "no application role is created")

    # retention (issue 17.4)
    def test_instance_deleted_with_the_stack_is_caught(self):
        del self.res["Database"]["DeletionPolicy"]
        self.assertCaught(retention_problems(self.t), "Database: DeletionPolicy must be Snapshot")

    def test_instance_replaced_without_snapshot_is_caught(self):
        self.res["Database"]["UpdateReplacePolicy"] = "Delete"
        self.assertCaught(retention_problems(self.t), "Database: UpdateReplacePolicy must be Snapshot")

    def test_secret_deleted_with_the_stack_is_caught(self):
        self.res["AppSecret"]["DeletionPolicy"] = "Delete"
        self.assertCaught(retention_problems(self.t), "AppSecret: DeletionPolicy must be Retain")

    def test_deletion_protection_off_by_default_is_caught(self):
        self.t["Parameters"]["DatabaseDeletionProtection"]["Default"] = "false"
        self.assertCaught(retention_problems(self.t), "DeletionProtection must follow DatabaseDeletionProtection")

    def test_new_unretained_database_is_caught(self):
        self.add("Cluster", "AWS::RDS::DBCluster", {"Engine": "aurora-postgresql"})
        problems = retention_problems(self.t)
        self.assertCaught(problems, "Cluster: DeletionPolicy must be Snapshot")
        self.assertCaught(stack_policy_problems(self.t, json.loads(STACK_POLICY.read_text())), "deny Update:Delete and Update:Replace of Cluster")

    def test_stack_policy_without_the_database_is_caught(self):
        policy = json.loads(STACK_POLICY.read_text())
        for st in policy["Statement"]:
            if st["Effect"] == "Deny":
                st["Resource"] = ["LogicalResourceId/AppSecret"]
        self.assertCaught(stack_policy_problems(self.t, policy), "deny Update:Delete and Update:Replace of Database")

    def test_stack_policy_that_allows_replacement_is_caught(self):
        policy = json.loads(STACK_POLICY.read_text())
        for st in policy["Statement"]:
            if st["Effect"] == "Deny":
                st["Action"] = ["Update:Delete"]
        self.assertCaught(stack_policy_problems(self.t, policy), "deny Update:Delete and Update:Replace of Database")

    def test_stack_policy_that_blocks_every_update_is_caught(self):
        policy = json.loads(STACK_POLICY.read_text())
        policy["Statement"] = [st for st in policy["Statement"] if st["Effect"] == "Deny"]
        self.assertCaught(stack_policy_problems(self.t, policy), "must allow other updates")

    # RDS Proxy (issue 13)
    def test_proxy_without_iam_auth_is_caught(self):
        self.res["DatabaseProxy"]["Properties"]["Auth"][0]["IAMAuth"] = "DISABLED"
        self.assertCaught(proxy_problems(self.t), "IAMAuth must be REQUIRED")

    def test_proxy_without_tls_is_caught(self):
        self.res["DatabaseProxy"]["Properties"]["RequireTLS"] = False
        self.assertCaught(proxy_problems(self.t), "RequireTLS true")

    def test_proxy_logging_in_as_the_master_is_caught(self):
        self.res["DatabaseProxy"]["Properties"]["Auth"][0]["SecretArn"] = {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}
        self.assertCaught(proxy_problems(self.t), "never the master's")

    def test_proxy_role_reading_the_master_is_caught(self):
        st = self.policy("ProxyRole", "application-secret")["PolicyDocument"]["Statement"][0]
        st["Resource"] = [st["Resource"], {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}]
        self.assertCaught(iam_problems(self.t), "ProxyRole/application-secret: ['secretsmanager:GetSecretValue'] not allowed on the master")

    def test_proxy_role_writing_the_secret_is_caught(self):
        st = self.policy("ProxyRole", "application-secret")["PolicyDocument"]["Statement"][0]
        st["Action"] = ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]
        self.assertCaught(iam_problems(self.t), "ProxyRole/application-secret: ['secretsmanager:PutSecretValue'] not allowed")

    def test_proxy_role_trusting_lambda_is_caught(self):
        self.res["ProxyRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] = {"Service": "lambda.amazonaws.com"}
        self.assertCaught(iam_problems(self.t), "ProxyRole trust policy: Principal must be the service rds.amazonaws.com")

    def test_api_connecting_as_any_user_is_caught(self):
        st = self.policy("ItemsApiRole", "proxy-connect")["PolicyDocument"]["Statement"][0]
        st["Resource"] = {"Fn::Sub": "arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:*/*"}
        self.assertCaught(iam_problems(self.t), "ItemsApiRole/proxy-connect: resource")

    def test_api_keeping_the_secret_behind_a_proxy_is_caught(self):
        policies = self.res["ItemsApiRole"]["Properties"]["Policies"]
        i = next(i for i, p in enumerate(policies) if "Fn::If" in p and p["Fn::If"][0] == "ApiReadsSecret")
        policies[i] = policies[i]["Fn::If"][1]
        self.assertCaught(grant_problems(scenario(self.t, "mode 1, proxy")), "ItemsApiRole may do ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'] on the secret, needs []")
        env = self.res["ItemsApiFunction"]["Properties"]["Environment"]["Variables"]
        env["DB_SECRET_ARN"] = {"Ref": "AppSecretAttachment"}
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1, proxy")), "yet DB_SECRET_ARN is set")

    def test_api_without_iam_auth_behind_a_proxy_is_caught(self):
        del self.res["ItemsApiFunction"]["Properties"]["Environment"]["Variables"]["DB_IAM_AUTH"]
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1, proxy")), "items-api's DB_IAM_AUTH is null, expected \"true\"")

    def test_proxy_verified_with_the_rds_bundle_is_caught(self):
        self.res["ItemsApiFunction"]["Properties"]["Environment"]["Variables"]["DB_SSL_ROOT_CERT"] = "/opt/global-bundle.pem"
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1, proxy")), "DB_SSL_ROOT_CERT")

    def test_rotation_through_the_proxy_is_caught(self):
        env = self.res["RotationFunction"]["Properties"]["Environment"]["Variables"]
        env["DATABASE_HOST"] = {"Fn::If": ["WithRdsProxy", {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]}, {"Ref": "AWS::NoValue"}]}
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1, proxy")), "never through DATABASE_HOST")

    def test_alternating_users_behind_a_proxy_is_caught(self):
        env = self.res["RotationFunction"]["Properties"]["Environment"]["Variables"]
        env["ROTATION_STRATEGY"] = {"Fn::If": ["CreateDatabase", "alternating-users", "single-user"]}
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1, proxy")), "ROTATION_STRATEGY is alternating-users, expected single-user")

    def test_missing_proxy_rule_is_caught(self):
        del self.t["Rules"]["ProxyRefusesAlternatingUsers"]
        self.assertCaught(proxy_problems(self.t), "no Rule refuses RDS Proxy with alternating users")

    def test_proxy_rule_that_does_not_say_why_is_caught(self):
        self.t["Rules"]["ProxyRefusesAlternatingUsers"]["Assertions"][0]["AssertDescription"] = "not supported"
        self.assertCaught(proxy_problems(self.t), "must say why")

    def test_proxy_on_another_target_is_caught(self):
        self.res["DatabaseProxyTargetGroup"]["Properties"]["DBClusterIdentifiers"] = ["other"]
        self.assertCaught(proxy_problems(self.t), "the proxy's target is the instance this stack creates")

    def test_proxy_created_without_the_parameter_is_caught(self):
        for r in ("DatabaseProxy", "DatabaseProxyTargetGroup", "ProxyRole", "ProxySecurityGroup", "DatabaseFromProxyIngress", "FunctionToProxyEgress"):
            self.res[r]["Condition"] = "CreateDatabase"
        self.assertCaught(wiring_problems(scenario(self.t, "mode 1")), "RDS Proxy created without UseRdsProxy")
        self.assertCaught(proxy_problems(self.t), "only with UseRdsProxy")

    # parameters
    def test_ungrouped_parameter_is_caught(self):
        groups = self.t["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        for g in groups:
            if "UseRdsProxy" in g["Parameters"]:
                g["Parameters"].remove("UseRdsProxy")
        self.assertCaught(parameter_problems(self.t), "UseRdsProxy: must sit in exactly one ParameterGroup, not 0")

    def test_undescribed_parameter_is_caught(self):
        del self.t["Parameters"]["ApiThrottleBurst"]["Description"]
        self.assertCaught(parameter_problems(self.t), "ApiThrottleBurst: needs a description")

    def test_password_parameter_is_caught(self):
        self.t["Parameters"]["DatabaseMasterPassword"] = {"Type": "String", "NoEcho": True, "Default": "Chang3-me!", "Description": "the master password of the new instance"}
        problems = parameter_problems(self.t)
        self.assertCaught(problems, "DatabaseMasterPassword: a default that looks like a credential")
        self.assertCaught(problems, "NoEcho")

    # aliases
    def test_schedule_on_the_unqualified_function_is_caught(self):
        self.res["DatabaseSecretRotationSchedule"]["Properties"]["RotationLambdaARN"] = {"Fn::GetAtt": ["RotationFunction", "Arn"]}
        self.assertCaught(alias_problems(self.t), "DatabaseSecretRotationSchedule: RotationLambdaARN must be RotationFunction's alias")

    def test_permission_not_on_the_alias_is_caught(self):
        # Secrets Manager would invoke the alias, which this permission does not cover.
        self.res["RotationInvokePermission"]["Properties"]["FunctionName"] = {"Fn::GetAtt": ["RotationFunction", "Arn"]}
        self.assertCaught(alias_problems(self.t), "RotationInvokePermission: FunctionName must be RotationFunction's alias")
        self.res["ItemsApiInvokePermission"]["Properties"]["FunctionName"] = {"Ref": "ItemsApiFunction"}
        self.assertCaught(alias_problems(self.t), "ItemsApiInvokePermission: FunctionName must be ItemsApiFunction's alias")

    def test_integration_on_the_unqualified_function_is_caught(self):
        self.res["ItemsApiIntegration"]["Properties"]["IntegrationUri"] = {"Fn::GetAtt": ["ItemsApiFunction", "Arn"]}
        self.assertCaught(alias_problems(self.t), "ItemsApiIntegration: IntegrationUri must be ItemsApiFunction's alias")

    def test_function_without_alias_is_caught(self):
        del self.res["RotationFunction"]["Properties"]["AutoPublishAlias"]
        self.assertCaught(alias_problems(self.t), "RotationFunction: AutoPublishAlias must be live")

    def test_sam_generated_permission_is_caught(self):
        events = self.res["ItemsApiFunction"]["Properties"].setdefault("Events", {})
        events["Direct"] = {"Type": "HttpApi", "Properties": {}}
        problems = sam_transform_problems(self.t)
        self.assertTrue(any(p.startswith("SAM adds") and "AWS::Lambda::Permission" in p for p in problems), problems)

    def test_sam_generated_role_from_policies_is_caught(self):
        props = self.res["RotationFunction"]["Properties"]
        del props["Role"]
        props["Policies"] = [{"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}]
        problems = sam_transform_problems(self.t)
        self.assertTrue(any(p.startswith("SAM adds RotationFunctionRole (AWS::IAM::Role)") for p in problems), problems)

    # invoke permission
    def test_permission_without_source_account_is_caught(self):
        del self.res["RotationInvokePermission"]["Properties"]["SourceAccount"]
        self.assertCaught(permission_problems(self.t), "SourceAccount")

    def test_missing_permission_is_caught(self):
        del self.res["RotationInvokePermission"]
        self.assertCaught(permission_problems(self.t), "no AWS::Lambda::Permission")

    # rotation schedule
    def test_schedule_pointing_at_the_api_is_caught(self):
        self.res["DatabaseSecretRotationSchedule"]["Properties"]["RotationLambdaARN"] = {
            "Fn::GetAtt": ["ItemsApiFunction", "Arn"]
        }
        self.assertCaught(schedule_problems(self.t), "RotationLambdaARN")

    def test_schedule_before_permission_is_caught(self):
        self.res["DatabaseSecretRotationSchedule"]["DependsOn"] = ["RotationNetworkReady"]
        self.assertCaught(schedule_problems(self.t), "DependsOn")

    # alarms
    def test_alarm_on_a_metric_the_api_does_not_emit_is_caught(self):
        self.res["ApiAuthFailuresUnrecoveredAlarm"]["Properties"]["MetricName"] = "AuthFailureUnrecovered"
        problems = alarm_problems(self.t, emitted_metrics())
        self.assertCaught(problems, "emits no metric 'AuthFailureUnrecovered'")
        self.assertCaught(problems, "no alarm on items-api's AuthFailuresUnrecovered")

    def test_alarm_in_the_wrong_namespace_is_caught(self):
        self.res["ApiSecretFetchErrorsAlarm"]["Properties"]["Namespace"] = "items-api"
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "namespace 'items-api'")

    def test_alarm_with_the_wrong_dimension_is_caught(self):
        self.res["ApiSecretFetchErrorsAlarm"]["Properties"]["Dimensions"][0]["Name"] = "ServiceName"
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "dimensions")

    def test_missing_rotation_errors_alarm_is_caught(self):
        del self.res["RotationErrorsAlarm"]
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "no alarm on AWS/Lambda Errors of {\"Ref\": \"RotationFunction\"}")

    def test_each_new_api_alarm_is_required(self):
        for logical_id, metric in (("ApiServiceUnavailableAlarm", "ServiceUnavailable"), ("ApiFailoversAlarm", "FailoversDetected"), ("ApiConnectionsExhaustedAlarm", "ConnectionsExhausted")):
            with self.subTest(metric=metric):
                self.setUp()
                del self.res[logical_id]
                self.assertCaught(alarm_problems(self.t, emitted_metrics()), f"no alarm on items-api's {metric}")

    def test_metric_dropped_from_the_code_is_caught(self):
        metrics = emitted_metrics() - {"FailoversDetected"}
        self.assertCaught(alarm_problems(self.t, metrics), "ApiFailoversAlarm: items-api emits no metric 'FailoversDetected'")

    def test_each_aws_alarm_is_required(self):
        for logical_id in ("ItemsApiThrottlesAlarm", "HttpApi5xxAlarm", "HttpApiLatencyAlarm", "DatabaseCpuAlarm", "DatabaseFreeStorageAlarm", "DatabaseConnectionsAlarm"):
            with self.subTest(alarm=logical_id):
                self.setUp()
                del self.res[logical_id]
                self.assertCaught(alarm_problems(self.t, emitted_metrics()), "no alarm on AWS/")

    def test_alarm_without_runbook_section_is_caught(self):
        props = self.res["ApiFailoversAlarm"]["Properties"]
        props["AlarmDescription"] = {"Fn::Sub": "the database failed over"}
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "ApiFailoversAlarm: the description must name its runbook section")

    def test_alarm_naming_a_missing_runbook_section_is_caught(self):
        props = self.res["ApiConnectionsExhaustedAlarm"]["Properties"]
        props["AlarmDescription"]["Fn::Sub"] = props["AlarmDescription"]["Fn::Sub"].replace("#too-many-connections", "#out-of-connections")
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "docs/rotation-runbook.md has no section #out-of-connections")

    def test_runbook_section_removed_is_caught(self):
        anchors = github_anchors(RUNBOOK) - {"the-database-failed-over"}
        self.assertCaught(alarm_problems(self.t, emitted_metrics(), anchors), "ApiFailoversAlarm: docs/rotation-runbook.md has no section #the-database-failed-over")

    def test_alarm_that_notifies_nobody_is_caught(self):
        del self.res["HttpApi5xxAlarm"]["Properties"]["AlarmActions"]
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "HttpApi5xxAlarm: AlarmActions must notify")
        self.assertCaught(notification_problems(scenario(self.t, "mode 1")), "HttpApi5xxAlarm notifies null")

    def test_5xx_alarm_on_another_api_is_caught(self):
        self.res["HttpApi5xxAlarm"]["Properties"]["Dimensions"][0]["Value"] = "abc123"
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "AWS/ApiGateway 5xx must be for ApiId")

    def test_latency_alarm_on_the_average_is_caught(self):
        props = self.res["HttpApiLatencyAlarm"]["Properties"]
        del props["ExtendedStatistic"]
        props["Statistic"] = "Average"
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "latency must be alarmed at p99, not Average")

    def test_fixed_connections_threshold_is_caught(self):
        self.res["DatabaseConnectionsAlarm"]["Properties"]["Threshold"] = 80
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "the threshold must be the parameter DatabaseConnectionsAlarmThreshold")

    def test_rds_alarm_in_mode_2_is_caught(self):
        del self.res["DatabaseCpuAlarm"]["Condition"]
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "DatabaseCpuAlarm: must have Condition CreateDatabase")

    def test_email_topic_created_beside_a_topic_arn_is_caught(self):
        self.res["AlarmTopic"]["Condition"] = "CreateDatabase"
        self.assertCaught(notification_problems(scenario(self.t, "mode 1, alarm topic")), "an alarm topic is created that nobody subscribes to")

    def test_silent_staging_output_is_caught(self):
        out = self.t["Outputs"]["AlarmNotifications"]["Value"]
        out["Fn::If"][2]["Fn::If"][2] = "CloudWatch"
        self.assertCaught(notification_problems(scenario(self.t, "staging, nobody notified")), "must say that nobody is notified")

    # environment and routes
    def test_misspelt_variable_is_caught(self):
        self.res["ItemsApiFunction"]["Properties"]["Environment"]["Variables"]["DB_SECRET_TLL_SECS"] = "60"
        self.assertCaught(environment_problems(self.t, known_api_vars(), known_rotation_vars()), "DB_SECRET_TLL_SECS")

    def test_misspelt_rotation_variable_is_caught(self):
        env = self.res["RotationFunction"]["Properties"]["Environment"]["Variables"]
        env["EXCLUDE_CHARACTER"] = env.pop("EXCLUDE_CHARACTERS")
        problems = environment_problems(self.t, known_api_vars(), known_rotation_vars())
        self.assertCaught(problems, "EXCLUDE_CHARACTER is not a variable")
        self.assertCaught(problems, "EXCLUDE_CHARACTERS is not set")

    def test_missing_route_is_caught(self):
        del self.res["HealthDbRoute"]
        self.assertCaught(route_problems(self.t), "GET /health/db is missing")

    def test_route_to_another_integration_is_caught(self):
        self.res["ListItemsRoute"]["Properties"]["Target"] = {"Fn::Sub": "integrations/${Other}"}
        self.assertCaught(route_problems(self.t), "ListItemsRoute: GET /items must go to ItemsApiIntegration")

    def test_extra_route_is_caught(self):
        self.res["AdminRoute"] = copy.deepcopy(self.res["HealthRoute"])
        self.res["AdminRoute"]["Properties"]["RouteKey"] = "GET /admin"
        self.assertCaught(route_problems(self.t), "GET /admin is not in the design")

    def test_sam_api_is_caught(self):
        self.add("OtherApi", "AWS::Serverless::HttpApi", {})
        self.assertCaught(route_problems(self.t), "OtherApi: AWS::Serverless::HttpApi is not expected")

    def test_open_health_db_is_caught(self):
        self.res["HealthDbRoute"]["Properties"]["AuthorizationType"] = "NONE"
        self.assertCaught(api_auth_problems(scenario(self.t, "mode 1")), "GET /health/db is authorized by NONE, expected AWS_IAM")

    def test_open_default_route_is_caught(self):
        del self.res["UnmatchedRoute"]["Properties"]["AuthorizationType"]
        self.assertCaught(api_auth_problems(scenario(self.t, "mode 1")), "$default is authorized by NONE, expected AWS_IAM")

    def test_jwt_route_without_the_authorizer_is_caught(self):
        del self.res["CreateItemRoute"]["Properties"]["AuthorizerId"]
        self.assertCaught(api_auth_problems(scenario(self.t, "mode 1, JWT")), "POST /items names no JWT authorizer")

    def test_jwt_authorizer_without_audience_is_caught(self):
        del self.res["JwtAuthorizer"]["Properties"]["JwtConfiguration"]["Audience"]
        self.assertCaught(api_auth_problems(scenario(self.t, "mode 1, JWT")), "does not check JwtIssuer and JwtAudience")

    def test_iam_chosen_but_routes_open_is_caught(self):
        for route in resources_of(self.t, "AWS::ApiGatewayV2::Route"):
            self.res[route]["Properties"]["AuthorizationType"] = {"Fn::If": ["ApiAuthJwt", "JWT", "NONE"]}
        self.assertCaught(api_auth_problems(scenario(self.t, "mode 1")), "GET /items is authorized by NONE, expected AWS_IAM")

    def test_closed_health_is_caught(self):
        self.res["HealthRoute"]["Properties"]["AuthorizationType"] = "AWS_IAM"
        self.assertCaught(api_auth_problems(scenario(self.t, "mode 1")), "GET /health is authorized by AWS_IAM, expected NONE")

    def test_unthrottled_stage_is_caught(self):
        del self.res["HttpApiStage"]["Properties"]["DefaultRouteSettings"]
        self.assertCaught(api_auth_problems(scenario(self.t, "mode 1")), "must throttle")

    def test_unreserved_concurrency_is_caught(self):
        del self.res["ItemsApiFunction"]["Properties"]["ReservedConcurrentExecutions"]
        self.assertCaught(api_auth_problems(scenario(self.t, "mode 1")), "concurrency must be reserved")

    def test_api_permission_for_any_api_is_caught(self):
        self.res["ItemsApiInvokePermission"]["Properties"]["SourceArn"] = {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:*:*/*"}
        self.assertCaught(permission_problems(self.t), "SourceArn must be this stack's HTTP API")
        del self.res["ItemsApiInvokePermission"]["Properties"]["SourceArn"]
        self.assertCaught(permission_problems(self.t), "SourceArn must be this stack's HTTP API")


if __name__ == "__main__":
    unittest.main()
