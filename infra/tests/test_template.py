"""Structure checks on infra/template.yaml that cfn-lint cannot make: they need the workspace.

* both functions build binaries this workspace has, with the Lambda build's vendored OpenSSL;
* IAM is least privilege: every statement's resources are the secret, the master secret, the key,
  the database or the function's own log group, and '*' only for GetRandomPassword and the ENI
  actions Lambda needs in a VPC; optional permissions sit behind the condition that needs them;
* Secrets Manager may invoke the rotation function only for this account (SourceAccount);
* the rotation schedule points at the rotation function;
* the alarms watch metric names items-api emits, in its namespace and dimension;
* the functions' environment holds only variables the code reads, and the API has design §7's routes.

Each check is a function returning a list of problems, so that every one of them is shown to fail on
a mutated copy of the template (class `ChecksCatchMistakes`). Run: `make test-infra`, or
`python3 -m unittest discover -s infra/tests -v` from the repository root.
"""

import copy
import json
import re
import tomllib
import unittest
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"

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
SECRET = {"Fn::If": ["CreateDatabase", {"Ref": "DatabaseSecret"}, {"Ref": "ExistingSecretArn"}]}
MASTER_SECRET = {"Ref": "MasterSecretArn"}
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


# ------------------------------------------------------------------ reading the template and the code


def load_template(path=TEMPLATE):
    """The template as plain JSON types, short-form intrinsics expanded by cfn-lint's decoder."""
    template, matches = decode(str(path))
    if matches:
        raise AssertionError(f"{path} does not decode: {[str(m) for m in matches]}")
    return json.loads(json.dumps(template))


def workspace_binaries(root=ROOT):
    """Binary name -> package name for every member of the workspace (explicit [[bin]] and the
    implicit src/main.rs / src/bin/*.rs ones)."""
    members = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]
    bins = {}
    for member in members:
        manifest = tomllib.loads((root / member / "Cargo.toml").read_text())
        package = manifest["package"]["name"]
        explicit = manifest.get("bin", [])
        for b in explicit:
            bins[b["name"]] = package
        if manifest["package"].get("autobins", True):
            paths = {b.get("path") for b in explicit}
            if (root / member / "src" / "main.rs").exists() and "src/main.rs" not in paths:
                bins.setdefault(package, package)
            for f in sorted((root / member / "src" / "bin").glob("*.rs")):
                bins.setdefault(f.stem, package)
    return bins


def package_features(root=ROOT):
    """Package name -> its [features] table."""
    members = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]
    out = {}
    for member in members:
        manifest = tomllib.loads((root / member / "Cargo.toml").read_text())
        out[manifest["package"]["name"]] = manifest.get("features", {})
    return out


def cargo_lambda_build(root=ROOT):
    """The [build] table every `cargo lambda build` (so `sam build`) reads from CargoLambda.toml."""
    path = root / "CargoLambda.toml"
    if not path.exists():
        return {}
    return tomllib.loads(path.read_text()).get("build", {})


def emitted_metrics(root=ROOT):
    """Metric names items-api emits, from crates/db-credentials/src/metric.rs."""
    text = (root / "crates" / "db-credentials" / "src" / "metric.rs").read_text()
    return set(re.findall(r'pub const [A-Z_]+: &str = "([A-Za-z]+)";', text))


def known_api_vars(root=ROOT):
    """KNOWN_VARS of crates/db-credentials/src/config.rs: every variable the API reads."""
    text = (root / "crates" / "db-credentials" / "src" / "config.rs").read_text()
    block = re.search(r"pub const KNOWN_VARS: &\[&str\] = &\[(.*?)\];", text, re.S)
    if not block:
        raise AssertionError("KNOWN_VARS not found in config.rs")
    return set(re.findall(r'"([A-Z_]+)"', block.group(1)))


def known_rotation_vars(root=ROOT):
    """Variables the rotation function reads: the `VARS` lists of crates/rotation/src/config.rs and
    password.rs, or ROTATION_VARS while the crate does not have them yet."""
    found = set()
    for name in ("config.rs", "password.rs"):
        path = root / "crates" / "rotation" / "src" / name
        text = path.read_text() if path.exists() else ""
        block = re.search(r"pub const VARS: \[&str; \d+\] = \[(.*?)\];", text, re.S)
        if block:
            found |= set(re.findall(r'"([A-Z_]+)"', block.group(1)))
    return found or set(ROTATION_VARS)


def resources_of(template, type_):
    return {k: v for k, v in template.get("Resources", {}).items() if v.get("Type") == type_}


def as_list(value):
    return value if isinstance(value, list) else [value]


def refers_to(value, logical_id):
    """Whether `value` is Ref / GetAtt ...Arn of `logical_id`."""
    return value in ({"Ref": logical_id}, {"Fn::GetAtt": [logical_id, "Arn"]}, {"Fn::GetAtt": f"{logical_id}.Arn"})


def condition_text(template, name, seen=None):
    """A condition's definition with the conditions it uses expanded, as text."""
    seen = seen if seen is not None else set()
    if name in seen:
        return ""
    seen.add(name)
    body = template.get("Conditions", {}).get(name)
    if body is None:
        return ""
    text = json.dumps(body)
    for used in re.findall(r'\{"Condition": "([A-Za-z0-9]+)"\}', text):
        text += condition_text(template, used, seen)
    return text


