"""Structure checks on infra/template.yaml that cfn-lint cannot make: they need the workspace, or
they state this project's security rules.

* both functions build binaries this workspace has, with the Lambda build's vendored OpenSSL;
* IAM is least privilege, in every resource that can carry a policy: each role's statements name the
  secret, the master secret, the key, the database or the function's own log group, and '*' only for
  GetRandomPassword and the ENI actions Lambda needs in a VPC; optional grants sit behind the
  condition that needs them; trust policies name one service; nothing else (inline or managed
  policies, resource policies, function URLs, SAM policy templates) grants anything; a statement or
  document of a shape the checks do not know is a failure, never skipped;
* only Secrets Manager of this account may invoke the rotation function (SourceAccount);
* the rotation schedule points at the rotation function;
* the alarms watch metric names items-api emits, in its namespace and dimension;
* the functions' environment holds only variables the code reads, and the API has design section 7's routes.

Each check is a function returning a list of problems, so that every one of them is shown to fail on
a mutated copy of the template (class `ChecksCatchMistakes`). Run: `make test-infra`, or
`python3 -m unittest discover -s infra/tests -v` from the repository root.
"""

import copy
import re
import unittest

from cfn import ROOT, TEMPLATE, as_list, branches, condition_text, elements, is_if, is_intrinsic, load_template, resources_of, short
from workspace import (
    ReaderFoundNothing,
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
ALARMED_API_METRICS = {"AuthFailuresUnrecovered", "SecretFetchErrors"}

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
SECRETS = [{"Ref": "DatabaseSecret"}, {"Ref": "ExistingSecretArn"}]
MASTER_SECRETS = [{"Ref": "MasterSecretArn"}]
SECRET_KEY = {"Ref": "SecretKmsKeyArn"}
MASTER_KEY = {"Ref": "MasterSecretKmsKeyArn"}
ROLE_RULES = {
    "ItemsApiRole": {
        "secret": {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
        "master": set(),
        "key": {"kms:Decrypt"},
        "master-key": set(),
        "rds": RDS_ACTIONS,
    },
    "RotationRole": {
        "secret": {
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
        },
        "master": {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
        "key": {"kms:Decrypt", "kms:GenerateDataKey"},
        "master-key": {"kms:Decrypt"},
        "rds": RDS_ACTIONS,
    },
}
# The one service each role trusts, and the functions that use it.
ROLE_TRUST = {"ItemsApiRole": "lambda.amazonaws.com", "RotationRole": "lambda.amazonaws.com"}
FUNCTION_ROLES = {"ItemsApiFunction": "ItemsApiRole", "RotationFunction": "RotationRole"}
ROLE_KEYS = {"Description", "AssumeRolePolicyDocument", "Policies", "Path", "MaxSessionDuration", "Tags"}
IDENTITY_STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource", "Condition"}
TRUST_STATEMENT_KEYS = {"Sid", "Effect", "Principal", "Action", "Condition"}
# Who may invoke which function, and what must scope it (resource-based policy of the function).
INVOKERS = {"secretsmanager.amazonaws.com": "RotationFunction"}
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
# An optional permission must sit inside `Fn::If` on a condition whose definition mentions this.
CONDITION_NEEDS = {
    "master": "alternating-users",
    "key": "SecretKmsKeyArn",
    "master-key": "MasterSecretKmsKeyArn",
    "rds": "ResolveHostWithRdsApi",
}

# design §7
API_ROUTES = {
    ("GET", "/items"),
    ("POST", "/items"),
    ("GET", "/items/{id}"),
    ("PUT", "/items/{id}"),
    ("DELETE", "/items/{id}"),
    ("GET", "/health"),
    ("GET", "/health/db"),
}
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
    if isinstance(resource, dict) and isinstance(resource.get("Fn::Sub"), str):
        arn = resource["Fn::Sub"]
        if re.fullmatch(
            r"arn:\$\{AWS::Partition\}:rds:\$\{AWS::Region\}:\$\{AWS::AccountId\}:(db|cluster):\$\{DatabaseIdentifier\}",
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
                needle = CONDITION_NEEDS.get(what)
                if needle and not any(not c.startswith("!") and needle in condition_text(template, c) for c in rconds):
                    problems.append(f"{where}: the {what} permission must be conditional on {needle}")
    return problems


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
            if event.get("Type") != "HttpApi":
                problems.append(f"{logical_id}/{name}: event type {event.get('Type')} would grant a new invoker")
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
    handled = {"AWS::IAM::Role", "AWS::Serverless::Function", "AWS::Lambda::Permission"}
    for logical_id, r in res.items():
        kind = r.get("Type", "")
        if kind in FORBIDDEN_TYPES:
            problems.append(f"{logical_id}: {kind} is not expected; permissions live in the template's roles")
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
    """Whether `value` is Ref / GetAtt ...Arn of `logical_id`."""
    return value in ({"Ref": logical_id}, {"Fn::GetAtt": [logical_id, "Arn"]}, {"Fn::GetAtt": f"{logical_id}.Arn"})


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
        if props.get("SourceAccount") != {"Ref": "AWS::AccountId"}:
            problems.append(f"{logical_id}: SourceAccount must be this account (confused deputy)")
    if "secretsmanager.amazonaws.com" not in invokers_seen:
        problems.append("no AWS::Lambda::Permission lets secretsmanager.amazonaws.com invoke the rotation function")
    return problems


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
        expected_secret = {"Fn::If": ["CreateDatabase", {"Ref": "DatabaseSecretAttachment"}, {"Ref": "ExistingSecretArn"}]}
        if props.get("SecretId") != expected_secret:
            problems.append(f"{logical_id}: SecretId must be the database secret (through its attachment when created)")
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
    return problems


def alarm_problems(template, metrics):
    problems = []
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    seen_api, rotation_errors = set(), False
    for logical_id, alarm in alarms.items():
        props = alarm.get("Properties", {})
        ns, name, dims = props.get("Namespace"), props.get("MetricName"), props.get("Dimensions", [])
        if ns == "AWS/Lambda":
            if name == "Errors" and dims == [{"Name": "FunctionName", "Value": {"Ref": "RotationFunction"}}]:
                rotation_errors = True
            continue
        if ns != METRIC_NAMESPACE:
            problems.append(f"{logical_id}: namespace {ns!r}; items-api emits into {METRIC_NAMESPACE!r}")
            continue
        if name not in metrics:
            problems.append(f"{logical_id}: items-api emits no metric {name!r} (metric.rs has {sorted(metrics)})")
        if [d.get("Name") for d in dims] != METRIC_DIMENSIONS or dims[0].get("Value") != {"Ref": "ItemsApiFunction"}:
            problems.append(f"{logical_id}: dimensions must be FunctionName = the items-api function's name")
        seen_api.add(name)
        actions = props.get("AlarmActions")
        if actions != {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}:
            problems.append(f"{logical_id}: AlarmActions must notify the optional AlarmTopicArn")
    for missing in sorted(ALARMED_API_METRICS - seen_api):
        problems.append(f"no alarm on items-api's {missing}")
    if not rotation_errors:
        problems.append("no alarm on the rotation function's AWS/Lambda Errors")
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
    fn = resources_of(template, "AWS::Serverless::Function").get("ItemsApiFunction", {})
    routes = set()
    for event in fn.get("Properties", {}).get("Events", {}).values():
        if event.get("Type") == "HttpApi":
            p = event.get("Properties", {})
            routes.add((str(p.get("Method", "ANY")).upper(), p.get("Path", "$default")))
    return [f"HTTP API route {m} {p} is missing" for m, p in sorted(API_ROUTES - routes)]


def all_problems(template):
    return (
        binary_problems(template, workspace_binaries(), package_features(), cargo_lambda_build())
        + iam_problems(template)
        + permission_problems(template)
        + schedule_problems(template)
        + alarm_problems(template, emitted_metrics())
        + environment_problems(template, known_api_vars(), known_rotation_vars())
        + route_problems(template)
    )


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
        self.assertCaught(iam_problems(self.t), "Resource '*' for ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue'")

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
        i = next(i for i, p in enumerate(policies) if "Fn::If" in p and p["Fn::If"][1].get("PolicyName") == "master-secret")
        policies[i] = policies[i]["Fn::If"][1]
        self.assertCaught(iam_problems(self.t), "must be conditional on alternating-users")

    def test_unconditional_kms_is_caught(self):
        policies = self.res["ItemsApiRole"]["Properties"]["Policies"]
        i = next(i for i, p in enumerate(policies) if "Fn::If" in p and p["Fn::If"][1].get("PolicyName") == "secret-key")
        policies[i] = policies[i]["Fn::If"][1]
        self.assertCaught(iam_problems(self.t), "conditional on SecretKmsKeyArn")

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
        self.assertCaught(iam_problems(self.t), "RotationFunction/Bucket: event type S3")

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
        self.assertCaught(alarm_problems(self.t, emitted_metrics()), "rotation function's AWS/Lambda Errors")

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
        del self.res["ItemsApiFunction"]["Properties"]["Events"]["HealthDb"]
        self.assertCaught(route_problems(self.t), "GET /health/db")


if __name__ == "__main__":
    unittest.main()
