"""Reading infra/template.yaml as CloudFormation will: every value a property can take through
`Fn::If`, and (in `Scenario`) the template one set of parameters turns it into.

The checks in test_template.py walk both branches of every `Fn::If`, so a grant hidden behind a
condition is still seen; anything of a shape they do not understand is reported, never skipped.
"""

import json
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
NO_VALUE = {"Ref": "AWS::NoValue"}


def load_template(path=TEMPLATE):
    """The template as plain JSON types, short-form intrinsics expanded by cfn-lint's decoder."""
    template, matches = decode(str(path))
    if matches:
        raise AssertionError(f"{path} does not decode: {[str(m) for m in matches]}")
    return json.loads(json.dumps(template))


def resources_of(template, type_):
    return {k: v for k, v in template.get("Resources", {}).items() if v.get("Type") == type_}


def as_list(value):
    return value if isinstance(value, list) else [value]


def short(value, limit=160):
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_intrinsic(node):
    """A one-key mapping whose key is Ref, Condition or Fn::*."""
    return isinstance(node, dict) and len(node) == 1 and (next(iter(node)) in ("Ref", "Condition") or next(iter(node)).startswith("Fn::"))


def is_if(node):
    return isinstance(node, dict) and list(node) == ["Fn::If"]


def branches(node, conds=()):
    """Every value `node` can take through `Fn::If` (nested ones too), each with the conditions on
    its path ("!C" on a false branch). `AWS::NoValue` is no value, so it yields nothing. A malformed
    `Fn::If` is yielded as it is, for the caller to refuse as a shape it does not know."""
    if is_if(node):
        args = node["Fn::If"]
        if not (isinstance(args, list) and len(args) == 3 and isinstance(args[0], str)):
            yield node, conds
            return
        cond, yes, no = args
        yield from branches(yes, conds + (cond,))
        yield from branches(no, conds + ("!" + cond,))
    elif node == NO_VALUE:
        return
    else:
        yield node, conds


def elements(node, conds=()):
    """The elements a list-valued property can hold, through `Fn::If` around the list and around each
    element. A single value is a one-element list, as IAM reads Statement, Action and Resource."""
    for value, c in branches(node, conds):
        for element in value if isinstance(value, list) else [value]:
            yield from branches(element, c)


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
    for used in _conditions_used(body):
        text += condition_text(template, used, seen)
    return text


def _conditions_used(node):
    if isinstance(node, dict):
        if list(node) == ["Condition"] and isinstance(node["Condition"], str):
            yield node["Condition"]
        for v in node.values():
            yield from _conditions_used(v)
    elif isinstance(node, list):
        for v in node:
            yield from _conditions_used(v)


def refs_in(node):
    """Logical ids named by Ref, Fn::GetAtt and Fn::Sub anywhere in `node`."""
    import re

    out = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v.split(".")[0])
            elif k == "Fn::GetAtt":
                target = v[0] if isinstance(v, list) else str(v).split(".")[0]
                out.add(target)
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                if isinstance(text, str):
                    out |= {m.split(".")[0] for m in re.findall(r"\$\{([A-Za-z0-9:.]+)\}", text)}
            out |= refs_in(v)
    elif isinstance(node, list):
        for v in node:
            out |= refs_in(v)
    return out


class Scenario:
    """The template one set of parameter values turns it into: conditions evaluated, `Fn::If`
    resolved, `AWS::NoValue` dropped, parameter `Ref`s replaced by their values, resources whose
    condition is false removed, and the Rules' assertions checked. Other intrinsics stay as they are.

    `params` overrides the defaults; parameters without a default must be given."""

    def __init__(self, template, **params):
        self.template = template
        declared = template.get("Parameters", {})
        unknown = set(params) - set(declared)
        if unknown:
            raise KeyError(f"not parameters of the template: {sorted(unknown)}")
        self.params = {}
        for name, spec in declared.items():
            value = params.get(name, spec.get("Default"))
            if value is None:
                raise KeyError(f"parameter {name} has no default; give it")
            if spec.get("Type", "").startswith(("List<", "CommaDelimitedList")) and isinstance(value, str):
                value = value.split(",")
            self.params[name] = value if isinstance(value, list) else str(value)
        self._conditions = {}

    def __repr__(self):
        declared = self.template.get("Parameters", {})
        changed = {k: v for k, v in self.params.items() if str(declared[k].get("Default")) != str(v)}
        return f"Scenario({changed})"

    # conditions and rules
    def condition(self, name):
        if name not in self._conditions:
            body = self.template.get("Conditions", {}).get(name)
            if body is None:
                raise KeyError(f"no condition {name}")
            self._conditions[name] = bool(self._evaluate(body))
        return self._conditions[name]

    def _evaluate(self, node):
        if isinstance(node, dict) and len(node) == 1:
            (key, args), = node.items()
            if key == "Ref":
                if args not in self.params:
                    raise ValueError(f"condition or rule refers to {args}, which is not a parameter")
                return self.params[args]
            if key == "Condition":
                return self.condition(args)
            if key == "Fn::Equals":
                a, b = (self._evaluate(x) for x in args)
                return a == b
            if key == "Fn::Not":
                return not self._evaluate(args[0])
            if key == "Fn::And":
                return all(self._evaluate(x) for x in args)
            if key == "Fn::Or":
                return any(self._evaluate(x) for x in args)
            if key == "Fn::Contains":
                haystack, needle = (self._evaluate(x) for x in args)
                return needle in haystack
            if key == "Fn::EachMemberIn":
                members, allowed = (self._evaluate(x) for x in args)
                return all(m in allowed for m in members)
            raise ValueError(f"the scenario cannot evaluate {key}")
        if isinstance(node, list):
            return [self._evaluate(x) for x in node]
        return node

    def rule_failures(self):
        """The AssertDescription of every assertion of every applicable Rule that fails."""
        failures = []
        for name, rule in self.template.get("Rules", {}).items():
            if "RuleCondition" in rule and not self._evaluate(rule["RuleCondition"]):
                continue
            for assertion in rule.get("Assertions", []):
                if not self._evaluate(assertion["Assert"]):
                    failures.append(f"{name}: {assertion.get('AssertDescription', '')}")
        return failures

    # the resolved template
    def resolve(self, node):
        if isinstance(node, dict):
            if is_if(node):
                cond, yes, no = node["Fn::If"]
                return self.resolve(yes if self.condition(cond) else no)
            if list(node) == ["Ref"] and node["Ref"] in self.params:
                return self.params[node["Ref"]]
            out = {}
            for k, v in node.items():
                r = self.resolve(v)
                if r != NO_VALUE:
                    out[k] = r
            return out
        if isinstance(node, list):
            return [r for r in (self.resolve(v) for v in node) if r != NO_VALUE]
        return node

    def resources(self, type_=None):
        out = {}
        for logical_id, r in self.template.get("Resources", {}).items():
            if "Condition" in r and not self.condition(r["Condition"]):
                continue
            if type_ is None or r.get("Type") == type_:
                out[logical_id] = self.resolve(r)
        return out

    def resource(self, logical_id):
        return self.resources().get(logical_id)