def policies_with_conditions(policies):
    """(policy, conditions it sits under) for a Policies list, both branches of Fn::If."""
    out = []

    def walk(node, conds):
        if isinstance(node, dict) and "Fn::If" in node:
            cond, yes, no = node["Fn::If"]
            walk(yes, conds + [cond])
            walk(no, conds + ["!" + cond])
        elif node == {"Ref": "AWS::NoValue"}:
            return
        elif isinstance(node, dict):
            out.append((node, conds))

    for p in as_list(policies or []):
        walk(p, [])
    return out


def statements(document):
    return as_list(document.get("Statement", []))


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
    if resource == SECRET:
        return "secret"
    if resource == MASTER_SECRET:
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


def iam_problems(template):
    problems = []
    res = template.get("Resources", {})
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User", "AWS::IAM::Group"):
        for logical_id in resources_of(template, kind):
            problems.append(f"{logical_id}: {kind} is not expected; permissions live in the two roles")
    for logical_id, fn in resources_of(template, "AWS::Serverless::Function").items():
        props = fn.get("Properties", {})
        if "Role" not in props or "Policies" in props:
            problems.append(f"{logical_id}: use the template's own Role, not SAM Policies (SAM would add managed policies)")
    roles = resources_of(template, "AWS::IAM::Role")
    for logical_id in ROLE_RULES:
        if logical_id not in roles:
            problems.append(f"{logical_id} is missing")
    for logical_id, role in roles.items():
        rules = ROLE_RULES.get(logical_id)
        if rules is None:
            problems.append(f"{logical_id}: unexpected role")
            continue
        props = role.get("Properties", {})
        if props.get("ManagedPolicyArns"):
            problems.append(f"{logical_id}: managed policies grant more than this template states")
        # The log groups of the functions that use this role.
        log_groups = []
        for fn in resources_of(template, "AWS::Serverless::Function").values():
            fp = fn.get("Properties", {})
            if fp.get("Role") == {"Fn::GetAtt": [logical_id, "Arn"]}:
                lg = fp.get("LoggingConfig", {}).get("LogGroup", {})
                if isinstance(lg, dict) and "Ref" in lg and lg["Ref"] in res:
                    log_groups.append(lg["Ref"])
        for policy, conds in policies_with_conditions(props.get("Policies")):
            name = policy.get("PolicyName", "?")
            for st in statements(policy.get("PolicyDocument", {})):
                where = f"{logical_id}/{name}"
                if st.get("Effect") != "Allow":
                    continue
                if "NotAction" in st or "NotResource" in st:
                    problems.append(f"{where}: NotAction/NotResource widen a grant beyond what is listed")
                    continue
                actions = set(as_list(st.get("Action", [])))
                for a in actions:
                    if "*" in a:
                        problems.append(f"{where}: wildcard action {a}")
                for resource in as_list(st.get("Resource", [])):
                    what = classify(resource, log_groups)
                    if what == "star":
                        extra = actions - STAR_ACTIONS
                        if extra:
                            problems.append(f"{where}: Resource '*' for {sorted(extra)}")
                        if actions & ENI_ACTIONS and actions - ENI_ACTIONS:
                            problems.append(f"{where}: ENI actions share a '*' statement with {sorted(actions - ENI_ACTIONS)}")
                        continue
                    if what is None:
                        problems.append(f"{where}: resource {json.dumps(resource)} is not the secret, master secret, key, database or own log group")
                        continue
                    if what == "log":
                        if actions - LOG_ACTIONS:
                            problems.append(f"{where}: {sorted(actions - LOG_ACTIONS)} on a log group")
                        continue
                    allowed = rules[what]
                    if actions - allowed:
                        problems.append(f"{where}: {sorted(actions - allowed)} not allowed on the {what} for this role")
                    needle = CONDITION_NEEDS.get(what)
                    if needle and not any(
                        not c.startswith("!") and needle in condition_text(template, c) for c in conds
                    ):
                        problems.append(f"{where}: the {what} permission must be conditional on {needle}")
    return problems


def permission_problems(template):
    problems = []
    found = False
    for logical_id, perm in resources_of(template, "AWS::Lambda::Permission").items():
        props = perm.get("Properties", {})
        if props.get("Principal") != "secretsmanager.amazonaws.com":
            continue
        found = True
        if not refers_to(props.get("FunctionName"), "RotationFunction"):
            problems.append(f"{logical_id}: Secrets Manager may invoke only the rotation function")
        if props.get("Action") != "lambda:InvokeFunction":
            problems.append(f"{logical_id}: Action must be lambda:InvokeFunction")
        if props.get("SourceAccount") != {"Ref": "AWS::AccountId"}:
            problems.append(f"{logical_id}: SourceAccount must be this account (confused deputy)")
    if not found:
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
        for p, _ in policies_with_conditions(self.res[role]["Properties"]["Policies"]):
            if p.get("PolicyName") == name:
                return p
        raise KeyError(name)

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
